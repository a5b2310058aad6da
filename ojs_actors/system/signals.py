"""Process-local wake-ups between actors and waiting callers.

These carry no state of record, only "look again": fetchers waiting for work
on a queue, and the scheduler waiting for its next timer. Other processes
sharing a networked backend are not signalled; the waiters also poll.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import trio


class Signals:
    def __init__(self) -> None:
        self._ready: dict[str, trio.Event] = {}
        self._timer = trio.Event()
        self.planned_wake_ms: float = math.inf
        """When the scheduler will next look at the timers of its own accord."""

    def notify_ready(self, queue: str) -> None:
        event = self._ready.pop(queue, None)
        if event is not None:
            event.set()

    async def wait_ready(self, queues: Iterable[str]) -> None:
        """Until one of ``queues`` may have ready work (bound it with a cancel scope)."""
        events = [self._ready.setdefault(queue, trio.Event()) for queue in queues]
        if len(events) == 1:
            await events[0].wait()
            return
        async with trio.open_nursery() as nursery:
            for event in events:
                nursery.start_soon(_set_then_cancel, event, nursery.cancel_scope)

    def timer_added(self, due_ms: int) -> None:
        """A job now needs attention at ``due_ms``; wake the scheduler if that is sooner."""
        if due_ms < self.planned_wake_ms:
            self._timer.set()

    async def wait_timer(self) -> None:
        """Until a timer sooner than :attr:`planned_wake_ms` is added."""
        await self._timer.wait()
        self._timer = trio.Event()


async def _set_then_cancel(event: trio.Event, scope: trio.CancelScope) -> None:
    await event.wait()
    scope.cancel()
