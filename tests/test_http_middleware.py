"""The middleware stack in front of both HTTP paths (:mod:`ojs_actors.http.middleware`).

Keep-alive is tested over real sockets against Hypercorn serving the app in-process
(the wedge it guards against only shows on a real HTTP/1.1 connection); authentication
over every route the app serves; the request deadline against a real redis-server that
stops answering (SIGSTOP).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
from conftest import RedisServer
from serving import REPO, free_port, listening
from test_http import assert_error, call
from test_http_direct import exchange

from ojs_actors.backends import create_backend
from ojs_actors.http import HttpSettings, InsecureBinding, ServeConfig, create_app
from ojs_actors.http.app import OPEN_PATHS
from ojs_actors.http.routes import DIRECT
from ojs_actors.http.routes.admin_ui import STATIC_PATHS
from ojs_actors.http.serve import check_exposure
from ojs_actors.system import System, open_system

MISSING = "019414d4-0000-7000-8000-000000000000"
KEYS = ("current-key-0123456789", "previous-key-9876543210")
SOCKET_DEADLINE = 5  # seconds: any wait on the server longer than this is a hang


@pytest.fixture(params=[True, False], ids=["direct", "quart"])
def direct_routes(request: pytest.FixtureRequest) -> bool:
    flag: bool = request.param
    return flag


@asynccontextmanager
async def served(system: System, settings: HttpSettings) -> AsyncIterator[int]:
    """The app on a real Hypercorn listener on loopback; yields its port."""
    async with listening(create_app(system, settings)) as port:
        yield port


class Connection:
    """One raw HTTP/1.1 keep-alive connection, read response by response."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buffer = b""

    async def send(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def response(self) -> tuple[int, dict[str, str], bytes]:
        """The next whole response (status, lowercased headers, body)."""
        with trio.fail_after(SOCKET_DEADLINE):
            while b"\r\n\r\n" not in self.buffer:
                await self._more()
            head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
            status_line, *lines = head.decode("latin1").split("\r\n")
            headers = {
                name.strip().lower(): value.strip()
                for name, value in (line.split(":", 1) for line in lines)
            }
            length = int(headers.get("content-length", "0"))
            while len(self.buffer) < length:
                await self._more()
            body, self.buffer = self.buffer[:length], self.buffer[length:]
        return int(status_line.split()[1]), headers, body

    async def closed_by_server(self) -> bool:
        """Whether the server ends the connection (EOF) within the deadline."""
        with trio.move_on_after(SOCKET_DEADLINE):
            return await self.stream.receive_some(65536) == b""
        return False

    async def _more(self) -> None:
        data = await self.stream.receive_some(65536)
        if not data:
            raise ConnectionError("the server closed the connection")
        self.buffer += data


@asynccontextmanager
async def connect(port: int) -> AsyncIterator[Connection]:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        yield Connection(stream)


def request_head(method: str, path: str, length: int, extra: dict[str, str] | None = None) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", "Content-Type: application/json",
             f"Content-Length: {length}", *(f"{k}: {v}" for k, v in (extra or {}).items())]  # fmt: skip
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


HEALTH = b"GET /ojs/v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"

# -- keep-alive: a body that arrives after the route could have answered --------------

BODY_ROUTES = [
    pytest.param("POST", "/no/such/path", 404, id="unknown-path"),
    pytest.param("POST", "/ojs/v1/nope", 404, id="unknown-ojs-path"),
    pytest.param("POST", f"/ojs/v1/jobs/{MISSING}/activate", 404, id="known-route-404"),
    pytest.param("POST", "/ojs/v1/queues/default/pause", 200, id="route-ignoring-body"),
    pytest.param("POST", "/ojs/v1/queues/default/resume", 200, id="route-ignoring-body-2"),
    pytest.param("GET", "/ojs/v1/queues", 200, id="get-with-body"),
    pytest.param("DELETE", f"/ojs/v1/jobs/{MISSING}", 404, id="delete-with-body"),
    pytest.param("PUT", "/ojs/v1/jobs", 405, id="wrong-method"),
    pytest.param("POST", "/ojs/v1/workers/ack", 404, id="hot-route-404"),
    pytest.param("POST", "/ojs/manifest", 405, id="manifest-post"),
]


@pytest.mark.parametrize(("method", "path", "status"), BODY_ROUTES)
async def test_a_late_body_never_wedges_the_keep_alive_connection(
    system: System, direct_routes: bool, method: str, path: str, status: int
) -> None:
    body = json.dumps({"job_id": MISSING, "reason": "x" * 64}).encode()
    async with served(system, HttpSettings(direct_routes=direct_routes)) as port:
        async with connect(port) as conn:
            await conn.send(request_head(method, path, len(body)))
            await trio.sleep(0.05)  # the route could answer now, before the body
            await conn.send(body)
            answered, headers, raw = await conn.response()
            assert answered == status, raw
            assert headers["content-type"] == "application/openjobspec+json"
            assert "close" not in headers.get("connection", "")
            await conn.send(HEALTH)  # the same connection serves the next request
            again, _, health = await conn.response()
            assert again == 200, health
            assert json.loads(health)["status"] == "ok"


async def test_a_body_sent_in_slow_pieces_is_read_whole_and_the_connection_kept(
    system: System, direct_routes: bool
) -> None:
    body = json.dumps({"type": "slow.job", "args": ["x" * 200]}).encode()
    async with served(system, HttpSettings(direct_routes=direct_routes)) as port:
        async with connect(port) as conn:
            await conn.send(request_head("POST", "/ojs/v1/jobs", len(body)))
            for start in range(0, len(body), 64):
                await trio.sleep(0.02)
                await conn.send(body[start : start + 64])
            status, _, raw = await conn.response()
            assert status == 201, raw
            await conn.send(HEALTH)
            assert (await conn.response())[0] == 200


async def test_a_declared_body_over_the_limit_is_413_and_the_connection_closes(
    system: System, direct_routes: bool
) -> None:
    settings = HttpSettings(direct_routes=direct_routes, max_body_bytes=1024)
    async with served(system, settings) as port:
        async with connect(port) as conn:
            await conn.send(request_head("POST", "/ojs/v1/jobs", 10_000))
            status, headers, raw = await conn.response()
            assert status == 413
            assert json.loads(raw)["error"]["code"] == "envelope_too_large"
            assert headers["connection"] == "close"
            assert await conn.closed_by_server()
        async with connect(port) as conn:  # the server itself is fine
            await conn.send(HEALTH)
            assert (await conn.response())[0] == 200


async def test_a_body_that_never_arrives_is_408_within_the_body_timeout(
    system: System, direct_routes: bool
) -> None:
    settings = HttpSettings(direct_routes=direct_routes, body_timeout=0.3)
    async with served(system, settings) as port:
        async with connect(port) as conn:
            await conn.send(request_head("POST", "/ojs/v1/workers/fetch", 100) + b'{"que')
            status, headers, raw = await conn.response()
            assert status == 408
            error = json.loads(raw)["error"]
            assert error["code"] == "request_timeout" and error["retryable"] is True
            assert headers["connection"] == "close"
            assert await conn.closed_by_server()


# -- authentication ------------------------------------------------------------------


def every_route(app: Any) -> list[tuple[str, str]]:
    """(method, concrete path) for each HTTP route the app serves, direct ones included.
    The WebSocket route's handshake auth is tested in tests/test_event_stream.py."""
    routes: set[tuple[str, str]] = {("POST", route.path) for route in DIRECT}
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static" or rule.websocket:
            continue
        path = rule.rule
        for argument in rule.arguments:
            path = path.replace(f"<{argument}>", MISSING)
        routes.update((method, path) for method in rule.methods if method not in ("HEAD",))
    return sorted(routes)


def keyed(key: str, scheme: str = "Bearer") -> dict[str, str]:
    return {"Authorization": f"{scheme} {key}"}


async def test_with_a_key_every_endpoint_but_the_probes_needs_it(
    system: System, direct_routes: bool
) -> None:
    app = create_app(
        system, HttpSettings(direct_routes=direct_routes, api_keys=KEYS, allow_reset=True)
    )
    client = app.test_client()
    routes = every_route(app)
    assert len(routes) > 20 and ("POST", "/ojs/v1/jobs") in routes
    for method, path in routes:
        body = None if method in ("GET", "DELETE", "OPTIONS") else {}
        if path in STATIC_PATHS:  # the admin UI's pages, open too (tests/test_admin_ui.py)
            continue
        if path in OPEN_PATHS:  # the probes, open to anyone
            response = await client.open(path, method=method)
            assert response.status_code == (204 if method == "OPTIONS" else 200), (method, path)
            continue
        for headers in ({}, keyed("wrong-key"), keyed(KEYS[0], "Basic"), keyed(KEYS[0][:-1])):
            reply = await call(client, method, path, json=body, headers=headers)
            error = assert_error(reply, 401, "unauthenticated")
            assert error["retryable"] is False
            assert reply.headers["WWW-Authenticate"].startswith("Bearer")
        for key in KEYS:  # both keys of a rotation, and the scheme in any case
            if method == "OPTIONS":  # answered by the framework, with no body
                response = await client.open(path, method=method, headers=keyed(key, "bearer"))
                assert response.status_code == 204, path
                assert "OPTIONS" in response.headers["Allow"]
                continue
            if path == "/metrics":  # Prometheus text, not JSON
                response = await client.open(path, method=method, headers=keyed(key, "bearer"))
                assert response.status_code == 200, path
                continue
            reply = await call(client, method, path, json=body, headers=keyed(key, "bearer"))
            assert reply.status != 401, (method, path, reply.body)


async def test_a_keyed_server_serves_the_whole_lifecycle_with_the_key(
    system: System, direct_routes: bool
) -> None:
    client = create_app(
        system, HttpSettings(direct_routes=direct_routes, api_keys=KEYS)
    ).test_client()
    auth = keyed(KEYS[1])
    job = {"type": "auth.job", "args": [1]}
    assert (await call(client, "POST", "/ojs/v1/jobs", json=job)).status == 401
    created = await call(client, "POST", "/ojs/v1/jobs", json=job, headers=auth)
    assert created.status == 201
    fetched = await call(
        client, "POST", "/ojs/v1/workers/fetch", json={"queues": ["default"]}, headers=auth
    )
    assert [j["id"] for j in fetched.body["jobs"]] == [created.body["job"]["id"]]
    acked = await call(
        client,
        "POST",
        "/ojs/v1/workers/ack",
        json={"job_id": created.body["job"]["id"]},
        headers=auth,
    )
    assert acked.status == 200 and acked.body["state"] == "completed"
    # nothing was done by the refused request
    assert (await call(client, "GET", "/ojs/v1/queues/default/stats", headers=auth)).body["stats"][
        "completed"
    ] == 1


async def test_without_a_key_nothing_is_asked(system: System, direct_routes: bool) -> None:
    client = create_app(system, HttpSettings(direct_routes=direct_routes)).test_client()
    reply = await call(client, "POST", "/ojs/v1/jobs", json={"type": "open.job", "args": []})
    assert reply.status == 201


async def test_a_refused_request_with_a_body_closes_the_connection_instead_of_wedging(
    system: System, direct_routes: bool
) -> None:
    settings = HttpSettings(direct_routes=direct_routes, api_keys=KEYS)
    body = json.dumps({"type": "x.y", "args": []}).encode()
    async with served(system, settings) as port:
        async with connect(port) as conn:  # the body is never read: the connection ends
            await conn.send(request_head("POST", "/ojs/v1/jobs", len(body)))
            status, headers, raw = await conn.response()
            assert status == 401 and json.loads(raw)["error"]["code"] == "unauthenticated"
            assert headers["connection"] == "close"
            assert await conn.closed_by_server()
        async with connect(port) as conn:  # a request without a body keeps its connection
            await conn.send(b"GET /ojs/v1/queues HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            assert (await conn.response())[0] == 401
            await conn.send(HEALTH)
            assert (await conn.response())[0] == 200


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.10", "jobs.example.com"])
def test_a_non_loopback_binding_without_a_key_is_refused(host: str) -> None:
    with pytest.raises(InsecureBinding, match="OJS_API_KEY"):
        check_exposure(ServeConfig(host=host))
    check_exposure(ServeConfig(host=host, http=HttpSettings(api_keys=KEYS)))
    check_exposure(ServeConfig(host=host, allow_insecure_no_auth=True))


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "localhost", "::1", "[::1]"])
def test_loopback_bindings_need_no_key(host: str) -> None:
    check_exposure(ServeConfig(host=host))


def test_the_cli_refuses_to_serve_all_interfaces_without_a_key() -> None:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("OJS_API_KEY", "OJS_ALLOW_INSECURE_NO_AUTH")
    }
    done = subprocess.run(
        [sys.executable, "-m", "ojs_actors", "serve", "--host", "0.0.0.0", "--port", str(free_port())],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "Refusing to serve 0.0.0.0" in done.stderr and "OJS_API_KEY" in done.stderr
    assert "Traceback" not in done.stderr


# -- the request deadline ------------------------------------------------------------


async def test_a_waiting_fetch_keeps_its_own_wait_beyond_the_deadline(
    system: System, direct_routes: bool, autojump_clock: Any
) -> None:
    client = create_app(
        system, HttpSettings(direct_routes=direct_routes, request_timeout=1.0)
    ).test_client()
    started = trio.current_time()
    reply = await call(
        client, "POST", "/ojs/v1/workers/fetch", json={"queues": ["idle"], "wait_ms": 5000}
    )
    assert reply.status == 200 and reply.body["jobs"] == []
    assert trio.current_time() - started >= 5


async def test_a_request_stuck_on_the_backend_gets_a_retryable_503_at_its_deadline(
    own_redis: RedisServer, direct_routes: bool
) -> None:
    backend = create_backend("redis", url=own_redis.url)
    async with open_system(backend) as system:
        settings = HttpSettings(direct_routes=direct_routes, request_timeout=0.5)
        client = create_app(system, settings).test_client()
        job = {"type": "stuck.job", "args": []}
        assert (await call(client, "POST", "/ojs/v1/jobs", json=job)).status == 201
        assert own_redis.process is not None
        own_redis.process.send_signal(signal.SIGSTOP)  # alive, but answers nothing
        try:
            started = trio.current_time()
            for method, path, body in (
                ("POST", "/ojs/v1/jobs", job),
                ("GET", "/ojs/v1/queues/default/stats", None),
            ):
                response = await client.open(path, method=method, json=body)
                assert response.status_code == 503
                assert response.headers["Retry-After"] == "1"
                error = json.loads(await response.get_data())["error"]
                assert error["code"] == "request_timeout" and error["retryable"] is True
                assert error["request_id"] == response.headers["X-Request-Id"]
            assert trio.current_time() - started < 3  # 2 x 0.5 s, not a socket timeout
        finally:
            own_redis.process.send_signal(signal.SIGCONT)
        # and the next request is served as soon as Redis answers again
        assert (await call(client, "POST", "/ojs/v1/jobs", json=job)).status == 201


# -- a client that leaves ---------------------------------------------------------------


async def test_a_request_that_arrived_whole_is_carried_out_though_its_client_left(
    system: System, direct_routes: bool
) -> None:
    """On both paths alike: the disconnect cancels only a request that waits."""

    app = create_app(system, HttpSettings(direct_routes=direct_routes))
    gone = trio.Event()
    gone.set()  # the client is gone right after its request
    body = json.dumps({"type": "left.behind", "args": [], "options": {"queue": "left"}})
    await exchange(app, "/ojs/v1/jobs", [body.encode()], disconnect=gone)
    [job] = await system.fetch(["left"])
    assert job.type == "left.behind"


async def test_a_waiting_fetch_is_cancelled_when_its_client_leaves(
    system: System, direct_routes: bool
) -> None:
    app = create_app(system, HttpSettings(direct_routes=direct_routes))
    gone = trio.Event()
    body = json.dumps({"queues": ["later"], "wait_ms": 30_000}).encode()
    with trio.fail_after(5):  # the poll ends when its client leaves, not after its 30 s
        async with trio.open_nursery() as nursery:
            nursery.start_soon(
                lambda: exchange(app, "/ojs/v1/workers/fetch", [body], disconnect=gone)
            )
            await trio.sleep(0.2)
            gone.set()
    # the abandoned poll claimed nothing: a job enqueued now goes to the next worker
    await system.enqueue({"type": "later.job", "args": [], "options": {"queue": "later"}})
    [job] = await system.fetch(["later"])
    assert job.type == "later.job"


def test_the_cli_carries_keys_timeouts_and_retention_into_the_config(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from ojs_actors.cli import build_parser, serve_config

    monkeypatch.setenv("OJS_API_KEY", f" {KEYS[0]} , {KEYS[1]},")
    monkeypatch.setenv("OJS_WORKER_IDLE_TIMEOUT", "45")
    monkeypatch.setenv("OJS_ALLOW_INSECURE_NO_AUTH", "true")
    argv = ["serve", "--request-timeout", "7", "--workflow-retention", "60", "--no-direct-routes"]
    config = serve_config(build_parser().parse_args(argv))
    assert config.http.api_keys == KEYS
    assert config.http.request_timeout == 7 and config.http.direct_routes is False
    assert config.system.workflow_retention == 60
    assert config.system.worker_idle_timeout == 45
    assert config.allow_insecure_no_auth is True
