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
handed back at once, its attempt unspent, as its ``on_limit`` says: ``available``
(``"wait"``), ``scheduled`` for when the key should admit it (``"reschedule"``) or
discarded (``"drop"``). The partition also holds an operator's override of the limits,
the jobs refused and not admitted since, and whether the key is refusing, from which
come the ``rate_limit.*`` events, written in the same compare-and-set, and the key's
pause (:mod:`.rate_limit_partition`, :mod:`.rate_limit_pause`). :class:`KeyedLimiter` holds the partitions; :class:`KeyedAdmission` is a QueueActor's use
of them (policies registered at enqueue, admission and hand-back at claim).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

from ..backends import Backend
from ..core import Job, State, lifecycle
from ..core.rate_policy import KeyedPolicy, keyed_policy, overridden
from .clock import Clock
from .queue_writes import TransitionWriter
from .rate_limit_partition import Decision, Partition, decide, set_policy
from .transitions import Transition

if TYPE_CHECKING:
    from .tenant_limits import TenantSlots

PREFIX = "ratelimit:"
MAX_CAS_ATTEMPTS = 5
KEYED_CLAIM_ROUNDS = 3
"""Claims one fetch makes while jobs come back refused by their rate-limit keys."""


def policy_of(job: Job) -> KeyedPolicy | None:
    """The job's keyed policy (validated at enqueue, so it parses)."""
    return keyed_policy(job.rate_limit) if job.rate_limit else None


class KeyedLimiter:
    def __init__(self, backend: Backend, clock: Clock, *, prefix: str = PREFIX) -> None:
        """``prefix``: of the partitions' snapshot keys (another than the rate-limit keys'
        books slots without the ``rate_limit.*`` events)."""
        self.backend = backend
        self.clock = clock
        self.prefix = prefix

    async def register(self, jobs: Sequence[Job]) -> None:
        """Record the policy of each key among ``jobs`` (the newest wins), so the key can be
        inspected before any of its jobs starts."""
        newest: dict[str, dict[str, Any]] = {}
        for job in jobs:
            if policy_of(job) is not None:
                assert job.rate_limit is not None
                newest[job.rate_limit["key"]] = job.rate_limit
        for key, raw in newest.items():
            await self.update(key, partial(set_policy, raw))

    limits_all = False
    """Whether every job claimed is limited (a queue's own limit, :mod:`.queue_rate_limit`)."""

    async def refresh(self) -> None:
        """Re-read what :attr:`limits_all` depends on (nothing, here)."""

    async def update(
        self,
        key: str,
        change: Callable[[Partition], bool],
        *,
        create: bool = True,
        events: Sequence[dict[str, Any]] = (),
    ) -> Partition | None:
        """Apply ``change`` to the key's partition by compare-and-set (it returns whether
        it changed anything); the partition as stored, ``None`` if the key is unknown
        and ``create`` is false. ``events`` (which ``change`` may fill) go with the write."""
        for _ in range(MAX_CAS_ATTEMPTS):
            part = Partition.of(await self.backend.load_snapshot_versioned(self.prefix + key))
            if part.version is None and not create:
                return None
            if not change(part) and part.version is not None:
                return part
            saved = await self.backend.save_snapshot_if(
                self.prefix + key, part.record(key, self.clock()), part.version, events=events
            )
            if saved is not None:
                part.version = saved
                return part
        return None

    async def admit(self, claimed: Sequence[Job]) -> tuple[list[Job], dict[str, Transition]]:
        """Split jobs just claimed into those their keys let start now and those to hand
        back (each with its transition); jobs without a keyed policy are admitted
        without a backend call."""
        admitted: list[Job] = []
        by_key: dict[str, list[tuple[Job, KeyedPolicy]]] = {}
        for job in claimed:
            policy = policy_of(job)
            if policy is None:
                admitted.append(job)
            else:
                by_key.setdefault(policy.key, []).append((job, policy))
        refused: dict[str, Transition] = {}
        for key, group in by_key.items():
            decision = await self._admit_key(key, group)
            for job, _ in group:
                if job.id in decision.taken:
                    admitted.append(job)
                else:
                    refused[job.id] = decision.refused.get(job.id, lifecycle.requeue)
        return admitted, refused

    async def holders(self, key: str) -> list[str]:
        """The jobs holding a slot of ``key`` that are still active."""
        loaded = await self.backend.load_snapshot_versioned(self.prefix + key)
        return await self._still_active(Partition.of(loaded).active)

    async def admit_key(self, key: str, group: Sequence[tuple[Job, KeyedPolicy]]) -> set[str]:
        """The ids of ``group`` the key admits, booked (the others wait: no events)."""
        return (await self._admit_key(key, group)).taken

    async def _admit_key(self, key: str, group: Sequence[tuple[Job, KeyedPolicy]]) -> Decision:
        """What the key decides for ``group``, booked by compare-and-set; nothing taken
        if the partition kept changing under us (they wait for the next fetch)."""
        for _ in range(MAX_CAS_ATTEMPTS):
            part = Partition.of(await self.backend.load_snapshot_versioned(self.prefix + key))
            now = self.clock()
            live = await self._still_active(part.active)
            policies = [(job, overridden(p, part.override, now)) for job, p in group]
            keep_ms = max((policy.window_ms for _, policy in policies), default=0)
            starts = [at for at in part.starts if at > now - keep_ms]
            before = (live[:], starts[:], dict(part.waiting), part.exceeded)
            decision = decide(key, part, policies, live, starts, now)
            if self.prefix != PREFIX:  # slots of something else than a rate-limit key
                decision.events, part.waiting, part.exceeded = [], {}, None
            if not decision.events and (live, starts, part.waiting, part.exceeded) == before:
                return decision  # nothing to book
            part.active, part.starts = live, starts
            if not part.policy and group and not key.startswith("@"):  # "@queue:": §7.2
                part.policy = dict(group[-1][0].rate_limit or {})
            saved = await self.backend.save_snapshot_if(
                self.prefix + key, part.record(key, now), part.version, events=decision.events
            )
            if saved is not None:
                return decision
        return Decision()

    async def _still_active(self, holders: list[str]) -> list[str]:
        return await self.jobs_in(holders, (State.ACTIVE,))

    async def jobs_in(self, ids: list[str], states: tuple[State, ...]) -> list[str]:
        if not ids:
            return []
        jobs = await self.backend.get_jobs(ids)
        return [
            job_id
            for job_id, job in zip(ids, jobs, strict=True)
            if job is not None and job.state in states
        ]


class KeyedAdmission:
    """A QueueActor's keyed rate limits: the policies of the jobs it stores registered,
    the jobs it claims admitted by their keys, and those refused handed back at once."""

    def __init__(
        self, limiter: KeyedLimiter, writer: TransitionWriter, tenant: TenantSlots | None = None
    ) -> None:
        self._limiter = limiter
        self._writer = writer
        self.tenant = tenant
        """The concurrency limit of the queue's tenant (ojs-multi-tenancy §8.1), if any."""
        self.handing_back = False
        """Set while jobs refused by their rate-limit key go back: no ready wake-up for
        them (it would wake the fetch that was just refused, over and over)."""

    def slot_limited(self) -> bool:
        """Whether a job of the queue leaving ``active`` may let a waiting one start: the
        queue's tenant or the queue itself limits concurrency."""
        tenant = self.tenant
        return (tenant is not None and tenant.limited()) or self._limiter.limits_all

    async def register(self, stored: Sequence[Job]) -> None:
        """Record the keyed policies among jobs just stored (none: no backend call)."""
        if any(job.rate_limit and "key" in job.rate_limit for job in stored):
            await self._limiter.register(stored)

    async def claim(
        self,
        count: int,
        take: Callable[[int], Awaitable[list[Job]]],
        accepts: Callable[[Job], bool] | None = None,
    ) -> list[Job]:
        """Up to ``count`` admitted jobs of a fetch, ``take(n)`` claiming ``n`` more per
        round: refused jobs went back behind the others, so a round after them may find
        jobs their keys admit (at most :data:`KEYED_CLAIM_ROUNDS`; a round that found
        fewer than it asked for ends them: what it handed back is all there is).
        ``accepts``: whether the fetching worker may take a job (:meth:`admit`)."""
        tenant = self.tenant
        if tenant is not None:
            room = await tenant.room()  # at the tenant's limit: nothing claimed at all
            if room is not None:
                count = min(count, room)
                if count <= 0:
                    return []
        jobs: list[Job] = []
        for _ in range(KEYED_CLAIM_ROUNDS):
            wanted = count - len(jobs)
            claimed = await take(wanted)
            admitted, refused = await self.admit(claimed, accepts)
            jobs.extend(admitted)
            if not refused or len(jobs) >= count or len(claimed) < wanted:
                break
        return jobs

    async def admit(
        self, claimed: list[Job], accepts: Callable[[Job], bool] | None = None
    ) -> tuple[list[Job], list[Job]]:
        """The claimed jobs their rate-limit keys let start, and those refused, handed
        back to the queue at once (``available``, attempt unspent). Refused first: those
        ``accepts`` says the fetching worker may not take (its version declarations,
        ojs-job-versioning §8.2), so they book no slot of their key."""
        if accepts is not None and not all(map(accepts, claimed)):
            unfit = [job for job in claimed if not accepts(job)]
            await self._hand_back(unfit)
            admitted, refused = await self.admit([job for job in claimed if accepts(job)])
            return admitted, unfit + refused
        tenant = self.tenant
        limited = tenant is not None and claimed and tenant.limited()
        if claimed:
            await self._limiter.refresh()
        if not (limited or self._limiter.limits_all or any(job.rate_limit for job in claimed)):
            return claimed, []
        admitted, held = await self._limiter.admit(claimed)
        refused = [job for job in claimed if job.id in held]
        if limited and admitted:
            assert tenant is not None
            admitted, over = await tenant.admit(admitted)
            refused += over
        if refused:
            self.handing_back = True
            try:
                await self._writer.apply(
                    [(job.id, held.get(job.id, lifecycle.requeue)) for job in refused]
                )
            finally:
                self.handing_back = False
        return admitted, refused

    async def _hand_back(self, jobs: Sequence[Job]) -> None:
        """Jobs the fetching worker may not take, back to the queue, attempt unspent."""
        self.handing_back = True
        try:
            await self._writer.apply([(job.id, lifecycle.requeue) for job in jobs])
        finally:
            self.handing_back = False


__all__ = ["PREFIX", "KeyedAdmission", "KeyedLimiter", "Partition", "policy_of"]
