"""arq: an ``ArqRedis`` pool with an ``arq.worker.Worker`` in this process's event loop.

Settings, and why:

- ``keep_result=0``: no result key per job (the other peers drop results too).
- Enqueue: ``pool.enqueue_job`` per job (a ``WATCH``/``MULTI`` transaction each),
  ``ASYNC_ENQUEUE_CONCURRENCY`` calls in flight; arq has no bulk enqueue.
- Worker: ``Worker(..., handle_signals=False)`` run with ``async_run`` as a task in the same
  loop, sharing the pool, instead of the ``arq`` CLI's process; up to ``MAX_JOBS`` jobs at
  once. arq finds work by polling its queue's sorted set every ``poll_delay`` seconds
  (default 0.5 s, which alone would put the median enqueue-to-start latency near 250 ms);
  ``POLL_DELAY_S`` is set to 5 ms, the latency phase's gap, a poll rate an idle worker can
  afford and a latency on a par with the blocking peers. While jobs are waiting a poll reads
  a batch of ids, so the poll delay does not cap throughput.
- Completion is counted in the worker's ``after_job_end`` hook (after the job's finishing
  transaction).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from arq import create_pool
from arq.connections import RedisSettings
from arq.worker import Worker, func

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

MAX_JOBS = 10
POLL_DELAY_S = 0.005

recorder = Recorder()


async def noop(ctx: Any, enqueued_at: float) -> None:
    recorder.job_started(enqueued_at)


async def count_completion(ctx: Any) -> None:
    recorder.job_completed()


def run(redis_url: str, jobs: int, latency_jobs: int, timeout_s: float) -> LifecycleResult:
    figures = asyncio.run(_run(redis_url, jobs, latency_jobs, timeout_s))
    settings = (
        f"{versions('arq')}; keep_result=0; Worker in-process (async_run), "
        f"max_jobs={MAX_JOBS}, poll_delay={POLL_DELAY_S * 1000:g} ms (default 500 ms); "
        f"enqueue: enqueue_job per job, {ASYNC_ENQUEUE_CONCURRENCY} in flight (no bulk API); "
        "completion counted in after_job_end"
    )
    return result("arq", settings, figures, jobs, latency_jobs)


async def _run(redis_url: str, jobs: int, latency_jobs: int, timeout_s: float) -> Figures:
    pool = await create_pool(RedisSettings.from_dsn(redis_url), default_queue_name=QUEUE)
    worker = Worker(
        functions=[func(noop, name=JOB_TYPE)],
        queue_name=QUEUE,
        redis_pool=pool,
        handle_signals=False,
        max_jobs=MAX_JOBS,
        keep_result=0,
        poll_delay=POLL_DELAY_S,
        after_job_end=count_completion,
    )
    worker_task: asyncio.Task[None] | None = None

    async def enqueue_one(enqueued_at: float) -> None:
        await pool.enqueue_job(JOB_TYPE, enqueued_at)

    async def start_worker() -> None:
        nonlocal worker_task
        worker_task = asyncio.create_task(worker.async_run())

    async def stop_worker() -> None:
        if worker_task is not None:
            worker_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await worker_task

    peer = AsyncPeer(enqueue_one=enqueue_one, start_worker=start_worker, stop_worker=stop_worker)
    try:
        return await run_async_phases(peer, recorder, jobs, latency_jobs, timeout_s)
    finally:
        with contextlib.suppress(asyncio.CancelledError):
            await worker.close()
