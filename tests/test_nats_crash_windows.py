"""The NATS backend's crash windows: the server process dies at each named crash point
(:mod:`ojs_actors.backends.faults`) under a stream of enqueues, fetches and acks, is
restarted on the same NATS, and every job must still complete exactly as promised:

* every job whose enqueue got a 2xx completes (none is lost);
* a job whose ack got a 2xx is never fetched again;
* jobs the process had claimed for a fetch that never got its answer come back after
  their visibility timeout (at least once: they may run again, they were never acked);
* in the end the queue holds nothing available or active: jobs stored by a request whose
  answer was lost complete too.

The windows, one test each (README, "NATS backend"): after an insert's batch is stored
and before the reply; after a claim's batch is stored and before its lane's head is
purged; after that purge and before the jobs reach the worker; after an ack's batch is
stored and before the reply.
"""

from __future__ import annotations

import itertools
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from conftest import NatsServer
from serving import OjsServer

POINTS = ("nats.insert.stored", "nats.claim.stored", "nats.claim.purged", "nats.update.stored")
VISIBILITY_MS = 1_000
ROUNDS = 60
"""Bound on the rounds before the crash (it comes after a few: OJS_CRASH_AFTER)."""
DRAIN_S = 30.0

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="needs SIGKILL")

_streams = itertools.count()


@pytest.fixture(scope="module")
def nats(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    with NatsServer(tmp_path_factory.mktemp("crash-nats")) as server:
        yield server


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
        json={"queues": ["windows"], "count": 2, "worker_id": "w",
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
                json={"type": "window.work", "args": [round_], "options": {"queue": "windows"}},
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


def drain(client: httpx.Client, ledger: Ledger) -> None:
    """Fetch and ack until every enqueued job is completed and the queue is empty."""
    deadline = time.monotonic() + DRAIN_S
    while time.monotonic() < deadline:
        for job_id in fetch(client):
            ledger.fetched(job_id)
            response = client.post("/ojs/v1/workers/ack", json={"job_id": job_id})
            assert response.status_code == 200, response.text
            ledger.acked.add(job_id)
        stats = client.get("/ojs/v1/queues/windows/stats").json()["stats"]
        if not any(stats[state] for state in ("available", "active", "scheduled", "retryable")):
            return  # (an ack whose reply was lost completed its job all the same)
        time.sleep(0.1)
    pytest.fail(f"not drained in {DRAIN_S} s: {stats}")


@pytest.mark.parametrize("point", POINTS)
def test_a_crash_in_the_window_loses_nothing_and_reruns_no_acked_job(
    point: str, nats: NatsServer, tmp_path: Path
) -> None:
    n = next(_streams)
    env = {
        "NATS_URL": nats.url,
        "OJS_NATS_BATCH_MAX": str(NatsServer.batch_max_msgs),
        "OJS_NATS_STREAM": f"CRASH{n}",
        "OJS_NATS_PREFIX": f"crash{n}",
    }
    ledger = Ledger()
    doomed = OjsServer(
        ["--backend", "nats"],
        tmp_path / "doomed.log",
        env={**env, "OJS_CRASH_AT": point, "OJS_CRASH_AFTER": "4"},
        poll_interval=0.2,
    )
    try:
        with httpx.Client(base_url=doomed.url, timeout=10) as client:
            run_until_killed(client, ledger)
        assert doomed.process.wait(timeout=10) == -9  # SIGKILL at the crash point
    finally:
        doomed.stop()
    assert "Traceback" not in (tmp_path / "doomed.log").read_text(errors="replace")

    restarted = OjsServer(["--backend", "nats"], tmp_path / "restarted.log", env=env,
                          poll_interval=0.2)  # fmt: skip
    try:
        with httpx.Client(base_url=restarted.url, timeout=10) as client:
            drain(client, ledger)
            states = {
                job_id: client.get(f"/ojs/v1/jobs/{job_id}").json()["job"]["state"]
                for job_id in ledger.enqueued
            }
    finally:
        restarted.stop()
    assert set(states.values()) == {"completed"}, states
    assert ledger.fetched_after_ack == []
    assert ledger.enqueued <= set(ledger.runs)
    log = (tmp_path / "restarted.log").read_text(errors="replace")
    assert "Traceback" not in log, log
