"""Live event streams (ojs-realtime): one client's place in the event outbox, followed as
events are appended, through a bounded buffer. Transport-agnostic: SSE and WebSocket
(:mod:`ojs_actors.http.sse`, :mod:`ojs_actors.http.ws_session`) render what it delivers.

Every stream reads the outbox itself, after its own position, with the same reads as
``GET /ojs/v1/events`` (:meth:`EventLog.read_events`, which every backend has): event ids
are not ordered, only the outbox is, so a position is the id of the last event delivered,
and "after it" is the outbox's own notion. A client that comes back with that id gets
exactly what followed it: nothing missed, nothing twice.

A follower reads while its client's buffer (:class:`Outlet`) has room and the outbox has
more; then it waits for :meth:`.Signals.events_appended` (job changes stored through this
process) or the poll interval (other processes sharing the backend, and cron's events).
Memory per client is the buffer and one page, whatever the client's pace: the outbox is
the backlog. A client whose buffer stays full for ``stall_timeout`` is dropped (it comes
back with its last event id and loses nothing).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import trio

from ..backends import EventFilter
from ..core import BackendUnavailable
from .signals import Signals

log = logging.getLogger("ojs_actors.system")

T = TypeVar("T")
Event = dict[str, Any]
ReadEvents = Callable[[EventFilter], Awaitable[list[Event]]]
Match = Callable[[Event], bool]

DISCOVERY_PAGE = 1000
"""Events per read while looking for the outbox's end (a stream that starts "from now")."""


@dataclass(frozen=True, slots=True)
class StreamSettings:
    buffer_size: int = 1000
    """Events buffered per client (ojs-realtime §5.4 ``realtime.buffer_size``)."""
    stall_timeout: float = 30.0
    """A client whose buffer stays full this long is dropped."""
    heartbeat: float = 15.0
    """SSE comment sent after this long without an event (ojs-realtime §2.4)."""
    poll_interval: float = 1.0
    """Longest wait before looking at the outbox again without a local notification."""
    page: int = 100
    """Events per outbox read while following."""
    retry_ms: int = 3000
    """The SSE ``retry`` advice to clients."""


@dataclass(slots=True)
class StreamStats:
    """The live streams of this process, for tests and operators."""

    open: int = 0
    dropped: int = 0
    high_water: int = 0
    """The most events any client's buffer held."""


@dataclass(frozen=True, slots=True)
class Gap:
    """The position a client resumed from is no longer in the outbox (retention): it
    resumes at the oldest event kept instead, and should resynchronise."""

    last_event_id: str
    oldest_kept: Event

    def payload(self, channel: str) -> dict[str, Any]:
        """The ``system.gap`` event's data (ojs-realtime §4.5); when the missed events
        began is unknown (the one named is gone)."""
        return {
            "channel": channel,
            "last_event_id": self.last_event_id,
            "gap_start": None,
            "gap_end": self.oldest_kept.get("time"),
            "estimated_missed_count": None,
        }


class ClientTooSlow(Exception):
    """The client's buffer was dropped (see :attr:`Outlet.dropped`)."""


class Outlet(Generic[T]):
    """A client's bounded buffer: followers :meth:`put`, the writer :meth:`take`\\ s.

    ``put`` waits while the buffer is full; once it has been full for ``stall_timeout``
    without a put finding room at once, the client is dropped: the buffer is emptied
    and every ``put`` raises :class:`ClientTooSlow`; the writer's next ``take`` returns
    ``None`` (then tell the client :attr:`dropped` and close)."""

    def __init__(self, size: int, stall_timeout: float, stats: StreamStats | None = None) -> None:
        if size < 1:
            raise ValueError("buffer size must be positive")
        self._in, self._out = trio.open_memory_channel[T](size)
        self.stall_timeout = stall_timeout
        self.stats = stats or StreamStats()
        self.dropped: str | None = None
        self._full_since: float | None = None

    @property
    def buffered(self) -> int:
        return self._out.statistics().current_buffer_used

    async def put(self, item: T) -> None:
        if self.dropped is not None:
            raise ClientTooSlow(self.dropped)
        try:
            self._in.send_nowait(item)
            self._full_since = None
        except trio.WouldBlock:
            if self._full_since is None:
                self._full_since = trio.current_time()
            with trio.move_on_at(self._full_since + self.stall_timeout):
                try:
                    await self._in.send(item)
                except trio.ClosedResourceError:
                    raise ClientTooSlow(self.dropped or "closed") from None
                self._noted()
                return
            self.drop("slow_consumer")
            raise ClientTooSlow("slow_consumer") from None
        self._noted()

    async def take(self) -> T | None:
        """The next item; ``None`` once dropped."""
        if self.dropped is not None:
            return None
        try:
            return await self._out.receive()
        except trio.EndOfChannel:
            return None

    def drop(self, reason: str) -> None:
        if self.dropped is not None:
            return
        self.dropped = reason
        self.stats.dropped += 1
        self._in.close()  # wakes the followers waiting for room
        while True:
            try:
                self._out.receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel):
                break

    def _noted(self) -> None:
        self.stats.high_water = max(self.stats.high_water, self.buffered)


class EventFeed:
    """One subscription's place in the outbox, and ``query``'s filters (its ``after`` and
    ``limit`` are the feed's; change ``query`` to change them from the next read on).
    :attr:`position` moves past an event only once :func:`follow` handed it on (or left it
    out), so a feed stopped anywhere, and followed again, loses nothing."""

    def __init__(self, read: ReadEvents, query: EventFilter) -> None:
        self._read = read
        self.query = query
        self.position: str | None = None

    async def start(self, after: str | None) -> Gap | None:
        """Position the feed: after ``after`` (a client's last event id), or at the
        outbox's end if ``None``. A :class:`Gap` if ``after`` is no longer kept (the feed
        then starts at the oldest event kept)."""
        if after is None:
            self.position = await self._end()
            return None
        self.position = after
        if await self._read_after(after, self.query, resume=False, limit=1):
            return None
        everything = EventFilter()
        if await self._read_after(after, everything, resume=False, limit=1):
            return None  # kept; nothing this feed selects after it yet
        oldest = await self._read_after(after, everything, resume=True, limit=1)
        if not oldest:
            return None  # the outbox is empty: nothing to miss
        self.position = None
        return Gap(after, oldest[0])

    async def read(self, limit: int) -> list[Event]:
        """The next events after the position (not moving it: :meth:`passed` does)."""
        return await self._read_after(self.position, self.query, resume=True, limit=limit)

    def passed(self, event: Event) -> None:
        self.position = event["id"]

    async def _end(self) -> str | None:
        position = None
        while True:
            events = await self._read_after(position, self.query, False, DISCOVERY_PAGE)
            if events:
                position = events[-1]["id"]
            if len(events) < DISCOVERY_PAGE:
                return position

    async def _read_after(
        self, after: str | None, query: EventFilter, resume: bool, limit: int
    ) -> list[Event]:
        return await self._read(dataclasses.replace(query, after=after, resume=resume, limit=limit))


async def follow(
    feed: EventFeed,
    deliver: Callable[[Event], Awaitable[None]],
    settings: StreamSettings,
    signals: Signals | None,
    match: Match | None = None,
) -> None:
    """Hand ``deliver`` every event of ``feed`` from its position on that ``match`` selects
    too (a finer filter than the outbox has fields for: one job's events), as they come,
    until cancelled or ``deliver`` raises :class:`ClientTooSlow` (then return)."""
    try:
        while True:
            news = signals.appended_event() if signals is not None else None
            try:
                events = await feed.read(settings.page)
            except BackendUnavailable as error:  # an outage ends no stream: look again later
                log.warning("event stream: %s; retrying in %.1fs", error, settings.poll_interval)
                await trio.sleep(settings.poll_interval)
                continue
            for event in events:
                if match is None or match(event):
                    await deliver(event)
                feed.passed(event)
            if len(events) >= settings.page:
                await trio.lowlevel.checkpoint()
                continue
            with trio.move_on_after(settings.poll_interval):
                if news is None:
                    await trio.sleep_forever()
                else:
                    await news.wait()
    except ClientTooSlow:
        return


__all__ = [
    "ClientTooSlow", "EventFeed", "Gap", "Outlet", "StreamSettings", "StreamStats", "follow",
]  # fmt: skip
