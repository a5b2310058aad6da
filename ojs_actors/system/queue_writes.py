"""How a QueueActor changes its queue's jobs: transitions applied by compare-and-set.

Every round reads the jobs involved once and writes the changed ones in one
``update_jobs`` call, whatever their number; a job another process changed meanwhile
(its version moved) is read and decided again, up to :data:`MAX_CAS_ATTEMPTS` rounds.
Jobs the actor claimed are remembered, so a worker's ack or nack starts from the
claimed version without the read; the compare-and-set still decides, so a stale entry
only costs the read it would have saved.

A round is decided (:class:`Round`), then written; a caller with a write of its own to
send along (the QueueActor's settle-and-claim) may take the first round of an apply
that needs no read (:meth:`TransitionWriter.first_round_from_claimed`), write it itself,
and hand the answer back (:meth:`~TransitionWriter.written`,
:meth:`~TransitionWriter.finish`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

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


@dataclass(slots=True)
class Round:
    """One compare-and-set round of :meth:`TransitionWriter.apply`, decided and not
    written yet: its :attr:`updates` go in one ``update_jobs`` call."""

    items: Sequence[tuple[str, Transition]]
    results: list[Job | OJSError | None]
    """Of every item of the apply; this round's filled in (those to retry overwritten later)."""
    indexes: Sequence[int]
    """The items this round decided."""
    changed: list[tuple[Job, Job]]
    """``(new version, stored version it replaces)``, one per job changed."""
    refused: set[str]
    """Jobs taken from the claimed cache whose transition refused them: asked again."""

    @property
    def updates(self) -> list[tuple[Job, int]]:
        """The compare-and-set writes: each new version with the version it expects."""
        return [(job, before.version) for job, before in self.changed]


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
        return await self._rounds(items, results, range(len(items)), first_attempt=0)

    def first_round_from_claimed(self, items: Sequence[tuple[str, Transition]]) -> Round | None:
        """The first round of :meth:`apply` decided without a read, if every job of
        ``items`` is one this actor claimed (a worker's outcomes); ``None`` otherwise,
        nothing taken. The caller writes its :attr:`Round.updates` (its ``update_jobs``
        answer goes to :meth:`written`), then ends the apply with :meth:`finish`."""
        claimed = self._claimed
        ids = list(dict.fromkeys(job_id for job_id, _ in items))
        if not all(job_id in claimed for job_id in ids):
            return None
        current: dict[str, Job | None] = {job_id: claimed.pop(job_id) for job_id in ids}
        results: list[Job | OJSError | None] = [None] * len(items)
        return self._decide(items, range(len(items)), results, current, set(ids))

    def written(self, round_: Round, stored: Sequence[bool]) -> list[int]:
        """Book the write of ``round_`` (``stored``: ``update_jobs``' answer to its
        updates): claimed versions remembered, ``after_store`` told. Returns the indexes
        of the items to try again (their job changed meanwhile, or a stale claimed
        version refused them)."""
        changed = round_.changed
        self.remember_claimed(
            [
                job
                for (job, _), ok in zip(changed, stored, strict=True)
                if ok and job.state is State.ACTIVE
            ]
        )  # a lease extended: still in hand
        lost = {job.id for (job, _), ok in zip(changed, stored, strict=True) if not ok}
        lost |= round_.refused
        retry = []
        if lost:
            items = round_.items
            for index in round_.indexes:
                if items[index][0] in lost:
                    retry.append(index)
        self.after_store(
            [(before.state, job) for (job, before), ok in zip(changed, stored, strict=True) if ok]
        )
        return retry

    async def finish(self, round_: Round, retry: Sequence[int]) -> list[Job | OJSError]:
        """The rest of the :meth:`apply` that ``round_`` began: the items to ``retry``
        (from :meth:`written`) go through the next rounds, with reads."""
        return await self._rounds(round_.items, round_.results, retry, first_attempt=1)

    async def _rounds(
        self,
        items: Sequence[tuple[str, Transition]],
        results: list[Job | OJSError | None],
        pending: Sequence[int],
        *,
        first_attempt: int,
    ) -> list[Job | OJSError]:
        """The rounds from ``first_attempt`` on for the items at ``pending``; those still
        changing after the last are answered with a :class:`Conflict`."""
        for attempt in range(first_attempt, MAX_CAS_ATTEMPTS):
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
        round_ = self._decide(items, indexes, results, current, trusted)
        return self.written(round_, await self.backend.update_jobs(round_.updates))

    def _decide(
        self,
        items: Sequence[tuple[str, Transition]],
        indexes: Sequence[int],
        results: list[Job | OJSError | None],
        current: dict[str, Job | None],
        trusted: set[str],
    ) -> Round:
        """Apply the transitions of the items at ``indexes`` to ``current`` (the stored
        versions, by id; ``trusted``: those taken from the claimed cache), filling in
        their ``results``: the round's changes, not written yet."""
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
        return Round(items, results, indexes, changed, refused)
