"""``/ojs/v1/ws``: the WebSocket binding of ojs-realtime §3, one :class:`WsSession` per
connection.

The client sends JSON actions: ``subscribe`` (``channel``: ``all``, ``queue:<name>`` or
``job:<id>``; optional ``event_types``; subscribing again to a channel replaces its filter
and continues where it was), ``unsubscribe``, and ``resume`` (``last_event_id``: every
subscription, current and later, restarts after that event). The server answers
``subscribed``/``unsubscribed``/``resumed``, ``error`` (``not_found``,
``unknown_event_id``, ``invalid_request``), and ``event`` frames.

Each subscription is an :class:`~ojs_actors.system.event_stream.EventFeed` followed by
its own task; all share the connection's bounded :class:`~.Outlet`, drained by one
writer. A client dropped for not keeping up is closed with :data:`DROPPED_CODE`.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import trio

from ..backends import EventFilter
from ..core import InvalidRequest, OJSError
from ..system import System
from ..system.event_stream import (
    ClientTooSlow,
    Event,
    EventFeed,
    Match,
    Outlet,
    StreamSettings,
    StreamStats,
    follow,
)

SUBPROTOCOL = "ojs.v1"
DROPPED_CODE = 1013
"""Close code of a client dropped for not keeping up: "try again later" (RFC 6455 §7.4.2,
IANA registry); it resumes with ``resume`` and loses nothing."""
MAX_SUBSCRIPTIONS = 100
"""Per connection: each is a task reading the outbox."""


@dataclass(slots=True)
class _Subscription:
    feed: EventFeed
    match: Match | None
    event_types: list[str] | None
    scope: trio.CancelScope


class WsSession:
    def __init__(
        self,
        system: System,
        settings: StreamSettings,
        stats: StreamStats,
        send_text: Callable[[str], Awaitable[None]],
    ) -> None:
        self._system = system
        self._settings = settings
        self._send_text = send_text
        self._outlet: Outlet[str] = Outlet(settings.buffer_size, settings.stall_timeout, stats)
        self._subscriptions: dict[str, _Subscription] = {}
        self._resume_from: str | None = None

    async def run(self, receive: Callable[[], Awaitable[str | bytes]]) -> str | None:
        """Serve the client's actions until it leaves (this is cancelled) or is dropped:
        then the reason (close the connection with :data:`DROPPED_CODE` and it)."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self._write, nursery.cancel_scope)
            try:
                while True:
                    await self._handle(await receive())
            except ClientTooSlow:
                nursery.cancel_scope.cancel()
        return self._outlet.dropped

    async def _write(self, done: trio.CancelScope) -> None:
        while (frame := await self._outlet.take()) is not None:
            await self._send_text(frame)
        done.cancel()

    async def _handle(self, raw: str | bytes) -> None:
        try:
            message = json.loads(raw)
        except ValueError:
            message = None
        if not isinstance(message, dict):
            await self._error("invalid_request", "A message is a JSON object.")
            return
        try:
            action = message.get("action")
            if action == "subscribe":
                await self._subscribe(message)
            elif action == "unsubscribe":
                await self._unsubscribe(_channel(message))
            elif action == "resume":
                await self._resume(message.get("last_event_id"))
            else:
                raise InvalidRequest("'action' is one of subscribe, unsubscribe, resume.")
        except OJSError as error:
            await self._error(error.code, error.message, message.get("channel"))

    async def _subscribe(self, message: dict[str, Any]) -> None:
        channel = _channel(message)
        event_types = message.get("event_types")
        if event_types is not None and not (
            isinstance(event_types, list) and all(isinstance(kind, str) for kind in event_types)
        ):
            raise InvalidRequest("'event_types' is a list of event types.")
        query, match = await self._selection(channel, frozenset(event_types or ()))
        previous = self._subscriptions.pop(channel, None)
        gap = None
        if previous is not None:  # a new filter, from where the old one was
            previous.scope.cancel()
            feed = previous.feed
            feed.query = query
        elif len(self._subscriptions) >= MAX_SUBSCRIPTIONS:
            raise InvalidRequest(f"At most {MAX_SUBSCRIPTIONS} subscriptions per connection.")
        else:
            feed = EventFeed(self._system.events, query)
            gap = await feed.start(self._resume_from)
        ack: dict[str, Any] = {"type": "subscribed", "channel": channel}
        if event_types is not None:
            ack["event_types"] = event_types
        await self._put(ack)
        if gap is not None:
            await self._unknown_event(gap.last_event_id, channel)
        self._follow(channel, _Subscription(feed, match, event_types, trio.CancelScope()))

    async def _unsubscribe(self, channel: str) -> None:
        subscription = self._subscriptions.pop(channel, None)
        if subscription is not None:
            subscription.scope.cancel()
        await self._put({"type": "unsubscribed", "channel": channel})

    async def _resume(self, last_event_id: object) -> None:
        if not isinstance(last_event_id, str) or not last_event_id:
            raise InvalidRequest("'last_event_id' is an event id.")
        self._resume_from = last_event_id
        await self._put({"type": "resumed", "last_event_id": last_event_id})
        for channel, old in list(self._subscriptions.items()):
            old.scope.cancel()
            feed = EventFeed(self._system.events, old.feed.query)
            gap = await feed.start(last_event_id)
            if gap is not None:
                await self._unknown_event(last_event_id, channel)
            self._follow(
                channel, _Subscription(feed, old.match, old.event_types, trio.CancelScope())
            )

    def _follow(self, channel: str, subscription: _Subscription) -> None:
        self._subscriptions[channel] = subscription

        async def deliver(event: Event) -> None:
            await self._put(
                {
                    "type": "event",
                    "channel": channel,
                    "event": event["type"],
                    "data": event,
                    "id": event["id"],
                    "timestamp": event.get("time"),
                }
            )

        async def run() -> None:
            with subscription.scope:
                await follow(
                    subscription.feed,
                    deliver,
                    self._settings,
                    self._system.signals,
                    subscription.match,
                )

        self._nursery.start_soon(run)

    async def _selection(
        self, channel: str, types: frozenset[str]
    ) -> tuple[EventFilter, Match | None]:
        if channel == "all":
            return EventFilter(types=types), None
        kind, _, name = channel.partition(":")
        if kind == "queue" and name:
            await self._system.known_queue_stats(name)
            return EventFilter(types=types, queues=frozenset({name})), None
        if kind == "job" and name:
            job = await self._system.info(name)
            return EventFilter(types=types, queues=frozenset({job.queue})), _of_job(name)
        raise InvalidRequest("'channel' is 'all', 'queue:<name>' or 'job:<id>'.")

    async def _unknown_event(self, last_event_id: str, channel: str) -> None:
        await self._error(
            "unknown_event_id",
            f"Event {last_event_id} is no longer kept: events resume at the oldest kept. "
            "Perform a full state sync.",
            channel,
        )

    async def _error(self, code: str, message: str, channel: object = None) -> None:
        frame: dict[str, Any] = {"type": "error", "code": code, "message": message}
        if isinstance(channel, str):
            frame["channel"] = channel
        await self._put(frame)

    async def _put(self, frame: dict[str, Any]) -> None:
        await self._outlet.put(json.dumps(frame))


def _channel(message: dict[str, Any]) -> str:
    channel = message.get("channel")
    if not isinstance(channel, str) or not channel:
        raise InvalidRequest("'channel' is 'all', 'queue:<name>' or 'job:<id>'.")
    return channel


def _of_job(job_id: str) -> Match:
    def match(event: Event) -> bool:
        data = event.get("data")
        return isinstance(data, dict) and data.get("job_id") == job_id

    return match


__all__ = ["DROPPED_CODE", "SUBPROTOCOL", "WsSession"]
