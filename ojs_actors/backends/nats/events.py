"""The event outbox in NATS, read, trimmed and relayed: :class:`NatsEventLog`.

Writers append one ``ojs.outbox.{key}`` message per entry inside their atomic batches
(:mod:`.writes`): the events of the change, rendered by
:func:`~ojs_actors.core.events.job_events` as it is written (the job is at hand then;
reading renders nothing, so no record is decoded per read). The subject per entry is
the index a read ``after`` an event id uses to find where to resume (its last
message's sequence). Retention keeps the newest
``event_retention`` entries: a purge of the outbox subjects with ``keep``, run by the
process that appended once it appended a tenth of that, and before each read.

Relay (:class:`~ojs_actors.backends.base.EventSink`): the system's event relay reads the
outbox through a durable cursor and hands the events to :meth:`NatsEventLog.publish_events`,
which publishes each on ``ojs.events.{type}`` (``ojs.events.job.completed``, so
``ojs.events.job.>`` subscribes to every job event) into the ``OJS_EVENTS`` stream, with
its event id as ``Nats-Msg-Id``: an event published again after a crash (at least once)
is dropped by the stream's duplicate window. A batch goes out as one atomic batch (one
acknowledgement, not one per event); one the stream refuses for a repeated id goes out
event by event.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ...core import BackendUnavailable
from ..base import EventFilter
from ..codec import dumps
from ..outbox import EVENT_RETENTION, OutboxEntry, collect, cursor
from .connection import NatsStore
from .jetstream import (
    ERR_BATCH_DUPLICATE_MSG_ID,
    JetStreamError,
    Message,
    StoredMsg,
    parse_pub_ack,
    publish_request,
)
from .layout import events_of

PAGE = 500
"""Outbox entries per read."""
PUBLISH_CHUNK = 500
"""Events published per round trip (one atomic batch)."""


class NatsEventLog:
    """The :class:`~ojs_actors.backends.base.EventLog` part; also trims the outbox for the
    parts that append to it (:meth:`appended`)."""

    relay_name = "nats-events"
    """The relay's durable cursor (``EventSink``)."""

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

    async def publish_events(self, events: Sequence[dict[str, Any]]) -> None:
        """Publish ``events`` in order on ``ojs.events.{type}``: each chunk as one atomic
        batch (one acknowledgement for all); a chunk holding an id the stream has seen
        (published again after a crash) is published one event at a time instead, each
        acknowledged, the duplicates dropped by the stream."""
        store = self._store
        size = max(1, min(PUBLISH_CHUNK, store.batch_max_messages))
        for start in range(0, len(events), size):
            messages = [self._message(event) for event in events[start : start + size]]
            try:
                await store.js.atomic_publish(messages)
            except JetStreamError as error:
                if error.err_code != ERR_BATCH_DUPLICATE_MSG_ID:
                    raise _refused(error) from error
                await self._publish_each(messages)

    def _message(self, event: dict[str, Any]) -> Message:
        subject = self._store.subjects.events(event["type"])
        return subject, dumps(event).encode(), {"Nats-Msg-Id": event["id"]}

    async def _publish_each(self, messages: Sequence[Message]) -> None:
        calls = [publish_request(subject, data, headers) for subject, data, headers in messages]
        for replies in await self._store.client.requests(calls):
            try:
                parse_pub_ack(replies)
            except JetStreamError as error:
                raise _refused(error) from error


def _refused(error: JetStreamError) -> BackendUnavailable:
    return BackendUnavailable(
        f"NATS refused an event: {error.description}",
        details={"backend": "nats", "err_code": error.err_code},
    )


def _entry(message: StoredMsg) -> OutboxEntry:
    return None, None, events_of(message.data)
