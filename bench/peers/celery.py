"""celery: Redis broker, a ``WorkController`` with the solo pool in a thread of this process.

Settings, and why:

- Broker ``redis://``; no result backend and ``task_ignore_result=True``: nothing stored
  per task (the other peers drop results too). Early acknowledgement, celery's default.
- Enqueue: ``apply_async`` per task through one producer (``app.producer_or_acquire``),
  celery's documented way to publish many messages: one ``LPUSH`` each, no reconnects;
  celery has no bulk publish (``group`` sends one message per task; ``chunks`` would pack
  several calls into one message, a different workload).
- Worker: ``app.WorkController`` with ``pool="solo"`` runs tasks inline in its consumer's
  event loop (no prefork children, no thread hand-off), started in a thread of this
  process the way ``celery.contrib.testing`` embeds a worker; heartbeat, mingle and gossip
  off (the ``--without-*`` flags: no other workers to talk to), rate limits disabled,
  ``prefetch_multiplier=PREFETCH_MULTIPLIER``. It is stopped with celery's own warm-shutdown
  flag (``state.should_stop``), as its signal handler does.
- Completion is counted on the ``task_success`` signal (after the task ran; the message was
  acknowledged before it started).
"""

from __future__ import annotations

import threading
import time
from typing import Any

from celery import Celery
from celery.signals import task_success
from celery.worker import state

from bench._workload import JOB_TYPE, QUEUE, LifecycleResult
from bench.peers._common import Recorder, SyncPeer, result, run_sync_phases, versions

PREFETCH_MULTIPLIER = 4
POOL = "solo"
CONCURRENCY = 1
WORKER_STOP_TIMEOUT_S = 10.0

recorder = Recorder()


def run(redis_url: str, jobs: int, latency_jobs: int, timeout_s: float) -> LifecycleResult:
    app = Celery("bench", broker=redis_url, set_as_current=True)
    app.conf.update(
        task_default_queue=QUEUE,
        task_ignore_result=True,
        worker_prefetch_multiplier=PREFETCH_MULTIPLIER,
        worker_disable_rate_limits=True,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
    )

    @app.task(name=JOB_TYPE)
    def noop(enqueued_at: float) -> None:
        recorder.job_started(enqueued_at)

    @task_success.connect(weak=False)
    def completed(sender: Any = None, **kwargs: Any) -> None:
        recorder.job_completed()

    app.finalize()
    worker = app.WorkController(
        pool=POOL,
        concurrency=CONCURRENCY,
        loglevel="WARNING",
        without_heartbeat=True,
        without_mingle=True,
        without_gossip=True,
        hostname=f"bench-{time.monotonic_ns()}@localhost",
    )
    worker_thread = threading.Thread(target=worker.start, name="celery-worker", daemon=True)

    def enqueue_chunk(count: int) -> None:
        with app.producer_or_acquire() as producer:
            for _ in range(count):
                noop.apply_async((0.0,), producer=producer)

    def enqueue_one(enqueued_at: float) -> None:
        noop.apply_async((enqueued_at,))

    def stop_worker() -> None:
        state.should_stop = 0
        worker_thread.join(WORKER_STOP_TIMEOUT_S)
        state.should_stop = None

    peer = SyncPeer(
        enqueue_chunk=enqueue_chunk,
        enqueue_one=enqueue_one,
        start_worker=worker_thread.start,
        stop_worker=stop_worker,
    )
    figures = run_sync_phases(peer, recorder, jobs, latency_jobs, timeout_s)
    settings = (
        f"{versions('celery', 'kombu')}; no result backend, ignore_result, early ack; "
        f"WorkController in-process, pool=solo (concurrency 1), prefetch multiplier "
        f"{PREFETCH_MULTIPLIER}, without heartbeat/mingle/gossip, rate limits off; "
        "enqueue: apply_async per task through one producer (no bulk API); completion "
        "counted on task_success"
    )
    return result("celery", settings, figures, jobs, latency_jobs)
