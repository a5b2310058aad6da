"""``/ojs/v1/jobs``: enqueue, info, cancel, activate."""

from __future__ import annotations

from quart import Blueprint, Response

from ..wire import json_body, ojs_response, ojs_system

blueprint = Blueprint("jobs", __name__)


@blueprint.post("/ojs/v1/jobs")
async def enqueue() -> Response:
    job = await ojs_system().enqueue(await json_body())
    return ojs_response({"job": job.to_wire()}, 201, {"Location": f"/ojs/v1/jobs/{job.id}"})


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
