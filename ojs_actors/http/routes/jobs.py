"""``/ojs/v1/jobs``: enqueue, info, cancel, activate."""

from __future__ import annotations

from typing import Any

from quart import Blueprint, Response

from ...core import NO_RESULT, InvalidRequest, parse_enqueue
from ...system import System
from ...system.schemas import collect_warnings
from ...system.tenancy import check_visible
from ..wire import JsonReply, json_body, json_post, ojs_response, ojs_system

blueprint = Blueprint("jobs", __name__)


MAX_BATCH = 10_000


@json_post(blueprint, "/ojs/v1/jobs")
async def enqueue(system: System, body: dict[str, Any]) -> JsonReply:
    submitted = parse_enqueue(body, system.clock())
    with collect_warnings() as warnings:
        job = await system.limits.blocking(lambda: system.enqueue(submitted))
    reply: dict[str, Any] = {"job": job.to_wire()}
    if warnings:
        reply["warnings"] = warnings  # args off their schema, accepted (ojs-schema-registry §7.3)
    if job.id != submitted.id:  # unique policy "ignore": the existing job stands
        return JsonReply({**reply, "deduplicated": True})
    headers = {"Location": f"/ojs/v1/jobs/{job.id}", **system.limits.enqueue_headers(job)}
    return JsonReply(reply, 201, headers)


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
    with collect_warnings() as warnings:
        jobs = await system.limits.blocking(lambda: system.enqueue_batch(requests))
    reply: dict[str, Any] = {"jobs": [job.to_wire() for job in jobs], "count": len(jobs)}
    if warnings:
        reply["warnings"] = warnings
    return JsonReply(reply, 201)


@blueprint.get("/ojs/v1/jobs/<job_id>")
async def info(job_id: str) -> Response:
    return ojs_response({"job": check_visible(await ojs_system().info(job_id)).to_wire()})


@blueprint.delete("/ojs/v1/jobs/<job_id>")
async def cancel(job_id: str) -> Response:
    system = ojs_system()
    before = check_visible(await system.info(job_id))
    job = await system.cancel(job_id)
    return ojs_response({"job": {**job.to_wire(), "previous_state": before.state.value}})


@blueprint.post("/ojs/v1/jobs/<job_id>/ack")
async def ack(job_id: str) -> Response:
    """Ack by path (ojs-results §10.1; the ext-job-versioning and ext-encryption suites):
    ``POST /ojs/v1/workers/ack`` with the id in the URL, the job under ``job``."""
    body = json_body()
    job = await ojs_system().ack(job_id, body["result"] if "result" in body else NO_RESULT)
    return ojs_response({"job": job.to_wire(), "acknowledged": True})


@blueprint.post("/ojs/v1/jobs/<job_id>/nack")
async def nack(job_id: str) -> Response:
    """Nack by path (the ext-encryption suite): ``POST /ojs/v1/workers/nack`` with the id in
    the URL, the job under ``job``."""
    body = json_body()
    requeue = body.get("requeue", False)
    if not isinstance(requeue, bool):
        raise InvalidRequest("'requeue' must be a boolean.", details={"field": "requeue"})
    if "error" not in body and not requeue:
        raise InvalidRequest(
            "'error' is required: an object with at least a 'message'.",
            details={"field": "error"},
        )
    job = await ojs_system().nack(job_id, body.get("error"), requeue=requeue)
    return ojs_response({"job": job.to_wire()})


@blueprint.post("/ojs/v1/jobs/<job_id>/activate")
async def activate(job_id: str) -> Response:
    job = await ojs_system().activate(job_id)
    return ojs_response({"job": {**job.to_wire(), "previous_state": "pending"}})
