"""Acceptance test of the durable backends: SIGKILL a loaded server, restart it on its storage.

A real ``python -m ojs_actors serve`` process (``--backend sqlite`` on a file,
``--backend redis`` on a redis-server, ``--backend nats`` on a nats-server, or
``--backend sqs`` on DynamoDB and SQS, a moto server) takes a bounded stream of
concurrent enqueues, fetches and acks from worker threads and is killed (SIGKILL: no
shutdown code runs) while they are still going. Restarted on the same storage it must
show that:

* every job whose enqueue got a 2xx exists;
* every job whose ack got a 2xx is completed and is never fetched again;
* jobs fetched but not acked come back after their visibility timeout and
  can be fetched again (attempt 2, the timeout on record);
* a job scheduled before the kill is promoted after the restart;
* a cron entry registered before the kill is still registered and fires again;
* a chain workflow whose first step was running at the kill carries on: once that
  step is acked after the restart, the second step is released with its result;
* in the end every acknowledged-as-enqueued job gets completed: nothing is lost;
* the event outbox matches the stored state, right after the restart and at the end:
  each job has the events of every version it went through, and the last of them is
  the one of its current state (no completed job without ``job.completed``).

Requests whose response never arrived (in flight at the kill) may or may not
have been applied; the assertions leave exactly those open.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from serving import OjsServer, aws_env, nats_env

VISIBILITY_MS = 2_000
WORKERS = 6
MAX_ROUNDS = 150
"""Bound on each worker's rounds (one enqueue, one fetch, maybe one ack)."""

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="needs SIGKILL")


@dataclass(frozen=True)
class Storage:
    """How to start a server on the storage that outlives it."""

    args: list[str]
    env: dict[str, str]


def start_server(storage: Storage, log: Path) -> OjsServer:
    return OjsServer(storage.args, log, env=storage.env, poll_interval=0.2, allow_reset=True)


@dataclass
class Record:
    """What the clients learnt before the kill (sets shared by the worker threads)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    enqueued: set[str] = field(default_factory=set)
    fetched: set[str] = field(default_factory=set)
    ack_sent: set[str] = field(default_factory=set)
    acked: set[str] = field(default_factory=set)
    unexpected: list[str] = field(default_factory=list)

    def add(self, name: str, *job_ids: str) -> None:
        with self.lock:
            getattr(self, name).update(job_ids)


def worker(url: str, number: int, record: Record, stop: threading.Event) -> None:
    """Enqueue one job, fetch up to two, ack every other one fetched; until the server dies."""
    with httpx.Client(base_url=url, timeout=10) as client:
        try:
            for round_ in range(MAX_ROUNDS):
                if stop.is_set():
                    return
                body = {
                    "type": "crash.work",
                    "args": [number, round_],
                    "options": {"queue": "crash"},
                }
                response = client.post("/ojs/v1/jobs", json=body)
                if response.status_code == 201:
                    record.add("enqueued", response.json()["job"]["id"])
                else:
                    record.unexpected.append(f"enqueue {response.status_code} {response.text}")
                response = client.post(
                    "/ojs/v1/workers/fetch",
                    json={"queues": ["crash"], "count": 2, "worker_id": f"w{number}",
                          "visibility_timeout_ms": VISIBILITY_MS},
                )  # fmt: skip
                if response.status_code != 200:
                    record.unexpected.append(f"fetch {response.status_code} {response.text}")
                    continue
                jobs = [job["id"] for job in response.json()["jobs"]]
                record.add("fetched", *jobs)
                for job_id in jobs[:1]:  # ack one, leave the other active
                    record.add("ack_sent", job_id)
                    response = client.post("/ojs/v1/workers/ack", json={"job_id": job_id})
                    if response.status_code == 200:
                        record.add("acked", job_id)
                    else:
                        record.unexpected.append(f"ack {response.status_code} {response.text}")
        except httpx.TransportError:
            return  # the server was killed


@pytest.fixture
def workdir(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path
    log = tmp_path / "server.log"
    if log.exists():
        text = log.read_text(errors="replace")
        assert "Traceback" not in text, f"server logged an error:\n{text}"


@pytest.fixture(params=["sqlite", "redis", "nats", "sqs"])
def storage(request: pytest.FixtureRequest, workdir: Path) -> Storage:
    if request.param == "sqlite":
        return Storage(["--backend", "sqlite", "--db", str(workdir / "ojs.db")], {})
    if request.param == "nats":  # a stream of this test alone on the session's nats-server
        options = request.getfixturevalue("nats_options")
        return Storage(["--backend", "nats"], nats_env(options["url"], options))
    if request.param == "sqs":  # a table and queues of this test alone on the session's moto
        return Storage(["--backend", "sqs"], aws_env(request.getfixturevalue("aws_options")))
    return Storage(["--backend", "redis"], {"REDIS_URL": request.getfixturevalue("redis_url")})


def get_job(client: httpx.Client, job_id: str) -> dict[str, Any] | None:
    response = client.get(f"/ojs/v1/jobs/{job_id}")
    if response.status_code == 404:
        return None
    assert response.status_code == 200, response.text
    job: dict[str, Any] = response.json()["job"]
    return job


def test_sigkill_loses_no_acknowledged_write(storage: Storage, workdir: Path) -> None:
    log = workdir / "server.log"
    server = start_server(storage, log)
    record = Record()
    stop = threading.Event()
    threads: list[threading.Thread] = []
    try:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            response = client.post(
                "/ojs/v1/jobs",
                json={"type": "crash.later", "args": [], "options": {"queue": "later",
                      "delay_until": "+PT3S"}},
            )  # fmt: skip
            assert response.status_code == 201, response.text
            later = response.json()["job"]
            assert later["state"] == "scheduled"
            response = client.post(
                "/ojs/v1/cron",
                json={"name": "crash-tick", "expression": "@every 1s",
                      "job_template": {"type": "crash.tick", "args": [],
                                       "options": {"queue": "ticks"}}},
            )  # fmt: skip
            assert response.status_code == 201, response.text
            response = client.post(
                "/ojs/v1/workflows",
                json={"type": "chain", "name": "crash-chain", "steps": [
                    {"type": "flow.one", "args": [1], "options": {"queue": "flow"}},
                    {"type": "flow.two", "args": [2], "options": {"queue": "flow"}}]},
            )  # fmt: skip
            assert response.status_code == 201, response.text
            workflow_id = response.json()["workflow"]["id"]
            response = client.post("/ojs/v1/workers/fetch", json={"queues": ["flow"]})
            [step_one] = response.json()["jobs"]
            assert step_one["type"] == "flow.one"

        threads = [
            threading.Thread(target=worker, args=(server.url, n, record, stop), daemon=True)
            for n in range(WORKERS)
        ]
        for thread in threads:
            thread.start()
        # Kill in the middle of the stream: once a good share of it got answers, well
        # before any visibility timeout of the run could expire.
        deadline = time.monotonic() + 1.2
        while time.monotonic() < deadline and len(record.acked) < 40:
            time.sleep(0.01)
        server.kill()
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=15)
        if server.process.poll() is None:
            server.kill()

    assert not record.unexpected, record.unexpected
    assert len(record.enqueued) >= 10 and len(record.acked) >= 5, record
    assert len(record.enqueued) < WORKERS * MAX_ROUNDS, "the kill did not interrupt the stream"
    acked = set(record.acked)
    in_doubt = record.ack_sent - acked  # ack sent, no answer: either outcome is correct
    left_active = record.fetched - record.ack_sent

    server = start_server(storage, log)
    try:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            assert_events_match_state(client, record.enqueued)
            # Every enqueue that got a 2xx is there; every 2xx ack is completed.
            for job_id in record.enqueued:
                job = get_job(client, job_id)
                assert job is not None, f"job {job_id} was acknowledged as enqueued but is gone"
                if job_id in acked:
                    assert job["state"] == "completed", job
                elif job_id in left_active:
                    assert job["state"] in ("active", "available"), job
            for job_id in left_active:
                assert get_job(client, job_id) is not None

            # Drain the queue, acking everything: the jobs left active come back once their
            # visibility timeout has passed; acked jobs never do.
            refetched: dict[str, dict[str, Any]] = {}
            drain_deadline = time.monotonic() + 4 * VISIBILITY_MS / 1000 + 10
            while time.monotonic() < drain_deadline:
                response = client.post(
                    "/ojs/v1/workers/fetch",
                    json={"queues": ["crash"], "count": 50, "worker_id": "drain", "wait_ms": 500},
                )
                assert response.status_code == 200, response.text
                for job in response.json()["jobs"]:
                    assert job["id"] not in acked, f"acked job {job['id']} was fetched again"
                    assert job["id"] not in refetched, f"job {job['id']} delivered twice"
                    refetched[job["id"]] = job
                    answer = client.post("/ojs/v1/workers/ack", json={"job_id": job["id"]})
                    assert answer.status_code == 200, answer.text
                pending = [
                    job_id
                    for job_id in record.enqueued - acked
                    if job_id not in refetched
                    and (job_id not in in_doubt or _state(client, job_id) != "completed")
                ]
                if not pending:
                    break
            else:
                pytest.fail(f"jobs never delivered after the restart: {pending}")

            for job_id in left_active:
                job = refetched[job_id]
                assert job["attempt"] >= 2, job
                assert any(error.get("type") == "visibility_timeout" for error in job["errors"]), (
                    job
                )
            for job_id in record.enqueued:
                final = get_job(client, job_id)
                assert final is not None and final["state"] == "completed", final
            assert_events_match_state(client, record.enqueued)

            # The scheduled job was promoted by the restarted server.
            response = client.post(
                "/ojs/v1/workers/fetch",
                json={"queues": ["later"], "worker_id": "late", "wait_ms": 10_000},
            )
            assert response.status_code == 200, response.text
            [promoted] = response.json()["jobs"]
            assert promoted["id"] == later["id"] and promoted["attempt"] == 1

            # The cron entry survived and keeps firing on the restarted server.
            restarted_at = time.time()
            listed = client.get("/ojs/v1/cron").json()
            assert [entry["name"] for entry in listed["crons"]] == ["crash-tick"]
            ticks: list[dict[str, Any]] = []
            tick_deadline = time.monotonic() + 10
            while time.monotonic() < tick_deadline and not any(
                _epoch(tick["created_at"]) >= restarted_at for tick in ticks
            ):
                response = client.post(
                    "/ojs/v1/workers/fetch",
                    json={"queues": ["ticks"], "count": 50, "wait_ms": 1_000},
                )
                for tick in response.json()["jobs"]:  # done: the next slot may fire (skip policy)
                    ticks.append(tick)
                    client.post("/ojs/v1/workers/ack", json={"job_id": tick["id"]})
            assert any(_epoch(tick["created_at"]) >= restarted_at for tick in ticks), ticks

            # The workflow carries on: acking the step that was running at the kill
            # releases the next step, with the first step's result passed on.
            answer = client.post(
                "/ojs/v1/workers/ack", json={"job_id": step_one["id"], "result": {"one": 1}}
            )
            assert answer.status_code == 200, answer.text
            response = client.post(
                "/ojs/v1/workers/fetch", json={"queues": ["flow"], "wait_ms": 5_000}
            )
            [step_two] = response.json()["jobs"]
            assert step_two["type"] == "flow.two"
            assert step_two["parent_results"] == [{"one": 1}]
            assert (
                client.post("/ojs/v1/workers/ack", json={"job_id": step_two["id"]}).status_code
                == 200
            )
            flow = client.get(f"/ojs/v1/workflows/{workflow_id}").json()["workflow"]
            deadline = time.monotonic() + 5
            while flow["state"] != "completed" and time.monotonic() < deadline:
                time.sleep(0.1)
                flow = client.get(f"/ojs/v1/workflows/{workflow_id}").json()["workflow"]
            assert flow["state"] == "completed", flow
    finally:
        server.stop()


LAST_EVENT_OF_STATE = {
    "available": "job.enqueued",
    "active": "job.started",
    "completed": "job.completed",
    "scheduled": "job.scheduled",
    "retryable": "job.retrying",
    "cancelled": "job.cancelled",
}


def assert_events_match_state(client: httpx.Client, job_ids: set[str]) -> None:
    """Each job's events cover every version it went through (ids ``evt_<job>_<version>_<n>``),
    and the newest is the event of its stored state.

    The restarted server may move a job meanwhile (a lease running out): each job's state
    is read before and after the events, and a job that moved in between is checked
    again against events read afresh."""
    pending = set(job_ids)
    for _ in range(3):
        before = {job_id: _state_and_attempt(client, job_id) for job_id in pending}
        by_job = _events_by_job(client)
        moved = {
            job_id for job_id in pending if _state_and_attempt(client, job_id) != before[job_id]
        }
        for job_id in pending - moved:
            state, _ = before[job_id]
            seen = by_job.get(job_id, [])
            versions = sorted({version for version, _ in seen})
            assert versions == list(range(len(versions))), (job_id, state, seen)
            assert seen and seen[-1][1] == LAST_EVENT_OF_STATE[state], (job_id, state, seen)
        if not moved:
            return
        pending = moved
    pytest.fail(f"jobs kept moving while their events were read: {sorted(pending)}")


def _events_by_job(client: httpx.Client) -> dict[str, list[tuple[int, str]]]:
    """Every job event stored, by job: (version, type) in the log's order."""
    events: list[dict[str, Any]] = []
    after: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 1000, **({"after": after} if after else {})}
        page = client.get("/ojs/v1/events", params=params).json()
        events += page["events"]
        if not page["has_more"]:
            break
        after = page["cursor"]
    assert len({event["id"] for event in events}) == len(events), "event ids repeat"
    by_job: dict[str, list[tuple[int, str]]] = {}
    for event in events:
        if not event["type"].startswith("job."):
            continue  # cron's
        job_id, version, _ = event["id"].removeprefix("evt_").split("_")
        by_job.setdefault(job_id, []).append((int(version), event["type"]))
    return by_job


def _state_and_attempt(client: httpx.Client, job_id: str) -> tuple[str, int]:
    job = get_job(client, job_id)
    assert job is not None, job_id
    return str(job["state"]), int(job["attempt"])


def _state(client: httpx.Client, job_id: str) -> str | None:
    job = get_job(client, job_id)
    return None if job is None else str(job["state"])


def _epoch(stamp: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
