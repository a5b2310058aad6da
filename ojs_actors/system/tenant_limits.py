"""A tenant's resource limits enforced (ojs-multi-tenancy §8): at enqueue
(``max_queue_depth``, ``max_scheduled``, ``max_enqueue_rate``: 429
``TENANT_LIMIT_EXCEEDED``) and at claim (``max_concurrency``).

Enqueue (:class:`TenantGuard`): a tenant's depth is its waiting jobs (every non-terminal
state but ``active``) and its scheduled jobs, counted by the backend over all its queues
(its shards, :mod:`.tenancy`) when a limited tenant enqueues; within one process a
tenant's enqueues are checked and stored one at a time, so the bounds are exact there.
Processes enqueueing for one tenant at the same instant may pass a depth bound by their
concurrent enqueues (as queue bounds may, :mod:`.backpressure`). The enqueue rate is a
sliding window booked by compare-and-set in the snapshot ``tenantusage:<id>``, exact
across processes; an enqueue refused for another reason after its booking still counts.
A batch is taken whole or refused whole.

Claim (:class:`TenantSlots`): the tenant's active jobs hold slots booked as keyed
rate-limit concurrency is (:class:`~.rate_limits.KeyedLimiter`, snapshot
``tenantslots:<id>``, compare-and-set), so processes sharing a backend never book more
than the limit: a claim at the limit takes nothing, and a job claimed past it (two
processes at once) is handed back at once, unspent. A job a crashed process claimed but
had not booked counts nowhere until its lease ends.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any, Protocol

import trio

from ..backends import Backend
from ..core import Job, State
from ..core.errors import TenantLimitExceeded
from ..core.events import envelope, new_event_id
from ..core.rate_policy import KeyedPolicy
from ..core.validation import PRIORITY_RANGE
from .backpressure import RETRY_AFTER_SECONDS
from .clock import Clock
from .tenancy import DEFAULT_TENANT, split_shard
from .tenant_config import RATE_LIMIT, TenantConfigs, period_ms

SLOTS_PREFIX = "tenantslots:"
USAGE_PREFIX = "tenantusage:"
MAX_CAS_ATTEMPTS = 8
REPORT_EVERY_MS = 1000
MAX_REPORTED = 10_000
WAITING = frozenset(state for state in State if not state.terminal and state is not State.ACTIVE)


def tenant_of(job: Job) -> str:
    tenant = (job.meta or {}).get("tenant_id")
    return tenant if isinstance(tenant, str) else DEFAULT_TENANT


class TenantGuard:
    """The enqueue side: limits checked (and the rate booked) before jobs are stored."""

    def __init__(self, backend: Backend, clock: Clock, configs: TenantConfigs) -> None:
        self._backend = backend
        self._clock = clock
        self.configs = configs
        self._locks: dict[str, trio.Lock] = {}
        self._reported: dict[tuple[str, str], int] = {}

    async def settle(self, jobs: Sequence[Job]) -> list[str]:
        """Each job's priority boosted by its tenant's ``priority_boost`` (§8.1); the
        tenants of ``jobs`` with an enqueue limit, to hold through :meth:`admitting`."""
        await self.configs.refresh()
        if not self.configs.any_configured:
            return []
        low, high = PRIORITY_RANGE
        for job in jobs:
            config = self.configs.cached(tenant_of(job))
            if config and config.get("priority_boost"):
                job.priority = min(max(job.priority + config["priority_boost"], low), high)
        found = []
        for tenant in sorted({tenant_of(job) for job in jobs}):
            config = self.configs.cached(tenant)
            if config and any(name != "max_concurrency" for name in config.get("limits", {})):
                found.append(tenant)
        return found

    @asynccontextmanager
    async def admitting(self, tenants: Sequence[str], jobs: Sequence[Job]) -> Any:
        """Hold the tenants' enqueue turns while ``jobs`` are checked (here) and stored
        (in the block); :class:`TenantLimitExceeded` if any tenant's limit refuses them."""
        async with AsyncExitStack() as stack:
            for tenant in tenants:  # sorted: two batches cannot wait on each other
                await stack.enter_async_context(self._locks.setdefault(tenant, trio.Lock()))
            try:
                for tenant in tenants:
                    await self._check(tenant, [job for job in jobs if tenant_of(job) == tenant])
            except TenantLimitExceeded as error:
                await self._report(error)
                raise
            yield

    async def _check(self, tenant: str, jobs: Sequence[Job]) -> None:
        config = self.configs.cached(tenant) or {}
        limits = config.get("limits", {})
        if "max_queue_depth" in limits or "max_scheduled" in limits:
            counts = await self.counts(tenant)
            waiting = sum(counts.get(state, 0) for state in WAITING)
            self._within(tenant, "max_queue_depth", limits, waiting, len(jobs))
            scheduled = sum(job.state is State.SCHEDULED for job in jobs)
            if scheduled:
                current = counts.get(State.SCHEDULED, 0)
                self._within(tenant, "max_scheduled", limits, current, scheduled)
        if RATE_LIMIT in limits:
            await self._book_rate(tenant, limits[RATE_LIMIT], len(jobs))

    def _within(
        self, tenant: str, name: str, limits: dict[str, Any], current: int, more: int
    ) -> None:
        maximum = limits.get(name)
        if maximum is not None and current + more > maximum:
            raise self._refused(tenant, name, current, maximum)

    @staticmethod
    def _refused(tenant: str, name: str, current: int, maximum: int) -> TenantLimitExceeded:
        return TenantLimitExceeded(tenant, name, current, maximum, retry_after=RETRY_AFTER_SECONDS)

    async def counts(self, tenant: str) -> dict[State, int]:
        """The tenant's jobs by state over all its queues."""
        totals: dict[State, int] = {}
        for record in (await self._backend.list_snapshots("queue:")).values():
            if split_shard(record["name"])[1] == tenant:
                for state, count in (await self._backend.count_jobs(record["name"])).items():
                    totals[state] = totals.get(state, 0) + count
        return totals

    async def _book_rate(self, tenant: str, rate: dict[str, Any], size: int) -> None:
        window = period_ms(rate)
        key = USAGE_PREFIX + tenant
        for _ in range(MAX_CAS_ATTEMPTS):
            loaded = await self._backend.load_snapshot_versioned(key)
            state, version = loaded if loaded else ({}, None)
            now = self._clock()
            recent = [at for at in state.get("enqueued_at", []) if at > now - window]
            if len(recent) + size > rate["limit"]:
                raise self._refused(tenant, RATE_LIMIT, len(recent), rate["limit"])
            record = {"tenant_id": tenant, "enqueued_at": [*recent, *([now] * size)]}
            if await self._backend.save_snapshot_if(key, record, version) is not None:
                return
        raise self._refused(tenant, RATE_LIMIT, rate["limit"], rate["limit"])

    async def recent_enqueues(self, tenant: str, rate: dict[str, Any]) -> int:
        """Enqueues counted in the tenant's current rate window."""
        state = await self._backend.load_snapshot(USAGE_PREFIX + tenant) or {}
        since = self._clock() - period_ms(rate)
        return sum(1 for at in state.get("enqueued_at", []) if at > since)

    async def _report(self, error: TenantLimitExceeded) -> None:
        """Append ``tenant.limit_exceeded`` (§11.1) for a refusal, in a write of the usage
        snapshot: at most one a second per tenant and limit from this process, so a flood
        of refused enqueues does not become a flood of writes."""
        tenant, name = error.details["tenant_id"], error.details["limit"]
        now = self._clock()
        if now - self._reported.get((tenant, name), -REPORT_EVERY_MS) < REPORT_EVERY_MS:
            return
        if len(self._reported) >= MAX_REPORTED:
            self._reported.pop(next(iter(self._reported)))
        self._reported[(tenant, name)] = now
        event = envelope("tenant.limit_exceeded", tenant, now, dict(error.details), new_event_id())
        key = USAGE_PREFIX + tenant
        for _ in range(MAX_CAS_ATTEMPTS):
            loaded = await self._backend.load_snapshot_versioned(key)
            state, version = loaded if loaded else ({"tenant_id": tenant}, None)
            record = {**state, "last_exceeded": {"limit": error.details["limit"], "at": now}}
            if await self._backend.save_snapshot_if(key, record, version, events=[event]):
                return

    async def forget(self, tenant: str) -> None:
        """Drop a deregistered tenant's usage (its enqueue window and slot bookings)."""
        for key in (USAGE_PREFIX + tenant, SLOTS_PREFIX + tenant):
            await self._backend.delete_snapshot(key)


class SlotBook(Protocol):
    """Concurrency slots booked by compare-and-set (a
    :class:`~.rate_limits.KeyedLimiter` under :data:`SLOTS_PREFIX`)."""

    async def holders(self, key: str) -> list[str]: ...

    async def admit_key(self, key: str, group: Sequence[tuple[Job, KeyedPolicy]]) -> set[str]: ...


class TenantSlots:
    """A QueueActor's share of its tenant's ``max_concurrency`` (the queue's jobs all
    belong to the tenant its name says, :func:`~.tenancy.split_shard`)."""

    def __init__(self, configs: TenantConfigs, limiter: SlotBook, queue: str) -> None:
        self._configs = configs
        self._limiter = limiter
        self.tenant = split_shard(queue)[1]

    def _limit(self) -> int | None:
        config = self._configs.cached(self.tenant)
        limit = config.get("limits", {}).get("max_concurrency") if config else None
        return limit if isinstance(limit, int) else None

    def limited(self) -> bool:
        return self._limit() is not None

    async def room(self) -> int | None:
        """Jobs the tenant may start now; ``None``: no concurrency limit."""
        await self._configs.refresh()
        limit = self._limit()
        if limit is None:
            return None
        return limit - len(await self._limiter.holders(self.tenant))

    async def admit(self, claimed: list[Job]) -> tuple[list[Job], list[Job]]:
        """Book slots for jobs just claimed: those admitted, those to hand back."""
        limit = self._limit()
        if limit is None:
            return claimed, []
        policy = KeyedPolicy(self.tenant, concurrency=limit)
        taken = await self._limiter.admit_key(self.tenant, [(job, policy) for job in claimed])
        return (
            [job for job in claimed if job.id in taken],
            [job for job in claimed if job.id not in taken],
        )


__all__ = ["SLOTS_PREFIX", "SlotBook", "TenantGuard", "TenantSlots", "WAITING", "tenant_of"]
