"""Fair scheduling (ojs-fair-scheduling): worker pools and the order a multi-queue fetch
claims in.

A pool (§6.1) is persisted as the snapshot ``pool:<name>`` (versioned, so replicas sharing a
networked backend read the same pools; each process re-reads them at most every poll
interval). A fetch over several queues that all belong to a pool claims in that pool's
strategy (§7): ``strict`` (the fetch's order, which is also what a fetch without a pool
does), ``round-robin`` (each fetch starts after the queue the last one got jobs from, an
empty queue skipped) or ``weighted``, by smooth weighted round-robin (nginx's): over any
run of fetches each queue gets its share of claim turns, and a queue with weight > 0
gets a turn within ``sum(weights)`` picks (§7.3's bounded time). A queue with nothing
ready gives its turn to the next, so no claim slot is wasted. A shared worker's fetch
over tenants' queues (:class:`~.tenancy.ShardDirectory`) goes round-robin when no pool
covers it (per-tenant fairness, §9).

Dispatch counts for the statistics (§10.2) are this process's, by second over the last
minute. Single-queue fetches (the hot path) only add to those counts.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Any

from ..backends import Snapshots
from ..core import InvalidRequest, NotFound, format_ms, parse_queue_name
from .clock import Clock

STRATEGIES = ("strict", "round-robin", "weighted")
MAX_WEIGHT = 1_000_000
WINDOW_SECONDS = 60
MAX_ROTATIONS = 4096
"""Queue sets whose round-robin position is kept (the oldest forgotten past this)."""
MAX_COUNTED_QUEUES = 10_000


class FairScheduler:
    def __init__(self, snapshots: Snapshots, clock: Clock, refresh_ms: int) -> None:
        self._snapshots = snapshots
        self._clock = clock
        self._refresh_ms = refresh_ms
        self._pools: list[dict[str, Any]] = []
        self._loaded_at: int | None = None
        self._credit: dict[tuple[str, ...], dict[str, int]] = {}
        self._next: dict[tuple[str, ...], int] = {}
        self._dispatched: dict[str, deque[list[int]]] = {}

    # -- the fetch path -------------------------------------------------------------------

    async def plan(
        self, queues: Sequence[str], count: int, *, fair: bool = False
    ) -> list[tuple[str, int]] | None:
        """How many jobs to claim from which queue first, in order, for a fetch of
        ``count`` over ``queues``; ``None`` for the fetch's own order (no pool applies,
        or its strategy is ``strict``). ``fair``: round-robin when no pool applies (a
        shared worker's fetch over tenants' queues, ojs-fair-scheduling §9). The caller
        fills any shortfall from the others."""
        pool = await self._pool_for(queues)
        if pool is None:
            return self._rotation(tuple(queues), count) if fair else None
        if pool["strategy"] == "round-robin":
            return self._rotation(tuple(queues), count)
        if pool["strategy"] == "strict":
            return None
        weights = pool.get("weights", {})
        return self._picks(tuple(queues), {q: weights.get(q, 1) for q in queues}, count)

    def _rotation(self, key: tuple[str, ...], count: int) -> list[tuple[str, int]]:
        """Round-robin (§7.1): the queues from the one after the last that gave jobs
        (:meth:`advance`), an equal share of ``count`` each; an empty queue is skipped."""
        start = self._next.get(key, 0) % len(key)
        share = -(-count // len(key))
        return [(queue, share) for queue in (*key[start:], *key[:start])]

    def advance(self, queues: Sequence[str], last: str) -> None:
        """A fetch over ``queues`` got jobs from ``last`` last: the next starts after it."""
        key = tuple(queues)
        if key not in self._next and len(self._next) >= MAX_ROTATIONS:
            self._next.pop(next(iter(self._next)))
        self._next[key] = key.index(last) + 1

    def _picks(
        self, key: tuple[str, ...], weights: dict[str, int], count: int
    ) -> list[tuple[str, int]]:
        credit = self._credit.get(key)
        if credit is None:
            if len(self._credit) >= MAX_ROTATIONS:
                self._credit.pop(next(iter(self._credit)))
            credit = self._credit[key] = dict.fromkeys(key, 0)
        total = sum(weights.values())
        asks: dict[str, int] = {}
        for _ in range(count):
            for queue in key:
                credit[queue] += weights[queue]
            chosen = max(key, key=credit.__getitem__)
            credit[chosen] -= total
            asks[chosen] = asks.get(chosen, 0) + 1
        return list(asks.items())

    async def _pool_for(self, queues: Sequence[str]) -> dict[str, Any] | None:
        now = self._clock()
        if self._loaded_at is None or now - self._loaded_at >= self._refresh_ms:
            self._pools = sorted(
                (await self._snapshots.list_snapshots("pool:")).values(),
                key=lambda pool: pool["name"],
            )
            self._loaded_at = now
        wanted = set(queues)
        for pool in self._pools:
            if wanted <= set(pool["queues"]):
                return pool
        return None

    def dispatched(self, queue: str, jobs: int) -> None:
        """Count ``jobs`` claimed from ``queue`` now (for :meth:`stats`)."""
        second = self._clock() // 1000
        buckets = self._dispatched.get(queue)
        if buckets is None:
            if len(self._dispatched) >= MAX_COUNTED_QUEUES:
                self._dispatched.pop(next(iter(self._dispatched)))
            buckets = self._dispatched[queue] = deque()
        if buckets and buckets[-1][0] == second:
            buckets[-1][1] += jobs
        else:
            buckets.append([second, jobs])
            while buckets[0][0] <= second - WINDOW_SECONDS:
                buckets.popleft()

    def dispatch_counts(self) -> dict[str, int]:
        """Jobs claimed per queue by this process over the last minute."""
        since = self._clock() // 1000 - WINDOW_SECONDS
        counts = {
            queue: sum(n for second, n in buckets if second > since)
            for queue, buckets in self._dispatched.items()
        }
        return {queue: n for queue, n in counts.items() if n}

    # -- pools ----------------------------------------------------------------------------

    async def put_pool(self, name: str, body: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """Create or replace pool ``name`` from a §10.1 body; ``(pool, created)``."""
        pool = parse_pool(name, body)
        key = f"pool:{pool['name']}"
        now = self._clock()
        while True:
            found = await self._snapshots.load_snapshot_versioned(key)
            pool["created_at"] = found[0]["created_at"] if found else now
            pool["updated_at"] = now
            version = None if found is None else found[1]
            if await self._snapshots.save_snapshot_if(key, pool, version) is not None:
                self._loaded_at = None
                return pool, found is None

    async def list_pools(self) -> list[dict[str, Any]]:
        pools = await self._snapshots.list_snapshots("pool:")
        return sorted(pools.values(), key=lambda pool: pool["name"])

    async def get_pool(self, name: str) -> dict[str, Any]:
        pool = await self._snapshots.load_snapshot(f"pool:{name}")
        if pool is None:
            raise _pool_not_found(name)
        return pool

    async def delete_pool(self, name: str) -> None:
        if not await self._snapshots.delete_snapshot(f"pool:{name}"):
            raise _pool_not_found(name)
        self._loaded_at = None


def parse_pool(name: str, body: dict[str, Any]) -> dict[str, Any]:
    """A pool record from a PUT body: ``queues`` as §6.1's array (with ``weights``) or as the
    conformance suite's object ``{queue: {"weight": n}}``; 400 naming the field at fault."""
    if body.get("name", name) != name:
        raise InvalidRequest(
            "'name' must match the pool name in the path.", details={"field": "name"}
        )
    parse_queue_name(name, "name")
    strategy = body.get("strategy", "round-robin")
    if strategy not in STRATEGIES:
        raise InvalidRequest(
            f"'strategy' must be one of {', '.join(STRATEGIES)}.",
            details={"field": "strategy", "received": strategy},
        )
    raw_queues = body.get("queues")
    weights: dict[str, Any] = dict(body.get("weights") or {})
    if isinstance(raw_queues, dict):
        queues = list(raw_queues)
        for queue, spec in raw_queues.items():
            if not isinstance(spec, dict):
                raise InvalidRequest(
                    "Each entry of 'queues' must be an object such as {\"weight\": 1}.",
                    details={"field": f"queues.{queue}"},
                )
            if "weight" in spec:
                weights[queue] = spec["weight"]
    elif isinstance(raw_queues, list) and all(isinstance(q, str) for q in raw_queues):
        queues = list(raw_queues)
    else:
        raise InvalidRequest(
            "'queues' is required: an array of queue names or an object of queue weights.",
            details={"field": "queues"},
        )
    if not queues:
        raise InvalidRequest("'queues' must name at least one queue.", details={"field": "queues"})
    for queue in queues:
        parse_queue_name(queue, "queues[]")
    for queue, weight in weights.items():
        if queue not in queues:
            raise InvalidRequest(
                f"Weight given for '{queue}', which is not one of the pool's queues.",
                details={"field": "weights", "queue": queue},
            )
        if isinstance(weight, bool) or not isinstance(weight, int) or not 1 <= weight <= MAX_WEIGHT:
            raise InvalidRequest(
                f"The weight of '{queue}' must be an integer from 1 to {MAX_WEIGHT}.",
                details={"field": "weights", "queue": queue, "received": weight},
            )
    pool: dict[str, Any] = {"name": name, "strategy": strategy, "queues": queues}
    if weights:
        pool["weights"] = weights
    concurrency = body.get("concurrency")
    if concurrency is not None:
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise InvalidRequest(
                "'concurrency' must be a positive integer.", details={"field": "concurrency"}
            )
        pool["concurrency"] = concurrency
    return pool


def pool_wire(pool: dict[str, Any]) -> dict[str, Any]:
    wire = {k: v for k, v in pool.items() if k not in ("created_at", "updated_at")}
    for stamp in ("created_at", "updated_at"):
        if pool.get(stamp) is not None:
            wire[stamp] = format_ms(pool[stamp])
    return wire


def _pool_not_found(name: str) -> NotFound:
    return NotFound(
        f"Pool '{name}' not found.", details={"resource_type": "pool", "resource_id": name}
    )


__all__ = ["FairScheduler", "parse_pool", "pool_wire"]
