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
over tenants' queues (:class:`~.tenancy.ShardDirectory`) that no pool covers claims by
the same smooth weighted round-robin, each queue weighted by its tenant's
``fairness_weight`` (ojs-multi-tenancy §7.2; :meth:`FairScheduler.weighted_turns`).

Dispatch counts for the statistics (§10.2) are this process's, by second over the last
minute (:class:`MinuteCounts`). Single-queue fetches (the hot path) only add to those counts.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Collection, Mapping, Sequence
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
        self._credit: dict[tuple[str, ...], dict[str, float]] = {}
        self._resting: dict[tuple[str, ...], dict[str, float]] = {}
        self._next: dict[tuple[str, ...], int] = {}
        self._dispatched = MinuteCounts(clock)

    # -- the fetch path -------------------------------------------------------------------

    async def covered(self, queues: Sequence[str]) -> bool:
        """Whether a pool covers ``queues`` (its strategy then orders their claims)."""
        return await self._pool_for(queues) is not None

    async def plan(self, queues: Sequence[str], count: int) -> list[tuple[str, int]] | None:
        """How many jobs to claim from which queue first, in order, for a fetch of
        ``count`` over ``queues``; ``None`` for the fetch's own order (no pool applies,
        or its strategy is ``strict``). The caller fills any shortfall from the others."""
        pool = await self._pool_for(queues)
        if pool is None:
            return None
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

    def weighted_turns(
        self,
        queues: Sequence[str],
        weights: Mapping[str, float],
        count: int,
        skip: Collection[str] = (),
    ) -> tuple[list[tuple[str, int]], tuple[str, ...]]:
        """``count`` claim turns over ``queues`` but ``skip`` by smooth weighted round-robin
        (the credits kept per queue set), as ``(queue, turns)`` in order of first turn,
        and the queues they were shared among: those not resting (found empty lately,
        :meth:`give_back`), or all of them if every one is. Turns a queue could not use
        go back with :meth:`give_back`."""
        key = tuple(queues)
        resting = self._resting.get(key)
        eligible = tuple(q for q in key if q not in skip)
        if resting:
            eligible = tuple(q for q in eligible if q not in resting) or eligible
        return self._picks(key, weights, count, eligible), eligible

    def give_back(
        self,
        queues: Sequence[str],
        weights: Mapping[str, float],
        eligible: Sequence[str],
        unused: Mapping[str, int],
        used: int,
    ) -> None:
        """Undo the turns of :meth:`weighted_turns` (over ``eligible``) that queues could
        not use, ``{queue: turns}`` (``used``: how many were used): they had fewer jobs ready, so the turns go to the
        others rather than being owed to them. A turn only adds each weight and takes the
        total from the chosen queue, so undoing some is exact. Each such queue then rests:
        it is left out of the turns for as many used turns as its share of every weight
        (``sum / weight``), so an empty queue costs a claim about once in its turn and the
        others' credits do not drift while it has nothing."""
        key = tuple(queues)
        credit = self._credit.get(key)
        if credit is None:
            return
        total = sum(weights[queue] for queue in eligible)
        every = sum(weights[queue] for queue in key)
        resting = self._resting.setdefault(key, {})
        for queue in list(resting):
            resting[queue] -= used
            if resting[queue] <= 0:
                del resting[queue]
        for queue, turns in unused.items():
            for other in eligible:
                credit[other] -= weights[other] * turns
            credit[queue] += total * turns
            resting[queue] = every / weights[queue]

    def _picks(
        self,
        key: tuple[str, ...],
        weights: Mapping[str, float],
        count: int,
        eligible: Sequence[str] | None = None,
    ) -> list[tuple[str, int]]:
        credit = self._credit.get(key)
        if credit is None:
            if len(self._credit) >= MAX_ROTATIONS:
                evicted = next(iter(self._credit))
                self._credit.pop(evicted)
                self._resting.pop(evicted, None)
            credit = self._credit[key] = dict.fromkeys(key, 0.0)
        among = key if eligible is None else eligible
        if not among:
            return []
        total = sum(weights[queue] for queue in among)
        asks: dict[str, int] = {}
        for _ in range(count):
            for queue in among:
                credit[queue] += weights[queue]
            chosen = max(among, key=credit.__getitem__)
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
        """Count ``jobs`` claimed from ``queue`` now (for :meth:`dispatch_counts`)."""
        self._dispatched.add(queue, jobs)

    def dispatch_counts(self) -> dict[str, int]:
        """Jobs claimed per queue by this process over the last minute."""
        return self._dispatched.counts()

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


class MinuteCounts:
    """Counts by key over the last minute, in buckets of a second (this process's); at
    most ``capacity`` keys, the oldest forgotten past it."""

    def __init__(self, clock: Clock, capacity: int = MAX_COUNTED_QUEUES) -> None:
        self._clock = clock
        self._capacity = capacity
        self._buckets: dict[str, deque[list[int]]] = {}

    def add(self, key: str, n: int = 1) -> None:
        second = self._clock() // 1000
        buckets = self._buckets.get(key)
        if buckets is None:
            if len(self._buckets) >= self._capacity:
                self._buckets.pop(next(iter(self._buckets)))
            buckets = self._buckets[key] = deque()
        if buckets and buckets[-1][0] == second:
            buckets[-1][1] += n
        else:
            buckets.append([second, n])
            while buckets[0][0] <= second - WINDOW_SECONDS:
                buckets.popleft()

    def counts(self) -> dict[str, int]:
        """Each key's count over the last minute (keys counting 0 left out)."""
        since = self._clock() // 1000 - WINDOW_SECONDS
        counts = {
            key: sum(n for second, n in buckets if second > since)
            for key, buckets in self._buckets.items()
        }
        return {key: n for key, n in counts.items() if n}


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


__all__ = ["FairScheduler", "MinuteCounts", "parse_pool", "pool_wire"]
