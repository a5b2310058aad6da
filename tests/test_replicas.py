"""Two real ``ojs-actors serve`` processes on one networked backend behave as one server,
on Redis, on NATS, on Kafka (whose state is Redis's parts; its relay to Kafka with two
processes is tested in ``test_kafka_backend.py``) and on AWS (``sqs``).

Each process runs its own actors over the shared store: on Redis the session's
redis-server (emptied for the test), every change one Lua script; on NATS the session's
nats-server with a stream and subject prefix of the test alone (memory storage), every
job write an atomic batch with a compare-and-set on the job's record; on AWS the
session's moto server with a DynamoDB table and SQS queues of the test alone, every
change one ``TransactWriteItems`` conditional on each job's version. Whichever process
loses a race finds the record changed and nothing of its write is stored.

* Under concurrent enqueues and fetches through both, every job is claimed by exactly
  one fetch, and an ack sent through the other process completes it.
* Acks racing through both processes for one job: exactly one succeeds, and the job is
  counted completed once. A nack through the other process makes the job retryable, and
  it comes back through either.
* A queue paused through one process is paused for the other (whose QueueActor
  was already running with the queue unpaused in its cache), and resumed likewise.
* A cron slot fires once: both processes run the entry, one job per slot; once one is
  killed the other carries on, no slot skipped.
* A workflow advances once: a chain acked alternately through both runs each step
  once, in order; DAGs whose two roots are acked at the same moment through the two
  processes release their join exactly once, with both results.
* A unique key holds across processes: the same unique job enqueued through both at
  once is stored once; the other enqueue is refused (``reject``) or handed the stored
  job (``ignore``).
"""

from __future__ import annotations

import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
from serving import OjsServer, aws_env, kafka_env, nats_env

from ojs_actors.core.timefmt import parse_timestamp

POLL_INTERVAL = 0.2
JOBS_PER_PRODUCER = 100
JOBS_PER_PRODUCER_ON = {"sqs": 50}
"""Fewer on moto, whose DynamoDB serves one request at a time (``ojs_actors.testing.moto``)."""
FETCHERS_PER_SERVER = 6
MAX_ROUNDS = 2_000
"""Bound on each fetcher's rounds (one fetch, and an ack of each job it got)."""

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX processes")


def start_server(backend: str, env: dict[str, str], log: Path) -> OjsServer:
    """``ojs-actors serve --backend <backend>`` with ``env`` (the store's URL and options)."""
    return OjsServer(["--backend", backend], log, env=env, poll_interval=POLL_INTERVAL)


@pytest.fixture(params=["redis", "nats", "kafka", "sqs"])
def servers(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[OjsServer, OjsServer]]:
    backend = request.param
    if backend == "redis":
        env = {"REDIS_URL": request.getfixturevalue("redis_url")}
    elif backend == "kafka":
        env = kafka_env(request.getfixturevalue("kafka_options"))
    elif backend == "sqs":
        env = aws_env(request.getfixturevalue("aws_options"))
    else:
        options: dict[str, Any] = request.getfixturevalue("nats_options")
        env = nats_env(options["url"], options)
    a = start_server(backend, env, tmp_path / "a.log")
    try:
        b = start_server(backend, env, tmp_path / "b.log")
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


def enqueue(url: str, queue: str, n: int, **options: Any) -> str:
    response = httpx.post(
        f"{url}/ojs/v1/jobs",
        json={"type": "replica.test", "args": [n], "options": {"queue": queue, **options}},
        timeout=10,
    )
    assert response.status_code == 201, response.text
    job_id: str = response.json()["job"]["id"]
    return job_id


def fetch_jobs(
    client: httpx.Client, url: str, queue: str, worker: str, count: int = 1, wait_ms: int = 0
) -> list[dict[str, Any]]:
    response = client.post(
        f"{url}/ojs/v1/workers/fetch",
        json={"queues": [queue], "worker_id": worker, "count": count, "wait_ms": wait_ms},
        timeout=10 + wait_ms / 1000,
    )
    assert response.status_code == 200, response.text
    jobs: list[dict[str, Any]] = response.json()["jobs"]
    return jobs


def fetch(
    client: httpx.Client, url: str, queue: str, worker: str, count: int = 1, wait_ms: int = 0
) -> list[str]:
    return [job["id"] for job in fetch_jobs(client, url, queue, worker, count, wait_ms)]


def ack(client: httpx.Client, url: str, job_id: str, result: Any = None) -> httpx.Response:
    return client.post(
        f"{url}/ojs/v1/workers/ack", json={"job_id": job_id, "result": result}, timeout=10
    )


def stats(client: httpx.Client, url: str, queue: str) -> dict[str, int]:
    response = client.get(f"{url}/ojs/v1/queues/{queue}/stats", timeout=10)
    assert response.status_code == 200, response.text
    counts = response.json()["stats"]  # by state, with the queue's name and depth
    return {state: n for state, n in counts.items() if n and state not in ("queue", "depth")}


def get_job(client: httpx.Client, url: str, job_id: str) -> dict[str, Any]:
    response = client.get(f"{url}/ojs/v1/jobs/{job_id}", timeout=10)
    assert response.status_code == 200, response.text
    job: dict[str, Any] = response.json()["job"]
    return job


def all_at_once(calls: list[Callable[[], Any]]) -> list[Any]:
    """Run ``calls`` in threads released together; their results in order."""
    results: list[Any] = [None] * len(calls)
    start = threading.Barrier(len(calls))

    def run(index: int) -> None:
        start.wait()
        try:
            results[index] = calls[index]()
        except BaseException as error:
            results[index] = error

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads), "a call did not return"
    failures = [result for result in results if isinstance(result, BaseException)]
    assert failures == [], failures
    return results


def guarded(errors: list[str], target: Callable[..., None]) -> Callable[..., None]:
    """``target``, with what it raises noted in ``errors`` (a thread's failure fails the
    test with its message)."""

    def run(*args: Any) -> None:
        try:
            target(*args)
        except BaseException as error:
            errors.append(f"{target.__name__}{args}: {error!r}")

    return run


def test_each_job_is_claimed_once_and_acked_through_the_other_process(
    servers: tuple[OjsServer, OjsServer], request: pytest.FixtureRequest
) -> None:
    """Producers enqueue through both processes while fetchers on both claim; each fetcher
    acks through the other process. Every job is claimed exactly once and completed."""
    a, b = servers
    jobs_per_producer = JOBS_PER_PRODUCER_ON.get(request.node.callspec.params["servers"],
                                                 JOBS_PER_PRODUCER)  # fmt: skip
    other = {a.url: b.url, b.url: a.url}
    enqueued: set[str] = set()
    claims: list[tuple[str, str]] = []
    failed_acks: list[str] = []
    lock = threading.Lock()
    producing = threading.Event()
    producing.set()
    start = threading.Barrier(2 + 2 * FETCHERS_PER_SERVER)

    def producer(server: OjsServer) -> None:
        with httpx.Client() as client:
            start.wait()
            for n in range(jobs_per_producer):
                response = client.post(
                    f"{server.url}/ojs/v1/jobs",
                    json={"type": "replica.test", "args": [n], "options": {"queue": "shared"}},
                    timeout=10,
                )
                assert response.status_code == 201, response.text
                with lock:
                    enqueued.add(response.json()["job"]["id"])

    def fetcher(server: OjsServer, name: str) -> None:
        with httpx.Client() as client:
            start.wait()
            empty = 0
            for _ in range(MAX_ROUNDS):
                ids = fetch(client, server.url, "shared", name, count=2)
                with lock:
                    claims.extend((job_id, name) for job_id in ids)
                for job_id in ids:
                    response = ack(client, other[server.url], job_id)
                    if response.status_code != 200:
                        with lock:
                            failed_acks.append(f"{job_id}: {response.status_code} {response.text}")
                empty = 0 if ids else empty + 1
                if empty >= 3 and not producing.is_set():
                    return

    errors: list[str] = []
    producers = [
        threading.Thread(target=guarded(errors, producer), args=(server,)) for server in (a, b)
    ]
    fetchers = [
        threading.Thread(target=guarded(errors, fetcher), args=(server, f"{tag}{i}"))
        for tag, server in (("a", a), ("b", b))
        for i in range(FETCHERS_PER_SERVER)
    ]
    for thread in producers + fetchers:
        thread.start()
    for thread in producers:
        thread.join(timeout=60)
    producing.clear()
    for thread in fetchers:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in producers + fetchers)
    assert errors == []

    assert len(enqueued) == 2 * jobs_per_producer
    times = Counter(job_id for job_id, _ in claims)
    assert {job_id for job_id, n in times.items() if n > 1} == set()
    assert set(times) == enqueued
    assert failed_acks == []
    by_server = Counter(name[0] for _, name in claims)
    assert by_server["a"] > 0 and by_server["b"] > 0, by_server
    with httpx.Client() as client:
        for server in (a, b):
            assert stats(client, server.url, "shared") == {"completed": len(enqueued)}
        assert fetch(client, a.url, "shared", "late") == []


def test_an_ack_racing_through_both_processes_completes_the_job_once(
    servers: tuple[OjsServer, OjsServer],
) -> None:
    """Each job fetched through A is acked through A and B at the same moment: one ack
    wins, the other is refused, the job is completed once (counted once, one
    ``job.completed`` event)."""
    a, b = servers
    rounds = 20
    with httpx.Client() as client:
        for n in range(rounds):
            job_id = enqueue((a, b)[n % 2].url, "race", n)
            assert fetch(client, a.url, "race", "w") == [job_id]
            with httpx.Client() as one, httpx.Client() as two:
                answers = all_at_once([
                    partial(ack, one, a.url, job_id, {"by": "a"}),
                    partial(ack, two, b.url, job_id, {"by": "b"}),
                ])  # fmt: skip
            codes = sorted(response.status_code for response in answers)
            assert codes == [200, 409], [response.text for response in answers]
            winner = next(response for response in answers if response.status_code == 200)
            loser = next(response for response in answers if response.status_code != 200)
            assert loser.json()["error"]["code"] in ("conflict", "invalid_state"), loser.text
            job = get_job(client, b.url, job_id)
            assert job["state"] == "completed", job
            by = "a" if winner.url.port == a.port else "b"
            assert job["result"] == {"by": by}, job
        for server in (a, b):
            assert stats(client, server.url, "race") == {"completed": rounds}
        completed = [
            event
            for event in client.get(
                f"{b.url}/ojs/v1/events", params={"limit": 1000}, timeout=10
            ).json()["events"]
            if event["type"] == "job.completed"
        ]
        assert len(completed) == rounds, completed


def test_a_nack_may_reach_either_process(servers: tuple[OjsServer, OjsServer]) -> None:
    """Fetched through A, nacked through B: retryable, and back after the backoff through
    B at attempt 2; nacked with ``requeue`` through A, fetched again through A, acked
    through B: completed."""
    a, b = servers
    retry = {"max_attempts": 5, "initial_interval": "PT1S", "jitter": False}
    job_id = enqueue(a.url, "nack", 0, retry=retry)
    with httpx.Client() as client:
        assert fetch(client, a.url, "nack", "wa") == [job_id]
        response = client.post(
            f"{b.url}/ojs/v1/workers/nack",
            json={"job_id": job_id, "error": {"message": "through b"}},
            timeout=10,
        )
        assert response.status_code == 200, response.text
        assert response.json()["state"] == "retryable"
        assert get_job(client, a.url, job_id)["state"] == "retryable"
        [again] = fetch_jobs(client, b.url, "nack", "wb", wait_ms=5_000)
        assert again["id"] == job_id and again["attempt"] == 2, again
        assert [error["message"] for error in again["errors"]] == ["through b"]
        response = client.post(
            f"{a.url}/ojs/v1/workers/nack", json={"job_id": job_id, "requeue": True}, timeout=10
        )
        assert response.status_code == 200, response.text
        assert response.json()["state"] == "available"
        assert fetch(client, a.url, "nack", "wa", wait_ms=5_000) == [job_id]
        assert ack(client, b.url, job_id).status_code == 200
        assert get_job(client, a.url, job_id)["state"] == "completed"
        assert fetch(client, b.url, "nack", "wb") == []
        assert stats(client, a.url, "nack") == {"completed": 1}


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
        # B's claims may trust its cached record for one poll interval (the queue actor's
        # refresh interval): past it, a long poll through B takes nothing, not even a job
        # enqueued while it waits.
        time.sleep(POLL_INTERVAL * 2)
        with httpx.Client() as other:
            [polled, late] = all_at_once([
                lambda: fetch(other, b.url, "p", "wb", wait_ms=1_000),
                lambda: enqueue(a.url, "p", 2),
            ])  # fmt: skip
        assert polled == []
        assert fetch(client, a.url, "p", "wa") == []
        listed = client.get(f"{b.url}/ojs/v1/queues").json()
        assert [q.get("status") for q in listed["queues"] if q["name"] == "p"] == ["paused"]
        assert get_job(client, b.url, job_id)["state"] == "available"
        assert client.post(f"{a.url}/ojs/v1/queues/p/resume").status_code == 200
        got: list[str] = []
        deadline = time.monotonic() + 5
        while len(got) < 2 and time.monotonic() < deadline:
            got += fetch(client, b.url, "p", "wb", count=2, wait_ms=1_000)
        assert got == [job_id, late]
        listed = client.get(f"{b.url}/ojs/v1/queues").json()
        assert [q.get("status") for q in listed["queues"] if q["name"] == "p"] == ["active"]


def drain(client: httpx.Client, url: str, queue: str) -> list[dict[str, Any]]:
    """Claim every job ``queue`` holds now (bounded: at most 100 fetches)."""
    jobs: list[dict[str, Any]] = []
    for _ in range(100):
        got = fetch_jobs(client, url, queue, "drain", count=50)
        if not got:
            return jobs
        jobs.extend(got)
    raise AssertionError(f"{queue} did not run dry: {len(jobs)} jobs claimed")


def test_a_cron_slot_fires_once_with_both_processes_up(
    servers: tuple[OjsServer, OjsServer],
) -> None:
    """An ``@every 1s`` entry registered through A runs in both processes (B's supervisor
    picks it up from the stream); each slot still yields exactly one job. Then A is
    killed and B carries on alone, slot after slot."""
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


def test_a_chain_advances_once_through_both_processes(
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
            jobs = fetch_jobs(client, fetcher.url, "wf", "w", count=5, wait_ms=5000)
            assert len(jobs) == 1, jobs
            seen.append(jobs[0]["type"])
            assert jobs[0]["parent_results"] == list(range(n)), jobs[0]  # every earlier result
            response = ack(client, acker.url, jobs[0]["id"], n)
            assert response.status_code == 200, response.text
        assert seen == steps
        assert fetch(client, a.url, "wf", "w", wait_ms=int(POLL_INTERVAL * 2 * 1000)) == []
        for server in (a, b):
            view = settled_workflow(client, server.url, workflow_id)
            assert view["state"] == "completed", view
            assert view["steps_completed"] == len(steps)
            assert [step["state"] for step in view["steps"]] == ["completed"] * len(steps)
        # Six jobs in all, each completed once: no step was enqueued twice.
        assert stats(client, b.url, "wf") == {"completed": len(steps)}


def settled_workflow(client: httpx.Client, url: str, workflow_id: str) -> dict[str, Any]:
    """The workflow's view once it is no longer running (or after 10 s)."""
    deadline = time.monotonic() + 10
    while True:
        response = client.get(f"{url}/ojs/v1/workflows/{workflow_id}", timeout=10)
        assert response.status_code == 200, response.text
        view: dict[str, Any] = response.json()["workflow"]
        if view["state"] != "running" or time.monotonic() > deadline:
            return view
        time.sleep(0.05)


def diamond(n: int) -> dict[str, Any]:
    """Two roots and a join depending on both."""
    return {
        "name": f"diamond-{n}",
        "steps": [
            {"id": "left", "type": "dag.left", "args": [n], "depends_on": []},
            {"id": "right", "type": "dag.right", "args": [n], "depends_on": []},
            {"id": "join", "type": "dag.join", "args": [n], "depends_on": ["left", "right"]},
        ],
        "options": {"queue": "dag"},
    }


def test_dag_roots_acked_at_once_through_both_processes_release_the_join_once(
    servers: tuple[OjsServer, OjsServer],
) -> None:
    """Diamond DAGs created through either process; for each, its two roots are acked at
    the same moment, one through A and one through B. Each join is enqueued exactly
    once, with both roots' results in its ``depends_on`` order, and each DAG completes."""
    a, b = servers
    dags = 8
    with httpx.Client() as client:
        workflow_ids = []
        for n in range(dags):
            response = client.post(
                f"{(a, b)[n % 2].url}/ojs/v1/workflows", json=diamond(n), timeout=10
            )
            assert response.status_code == 201, response.text
            workflow_ids.append(response.json()["workflow"]["id"])
        roots = drain(client, a.url, "dag")
        assert Counter(job["type"] for job in roots) == {"dag.left": dags, "dag.right": dags}
        by_dag: dict[str, dict[str, str]] = {}
        for job in roots:
            by_dag.setdefault(job["workflow_id"], {})[job["type"]] = job["id"]
        assert set(by_dag) == set(workflow_ids)
        for workflow_id in workflow_ids:
            left, right = by_dag[workflow_id]["dag.left"], by_dag[workflow_id]["dag.right"]
            with httpx.Client() as one, httpx.Client() as two:
                answers = all_at_once([
                    partial(ack, one, a.url, left, "L"),
                    partial(ack, two, b.url, right, "R"),
                ])  # fmt: skip
            assert [response.status_code for response in answers] == [200, 200]
        joins: list[dict[str, Any]] = []
        deadline = time.monotonic() + 10
        while len(joins) < dags and time.monotonic() < deadline:
            server = (a, b)[len(joins) % 2]
            joins += fetch_jobs(client, server.url, "dag", "w", count=dags, wait_ms=1000)
        assert Counter(job["workflow_id"] for job in joins) == dict.fromkeys(workflow_ids, 1)
        assert all(job["type"] == "dag.join" for job in joins), joins
        assert all(job["parent_results"] == ["L", "R"] for job in joins), joins
        for job in joins:
            assert ack(client, b.url, job["id"], "J").status_code == 200
        assert fetch(client, b.url, "dag", "w", wait_ms=int(POLL_INTERVAL * 2 * 1000)) == []
        for workflow_id in workflow_ids:
            for server in (a, b):
                view = settled_workflow(client, server.url, workflow_id)
                assert view["state"] == "completed", view
                assert [step["state"] for step in view["steps"]] == ["completed"] * 3
        assert stats(client, a.url, "dag") == {"completed": 3 * dags}


def unique_job(n: int, on_conflict: str) -> dict[str, Any]:
    return {
        "type": "replica.unique",
        "args": [{"n": n}],
        "options": {
            "queue": "unique",
            "unique": {"keys": ["type", "args"], "on_conflict": on_conflict},
        },
    }


def test_a_unique_key_holds_across_processes(servers: tuple[OjsServer, OjsServer]) -> None:
    """The same unique job sent through A and B at the same moment is stored once: with
    ``reject`` the other enqueue gets 409 ``duplicate`` naming the stored job, with
    ``ignore`` it gets the stored job itself."""
    a, b = servers
    keys = 12

    def post(url: str, body: dict[str, Any]) -> Callable[[], httpx.Response]:
        return lambda: httpx.post(f"{url}/ojs/v1/jobs", json=body, timeout=10)

    stored: set[str] = set()
    for n in range(keys):
        on_conflict = ("reject", "ignore")[n % 2]
        answers = all_at_once([post(a.url, unique_job(n, on_conflict)),
                               post(b.url, unique_job(n, on_conflict))])  # fmt: skip
        codes = sorted(response.status_code for response in answers)
        winner = next(response for response in answers if response.status_code == 201)
        loser = next(response for response in answers if response is not winner)
        job_id = winner.json()["job"]["id"]
        stored.add(job_id)
        if on_conflict == "reject":
            assert codes == [201, 409], [response.text for response in answers]
            error = loser.json()["error"]
            assert error["code"] == "duplicate", error
            assert error["details"]["existing_job_id"] == job_id, error
        else:
            assert codes == [200, 201], [response.text for response in answers]
            assert loser.json()["deduplicated"] is True
            assert loser.json()["job"]["id"] == job_id
        # A third try, after the race, through either process: still the same key.
        again = httpx.post(f"{(a, b)[n % 2].url}/ojs/v1/jobs", json=unique_job(n, "reject"))
        assert again.status_code == 409, again.text
        assert again.json()["error"]["details"]["existing_job_id"] == job_id
    with httpx.Client() as client:
        fetched = [job["id"] for job in drain(client, b.url, "unique")]
    assert sorted(fetched) == sorted(stored)
