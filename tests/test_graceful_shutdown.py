"""Graceful shutdown (ojs-graceful-shutdown): a worker's drain reported through
``POST /ojs/v1/workers/beat`` (no new jobs, health 503), and SIGTERM to a real ``ojs-actors
serve``: a long-poll fetch in flight answers at once, the process exits cleanly, and a
request that will not finish (an event stream) is cut after ``--shutdown-timeout``."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from serving import OjsServer

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

JSON = {"Content-Type": "application/json"}


async def request(client: Any, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    with trio.fail_after(10):
        response = await client.open(path, method=method, json=body, headers=JSON)
        data = await response.get_json()
    assert response.status_code < 500 or response.status_code == 503, data
    return response.status_code, data


async def test_a_draining_worker_gets_no_jobs_and_reports_unhealthy(client: Any) -> None:
    await request(client, "POST", "/ojs/v1/jobs", {"type": "gs.job", "args": [], "options": {"queue": "gs"}})  # fmt: skip
    status, body = await request(
        client, "POST", "/ojs/v1/workers/beat", {"worker_id": "w1", "state": "drain", "active_jobs": 2}
    )  # fmt: skip
    assert status == 200
    assert body["acknowledged"] is True and body["state"] == "drain"
    status, health = await request(client, "GET", "/ojs/v1/workers/w1/health")
    assert status == 503
    assert health["state"] == "drain" and health["status"] == "draining"
    assert health["active_jobs"] == 2
    fetch = {"queues": ["gs"], "worker_id": "w1"}
    assert (await request(client, "POST", "/ojs/v1/workers/fetch", fetch))[1]["jobs"] == []
    other = {"queues": ["gs"], "worker_id": "w2"}
    [job] = (await request(client, "POST", "/ojs/v1/workers/fetch", other))[1]["jobs"]
    assert job["type"] == "gs.job"  # the job waited for a worker that is not draining

    await request(client, "POST", "/ojs/v1/workers/beat", {"worker_id": "w1", "state": "running"})
    status, health = await request(client, "GET", "/ojs/v1/workers/w1/health")
    assert status == 200 and health["status"] == "healthy"


async def test_shutdown_flag_and_bad_beats(client: Any) -> None:
    status, body = await request(
        client, "POST", "/ojs/v1/workers/beat", {"worker_id": "w3", "shutdown": True}
    )
    assert status == 200 and body["state"] == "drain"
    status, body = await request(client, "GET", "/ojs/v1/workers/nobody/health")
    assert status == 404 and body["error"]["code"] == "not_found"
    for bad in ({"state": "drain"}, {"worker_id": "w", "state": "asleep"},
                {"worker_id": "w", "active_jobs": -1}, {"worker_id": "w", "shutdown": "yes"}):  # fmt: skip
        status, body = await request(client, "POST", "/ojs/v1/workers/beat", bad)
        assert status == 400, bad


def _sigterm_and_wait(server: OjsServer, within: float) -> tuple[int, float]:
    started = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    code = server.process.wait(timeout=within)
    return code, time.monotonic() - started


def test_sigterm_answers_a_waiting_fetch_and_exits_cleanly(tmp_path: Path) -> None:
    server = OjsServer(["--backend", "memory", "--shutdown-timeout", "20"], tmp_path / "s.log")
    try:
        replies: list[httpx.Response] = []

        def long_poll() -> None:
            body = {"queues": ["gs-empty"], "wait_ms": 25_000}
            replies.append(httpx.post(f"{server.url}/ojs/v1/workers/fetch", json=body, timeout=30))

        waiter = threading.Thread(target=long_poll)
        waiter.start()
        time.sleep(0.5)  # the fetch is waiting inside the server
        code, took = _sigterm_and_wait(server, within=15)
        waiter.join(timeout=15)
        assert code == 0
        assert took < 10  # not the fetch's 25 s wait, nor the 20 s grace period
        [reply] = replies
        assert reply.status_code == 200 and reply.json()["jobs"] == []
        log = server.log_path.read_text()
        assert "received SIGTERM, shutting down" in log
    finally:
        server.stop()


def test_the_grace_period_cuts_requests_that_do_not_finish(tmp_path: Path) -> None:
    """An event stream never ends on its own: SIGTERM waits ``--shutdown-timeout`` for it,
    then cuts it, stops the actors and exits."""
    server = OjsServer(["--backend", "memory", "--shutdown-timeout", "1.5"], tmp_path / "s.log")
    try:
        with (
            httpx.Client(timeout=30) as http,
            http.stream(
                "GET", f"{server.url}/ojs/v1/events/stream", headers={"Accept": "text/event-stream"}
            ) as stream,
        ):
            assert stream.status_code == 200
            code, took = _sigterm_and_wait(server, within=20)
        assert code == 0
        assert 1.0 <= took < 10
    except subprocess.TimeoutExpired:
        pytest.fail("the server outlived its grace period")
    finally:
        server.stop()


async def test_a_quiet_heartbeat_stops_new_jobs_too(client: Any) -> None:
    """ojs-graceful-shutdown §5.1: the worker's heartbeat with ``state: quiet``."""
    await request(client, "POST", "/ojs/v1/jobs", {"type": "gs.job", "args": [], "options": {"queue": "gs-q"}})  # fmt: skip
    await request(client, "POST", "/ojs/v1/workers/heartbeat", {"worker_id": "wq", "state": "quiet"})  # fmt: skip
    fetch = {"queues": ["gs-q"], "worker_id": "wq"}
    assert (await request(client, "POST", "/ojs/v1/workers/fetch", fetch))[1]["jobs"] == []
    await request(client, "POST", "/ojs/v1/workers/heartbeat", {"worker_id": "wq", "state": "running"})  # fmt: skip
    assert len((await request(client, "POST", "/ojs/v1/workers/fetch", fetch))[1]["jobs"]) == 1
