"""Keyed rate limits (ojs-rate-limiting): concurrency, sliding windows and throttles per
``rate_limit.key``, shared by every process over the backend.

A key's partition is the snapshot ``ratelimit:<key>``: its policy (the newest enqueued),
the ids of the jobs it admitted that may still be active, and its recent start times.
Admission is a compare-and-set on that snapshot (:meth:`Snapshots.save_snapshot_if`), so
two processes admitting jobs of one key at once cannot both take the last slot: the one
whose write loses reads the partition again and decides again. Counts cannot drift: a
holder counts only while its stored job is still ``active`` (read when deciding), so an
ack, a nack, a lease expiry or a cancellation through any process frees its slot without
a write of its own.

The queue's claim stays one atomic backend step; a claimed job that its key refuses is
handed back at once (``requeue``: the attempt is not spent) and stays ``available``
(``on_limit: "wait"``). :class:`KeyedLimiter` holds the partitions; :class:`KeyedAdmission`
is a QueueActor's use of them (policies registered at enqueue, admission and hand-back at
claim).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..backends import Backend
from ..core import Job, State, format_ms, lifecycle
from ..core.rate_policy import KeyedPolicy, keyed_policy
from .clock import Clock
from .queue_writes import TransitionWriter

PREFIX = "ratelimit:"
MAX_CAS_ATTEMPTS = 5
KEYED_CLAIM_ROUNDS = 3
"""Claims one fetch makes while jobs come back refused by their rate-limit keys."""


def policy_of(job: Job) -> KeyedPolicy | None:
    """The job's keyed policy (validated at enqueue, so it parses)."""
    return keyed_policy(job.rate_limit) if job.rate_limit else None


@dataclass(slots=True)
class Partition:
    """A key's stored state, as read."""

    policy: dict[str, Any]
    active: list[str]
    starts: list[int]
    version: int | None

    @classmethod
    def of(cls, loaded: tuple[dict[str, Any], int] | None) -> Partition:
        if loaded is None:
            return cls({}, [], [], None)
        state, version = loaded
        return cls(
            dict(state.get("policy") or {}),
            list(state.get("active") or []),
            list(state.get("starts") or []),
            version,
        )

    def record(self, key: str, now: int) -> dict[str, Any]:
        return {
            "key": key,
            "policy": self.policy,
            "active": self.active,
            "starts": self.starts,
            "updated_at": now,
        }


class KeyedLimiter:
    def __init__(self, backend: Backend, clock: Clock) -> None:
        self.backend = backend
        self.clock = clock

    async def register(self, jobs: Sequence[Job]) -> None:
        """Record the policy of each key among ``jobs`` (the newest wins), so the key can be
        inspected before any of its jobs starts."""
        newest: dict[str, dict[str, Any]] = {}
        for job in jobs:
            if policy_of(job) is not None:
                assert job.rate_limit is not None
                newest[job.rate_limit["key"]] = job.rate_limit
        for key, raw in newest.items():
            for _ in range(MAX_CAS_ATTEMPTS):
                part = Partition.of(await self.backend.load_snapshot_versioned(PREFIX + key))
                if part.version is not None and part.policy == raw:
                    break
                part.policy = raw
                saved = await self.backend.save_snapshot_if(
                    PREFIX + key, part.record(key, self.clock()), part.version
                )
                if saved is not None:
                    break

    async def admit(self, claimed: Sequence[Job]) -> tuple[list[Job], list[Job]]:
        """Split jobs just claimed into those their keys let start now and those to hand
        back; jobs without a keyed policy are admitted without a backend call."""
        admitted: list[Job] = []
        by_key: dict[str, list[tuple[Job, KeyedPolicy]]] = {}
        for job in claimed:
            policy = policy_of(job)
            if policy is None:
                admitted.append(job)
            else:
                by_key.setdefault(policy.key, []).append((job, policy))
        refused: list[Job] = []
        for key, group in by_key.items():
            taken = await self._admit_key(key, group)
            for job, _ in group:
                (admitted if job.id in taken else refused).append(job)
        return admitted, refused

    async def _admit_key(self, key: str, group: Sequence[tuple[Job, KeyedPolicy]]) -> set[str]:
        """The ids of ``group`` the key admits, booked by compare-and-set; none if the
        partition kept changing under us (they wait for the next fetch)."""
        for _ in range(MAX_CAS_ATTEMPTS):
            part = Partition.of(await self.backend.load_snapshot_versioned(PREFIX + key))
            now = self.clock()
            live = await self._still_active(part.active)
            keep_ms = max(policy.window_ms for _, policy in group)
            starts = [at for at in part.starts if at > now - keep_ms]
            taken: set[str] = set()
            for job, policy in group:
                if _allows(policy, job.id, live, starts, now):
                    taken.add(job.id)
                    if job.id not in live:
                        live.append(job.id)
                    if policy.window_ms:
                        starts.append(now)
            if not taken and live == part.active and starts == part.starts:
                return taken  # nothing to book
            part.active, part.starts = live, starts
            if not part.policy and group:
                part.policy = dict(group[-1][0].rate_limit or {})
            saved = await self.backend.save_snapshot_if(
                PREFIX + key, part.record(key, now), part.version
            )
            if saved is not None:
                return taken
        return set()

    async def _still_active(self, holders: list[str]) -> list[str]:
        if not holders:
            return []
        jobs = await self.backend.get_jobs(holders)
        return [
            job_id
            for job_id, job in zip(holders, jobs, strict=True)
            if job is not None and job.state is State.ACTIVE
        ]

    async def inspect(self, key: str) -> dict[str, Any] | None:
        """The partition's state (ojs-rate-limiting §10.1); ``None`` if the key is unknown."""
        loaded = await self.backend.load_snapshot_versioned(PREFIX + key)
        if loaded is None:
            return None
        part = Partition.of(loaded)
        return await self._describe(key, part)

    async def list(self) -> list[dict[str, Any]]:
        """Every known partition, by key (ojs-rate-limiting §10.3)."""
        records = await self.backend.list_snapshots(PREFIX)
        described = []
        for name in sorted(records):
            state = records[name]
            part = Partition.of((state, 0))
            described.append(await self._describe(name[len(PREFIX) :], part))
        return described

    async def _describe(self, key: str, part: Partition) -> dict[str, Any]:
        now = self.clock()
        policy = keyed_policy(part.policy) if part.policy else None
        live = await self._still_active(part.active)
        wire: dict[str, Any] = {"key": key, "policy": part.policy}
        if policy is None:
            return wire
        if policy.concurrency is not None:
            wire["concurrency"] = {
                "limit": policy.concurrency,
                "active": len(live),
                "available": max(policy.concurrency - len(live), 0),
            }
        else:
            wire["concurrency"] = {"limit": None, "active": len(live), "available": None}
        if policy.rate is not None:
            window = [at for at in part.starts if at > now - policy.rate.period_ms]
            wire["rate"] = {
                "limit": policy.rate.limit,
                "period_ms": policy.rate.period_ms,
                "current_count": len(window),
                "window_resets_at": format_ms(
                    (min(window) if window else now) + policy.rate.period_ms
                ),
            }
        gap = policy.throttle_gap_ms
        if policy.throttle is not None and gap is not None:
            last = max(part.starts, default=None)
            wire["throttle"] = {
                "limit": policy.throttle.limit,
                "period_ms": policy.throttle.period_ms,
                "next_allowed_at": format_ms(max(now, (last or now) + gap)),
            }
        return wire


def _allows(policy: KeyedPolicy, job_id: str, live: list[str], starts: list[int], now: int) -> bool:
    """Whether ``policy`` lets ``job_id`` start now, given the key's active holders and its
    recent starts (a job already holding a slot, reclaimed, keeps it)."""
    if policy.concurrency is not None:
        others = len(live) - (1 if job_id in live else 0)
        if others >= policy.concurrency:
            return False
    rate = policy.rate
    if rate is not None and sum(1 for at in starts if at > now - rate.period_ms) >= rate.limit:
        return False
    gap = policy.throttle_gap_ms
    return gap is None or not starts or now - max(starts) >= gap


class KeyedAdmission:
    """A QueueActor's keyed rate limits: the policies of the jobs it stores registered,
    the jobs it claims admitted by their keys, and those refused handed back at once."""

    def __init__(self, limiter: KeyedLimiter, writer: TransitionWriter) -> None:
        self._limiter = limiter
        self._writer = writer
        self.handing_back = False
        """Set while jobs refused by their rate-limit key go back: no ready wake-up for
        them (it would wake the fetch that was just refused, over and over)."""

    async def register(self, stored: Sequence[Job]) -> None:
        """Record the keyed policies among jobs just stored (none: no backend call)."""
        if any(job.rate_limit and "key" in job.rate_limit for job in stored):
            await self._limiter.register(stored)

    async def claim(self, count: int, take: Callable[[int], Awaitable[list[Job]]]) -> list[Job]:
        """Up to ``count`` admitted jobs of a fetch, ``take(n)`` claiming ``n`` more per
        round: refused jobs went back behind the others, so a round after them may find
        jobs their keys admit (at most :data:`KEYED_CLAIM_ROUNDS`)."""
        jobs: list[Job] = []
        for _ in range(KEYED_CLAIM_ROUNDS):
            admitted, refused = await self.admit(await take(count - len(jobs)))
            jobs.extend(admitted)
            if not refused or len(jobs) >= count:
                break
        return jobs

    async def admit(self, claimed: list[Job]) -> tuple[list[Job], list[Job]]:
        """The claimed jobs their rate-limit keys let start, and those refused, handed
        back to the queue at once (``available``, attempt unspent)."""
        if not any(job.rate_limit for job in claimed):
            return claimed, []
        admitted, refused = await self._limiter.admit(claimed)
        if refused:
            self.handing_back = True
            try:
                await self._writer.apply([(job.id, lifecycle.requeue) for job in refused])
            finally:
                self.handing_back = False
        return admitted, refused


def rate_headers(job: Job) -> dict[str, str]:
    """``X-RateLimit-Limit`` of an enqueue response for a job with a keyed window or
    throttle (ojs-rate-limiting §10.4): the most starts its key allows per window."""
    policy = policy_of(job)
    if policy is None:
        return {}
    window = policy.rate or policy.throttle
    if window is None:
        return {}
    return {"X-RateLimit-Limit": str(window.limit)}


__all__ = ["KeyedAdmission", "KeyedLimiter", "policy_of", "rate_headers"]
