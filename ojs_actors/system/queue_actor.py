"""One QueueActor per queue: enqueues, claims and job operations for its queue.

The actor drains its mailbox in batches and turns each run of like messages
into one backend call (one ``insert_jobs`` for many enqueues, one
``get_jobs`` + one ``update_jobs`` for many acks). A run of acks followed by a claim
(a worker group settling a batch and fetching the next) is one round trip where the
backend can (:class:`~ojs_actors.backends.UpdateAndClaim`). Its own state is the
queue's record (pause state, creation time, rate limit, depth bound), persisted as its
snapshot ``queue:<name>``, which also serves as the queue registry.

Its parts live beside it: its messages are in :mod:`.queue_messages`; how it changes
jobs (transitions by compare-and-set, a cache of the versions it claimed) is
:mod:`.queue_writes`; its enqueue side (runs of enqueues, batches spanning queues, the
hand-over to a waiting worker) is :class:`~.queue_intake.QueueIntake`; the verdicts of
its depth bound are :class:`~.backpressure.DepthGuard`; the admission of claimed jobs by
their rate-limit keys and by the claiming worker's version declarations (claim rounds,
hand-back of refused jobs) is :class:`~.rate_limits.KeyedAdmission`. The actor keeps
the queue's record (and its freshness) and the claim and transition side.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ..actors import Actor, Envelope
from ..backends import Backend, RateLimit, UpdateAndClaim
from ..backends.base import timers_of
from ..core import BackendUnavailable, Job, OJSError, State
from ..core.errors import QueueFull
from .backpressure import Bound, DepthGuard, PressureBoard, PressureLog
from .clock import Clock
from .queue_intake import QueueIntake, answer
from .queue_messages import (
    Apply,
    Claim,
    Describe,
    Enqueue,
    EnqueueBatch,
    Hold,
    SetBound,
    SetPaused,
)
from .queue_rate_limit import QueueLimiter
from .queue_writes import Changes, TransitionWriter
from .rate_limit_pause import DynamicPauses
from .rate_limits import KeyedAdmission
from .signals import Signals
from .tenant_limits import TenantSlots

ChangeHook = Callable[[Changes], None]
"""Told of every stored job change as ``(state before or None if new, job)``; must not wait."""


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
        pressure: PressureBoard | None = None,
        tenant_slots: TenantSlots | None = None,
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
        self._pressure = pressure
        self._writer = TransitionWriter(queue, backend, clock, self._after_store)
        self._depth = DepthGuard(
            queue, backend, pressure, PressureLog(backend, clock), self._writer,
            self.refresh_interval_ms,
        )  # fmt: skip
        limiter = QueueLimiter(backend, clock, queue, self.refresh_interval_ms)
        self._keys = KeyedAdmission(limiter, self._writer, tenant_slots)
        self._pauses = DynamicPauses(limiter)  # handlers' rate_limit_until
        self._intake = QueueIntake(
            queue,
            backend,
            clock,
            signals,
            self._writer,
            self._keys,
            after_store=self._after_store,
            over_bound=self._over_bound,
            may_hand_over=lambda: not self.paused and self.max_per_second is None,
            adopt_rate_limit=self._adopt_rate_limit,
        )
        self._update_and_claim = backend if isinstance(backend, UpdateAndClaim) else None

    @property
    def paused(self) -> bool:
        return self.paused_at is not None

    # -- snapshot -------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        bound = self._depth.bound
        return {
            "name": self.queue,
            "created_at": self.created_at,
            "paused_at": self.paused_at,
            "max_per_second": self.max_per_second,
            "backpressure": bound.to_record() if bound is not None else None,
        }

    def restore(self, state: dict[str, Any]) -> None:
        self.created_at = state.get("created_at")
        self.paused_at = state.get("paused_at")
        self.max_per_second = state.get("max_per_second")
        self._depth.bound = Bound.from_record(state.get("backpressure"))

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
                    answer(envelope, error)
                return
        start = 0
        while start < len(batch):
            kind = type(batch[start].message)
            end = start + 1
            while end < len(batch) and type(batch[end].message) is kind:
                end += 1
            run = batch[start:end]
            if kind is Apply and end < len(batch) and type(batch[end].message) is Claim:
                if await self._apply_and_claim(run, batch[end]):
                    start = end + 1
                    continue
            try:
                if kind is Enqueue:
                    await self._intake.enqueue(run)
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
        if isinstance(message, SetBound):
            return await self._set_bound(message.bound)
        if isinstance(message, Describe):
            return self.snapshot()
        if isinstance(message, Hold):
            return await self._intake.hold(message)
        if isinstance(message, EnqueueBatch):
            return await self._intake.enqueue_batch(message)
        return await super().receive(message)

    async def _over_bound(
        self,
        sizes: Sequence[int],
        job_types: Sequence[str | None] | None = None,
        batches: Sequence[Sequence[Job]] | None = None,
    ) -> list[QueueFull | None] | None:
        """The depth bound's verdicts on enqueues of ``sizes`` (:meth:`DepthGuard.verdicts`),
        the record re-read first if stale: bounded meanwhile through another process?"""
        if self._record_stale():
            await self._refresh()
        return await self._depth.verdicts(sizes, job_types, batches)

    def _record_stale(self) -> bool:
        refreshed_at = self._refreshed_at
        return refreshed_at is None or self.clock() - refreshed_at >= self.refresh_interval_ms

    async def _adopt_rate_limit(self, jobs: Sequence[Job]) -> None:
        """Take the queue rate limit of the newest of ``jobs`` (just stored) that sets one."""
        limits = [
            job.rate_limit for job in jobs if job.rate_limit and "max_per_second" in job.rate_limit
        ]
        if limits and limits[-1]["max_per_second"] != self.max_per_second:
            self.max_per_second = limits[-1]["max_per_second"]
            await self.persist()

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

        async def take(count: int) -> list[Job]:
            claimed, expired = await self.backend.claim(
                self.queue,
                count,
                self.clock(),
                message.worker_id,
                message.visibility_ms,
                rate=self._rate(),
            )
            return self._claimed(claimed, expired)

        return await self._keys.claim(message.count, take, message.admission())  # in rounds

    def _rate(self) -> RateLimit | None:
        return RateLimit(self.max_per_second) if self.max_per_second is not None else None

    def _claimed(self, claimed: list[Job], expired: list[Job]) -> list[Job]:
        """Remember the jobs a claim took; wake-ups and timers for them and the expired."""
        self._writer.remember_claimed(claimed)
        self._after_store(
            [(State.AVAILABLE, job) for job in claimed]
            + [(State.AVAILABLE, job) for job in expired]
        )
        return claimed

    def _record_fresh(self) -> bool:
        """A claim now would trust the cached record, not re-read it (see :meth:`_claim`)."""
        refreshed_at = self._refreshed_at
        return (
            not self.paused
            and refreshed_at is not None
            and self.clock() - refreshed_at < self.refresh_interval_ms
        )

    async def _apply(self, run: Sequence[Envelope]) -> None:
        """Every transition of a run of ``Apply`` messages: one read and one
        compare-and-set write per attempt, whatever the number of jobs."""
        items = [item for envelope in run for item in envelope.message.items]
        results = await self._writer.apply(items)
        await self._pauses.after_applied(items, results)
        self._answer_applied(run, results)

    async def _apply_and_claim(self, run: Sequence[Envelope], claim: Envelope) -> bool:
        """A run of ``Apply`` messages and the ``Claim`` right behind it, as :meth:`_apply`
        then :meth:`_claim` would answer them, with the first write of the run and the
        claim in one round trip (:class:`UpdateAndClaim`); the jobs that changed meanwhile
        go through the next rounds after it. ``False``, with nothing done, where that
        cannot be: the backend lacks the part, the claim would re-read the queue's record
        first, or a job of the run is not one this actor claimed (it needs a read)."""
        backend = self._update_and_claim
        tenant = self._keys.tenant  # at a tenant concurrency limit: claimed on its own
        if backend is None or not self._record_fresh() or (tenant and tenant.limited()):
            return False
        writer = self._writer
        items = [item for envelope in run for item in envelope.message.items]
        if self._pauses.involved(items):
            return False  # the pause first, then the claim
        first = writer.first_round_from_claimed(items)
        if first is None:
            return False
        message: Claim = claim.message
        try:
            stored, claimed, expired = await backend.update_and_claim(
                first.updates,
                self.queue,
                message.count,
                self.clock(),
                message.worker_id,
                message.visibility_ms,
                rate=self._rate(),
            )
        except BackendUnavailable as error:  # answered, not a crash (may have applied)
            for envelope in (*run, claim):
                answer(envelope, error)
            return True
        retry = writer.written(first, stored)
        claim_answer: list[Job] | OJSError
        try:
            claim_answer, _ = await self._keys.admit(
                self._claimed(claimed, expired), message.admission()
            )
        except BackendUnavailable as error:  # unadmitted jobs come back when their lease ends
            claim_answer = error
        try:
            results = await writer.finish(first, retry)
        except BackendUnavailable as error:  # the claim stands: its jobs are answered
            for envelope in run:
                answer(envelope, error)
        else:
            self._answer_applied(run, results)
        answer(claim, claim_answer)
        return True

    async def _set_bound(self, bound: Bound | None) -> dict[str, Any]:
        await self._refresh()
        if bound != self._depth.bound:
            self._depth.bound = bound
            await self.persist()
        if bound is None:
            self._depth.forget_pressure()
        return self.snapshot()

    async def _set_paused(self, paused: bool) -> dict[str, Any]:
        await self._refresh()
        if paused != self.paused:
            self.paused_at = self.clock() if paused else None
            await self.persist()
            if not paused:
                self.signals.notify_ready(self.queue)
        return self.snapshot()

    # -- helpers -----------------------------------------------------------------------

    def _after_store(self, changes: Changes) -> None:
        """Wake-ups and timers for jobs just written (their events are in the outbox)."""
        if not changes:
            return
        if self.on_change is not None:
            self.on_change(changes)
        ready: set[str] = set()
        earliest_timer: int | None = None
        handing_back = self._keys.handing_back
        tenant_limited = self._keys.slot_limited()
        freed = False
        for before, job in changes:
            freed = freed or (before is not None and job.state.terminal and not before.terminal)
            if job.state is State.AVAILABLE:
                if not handing_back:
                    ready.add(job.queue)
            elif before is State.ACTIVE and (
                tenant_limited or (job.rate_limit and "key" in job.rate_limit)
            ):
                ready.add(job.queue)  # a slot of its key (tenant) is free: waiting jobs may go
            for due in timers_of(job):
                if earliest_timer is None or due < earliest_timer:
                    earliest_timer = due
        if earliest_timer is not None:
            self.signals.timer_added(earliest_timer)
        if freed and self._pressure is not None and self._depth.bound is not None:
            self._pressure.freed(self.queue)  # enqueues blocked on the bound try again
        for queue in ready:
            self.signals.notify_ready(queue)

    @staticmethod
    def _answer_applied(run: Sequence[Envelope], results: Sequence[Job | OJSError]) -> None:
        """Each ``Apply`` of ``run`` its slice of ``results``."""
        position = 0
        for envelope in run:
            size = len(envelope.message.items)
            if envelope.reply is not None:
                envelope.reply.set(results[position : position + size])
            position += size
