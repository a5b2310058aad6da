"""Per-tenant metrics (ojs-multi-tenancy §11.2, MT-006), labelled ``tenant_id`` and
``queue`` (the queue as the tenant named it; a job naming no tenant is ``_default``'s).

Counted as stored (:meth:`TenantFlow.record`, told of each change by
:class:`~.job_flow.JobFlow`): ``ojs_tenant_jobs_enqueued_total``,
``ojs_tenant_jobs_processed_total`` (jobs that reached completed or were discarded by a
failure) and ``ojs_tenant_jobs_failed_total`` (the latter). At scrape time, from the
backend's counts by queue: ``ojs_tenant_jobs_active`` and ``ojs_tenant_queue_depth``
(waiting jobs: every non-terminal state but active). Past :data:`MAX_TENANTS` distinct
tenants in a process, the rest count under ``tenant_id="_other"`` (§15.4).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from prometheus_client.core import Metric

from ...core import Job, State
from ..tenancy import split_shard
from ..tenant_activity import processed
from .families import gauge
from .instruments import Instruments

MAX_TENANTS = 1000
OTHER_TENANT = "_other"
_WAITING = tuple(state for state in State if not state.terminal and state is not State.ACTIVE)


class TenantFlow:
    def __init__(self, instruments: Instruments) -> None:
        labels = ["tenant_id", "queue"]
        self._enqueued = instruments.counter(
            "ojs_tenant_jobs_enqueued", "Jobs stored by an enqueue, per tenant.", labels
        )
        self._processed = instruments.counter(
            "ojs_tenant_jobs_processed",
            "Jobs that reached completed or were discarded by a failure, per tenant.",
            labels,
        )
        self._failed = instruments.counter(
            "ojs_tenant_jobs_failed", "Jobs discarded by a failure, per tenant.", labels
        )
        self._tenants: set[str] = set()

    def record(self, before: State | None, job: Job) -> None:
        state = job.state
        if before is None:
            counter = self._enqueued
        elif processed(before, state):
            counter = self._processed
        else:
            return
        queue, tenant = split_shard(job.queue)
        labels = (self.label(tenant), queue)
        counter.child(*labels).inc()
        if counter is self._processed and state is State.DISCARDED:
            self._failed.child(*labels).inc()

    def label(self, tenant: str) -> str:
        if tenant in self._tenants:
            return tenant
        if len(self._tenants) >= MAX_TENANTS:
            return OTHER_TENANT
        self._tenants.add(tenant)
        return tenant


def tenant_families(counts: Mapping[str, Mapping[State, int]]) -> Iterator[Metric]:
    """The scrape-time gauges, from every queue's jobs by state."""
    rows: dict[tuple[str, str], list[int]] = {}
    tenants: set[str] = set()
    for name, by_state in counts.items():
        queue, tenant = split_shard(name)
        if tenant not in tenants and len(tenants) >= MAX_TENANTS:
            tenant = OTHER_TENANT
        tenants.add(tenant)
        row = rows.setdefault((tenant, queue), [0, 0])
        row[0] += by_state.get(State.ACTIVE, 0)
        row[1] += sum(by_state.get(state, 0) for state in _WAITING)
    yield gauge(
        "ojs_tenant_jobs_active",
        "Active jobs per tenant and queue, as the backend counts them at scrape time.",
        ["tenant_id", "queue"],
        (([tenant, queue], row[0]) for (tenant, queue), row in sorted(rows.items())),
    )
    yield gauge(
        "ojs_tenant_queue_depth",
        "Waiting jobs (every non-terminal state but active) per tenant and queue, at scrape time.",
        ["tenant_id", "queue"],
        (([tenant, queue], row[1]) for (tenant, queue), row in sorted(rows.items())),
    )


__all__ = ["MAX_TENANTS", "OTHER_TENANT", "TenantFlow", "tenant_families"]
