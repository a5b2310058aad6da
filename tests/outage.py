"""A backend's store goes away for a while under a loaded server and comes back; the
test of it, the same on each backend (:func:`check_outage`).

A real ``ojs-actors serve`` takes a steady, bounded stream of enqueues, fetches and acks
from client threads. The store goes away (``outage``: a context manager, the store away
inside it) for :attr:`Outage.seconds`, the clients going on all along. It must show that:

* while the store is away, every request fails fast (within :attr:`Outage.fail_fast_s`)
  with a 503 ``backend_unavailable`` OJS error marked retryable: none hangs, none gets
  another error;
* ``GET /ojs/v1/health`` answers 503 with the backend ``unhealthy`` meanwhile;
* once the store is back the server recovers by itself (no restart of ojs-actors):
  health is ok again and enqueues, fetches and acks succeed;
* no acknowledged job is lost: every job acked before the outage is still completed, and
  every job whose enqueue got a 2xx (before, during or after the outage) gets completed;
  no job whose ack got a 2xx is ever delivered again;
* nothing crash-loops over the outage (no traceback, no escalation in the log).

Requests whose answer was a 503 may or may not have been applied (a write in flight when
the store went away); the assertions leave exactly those open.

Used by ``test_nats_faults.py`` and ``test_aws_faults.py``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

import httpx
from serving import OjsServer

VISIBILITY_MS = 2_000
"""Fetches' visibility timeout: a job claimed by a fetch whose answer was lost comes back."""
PRODUCERS = 2
WORKERS = 2
PACE_S = 0.02
"""Each client thread's pause between rounds (a steady load, not a busy loop)."""
MAX_ROUNDS = 3_000
"""Bound on each client thread's rounds (the test stops them well before)."""
QUEUE = "f"


@dataclass(frozen=True)
class Outage:
    """What one backend's outage test expects."""

    backend: str
    """The backend's name in the health report."""
    fail_fast_s: float
    """Longest a request may take while the store is away."""
    seconds: float = 10.0
    """How long the store stays away."""
    acks_before: int = 50
    """Acks before the outage starts, and after the recovery before the load stops."""
    min_during: int = 100
    """Requests at least answered (all 503) while the store is away."""
    min_health_checks: int = 10
    """Health reports at least answered (all 503) while the store is away."""


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
            body = {"type": "fault.work", "args": [number, round_], "options": {"queue": QUEUE}}
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
                    json={"queues": [QUEUE], "count": 2, "worker_id": f"w{number}",
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


def health(client: httpx.Client, fail_fast_s: float) -> httpx.Response:
    started = time.monotonic()
    response = client.get("/ojs/v1/health")
    assert time.monotonic() - started < fail_fast_s, "health hung"
    return response


def state_of(client: httpx.Client, job_id: str) -> str:
    response = client.get(f"/ojs/v1/jobs/{job_id}")
    assert response.status_code == 200, response.text
    return str(response.json()["job"]["state"])


def check_outage(
    server: OjsServer, outage: Callable[[], AbstractContextManager[Any]], expected: Outage
) -> None:
    """Load ``server``, take its store away (inside ``outage()``) for ``expected.seconds``
    and bring it back, and check what the module docstring says; stops ``server``."""
    fail_fast_s = expected.fail_fast_s
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
            wait_for(
                lambda: len(load.acked) >= expected.acks_before,
                15,
                f"{expected.acks_before} acks before the outage",
            )

            with outage():
                stopped_at = time.monotonic()
                with load.lock:
                    acked_before = set(load.acked)
                # Health says the backend is down, for as long as it is.
                wait_for(
                    lambda: health(client, fail_fast_s).status_code == 503,
                    fail_fast_s,
                    "health 503",
                )
                downs = 0
                while time.monotonic() < stopped_at + expected.seconds:
                    response = health(client, fail_fast_s)
                    assert response.status_code == 503, response.text
                    report = response.json()
                    assert report["status"] == "degraded", report
                    assert report["backend"]["type"] == expected.backend, report
                    assert report["backend"]["status"] == "unhealthy", report
                    downs += 1
                    stop.wait(0.5)
                assert downs >= expected.min_health_checks, downs
                assert all(thread.is_alive() for thread in threads), "a client thread ended early"
                restarting_at = time.monotonic()  # the store may answer from here on
            wait_for(lambda: health(client, fail_fast_s).status_code == 200, 15, "recovery")
            recovered_at = time.monotonic()
            report = health(client, fail_fast_s).json()
            assert report["backend"]["status"] == "ok", report
            wait_for(
                lambda: load.acks_after(recovered_at) >= expected.acks_before,
                15,
                f"{expected.acks_before} acks after recovery",
            )
            stop.set()
            for thread in threads:
                thread.join(timeout=30)
            assert not any(thread.is_alive() for thread in threads), "a client thread hung"

            assert load.unexpected == [], load.unexpected[:20]
            # Requests sent while the store was away (and not so late that they may be
            # answered by the store back): every one failed, fast.
            during = [
                a for a in load.answers if stopped_at + 0.5 < a[1] < restarting_at - fail_fast_s
            ]
            failed = [a for a in load.answers if a[3] == 503]
            slow = [
                (
                    a[0],
                    f"sent {a[1] - stopped_at:.2f} s into the outage",
                    f"took {a[2]:.2f} s",
                    a[3],
                )
                for a in sorted({*during, *failed}, key=lambda a: a[1])
                if a[2] >= fail_fast_s
            ]
            assert slow == [], f"requests slower than {fail_fast_s} s: {slow}"
            assert {a[3] for a in during} == {503}, [a for a in during if a[3] != 503][:5]
            assert {a[4] for a in failed} == {"backend_unavailable"}
            assert {a[0] for a in during} >= {"enqueue", "fetch"}, during[:5]
            assert len(during) >= expected.min_during, len(during)
            # Acked before the outage: still completed, after it.
            for job_id in acked_before:
                assert state_of(client, job_id) == "completed", job_id
            drain(client, load)
    finally:
        stop.set()
        for thread in threads:
            if thread.ident is not None:
                thread.join(timeout=30)
        server.stop()
    text = server.log_path.read_text(errors="replace")
    assert "Escalation" not in text and "Traceback" not in text, text[-5000:]


def drain(client: httpx.Client, load: Load) -> None:
    """Fetch and ack everything, then check: every job enqueued with a 2xx gets completed
    (those claimed by a fetch whose answer was a 503 come back after the visibility
    timeout); no job acked with a 2xx is ever delivered again."""
    done = set(load.acked)
    drained: set[str] = set()
    deadline = time.monotonic() + 4 * VISIBILITY_MS / 1000 + 10
    pending = load.enqueued - done
    got = True  # and on until the queue is dry: an enqueue answered 503 may be stored
    while (pending or got) and time.monotonic() < deadline:
        response = client.post(
            "/ojs/v1/workers/fetch",
            json={"queues": [QUEUE], "count": 50, "worker_id": "drain", "wait_ms": 500},
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
    stats = client.get(f"/ojs/v1/queues/{QUEUE}/stats").json()["stats"]
    by_state = {state: n for state, n in stats.items() if state not in ("queue", "depth")}
    assert {state: n for state, n in by_state.items() if n} == {"completed": stats["completed"]}, (
        stats
    )
    assert stats["completed"] >= len(load.enqueued)  # and those enqueued in doubt
