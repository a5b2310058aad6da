"""rq: a ``SimpleWorker`` (no fork per job) running in this process's main thread.

Settings, and why:

- ``result_ttl=0`` on every job: rq stores no result (the other peers drop results too).
- Enqueue: ``Queue.enqueue_many`` with ``Queue.prepare_data``, rq's bulk API: one pipeline
  per chunk of jobs.
- Worker: ``SimpleWorker`` runs each job in the worker's own process instead of forking a
  work horse per job (rq's default ``Worker``), by far rq's fastest sensible setting for
  short jobs. It runs in the main thread because rq installs signal handlers (for its
  graceful stop and its job-timeout alarm), which Python allows only there; the phases are
  driven from a second thread, which stops the worker the way an operator does, with
  ``SIGINT`` (rq's warm shutdown). The scheduler is off. rq's worker blocks on ``BLMOVE``
  when idle, so a new job starts at once.
- Completion is counted after ``handle_job_success`` (rq's success bookkeeping: registries,
  counters), in a ``SimpleWorker`` subclass.
"""

from __future__ import annotations

import signal
import threading
import time
from typing import Any

from redis import Redis
from rq import Queue, SimpleWorker

from bench._workload import QUEUE, LifecycleResult
from bench.peers._common import Figures, Recorder, SyncPeer, result, run_sync_phases, versions

recorder = Recorder()


def noop(enqueued_at: float) -> None:
    recorder.job_started(enqueued_at)


class CountingWorker(SimpleWorker):
    def handle_job_success(self, *args: Any, **kwargs: Any) -> None:
        super().handle_job_success(*args, **kwargs)
        recorder.job_completed()


def run(redis_url: str, jobs: int, latency_jobs: int, timeout_s: float) -> LifecycleResult:
    connection = Redis.from_url(redis_url)
    queue = Queue(QUEUE, connection=connection)
    worker = CountingWorker([queue], connection=connection, log_job_description=False)
    start_requested = threading.Event()
    work_running = threading.Event()

    def enqueue_chunk(count: int) -> None:
        queue.enqueue_many(
            [Queue.prepare_data(noop, args=(0.0,), result_ttl=0) for _ in range(count)]
        )

    def enqueue_one(enqueued_at: float) -> None:
        queue.enqueue(noop, enqueued_at, result_ttl=0)

    def stop_worker() -> None:
        if work_running.is_set():
            signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGINT)

    peer = SyncPeer(
        enqueue_chunk=enqueue_chunk,
        enqueue_one=enqueue_one,
        start_worker=start_requested.set,
        stop_worker=stop_worker,
    )
    outcome: list[Figures] = []
    controller = threading.Thread(
        target=lambda: outcome.append(
            run_sync_phases(peer, recorder, jobs, latency_jobs, timeout_s)
        ),
        name="phases",
    )
    controller.start()
    while controller.is_alive() and not start_requested.wait(0.05):
        pass
    if start_requested.is_set():
        work_running.set()
        try:
            worker.work(burst=False, with_scheduler=False, logging_level="WARNING")
        finally:
            work_running.clear()
            signal.signal(signal.SIGINT, signal.SIG_IGN)
    deadline = time.monotonic() + 3 * timeout_s
    controller.join(max(0.0, deadline - time.monotonic()))
    if not outcome:
        raise RuntimeError("rq: the phases did not finish after the worker stopped")
    settings = (
        f"{versions('rq')}; result_ttl=0; SimpleWorker (no fork) in the main thread, "
        "scheduler off, blocking BLMOVE dequeue; enqueue: enqueue_many in pipelines of "
        "1000 jobs; completion counted after handle_job_success"
    )
    return result("rq", settings, outcome[0], jobs, latency_jobs)
