"""``/ojs/v1/workflows``: create (chain, group, batch; a DAG without ``type``), get status,
cancel (ojs-workflows §11, ojs-http-binding §14), aggregate progress (ojs-progress §9)."""

from __future__ import annotations

from quart import Blueprint, Response

from ..wire import json_body, ojs_response, ojs_system

blueprint = Blueprint("workflows", __name__)


@blueprint.post("/ojs/v1/workflows")
async def create() -> Response:
    workflow = await ojs_system().create_workflow(json_body())
    return ojs_response(
        {"workflow": workflow}, 201, {"Location": f"/ojs/v1/workflows/{workflow['id']}"}
    )


@blueprint.get("/ojs/v1/workflows/<workflow_id>")
async def info(workflow_id: str) -> Response:
    return ojs_response({"workflow": await ojs_system().workflow_info(workflow_id)})


@blueprint.get("/ojs/v1/workflows/<workflow_id>/progress")
async def progress(workflow_id: str) -> Response:
    return ojs_response(await ojs_system().workflow_progress(workflow_id))


@blueprint.delete("/ojs/v1/workflows/<workflow_id>")
async def cancel(workflow_id: str) -> Response:
    return ojs_response({"workflow": await ojs_system().cancel_workflow(workflow_id)})
