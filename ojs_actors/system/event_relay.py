"""The EventRelay: hands every event of the outbox to an external sink (:class:`EventSink`:
NATS subjects, a Kafka topic), at least once and in outbox order, from one process of a
cluster at a time.

It reads through the durable cursor named ``sink.relay_name`` (:class:`.EventCursor`):
read a batch, ``publish_events`` it, commit its last id. A failure or a crash between
publishing and committing publishes that batch again (downstream drops duplicates by
event id); no event is skipped. Batches hold ``sink.relay_batch`` events if the sink
says (one that publishes thousands at once as cheaply as a few hundred: Kafka), else
:data:`RELAY_BATCH`. While a full batch is published, the relay reads the next one (it
is published once this one is committed, and only if the cursor is still where it was
read from), so reading and publishing overlap when catching up.

One relay per cluster: every process sharing the store runs one, but only the holder
of the lease publishes. The lease is the snapshot ``event-relay:<relay_name>``,
``{"holder": <this process's id>, "until": <epoch ms>}``, taken and renewed by
compare-and-set and renewed every third of its length (:class:`.Lease`, which the
webhook dispatcher holds its own with). The others look at it again
when it runs out; the first to write it then holds it and resumes at the committed
cursor. A holder that finds it taken (it could not renew in time) stops publishing
until it can take it again.

While caught up the relay waits for the poll interval, or less: job changes stored
through this process wake it (:meth:`.Signals.events_appended`), and the holder wakes to
renew. The backend or the sink being away is no crash: the relay logs, and tries again
after the poll interval.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any, Protocol

import trio

from ..actors import Actor
from ..backends import EventFilter, EventSink
from ..backends.base import EventLog, Snapshots
from ..core import BackendUnavailable
from ..core.ids import new_id
from .clock import Clock
from .event_cursor import EventCursor
from .lease import Lease
from .signals import Signals

RELAY_BATCH = 500
LEASE_PREFIX = "event-relay:"
LEASE_SECONDS = 10.0
LINGER_SECONDS = 0.1
"""How long a woken relay waits before reading, so that the events of many changes go
out in one batch (and one cursor commit) instead of one each."""
log = logging.getLogger("ojs_actors.system")


class _Store(EventLog, Snapshots, Protocol):
    pass


class EventRelay(Actor):
    def __init__(
        self,
        backend: _Store,
        sink: EventSink,
        clock: Clock,
        signals: Signals | None = None,
        *,
        holder: str | None = None,
        batch_size: int | None = None,
        lease: float = LEASE_SECONDS,
        poll_interval: float = 1.0,
        linger: float = LINGER_SECONDS,
    ) -> None:
        """``holder`` names this process in the lease (a random id if ``None``): give every
        instance of one process the same, so a restarted relay takes its lease back at once.
        ``batch_size``: events per read and publish; by default the sink's ``relay_batch``,
        else :data:`RELAY_BATCH`."""
        if batch_size is None:
            batch_size = getattr(sink, "relay_batch", RELAY_BATCH)
        if batch_size < 1 or lease <= 0:
            raise ValueError("batch_size and lease must be positive")
        self.backend = backend
        self.sink = sink
        self.clock = clock
        self.signals = signals
        self.holder = holder or new_id()
        self.lease = Lease(backend, f"{LEASE_PREFIX}{sink.relay_name}", self.holder, clock, lease)
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.linger = linger
        self.published = 0
        """Events handed to the sink by this instance (a batch published again counts again)."""
        self.failures = 0
        """Publications the sink refused (each retried)."""
        self.last_error: str | None = None
        """Why the last publication failed; ``None`` once one succeeds."""
        self.lag: int | None = None
        """Events waiting, as of the last read, when it knows: after a read that came back
        short (0 once that was published); ``None`` while catching up (a full batch) or not
        holding the lease."""
        self._cursor = self._new_cursor()
        self._ahead: tuple[str, list[dict[str, Any]]] | None = None
        """The batch read after an event id while the batch ending there was published."""

    def _new_cursor(self) -> EventCursor:
        query = EventFilter(with_jobs=getattr(self.sink, "wants_jobs", False))
        return EventCursor(self.backend, self.sink.relay_name, query)

    @property
    def holding(self) -> bool:
        """Whether this relay holds the lease now (and so is the one publishing)."""
        return self.lease.holding

    async def on_start(self) -> None:
        self.nursery.start_soon(self._run)

    async def _run(self) -> None:
        while True:
            wake = self.signals.appended_event() if self.signals is not None else None
            try:
                relayed = await self.relay_once()
            except BackendUnavailable as error:  # an outage is no crash: look again later
                log.warning(
                    "event relay %s: %s; retrying in %.1fs",
                    self.sink.relay_name,
                    error,
                    self.poll_interval,
                )
                relayed = None
            if relayed is not None and relayed >= self.batch_size:
                await trio.lowlevel.checkpoint()  # more waiting: on at once
                continue
            await self._pause(wake, failed=relayed is None)

    async def relay_once(self) -> int | None:
        """Publish the next batch if this relay holds (or can take) the lease: how many
        events were published, ``None`` if the sink refused them (tried again later)."""
        if not await self._keep_lease():
            self.lag, self._ahead = None, None
            return 0
        events = await self._next_batch()
        if events:
            if not await self._publish(events):
                return None
            self.published += len(events)
            self.last_error = None
            await self._cursor.commit(events[-1]["id"])
        self.lag = 0 if len(events) < self.batch_size else None
        return len(events)

    async def _next_batch(self) -> list[dict[str, Any]]:
        """The events after the committed position: the batch read ahead while the last
        one was published if it was read after that position, else read now."""
        ahead, self._ahead = self._ahead, None
        if ahead is not None and ahead[0] == await self._cursor.position():
            return ahead[1]
        return await self._cursor.read(self.batch_size)

    async def _publish(self, events: list[dict[str, Any]]) -> bool:
        """Hand ``events`` to the sink; whether it took them. Meanwhile, after a full batch
        (more is likely waiting), read the next one, to publish once this one is committed."""
        if len(events) < self.batch_size:
            return await self._hand_over(events)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._read_ahead, events[-1]["id"])
            if not await self._hand_over(events):
                nursery.cancel_scope.cancel()
                return False
        return True

    async def _hand_over(self, events: list[dict[str, Any]]) -> bool:
        try:
            await self.sink.publish_events(events)
        except Exception as error:  # the sink's failure is no crash of the relay
            self.failures += 1
            self.last_error = str(error) or type(error).__name__
            self.lag = len(events) if len(events) < self.batch_size else None
            log.warning(
                "event relay %s: publishing %d events failed: %r; again in %.1fs",
                self.sink.relay_name,
                len(events),
                error,
                self.poll_interval,
                exc_info=not isinstance(error, BackendUnavailable),
            )
            return False
        return True

    async def _read_ahead(self, after: str) -> None:
        query = dataclasses.replace(
            self._cursor.query, after=after, limit=self.batch_size, resume=True
        )
        try:
            events = await self.backend.read_events(query)
        except BackendUnavailable:
            return  # read when its turn comes
        if len(events) >= self.batch_size:
            # A shorter batch is the tail: read it again when its turn comes, so that
            # what is appended meanwhile joins it (or wakes the relay).
            self._ahead = (after, events)

    async def _keep_lease(self) -> bool:
        """Hold the lease (:class:`.Lease`); on taking it, read the cursor's position again:
        another holder may have moved it."""
        if not await self.lease.keep():
            return False
        if self.lease.taken:
            self._cursor, self._ahead = self._new_cursor(), None
        return True

    async def _pause(self, wake: trio.Event | None, *, failed: bool) -> None:
        """Until the next look: while holding the lease, the poll interval or until
        ``wake`` is set (not after a failure), never past the renewal; otherwise until the
        other holder's lease runs out."""
        now = self.clock()
        lease = self.lease
        if lease.held:
            renew_in = (lease.renew_at - now) / 1000
            if renew_in <= 0 and not failed:
                await trio.lowlevel.checkpoint()
                return
            seconds = self.poll_interval if renew_in <= 0 else min(self.poll_interval, renew_in)
        elif lease.until > now:
            seconds = min(lease.until - now + 1, lease.length_ms) / 1000
        else:
            seconds = self.poll_interval
        if failed or not lease.held:
            wake = None
        with trio.move_on_after(seconds):
            if wake is None:
                await trio.sleep_forever()
            else:
                await wake.wait()
                await trio.sleep(self.linger)  # let the changes of the next moments join


__all__ = ["LEASE_PREFIX", "LEASE_SECONDS", "LINGER_SECONDS", "RELAY_BATCH", "EventRelay"]
