"""One QueueActor per queue: enqueues, claims and job operations for its queue.

The actor drains its mailbox in batches and turns each run of like messages
into one backend call (one ``insert_jobs`` for many enqueues, one
``get_jobs`` + one ``update_jobs`` for many acks). Its own state is the
queue's record (pause state, creation time), persisted as its snapshot
``queue:<name>``, which also serves as the queue registry.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..actors import Actor, Envelope
from ..backends import Backend
from ..backends.base import timers_of
from ..core import BackendUnavailable, Conflict, Job, NotFound, OJSError, State, lifecycle
from .clock import Clock
from .events import lifecycle_events
from .signals import Signals

Transition = Callable[[Job, int], Job]
ChangeHook = Callable[[Sequence[tuple[State | None, Job]]], None]
"""Told of every stored job change as ``(state before or None if new, job)``; must not wait."""
MAX_CAS_ATTEMPTS = 5


@dataclass(slots=True)
class Enqueue:
    """Store new jobs. ``atomic``: all or none (bulk enqueue); the jobs may belong to
    other queues too, since the backend call is one atomic step either way."""

    jobs: Sequence[Job]
    atomic: bool = False


@dataclass(slots=True)
class Claim:
    count: int
    worker_id: str | None
    visibility_ms: int | None


@dataclass(slots=True)
class Apply:
    """Apply a pure lifecycle transition to one job of this queue."""

    job_id: str
    transition: Transition


@dataclass(slots=True)
class SetPaused:
    paused: bool


@dataclass(slots=True)
class Describe:
    pass


class QueueActor(Actor):
    reply_errors = (OJSError,)

    def __init__(
        self,
        queue: str,
        backend: Backend,
        clock: Clock,
        signals: Signals,
        *,
        on_change: ChangeHook | None = None,
        refresh_interval: float = 1.0,
    ) -> None:
        self.queue = queue
        self.refresh_interval_ms = int(refresh_interval * 1000)
        """How stale the cached record (pause state) may be when claiming: another
        process sharing the backend may pause the queue at any time."""
        self._refreshed_at: int | None = None
        self._loaded = False
        self.on_change = on_change
        self.backend = backend
        self.clock = clock
        self.signals = signals
        self.snapshot_key: str = f"queue:{queue}"
        self.snapshot_store = backend
        self.created_at: int | None = None
        self.paused_at: int | None = None
        self.max_per_second: int | None = None
        """Rate limit adopted from the newest job that set ``options.rate_limit``."""
        self._recent_claims: deque[int] = deque()

    @property
    def paused(self) -> bool:
        return self.paused_at is not None

    # -- snapshot -------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        return {
            "name": self.queue,
            "created_at": self.created_at,
            "paused_at": self.paused_at,
            "max_per_second": self.max_per_second,
        }

    def restore(self, state: dict[str, Any]) -> None:
        self.created_at = state.get("created_at")
        self.paused_at = state.get("paused_at")
        self.max_per_second = state.get("max_per_second")

    async def on_start(self) -> None:
        try:
            await self._load()
        except BackendUnavailable:
            pass  # the backend is away: load with the next message, never crash-loop on it

    async def _load(self) -> None:
        await super().on_start()
        if self.created_at is None:
            self.created_at = self.clock()
            await self.persist()
        self._loaded = True

    async def _refresh(self) -> None:
        """Re-read the record: another process sharing the backend may have paused us."""
        state = await self.backend.load_snapshot(self.snapshot_key)
        self._refreshed_at = self.clock()
        if state is not None:
            self.restore(state)

    # -- messages -------------------------------------------------------------------

    async def receive_batch(self, batch: Sequence[Envelope]) -> None:
        if not self._loaded:
            try:
                await self._load()
            except BackendUnavailable as error:
                for envelope in batch:
                    self._answer(envelope, error)
                return
        start = 0
        while start < len(batch):
            kind = type(batch[start].message)
            end = start
            while end < len(batch) and type(batch[end].message) is kind:
                end += 1
            run = batch[start:end]
            try:
                if kind is Enqueue:
                    await self._enqueue(run)
                elif kind is Apply:
                    await self._apply(run)
                else:
                    await super().receive_batch(run)
            except BackendUnavailable as error:  # answered, not a crash (may have applied)
                for envelope in run:
                    if envelope.reply is not None and not envelope.reply.done:
                        envelope.reply.fail(error)
            start = end

    async def receive(self, message: Any) -> Any:
        if isinstance(message, Claim):
            return await self._claim(message)
        if isinstance(message, SetPaused):
            return await self._set_paused(message.paused)
        if isinstance(message, Describe):
            return self.snapshot()
        return await super().receive(message)

    async def _enqueue(self, run: Sequence[Envelope]) -> None:
        """One backend call for all plain enqueues of the run; one per atomic batch."""
        plain = [envelope for envelope in run if not envelope.message.atomic]
        groups = [[envelope] for envelope in run if envelope.message.atomic]
        if plain:
            groups.insert(0, plain)
        for group in groups:
            jobs = [job for envelope in group for job in envelope.message.jobs]
            results = await self.backend.insert_jobs(jobs, atomic=group[0].message.atomic)
            now = self.clock()
            stored = [result for result in results if isinstance(result, Job)]
            await self._adopt_rate_limit(stored)
            await self._after_store([(None, job) for job in stored], now)
            position = 0
            for envelope in group:
                size = len(envelope.message.jobs)
                self._answer(envelope, results[position : position + size])
                position += size

    async def _adopt_rate_limit(self, jobs: Sequence[Job]) -> None:
        limits = [job.rate_limit for job in jobs if job.rate_limit and job.queue == self.queue]
        if limits and limits[-1]["max_per_second"] != self.max_per_second:
            self.max_per_second = limits[-1]["max_per_second"]
            await self.persist()

    def _rate_allowance(self, now: int) -> int | None:
        """How many claims the rate limit allows right now (``None``: unlimited)."""
        if self.max_per_second is None:
            return None
        while self._recent_claims and self._recent_claims[0] <= now - 1000:
            self._recent_claims.popleft()
        return max(0, self.max_per_second - len(self._recent_claims))

    async def _claim(self, message: Claim) -> list[Job]:
        if (
            not self.paused
            and self._refreshed_at is not None
            and self.clock() - self._refreshed_at >= self.refresh_interval_ms
        ):
            await self._refresh()  # paused meanwhile through another process?
        elif self._refreshed_at is None:
            self._refreshed_at = self.clock()
        if self.paused:
            await self._refresh()
            if self.paused:
                return []
        now = self.clock()
        count = message.count
        allowance = self._rate_allowance(now)
        if allowance is not None:
            count = min(count, allowance)
            if count == 0:
                return []
        claimed, expired = await self.backend.claim(
            self.queue, count, now, message.worker_id, message.visibility_ms
        )
        if allowance is not None:
            self._recent_claims.extend(now for _ in claimed)
        await self._after_store(
            [(State.AVAILABLE, job) for job in claimed]
            + [(State.AVAILABLE, job) for job in expired],
            now,
        )
        return claimed

    async def _apply(self, run: Sequence[Envelope]) -> None:
        pending = list(run)
        for _ in range(MAX_CAS_ATTEMPTS):
            if not pending:
                return
            pending = await self._apply_once(pending)
        for envelope in pending:
            self._answer(envelope, Conflict(
                f"Job {envelope.message.job_id} kept changing concurrently; try again.",
                details={"job_id": envelope.message.job_id},
            ))  # fmt: skip

    async def _apply_once(self, run: Sequence[Envelope]) -> list[Envelope]:
        """One read, one compare-and-set write; returns the envelopes to try again."""
        ids = list(dict.fromkeys(envelope.message.job_id for envelope in run))
        current = dict(zip(ids, await self.backend.get_jobs(ids), strict=True))
        base_version = {job_id: job.version for job_id, job in current.items() if job}
        before = {job_id: job.state for job_id, job in current.items() if job}
        now = self.clock()
        outcome: dict[int, Job | OJSError] = {}
        for index, envelope in enumerate(run):
            message: Apply = envelope.message
            job = current.get(message.job_id)
            if job is None or job.queue != self.queue:
                outcome[index] = NotFound(
                    f"Job '{message.job_id}' not found.",
                    details={"resource_type": "job", "resource_id": message.job_id},
                )
                continue
            try:
                current[message.job_id] = message.transition(job, now)
            except OJSError as error:
                outcome[index] = error
                continue
            outcome[index] = current[message.job_id]
        changed = [
            (job, base_version[job_id])
            for job_id, job in current.items()
            if job is not None and job_id in base_version and job.version != base_version[job_id]
        ]
        stored = dict(
            zip(
                [job.id for job, _ in changed], await self.backend.update_jobs(changed), strict=True
            )
        )
        retry: list[Envelope] = []
        for index, envelope in enumerate(run):
            result = outcome[index]
            if isinstance(result, Job) and not stored.get(result.id, False):
                retry.append(envelope)
            else:
                self._answer(envelope, result)
        await self._after_store(
            [(before[job.id], job) for job, _ in changed if stored[job.id]], now
        )
        return retry

    async def _set_paused(self, paused: bool) -> dict[str, Any]:
        await self._refresh()
        if paused != self.paused:
            self.paused_at = self.clock() if paused else None
            await self.persist()
            if not paused:
                self.signals.notify_ready(self.queue)
        return self.snapshot()

    # -- helpers -----------------------------------------------------------------------

    async def _after_store(self, changes: Sequence[tuple[State | None, Job]], now: int) -> None:
        """Events, wake-ups and timers for jobs just written."""
        if not changes:
            return
        if self.on_change is not None:
            self.on_change(changes)
        events = []
        ready: set[str] = set()
        for before, job in changes:
            events.extend(lifecycle_events(before, job, now))
            if job.state is State.AVAILABLE:
                ready.add(job.queue)
            for due in timers_of(job):
                self.signals.timer_added(due)
        await self.backend.append_events(events)
        for queue in ready:
            self.signals.notify_ready(queue)

    @staticmethod
    def _answer(envelope: Envelope, result: Any) -> None:
        if envelope.reply is None:
            return
        if isinstance(result, OJSError):
            envelope.reply.fail(result)
        else:
            envelope.reply.set(result)


# Transitions, bound to their inputs, as QueueActor.Apply expects them.


def ack_with(result: Any, has_result: bool) -> Transition:
    return lambda job, now: lifecycle.ack(job, now, result, has_result=has_result)


def fail_with(report: dict[str, Any]) -> Transition:
    return lambda job, now: lifecycle.fail(job, now, report)


def extend_lease_by(visibility_ms: int | None) -> Transition:
    return lambda job, now: lifecycle.extend_lease(job, now, visibility_ms)


def retry_from_dead_letter(job: Job, now: int) -> Job:
    if not (job.state is State.DISCARDED and job.dead_letter):
        raise NotFound(
            f"Dead letter job '{job.id}' not found.",
            details={"resource_type": "dead_letter_job", "resource_id": job.id},
        )
    return lifecycle.retry_dead_letter(job, now)
