"""``/ojs/v1/dead-letter``: list, retry, delete."""

from __future__ import annotations

from quart import Blueprint, Response, request

from ...core import format_ms, parse_queue_name
from ..wire import ojs_response, ojs_system, pagination, query_int

blueprint = Blueprint("dead_letter", __name__)


@blueprint.get("/ojs/v1/dead-letter")
async def dead_letter() -> Response:
    queue = request.args.get("queue")
    limit = query_int("limit", 50, 1, 100)
    offset = query_int("offset", 0, 0, 10**9)
    jobs, total = await ojs_system().dead_letter(
        parse_queue_name(queue, "queue") if queue else None, limit, offset
    )
    return ojs_response(
        {"jobs": [j.to_wire() for j in jobs], "pagination": pagination(total, limit, offset)}
    )


@blueprint.post("/ojs/v1/dead-letter/<job_id>/retry")
async def retry_dead_letter(job_id: str) -> Response:
    job = await ojs_system().retry_dead_letter(job_id)
    return ojs_response(
        {"job": {**job.to_wire(), "re_enqueued_at": format_ms(job.enqueued_at or 0)}}
    )


@blueprint.delete("/ojs/v1/dead-letter/<job_id>")
async def delete_dead_letter(job_id: str) -> Response:
    await ojs_system().delete_dead_letter(job_id)
    return ojs_response({"deleted": True, "job_id": job_id})
