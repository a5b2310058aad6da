"""The event outbox in NATS, read and trimmed: :class:`NatsEventLog`.

Writers append one ``ojs.outbox.{key}`` message per entry inside their atomic batches
(:mod:`.writes`); the subject per entry is the index a read ``after`` an event id uses
to find where to resume (its last message's sequence). Retention keeps the newest
``event_retention`` entries: a purge of the outbox subjects with ``keep``, run by the
process that appended once it appended a tenth of that, and before each read.
"""

from __future__ import annotations

from typing import Any

import orjson

from ...core import State
from ..base import EventFilter
from ..outbox import EVENT_RETENTION, OutboxEntry, collect, cursor
from .connection import NatsStore
from .jetstream import StoredMsg
from .layout import WHOLE_EVENT
from .writes import decode_job

PAGE = 500
"""Outbox entries per read."""


class NatsEventLog:
    """The :class:`~ojs_actors.backends.base.EventLog` part; also trims the outbox for the
    parts that append to it (:meth:`appended`)."""

    def __init__(self, store: NatsStore, event_retention: int = EVENT_RETENTION) -> None:
        self._store = store
        self._keep = event_retention
        self._trim_every = max(1, event_retention // 10)
        self._untrimmed = 0

    async def appended(self, entries: int) -> None:
        """``entries`` were appended by this process: trim once enough piled up."""
        self._untrimmed += entries
        if self._untrimmed >= self._trim_every:
            await self.trim()

    async def trim(self) -> None:
        self._untrimmed = 0
        await self._store.purge(self._store.subjects.outbox_all(), keep=self._keep)

    def forget(self) -> None:
        self._untrimmed = 0

    async def read_events(self, query: EventFilter) -> list[dict[str, Any]]:
        if self._untrimmed:
            await self.trim()
        store, subjects = self._store, self._store.subjects
        found: list[dict[str, Any]] = []
        start, skip = 1, 0
        after = cursor(query)
        if after is not None:
            key, skip = after
            subject = subjects.outbox(key)
            at = (await store.last([subject])).get(subject)
            if at is not None:
                start = at.seq
            elif query.resume:
                skip = 0  # fell behind retention: from the oldest kept
            else:
                return found
        while True:
            page = await store.read(subjects.outbox_all(), start, PAGE)
            if not page or collect(map(_entry, page), query, skip, found) or len(page) < PAGE:
                return found
            start, skip = page[-1].seq + 1, 0


def _entry(message: StoredMsg) -> OutboxEntry:
    before, _, body = message.data.partition(b"\n")
    if before == WHOLE_EVENT:
        return None, None, (orjson.loads(body),)
    return (State(before.decode()) if before else None), decode_job(body), None
