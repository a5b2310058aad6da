"""``/ojs/v1/admin/reset``: wipe all state (conformance runs); only with ``--allow-reset``."""

from __future__ import annotations

from quart import Blueprint, Response

from ..wire import ojs_response, ojs_system

blueprint = Blueprint("admin", __name__)


@blueprint.post("/ojs/v1/admin/reset")
async def reset() -> Response:
    await ojs_system().reset()
    return ojs_response({"reset": True})
