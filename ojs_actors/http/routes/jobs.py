"""``/ojs/v1/jobs``: enqueue, info, cancel, activate."""

from __future__ import annotations

from typing import Any

from quart import Blueprint, Response

from ...core import InvalidRequest, parse_enqueue
from ...system import System
from ..wire import JsonReply, json_post, ojs_response, ojs_system

blueprint = Blueprint("jobs", __name__)


MAX_BATCH = 10_000


@json_post(blueprint, "/ojs/v1/jobs")
async def enqueue(system: System, body: dict[str, Any]) -> JsonReply:
    submitted = parse_enqueue(body, system.clock())
    job = await system.enqueue(submitted)
    if job.id != submitted.id:  # unique policy "ignore": the existing job stands
        return JsonReply({"job": job.to_wire(), "deduplicated": True})
    return JsonReply({"job": job.to_wire()}, 201, {"Location": f"/ojs/v1/jobs/{job.id}"})


@json_post(blueprint, "/ojs/v1/jobs/batch")
async def enqueue_batch(system: System, body: dict[str, Any]) -> JsonReply:
    requests = body.get("jobs")
    if not isinstance(requests, list) or not requests:
        raise InvalidRequest(
            "'jobs' is required: a non-empty array of jobs.", details={"field": "jobs"}
        )
    if len(requests) > MAX_BATCH:
        raise InvalidRequest(
            f"A batch may hold at most {MAX_BATCH} jobs.",
            details={"field": "jobs", "count": len(requests), "maximum": MAX_BATCH},
        )
    jobs = await system.enqueue_batch(requests)
    return JsonReply({"jobs": [job.to_wire() for job in jobs], "count": len(jobs)}, 201)


@blueprint.get("/ojs/v1/jobs/<job_id>")
async def info(job_id: str) -> Response:
    return ojs_response({"job": (await ojs_system().info(job_id)).to_wire()})


@blueprint.delete("/ojs/v1/jobs/<job_id>")
async def cancel(job_id: str) -> Response:
    system = ojs_system()
    before = await system.info(job_id)
    job = await system.cancel(job_id)
    return ojs_response({"job": {**job.to_wire(), "previous_state": before.state.value}})


@blueprint.post("/ojs/v1/jobs/<job_id>/activate")
async def activate(job_id: str) -> Response:
    job = await ojs_system().activate(job_id)
    return ojs_response({"job": {**job.to_wire(), "previous_state": "pending"}})
