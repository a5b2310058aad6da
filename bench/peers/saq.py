"""saq: a Redis ``saq.Queue`` with a ``saq.Worker`` in this process's event loop.

Settings, and why:

- Jobs keep saq's default ``ttl`` (the finished job's record expires after 600 s): its
  ``ttl=-1`` (delete when done) costs the same one pipeline and races the worker's sweep
  (which then logs errors about vanished active jobs).
- Enqueue: ``queue.enqueue`` per job (one Lua script call), ``ASYNC_ENQUEUE_CONCURRENCY``
  calls in flight; saq has no bulk enqueue (``Queue.map`` enqueues one by one and then waits
  for results). The queue's own limit of concurrent Redis operations stays at its default.
- Worker: ``saq.Worker(queue, functions, concurrency=CONCURRENCY)`` started as a task in the
  same asyncio loop instead of the ``saq`` CLI's processes; each of its slots blocks on
  ``BLMOVE`` (``dequeue_timeout=0``, the default), so an idle worker wakes up at once.
- Completion is counted in the worker's ``after_process`` hook (after ``job.finish``).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from saq import Queue, Worker
from saq.job import Status

from bench._workload import JOB_TYPE, QUEUE, LifecycleResult
from bench.peers._common import (
    ASYNC_ENQUEUE_CONCURRENCY,
    AsyncPeer,
    Figures,
    Recorder,
    result,
    run_async_phases,
    versions,
)

CONCURRENCY = 10

recorder = Recorder()


async def noop(ctx: Any, *, enqueued_at: float) -> None:
    recorder.job_started(enqueued_at)


async def count_completion(ctx: Any) -> None:
    if ctx["job"].status == Status.COMPLETE:
        recorder.job_completed()


def run(redis_url: str, jobs: int, latency_jobs: int, timeout_s: float) -> LifecycleResult:
    figures = asyncio.run(_run(redis_url, jobs, latency_jobs, timeout_s))
    settings = (
        f"{versions('saq')}; default job ttl (record kept 600 s); saq.Worker "
        f"in-process, concurrency={CONCURRENCY}, blocking BLMOVE dequeue; enqueue: "
        f"queue.enqueue per job, {ASYNC_ENQUEUE_CONCURRENCY} in flight (no bulk API); "
        "completion counted in after_process"
    )
    return result("saq", settings, figures, jobs, latency_jobs)


async def _run(redis_url: str, jobs: int, latency_jobs: int, timeout_s: float) -> Figures:
    queue = Queue.from_url(redis_url, name=QUEUE)
    await queue.connect()
    worker = Worker(
        queue,
        functions=[(JOB_TYPE, noop)],
        concurrency=CONCURRENCY,
        after_process=count_completion,
    )
    worker_task: asyncio.Task[None] | None = None

    async def enqueue_one(enqueued_at: float) -> None:
        await queue.enqueue(JOB_TYPE, enqueued_at=enqueued_at)

    async def start_worker() -> None:
        nonlocal worker_task
        worker_task = asyncio.create_task(worker.start())

    async def stop_worker() -> None:
        await worker.stop()
        if worker_task is not None:
            worker_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await worker_task

    peer = AsyncPeer(enqueue_one=enqueue_one, start_worker=start_worker, stop_worker=stop_worker)
    try:
        return await run_async_phases(peer, recorder, jobs, latency_jobs, timeout_s)
    finally:
        await queue.disconnect()
