"""The trio-native NATS client (``ojs_actors.backends.nats``: protocol, client, jetstream)
against real ``nats-server`` processes (``ojs_actors.testing.services.NatsServer``, 2.12
or later with JetStream): the wire format, URLs, login, TLS, pipelining, reconnection,
timeouts, the server's PINGs, the pool under random cancellation (a call never gets
another call's reply), and the JetStream calls the backend makes, with the server's
limits on atomic batches and Direct Get measured here."""

from __future__ import annotations

import json
import random
import socket
import ssl
import sys
import urllib.request
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
import trustme

from ojs_actors.backends.nats.client import (
    Endpoint,
    NatsClient,
    NoResponders,
    Request,
    read_creds,
)
from ojs_actors.backends.nats.jetstream import (
    ERR_BATCH_TOO_LARGE,
    ERR_BATCH_TOO_MANY_INFLIGHT,
    ERR_STREAM_NOT_FOUND,
    ERR_WRONG_LAST_SEQUENCE,
    MAX_INFLIGHT_PER_STREAM,
    MAX_MULTI_LAST,
    MAX_SUBJECT_DETAILS,
    JetStream,
    JetStreamError,
    Message,
    PubAck,
    api_request,
    atomic_batch_request,
    direct_get_request,
    parse_api,
    parse_batch_ack,
    parse_direct,
)
from ojs_actors.backends.nats.protocol import (
    PING,
    PONG,
    Err,
    Info,
    Msg,
    Ok,
    Parser,
    Ping,
    Pong,
    ProtocolError,
    connect,
    pub,
    sub,
    unsub,
)
from ojs_actors.core import BackendUnavailable
from ojs_actors.testing.services import HOST, NatsServer, free_port


class Nats(NatsServer):
    """``NatsServer`` with more command-line options (auth, TLS, a config file, a
    monitoring port)."""

    def __init__(self, directory: Path | None = None, *, extra: Sequence[str] = ()) -> None:
        super().__init__(directory)
        self.extra = list(extra)

    def command(self) -> list[str]:
        return [*super().command(), *self.extra]


@pytest.fixture(scope="module")
def nats(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nats]:
    """One server for the tests that neither stop it nor need options (each uses
    subjects and streams of its own)."""
    with Nats(tmp_path_factory.mktemp("nats")) as server:
        yield server


@pytest.fixture
def own_nats(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nats]:
    """A server of this test alone, to stop and restart (same port, same store)."""
    with Nats(tmp_path_factory.mktemp("own-nats")) as server:
        yield server


# -- a service on the server, in the raw protocol ---------------------------------------


@asynccontextmanager
async def responder(port: int, subject: str = "svc.>") -> AsyncIterator[None]:
    """A service answering requests on ``subject``, written with :mod:`.protocol` alone
    on its own socket: ``svc.echo``: the request's data and headers back (plus
    ``Echoed: yes``); ``svc.slow.<ms>``: the same after that many milliseconds;
    ``svc.status.<code>``: an empty reply with that status; ``svc.twice``: two replies;
    ``svc.silent``: none."""
    stream = await trio.open_tcp_stream(HOST, port)
    parser = Parser()
    sending = trio.Lock()
    greeted = False
    while not greeted:
        greeted = any(isinstance(event, Info) for event in parser.feed(await stream.receive_some()))
    options = {"verbose": False, "pedantic": False, "headers": True, "protocol": 1}
    await stream.send_all(connect(options) + sub(subject, 7) + PING)

    async def send(data: bytes) -> None:
        async with sending:
            await stream.send_all(data)

    async def answer(message: Msg) -> None:
        assert message.reply is not None and message.sid == 7
        kind = message.subject.split(".")[1]
        headers = {**message.headers, "Echoed": "yes"}
        if kind == "slow":
            await trio.sleep(int(message.subject.split(".")[2]) / 1000)
        if kind == "status":
            code = message.subject.split(".")[2]
            frame = f"NATS/1.0 {code} Made Up\r\n\r\n".encode()
            line = f"HPUB {message.reply} {len(frame)} {len(frame)}\r\n".encode()
            await send(line + frame + b"\r\n")
        elif kind == "twice":
            await send(pub(message.reply, b"1") + pub(message.reply, b"2"))
        elif kind != "silent":
            await send(pub(message.reply, message.data, headers=headers))

    async def serve(nursery: trio.Nursery) -> None:
        while data := await stream.receive_some():
            for event in parser.feed(data):
                if isinstance(event, Ping):
                    await send(PONG)
                elif isinstance(event, Msg):
                    nursery.start_soon(answer, event)

    async with trio.open_nursery() as nursery:
        ready = False
        while not ready:  # the subscription is in place once the PONG is back
            ready = any(
                isinstance(event, Pong) for event in parser.feed(await stream.receive_some())
            )
        nursery.start_soon(serve, nursery)
        yield
        nursery.cancel_scope.cancel()
    await stream.aclose()


def connz(monitor_port: int) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://{HOST}:{monitor_port}/connz", timeout=5) as reply:
        answer: dict[str, Any] = json.load(reply)
        return answer


# -- protocol -----------------------------------------------------------------------------


def test_parser_events_whatever_the_chunking() -> None:
    wire = (
        b'INFO {"server_id":"x","headers":true,"max_payload":1048576}\r\n'
        b"PING\r\nPONG\r\n+OK\r\n-ERR 'Authorization Violation'\r\n"
        b"MSG a.b 1 5\r\nhello\r\n"
        b"MSG a.b 2 _INBOX.x.1 0\r\n\r\n"
        b"HMSG a.c 3 _INBOX.x.2 26 31\r\nNATS/1.0\r\nK: v\r\nK2:  w\r\n\r\nhello\r\n"
        b"HMSG _INBOX.x.3 1 30 30\r\nNATS/1.0 503 No Responders\r\n\r\n\r\n"
        b"HMSG x 1 16 16\r\nNATS/1.0 204\r\n\r\n\r\n"
        b"msg lower 9 2\r\nok\r\n"
    )
    expected = [
        Info({"server_id": "x", "headers": True, "max_payload": 1048576}),
        Ping(),
        Pong(),
        Ok(),
        Err("Authorization Violation"),
        Msg("a.b", None, b"hello", {}, None, "", 1),
        Msg("a.b", "_INBOX.x.1", b"", {}, None, "", 2),
        Msg("a.c", "_INBOX.x.2", b"hello", {"K": "v", "K2": "w"}, None, "", 3),
        Msg("_INBOX.x.3", None, b"", {}, 503, "No Responders", 1),
        Msg("x", None, b"", {}, 204, "", 1),
        Msg("lower", None, b"ok", {}, None, "", 9),
    ]
    assert Parser().feed(wire) == expected
    for size in (1, 2, 3, 7, 64):  # every split point of frames and payloads
        parser = Parser()
        events = []
        for start in range(0, len(wire), size):
            events += parser.feed(wire[start : start + size])
        assert events == expected, size
    assert Parser().feed(memoryview(wire)) == expected


def test_parser_payload_may_hold_line_ends() -> None:
    data = b"a\r\nMSG x 1 3\r\nPING\r\n"
    frame = f"MSG s 1 {len(data)}\r\n".encode() + data + b"\r\n"
    assert Parser().feed(frame + frame) == [Msg("s", None, data, {}, sid=1)] * 2


@pytest.mark.parametrize(
    "garbage",
    [
        b"HELLO world\r\n",
        b"MSG a.b 1\r\n",
        b"MSG a.b x 3\r\nabc\r\n",
        b"MSG a.b 1 3\r\nabcXY",
        b"HMSG a 1 40 10\r\n",
        b"HMSG a 1 4 4\r\nXXXX\r\n",
        b"HMSG a 1 18 18\r\nNATS/1.0 2x4 no\r\n\r\n\r\n",
        b"HMSG a 1 18 18\r\nNATS/1.0\r\nno colon\r\n\r\n",
        b"INFO [1,2]\r\n",
        b"INFO {nope\r\n",
        b"x" * (1 << 20) + b"y",
    ],
)
def test_parser_rejects_garbage(garbage: bytes) -> None:
    with pytest.raises(ProtocolError):
        Parser().feed(garbage)


def test_encoders() -> None:
    assert pub("a.b", b"hi") == b"PUB a.b 2\r\nhi\r\n"
    assert pub("a.b", b"hi", "r.1") == b"PUB a.b r.1 2\r\nhi\r\n"
    assert pub("a", b"", headers={}) == b"PUB a 0\r\n\r\n"
    block = b"NATS/1.0\r\nK: v\r\n\r\n"
    assert pub("a", b"xy", "r", {"K": "v"}) == b"HPUB a r 18 20\r\n" + block + b"xy\r\n"
    assert pub("a", b"", headers={"K": "v"}) == b"HPUB a 18 18\r\n" + block + b"\r\n"
    assert sub("a.>", 3) == b"SUB a.> 3\r\n"
    assert sub("a.*", 4, "workers") == b"SUB a.* workers 4\r\n"
    assert unsub(3) == b"UNSUB 3\r\n" and unsub(3, 10) == b"UNSUB 3 10\r\n"
    assert connect({"verbose": False}) == b'CONNECT {"verbose":false}\r\n'
    assert (PING, PONG) == (b"PING\r\n", b"PONG\r\n")
    for bad in ["", "a b", "a\tb", "a\r\nPUB x 1"]:
        with pytest.raises(ValueError, match="subject"):
            pub(bad, b"")
        with pytest.raises(ValueError):
            sub(bad, 1)
    with pytest.raises(ValueError, match="reply"):
        pub("a", b"", "r 1")
    for key, value in [("a:b", "v"), ("a b", "v"), ("", "v"), ("k", "x\r\nEvil: 1")]:
        with pytest.raises(ValueError, match="header"):
            pub("a", b"", headers={key: value})


# -- URLs ---------------------------------------------------------------------------------


def test_endpoints_from_urls() -> None:
    assert Endpoint.from_url("nats://h") == Endpoint(host="h")
    assert Endpoint.from_url("nats://h:5000").port == 5000
    both = Endpoint.from_url("nats://al%40ice:p%3Aw@h")
    assert (both.user, both.password, both.token) == ("al@ice", "p:w", None)
    assert both.credentials() == {"user": "al@ice", "pass": "p:w"}
    token = Endpoint.from_url("nats://s3cret@h")
    assert (token.user, token.token, token.credentials()) == (
        None,
        "s3cret",
        {"auth_token": "s3cret"},
    )
    assert Endpoint.from_url("tls://h").tls is True
    listed = Endpoint.from_urls("nats://a:1, tls://b:2,")
    assert [e.describe() for e in listed] == ["nats://a:1", "tls://b:2"]
    assert "hunter2" not in Endpoint.from_url("nats://u:hunter2@h").describe()
    for bad in ["http://h", "h:4222", "nats://h/path", "nats://h:port", ""]:
        with pytest.raises(ValueError):
            Endpoint.from_urls(bad)


def test_creds_need_nkeys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    creds = tmp_path / "user.creds"
    creds.write_text(
        "-----BEGIN NATS USER JWT-----\neyJhbGciOi.payload.sig\n------END NATS USER JWT------\n\n"
        "************************* IMPORTANT *************************\n"
        "NKEY Seed printed below can be used to sign and prove identity.\n\n"
        "-----BEGIN USER NKEY SEED-----\nSUAIBDPBAUTWCWBKIO6XHQNINK5FWJW4OHLXC3HQ2KFE4PEJUA44CNHTC4\n"
        "------END USER NKEY SEED------\n"
    )
    jwt, seed = read_creds(creds)
    assert jwt == "eyJhbGciOi.payload.sig" and seed.startswith("SUA")
    monkeypatch.setitem(sys.modules, "nkeys", None)  # as if not installed
    with pytest.raises(ImportError, match="pip install nkeys"):
        NatsClient("nats://h", creds=str(creds))
    (tmp_path / "bad.creds").write_text("nothing")
    with pytest.raises(ValueError, match="creds"):
        read_creds(tmp_path / "bad.creds")


# -- requests -----------------------------------------------------------------------------


async def test_request_reply_and_pipelining(nats: Nats) -> None:
    client = NatsClient(nats.url)
    try:
        async with responder(nats.port):
            reply = await client.request("svc.echo", b"ping", {"Trace": "t-1", "X-Two": "a b"})
            assert reply.data == b"ping"
            assert reply.headers == {"Trace": "t-1", "X-Two": "a b", "Echoed": "yes"}
            assert reply.status is None and reply.reply is None
            assert reply.subject.startswith("_INBOX.")
            assert client.round_trips == 1 and client.messages_out == 1
            calls = [Request("svc.echo", f"{n}".encode()) for n in range(50)]
            replies = await client.requests(calls)
            assert [[m.data for m in r] for r in replies] == [[f"{n}".encode()] for n in range(50)]
            assert client.round_trips == 2 and client.messages_out == 51
            mixed = await client.requests(
                [
                    Request("svc.slow.50", b"late"),
                    Request("svc.echo", b"now"),
                    Request("x.y", replies="none"),
                ]
            )
            assert [[m.data for m in r] for r in mixed] == [[b"late"], [b"now"], []]
            assert client.round_trips == 3 and client.pool.open == 1
            assert client.server_version >= (2, 12, 0)
            assert client.server_info["headers"] is True
            assert await client.ping() > 0
    finally:
        await client.aclose()


async def test_status_replies_and_no_responders(nats: Nats) -> None:
    client = NatsClient(nats.url)
    try:
        async with responder(nats.port):
            reply = await client.request("svc.status.404")
            assert (reply.status, reply.description, reply.data) == (404, "Made Up", b"")
            with pytest.raises(NoResponders, match="nobody.home") as raised:
                await client.request("nobody.home")
            assert raised.value.details["error"] == "no_responders"
            assert isinstance(raised.value, BackendUnavailable)
            # one 503 in a pipeline raises, and the connection stays (all was read)
            with pytest.raises(NoResponders):
                await client.requests([Request("svc.echo"), Request("nobody.home")])
            assert client.pool.open == len(client.pool.idle) == 1
            # a second reply to the same request arrives during the next call: ignored
            assert (await client.request("svc.twice")).data == b"1"
            assert (await client.request("svc.echo", b"after")).data == b"after"
    finally:
        await client.aclose()


async def test_publish_and_subscribe(nats: Nats) -> None:
    client = NatsClient(nats.url)
    try:
        async with client.subscribe("news.>") as receive:
            assert client.pool.open == 0  # a connection of its own, not the pool's
            await client.publish("news.sport", b"goal", {"Kind": "score"})
            await client.publish("other", b"not for it")
            await client.publish("news.weather", b"rain")
            with trio.fail_after(3):
                first, second = await receive(), await receive()
            assert (first.subject, first.data, first.headers) == (
                "news.sport",
                b"goal",
                {"Kind": "score"},
            )
            assert (second.subject, second.data, second.headers) == ("news.weather", b"rain", {})
            assert client.round_trips == 3 and client.messages_out == 3
    finally:
        await client.aclose()


async def test_a_subscription_ends_with_the_server(own_nats: Nats) -> None:
    client = NatsClient(own_nats.url)
    try:
        async with client.subscribe("news") as receive:
            await trio.to_thread.run_sync(own_nats.stop)
            with trio.fail_after(5), pytest.raises(BackendUnavailable, match="unreachable"):
                await receive()
    finally:
        await client.aclose()


async def test_max_payload_is_checked_before_sending(nats: Nats) -> None:
    client = NatsClient(nats.url)
    try:
        await client.ping()
        limit = client.server_info["max_payload"]
        with pytest.raises(ValueError, match="max_payload"):
            await client.publish("big", b"x" * (limit + 1))
        await client.publish("big", b"x" * (limit - 100))
        assert client.pool.open == len(client.pool.idle) == 1
    finally:
        await client.aclose()


# -- the server's PINGs -------------------------------------------------------------------


@pytest.fixture
def pinging_nats(tmp_path: Path) -> Iterator[Nats]:
    """A server that PINGs every 100 ms and drops a client 2 PINGs behind."""
    config = tmp_path / "ping.conf"
    config.write_text('ping_interval: "100ms"\nping_max: 2\n')
    with Nats(tmp_path, extra=["-c", str(config)]) as server:
        yield server


async def test_server_pings_are_answered_during_a_long_read(pinging_nats: Nats) -> None:
    # A client that does not answer is dropped as stale within half a second ...
    async with await trio.open_tcp_stream(HOST, pinging_nats.port) as mute:
        await mute.send_all(connect({"verbose": False, "headers": True}))
        received = b""
        with trio.fail_after(3):
            while chunk := await mute.receive_some():
                received += chunk
        assert received.count(PING) >= 2 and b"Stale Connection" in received
    # ... while a call waiting 1.2 s for its reply answers the PINGs and keeps its connection
    client = NatsClient(pinging_nats.url)
    try:
        async with responder(pinging_nats.port):
            with trio.fail_after(5):
                assert (await client.request("svc.slow.1200", b"patience")).data == b"patience"
                assert client.pool.open == len(client.pool.idle) == 1
                assert (await client.request("svc.echo", b"same")).data == b"same"
            assert client.pool.open == 1
    finally:
        await client.aclose()


# -- failures -----------------------------------------------------------------------------


async def test_connection_refused_is_fast() -> None:
    client = NatsClient(f"nats://{HOST}:{free_port()}")
    try:
        with trio.fail_after(3):
            started = trio.current_time()
            with pytest.raises(BackendUnavailable, match="unreachable") as raised:
                await client.ping()
            assert trio.current_time() - started < 0.5  # refused, not a timeout
        assert raised.value.details["backend"] == "nats"
        assert client.pool.open == 0
    finally:
        await client.aclose()


async def test_a_list_of_urls(nats: Nats) -> None:
    down = f"nats://{HOST}:{free_port()}"
    client = NatsClient(f"{down},{nats.url}")
    try:
        assert await client.ping() > 0
        assert client.endpoint.port == nats.port  # the one that answered is tried first now
    finally:
        await client.aclose()
    client = NatsClient(f"{down},nats://{HOST}:{free_port()}")
    try:
        with pytest.raises(BackendUnavailable, match="no NATS server answered"):
            await client.ping()
    finally:
        await client.aclose()


async def open_idle_connections(client: NatsClient, count: int) -> None:
    async with trio.open_nursery() as nursery:
        for _ in range(count):
            nursery.start_soon(client.ping)
    assert client.pool.open == len(client.pool.idle) == count


async def test_reconnects_after_a_restart(own_nats: Nats) -> None:
    client = NatsClient(own_nats.url, connect_timeout=1.0)
    js = JetStream(client)
    try:
        await js.ensure_stream({"name": "R", "subjects": ["r.>"], "allow_direct": True})
        await js.publish("r.kept", b"on disk")
        await open_idle_connections(client, 3)
        await trio.to_thread.run_sync(own_nats.stop)
        with trio.fail_after(3), pytest.raises(BackendUnavailable, match="unreachable"):
            await client.ping()  # down: the idle connections were stale, and none opens
        assert client.pool.open == 0
        await trio.to_thread.run_sync(own_nats.start)  # same port, same store
        with trio.fail_after(5):
            last = await js.get_last("R", ["r.kept"])
        assert last["r.kept"].data == b"on disk"
        assert client.pool.open == len(client.pool.idle) == 1
    finally:
        await client.aclose()


async def test_request_timeout_drops_the_connection(nats: Nats) -> None:
    client = NatsClient(nats.url, request_timeout=0.3)
    try:
        async with responder(nats.port):
            with trio.fail_after(3):
                started = trio.current_time()
                with pytest.raises(BackendUnavailable, match="timed out"):
                    await client.request("svc.silent")
                assert trio.current_time() - started < 1.0
                assert client.pool.open == 0  # never reused mid-reply
                assert (await client.request("svc.echo", b"again")).data == b"again"
    finally:
        await client.aclose()


async def test_connect_timeout() -> None:
    with socket.socket() as listener:  # accepts (the kernel's backlog), never says INFO
        listener.bind((HOST, 0))
        listener.listen(8)
        client = NatsClient(f"nats://{HOST}:{listener.getsockname()[1]}", connect_timeout=0.3)
        try:
            with trio.fail_after(3), pytest.raises(BackendUnavailable, match="timed out"):
                await client.ping()
            assert client.pool.open == 0
        finally:
            await client.aclose()


# -- login and TLS ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "good", "bad"),
    [
        (["--user", "alice", "--pass", "s3cret"], "alice:s3cret@", ["alice:wrong@", ""]),
        (["--auth", "t0ken"], "t0ken@", ["wrong@", ""]),
    ],
    ids=["password", "token"],
)
async def test_login(tmp_path: Path, options: list[str], good: str, bad: list[str]) -> None:
    with Nats(tmp_path, extra=options) as server:
        client = NatsClient(f"nats://{good}{HOST}:{server.port}")
        try:
            assert client.server_info == {}
            await client.ping()
            assert client.server_info["auth_required"] is True
        finally:
            await client.aclose()
        for credentials in bad:
            client = NatsClient(f"nats://{credentials}{HOST}:{server.port}")
            try:
                with trio.fail_after(3), pytest.raises(BackendUnavailable) as raised:
                    await client.ping()
                assert "refused the login: Authorization Violation" in raised.value.message
                assert raised.value.details["error"] == "login_refused"
                assert "wrong" not in raised.value.message
                assert client.pool.open == 0
            finally:
                await client.aclose()


@pytest.fixture(scope="module")
def tls_nats(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Nats, trustme.CA]]:
    directory = tmp_path_factory.mktemp("tls-nats")
    ca = trustme.CA()
    leaf = ca.issue_cert(HOST)
    cert, key = directory / "server.pem", directory / "server.key"
    leaf.cert_chain_pems[0].write_to_path(str(cert))
    leaf.private_key_pem.write_to_path(str(key))
    with Nats(directory, extra=["--tls", "--tlscert", str(cert), "--tlskey", str(key)]) as server:
        yield server, ca


@pytest.mark.parametrize("scheme", ["tls", "nats"])  # nats://: upgraded, INFO says tls_required
async def test_tls_with_the_ca(tls_nats: tuple[Nats, trustme.CA], scheme: str) -> None:
    server, ca = tls_nats
    context = ssl.create_default_context()
    ca.configure_trust(context)
    client = NatsClient(f"{scheme}://{HOST}:{server.port}", ssl_context=context)
    try:
        with trio.fail_after(5):
            await client.ping()
            assert client.server_info["tls_required"] is True
            await client.publish("secure", b"yes")
            await client.ping()  # reused: the stale check must not misfire after TLS
            assert client.pool.open == 1
            await JetStream(client).ensure_stream(
                {"name": f"TLS_{scheme}", "subjects": [f"tls.{scheme}"]}
            )
            assert (await JetStream(client).publish(f"tls.{scheme}", b"x")).seq == 1
    finally:
        await client.aclose()


async def test_tls_without_the_ca_is_refused(tls_nats: tuple[Nats, trustme.CA]) -> None:
    server, _ = tls_nats
    client = NatsClient(f"tls://{HOST}:{server.port}")  # the system's CAs only
    try:
        with trio.fail_after(5), pytest.raises(BackendUnavailable, match="unreachable"):
            await client.ping()
        assert client.pool.open == 0
    finally:
        await client.aclose()


async def test_tls_url_to_a_plain_server(nats: Nats) -> None:
    client = NatsClient(f"tls://{HOST}:{nats.port}")
    try:
        with pytest.raises(BackendUnavailable, match="does not offer TLS"):
            await client.ping()
        assert client.pool.open == 0
    finally:
        await client.aclose()


# -- random cancellation under load -------------------------------------------------------

TASKS = 40
ITERATIONS = 100
MIN_EACH = 20
"""Completed and cancelled calls the test needs at least, each, to exercise both."""


@pytest.fixture
def monitored_nats(tmp_path: Path) -> Iterator[tuple[Nats, int]]:
    monitor = free_port()
    with Nats(tmp_path, extra=["-m", str(monitor)]) as server:
        yield server, monitor


async def server_connections(monitor: int, expected: int) -> int:
    """The server's client connections, once ``expected`` or after a second."""
    for _ in range(50):
        count = int((await trio.to_thread.run_sync(connz, monitor))["num_connections"])
        if count == expected:
            break
        await trio.sleep(0.02)
    return count


@pytest.mark.parametrize("max_connections", [8, 3])
async def test_random_cancellation_never_mixes_replies(
    monitored_nats: tuple[Nats, int], max_connections: int
) -> None:
    server, monitor = monitored_nats
    client = NatsClient(server.url, max_connections=max_connections)
    rng = random.Random(2_000 + max_connections)
    completed = cancelled = 0
    mixed: list[tuple[bytes, Any]] = []
    most_open = 0

    def enough(i: int) -> bool:
        # at least ITERATIONS each; more (up to 4x) while a loaded machine has left either
        # outcome short of the 20 the test needs to exercise it
        return i >= ITERATIONS and (
            i >= 4 * ITERATIONS or (completed >= MIN_EACH and cancelled >= MIN_EACH)
        )

    async def worker(n: int) -> None:
        nonlocal completed, cancelled, most_open
        i = 0
        while not enough(i):
            i += 1
            value = f"{n}:{i}:{rng.getrandbits(64):016x}".encode()
            timeout = rng.uniform(0, 0.002) if rng.random() < 0.5 else rng.uniform(0, 0.02)
            replies = None
            with trio.move_on_after(timeout):
                replies = await client.requests(
                    [Request("svc.echo", value), Request("svc.echo", value + b"!", {"N": str(n)})]
                )
            most_open = max(most_open, client.pool.open)
            if replies is None:
                cancelled += 1
            elif [[m.data for m in r] for r in replies] == [[value], [value + b"!"]] and replies[1][
                0
            ].headers["N"] == str(n):
                completed += 1
            else:
                mixed.append((value, replies))

    try:
        async with responder(server.port):
            async with trio.open_nursery() as nursery:
                for n in range(TASKS):
                    nursery.start_soon(worker, n)
            assert mixed == []
            assert completed >= MIN_EACH and cancelled >= MIN_EACH, (completed, cancelled)
            assert most_open <= max_connections
            assert client.pool.open == len(client.pool.idle) <= max_connections  # nothing leaked
            with trio.fail_after(3):
                assert (await client.request("svc.echo", b"still")).data == b"still"
            # every connection dropped was closed: the server has the pool's and the responder's
            assert await server_connections(monitor, client.pool.open + 1) == client.pool.open + 1
    finally:
        await client.aclose()
    assert await server_connections(monitor, 0) == 0


async def test_waiting_calls_take_turns(nats: Nats) -> None:
    client = NatsClient(nats.url, max_connections=2)
    calls = [0] * 20
    deadline = trio.current_time() + 0.5

    async def caller(n: int) -> None:
        while trio.current_time() < deadline:
            await client.ping()
            calls[n] += 1

    try:
        async with trio.open_nursery() as nursery:
            for n in range(20):
                nursery.start_soon(caller, n)
    finally:
        await client.aclose()
    assert min(calls) >= sum(calls) / 20 / 4, calls
    assert client.pool.open == 0


async def test_aclose_with_calls_waiting(nats: Nats) -> None:
    client = NatsClient(nats.url, max_connections=1)
    results: dict[str, Any] = {}

    async def in_flight() -> None:
        results["in flight"] = (await client.request("svc.slow.200", b"done")).data

    async def waiting() -> None:
        with pytest.raises(trio.ClosedResourceError):
            await client.ping()
        results["waiting"] = True

    async with responder(nats.port), trio.open_nursery() as nursery:
        nursery.start_soon(in_flight)
        await trio.sleep(0.05)
        nursery.start_soon(waiting)
        await trio.sleep(0.05)
        await client.aclose()
    assert results == {"in flight": b"done", "waiting": True}
    assert client.pool.open == 0 and client.pool.idle == []


# -- JetStream ----------------------------------------------------------------------------


def stream_config(name: str, subjects: list[str], **more: Any) -> dict[str, Any]:
    return {
        "name": name,
        "subjects": subjects,
        "storage": "memory",
        "allow_atomic": True,
        "allow_direct": True,
        "allow_rollup_hdrs": True,
        "allow_msg_ttl": True,
        **more,
    }


@pytest.fixture
async def js(nats: Nats) -> AsyncIterator[JetStream]:
    client = NatsClient(nats.url)
    try:
        yield JetStream(client)
    finally:
        await client.aclose()


async def test_ensure_stream(js: JetStream) -> None:
    config = stream_config("ENSURE", ["ensure.>"])
    created = await js.ensure_stream(config)
    assert created["config"]["subjects"] == ["ensure.>"]
    trips = js.client.round_trips
    again = await js.ensure_stream(config)  # as it should be: one round trip
    assert js.client.round_trips == trips + 1
    assert again["config"] == created["config"]
    updated = await js.ensure_stream({**config, "max_msgs_per_subject": 5})
    assert updated["config"]["max_msgs_per_subject"] == 5
    info = await js.api("STREAM.INFO.ENSURE")
    assert info["config"]["max_msgs_per_subject"] == 5
    with pytest.raises(JetStreamError) as raised:
        await js.api("STREAM.INFO.NO_SUCH_STREAM")
    assert (raised.value.code, raised.value.err_code) == (404, ERR_STREAM_NOT_FOUND)
    with pytest.raises(NoResponders):
        await js.publish("captured.by.no.stream", b"x")


async def test_atomic_batch_gets_consecutive_sequences(js: JetStream) -> None:
    """Verified here: the messages of an atomic batch are stored with consecutive
    sequences, in order, the commit's last: ack.seq - ack.count + 1 .. ack.seq."""
    await js.ensure_stream(stream_config("BATCH", ["batch.>"]))
    await js.publish("batch.before", b"0")
    messages = [(f"batch.m{i % 3}", f"v{i}".encode(), {"I": str(i)}) for i in range(7)]
    trips = js.client.round_trips
    ack = await js.atomic_publish(messages)
    assert js.client.round_trips == trips + 1
    assert (ack.stream, ack.count, ack.duplicate) == ("BATCH", 7, False)
    stored = await js.get_batch("BATCH", "batch.>", ack.seq - ack.count + 1, 100)
    assert [m.seq for m in stored] == list(range(ack.seq - 6, ack.seq + 1))
    assert [(m.subject, m.data, m.headers["I"]) for m in stored] == [
        (subject, data, headers["I"]) for subject, data, headers in messages
    ]
    assert stored[-1].headers["Nats-Batch-Commit"] == "1"  # the batch headers are stored
    assert stored[0].time.endswith("Z")
    single = await js.atomic_publish([("batch.one", b"1", {})])
    assert (single.seq, single.count) == (ack.seq + 1, 1)
    # the requests: a reply subject on the first and the commit only
    requests = atomic_batch_request(messages)
    assert [r.replies for r in requests] == ["one"] + ["none"] * 5 + ["one"]
    assert {r.headers["Nats-Batch-Id"] for r in requests if r.headers} == {
        requests[0].headers["Nats-Batch-Id"]  # type: ignore[index]
    }
    with pytest.raises(JetStreamError) as too_many:  # the server's max_msgs decides
        await js.atomic_publish([("batch.x", b"", {})] * (NatsServer.batch_max_msgs + 1))
    assert too_many.value.err_code == ERR_BATCH_TOO_LARGE
    with pytest.raises(ValueError):
        atomic_batch_request([])


async def test_atomic_batch_with_a_failed_compare_and_set_stores_nothing(js: JetStream) -> None:
    await js.ensure_stream(stream_config("CAS", ["cas.>"]))
    first = await js.publish("cas.job", b"v1")
    before = await js.api("STREAM.INFO.CAS")
    guard = {"Nats-Expected-Last-Subject-Sequence": str(first.seq)}
    stale = {"Nats-Expected-Last-Subject-Sequence": str(first.seq - 1)}
    with pytest.raises(JetStreamError) as raised:
        await js.atomic_publish(
            [("cas.index", b"i", {}), ("cas.job", b"v2", stale), ("cas.out", b"o", {})]
        )
    assert (raised.value.code, raised.value.err_code) == (400, ERR_WRONG_LAST_SEQUENCE)
    assert raised.value.description == f"wrong last sequence: {first.seq}"
    after = await js.api("STREAM.INFO.CAS")
    assert after["state"]["last_seq"] == before["state"]["last_seq"]  # nothing stored
    assert after["state"]["messages"] == before["state"]["messages"] == 1
    assert await js.stream_subjects("CAS", ">") == {"cas.job": 1}
    ack = await js.atomic_publish([("cas.index", b"i", {}), ("cas.job", b"v2", guard)])
    assert ack.seq == first.seq + 2
    assert (await js.get_last("CAS", ["cas.job"]))["cas.job"].data == b"v2"


async def test_rollup_and_ttl_inside_a_batch(js: JetStream) -> None:
    await js.ensure_stream(stream_config("ROLL", ["roll.>"]))
    for n in range(3):
        await js.publish("roll.count", f"{n}".encode())
    await js.publish("roll.other", b"x")
    ack = await js.atomic_publish(
        [
            ("roll.count", b"total", {"Nats-Rollup": "sub"}),
            ("roll.temp", b"t", {"Nats-TTL": "1h"}),
        ]
    )
    assert ack.count == 2
    assert await js.stream_subjects("ROLL", "roll.>") == {
        "roll.count": 1,
        "roll.other": 1,
        "roll.temp": 1,
    }
    last = await js.get_last("ROLL", ["roll.count", "roll.temp"])
    assert last["roll.count"].data == b"total" and last["roll.count"].seq == ack.seq - 1
    assert last["roll.temp"].headers["Nats-TTL"] == "1h"
    with pytest.raises(JetStreamError, match="rollup all"):  # only a subject roll-up
        await js.atomic_publish([("roll.a", b"", {}), ("roll.b", b"", {"Nats-Rollup": "all"})])


async def test_atomic_publish_many(js: JetStream) -> None:
    await js.ensure_stream(stream_config("MANY", ["many.>"]))
    batches: list[list[Message]] = [
        [(f"many.{b}", f"{b}.{i}".encode(), {}) for i in range(3)] for b in range(120)
    ]
    batches[70] = [("many.cas", b"x", {"Nats-Expected-Last-Subject-Sequence": "99"})]
    trips = js.client.round_trips
    results = await js.atomic_publish_many(batches)
    assert js.client.round_trips == trips + 3  # 50 batches a round trip
    assert (
        isinstance(results[70], JetStreamError) and results[70].err_code == ERR_WRONG_LAST_SEQUENCE
    )
    acks = [r for r in results if isinstance(r, PubAck)]
    assert len(acks) == 119 and all(a.count == 3 for a in acks)
    assert [a.seq for a in acks] == [3 * (n + 1) for n in range(119)]


async def test_inflight_batches_are_limited(js: JetStream) -> None:
    """Measured: the 51st batch open at once on a stream is refused (429, 10210), with
    its first message; batches open on a connection that closed keep their place."""
    await js.ensure_stream(stream_config("INFLIGHT", ["inflight.>"]))
    opening = [
        Request("inflight.x", b"", {"Nats-Batch-Id": f"open-{n}", "Nats-Batch-Sequence": "1"})
        for n in range(MAX_INFLIGHT_PER_STREAM)
    ]
    other = NatsClient(js.client.endpoint.describe())
    try:
        replies = await other.requests(opening)
    finally:
        await other.aclose()
    assert all(r[0].data == b"" for r in replies)  # each batch open
    with pytest.raises(JetStreamError) as raised:
        await js.atomic_publish([("inflight.y", b"1", {}), ("inflight.y", b"2", {})])
    assert (raised.value.code, raised.value.err_code) == (429, ERR_BATCH_TOO_MANY_INFLIGHT)
    with pytest.raises(JetStreamError) as raised:  # a batch of one message too
        parse_batch_ack(await js.client.requests(atomic_batch_request([("inflight.z", b"", {})])))
    assert raised.value.err_code == ERR_BATCH_TOO_MANY_INFLIGHT
    assert await js.stream_subjects("INFLIGHT", ">") == {}


async def test_direct_get_batch_with_a_wildcard(js: JetStream) -> None:
    await js.ensure_stream(stream_config("DG", ["dg.>"]))
    for n in range(10):
        await js.publish(f"dg.{'a' if n % 2 else 'b'}.{n}", f"{n}".encode(), {"N": str(n)})
    request = direct_get_request("DG", seq=1, next_by_subj="dg.a.*", batch=3)
    assert request.replies == "stream"
    [replies] = await js.client.requests([request])
    assert [m.status for m in replies] == [None, None, None, 204]
    assert replies[-1].description == "EOB" and replies[-1].headers["Nats-Num-Pending"] == "2"
    got = parse_direct(replies)
    assert [(m.subject, m.seq, m.data, m.headers) for m in got] == [
        ("dg.a.1", 2, b"1", {"N": "1"}),
        ("dg.a.3", 4, b"3", {"N": "3"}),
        ("dg.a.5", 6, b"5", {"N": "5"}),
    ]
    assert [m.seq for m in await js.get_batch("DG", "dg.a.*", 5, 100)] == [6, 8, 10]
    assert await js.get_batch("DG", "dg.a.*", 11, 100) == []  # 404 alone: none
    [missing] = await js.client.requests([direct_get_request("DG", seq=99)])
    assert missing[0].status == 404 and parse_direct(missing) == []
    [bad] = await js.client.requests([api_request("DIRECT.GET.DG", {})])
    with pytest.raises(JetStreamError) as raised:
        parse_direct(bad)
    assert raised.value.code == 408


async def test_multi_last_with_missing_subjects_and_chunks(js: JetStream) -> None:
    await js.ensure_stream(stream_config("ML", ["ml.>"]))
    count = MAX_MULTI_LAST + 76
    batches: list[list[Message]] = [
        [(f"ml.{n}", b"old", {}), (f"ml.{n}", f"new{n}".encode(), {})] for n in range(count)
    ]
    assert all(isinstance(r, PubAck) for r in await js.atomic_publish_many(batches))
    subjects = [f"ml.{n}" for n in range(count)] + ["ml.missing", "ml.0"]
    trips = js.client.round_trips
    last = await js.get_last("ML", subjects)
    assert js.client.round_trips == trips + 1  # two chunks, one round trip
    assert len(last) == count and "ml.missing" not in last
    assert all(last[f"ml.{n}"].data == f"new{n}".encode() for n in range(count))
    assert await js.get_last("ML", ["ml.missing"]) == {}
    as_of = await js.get_last("ML", ["ml.0"], up_to_seq=1)
    assert as_of["ml.0"].data == b"old"
    # the server's limit: one more subject than it matches in one request is refused
    too_many = direct_get_request("ML", multi_last=subjects[: MAX_MULTI_LAST + 1])
    [replies] = await js.client.requests([too_many])
    assert [(m.status, m.description) for m in replies] == [(413, "Too Many Results")]
    with pytest.raises(JetStreamError) as raised:
        await js.get_last("ML", ["ml.>"])  # a wildcard matching more than 1024
    assert raised.value.code == 413


async def test_purge_with_filter_and_sequence(js: JetStream) -> None:
    await js.ensure_stream(stream_config("PURGE", ["purge.>"]))
    acks = [await js.publish(f"purge.{'a' if n < 6 else 'b'}", f"{n}".encode()) for n in range(8)]
    assert await js.purge("PURGE", filter="purge.a", seq=acks[4].seq) == 4  # a below seq 5
    assert await js.stream_subjects("PURGE", ">") == {"purge.a": 2, "purge.b": 2}
    assert await js.purge("PURGE", filter="purge.a", keep=1) == 1
    assert [m.data for m in await js.get_batch("PURGE", ">", 1, 10)] == [b"5", b"6", b"7"]
    assert await js.purge("PURGE") == 3
    assert await js.stream_subjects("PURGE", ">") == {}


async def test_stream_subjects_pages(js: JetStream) -> None:
    """STREAM.INFO lists 100,000 subjects a page: 101,000 take two."""
    await js.ensure_stream(stream_config("PAGES", ["pages.>"]))
    batches: list[list[Message]] = [
        [(f"pages.{b}.{i}", b"", {}) for i in range(1000)] for b in range(101)
    ]
    assert all(isinstance(r, PubAck) for r in await js.atomic_publish_many(batches))
    first = await js.api("STREAM.INFO.PAGES", {"subjects_filter": ">"})
    assert (first["total"], first["offset"], first["limit"]) == (101_000, 0, MAX_SUBJECT_DETAILS)
    assert len(first["state"]["subjects"]) == MAX_SUBJECT_DETAILS
    trips = js.client.round_trips
    subjects = await js.stream_subjects("PAGES", "pages.>")
    assert js.client.round_trips == trips + 2
    assert len(subjects) == 101_000 and set(subjects.values()) == {1}
    assert await js.stream_subjects("PAGES", "pages.7.*") == {
        f"pages.7.{i}": 1 for i in range(1000)
    }


def test_parse_api_errors() -> None:
    error = b'{"error":{"code":404,"err_code":10059,"description":"stream not found"}}'
    with pytest.raises(JetStreamError) as raised:
        parse_api([Msg("r", None, error, {})])
    assert (raised.value.code, raised.value.err_code, raised.value.description) == (
        404,
        10059,
        "stream not found",
    )
    assert parse_api([Msg("r", None, b'{"ok":1}', {})]) == {"ok": 1}
    with pytest.raises(JetStreamError):
        parse_api([Msg("r", None, b"not json", {})])
    with pytest.raises(JetStreamError):
        parse_api([Msg("r", None, b"", {}, 408, "Request Timeout")])
