"""``/ojs/v1/admin/queues/{name}/config``: a queue's bounds (ojs-backpressure §6.2)."""

from __future__ import annotations

from typing import Any

from quart import Blueprint, Response

from ...core import InvalidRequest
from ...system.backpressure import Bound, parse_bound
from ..wire import json_body, ojs_response, ojs_system

blueprint = Blueprint("backpressure", __name__)


def config_wire(record: dict[str, Any]) -> dict[str, Any]:
    bound = Bound.from_record(record.get("backpressure"))
    return {
        "queue": record["name"],
        "backpressure": bound.to_record() if bound is not None else {"max_depth": 0},
    }


@blueprint.put("/ojs/v1/admin/queues/<name>/config")
async def set_config(name: str) -> Response:
    body = json_body()
    if "backpressure" not in body:
        raise InvalidRequest(
            "'backpressure' is required: an object with 'max_depth' and/or 'max_size_bytes'.",
            details={"field": "backpressure"},
        )
    record = await ojs_system().limits.set_bound(name, parse_bound(body["backpressure"]))
    return ojs_response(config_wire(record))


@blueprint.get("/ojs/v1/admin/queues/<name>/config")
async def get_config(name: str) -> Response:
    return ojs_response(config_wire(await ojs_system().queue_info(name)))
