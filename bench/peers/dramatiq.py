"""dramatiq: ``RedisBroker`` with a ``dramatiq.Worker`` started in this process.

Settings, and why:

- ``RedisBroker`` with dramatiq's default middleware (age and time limits, retries,
  callbacks, pipelines, shutdown notifications); no ``Results`` middleware, so nothing is
  stored per job.
- Enqueue: ``actor.send`` per message, one ``dispatch`` Lua script call each; dramatiq has
  no bulk enqueue (``group.run`` sends one by one too).
- Worker: ``dramatiq.Worker(broker, worker_threads=WORKER_THREADS)`` (its default thread
  count) in this process, the embedding dramatiq documents for tests, instead of the
  ``dramatiq`` CLI's forked processes. Its consumer thread keeps at most the queue prefetch
  of messages unacknowledged, and whenever that budget is used up it sleeps like on an
  empty queue (5–10 ms at first, backing off up to ``worker_timeout``, 1 s). The default
  prefetch, ``2 × worker_threads``, therefore caps one worker near 2,000 jobs/s here;
  ``QUEUE_PREFETCH`` (the ``dramatiq_queue_prefetch`` setting) is raised to 1000, which
  measured about 4× faster, while more threads added little. The same 5–10 ms first sleep
  after an empty fetch sets its enqueue-to-start latency; dramatiq has no blocking fetch
  on Redis.
- Completion is counted in a middleware's ``after_ack`` hook, after the acknowledgement.
"""

from __future__ import annotations

from typing import Any

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import Middleware

from bench._workload import JOB_TYPE, QUEUE, LifecycleResult
from bench.peers._common import Recorder, SyncPeer, result, run_sync_phases, versions

WORKER_THREADS = 8
QUEUE_PREFETCH = 1000
WORKER_STOP_TIMEOUT_MS = 10_000

recorder = Recorder()


class CountAcks(Middleware):
    def after_ack(self, broker: Any, message: Any) -> None:
        recorder.job_completed()


def run(redis_url: str, jobs: int, latency_jobs: int, timeout_s: float) -> LifecycleResult:
    broker = RedisBroker(url=redis_url)
    broker.add_middleware(CountAcks())
    dramatiq.set_broker(broker)

    @dramatiq.actor(actor_name=JOB_TYPE, queue_name=QUEUE, broker=broker)
    def noop(enqueued_at: float) -> None:
        recorder.job_started(enqueued_at)

    worker = dramatiq.Worker(broker, worker_threads=WORKER_THREADS)
    worker.queue_prefetch = QUEUE_PREFETCH  # what the dramatiq_queue_prefetch env var sets

    def enqueue_chunk(count: int) -> None:
        for _ in range(count):
            noop.send(0.0)

    def enqueue_one(enqueued_at: float) -> None:
        noop.send(enqueued_at)

    def stop_worker() -> None:
        worker.stop(timeout=WORKER_STOP_TIMEOUT_MS)
        broker.close()

    peer = SyncPeer(
        enqueue_chunk=enqueue_chunk,
        enqueue_one=enqueue_one,
        start_worker=worker.start,
        stop_worker=stop_worker,
    )
    figures = run_sync_phases(peer, recorder, jobs, latency_jobs, timeout_s)
    settings = (
        f"{versions('dramatiq')}; RedisBroker, default middleware, no results; "
        f"dramatiq.Worker in-process, {WORKER_THREADS} worker threads, queue prefetch "
        f"{QUEUE_PREFETCH} (default {2 * WORKER_THREADS}), idle poll backoff 5 ms..1 s; enqueue: actor.send per message "
        "(no bulk API); completion counted in after_ack"
    )
    return result("dramatiq", settings, figures, jobs, latency_jobs)
