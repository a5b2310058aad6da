"""nats-server goes away under a loaded server and comes back (same port, same store).

A real ``ojs-actors serve --backend nats`` on a nats-server of this test alone (file
storage, the backend's default) takes a steady, bounded stream of enqueues, fetches and
acks from client threads. nats-server is stopped for 10 s and started again on the same
port and store directory, the clients going on all along. It must show that:

* while NATS is away, every request fails fast (within :data:`FAIL_FAST_S`) with a 503
  ``backend_unavailable`` OJS error marked retryable: none hangs, none gets another error;
* ``GET /ojs/v1/health`` answers 503 with the backend ``disconnected`` meanwhile;
* once NATS is back the server recovers by itself (no restart of ojs-actors): health is
  ok again and enqueues, fetches and acks succeed;
* no acknowledged job is lost: every job acked before the outage is still completed, and
  every job whose enqueue got a 2xx (before, during or after the outage) gets completed;
  no job whose ack got a 2xx is ever delivered again;
* nothing crash-loops over the outage (no traceback, no escalation in the log).

Requests whose answer was a 503 may or may not have been applied (a write in flight when
NATS stopped); the assertions leave exactly those open.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import NatsServer
from serving import OjsServer, nats_env

OUTAGE_SECONDS = 10.0
FAIL_FAST_S = 2.0
"""Longest a request may take while NATS is away (they take milliseconds)."""
VISIBILITY_MS = 2_000
"""Fetches' visibility timeout: a job claimed by a fetch whose answer was lost comes back."""
PRODUCERS = 2
WORKERS = 2
PACE_S = 0.02
"""Each client thread's pause between rounds (a steady load, not a busy loop)."""
MAX_ROUNDS = 3_000
"""Bound on each client thread's rounds (the test stops them well before)."""

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX processes")


@dataclass
class Load:
    """What the client threads saw (shared by them)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    enqueued: set[str] = field(default_factory=set)
    acked: set[str] = field(default_factory=set)
    ack_failed: set[str] = field(default_factory=set)
    answers: list[tuple[str, float, float, int, str]] = field(default_factory=list)
    """(request, started, seconds taken, status, error code or "")."""
    unexpected: list[str] = field(default_factory=list)

    def note(self, request: str, started: float, response: httpx.Response) -> None:
        taken = time.monotonic() - started
        code = ""
        if response.status_code >= 300:
            try:
                error = response.json()["error"]
                code = error["code"] if error.get("retryable") is True else "not retryable"
            except (ValueError, KeyError, TypeError):
                code = "not an OJS error"
        with self.lock:
            self.answers.append((request, started, taken, response.status_code, code))
            if response.status_code >= 300 and (
                response.status_code != 503 or code != "backend_unavailable"
            ):
                self.unexpected.append(f"{request}: {response.status_code} {response.text}")

    def add(self, name: str, *job_ids: str) -> None:
        with self.lock:
            getattr(self, name).update(job_ids)

    def acks_after(self, moment: float) -> int:
        with self.lock:
            return sum(
                1
                for request, started, _, status, _ in self.answers
                if request == "ack" and status == 200 and started > moment
            )


def noting_failures(target: Callable[[str, int, Load, threading.Event], None]) -> Any:
    """``target``, with anything it raises noted in ``load.unexpected``."""

    def run(url: str, number: int, load: Load, stop: threading.Event) -> None:
        try:
            target(url, number, load, stop)
        except BaseException as error:
            load.unexpected.append(f"{target.__name__} {number}: {error!r}")

    return run


def producer(url: str, number: int, load: Load, stop: threading.Event) -> None:
    with httpx.Client(base_url=url, timeout=30) as client:
        for round_ in range(MAX_ROUNDS):
            if stop.wait(PACE_S):
                return
            body = {"type": "fault.work", "args": [number, round_], "options": {"queue": "f"}}
            started = time.monotonic()
            try:
                response = client.post("/ojs/v1/jobs", json=body)
            except httpx.TransportError as error:
                load.unexpected.append(f"enqueue: {error!r}")
                continue
            load.note("enqueue", started, response)
            if response.status_code == 201:
                load.add("enqueued", response.json()["job"]["id"])


def worker(url: str, number: int, load: Load, stop: threading.Event) -> None:
    with httpx.Client(base_url=url, timeout=30) as client:
        for _ in range(MAX_ROUNDS):
            if stop.wait(PACE_S):
                return
            started = time.monotonic()
            try:
                response = client.post(
                    "/ojs/v1/workers/fetch",
                    json={"queues": ["f"], "count": 2, "worker_id": f"w{number}",
                          "visibility_timeout_ms": VISIBILITY_MS},
                )  # fmt: skip
            except httpx.TransportError as error:
                load.unexpected.append(f"fetch: {error!r}")
                continue
            load.note("fetch", started, response)
            if response.status_code != 200:
                continue
            for job in response.json()["jobs"]:
                started = time.monotonic()
                try:
                    response = client.post("/ojs/v1/workers/ack", json={"job_id": job["id"]})
                except httpx.TransportError as error:
                    load.unexpected.append(f"ack: {error!r}")
                    continue
                load.note("ack", started, response)
                load.add("acked" if response.status_code == 200 else "ack_failed", job["id"])


def wait_for(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        time.sleep(0.05)


def health(client: httpx.Client) -> httpx.Response:
    started = time.monotonic()
    response = client.get("/ojs/v1/health")
    assert time.monotonic() - started < FAIL_FAST_S, "health hung"
    return response


def state_of(client: httpx.Client, job_id: str) -> str:
    response = client.get(f"/ojs/v1/jobs/{job_id}")
    assert response.status_code == 200, response.text
    return str(response.json()["job"]["state"])


@pytest.fixture
def nats(tmp_path: Path) -> Iterator[NatsServer]:
    """A nats-server of this test alone, JetStream on file storage in ``tmp_path``."""
    directory = tmp_path / "nats"
    directory.mkdir()
    with NatsServer(directory) as server:
        yield server


def test_nats_stop_and_restart_under_load(nats: NatsServer, tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    server = OjsServer(["--backend", "nats"], log, env=nats_env(nats.url), poll_interval=0.2)
    load = Load()
    stop = threading.Event()
    threads = [
        threading.Thread(target=noting_failures(producer), args=(server.url, n, load, stop))
        for n in range(PRODUCERS)
    ] + [
        threading.Thread(target=noting_failures(worker), args=(server.url, n, load, stop))
        for n in range(WORKERS)
    ]
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            for thread in threads:
                thread.start()
            wait_for(lambda: len(load.acked) >= 50, 15, "50 acks before the outage")

            nats.stop()
            stopped_at = time.monotonic()
            with load.lock:
                acked_before = set(load.acked)
            # Health says the backend is down, for as long as it is.
            wait_for(lambda: health(client).status_code == 503, FAIL_FAST_S, "health 503")
            downs = 0
            while time.monotonic() < stopped_at + OUTAGE_SECONDS:
                response = health(client)
                assert response.status_code == 503, response.text
                report = response.json()
                assert report["status"] == "degraded", report
                assert report["backend"]["type"] == "nats", report
                assert report["backend"]["status"] == "disconnected", report
                downs += 1
                stop.wait(0.5)
            assert downs >= 10
            assert all(thread.is_alive() for thread in threads), "a client thread ended early"

            restarting_at = time.monotonic()  # NATS may answer from here on
            nats.start()
            wait_for(lambda: health(client).status_code == 200, 15, "recovery")
            recovered_at = time.monotonic()
            report = health(client).json()
            assert report["backend"]["status"] == "connected", report
            wait_for(lambda: load.acks_after(recovered_at) >= 50, 15, "50 acks after recovery")
            stop.set()
            for thread in threads:
                thread.join(timeout=30)
            assert not any(thread.is_alive() for thread in threads), "a client thread hung"

            assert load.unexpected == [], load.unexpected[:20]
            during = [a for a in load.answers if stopped_at + 0.5 < a[1] < restarting_at]
            failed = [a for a in load.answers if a[3] == 503]
            # The load went on through the outage, and everything then failed, fast.
            assert {a[0] for a in during} >= {"enqueue", "fetch"}, during[:5]
            assert len(during) >= 100, len(during)
            assert {a[3] for a in during} == {503}, [a for a in during if a[3] != 503][:5]
            slowest = max(failed, key=lambda a: a[2])
            assert slowest[2] < FAIL_FAST_S, f"a request took {slowest[2]:.2f} s: {slowest}"
            assert {a[4] for a in failed} == {"backend_unavailable"}
            # Acked before the outage: still completed, after it.
            for job_id in acked_before:
                assert state_of(client, job_id) == "completed", job_id

            # Drain, acking everything: every job enqueued with a 2xx gets completed (those
            # claimed by a fetch whose answer was a 503 come back after the visibility
            # timeout); no job acked with a 2xx is ever delivered again.
            done = set(load.acked)
            drained: set[str] = set()
            deadline = time.monotonic() + 4 * VISIBILITY_MS / 1000 + 10
            pending = load.enqueued - done
            got = True  # and on until the queue is dry: an enqueue answered 503 may be stored
            while (pending or got) and time.monotonic() < deadline:
                response = client.post(
                    "/ojs/v1/workers/fetch",
                    json={"queues": ["f"], "count": 50, "worker_id": "drain", "wait_ms": 500},
                )
                assert response.status_code == 200, response.text
                got = bool(response.json()["jobs"])
                for job in response.json()["jobs"]:
                    assert job["id"] not in load.acked, f"acked job {job['id']} delivered again"
                    assert job["id"] not in drained, f"job {job['id']} delivered twice"
                    drained.add(job["id"])
                    answer = client.post("/ojs/v1/workers/ack", json={"job_id": job["id"]})
                    assert answer.status_code == 200, answer.text
                    done.add(job["id"])
                pending = load.enqueued - done
                # An ack that got a 503 may have been stored all the same.
                done |= {j for j in pending & load.ack_failed if state_of(client, j) == "completed"}
                pending = load.enqueued - done
            assert not pending, f"never completed: {sorted(pending)[:10]} ({len(pending)})"
            for job_id in load.enqueued:
                assert state_of(client, job_id) == "completed", job_id
            stats = client.get("/ojs/v1/queues/f/stats").json()["stats"]
            assert {state: n for state, n in stats.items() if n} == {
                "completed": stats["completed"]
            }, stats
            assert stats["completed"] >= len(load.enqueued)  # and those enqueued in doubt
    finally:
        stop.set()
        for thread in threads:
            if thread.ident is not None:
                thread.join(timeout=30)
        server.stop()
    text = log.read_text(errors="replace")
    assert "Escalation" not in text and "Traceback" not in text, text[-5000:]
