"""The trio-native Redis client (``ojs_actors.backends.redis.client``) against real
``redis-server`` processes (see ``conftest.py``): URLs, login, TLS, scripts, reconnection,
timeouts, error replies, and the pool's behaviour under random cancellation (a connection
is never reused mid-reply, so a call never gets another call's reply)."""

from __future__ import annotations

import contextlib
import os
import random
import resource
import signal
import socket
import ssl
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import hiredis
import pytest
import redis
import trio
import trustme
from conftest import RedisServer

from ojs_actors.backends import open_backend
from ojs_actors.backends.redis.client import (
    Endpoint,
    RedisClient,
    RedisReplyError,
    script_sha,
)
from ojs_actors.core import BackendUnavailable, Job, State
from ojs_actors.testing.services import HOST, free_port


def out_of_band(server: RedisServer, **options: Any) -> redis.Redis:
    """A redis-py client of ``server``, for checks that do not go through the client tested."""
    return redis.Redis(host=HOST, port=server.port, decode_responses=True, **options)


# -- Endpoint.from_url -------------------------------------------------------------------


def test_endpoint_defaults() -> None:
    assert Endpoint.from_url("redis://") == Endpoint(host="localhost")
    endpoint = Endpoint.from_url("redis://example.com")
    assert (endpoint.host, endpoint.port, endpoint.db) == ("example.com", 6379, 0)
    assert (endpoint.username, endpoint.password, endpoint.tls) == (None, None, False)
    assert endpoint.login() == []
    assert Endpoint.from_url("redis://127.0.0.1:7000").port == 7000


def test_endpoint_credentials_are_url_decoded() -> None:
    endpoint = Endpoint.from_url("redis://al%40ice:p%40ss%3Aw%2Frd%20x@h:1")
    assert (endpoint.username, endpoint.password) == ("al@ice", "p@ss:w/rd x")
    assert endpoint.login() == [("AUTH", "al@ice", "p@ss:w/rd x")]
    only_password = Endpoint.from_url("redis://:s3cret@h")
    assert (only_password.username, only_password.password) == (None, "s3cret")
    assert only_password.login() == [("AUTH", "s3cret")]


def test_endpoint_db_from_path_or_query() -> None:
    assert Endpoint.from_url("redis://h/3").db == 3
    assert Endpoint.from_url("redis://h?db=5").db == 5
    assert Endpoint.from_url("redis://h/?db=6").db == 6
    assert Endpoint.from_url("redis://h/").db == 0
    assert Endpoint.from_url("redis://:pw@h/2").login() == [("AUTH", "pw"), ("SELECT", 2)]


def test_endpoint_tls_scheme() -> None:
    assert Endpoint.from_url("rediss://h:6380").tls is True
    assert Endpoint.from_url("redis://h:6380").tls is False
    assert Endpoint.from_url("rediss://h:6380/1").describe() == "rediss://h:6380/1"


@pytest.mark.parametrize("url", ["http://h", "h:6379", "unix:///tmp/redis.sock", "redis+x://h"])
def test_endpoint_bad_scheme(url: str) -> None:
    with pytest.raises(ValueError, match="redis://"):
        Endpoint.from_url(url)


@pytest.mark.parametrize("url", ["redis://h/abc", "redis://h?db=x", "redis://h/1/2"])
def test_endpoint_bad_db(url: str) -> None:
    with pytest.raises(ValueError, match="database must be a number"):
        Endpoint.from_url(url)
    with pytest.raises(ValueError):
        RedisClient(url)


def test_describe_never_shows_the_password() -> None:
    for url in ["redis://alice:hunter2@h:1/4", "rediss://:hunter2@h", "redis://:hunter2@h?db=1"]:
        described = Endpoint.from_url(url).describe()
        assert "hunter2" not in described
    assert Endpoint.from_url("redis://alice:hunter2@h:1/4").describe() == "redis://h:1/4"


# -- login -------------------------------------------------------------------------------


@pytest.fixture
def password_redis(own_redis: RedisServer) -> Iterator[RedisServer]:
    """``own_redis`` requiring the password ``s3cret``, with an ACL user alice/pw."""
    admin = out_of_band(own_redis)
    admin.config_set("requirepass", "s3cret")
    admin.close()
    admin = out_of_band(own_redis, password="s3cret")
    admin.execute_command("ACL", "SETUSER", "alice", "on", ">pw", "~*", "+@all")
    admin.close()
    yield own_redis


async def test_login_with_password(password_redis: RedisServer) -> None:
    client = RedisClient(f"redis://:s3cret@{HOST}:{password_redis.port}")
    try:
        assert await client.execute("PING") == "PONG"
        assert await client.execute("SET", "k", "v") == "OK"
        assert await client.execute("GET", "k") == "v"
        assert await client.execute("ACL", "WHOAMI") == "default"
    finally:
        await client.aclose()


@pytest.mark.parametrize(
    "credentials",
    ["", ":wrong@", "alice:wrong@", "nobody:pw@"],
    ids=["none", "wrong", "user", "nouser"],
)
async def test_login_refused_is_unavailable_not_a_hang(
    password_redis: RedisServer, credentials: str
) -> None:
    client = RedisClient(f"redis://{credentials}{HOST}:{password_redis.port}")
    try:
        with trio.fail_after(3), pytest.raises(BackendUnavailable) as raised:
            await client.execute("PING")
        assert "refused the login" in raised.value.message
        assert raised.value.details["error"] == "login_refused"
        assert "wrong" not in raised.value.message  # the password is never shown
        assert client.pool.open == len(client.pool.idle)  # none leaked
    finally:
        await client.aclose()


async def test_login_as_acl_user(password_redis: RedisServer) -> None:
    client = RedisClient(f"redis://alice:pw@{HOST}:{password_redis.port}")
    try:
        assert await client.execute("ACL", "WHOAMI") == "alice"
        assert await client.execute("SET", "k", "alice's") == "OK"
    finally:
        await client.aclose()


async def test_db_is_selected(password_redis: RedisServer) -> None:
    client = RedisClient(f"redis://:s3cret@{HOST}:{password_redis.port}/3")
    try:
        assert await client.execute("SET", "where", "db3") == "OK"
    finally:
        await client.aclose()
    db3 = out_of_band(password_redis, password="s3cret", db=3)
    db0 = out_of_band(password_redis, password="s3cret", db=0)
    try:
        assert db3.get("where") == "db3"
        assert db0.get("where") is None
    finally:
        db3.close()
        db0.close()


async def test_db_from_query_without_password(own_redis: RedisServer) -> None:
    client = RedisClient(f"redis://{HOST}:{own_redis.port}?db=2")
    try:
        assert await client.execute("SET", "where", "db2") == "OK"
    finally:
        await client.aclose()
    db2 = out_of_band(own_redis, db=2)
    try:
        assert db2.get("where") == "db2"
    finally:
        db2.close()


# -- TLS ---------------------------------------------------------------------------------


@asynccontextmanager
async def tls_front(redis_port: int, certificate: trustme.LeafCert) -> AsyncIterator[int]:
    """A TLS front for a plain Redis, as stunnel or a cloud provider's proxy is: serves TLS
    on a loopback port (yielded) with ``certificate`` and forwards the bytes to Redis. (The
    tests' Redis may be Valkey from PyPI, built without TLS; the client's TLS is the same.)"""

    async def pump(source: trio.abc.Stream, sink: trio.abc.Stream) -> None:
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            while data := await source.receive_some(65_536):
                await sink.send_all(data)

    async def forward(client: trio.SSLStream[trio.SocketStream]) -> None:
        async with client, await trio.open_tcp_stream(HOST, redis_port) as upstream:
            async with trio.open_nursery() as nursery:

                async def both_ways(source: trio.abc.Stream, sink: trio.abc.Stream) -> None:
                    await pump(source, sink)
                    nursery.cancel_scope.cancel()  # one side closed: so is the other

                nursery.start_soon(both_ways, client, upstream)
                nursery.start_soon(both_ways, upstream, client)

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    certificate.configure_cert(context)
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(
            partial(trio.serve_ssl_over_tcp, forward, 0, context, host=HOST)
        )
        yield listeners[0].transport_listener.socket.getsockname()[1]
        nursery.cancel_scope.cancel()


@pytest.fixture
def tls_ca() -> trustme.CA:
    return trustme.CA()


async def test_tls_with_the_ca(
    redis_server: RedisServer, redis_url: str, tls_ca: trustme.CA
) -> None:
    context = ssl.create_default_context()
    tls_ca.configure_trust(context)
    async with tls_front(redis_server.port, tls_ca.issue_cert(HOST)) as port:
        client = RedisClient(f"rediss://{HOST}:{port}", ssl_context=context)
        try:
            with trio.fail_after(5):
                assert await client.execute("PING") == "PONG"
                assert await client.execute("SET", "secure", "yes") == "OK"
                assert await client.execute("GET", "secure") == "yes"
                # reused: the stale check on an idle TLS connection must not misfire
                assert await client.pipeline([("PING",), ("GET", "secure")]) == ["PONG", "yes"]
                assert client.pool.open == 1
        finally:
            await client.aclose()
    plain = out_of_band(redis_server)
    try:
        assert plain.get("secure") == "yes"
    finally:
        plain.close()


async def test_tls_without_the_ca_is_refused(
    redis_server: RedisServer, redis_url: str, tls_ca: trustme.CA
) -> None:
    async with tls_front(redis_server.port, tls_ca.issue_cert(HOST)) as port:
        client = RedisClient(f"rediss://{HOST}:{port}")  # the system's CAs only
        try:
            with trio.fail_after(5), pytest.raises(BackendUnavailable, match="unreachable"):
                await client.execute("PING")
            assert client.pool.open == 0
        finally:
            await client.aclose()


# -- scripts -----------------------------------------------------------------------------

ECHO = "return ARGV[1] .. '!'"


async def test_evalsha_loads_a_flushed_script(redis_url: str) -> None:
    client = RedisClient(redis_url)
    admin = redis.Redis.from_url(redis_url)
    sha = script_sha(ECHO)
    try:
        assert admin.script_exists(sha) == [False]
        assert await client.evalsha(ECHO, sha, ["hi"]) == "hi!"  # NOSCRIPT: loaded
        assert admin.script_exists(sha) == [True]
        admin.script_flush()
        assert admin.script_exists(sha) == [False]
        assert await client.evalsha(ECHO, sha, ["again"]) == "again!"
        assert admin.script_exists(sha) == [True]
        assert await client.evalsha(ECHO, sha, ["loaded"]) == "loaded!"
    finally:
        admin.close()
        await client.aclose()


async def test_evalsha_script_errors(redis_url: str) -> None:
    client = RedisClient(redis_url)
    failing = "return redis.error_reply('no good')"
    try:
        for _ in range(2):  # through the NOSCRIPT fallback, then loaded
            with pytest.raises(RedisReplyError, match="no good"):
                await client.evalsha(failing, script_sha(failing), [])
        assert await client.execute("PING") == "PONG"
    finally:
        await client.aclose()


# -- reconnection ------------------------------------------------------------------------


async def open_idle_connections(client: RedisClient, count: int) -> None:
    """``count`` connections, all idle: concurrent calls each open their own."""
    async with trio.open_nursery() as nursery:
        for _ in range(count):
            nursery.start_soon(client.execute, "PING")
    assert client.pool.open == len(client.pool.idle) == count


async def test_reconnects_after_client_kill(own_redis: RedisServer) -> None:
    client = RedisClient(own_redis.url)
    admin = out_of_band(own_redis)
    try:
        await open_idle_connections(client, 4)
        before = {await client.execute("CLIENT", "ID") for _ in range(4)}
        assert admin.execute_command("CLIENT", "KILL", "TYPE", "normal") >= 4  # not itself
        await trio.sleep(0.05)  # the FINs reach the idle sockets
        with trio.fail_after(3):
            after = await client.execute("CLIENT", "ID")
            assert after not in before  # a new connection: the idle ones were stale
            for _ in range(5):
                assert await client.execute("PING") == "PONG"
        assert client.pool.open == len(client.pool.idle) == 1
    finally:
        admin.close()
        await client.aclose()


async def test_reconnects_after_a_restart(own_redis: RedisServer) -> None:
    client = RedisClient(own_redis.url)
    try:
        await open_idle_connections(client, 3)
        await client.execute("SET", "survives", "yes")
        await trio.to_thread.run_sync(own_redis.stop)
        await trio.to_thread.run_sync(own_redis.start)  # same port, same appendonly file
        with trio.fail_after(3):
            assert await client.execute("GET", "survives") == "yes"
            assert await client.execute("PING") == "PONG"
        assert client.pool.open == len(client.pool.idle) == 1
    finally:
        await client.aclose()


async def test_call_while_redis_is_down_then_up(own_redis: RedisServer) -> None:
    client = RedisClient(own_redis.url, connect_timeout=1.0)
    try:
        assert await client.execute("PING") == "PONG"
        await trio.to_thread.run_sync(own_redis.stop)
        with trio.fail_after(3), pytest.raises(BackendUnavailable, match="unreachable"):
            await client.execute("PING")
        assert client.pool.open == 0
        await trio.to_thread.run_sync(own_redis.start)
        assert await client.execute("PING") == "PONG"
    finally:
        await client.aclose()


# -- timeouts ----------------------------------------------------------------------------


async def test_socket_timeout_on_a_stopped_server(own_redis: RedisServer) -> None:
    process = own_redis.process
    assert process is not None
    client = RedisClient(own_redis.url, socket_timeout=0.5, connect_timeout=0.5)
    try:
        assert await client.execute("PING") == "PONG"
        process.send_signal(signal.SIGSTOP)
        try:
            with trio.fail_after(3):
                started = trio.current_time()
                with pytest.raises(BackendUnavailable, match="timed out"):
                    await client.execute("PING")
                assert trio.current_time() - started < 1.5
                assert client.pool.open == 0  # the timed-out connection was dropped
                with pytest.raises(BackendUnavailable, match="timed out"):
                    await client.execute("PING")  # a new connection: no reply either
        finally:
            process.send_signal(signal.SIGCONT)
        with trio.fail_after(3):
            assert await client.execute("PING") == "PONG"
            assert await client.execute("SET", "k", "v") == "OK"
            assert await client.execute("GET", "k") == "v"
    finally:
        await client.aclose()


async def test_connection_refused() -> None:
    client = RedisClient(f"redis://{HOST}:{free_port()}", connect_timeout=1.0)
    try:
        with trio.fail_after(3), pytest.raises(BackendUnavailable, match="unreachable") as raised:
            await client.execute("PING")
        assert raised.value.details["backend"] == "redis"
        assert client.pool.open == 0
    finally:
        await client.aclose()


@pytest.fixture
def silent_listener() -> Iterator[int]:
    """A loopback port that accepts TCP connections (the kernel's backlog) but never
    answers: a server that hangs while logging a client in."""
    with socket.socket() as listener:
        listener.bind((HOST, 0))
        listener.listen(8)
        yield listener.getsockname()[1]


async def test_connect_timeout(silent_listener: int) -> None:
    client = RedisClient(f"redis://:pw@{HOST}:{silent_listener}", connect_timeout=0.3)
    try:
        with trio.fail_after(3):
            started = trio.current_time()
            with pytest.raises(BackendUnavailable, match="timed out"):
                await client.execute("PING")
            assert trio.current_time() - started < 1.0
        assert client.pool.open == 0
    finally:
        await client.aclose()


# -- error replies -----------------------------------------------------------------------


async def test_error_reply_keeps_the_connection(redis_url: str) -> None:
    client = RedisClient(redis_url)
    try:
        connection_id = await client.execute("CLIENT", "ID")
        with pytest.raises(RedisReplyError, match="unknown command"):
            await client.execute("NOSUCHCOMMAND")
        assert await client.execute("SET", "s", "x") == "OK"
        with pytest.raises(RedisReplyError, match="WRONGTYPE"):
            await client.execute("LPUSH", "s", "y")
        assert await client.execute("CLIENT", "ID") == connection_id  # the same connection
        replies = await client.pipeline([("SET", "a", "1"), ("NOSUCHCOMMAND",), ("GET", "a")])
        assert replies[0] == "OK" and replies[2] == "1"
        assert isinstance(replies[1], hiredis.ReplyError)
        assert client.pool.open == len(client.pool.idle) == 1
    finally:
        await client.aclose()


async def test_busy_reply_is_unavailable(own_redis: RedisServer) -> None:
    admin = out_of_band(own_redis)
    admin.config_set("busy-reply-threshold", 50)  # ms a script runs before others get BUSY
    admin.close()
    spin = (
        "local t0 = redis.call('TIME') "
        "while true do local t = redis.call('TIME') "
        "if (t[1] - t0[1]) * 1000000 + (t[2] - t0[2]) > 600000 then return 'done' end end"
    )
    client = RedisClient(own_redis.url)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client.execute, "EVAL", spin, 0)
            await trio.sleep(0.25)
            with pytest.raises(BackendUnavailable, match="BUSY"):
                await client.execute("PING")
        assert await client.execute("PING") == "PONG"
    finally:
        await client.aclose()


# -- file descriptors beyond select()'s FD_SETSIZE --------------------------------------


@pytest.fixture
def many_descriptors() -> Iterator[None]:
    """Over 1100 descriptors open, so the client's sockets get numbers past 1024."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 1500
    if soft < wanted:
        if hard != resource.RLIM_INFINITY and hard < wanted:
            pytest.skip(f"RLIMIT_NOFILE hard limit {hard} < {wanted}: cannot open the descriptors")
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    descriptors = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    try:
        yield
    finally:
        for descriptor in descriptors:
            os.close(descriptor)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


async def test_reuse_with_a_descriptor_past_fd_setsize(
    redis_url: str, many_descriptors: None
) -> None:
    """The stale check before reuse once used select(), which refuses descriptors >= 1024
    (ValueError, and the connection leaked out of the pool's count)."""
    client = RedisClient(redis_url, max_connections=1)
    try:
        assert await client.execute("PING") == "PONG"
        assert client.pool.idle[0]._fd >= 1024
        with trio.fail_after(3):
            for _ in range(3):
                assert await client.execute("PING") == "PONG"
        assert client.pool.open == len(client.pool.idle) == 1
    finally:
        await client.aclose()


# -- random cancellation under load ------------------------------------------------------

TASKS = 50
ITERATIONS = 200


def random_timeout(rng: random.Random) -> float:
    """0-2 ms, or for half the calls 0-20 ms: 0-2 ms alone cancels nearly every call here
    (each cancellation drops its connection, so the next call reconnects first), and the
    check needs many calls completing on connections that others' cancellations left."""
    return rng.uniform(0, 0.002) if rng.random() < 0.5 else rng.uniform(0, 0.02)


async def wait_for_server_connections(server: RedisServer, expected: int) -> int:
    """The normal connections ``server`` has (besides the checker's own), once it is
    ``expected`` or after a second."""
    admin = out_of_band(server)
    try:
        for _ in range(50):  # Redis notices a closed connection at its next read
            connections = len(admin.client_list()) - 1
            if connections == expected:
                break
            await trio.sleep(0.02)
        return connections
    finally:
        admin.close()


@pytest.mark.parametrize("max_connections", [16, 4])
async def test_random_cancellation_never_mixes_replies(
    own_redis: RedisServer, max_connections: int
) -> None:
    client = RedisClient(own_redis.url, max_connections=max_connections)
    rng = random.Random(1_000 + max_connections)
    completed = cancelled = 0
    mixed: list[tuple[str, Any]] = []
    most_open = 0

    async def worker(n: int) -> None:
        nonlocal completed, cancelled, most_open
        for i in range(ITERATIONS):
            value = f"{n}:{i}:{rng.getrandbits(64):016x}"
            replies = None
            with trio.move_on_after(random_timeout(rng)):
                replies = await client.pipeline([("SET", f"k{n}", value), ("GET", f"k{n}")])
            most_open = max(most_open, client.pool.open)
            if replies is None:
                cancelled += 1
            elif replies == ["OK", value]:
                completed += 1
            else:
                mixed.append((value, replies))

    try:
        async with trio.open_nursery() as nursery:
            for n in range(TASKS):
                nursery.start_soon(worker, n)
        assert mixed == []
        assert completed >= 20 and cancelled >= 20, (completed, cancelled)
        assert most_open <= max_connections
        assert client.pool.open <= max_connections
        assert client.pool.open == len(client.pool.idle)  # nothing in use, nothing leaked
        with trio.fail_after(3):
            assert await client.execute("PING") == "PONG"
            values = await client.pipeline([("GET", f"k{n}") for n in range(TASKS)])
        # a key holds one of its own task's values, or none if none of its SETs was sent
        assert all(value is None or value.startswith(f"{n}:") for n, value in enumerate(values))
        # every connection dropped was closed: Redis has exactly the pool's open ones
        assert await wait_for_server_connections(own_redis, client.pool.open) == client.pool.open
    finally:
        await client.aclose()
    assert await wait_for_server_connections(own_redis, 0) == 0


async def test_waiting_calls_take_turns(redis_url: str) -> None:
    """More callers than connections: each gets its turn. (A caller looping back without
    a checkpoint once took the connection it had just given back before the waiter woken
    for it ran, which parked again at the back: some callers starved for seconds.)"""
    client = RedisClient(redis_url, max_connections=4)
    calls = [0] * TASKS
    slowest = 0.0
    deadline = trio.current_time() + 1.0

    async def caller(n: int) -> None:
        nonlocal slowest
        while trio.current_time() < deadline:
            started = trio.current_time()
            await client.execute("PING")
            slowest = max(slowest, trio.current_time() - started)
            calls[n] += 1

    try:
        async with trio.open_nursery() as nursery:
            for n in range(TASKS):
                nursery.start_soon(caller, n)
    finally:
        await client.aclose()
    mean = sum(calls) / TASKS
    assert min(calls) >= mean / 4, (min(calls), mean, max(calls))
    assert slowest < 0.5, slowest
    assert client.pool.open == 0


async def test_aclose_with_calls_in_flight_and_waiting(redis_url: str) -> None:
    """Calls waiting for a connection when the client closes raise ClosedResourceError at
    once; the call in flight finishes, and its connection closes after it."""
    client = RedisClient(redis_url, max_connections=1)
    results: dict[str, Any] = {}

    async def blocking() -> None:
        results["in flight"] = await client.execute("BLPOP", "nothing", 0.3)

    async def waiting() -> None:
        with pytest.raises(trio.ClosedResourceError):
            await client.execute("PING")
        results["waiting"] = trio.current_time()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(blocking)
        await trio.sleep(0.05)
        nursery.start_soon(waiting)
        await trio.sleep(0.05)
        closed_at = trio.current_time()
        await client.aclose()
    assert results["in flight"] is None  # BLPOP timed out, answered after the close
    assert results["waiting"] - closed_at < 0.1  # not after the call in flight
    assert client.pool.open == 0 and client.pool.idle == []
    with pytest.raises(trio.ClosedResourceError):
        await client.execute("PING")


# -- no claim lost under cancellation (the backend) --------------------------------------


def make(job_id: str) -> Job:
    return Job(id=job_id, type="t", args=[1], queue="q", created_at=1_000, enqueued_at=1_000)


async def test_no_claim_lost_under_cancellation(redis_url: str) -> None:
    """20 claimers under random deadlines: every job is claimed exactly once, whether its
    claimer got the reply or was cancelled."""
    rng = random.Random(9)
    ids = [f"job-{i:03}" for i in range(300)]
    returned: list[str] = []
    calls = {"cancelled": 0, "answered": 0}
    async with open_backend("redis", url=redis_url) as backend:
        await backend.insert_jobs([make(job_id) for job_id in ids])
        assert await backend.count_jobs("q") == {State.AVAILABLE: 300}

        async def claimer() -> None:
            while True:
                claimed = None
                with trio.move_on_after(rng.uniform(0, 0.02)) as scope:
                    claimed, _ = await backend.claim("q", 5, 2_000, "w", None)
                    # The caller's next step: where an expired deadline lands, since
                    # RedisConnection shields the claim itself (sent, it completes).
                    await trio.lowlevel.checkpoint()
                    returned.extend(job.id for job in claimed)
                if scope.cancelled_caught:
                    # Cancelled: if its claim ran, its jobs never reached this caller but
                    # stay active in Redis (claimed once, not lost nor handed out again);
                    # they come back when their visibility timeout expires.
                    calls["cancelled"] += 1
                    continue
                calls["answered"] += 1
                if not claimed and State.AVAILABLE not in await backend.count_jobs("q"):
                    return

        with trio.fail_after(20):
            async with trio.open_nursery() as nursery:
                for _ in range(20):
                    nursery.start_soon(claimer)

        assert len(returned) == len(set(returned)), "a job was claimed twice"
        assert set(returned) <= set(ids)
        assert await backend.count_jobs("q") == {State.ACTIVE: 300}  # each claimed once
        stored = await backend.get_jobs(returned)
        assert all(job is not None and job.state is State.ACTIVE for job in stored)
        assert all(job is not None and job.attempt == 1 for job in stored)
        # the jobs no caller got (their claimer was cancelled after the claim ran)
        unreturned = await backend.get_jobs(sorted(set(ids) - set(returned)))
        assert all(job is not None and job.state is State.ACTIVE for job in unreturned)
        assert all(job is not None and job.attempt == 1 for job in unreturned)
        assert calls["answered"] > 0 and calls["cancelled"] > 0, calls


# -- subscribe --------------------------------------------------------------------------


async def test_a_subscription_receives_what_is_published_and_ends_with_the_server(
    own_redis: RedisServer,
) -> None:
    client = RedisClient(own_redis.url)
    try:
        async with client.subscribe("news") as receive:
            for text in ("one", "two"):
                assert await client.execute("PUBLISH", "news", text) == 1  # one subscriber
                with trio.fail_after(3):
                    assert await receive() == text
            own_redis.stop()
            with trio.fail_after(5), pytest.raises(BackendUnavailable):
                await receive()
    finally:
        await client.aclose()
