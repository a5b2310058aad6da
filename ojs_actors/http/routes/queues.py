"""``/ojs/v1/queues``."""

from __future__ import annotations

from typing import Any

from quart import Blueprint, Response

from ...core import format_ms
from ..wire import ojs_response, ojs_system, pagination, query_int

blueprint = Blueprint("queues", __name__)


def queue_wire(record: dict[str, Any]) -> dict[str, Any]:
    wire: dict[str, Any] = {
        "name": record["name"],
        "status": "paused" if record.get("paused_at") else "active",
        "paused": bool(record.get("paused_at")),
    }
    if record.get("created_at"):
        wire["created_at"] = format_ms(record["created_at"])
    if record.get("paused_at"):
        wire["paused_at"] = format_ms(record["paused_at"])
    return wire


@blueprint.get("/ojs/v1/queues")
async def list_queues() -> Response:
    records = [queue_wire(record) for record in await ojs_system().list_queues()]
    limit = query_int("limit", 50, 1, 1000)
    offset = query_int("offset", 0, 0, 10**9)
    return ojs_response(
        {
            "queues": records[offset : offset + limit],
            "pagination": pagination(len(records), limit, offset),
        }
    )
