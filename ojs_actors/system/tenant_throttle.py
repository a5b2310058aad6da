"""Automatic noisy-neighbour throttling (ojs-multi-tenancy §9.1-9.2): a tenant crowding
the others out of shared workers gets a smaller weight in their fetches for a while.

Checked by a shared worker's fetch over tenants' queues (:meth:`NoisyNeighbours.weights`),
over those queues, at most every ``check_every_ms`` per queue set, from the backend's
counts. Two of §9.1's signals: a tenant's waiting jobs more than ``depth_ratio`` times
the median of the tenants with waiting work (and at least ``min_depth``), or its active
jobs more than ``active_share`` of them all (at least ``min_active`` active); only while
another tenant has waiting work (alone, a tenant crowds out nobody). The throttle
divides the tenant's weight by ``factor`` until ``throttle_ms`` later, then lifts
(time-bounded, §9.2). It is the snapshot ``tenantthrottle:<id>``, written by
compare-and-set with its event (``tenant.throttled``, then ``tenant.throttle_released``),
so every process sharing the backend applies it and each event is appended once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from statistics import median
from typing import Any

from ..backends import Backend, Snapshots
from ..core import State, format_ms
from ..core.events import envelope, new_event_id
from .clock import Clock
from .tenancy import split_shard
from .tenant_limits import WAITING

PREFIX = "tenantthrottle:"
MAX_CHECKED = 4096
"""Queue sets whose last check time is kept (the oldest forgotten past this)."""


class NoisyNeighbours:
    def __init__(
        self,
        backend: Backend,
        clock: Clock,
        refresh_ms: int,
        *,
        check_every_ms: int = 10_000,
        throttle_ms: int = 300_000,
        depth_ratio: float = 10.0,
        min_depth: int = 100,
        active_share: float = 0.5,
        min_active: int = 10,
        factor: float = 5.0,
    ) -> None:
        self._backend = backend
        self._clock = clock
        self._refresh_ms = refresh_ms
        self._check_every_ms = check_every_ms
        self._throttle_ms = throttle_ms
        self._depth_ratio = depth_ratio
        self._min_depth = min_depth
        self._active_share = active_share
        self._min_active = min_active
        self._factor = factor
        self._throttles: dict[str, dict[str, Any]] = {}
        self._loaded_at: int | None = None
        self._checked: dict[tuple[str, ...], int] = {}

    async def weights(
        self, queues: Sequence[str], weights: Mapping[str, float]
    ) -> Mapping[str, float]:
        """``weights`` (per queue) with throttled tenants' divided by ``factor``."""
        now = self._clock()
        if self._loaded_at is None or now - self._loaded_at >= self._refresh_ms:
            self._loaded_at = now  # the fetches meanwhile use what is known
            await self._reload(now)
        key = tuple(queues)
        last = self._checked.get(key)
        if last is None or now - last >= self._check_every_ms:
            if key not in self._checked and len(self._checked) >= MAX_CHECKED:
                self._checked.pop(next(iter(self._checked)))
            self._checked[key] = now
            await self._check(queues, weights, now)
        if not self._throttles:
            return weights
        return {
            queue: weight / self._factor if split_shard(queue)[1] in self._throttles else weight
            for queue, weight in weights.items()
        }

    def throttled(self) -> Mapping[str, dict[str, Any]]:
        """The throttles in force, as last read: tenant -> its record."""
        return self._throttles

    async def _reload(self, now: int) -> None:
        found: dict[str, dict[str, Any]] = {}
        for record in (await self._backend.list_snapshots(PREFIX)).values():
            if record.get("released"):
                continue
            if record["until"] <= now:
                await self._release(record["tenant_id"], now)
            else:
                found[record["tenant_id"]] = record
        self._throttles = found

    async def _check(self, queues: Sequence[str], weights: Mapping[str, float], now: int) -> None:
        waiting: dict[str, int] = {}
        active: dict[str, int] = {}
        weight: dict[str, float] = {}
        for queue in queues:
            tenant = split_shard(queue)[1]
            counts = await self._backend.count_jobs(queue)
            waiting[tenant] = waiting.get(tenant, 0) + sum(counts.get(s, 0) for s in WAITING)
            active[tenant] = active.get(tenant, 0) + counts.get(State.ACTIVE, 0)
            weight[tenant] = weights[queue]
        busy = [depth for depth in waiting.values() if depth]
        if len(busy) < 2:
            return
        typical = median(busy)
        all_active = sum(active.values())
        for tenant, depth in waiting.items():
            if tenant in self._throttles:
                continue
            if depth >= self._min_depth and depth > self._depth_ratio * typical:
                await self._throttle(tenant, "queue_depth_ratio_exceeded", weight[tenant], now)
            elif (
                all_active >= self._min_active
                and active[tenant] > self._active_share * all_active
                and any(waiting[other] for other in waiting if other != tenant)
            ):
                await self._throttle(tenant, "active_job_ratio_exceeded", weight[tenant], now)

    async def _throttle(self, tenant: str, reason: str, weight: float, now: int) -> None:
        key = PREFIX + tenant
        loaded = await self._backend.load_snapshot_versioned(key)
        if loaded is not None and not loaded[0].get("released"):
            return  # throttled meanwhile by another process
        until = now + self._throttle_ms
        data = {
            "tenant_id": tenant,
            "reason": reason,
            "action": "weight_reduced",
            "original_weight": weight,
            "effective_weight": weight / self._factor,
            "until": format_ms(until),
        }
        record = {**data, "until": until, "at": now}
        event = envelope("tenant.throttled", tenant, now, data, new_event_id())
        version = None if loaded is None else loaded[1]
        if await self._backend.save_snapshot_if(key, record, version, events=[event]):
            self._throttles[tenant] = record

    async def _release(self, tenant: str, now: int) -> None:
        key = PREFIX + tenant
        loaded = await self._backend.load_snapshot_versioned(key)
        if loaded is None or loaded[0].get("released") or loaded[0]["until"] > now:
            return
        record, version = loaded
        data = {
            "tenant_id": tenant,
            "reason": record["reason"],
            "throttled_at": format_ms(record["at"]),
        }
        event = envelope("tenant.throttle_released", tenant, now, data, new_event_id())
        await self._backend.save_snapshot_if(
            key, {**record, "released": True}, version, events=[event]
        )


async def throttle_of(snapshots: Snapshots, tenant: str, now: int) -> dict[str, Any] | None:
    """The throttle in force on ``tenant`` (as ``tenant.throttled`` told it), or ``None``."""
    record = await snapshots.load_snapshot(PREFIX + tenant)
    if record is None or record.get("released") or record["until"] <= now:
        return None
    return {
        "reason": record["reason"],
        "effective_weight": record["effective_weight"],
        "until": format_ms(record["until"]),
    }


__all__ = ["NoisyNeighbours", "throttle_of"]
