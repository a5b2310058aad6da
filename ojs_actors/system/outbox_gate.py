"""The outbox gate: new work waits for an event sink that fell behind.

A backend whose event sink can be away for long (Kafka) keeps every event not yet
relayed (:class:`~ojs_actors.backends.OutboxBacklog`). The gate refuses new jobs and
workflows, with :class:`~ojs_actors.core.OutboxFull` (HTTP 503), while that backlog is at
its limit, so it stays bounded; jobs already accepted go on to the end of their lives
(their events are kept too). The backlog is read from the backend, so every process
sharing it refuses alike, at most once per :data:`LOOK_EVERY_MS` and not at all on a
backend without the part.
"""

from __future__ import annotations

from ..backends import Backend, OutboxBacklog
from ..core import OutboxFull
from .clock import Clock

LOOK_EVERY_MS = 250
"""How stale a backlog figure may be before the next admission reads it again."""


class OutboxGate:
    def __init__(self, backend: Backend, clock: Clock) -> None:
        self._backlog_of = backend if isinstance(backend, OutboxBacklog) else None
        self._clock = clock
        self._backlog = 0
        self._looked_at: int | None = None

    async def backlog(self) -> tuple[int, int] | None:
        """``(events waiting for the sink, the limit)``, read now; ``None`` without a bound."""
        if self._backlog_of is None:
            return None
        self._backlog = await self._backlog_of.outbox_backlog()
        self._looked_at = self._clock()
        return self._backlog, self._backlog_of.outbox_limit

    async def admit(self) -> None:
        """Return if new work may be stored; raise :class:`OutboxFull` if not."""
        part = self._backlog_of
        if part is None:
            return
        now = self._clock()
        if self._looked_at is None or now - self._looked_at >= LOOK_EVERY_MS:
            await self.backlog()
        if self._backlog >= part.outbox_limit:
            raise OutboxFull(
                f"New work is refused: {self._backlog} events wait for the event sink "
                f"(limit {part.outbox_limit}).",
                details={"backlog": self._backlog, "limit": part.outbox_limit},
            )


__all__ = ["LOOK_EVERY_MS", "OutboxGate"]
