"""A consumer's durable place in the event outbox: every event at least once, across restarts.

The relays of later backends (Kafka, NATS), webhooks and live streams each read the
outbox through one named cursor::

    cursor = EventCursor(backend, "kafka-relay")
    while True:
        events = await cursor.read(100)
        await publish(events)            # de-duplicate downstream by event id
        if events:
            await cursor.commit(events[-1]["id"])

``commit`` stores the position as a snapshot (``event-cursor:<name>``); a consumer
that restarts reads again everything after its last commit, so an event handled but
not yet committed is delivered again (at least once; the ids are stable). If the
outbox trimmed past the position (the consumer was away longer than retention
allows), reading resumes at the oldest event kept.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Protocol

from ..backends import EventFilter
from ..backends.base import EventLog, Snapshots

CURSOR_PREFIX = "event-cursor:"


class _Store(EventLog, Snapshots, Protocol):
    pass


class EventCursor:
    def __init__(self, backend: _Store, name: str, query: EventFilter | None = None) -> None:
        """``query``'s filters (types, queues, job types) select the events this consumer
        reads (every event if ``None``); its ``after`` and ``limit`` are the cursor's."""
        self.backend = backend
        self.key = f"{CURSOR_PREFIX}{name}"
        self.query = query or EventFilter()
        self._after: str | None = None
        self._loaded = False

    async def position(self) -> str | None:
        """The id of the last event committed (``None``: from the oldest kept)."""
        if not self._loaded:
            stored = await self.backend.load_snapshot(self.key)
            self._after = stored.get("after") if stored else None
            self._loaded = True
        return self._after

    async def read(self, limit: int = 100) -> list[dict[str, Any]]:
        """The next events after the committed position (the same again until committed)."""
        query = dataclasses.replace(
            self.query, after=await self.position(), limit=limit, resume=True
        )
        return await self.backend.read_events(query)

    async def commit(self, event_id: str) -> None:
        """Every event up to ``event_id`` is handled: the next read starts after it."""
        await self.backend.save_snapshot(self.key, {"after": event_id})
        self._after, self._loaded = event_id, True
