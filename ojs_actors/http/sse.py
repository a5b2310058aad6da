"""``GET /ojs/v1/events/stream`` as Server-Sent Events: the body of its response.

:class:`SseBody` is a Quart response body whose ``async with`` holds the stream's
tasks: Quart iterates it inside that block, in its own task, so the follower, the
watch for the client leaving and Quart's writes to the client share one nursery, and
nothing outlives the response. Quart writes what :meth:`SseBody.__anext__` returns:
the next event from the client's :class:`~ojs_actors.system.event_stream.Outlet`, a
heartbeat comment after ``heartbeat`` seconds without one, and, once the client was
dropped, the reason, then the end of the stream.

Hypercorn shields its socket writes from cancellation, so a client that reads nothing
at all keeps the write it blocks in: it gets the reason once it reads again. Memory
stays bounded meanwhile: the buffer is emptied when the client is dropped.
"""

from __future__ import annotations

import json
from contextlib import AsyncExitStack
from types import TracebackType
from typing import Any

import trio
from quart.wrappers.response import ResponseBody

from ..system.event_stream import (
    Event,
    EventFeed,
    Gap,
    Outlet,
    StreamSettings,
    StreamStats,
    follow,
)
from ..system.signals import Signals

MEDIA_TYPE = "text/event-stream"
CHANNEL = "events"
"""The channel named in this stream's system events (it has one, the filtered outbox)."""


def event_frame(event: Event) -> bytes:
    return f"id: {event['id']}\nevent: {event['type']}\ndata: {json.dumps(event)}\n\n".encode()


def system_frame(kind: str, data: dict[str, Any]) -> bytes:
    """A notice with no ``id``: the client's Last-Event-ID stays its last outbox event's."""
    return f"event: {kind}\ndata: {json.dumps(data)}\n\n".encode()


def dropped_frames(reason: str, settings: StreamSettings, last_id: str | None) -> bytes:
    notice = {
        "reason": reason,
        "message": f"The client's buffer of {settings.buffer_size} events stayed full for "
        f"{settings.stall_timeout:g} s. Reconnect with Last-Event-ID to resume without loss.",
        "last_event_id": last_id,
    }
    return f": dropped {reason}\n\n".encode() + system_frame("system.stream_dropped", notice)


class SseBody(ResponseBody):
    def __init__(
        self,
        feed: EventFeed,
        gap: Gap | None,
        *,
        signals: Signals,
        settings: StreamSettings,
        stats: StreamStats,
        client_gone: trio.Event,
    ) -> None:
        self._feed = feed
        self._settings = settings
        self._stats = stats
        self._client_gone = client_gone
        self._outlet: Outlet[Event] = Outlet(settings.buffer_size, settings.stall_timeout, stats)
        self._signals = signals
        self._stack = AsyncExitStack()
        first = f"retry: {settings.retry_ms}\n\n".encode()
        if gap is not None:
            first += system_frame("system.gap", gap.payload(CHANNEL))
        self._first: bytes | None = first
        self._last_id: str | None = feed.position if gap is None else None
        self._ended = False

    async def __aenter__(self) -> SseBody:
        nursery = await self._stack.enter_async_context(trio.open_nursery())
        nursery.start_soon(follow, self._feed, self._outlet.put, self._settings, self._signals)
        nursery.start_soon(self._end_when_client_leaves, nursery.cancel_scope)
        self._stats.open += 1
        self._stack.callback(self._closed)
        self._cancel = nursery.cancel_scope
        return self

    async def __aexit__(  # type: ignore[override]  # True: the nursery's cancellation ends here
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        self._cancel.cancel()
        return bool(await self._stack.__aexit__(exc_type, exc_value, tb))

    def __aiter__(self) -> SseBody:
        return self

    async def __anext__(self) -> bytes:
        if self._first is not None:
            first, self._first = self._first, None
            return first
        if self._ended:
            raise StopAsyncIteration
        with trio.move_on_after(self._settings.heartbeat):
            event = await self._outlet.take()
            return self._frame(event)
        return b":heartbeat\n\n"

    def _frame(self, event: Event | None) -> bytes:
        if event is None:
            self._ended = True
            reason = self._outlet.dropped or "closed"
            return dropped_frames(reason, self._settings, self._last_id)
        self._last_id = event["id"]
        return event_frame(event)

    def _closed(self) -> None:
        self._stats.open -= 1

    async def _end_when_client_leaves(self, scope: trio.CancelScope) -> None:
        await self._client_gone.wait()
        scope.cancel()


__all__ = ["MEDIA_TYPE", "SseBody", "event_frame"]
