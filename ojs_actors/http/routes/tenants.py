"""``/ojs/v1/admin/tenants``: the tenants, their configuration and statistics
(ojs-multi-tenancy §10). A tenant is known by its queues (its jobs live in its own,
:mod:`ojs_actors.system.tenancy`) or by its configuration (``PUT``,
:mod:`ojs_actors.system.tenant_config`); its limits are enforced by
:mod:`ojs_actors.system.tenant_limits`."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from quart import Blueprint, Response

from ...core import State, format_ms
from ...system import System
from ...system.tenancy import (
    acting_tenant,
    check_client_queue,
    parse_tenant,
    shard_of,
    split_shard,
)
from ...system.tenant_activity import fairness
from ...system.tenant_config import RATE_LIMIT, config_wire, not_found
from ...system.tenant_limits import WAITING
from ...system.tenant_throttle import throttle_of
from ..admin_params import query_job_listing, query_page
from ..wire import json_body, ojs_response, ojs_system

blueprint = Blueprint("tenants", __name__)


async def _tenant_queues(system: System) -> dict[str, list[tuple[str, dict[State, int]]]]:
    """Tenant -> ``(logical queue, counts by state)`` of each of its queues."""
    found: dict[str, list[tuple[str, dict[State, int]]]] = {}
    for record, counts in await system.all_queue_stats():
        logical, tenant = split_shard(record["name"])
        found.setdefault(tenant, []).append((logical, counts))
    return found


def _summary(
    tenant: str, queues: list[tuple[str, dict[State, int]]], config: dict[str, Any] | None
) -> dict[str, Any]:
    jobs = {state.value: 0 for state in State}
    per_queue = []
    for logical, counts in queues:
        by_state = {state.value: counts.get(state, 0) for state in State}
        for state, count in by_state.items():
            jobs[state] += count
        per_queue.append({"name": logical, "jobs": by_state, "total_jobs": sum(by_state.values())})
    summary: dict[str, Any] = {
        "tenant_id": tenant,
        "total_jobs": sum(jobs.values()),
        "jobs": jobs,
        "queues": sorted(per_queue, key=lambda queue: queue["name"]),
        "configured": config is not None,
    }
    if config is not None:
        summary["config"] = config_wire(config)
    return summary


async def _limits(
    system: System, summary: dict[str, Any], config: dict[str, Any]
) -> dict[str, Any]:
    """Each configured limit with its current value (§10.2)."""
    jobs = summary["jobs"]
    current = {
        "max_concurrency": jobs[State.ACTIVE.value],
        "max_queue_depth": sum(jobs[state.value] for state in WAITING),
        "max_scheduled": jobs[State.SCHEDULED.value],
    }
    limits: dict[str, Any] = {}
    for name, limit in config.get("limits", {}).items():
        if name == RATE_LIMIT:
            used = await system.tenant_guard.recent_enqueues(summary["tenant_id"], limit)
            limits[name] = {"limit": limit["limit"], "period": limit["period"], "current": used}
        else:
            limits[name] = {"limit": limit, "current": current[name]}
    return limits


@blueprint.get("/ojs/v1/admin/tenants")
async def list_tenants() -> Response:
    system = ojs_system()
    found = await _tenant_queues(system)
    configs = await system.tenant_configs.list()
    names = sorted({*found, *configs})
    tenants = [_summary(tenant, found.get(tenant, []), configs.get(tenant)) for tenant in names]
    return ojs_response({"tenants": tenants, "count": len(tenants)})


def _visible_tenant(tenant_id: str) -> str:
    """The tenant of the path; a request acting for another tenant gets the 404 of a
    tenant that does not exist (§6: no cross-tenant visibility, as for its jobs)."""
    tenant = parse_tenant(tenant_id, "tenant_id")
    acting = acting_tenant()
    if acting is not None and acting != tenant:
        raise not_found(tenant)
    return tenant


@blueprint.get("/ojs/v1/admin/tenants/<tenant_id>")
@blueprint.get("/ojs/v1/admin/tenants/<tenant_id>/stats")
async def tenant_stats(tenant_id: str) -> Response:
    """One tenant's job counts, in total, by state and by queue, its limits with their
    current values, its throughput and fairness (§10.2; this process's counts over the
    last minute); 404 for a tenant neither configured nor with any queue."""
    tenant = _visible_tenant(tenant_id)
    system = ojs_system()
    found = await _tenant_queues(system)
    queues = found.get(tenant)
    configs = await system.tenant_configs.list()
    config = configs.get(tenant)
    if queues is None and config is None:
        raise not_found(tenant)
    summary = _summary(tenant, queues or [], config)
    if config is not None:
        summary["limits"] = await _limits(system, summary, config)
    waiting = [
        owner
        for owner, owned in found.items()
        if any(counts.get(state, 0) for _, counts in owned for state in WAITING)
    ]
    summary["throughput"] = system.tenant_activity.throughput(tenant)
    summary["fairness"] = fairness(
        tenant, waiting, configs, system.fair_scheduler.dispatch_counts()
    )
    throttled = await throttle_of(system.backend, tenant, system.clock())
    if throttled is not None:
        summary["fairness"]["throttled"] = throttled
    return ojs_response({**summary, "computed_at": format_ms(system.clock())})


@blueprint.get("/ojs/v1/admin/tenants/<tenant_id>/jobs")
async def tenant_jobs(tenant_id: str) -> Response:
    """The tenant's jobs over all its queues (§10.3), as ``GET /ojs/v1/admin/jobs`` lists
    them (its filters, sorts and pages; ``queue`` as the tenant names it); 404 for a
    tenant neither configured nor with any queue."""
    tenant = _visible_tenant(tenant_id)
    system = ojs_system()
    page = query_page()
    query = query_job_listing(page)
    owned = frozenset(
        record["name"]
        for record in await system.list_queues()
        if split_shard(record["name"])[1] == tenant
    )
    if not owned and await system.tenant_configs.get(tenant) is None:
        raise not_found(tenant)
    if query.queue is not None:
        query = replace(query, queue=shard_of(check_client_queue(query.queue), tenant))
    jobs, total = await system.list_jobs(replace(query, queues=owned))
    return ojs_response({"items": [job.to_wire() for job in jobs], "pagination": page.wire(total)})


@blueprint.put("/ojs/v1/admin/tenants/<tenant_id>")
async def put_tenant(tenant_id: str) -> Response:
    """Create or replace a tenant's configuration (§10.1): 201 created, 200 replaced."""
    record, created = await ojs_system().tenant_configs.put(tenant_id, json_body())
    return ojs_response({"tenant": config_wire(record)}, 201 if created else 200)


@blueprint.put("/ojs/v1/admin/tenants/<tenant_id>/limits")
async def put_tenant_limits(tenant_id: str) -> Response:
    """Change some of a tenant's limits (§9.3), the others kept; ``null`` removes one."""
    record, created = await ojs_system().tenant_configs.update_limits(tenant_id, json_body())
    return ojs_response({"tenant": config_wire(record)}, 201 if created else 200)


@blueprint.delete("/ojs/v1/admin/tenants/<tenant_id>")
async def delete_tenant(tenant_id: str) -> Response:
    """Deregister a tenant: its configuration and limits go; its jobs stay."""
    system = ojs_system()
    await system.tenant_configs.delete(tenant_id)
    await system.tenant_guard.forget(tenant_id)
    return ojs_response({"deleted": True, "tenant_id": tenant_id})
