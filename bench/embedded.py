"""Scenario 3: the no-op lifecycle of :mod:`bench._workload`, embedded (no HTTP).

The system runs in this process: jobs are enqueued with ``System.enqueue_batch``
(chunks of ``enqueue_chunk`` requests), then one worker group
(``System.worker_group``) runs a no-op handler on them; its outcomes are stored in
batches. The process phase ends when the last job's ack is stored. The latency
phase enqueues single jobs (``System.enqueue``) carrying their enqueue time while
the group keeps running.

On ``redis`` and ``nats`` the run also counts the backend client's round trips
(``RedisClient.round_trips`` / ``NatsClient.round_trips``: requests sent, a pipeline
counting as one, by every part of the system, background tasks included): the enqueue
phase, the process phase up to the moment the last job's ack is stored, and, apart, the
latency phase (first latency enqueue through the last latency job's stored ack). Given
the nats-server's monitoring port (``nats_monitor_port``), it counts the messages that
server received from clients (``/varz`` ``in_msgs``) over the same phases, and the
client's own ``messages_out`` beside them.

On ``kafka`` the run samples the backend's event outbox backlog and, before it returns,
waits until the relay has handed every event to Kafka (``_backlog.py``).

    python -m bench.embedded --backend memory --jobs 50000
    python -m bench.embedded --backend kafka --url redis://127.0.0.1:PORT/0 \\
        --kafka-brokers 127.0.0.1:PORT
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import trio

from ojs_actors import Job, State, System, create_backend, open_system
from ojs_actors.backends import BACKENDS, OutboxBacklog
from ojs_actors.system import Settings

from ._backlog import BacklogReader, watching_backlog
from ._monitor import in_msgs
from ._progress import LifecycleProgress
from ._workload import JOB_TYPE, LATENCY_GAP_S, QUEUE, LifecycleResult

DEFAULT_CONCURRENCY = 16
DEFAULT_BATCH_SIZE = 100
DEFAULT_ENQUEUE_CHUNK = 1000
GRACE_PERIOD_S = 5.0
ROUND_TRIPS, MESSAGES, CLIENT_MESSAGES = "round_trips", "messages", "client_messages"

Counts = dict[str, int]
"""Counters read at one moment, by name: :data:`ROUND_TRIPS`, :data:`MESSAGES` (the
nats-server's ``in_msgs``), :data:`CLIENT_MESSAGES` (the NATS client's ``messages_out``)."""


class _Progress(LifecycleProgress):
    """What the worker group has done so far; with ``count`` (the counters so far), also
    the counts at the moment the last bulk job's, and the last latency job's, ack is
    stored."""

    def __init__(self, jobs: int, latency_jobs: int, count: Callable[[], Counts] | None) -> None:
        super().__init__(jobs, latency_jobs)
        self.count = count
        self.count_at_completion: Counts | None = None
        self.latency_settled = 0
        self.count_at_latency_settled: Counts | None = None
        self.all_latencies_settled = trio.Event()
        if latency_jobs == 0:
            self.all_latencies_settled.set()

    async def handle(self, job: Job) -> None:
        """The no-op handler: latency-phase jobs carry their enqueue time."""
        first = job.args[0] if job.args else None
        if isinstance(first, dict):
            self.latency_job_started(float(first["enqueued_at"]))

    def settled(self, jobs: Sequence[Job]) -> None:
        """Acks stored: the process phase counts bulk-phase jobs once completed."""
        completed = [job for job in jobs if job.state is State.COMPLETED]
        latency = sum(1 for job in completed if isinstance(job.args[0], dict))
        self.bulk_jobs_completed(len(completed) - latency)
        if self.count is not None and self.all_completed.is_set():
            if self.count_at_completion is None:
                self.count_at_completion = self.count()
        if latency:
            self.latency_settled += latency
            if self.latency_settled >= self.latency_jobs:
                if self.count is not None and self.count_at_latency_settled is None:
                    self.count_at_latency_settled = self.count()
                self.all_latencies_settled.set()


def store_client(system: System) -> Any | None:
    """The backend's client where it has one with a ``round_trips`` counter (``redis``:
    ``backend.connection.client``; ``nats``: ``backend.store.client``); else None."""
    backend: Any = system.backend
    for holder in ("connection", "store"):
        client = getattr(getattr(backend, holder, None), "client", None)
        if isinstance(getattr(client, "round_trips", None), int):
            return client
    return None


def counter(system: System, nats_monitor_port: int | None) -> Callable[[], Counts] | None:
    """A reader of the counters this system has: its client's round trips (and, on nats,
    the messages it wrote), and the nats-server's ``in_msgs`` when its monitoring port is
    given; None when there is nothing to count (memory, sqlite)."""
    client = store_client(system)
    if client is None and nats_monitor_port is None:
        return None

    def count() -> Counts:
        counts: Counts = {}
        if client is not None:
            counts[ROUND_TRIPS] = int(client.round_trips)
            if isinstance(getattr(client, "messages_out", None), int):
                counts[CLIENT_MESSAGES] = int(client.messages_out)
        if nats_monitor_port is not None:
            # A blocking local HTTP GET (about a millisecond), only at phase boundaries.
            counts[MESSAGES] = in_msgs(nats_monitor_port)
        return counts

    return count


def _backlog_reader(system: System) -> BacklogReader:
    """Reads the backend's event outbox backlog (``OutboxBacklog``: kafka; else None)."""
    backend = system.backend

    async def read() -> int | None:
        return await backend.outbox_backlog() if isinstance(backend, OutboxBacklog) else None

    return read


def _since(after: Counts, before: Counts) -> Counts:
    return {name: after[name] - before.get(name, 0) for name in after}


def _by_counter(phases: dict[str, Counts], name: str) -> dict[str, int]:
    """One counter's counts by phase (``{"enqueue": n, ...}``)."""
    return {phase: counts[name] for phase, counts in phases.items() if name in counts}


async def _enqueue_all(system: System, jobs: int, chunk_size: int) -> None:
    for first in range(0, jobs, chunk_size):
        chunk = [
            {"type": JOB_TYPE, "args": [index], "options": {"queue": QUEUE}}
            for index in range(first, min(jobs, first + chunk_size))
        ]
        await system.enqueue_batch(chunk)


async def _enqueue_latency_jobs(system: System, count: int) -> None:
    for _ in range(count):
        job = {
            "type": JOB_TYPE,
            "args": [{"enqueued_at": time.time()}],
            "options": {"queue": QUEUE},
        }
        await system.enqueue(job)
        await trio.sleep(LATENCY_GAP_S)


async def embedded_lifecycle(
    backend: str,
    options: dict[str, Any],
    jobs: int,
    latency_jobs: int,
    *,
    timeout_s: float = 120.0,
    concurrency: int = DEFAULT_CONCURRENCY,
    batch_size: int = DEFAULT_BATCH_SIZE,
    enqueue_chunk: int = DEFAULT_ENQUEUE_CHUNK,
    subject: str | None = None,
    nats_monitor_port: int | None = None,
    metrics: bool | None = None,
    otel_endpoint: str | None = None,
) -> LifecycleResult:
    """Run the three phases on a fresh system over ``backend`` (``create_backend``
    name and options), each bounded by what is left of ``timeout_s``. A run that
    times out reports what it completed. ``nats_monitor_port``: the monitoring port of
    the nats-server a ``nats`` backend uses (its messages are then counted too).
    ``metrics``: ``Settings.metrics`` (None: the default); ``otel_endpoint``: an OTLP/HTTP
    endpoint turns tracing on for the run (the ``observability`` scenario's switches)."""
    from ojs_actors.system.tracing import TracingSettings, open_tracing, traces_url

    endpoint = None if otel_endpoint is None else traces_url(otel_endpoint)
    settings = None if metrics is None else Settings(metrics=metrics)
    async with open_tracing(TracingSettings(endpoint=endpoint)):
        return await _lifecycle(
            backend, options, jobs, latency_jobs, timeout_s, concurrency, batch_size,
            enqueue_chunk, subject, nats_monitor_port, settings,
        )  # fmt: skip


async def _lifecycle(
    backend: str,
    options: dict[str, Any],
    jobs: int,
    latency_jobs: int,
    timeout_s: float,
    concurrency: int,
    batch_size: int,
    enqueue_chunk: int,
    subject: str | None,
    nats_monitor_port: int | None,
    settings: Settings | None,
) -> LifecycleResult:
    deadline = trio.current_time() + timeout_s
    enqueue_per_s = process_per_s = math.nan
    started_at = None
    phases: dict[str, Counts] = {}
    async with open_system(create_backend(backend, **options), settings=settings) as system:
        count = counter(system, nats_monitor_port)
        progress = _Progress(jobs, latency_jobs, count)
        async with watching_backlog(_backlog_reader(system), deadline) as backlog:
            with trio.move_on_at(deadline):
                before = count() if count else {}
                started_at, started = time.time(), time.perf_counter()
                await _enqueue_all(system, jobs, enqueue_chunk)
                enqueue_per_s = jobs / (time.perf_counter() - started)
                if count:
                    phases["enqueue"] = _since(count(), before)
            if not math.isnan(enqueue_per_s):
                before = count() if count else {}
                started = time.perf_counter()
                async with system.worker_group(
                    [QUEUE],
                    {JOB_TYPE: progress.handle},
                    concurrency=concurrency,
                    batch_size=batch_size,
                    grace_period=GRACE_PERIOD_S,
                    on_settled=progress.settled,
                ):
                    with trio.move_on_at(deadline):
                        await progress.all_completed.wait()
                        if jobs:
                            process_per_s = jobs / (progress.last_completion - started)
                        if count:
                            at_completion = progress.count_at_completion
                            phases["process"] = _since(
                                count() if at_completion is None else at_completion, before
                            )
                            before = count()
                        await _enqueue_latency_jobs(system, latency_jobs)
                        await progress.all_latencies.wait()
                        if count:
                            await progress.all_latencies_settled.wait()
                            at_settled = progress.count_at_latency_settled
                            phases["latency"] = _since(
                                count() if at_settled is None else at_settled, before
                            )
    return LifecycleResult.measured(
        subject or f"ojs-actors embedded ({backend})",
        jobs=jobs,
        completed=progress.completed,
        enqueue_per_s=enqueue_per_s,
        process_per_s=process_per_s,
        latencies_s=progress.latencies,
        latency_jobs=latency_jobs,
        settings=(
            f"enqueue: System.enqueue_batch x{enqueue_chunk}; one worker group in the same "
            f"process: concurrency {concurrency}, batch size {batch_size}, acks stored in "
            f"batches (System.settle_many path); backend {backend}"
        ),
        round_trips=_by_counter(phases, ROUND_TRIPS),
        messages=_by_counter(phases, MESSAGES),
        client_messages=_by_counter(phases, CLIENT_MESSAGES),
        started_at=started_at,
        backlog=backlog,
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="memory", choices=BACKENDS)
    parser.add_argument("--path", help="sqlite: the database file (fresh one recommended)")
    parser.add_argument(
        "--url",
        help="redis, kafka: redis://127.0.0.1:PORT/DB (flushed beforehand); nats: "
        "nats://127.0.0.1:PORT",
    )
    parser.add_argument("--kafka-brokers", help="kafka: the bootstrap servers, HOST:PORT")
    parser.add_argument(
        "--nats-batch-max", type=int, help="nats: the server's jetstream.limits.batch.max_msgs"
    )
    parser.add_argument(
        "--nats-monitor-port", type=int, help="nats: the server's monitoring port (-m)"
    )
    parser.add_argument("--jobs", type=int, default=50_000)
    parser.add_argument("--latency-jobs", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=DEFAULT_CONCURRENCY)
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)
    parser.add_argument("--enqueue-chunk", type=int, default=DEFAULT_ENQUEUE_CHUNK)
    parser.add_argument("--timeout", type=float, default=120.0)
    args = parser.parse_args(argv)
    options: dict[str, Any] = {}
    if args.path:
        options["path"] = args.path
    if args.url:
        options["redis_url" if args.backend == "kafka" else "url"] = args.url
    if args.kafka_brokers:
        options["brokers"] = args.kafka_brokers
    if args.nats_batch_max:
        options["batch_max_messages"] = args.nats_batch_max
    result = trio.run(
        lambda: embedded_lifecycle(
            args.backend,
            options,
            args.jobs,
            args.latency_jobs,
            timeout_s=args.timeout,
            concurrency=args.concurrency,
            batch_size=args.batch_size,
            enqueue_chunk=args.enqueue_chunk,
            nats_monitor_port=args.nats_monitor_port,
        )
    )
    print(json.dumps(result.as_dict()))


if __name__ == "__main__":
    main()
