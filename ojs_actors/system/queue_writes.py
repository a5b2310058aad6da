"""How a QueueActor changes its queue's jobs: transitions applied by compare-and-set.

Every round reads the jobs involved once and writes the changed ones in one
``update_jobs`` call, whatever their number; a job another process changed meanwhile
(its version moved) is read and decided again, up to :data:`MAX_CAS_ATTEMPTS` rounds.
Jobs the actor claimed are remembered, so a worker's ack or nack starts from the
claimed version without the read; the compare-and-set still decides, so a stale entry
only costs the read it would have saved.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ..backends import Backend
from ..core import Conflict, Job, OJSError, State
from .clock import Clock
from .transitions import Transition, job_not_found

MAX_CAS_ATTEMPTS = 5
CLAIMED_CACHE_SIZE = 10_000
"""Jobs claimed and still believed active, by id (oldest dropped first)."""

Changes = Sequence[tuple[State | None, Job]]
"""Stored job changes: ``(state before, or None if new; the job as stored)``."""
AfterStore = Callable[[Changes], None]


class TransitionWriter:
    def __init__(self, queue: str, backend: Backend, clock: Clock, after_store: AfterStore) -> None:
        """``after_store(changes)`` is called after every write (wake-ups, timers)."""
        self.queue = queue
        self.backend = backend
        self.clock = clock
        self.after_store = after_store
        self._claimed: dict[str, Job] = {}

    def remember_claimed(self, jobs: Sequence[Job]) -> None:
        claimed = self._claimed
        for job in jobs:
            claimed[job.id] = job
        while len(claimed) > CLAIMED_CACHE_SIZE:
            del claimed[next(iter(claimed))]

    async def apply(self, items: Sequence[tuple[str, Transition]]) -> list[Job | OJSError]:
        """Each transition on its own: per item, in order, the stored job or the error
        that kept it from changing."""
        results: list[Job | OJSError | None] = [None] * len(items)
        pending: Sequence[int] = range(len(items))
        for attempt in range(MAX_CAS_ATTEMPTS):
            if not pending:
                break
            pending = await self._apply_once(items, pending, results, trust_claimed=attempt == 0)
        for index in pending:
            job_id = items[index][0]
            results[index] = Conflict(
                f"Job {job_id} kept changing concurrently; try again.",
                details={"job_id": job_id},
            )
        return results  # type: ignore[return-value]  # every position is filled in

    async def _apply_once(
        self,
        items: Sequence[tuple[str, Transition]],
        indexes: Sequence[int],
        results: list[Job | OJSError | None],
        *,
        trust_claimed: bool,
    ) -> list[int]:
        """One read, one compare-and-set write for the items at ``indexes``; fills in
        their ``results`` and returns the indexes to try again. With ``trust_claimed``,
        jobs this actor claimed start from the claimed version, without the read."""
        ids = list(dict.fromkeys(items[index][0] for index in indexes))
        current: dict[str, Job | None] = {}
        if trust_claimed:
            for job_id in ids:
                held = self._claimed.pop(job_id, None)
                if held is not None:
                    current[job_id] = held
        unknown = [job_id for job_id in ids if job_id not in current]
        trusted = set(current)
        if unknown:
            current.update(zip(unknown, await self.backend.get_jobs(unknown), strict=True))
        base = {job_id: job for job_id, job in current.items() if job is not None}
        refused: set[str] = set()  # trusted jobs a transition refused: ask the backend
        now = self.clock()
        queue = self.queue
        for index in indexes:
            job_id, transition = items[index]
            job = current[job_id]
            if job is None or job.queue != queue:
                results[index] = job_not_found(job_id)
                continue
            try:
                job = current[job_id] = transition(job, now)
            except OJSError as error:
                results[index] = error
                if job_id in trusted:
                    refused.add(job_id)
                continue
            results[index] = job
        for job_id in refused:
            current[job_id] = base[job_id]  # nothing of it is written this round
        changed: list[tuple[Job, Job]] = []  # (new version, stored version it replaces)
        for job_id, before in base.items():
            after = current[job_id]
            if after is not None and after.version != before.version:
                changed.append((after, before))
        stored = await self.backend.update_jobs([(job, before.version) for job, before in changed])
        self.remember_claimed(
            [
                job
                for (job, _), ok in zip(changed, stored, strict=True)
                if ok and job.state is State.ACTIVE
            ]
        )  # a lease extended: still in hand
        lost = {job.id for (job, _), ok in zip(changed, stored, strict=True) if not ok}
        lost |= refused
        retry = []
        if lost:
            for index in indexes:
                if items[index][0] in lost:
                    retry.append(index)
        self.after_store(
            [(before.state, job) for (job, before), ok in zip(changed, stored, strict=True) if ok]
        )
        return retry
