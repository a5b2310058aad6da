"""Process-local wake-ups between actors and waiting callers.

These carry no state of record, only "look again": fetchers waiting for work
on a queue, the scheduler waiting for its next timer, the event relay waiting for
new events. Work made available through other processes sharing a backend reaches
them through the backend where it can tell (:mod:`.ready_watcher`); the waiters also
poll.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import trio

from ..core import Job
from ..core.version_routes import VersionRoutes


@dataclass(eq=False, slots=True)
class IdleClaim:
    """A worker of this process waiting on a queue, ready to take jobs handed to it: a
    QueueActor that stores available jobs claims for it in the same round trip.
    ``deliver(jobs)`` hands them over; ``False`` if the worker is gone (give them back)."""

    worker_id: str | None
    count: int
    visibility_ms: int | None
    deliver: Callable[[list[Job]], bool]
    routes: VersionRoutes | None = None
    """The worker's version declarations (see :class:`~.queue_messages.Claim`)."""


class Signals:
    def __init__(self) -> None:
        self._ready: dict[str, trio.Event] = {}
        self._idle_claims: dict[str, list[IdleClaim]] = {}
        self._timer = trio.Event()
        self._planned_wake_ms: float | None = None
        self._earliest_added_ms = math.inf
        self._appended: trio.Event | None = None

    def notify_ready(self, queue: str) -> None:
        event = self._ready.pop(queue, None)
        if event is not None:
            event.set()

    def ready_event(self, queue: str) -> trio.Event:
        """Set by the next :meth:`notify_ready` of ``queue``. Take it *before* looking for
        work, then wait on it if there was none: a notice in between is not missed."""
        event = self._ready.get(queue)
        if event is None:
            event = self._ready[queue] = trio.Event()
        return event

    def add_idle_claim(self, queue: str, claim: IdleClaim) -> None:
        self._idle_claims.setdefault(queue, []).append(claim)

    def remove_idle_claim(self, queue: str, claim: IdleClaim) -> None:
        claims = self._idle_claims.get(queue)
        if claims and claim in claims:
            claims.remove(claim)

    def take_idle_claim(self, queue: str) -> IdleClaim | None:
        """The longest waiting worker's claim on ``queue``, no longer waiting."""
        claims = self._idle_claims.get(queue)
        return claims.pop(0) if claims else None

    async def wait_ready(self, queues: Iterable[str]) -> None:
        """Until one of ``queues`` may have ready work (bound it with a cancel scope)."""
        await wait_any([self.ready_event(queue) for queue in queues])

    def events_appended(self) -> None:
        """Job changes were stored through this process, so the event outbox grew: wake the
        event relay (:mod:`.event_relay`), if it waits."""
        event, self._appended = self._appended, None
        if event is not None:
            event.set()

    def appended_event(self) -> trio.Event:
        """Set by the next :meth:`events_appended`. Take it *before* reading the outbox,
        then wait on it if there was nothing new: an append in between is not missed."""
        if self._appended is None:
            self._appended = trio.Event()
        return self._appended

    def timer_added(self, due_ms: int) -> None:
        """A job now needs attention at ``due_ms``: wake the scheduler if it sleeps past that;
        while it is awake, remember the time for the sleep it is about to plan."""
        if self._planned_wake_ms is None:
            self._earliest_added_ms = min(self._earliest_added_ms, due_ms)
        elif due_ms < self._planned_wake_ms:
            self._timer.set()

    def scheduler_awake(self) -> None:
        """The scheduler is looking at the timers: from now on, record instead of waking."""
        self._planned_wake_ms = None
        self._earliest_added_ms = math.inf
        self._timer = trio.Event()

    def plan_wake(self, wake_ms: float) -> float:
        """The scheduler means to sleep until ``wake_ms``; returns the time it should
        sleep until instead, counting timers added while it was awake."""
        self._planned_wake_ms = min(wake_ms, self._earliest_added_ms)
        return self._planned_wake_ms

    async def wait_timer(self) -> None:
        """Until a timer sooner than the planned wake is added."""
        await self._timer.wait()
        self._timer = trio.Event()


async def wait_any(events: Sequence[trio.Event]) -> None:
    """Until one of ``events`` is set (at once if one already is)."""
    if len(events) == 1:
        await events[0].wait()
        return
    if any(event.is_set() for event in events):
        await trio.lowlevel.checkpoint()
        return
    async with trio.open_nursery() as nursery:
        for event in events:
            nursery.start_soon(_set_then_cancel, event, nursery.cancel_scope)


async def _set_then_cancel(event: trio.Event, scope: trio.CancelScope) -> None:
    await event.wait()
    scope.cancel()
