"""Two real ``ojs-actors serve --backend redis`` processes on one Redis behave as one server.

* Under concurrent fetches through both, every job is claimed by exactly one fetch.
* A queue paused through one process is paused for the other (whose QueueActor
  was already running with the queue unpaused in its cache), and resumed likewise.
* A cron slot fires once: both processes run the entry, one job per slot.
* A workflow advances once: a chain acked alternately through both runs each step
  once, in order, and both report it completed.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from serving import OjsServer

from ojs_actors.core.timefmt import parse_timestamp

POLL_INTERVAL = 0.2
JOBS = 120
FETCHERS_PER_SERVER = 8

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX processes")


def start_server(redis_url: str, log: Path) -> OjsServer:
    """``ojs-actors serve --backend redis`` on ``redis_url``."""
    return OjsServer(
        ["--backend", "redis"], log, env={"REDIS_URL": redis_url}, poll_interval=POLL_INTERVAL
    )


@pytest.fixture
def servers(redis_url: str, tmp_path: Path) -> Iterator[tuple[OjsServer, OjsServer]]:
    a = start_server(redis_url, tmp_path / "a.log")
    try:
        b = start_server(redis_url, tmp_path / "b.log")
    except BaseException:
        a.stop()
        raise
    try:
        yield a, b
    finally:
        a.stop()
        b.stop()
        for server in (a, b):
            text = server.log_path.read_text(errors="replace")
            assert "Traceback" not in text, f"{server.url} logged an error:\n{text}"


def enqueue(url: str, queue: str, n: int) -> str:
    response = httpx.post(
        f"{url}/ojs/v1/jobs",
        json={"type": "replica.test", "args": [n], "options": {"queue": queue}},
        timeout=10,
    )
    assert response.status_code == 201, response.text
    job_id: str = response.json()["job"]["id"]
    return job_id


def fetch(client: httpx.Client, url: str, queue: str, worker: str, count: int = 1) -> list[str]:
    response = client.post(
        f"{url}/ojs/v1/workers/fetch",
        json={"queues": [queue], "worker_id": worker, "count": count},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    return [job["id"] for job in response.json()["jobs"]]


def test_each_job_is_claimed_by_exactly_one_fetch(servers: tuple[OjsServer, OjsServer]) -> None:
    a, b = servers
    enqueued = {enqueue((a, b)[n % 2].url, "shared", n) for n in range(JOBS)}
    claims: list[tuple[str, str]] = []
    lock = threading.Lock()
    start = threading.Barrier(2 * FETCHERS_PER_SERVER)

    def worker(server: OjsServer, name: str) -> None:
        with httpx.Client() as client:
            start.wait()
            empty = 0
            while empty < 3:
                ids = fetch(client, server.url, "shared", name, count=2)
                with lock:
                    claims.extend((job_id, name) for job_id in ids)
                empty = 0 if ids else empty + 1

    threads = [
        threading.Thread(target=worker, args=(server, f"{tag}{i}"))
        for tag, server in (("a", a), ("b", b))
        for i in range(FETCHERS_PER_SERVER)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    times = Counter(job_id for job_id, _ in claims)
    assert {job_id for job_id, n in times.items() if n > 1} == set()
    assert set(times) == enqueued
    by_server = Counter(name[0] for _, name in claims)
    assert by_server["a"] > 0 and by_server["b"] > 0, by_server


def test_pause_through_one_process_holds_for_the_other(
    servers: tuple[OjsServer, OjsServer],
) -> None:
    a, b = servers
    with httpx.Client() as client:
        # B's QueueActor for "p" starts now and caches the queue as unpaused.
        first = enqueue(b.url, "p", 0)
        assert fetch(client, b.url, "p", "wb") == [first]
        assert client.post(f"{a.url}/ojs/v1/queues/p/pause").status_code == 200
        job_id = enqueue(a.url, "p", 1)
        time.sleep(POLL_INTERVAL * 2)
        assert fetch(client, b.url, "p", "wb") == []
        assert fetch(client, a.url, "p", "wa") == []
        listed = client.get(f"{b.url}/ojs/v1/queues").json()
        assert [q.get("status") for q in listed["queues"] if q["name"] == "p"] == ["paused"]
        assert client.post(f"{a.url}/ojs/v1/queues/p/resume").status_code == 200
        deadline = time.monotonic() + 5
        got: list[str] = []
        while not got and time.monotonic() < deadline:
            got = fetch(client, b.url, "p", "wb")
            time.sleep(0.05)
        assert got == [job_id]


def drain(client: httpx.Client, url: str, queue: str) -> list[dict[str, Any]]:
    """Claim every job ``queue`` holds now."""
    jobs: list[dict[str, Any]] = []
    while True:
        response = client.post(
            f"{url}/ojs/v1/workers/fetch",
            json={"queues": [queue], "worker_id": "drain", "count": 50},
            timeout=10,
        )
        assert response.status_code == 200, response.text
        got = response.json()["jobs"]
        if not got:
            return jobs
        jobs.extend(got)


def test_a_cron_slot_fires_once_with_both_processes_up(
    servers: tuple[OjsServer, OjsServer],
) -> None:
    """An ``@every 1s`` entry registered through A runs in both processes (B's supervisor
    picks it up from Redis); each slot still yields exactly one job. Then A is killed
    and B carries on alone, slot after slot."""
    a, b = servers
    with httpx.Client() as client:
        response = client.post(f"{a.url}/ojs/v1/cron", json={
            "name": "every-second", "expression": "@every 1s", "overlap_policy": "allow",
            "job_template": {"type": "cron.tick", "options": {"queue": "cron"}},
        }, timeout=10)  # fmt: skip
        assert response.status_code == 201, response.text
        time.sleep(POLL_INTERVAL * 3)
        assert client.get(f"{b.url}/ojs/v1/cron/every-second").status_code == 200
        time.sleep(4)
        a.kill()
        time.sleep(3)
        assert client.delete(f"{b.url}/ojs/v1/cron/every-second").status_code == 200
        time.sleep(POLL_INTERVAL * 2)
        jobs = drain(client, b.url, "cron")
    slots = Counter(job["meta"]["cron_triggered_at"] for job in jobs)
    assert {slot: n for slot, n in slots.items() if n > 1} == {}
    assert len(slots) >= 6, slots
    # Every second from the first slot to the last produced its job: none skipped
    # when A died, none doubled while both ran.
    seconds = sorted(parse_timestamp(slot, "slot") // 1000 for slot in slots)
    assert seconds == list(range(seconds[0], seconds[-1] + 1)), seconds


def test_a_workflow_advances_once_through_both_processes(
    servers: tuple[OjsServer, OjsServer],
) -> None:
    """A chain created through A whose steps are fetched and acked alternately through
    A and B: each step is enqueued once, in order, and both see it completed."""
    a, b = servers
    steps = [f"step.{name}" for name in ("one", "two", "three", "four", "five", "six")]
    with httpx.Client() as client:
        response = client.post(f"{a.url}/ojs/v1/workflows", json={
            "type": "chain", "name": "replicas",
            "steps": [{"type": t, "args": [t], "options": {"queue": "wf"}} for t in steps],
        }, timeout=10)  # fmt: skip
        assert response.status_code == 201, response.text
        workflow_id = response.json()["workflow"]["id"]
        seen: list[str] = []
        for n in range(len(steps)):
            fetcher, acker = (a, b) if n % 2 == 0 else (b, a)
            response = client.post(
                f"{fetcher.url}/ojs/v1/workers/fetch",
                json={"queues": ["wf"], "worker_id": "w", "count": 5, "wait_ms": 5000},
                timeout=10,
            )
            assert response.status_code == 200, response.text
            jobs = response.json()["jobs"]
            assert len(jobs) == 1, jobs
            seen.append(jobs[0]["type"])
            ack = client.post(
                f"{acker.url}/ojs/v1/workers/ack",
                json={"job_id": jobs[0]["id"], "result": n},
                timeout=10,
            )
            assert ack.status_code == 200, ack.text
        assert seen == steps
        time.sleep(POLL_INTERVAL * 2)
        assert drain(client, a.url, "wf") == []
        for server in (a, b):
            reply = client.get(f"{server.url}/ojs/v1/workflows/{workflow_id}", timeout=10)
            view = reply.json()["workflow"]
            assert view["state"] == "completed", view
            assert view["steps_completed"] == len(steps)
            assert [step["state"] for step in view["steps"]] == ["completed"] * len(steps)
        # Six jobs in all, each completed once: no step was enqueued twice.
        stats = client.get(f"{b.url}/ojs/v1/queues/wf/stats", timeout=10).json()["stats"]
        assert {state: n for state, n in stats.items() if n} == {"completed": len(steps)}
