"""Scenario 2: the no-op lifecycle of :mod:`bench._workload` over the OJS HTTP API.

Jobs are enqueued with ``POST /ojs/v1/jobs/batch`` (chunks of ``batch_size``),
then ``workers`` HTTP workers, each on its own keep-alive connection, loop
``POST /ojs/v1/workers/fetch`` (``count`` = ``fetch_count``, long-polling with
``wait_ms``) and ``POST /ojs/v1/workers/ack`` for every job fetched, until all are
completed. The latency phase enqueues single jobs (``POST /ojs/v1/jobs``) carrying
their enqueue time while the workers keep running. If the server's health reports an
event outbox backlog (kafka), one more connection samples it (``_backlog.py``).
"""

from __future__ import annotations

import math
import time
from typing import Any
from urllib.parse import urlsplit

import trio

from ._backlog import BacklogReader, watching_backlog
from ._client import HttpClient
from ._progress import LifecycleProgress
from ._workload import JOB_TYPE, LATENCY_GAP_S, QUEUE, LifecycleResult

DEFAULT_BATCH_SIZE = 1000
DEFAULT_WAIT_MS = 1000


class UnexpectedAnswer(Exception):
    pass


class _Progress(LifecycleProgress):
    """What the workers have done so far, shared by all of them."""

    def started(self, job: dict[str, Any]) -> None:
        args = job.get("args") or [None]
        if isinstance(args[0], dict) and "enqueued_at" in args[0]:
            self.latency_job_started(float(args[0]["enqueued_at"]))

    def acknowledged(self, job: dict[str, Any]) -> None:
        args = job.get("args") or [None]
        if isinstance(args[0], int):
            self.bulk_jobs_completed()


def _expect(status: int, answer: Any, wanted: int, what: str) -> Any:
    if status != wanted:
        raise UnexpectedAnswer(f"{what}: HTTP {status} {str(answer)[:500]}")
    return answer


async def _enqueue_all(client: HttpClient, jobs: int, batch_size: int) -> None:
    for first in range(0, jobs, batch_size):
        chunk = [
            {"type": JOB_TYPE, "args": [index], "options": {"queue": QUEUE}}
            for index in range(first, min(jobs, first + batch_size))
        ]
        answer = _expect(*await client.post("/ojs/v1/jobs/batch", {"jobs": chunk}), 201, "batch")
        if answer.get("count") != len(chunk):
            raise UnexpectedAnswer(f"batch stored {answer.get('count')} of {len(chunk)} jobs")


async def _worker(
    client: HttpClient, name: str, fetch_count: int, wait_ms: int, progress: _Progress
) -> None:
    fetch = {"queues": [QUEUE], "count": fetch_count, "worker_id": name, "wait_ms": wait_ms}
    while True:
        answer = _expect(*await client.post("/ojs/v1/workers/fetch", fetch), 200, "fetch")
        for job in answer["jobs"]:
            progress.started(job)
            _expect(*await client.post("/ojs/v1/workers/ack", {"job_id": job["id"]}), 200, "ack")
            progress.acknowledged(job)


async def _enqueue_latency_jobs(client: HttpClient, count: int) -> None:
    for _ in range(count):
        job = {
            "type": JOB_TYPE,
            "args": [{"enqueued_at": time.time()}],
            "options": {"queue": QUEUE},
        }
        _expect(*await client.post("/ojs/v1/jobs", job), 201, "enqueue")
        await trio.sleep(LATENCY_GAP_S)


def _backlog_reader(client: HttpClient) -> BacklogReader:
    """Reads the server's outbox backlog (``GET /ojs/v1/health`` ``events.backlog``; None
    unless its backend reports one: kafka)."""

    async def read() -> int | None:
        health = _expect(*await client.get("/ojs/v1/health"), 200, "health")
        found = (health.get("events") or {}).get("backlog")
        return None if found is None else int(found)

    return read


async def http_lifecycle(
    base_url: str,
    jobs: int,
    latency_jobs: int,
    workers: int = 8,
    fetch_count: int = 1,
    timeout_s: float = 120.0,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    wait_ms: int = DEFAULT_WAIT_MS,
    subject: str | None = None,
) -> LifecycleResult:
    """Run the three phases against the server at ``base_url``; each bounded by what is
    left of ``timeout_s``. A run that times out reports what it completed."""
    address = urlsplit(base_url)
    host, port = address.hostname or "127.0.0.1", address.port or 80
    deadline = trio.current_time() + timeout_s
    progress = _Progress(jobs, latency_jobs)
    enqueue_per_s = process_per_s = math.nan
    started_at = None
    clients = [HttpClient(host, port) for _ in range(workers + 2)]
    producer, watcher, worker_clients = clients[0], clients[1], clients[2:]
    try:
        async with watching_backlog(_backlog_reader(watcher), deadline) as backlog:
            with trio.move_on_at(deadline):
                started_at, started = time.time(), time.perf_counter()
                await _enqueue_all(producer, jobs, batch_size)
                enqueue_per_s = jobs / (time.perf_counter() - started)
            if not math.isnan(enqueue_per_s):
                async with trio.open_nursery() as nursery:
                    started = time.perf_counter()
                    for number, client in enumerate(worker_clients):
                        nursery.start_soon(
                            _worker, client, f"bench-http-{number}", fetch_count, wait_ms, progress
                        )
                    with trio.move_on_at(deadline):
                        await progress.all_completed.wait()
                        if jobs:
                            process_per_s = jobs / (progress.last_completion - started)
                        await _enqueue_latency_jobs(producer, latency_jobs)
                        await progress.all_latencies.wait()
                    nursery.cancel_scope.cancel()
    finally:
        for client in clients:
            await client.aclose()
    return LifecycleResult.measured(
        subject or f"ojs-actors HTTP, {workers} workers, fetch count {fetch_count}",
        jobs=jobs,
        completed=progress.completed,
        enqueue_per_s=enqueue_per_s,
        process_per_s=process_per_s,
        latencies_s=progress.latencies,
        latency_jobs=latency_jobs,
        settings=(
            f"enqueue: POST /ojs/v1/jobs/batch x{batch_size} on one connection; "
            f"{workers} HTTP workers, one keep-alive connection each: fetch count {fetch_count} "
            f"(wait_ms {wait_ms}), one ack per job"
        ),
        started_at=started_at,
        backlog=backlog,
    )
