"""``/ojs/v1/admin/tenants``: the tenants the server holds jobs for and their statistics
(ojs-multi-tenancy §10). Tenants are found in the queue registry: a tenant's jobs live in
its own queues (:mod:`ojs_actors.system.tenancy`), so no other record is kept."""

from __future__ import annotations

from typing import Any

from quart import Blueprint, Response

from ...core import NotFound, State, format_ms
from ...system import System
from ...system.tenancy import parse_tenant, split_shard
from ..wire import ojs_response, ojs_system

blueprint = Blueprint("tenants", __name__)


async def _tenant_queues(system: System) -> dict[str, list[tuple[str, dict[State, int]]]]:
    """Tenant -> ``(logical queue, counts by state)`` of each of its queues."""
    found: dict[str, list[tuple[str, dict[State, int]]]] = {}
    for record, counts in await system.all_queue_stats():
        logical, tenant = split_shard(record["name"])
        found.setdefault(tenant, []).append((logical, counts))
    return found


def _summary(tenant: str, queues: list[tuple[str, dict[State, int]]]) -> dict[str, Any]:
    jobs = {state.value: 0 for state in State}
    per_queue = []
    for logical, counts in queues:
        by_state = {state.value: counts.get(state, 0) for state in State}
        for state, count in by_state.items():
            jobs[state] += count
        per_queue.append({"name": logical, "jobs": by_state, "total_jobs": sum(by_state.values())})
    return {
        "tenant_id": tenant,
        "total_jobs": sum(jobs.values()),
        "jobs": jobs,
        "queues": sorted(per_queue, key=lambda queue: queue["name"]),
    }


@blueprint.get("/ojs/v1/admin/tenants")
async def list_tenants() -> Response:
    system = ojs_system()
    found = await _tenant_queues(system)
    tenants = [_summary(tenant, queues) for tenant, queues in sorted(found.items())]
    return ojs_response({"tenants": tenants, "count": len(tenants)})


@blueprint.get("/ojs/v1/admin/tenants/<tenant_id>")
@blueprint.get("/ojs/v1/admin/tenants/<tenant_id>/stats")
async def tenant_stats(tenant_id: str) -> Response:
    """One tenant's job counts, in total, by state and by queue; 404 for a tenant with no
    queue (no job was ever enqueued for it)."""
    tenant = parse_tenant(tenant_id, "tenant_id")
    system = ojs_system()
    queues = (await _tenant_queues(system)).get(tenant)
    if queues is None:
        raise NotFound(
            f"Tenant '{tenant}' not found.",
            details={"resource_type": "tenant", "resource_id": tenant},
        )
    return ojs_response({**_summary(tenant, queues), "computed_at": format_ms(system.clock())})
