"""huey: ``RedisHuey`` with its consumer started in this process.

Settings, and why:

- ``RedisHuey(results=False)``: fire and forget, no result write per job (huey's documented
  switch; the other peers drop results too).
- Enqueue: one ``LPUSH`` per job, huey has no bulk enqueue (``Task.map`` loops over
  ``enqueue``).
- Consumer: ``huey.create_consumer(workers=WORKERS, worker_type="thread", periodic=False)``
  started in-process (``Consumer.start``), so no fork and no scheduler work; each worker
  thread blocks on ``BRPOP`` (huey's default ``blocking=True``), so an idle worker wakes up
  as soon as a job lands. Threads, not processes, to stay in one process; several threads
  overlap their Redis round trips while the no-op handler holds the GIL only briefly.
- Completion is counted on huey's ``SIGNAL_COMPLETE`` (after execution, in the worker).
"""

from __future__ import annotations

from typing import Any

from huey import RedisHuey, signals

from bench._workload import JOB_TYPE, QUEUE, LifecycleResult
from bench.peers._common import Recorder, SyncPeer, result, run_sync_phases, versions

WORKERS = 4

recorder = Recorder()


def run(redis_url: str, jobs: int, latency_jobs: int, timeout_s: float) -> LifecycleResult:
    huey = RedisHuey(QUEUE, url=redis_url, results=False)

    @huey.task(name=JOB_TYPE)
    def noop(enqueued_at: float) -> None:
        recorder.job_started(enqueued_at)

    @huey.signal(signals.SIGNAL_COMPLETE)
    def completed(signal: str, task: Any) -> None:
        recorder.job_completed()

    consumer = huey.create_consumer(workers=WORKERS, worker_type="thread", periodic=False)

    def enqueue_chunk(count: int) -> None:
        for _ in range(count):
            noop(0.0)

    def stop_worker() -> None:
        consumer.stop(graceful=True)

    peer = SyncPeer(
        enqueue_chunk=enqueue_chunk,
        enqueue_one=noop,
        start_worker=consumer.start,
        stop_worker=stop_worker,
    )
    figures = run_sync_phases(peer, recorder, jobs, latency_jobs, timeout_s)
    settings = (
        f"{versions('huey')}; RedisHuey(results=False); consumer in-process, "
        f"{WORKERS} worker threads blocking on BRPOP, periodic off; enqueue: one LPUSH per job "
        "(no bulk API); completion counted on SIGNAL_COMPLETE"
    )
    return result("huey", settings, figures, jobs, latency_jobs)
