"""``/ojs/v1/queues``."""

from __future__ import annotations

from typing import Any

from quart import Blueprint, Response

from ...core import State, format_ms
from ...system.backpressure import Bound, depth_of
from ...system.tenancy import queue_for, visible_queues
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


def depth_wire(name: str, record: dict[str, Any], counts: dict[State, int]) -> dict[str, Any]:
    """The queue's depth (non-terminal jobs) and its bound, if it has one (ojs-backpressure §8)."""
    wire: dict[str, Any] = {"queue": name, "depth": depth_of(counts)}
    bound = Bound.from_record(record.get("backpressure"))
    if bound is not None and bound.max_depth:
        wire["max_depth"] = bound.max_depth
        wire["pressure"] = round(min(wire["depth"] / bound.max_depth, 1.0), 4)
    if bound is not None and bound.max_size_bytes:
        wire["max_size_bytes"] = bound.max_size_bytes
    return wire


@blueprint.get("/ojs/v1/queues")
async def list_queues() -> Response:
    records = [queue_wire(record) for record in visible_queues(await ojs_system().list_queues())]
    limit = query_int("limit", 50, 1, 1000)
    offset = query_int("offset", 0, 0, 10**9)
    return ojs_response(
        {
            "queues": records[offset : offset + limit],
            "pagination": pagination(len(records), limit, offset),
        }
    )


@blueprint.get("/ojs/v1/queues/<name>")
@blueprint.get("/ojs/v1/queues/<name>/stats")
async def stats(name: str) -> Response:
    """The queue's record and job counts; with ``X-OJS-Tenant``, of the tenant's jobs only
    (its shard, :mod:`ojs_actors.system.tenancy`), under the name asked for."""
    system = ojs_system()
    record, counts = await system.queue_stats(queue_for(name))
    by_state = {state.value: counts.get(state, 0) for state in State}
    return ojs_response(
        {
            "queue": {**queue_wire(record), "name": name, **by_state},
            "stats": {**by_state, **depth_wire(name, record, counts)},
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
