"""``/ojs/v1/dead-letter``: list, retry, delete; and the admin API's dead letter
endpoints under ``/ojs/v1/admin/dead-letter``: list with filters, statistics, retry and
delete one, and the bulk retry and purge, which need ``"confirm": true``."""

from __future__ import annotations

from quart import Blueprint, Response, request

from ...core import format_ms, parse_queue_name
from ..admin_params import confirmed_filter, purge_filter, query_filter, query_page, stamp
from ..wire import json_body, ojs_response, ojs_system, pagination, query_int
from .admin import bulk_wire

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


# -- the admin API's (ojs-admin-api §11, ojs-dead-letter §10) ------------------------------


@blueprint.get("/ojs/v1/admin/dead-letter")
async def admin_dead_letter() -> Response:
    query, page = query_filter(), query_page()
    jobs, total = await ojs_system().dead_letter_matching(query, page.per_page, page.offset)
    return ojs_response({"items": [job.to_wire() for job in jobs], "pagination": page.wire(total)})


@blueprint.get("/ojs/v1/admin/dead-letter/stats")
async def admin_dead_letter_stats() -> Response:
    figures = await ojs_system().dead_letter_stats()
    oldest, newest = figures["oldest"], figures["newest"]
    return ojs_response(
        {
            "total": figures["total"],
            "by_queue": figures["by_queue"],
            "oldest_at": stamp(oldest.discarded_at) if oldest else None,
            "newest_at": stamp(newest.discarded_at) if newest else None,
        }
    )


@blueprint.post("/ojs/v1/admin/dead-letter/<job_id>/retry")
async def admin_retry_dead_letter(job_id: str) -> Response:
    return ojs_response({"job": (await ojs_system().retry_dead_letter(job_id)).to_wire()})


@blueprint.delete("/ojs/v1/admin/dead-letter/<job_id>")
async def admin_delete_dead_letter(job_id: str) -> Response:
    await ojs_system().delete_dead_letter(job_id)
    return Response(b"", status=204)


@blueprint.post("/ojs/v1/admin/dead-letter/retry")
async def admin_bulk_retry_dead_letter() -> Response:
    """Retry the dead letter jobs the filter takes; only with ``"confirm": true``."""
    query = confirmed_filter(json_body())
    return ojs_response(bulk_wire("retry", await ojs_system().retry_dead_letter_matching(query)))


@blueprint.delete("/ojs/v1/admin/dead-letter")
async def admin_purge_dead_letter() -> Response:
    """Delete the dead letter jobs ``older_than`` (and the filter fields) take, for good;
    only with ``"confirm": true``."""
    query = purge_filter(json_body())
    outcome = await ojs_system().purge_dead_letter(query)
    return ojs_response({**bulk_wire("delete", outcome), "purged_count": outcome.succeeded})
