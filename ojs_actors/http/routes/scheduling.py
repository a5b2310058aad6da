"""``/ojs/v1/admin/pools`` and ``/ojs/v1/admin/scheduling/stats`` (ojs-fair-scheduling §10):
worker pools, whose strategy orders the claims of a fetch over their queues, and this
process's dispatch counts (:mod:`ojs_actors.system.fair_scheduling`)."""

from __future__ import annotations

from quart import Blueprint, Response

from ...core import State, format_ms
from ...system.fair_scheduling import WINDOW_SECONDS, pool_wire
from ..wire import json_body, ojs_response, ojs_system

blueprint = Blueprint("scheduling", __name__)


@blueprint.get("/ojs/v1/admin/pools")
async def list_pools() -> Response:
    pools = await ojs_system().fair_scheduler.list_pools()
    return ojs_response({"items": [pool_wire(pool) for pool in pools], "count": len(pools)})


@blueprint.put("/ojs/v1/admin/pools/<name>")
async def put_pool(name: str) -> Response:
    pool, created = await ojs_system().fair_scheduler.put_pool(name, json_body())
    return ojs_response({"pool": pool_wire(pool)}, 201 if created else 200)


@blueprint.get("/ojs/v1/admin/pools/<name>")
async def get_pool(name: str) -> Response:
    return ojs_response({"pool": pool_wire(await ojs_system().fair_scheduler.get_pool(name))})


@blueprint.delete("/ojs/v1/admin/pools/<name>")
async def delete_pool(name: str) -> Response:
    await ojs_system().fair_scheduler.delete_pool(name)
    return ojs_response({"deleted": True, "name": name})


@blueprint.get("/ojs/v1/admin/scheduling/stats")
async def scheduling_stats() -> Response:
    """§10.2's ``queues`` and ``window``, and their sums under ``stats``: jobs this process
    dispatched per queue over the last minute, and each queue's active jobs now."""
    system = ojs_system()
    counts = system.fair_scheduler.dispatch_counts()
    total = sum(counts.values())
    queues = []
    for name, dispatched in sorted(counts.items()):
        active = (await system.backend.count_jobs(name)).get(State.ACTIVE, 0)
        queues.append(
            {
                "name": name,
                "dispatch_count_1m": dispatched,
                "dispatch_ratio_1m": round(dispatched / total, 4),
                "active_jobs": active,
            }
        )
    pools = await system.fair_scheduler.list_pools()
    return ojs_response(
        {
            "stats": {"dispatched_1m": total, "queues": len(queues), "pools": len(pools)},
            "queues": queues,
            "window": f"PT{WINDOW_SECONDS // 60}M",
            "computed_at": format_ms(system.clock()),
        }
    )
