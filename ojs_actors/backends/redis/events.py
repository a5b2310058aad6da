"""The event outbox in Redis, read: :class:`RedisEventLog`."""

from __future__ import annotations

import json
from typing import Any

import trio

from ...core import State
from ...core.events import entry_of
from ..base import EventFilter
from ..outbox import OutboxEntry, collect, cursor
from .connection import RedisConnection
from .records import _job_of

PAGE = 500
"""Outbox entries per read round trip, at least: a read of more events reads as many
entries at once (up to :data:`MAX_PAGE`), and renders them :data:`PAGE` at a time."""
MAX_PAGE = 5000


class RedisEventLog:
    """The :class:`~ojs_actors.backends.base.EventLog` part on ``connection``: reads the
    outbox that :class:`~ojs_actors.backends.redis.jobs.RedisJobs` and
    :class:`~ojs_actors.backends.redis.snapshots.RedisSnapshots` append to, in pages of
    :data:`PAGE` entries, rendered and filtered here (:func:`~ojs_actors.backends.outbox.collect`).

    Reads the keys ``outbox``, ``outseq`` and ``outkeys`` (layout in
    :mod:`~ojs_actors.backends.redis.lua_outbox`)."""

    def __init__(self, connection: RedisConnection) -> None:
        self._connection = connection

    async def read_events(self, query: EventFilter) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        after = cursor(query)
        key, skip = after if after is not None else ("", 0)
        resume = "1" if query.resume else ""
        page = min(max(query.limit, PAGE), MAX_PAGE)
        first, at_key, texts = await self._connection.script("read_outbox", key, resume, "", page)
        if not at_key:
            skip = 0  # from the oldest kept (or nothing, if the key is unknown)
        while texts:
            if await _collect(texts, query, skip, found):
                break
            first, skip = int(first) + len(texts), 0
            first, _, texts = await self._connection.script("read_outbox", "", "", str(first), page)
        return found

    async def hold_outbox(self, relayed_event_id: str | None, *, start: bool = False) -> int:
        """Keep every outbox entry after the one of ``relayed_event_id`` (the last event a
        relay has handed over) from being trimmed, whatever the retention; with ``start``,
        set the hold behind the oldest entry kept if none is set. Returns the backlog: the
        entries after the hold. For a relay whose sink can be away for long (Kafka):
        nothing is lost, and the backlog is what the caller bounds. Uses ``outhold``."""
        key = entry_of(relayed_event_id)[0] if relayed_event_id else ""
        return int(await self._connection.script("hold_outbox", key, "start" if start else ""))


async def _collect(
    texts: list[str], query: EventFilter, skip: int, found: list[dict[str, Any]]
) -> bool:
    """:func:`~ojs_actors.backends.outbox.collect` on a page, :data:`PAGE` entries at a
    time, letting the other tasks run in between (rendering a page takes milliseconds)."""
    for start in range(0, len(texts), PAGE):
        if start:
            await trio.lowlevel.checkpoint()
            skip = 0
        if collect(map(_entry, texts[start : start + PAGE]), query, skip, found):
            return True
    return False


def _entry(text: str) -> OutboxEntry:
    _, before, body = text.split("\n", 2)
    if before == "*":
        return None, None, (json.loads(body),)
    return (State(before) if before else None), _job_of(body), None
