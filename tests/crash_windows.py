"""A backend's crash windows, tested the same way on each: the server process dies at a
named crash point (:mod:`ojs_actors.backends.faults`) under a stream of enqueues, fetches
and acks, is restarted on the same store, and every job must still complete exactly as
promised (:func:`check_crash_window`):

* every job whose enqueue got a 2xx completes (none is lost);
* a job whose ack got a 2xx is never fetched again;
* jobs the process had claimed for a fetch that never got its answer come back after
  their visibility timeout (at least once: they may run again, they were never acked);
* in the end the queue holds nothing available or active: jobs stored by a request whose
  answer was lost complete too.

Used by ``test_nats_crash_windows.py`` and ``test_aws_crash_windows.py``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from serving import OjsServer

VISIBILITY_MS = 1_000
ROUNDS = 60
"""Bound on the rounds before the crash (it comes after a few: ``crash_after``)."""
DRAIN_S = 30.0
QUEUE = "windows"


@dataclass
class Ledger:
    enqueued: set[str] = field(default_factory=set)
    acked: set[str] = field(default_factory=set)
    fetched_after_ack: list[str] = field(default_factory=list)
    runs: dict[str, int] = field(default_factory=dict)

    def fetched(self, job_id: str) -> None:
        if job_id in self.acked:
            self.fetched_after_ack.append(job_id)
        self.runs[job_id] = self.runs.get(job_id, 0) + 1


def fetch(client: httpx.Client) -> list[str]:
    response = client.post(
        "/ojs/v1/workers/fetch",
        json={"queues": [QUEUE], "count": 2, "worker_id": "w",
              "visibility_timeout_ms": VISIBILITY_MS},
    )  # fmt: skip
    assert response.status_code == 200, response.text
    return [job["id"] for job in response.json()["jobs"]]


def run_until_killed(client: httpx.Client, ledger: Ledger) -> None:
    """Enqueue, fetch, ack, until the server dies at its crash point."""
    try:
        for round_ in range(ROUNDS):
            response = client.post(
                "/ojs/v1/jobs",
                json={"type": "window.work", "args": [round_], "options": {"queue": QUEUE}},
            )
            assert response.status_code == 201, response.text
            ledger.enqueued.add(response.json()["job"]["id"])
            for job_id in fetch(client):
                ledger.fetched(job_id)
                if round_ % 3 == 2:
                    continue  # left active: its lease runs out
                response = client.post("/ojs/v1/workers/ack", json={"job_id": job_id})
                assert response.status_code == 200, response.text
                ledger.acked.add(job_id)
    except httpx.TransportError:
        return
    pytest.fail(f"the server never reached its crash point in {ROUNDS} rounds")


def drain(client: httpx.Client, ledger: Ledger, within: float) -> None:
    """Fetch and ack until every enqueued job is completed and the queue is empty."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        for job_id in fetch(client):
            ledger.fetched(job_id)
            response = client.post("/ojs/v1/workers/ack", json={"job_id": job_id})
            assert response.status_code == 200, response.text
            ledger.acked.add(job_id)
        stats = client.get(f"/ojs/v1/queues/{QUEUE}/stats").json()["stats"]
        if not any(stats[state] for state in ("available", "active", "scheduled", "retryable")):
            return  # (an ack whose reply was lost completed its job all the same)
        time.sleep(0.1)
    pytest.fail(f"not drained in {within} s: {stats}")


def check_crash_window(
    point: str,
    backend_args: Sequence[str],
    env: Mapping[str, str],
    directory: Path,
    *,
    crash_after: int = 4,
    drain_s: float = DRAIN_S,
) -> None:
    """Run a server with ``backend_args`` and ``env`` until it dies at ``point`` (after
    passing it ``crash_after`` times), restart it on the same store, drain the queue, and
    check that every job completed as promised (the module docstring)."""
    ledger = Ledger()
    doomed = OjsServer(
        backend_args,
        directory / "doomed.log",
        env={**env, "OJS_CRASH_AT": point, "OJS_CRASH_AFTER": str(crash_after)},
        poll_interval=0.2,
    )
    try:
        with httpx.Client(base_url=doomed.url, timeout=10) as client:
            run_until_killed(client, ledger)
        assert doomed.process.wait(timeout=10) == -9  # SIGKILL at the crash point
    finally:
        doomed.stop()
    assert "Traceback" not in (directory / "doomed.log").read_text(errors="replace")

    restarted = OjsServer(backend_args, directory / "restarted.log", env=env, poll_interval=0.2)
    try:
        with httpx.Client(base_url=restarted.url, timeout=10) as client:
            drain(client, ledger, drain_s)
            states = {
                job_id: client.get(f"/ojs/v1/jobs/{job_id}").json()["job"]["state"]
                for job_id in ledger.enqueued
            }
    finally:
        restarted.stop()
    assert set(states.values()) == {"completed"}, states
    assert ledger.fetched_after_ack == []
    assert ledger.enqueued <= set(ledger.runs)
    log = (directory / "restarted.log").read_text(errors="replace")
    assert "Traceback" not in log, log
