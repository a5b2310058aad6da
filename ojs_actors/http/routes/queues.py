"""``/ojs/v1/queues``."""

from __future__ import annotations

from typing import Any

from quart import Blueprint, Response

from ...core import State, format_ms
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


@blueprint.get("/ojs/v1/queues/<name>/stats")
async def stats(name: str) -> Response:
    system = ojs_system()
    record, counts = await system.queue_stats(name)
    by_state = {state.value: counts.get(state, 0) for state in State}
    return ojs_response(
        {
            "queue": {**queue_wire(record), **by_state},
            "stats": by_state,
            "computed_at": format_ms(system.clock()),
        }
    )


@blueprint.post("/ojs/v1/queues/<name>/pause")
async def pause(name: str) -> Response:
    return ojs_response({"queue": queue_wire(await ojs_system().set_paused(name, True))})


@blueprint.post("/ojs/v1/queues/<name>/resume")
async def resume(name: str) -> Response:
    record = await ojs_system().set_paused(name, False)
    return ojs_response({"queue": {**queue_wire(record), "resumed": True}})
