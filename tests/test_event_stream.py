"""Live event streams: ``GET /ojs/v1/events/stream`` (SSE) and the WebSocket ``/ojs/v1/ws``.

The streaming logic (:mod:`ojs_actors.system.event_stream`) against a fake outbox under
the autojump clock; the endpoints against the real app on a real Hypercorn listener on
loopback, with raw sockets where the test must control reading (a slow client) and a
small wsproto client for the WebSocket.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
from serving import listening
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    CloseConnection,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)

from ojs_actors.backends import EventFilter
from ojs_actors.cli import build_parser, serve_config
from ojs_actors.http import HttpSettings, create_app
from ojs_actors.http.routes.stream import REALTIME, Realtime
from ojs_actors.system import System
from ojs_actors.system.event_stream import (
    EventFeed,
    Outlet,
    StreamSettings,
    StreamStats,
    follow,
)

WAIT = 10  # seconds: any wait on the server longer than this is a hang
KEY = "stream-key-0123456789"
SSE = {"Accept": "text/event-stream"}


# -- the streaming logic, on a fake outbox -------------------------------------------------


class FakeOutbox:
    """``read_events`` over a list, with the outbox's ``after``/``resume`` semantics."""

    def __init__(self, count: int, first: int = 0) -> None:
        self.events = [self.event(n) for n in range(first, first + count)]
        self.furthest = -1  # index of the furthest event any read returned

    @staticmethod
    def event(n: int) -> dict[str, Any]:
        return {"id": f"evt_{n}", "type": "job.enqueued", "time": f"t{n}", "data": {}}

    async def read(self, query: EventFilter) -> list[dict[str, Any]]:
        await trio.lowlevel.checkpoint()
        ids = [event["id"] for event in self.events]
        if query.after is None:
            start = 0
        elif query.after in ids:
            start = ids.index(query.after) + 1
        else:
            start = 0 if query.resume else len(ids)
        found = self.events[start : start + query.limit]
        self.furthest = max(self.furthest, start + len(found) - 1)
        return found


async def test_a_client_that_takes_nothing_is_dropped_with_memory_bounded(
    autojump_clock: trio.testing.MockClock,
) -> None:
    outbox = FakeOutbox(10_000)
    settings = StreamSettings(buffer_size=10, stall_timeout=5, page=7)
    stats = StreamStats()
    outlet: Outlet[dict[str, Any]] = Outlet(settings.buffer_size, settings.stall_timeout, stats)
    feed = EventFeed(outbox.read, EventFilter())
    await feed.start("evt_0")
    with trio.fail_after(60):
        started = trio.current_time()
        await follow(feed, outlet.put, settings, None)  # returns once the client is dropped
    assert trio.current_time() - started == pytest.approx(5)
    assert outlet.dropped == "slow_consumer" and stats.dropped == 1
    # it read no further than its buffer and one page: the outbox is the backlog
    assert outbox.furthest <= settings.buffer_size + settings.page
    assert stats.high_water == settings.buffer_size and outlet.buffered == 0
    assert await outlet.take() is None  # the writer's cue to tell the reason and close


async def take_every(
    seconds: float, outbox: FakeOutbox, settings: StreamSettings
) -> tuple[list[str], str | None]:
    """What a client taking an event every ``seconds`` gets from ``outbox``, from its
    second event on, and why it was dropped (``None``: it was not)."""
    outlet: Outlet[dict[str, Any]] = Outlet(settings.buffer_size, settings.stall_timeout)
    feed = EventFeed(outbox.read, EventFilter())
    await feed.start(outbox.events[0]["id"])
    taken: list[str] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(follow, feed, outlet.put, settings, None)
        while len(taken) < len(outbox.events) - 1:
            event = await outlet.take()
            if event is None:
                break
            taken.append(event["id"])
            await trio.sleep(seconds)
        nursery.cancel_scope.cancel()
    return taken, outlet.dropped


async def test_a_client_keeping_up_is_never_dropped_one_falling_behind_is(
    autojump_clock: trio.testing.MockClock,
) -> None:
    settings = StreamSettings(buffer_size=5, stall_timeout=5, page=50)
    # 300 events behind, taken in 3 s: the buffer was full throughout, but not for 5 s
    taken, dropped = await take_every(0.01, FakeOutbox(300), settings)
    assert taken == [f"evt_{n}" for n in range(1, 300)] and dropped is None
    # one a second: it makes progress, but its buffer stays full: dropped after 5 s
    taken, dropped = await take_every(1, FakeOutbox(300), settings)
    assert dropped == "slow_consumer"
    assert taken == [f"evt_{n}" for n in range(1, len(taken) + 1)] and 4 <= len(taken) <= 7


async def test_a_feed_resumes_after_a_known_id_and_reports_a_trimmed_one() -> None:
    outbox = FakeOutbox(5, first=10)  # evt_10 … evt_14; evt_0 … evt_9 were trimmed
    feed = EventFeed(outbox.read, EventFilter())
    assert await feed.start("evt_12") is None
    assert [e["id"] for e in await feed.read(10)] == ["evt_13", "evt_14"]
    assert await feed.start("evt_14") is None  # the newest: nothing to read, no gap
    assert await feed.read(10) == []
    gap = await feed.start("evt_3")
    assert gap is not None and gap.oldest_kept["id"] == "evt_10"
    assert [e["id"] for e in await feed.read(2)] == ["evt_10", "evt_11"]
    assert await feed.start(None) is None and feed.position == "evt_14"  # "from now"


# -- the endpoints, on a real listener -----------------------------------------------------


def test_serve_takes_the_stream_settings_from_its_options_and_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def stream(*arguments: str) -> StreamSettings:
        return serve_config(build_parser().parse_args(["serve", *arguments])).http.stream

    assert stream() == StreamSettings()
    monkeypatch.setenv("OJS_STREAM_BUFFER_SIZE", "50")
    monkeypatch.setenv("OJS_STREAM_STALL_TIMEOUT", "2.5")
    assert stream() == StreamSettings(buffer_size=50, stall_timeout=2.5)
    assert stream("--stream-buffer-size", "7").buffer_size == 7


@asynccontextmanager
async def served(
    system: System, settings: StreamSettings | None = None, **http: Any
) -> AsyncIterator[tuple[int, Realtime]]:
    """The app on Hypercorn on loopback: its port and its streams' settings and stats."""
    stream = settings or StreamSettings(heartbeat=0.5, poll_interval=0.2)
    app = create_app(system, HttpSettings(stream=stream, **http))
    live = app.extensions[REALTIME]
    assert isinstance(live, Realtime) and live.settings == stream
    async with listening(app) as port:
        yield port, live


class SseClient:
    """One raw HTTP/1.1 SSE request: the head, then frames as they arrive (chunked)."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.raw = b""
        self.status = 0
        self.headers: dict[str, str] = {}
        self._text = ""  # de-chunked body not yet parsed into frames

    async def open(self, path: str, headers: dict[str, str]) -> None:
        lines = [
            f"GET {path} HTTP/1.1",
            "Host: 127.0.0.1",
            *(f"{k}: {v}" for k, v in headers.items()),
        ]
        await self.stream.send_all(("\r\n".join(lines) + "\r\n\r\n").encode())
        while b"\r\n\r\n" not in self.raw:
            await self._more()
        head, self.raw = self.raw.split(b"\r\n\r\n", 1)
        status_line, *rest = head.decode("latin1").split("\r\n")
        self.status = int(status_line.split()[1])
        self.headers = {
            k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in rest)
        }

    async def frame(self) -> dict[str, str]:
        """The next frame: its fields (``comment`` for a comment line), ``{}`` at the end."""
        with trio.fail_after(WAIT):
            while "\n\n" not in self._text:
                if not await self._chunk():
                    return {}
        block, self._text = self._text.split("\n\n", 1)
        fields: dict[str, str] = {}
        for line in block.split("\n"):
            name, _, value = line.partition(":")
            fields["comment" if name == "" else name] = value.strip()
        return fields

    async def events(self, count: int) -> list[dict[str, Any]]:
        """The next ``count`` events (skipping comments and other frames)."""
        found: list[dict[str, Any]] = []
        while len(found) < count:
            fields = await self.frame()
            assert fields, f"stream ended after {len(found)} events"
            if "id" in fields:
                event = json.loads(fields["data"])
                assert event["id"] == fields["id"] and event["type"] == fields["event"]
                found.append(event)
        return found

    async def quiet(self, seconds: float) -> list[dict[str, str]]:
        """The frames of the next ``seconds`` (heartbeats, say)."""
        frames: list[dict[str, str]] = []
        with trio.move_on_after(seconds):
            while True:
                frames.append(await self.frame())
        return frames

    async def _chunk(self) -> bool:
        while b"\r\n" not in self.raw:
            await self._more()
        size_line, rest = self.raw.split(b"\r\n", 1)
        size = int(size_line, 16)
        while len(rest) < size + 2:
            self.raw = size_line + b"\r\n" + rest
            await self._more()
            size_line, rest = self.raw.split(b"\r\n", 1)
        self._text += rest[:size].decode()
        self.raw = rest[size + 2 :]
        return size > 0

    async def _more(self) -> None:
        data = await self.stream.receive_some(1 << 20)
        if not data:
            raise ConnectionError("the server closed the connection")
        self.raw += data


@asynccontextmanager
async def sse(
    port: int, path: str, headers: dict[str, str] | None = None
) -> AsyncIterator[SseClient]:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        client = SseClient(stream)
        with trio.fail_after(WAIT):
            await client.open(path, {**SSE, **(headers or {})})
        yield client


async def until(condition: Callable[[], bool]) -> None:
    """Bounded polling of a server-side condition (a stream's stats)."""
    with trio.fail_after(WAIT):
        while not condition():  # noqa: ASYNC110 (a condition, not an event to wait on)
            await trio.sleep(0.01)


async def enqueue(system: System, queue: str, job_type: str = "t") -> str:
    job = await system.enqueue({"type": job_type, "args": [], "options": {"queue": queue}})
    return job.id


async def test_sse_delivers_events_as_they_happen_and_filters_them(system: System) -> None:
    async with served(system) as (port, live):
        await enqueue(system, "before")  # before the stream: not replayed ("from now")
        async with sse(port, "/ojs/v1/events/stream?queues=wanted&types=job.enqueued") as client:
            assert client.status == 200
            assert client.headers["content-type"] == "text/event-stream"
            assert (await client.frame()) == {"retry": "3000"}
            assert live.stats.open == 1
            wanted = await enqueue(system, "wanted")
            await enqueue(system, "other")
            await system.fetch(["wanted"])  # job.started: not among the types
            second = await enqueue(system, "wanted")
            events = await client.events(2)
            assert [e["data"]["job_id"] for e in events] == [wanted, second]
            assert {e["type"] for e in events} == {"job.enqueued"}
            frames = await client.quiet(1.2)  # idle: heartbeats, nothing else
            assert frames and all(frame == {"comment": "heartbeat"} for frame in frames)
        await until(lambda: live.stats.open == 0)  # the client left: its stream ends


async def test_sse_reconnect_with_last_event_id_misses_nothing_and_repeats_nothing(
    system: System,
) -> None:
    async with served(system) as (port, _):
        async with sse(port, "/ojs/v1/events/stream?queues=q") as client:
            await client.frame()
            for _ in range(3):
                await enqueue(system, "q")
            first = await client.events(3)
        # away: what happens meanwhile must come on reconnect, then live events
        while_away = [await enqueue(system, "q") for _ in range(4)]
        last = first[-1]["id"]
        async with sse(port, "/ojs/v1/events/stream?queues=q", {"Last-Event-ID": last}) as again:
            await again.frame()
            replayed = await again.events(4)
            assert [e["data"]["job_id"] for e in replayed] == while_away
            live_job = await enqueue(system, "q")
            [live_event] = await again.events(1)
            assert live_event["data"]["job_id"] == live_job
            seen = [e["id"] for e in first + replayed + [live_event]]
            assert len(seen) == len(set(seen)) == 8
            assert await again.quiet(0.7) == [{"comment": "heartbeat"}]  # no duplicates
        # the query parameter is the same resume point (for clients that cannot set headers)
        async with sse(port, f"/ojs/v1/events/stream?queues=q&after={last}") as by_query:
            await by_query.frame()
            assert [e["id"] for e in await by_query.events(5)] == seen[3:]


async def test_sse_resuming_from_an_unknown_id_reports_the_gap(system: System) -> None:
    async with served(system) as (port, _):
        kept = await enqueue(system, "q")
        headers = {"Last-Event-ID": "evt_0190e4a8-0000-7000-8000-000000000000_1_0"}
        async with sse(port, "/ojs/v1/events/stream", headers) as client:
            assert await client.frame() == {"retry": "3000"}
            gap = await client.frame()
            assert gap["event"] == "system.gap" and "id" not in gap
            assert json.loads(gap["data"])["last_event_id"] == headers["Last-Event-ID"]
            [oldest] = await client.events(1)  # resumes at the oldest event kept
            assert oldest["data"]["job_id"] == kept


async def test_a_slow_sse_client_is_dropped_with_the_reason_and_memory_stays_bounded(
    system: System,
) -> None:
    settings = StreamSettings(buffer_size=4, stall_timeout=0.5, heartbeat=30, poll_interval=0.2)
    big = "x" * 400_000
    async with served(system, settings) as (port, live):
        async with sse(port, "/ojs/v1/events/stream?types=job.completed") as client:
            await client.frame()
            # ~16 MB of events: more than the sockets' buffers hold, while nobody reads
            ids = [await enqueue(system, "big") for _ in range(40)]
            for job in await system.fetch(["big"], count=40):
                await system.ack(job.id, {"blob": big})
            await until(lambda: live.stats.dropped == 1)
            assert live.stats.high_water <= settings.buffer_size
            # reading again: a prefix of the events, whole, then the reason, then the end
            received: list[str] = []
            while True:
                fields = await client.frame()
                if "id" in fields:
                    received.append(json.loads(fields["data"])["data"]["job_id"])
                elif fields.get("event") == "system.stream_dropped":
                    notice = json.loads(fields["data"])
                    break
                else:
                    assert fields.get("comment") == "dropped slow_consumer", fields
            assert notice["reason"] == "slow_consumer"
            assert received and received == ids[: len(received)] and len(received) < len(ids)
            assert notice["last_event_id"] is not None
            assert await client.frame() == {}  # the stream ended
        # the client comes back after its last event: the rest, nothing lost (on a busy
        # machine it may be too slow again for a 4-event buffer: then it resumes again)
        last_id = notice["last_event_id"]
        for _ in range(len(ids)):
            if len(received) == len(ids):
                break
            async with sse(
                port, "/ojs/v1/events/stream?types=job.completed", {"Last-Event-ID": last_id}
            ) as again:
                await again.frame()
                while fields := await again.frame():
                    if "id" in fields:
                        received.append(json.loads(fields["data"])["data"]["job_id"])
                        last_id = fields["id"]
                    if len(received) == len(ids):
                        break
        assert received == ids


async def test_sse_needs_the_event_stream_accept_header(system: System) -> None:
    async with served(system) as (port, _):
        async with sse(port, "/ojs/v1/events/stream", {"Accept": "*/*"}) as client:
            assert client.status == 406
            assert client.headers["content-type"] == "application/openjobspec+json"


# -- WebSocket -----------------------------------------------------------------------------


class WsClient:
    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.pending: list[Any] = []

    async def handshake(self, headers: dict[str, str]) -> Any:
        request = Request(
            host="127.0.0.1",
            target="/ojs/v1/ws",
            subprotocols=["ojs.v1"],
            extra_headers=[(k.encode(), v.encode()) for k, v in headers.items()],
        )
        await self.stream.send_all(self.ws.send(request))
        return await self._event()

    async def send(self, message: dict[str, Any]) -> None:
        await self.stream.send_all(self.ws.send(TextMessage(data=json.dumps(message))))

    async def receive(self) -> dict[str, Any]:
        event = await self._event()
        assert isinstance(event, TextMessage), event
        message: dict[str, Any] = json.loads(event.data)
        return message

    async def _event(self) -> Any:
        with trio.fail_after(WAIT):
            while not self.pending:
                data = await self.stream.receive_some(1 << 16)
                self.ws.receive_data(data or None)
                self.pending.extend(self.ws.events())
        return self.pending.pop(0)


@asynccontextmanager
async def ws(
    port: int, headers: dict[str, str] | None = None
) -> AsyncIterator[tuple[WsClient, Any]]:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        client = WsClient(stream)
        yield client, await client.handshake(headers or {})


async def test_websocket_subscribe_receive_filter_and_unsubscribe(system: System) -> None:
    async with served(system) as (port, _):
        async with ws(port) as (client, accepted):
            assert isinstance(accepted, AcceptConnection) and accepted.subprotocol == "ojs.v1"
            await client.send({"action": "subscribe", "channel": "queue:nope"})
            error = await client.receive()
            assert error["type"] == "error" and error["code"] == "not_found"
            job = await enqueue(system, "wsq")
            await client.send({"action": "subscribe", "channel": f"job:{job}"})
            assert await client.receive() == {"type": "subscribed", "channel": f"job:{job}"}
            await client.send(
                {"action": "subscribe", "channel": "queue:wsq", "event_types": ["job.started"]}
            )
            assert await client.receive() == {
                "type": "subscribed",
                "channel": "queue:wsq",
                "event_types": ["job.started"],
            }
            await enqueue(system, "wsq")  # another job: not on the job channel, not started
            await system.fetch(["wsq"])  # starts `job`, the oldest
            frames = [await client.receive() for _ in range(2)]
            by_channel = {frame["channel"]: frame for frame in frames}
            assert set(by_channel) == {f"job:{job}", "queue:wsq"}
            for frame in frames:
                assert frame["type"] == "event" and frame["event"] == "job.started"
                assert frame["data"]["data"]["job_id"] == job
                assert frame["id"] == frame["data"]["id"] and frame["timestamp"]
            await client.send({"action": "unsubscribe", "channel": "queue:wsq"})
            assert await client.receive() == {"type": "unsubscribed", "channel": "queue:wsq"}
            await system.ack(job)
            frame = await client.receive()  # the job channel only
            assert (frame["channel"], frame["event"]) == (f"job:{job}", "job.completed")
            await client.send({"action": "dance"})
            assert (await client.receive())["code"] == "invalid_request"


async def test_websocket_resume_replays_after_the_last_event(system: System) -> None:
    async with served(system) as (port, _):
        async with ws(port) as (client, _):
            await client.send({"action": "subscribe", "channel": "all"})
            await client.receive()
            await enqueue(system, "r")
            last = (await client.receive())["id"]
        missed = [await enqueue(system, "r") for _ in range(2)]
        async with ws(port) as (client, _):
            await client.send({"action": "resume", "last_event_id": last})
            assert (await client.receive())["type"] == "resumed"
            await client.send({"action": "subscribe", "channel": "all"})
            assert (await client.receive())["type"] == "subscribed"
            frames = [await client.receive() for _ in range(2)]
            assert [frame["data"]["data"]["job_id"] for frame in frames] == missed


async def test_a_slow_websocket_client_is_closed_with_a_code_and_reason(system: System) -> None:
    settings = StreamSettings(buffer_size=2, stall_timeout=0.3, poll_interval=0.2)
    async with served(system, settings) as (port, live):
        async with ws(port) as (client, _):
            for _ in range(30):
                await enqueue(system, "big")
            await client.send({"action": "subscribe", "channel": "queue:big"})
            assert (await client.receive())["type"] == "subscribed"
            for job in await system.fetch(["big"], count=30):
                await system.ack(job.id, {"blob": "x" * 400_000})
            await until(lambda: live.stats.dropped == 1)
            while not isinstance(event := await client._event(), CloseConnection):
                assert isinstance(event, TextMessage)
            assert event.code == 1013 and (event.reason or "").startswith("slow_consumer")


# -- authentication ------------------------------------------------------------------------


async def test_both_endpoints_need_the_key_when_keys_are_set(system: System) -> None:
    async with served(system, api_keys=(KEY,)) as (port, _):
        async with sse(port, "/ojs/v1/events/stream") as client:
            assert client.status == 401
        keyed = {"Authorization": f"Bearer {KEY}"}
        async with sse(port, "/ojs/v1/events/stream", keyed) as client:
            assert client.status == 200
        async with ws(port) as (_, refused):
            assert isinstance(refused, RejectConnection) and refused.status_code == 401
        async with ws(port, {"Authorization": "Bearer wrong"}) as (client, refused):
            assert isinstance(refused, RejectConnection)
            body = await client._event()
            assert isinstance(body, RejectData)
            assert json.loads(body.data)["error"]["code"] == "unauthenticated"
        async with ws(port, keyed) as (_, accepted):
            assert isinstance(accepted, AcceptConnection)


def test_stream_settings_are_plain_data() -> None:
    assert dataclasses.replace(StreamSettings(), buffer_size=5).buffer_size == 5
