"""taskiq: taskiq-redis ``ListQueueBroker`` with the receiver in this process's event loop.

Settings, and why:

- ``ListQueueBroker``: taskiq-redis's plain list broker (``LPUSH`` to enqueue, one ``BRPOP``
  per delivery, no acknowledgements), the fastest of its Redis brokers; no result backend,
  so nothing is stored per job. (``RedisStreamBroker`` adds acknowledgements and costs
  more round trips.)
- Enqueue: ``task.kiq`` per job, ``ASYNC_ENQUEUE_CONCURRENCY`` calls in flight over a pool
  of ``POOL_SIZE`` connections; taskiq has no bulk enqueue.
- Worker: ``taskiq.api.run_receiver_task`` (taskiq's documented way to run a worker
  programmatically) as a task in the same asyncio loop, instead of the ``taskiq worker``
  CLI's processes; up to ``MAX_ASYNC_TASKS`` handlers at once, its default.
- Completion is counted in a middleware's ``post_save`` hook (after the result step).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from taskiq import TaskiqMiddleware
from taskiq.api import run_receiver_task
from taskiq_redis import ListQueueBroker

from bench._workload import JOB_TYPE, QUEUE, LifecycleResult
from bench.peers._common import (
    ASYNC_ENQUEUE_CONCURRENCY,
    AsyncPeer,
    Recorder,
    result,
    run_async_phases,
    versions,
)

MAX_ASYNC_TASKS = 100
POOL_SIZE = ASYNC_ENQUEUE_CONCURRENCY + 8

recorder = Recorder()


class CountCompletions(TaskiqMiddleware):
    def post_save(self, message: Any, result: Any) -> None:
        recorder.job_completed()


def run(redis_url: str, jobs: int, latency_jobs: int, timeout_s: float) -> LifecycleResult:
    figures = asyncio.run(_run(redis_url, jobs, latency_jobs, timeout_s))
    settings = (
        f"{versions('taskiq', 'taskiq-redis')}; ListQueueBroker (LPUSH/BRPOP, no acks), "
        f"no result backend; receiver in-process via run_receiver_task, "
        f"max_async_tasks={MAX_ASYNC_TASKS}; enqueue: kiq per job, "
        f"{ASYNC_ENQUEUE_CONCURRENCY} in flight (no bulk API); completion counted in post_save"
    )
    return result("taskiq", settings, figures, jobs, latency_jobs)


async def _run(redis_url: str, jobs: int, latency_jobs: int, timeout_s: float) -> Any:
    broker = ListQueueBroker(redis_url, queue_name=QUEUE, max_connection_pool_size=POOL_SIZE)
    broker.add_middlewares(CountCompletions())

    @broker.task(task_name=JOB_TYPE)
    async def noop(enqueued_at: float) -> None:
        recorder.job_started(enqueued_at)

    await broker.startup()
    receiver: asyncio.Task[None] | None = None

    async def enqueue_one(enqueued_at: float) -> None:
        await noop.kiq(enqueued_at)

    async def start_worker() -> None:
        nonlocal receiver
        receiver = asyncio.create_task(
            run_receiver_task(broker, max_async_tasks=MAX_ASYNC_TASKS, validate_params=False)
        )

    async def stop_worker() -> None:
        if receiver is not None:
            receiver.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await receiver

    peer = AsyncPeer(enqueue_one=enqueue_one, start_worker=start_worker, stop_worker=stop_worker)
    try:
        return await run_async_phases(peer, recorder, jobs, latency_jobs, timeout_s)
    finally:
        await broker.shutdown()
