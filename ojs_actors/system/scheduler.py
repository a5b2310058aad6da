"""The Scheduler: the system actor that keeps every job timer.

It promotes ``scheduled`` jobs when ``scheduled_at`` arrives and ``retryable``
jobs when their backoff has elapsed, reclaims ``active`` jobs whose lease
(visibility timeout) or execution timeout ran out, and discards jobs that
reached ``expires_at`` before starting. The timers themselves live in the
backend; this actor sleeps until the earliest one (or a poll interval, for
timers set by other processes) and applies the transitions with
compare-and-set, so two processes doing the same never double-apply.
"""

from __future__ import annotations

import logging
from typing import Any

import trio

from ..actors import Actor
from ..backends import Backend
from ..core import BackendUnavailable, Job, State, lifecycle
from .clock import Clock
from .queue_actor import ChangeHook
from .signals import Signals

DUE_BATCH = 512
log = logging.getLogger("ojs_actors.scheduler")


def transition_for(job: Job, now: int) -> Job | None:
    """What a due timer means for this job version, or ``None`` if nothing is due."""
    state = job.state
    if (
        job.expires_at is not None
        and job.expires_at <= now
        and state in (State.SCHEDULED, State.RETRYABLE, State.AVAILABLE, State.PENDING)
    ):
        return lifecycle.expire(job, now)
    if state is State.SCHEDULED and (job.scheduled_at or 0) <= now:
        return lifecycle.promote(job, now)
    if state is State.RETRYABLE and (job.next_attempt_at or 0) <= now:
        return lifecycle.promote(job, now)
    if state is State.ACTIVE:
        timeout_at = job.timeout_at
        if timeout_at is not None and timeout_at <= now:
            return lifecycle.execution_timed_out(job, now)
        if job.lease_expires_at is not None and job.lease_expires_at <= now:
            return lifecycle.lease_expired(job, now)
    return None


class Scheduler(Actor):
    def __init__(
        self,
        backend: Backend,
        clock: Clock,
        signals: Signals,
        *,
        poll_interval: float = 1.0,
        on_change: ChangeHook | None = None,
    ) -> None:
        self.backend = backend
        self.on_change = on_change
        self.clock = clock
        self.signals = signals
        self.poll_interval = poll_interval
        self.applied = 0

    async def on_start(self) -> None:
        self.nursery.start_soon(self._run)

    async def receive(self, message: Any) -> Any:
        if message == "tick":
            return await self.tick()
        return await super().receive(message)

    async def _run(self) -> None:
        while True:
            self.signals.scheduler_awake()
            try:
                if await self.tick() >= DUE_BATCH:
                    continue
                next_due = await self.backend.next_due_at()
            except BackendUnavailable as error:  # an outage is no crash: look again later
                log.warning("scheduler: %s; retrying in %.1fs", error, self.poll_interval)
                await trio.sleep(self.poll_interval)
                continue
            now = self.clock()
            wake_ms = now + self.poll_interval * 1000
            if next_due is not None:
                wake_ms = min(wake_ms, next_due)
            wait = max(0.0, (self.signals.plan_wake(wake_ms) - now) / 1000)
            with trio.move_on_after(wait):
                await self.signals.wait_timer()

    async def tick(self) -> int:
        """Apply every transition due now; returns how many timers were due."""
        now = self.clock()
        due = await self.backend.due_jobs(now, DUE_BATCH)
        planned = [(job, transition_for(job, now)) for job in due]
        updates = [(nxt, job.version) for job, nxt in planned if nxt is not None]
        if not updates:
            return len(due)
        stored = await self.backend.update_jobs(updates)
        changes: list[tuple[State | None, Job]] = []
        for (before, nxt), ok in zip(
            [(job, nxt) for job, nxt in planned if nxt is not None], stored, strict=True
        ):
            if not ok:
                continue
            self.applied += 1
            changes.append((before.state, nxt))
            if nxt.state is State.AVAILABLE:
                self.signals.notify_ready(nxt.queue)
        if self.on_change is not None and changes:
            self.on_change(changes)
        return len(due)
