"""``/ojs/v1/jobs/{id}/checkpoint``: save, read and delete a job's checkpoint
(ojs-durable-execution §4, §7). Saves are accepted as ``POST`` (the document) and
``PUT`` (the conformance suite). The checkpoint's fields are at the top of the reply,
as the suite reads them, and under ``checkpoint`` too, as the document shows them."""

from __future__ import annotations

from typing import Any

from quart import Blueprint, Response

from ...core import InvalidRequest
from ...system.checkpoints import Checkpoint, parse_state
from ..wire import json_body, ojs_response, ojs_system

blueprint = Blueprint("checkpoints", __name__)


def _body(checkpoint: Checkpoint) -> dict[str, Any]:
    wire = checkpoint.to_wire()
    return {**wire, "checkpoint": wire}


@blueprint.route("/ojs/v1/jobs/<job_id>/checkpoint", methods=["POST", "PUT"])
async def save_checkpoint(job_id: str) -> Response:
    body = json_body()
    worker_id = body.get("worker_id")
    if worker_id is not None and not isinstance(worker_id, str):
        raise InvalidRequest("'worker_id' must be a string.", details={"field": "worker_id"})
    checkpoint = await ojs_system().save_checkpoint(job_id, parse_state(body), worker_id=worker_id)
    return ojs_response(_body(checkpoint))


@blueprint.get("/ojs/v1/jobs/<job_id>/checkpoint")
async def get_checkpoint(job_id: str) -> Response:
    return ojs_response(_body(await ojs_system().checkpoint(job_id)))


@blueprint.delete("/ojs/v1/jobs/<job_id>/checkpoint")
async def delete_checkpoint(job_id: str) -> Response:
    deleted = await ojs_system().delete_checkpoint(job_id)
    return ojs_response({"deleted": deleted, "job_id": job_id})
