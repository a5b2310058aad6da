"""The one no-op workload every lifecycle measurement runs, whoever runs it.

Used alike by ojs-actors over HTTP, ojs-actors embedded, and every peer, so
their figures compare:

1. **Enqueue** ``jobs`` no-op jobs with no worker running, in the system's fastest
   documented way from one process (its bulk API if it has one; the subject's
   ``settings`` text says which): ``enqueue_per_s = jobs / elapsed``.
2. **Process**: start the worker(s) and wait until every one of those jobs has
   run its handler (and been acknowledged, where the system has acks):
   ``process_per_s = jobs / (last completion - worker start)``.
3. **Latency**: with the worker running and idle, enqueue ``latency_jobs`` jobs one
   at a time, ``LATENCY_GAP_S`` apart; each carries its enqueue time
   (``time.time()``) in its arguments and the handler records
   ``time.time() - enqueued_at`` when it starts: p50 and p99 of those.

Every phase is bounded by ``timeout_s``; a run that times out reports the jobs it
completed and is not a valid measurement (``ok`` is false).

Where the subject talks to Redis through ojs-actors' own client (ojs-actors embedded on
``redis``), the run also counts the client's round trips (``RedisClient.round_trips``:
requests sent, a pipeline counting as one) per phase: ``round_trips_per_job`` is the
enqueue and process phases' count (first enqueue through the last job's stored ack)
over ``jobs``; the latency phase's count over ``latency_jobs`` is reported apart, in
``latency_round_trips_per_job``, as it includes the idle worker's polling between jobs.
On ``nats`` (``NatsClient.round_trips``: calls that waited for the server) the run also
counts the messages the server received from clients (nats-server's ``/varz``
``in_msgs``) per phase, summed up the same way in ``messages_per_job`` and
``latency_messages_per_job``; ``client_messages`` keeps the client's own count
(``NatsClient.messages_out``) beside it.

Where the backend bounds its event outbox (kafka: events waiting for the relay to hand
them to Kafka), the run samples that backlog (``_backlog.py``) from the first
enqueue to the last latency job (``backlog``), then waits (within ``timeout_s``) until it
is 0, so every event of the run has reached the sink when it returns. ``started_at``
(``time.time()`` of the first enqueue) lets the harness time the relay from outside.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from ._results import percentile

QUEUE = "bench"
JOB_TYPE = "bench.noop"
LATENCY_GAP_S = 0.005


@dataclass
class LifecycleResult:
    subject: str  # e.g. "ojs-actors embedded (redis)", "huey"
    jobs: int  # jobs in phases 1–2
    completed: int  # of those, how many completed
    enqueue_per_s: float
    process_per_s: float
    latency_jobs: int
    latency_p50_ms: float
    latency_p99_ms: float
    settings: str = ""  # how it was run: pool, concurrency, bulk API, versions
    # Redis round trips by phase ("enqueue", "process", "latency"), where counted (else empty)
    round_trips: dict[str, int] = field(default_factory=dict)
    round_trips_per_job: float = math.nan  # (enqueue + process) / jobs
    latency_round_trips_per_job: float = math.nan  # latency / latency_jobs
    # NATS: messages the server received from clients by phase (/varz in_msgs), where
    # counted; the client's own count of messages it wrote (messages_out), by phase
    messages: dict[str, int] = field(default_factory=dict)
    client_messages: dict[str, int] = field(default_factory=dict)
    messages_per_job: float = math.nan  # (enqueue + process) / jobs
    latency_messages_per_job: float = math.nan  # latency / latency_jobs
    started_at: float | None = None  # time.time() of the first enqueue, where recorded
    # the event outbox's backlog, sampled during the run, where the backend bounds it (kafka)
    backlog: list[int] = field(default_factory=list)

    @classmethod
    def measured(
        cls,
        subject: str,
        *,
        jobs: int,
        completed: int,
        enqueue_per_s: float,
        process_per_s: float,
        latencies_s: Iterable[float],
        latency_jobs: int,
        settings: str,
        round_trips: dict[str, int] | None = None,
        messages: dict[str, int] | None = None,
        client_messages: dict[str, int] | None = None,
        started_at: float | None = None,
        backlog: list[int] | None = None,
    ) -> LifecycleResult:
        """A run's result from its latency samples (seconds); unless every one of the
        ``latency_jobs`` was measured, ``latency_jobs`` is 0 and the run is not ``ok``.
        ``round_trips``, ``messages``: the counts by phase, where counted; a phase that did
        not finish is left out, and its per-job figure is NaN."""
        samples = sorted(latencies_s)
        counts = dict(round_trips or {})
        bulk, latency = per_job(counts, jobs, latency_jobs)
        sent = dict(messages or {})
        bulk_sent, latency_sent = per_job(sent, jobs, latency_jobs)
        return cls(
            subject=subject,
            jobs=jobs,
            completed=completed,
            enqueue_per_s=enqueue_per_s,
            process_per_s=process_per_s,
            latency_jobs=len(samples) if len(samples) == latency_jobs else 0,
            latency_p50_ms=percentile(samples, 50) * 1000.0,
            latency_p99_ms=percentile(samples, 99) * 1000.0,
            settings=settings,
            round_trips=counts,
            round_trips_per_job=bulk,
            latency_round_trips_per_job=latency,
            messages=sent,
            client_messages=dict(client_messages or {}),
            messages_per_job=bulk_sent,
            latency_messages_per_job=latency_sent,
            started_at=started_at,
            backlog=list(backlog or []),
        )

    @property
    def ok(self) -> bool:
        return self.completed == self.jobs and self.latency_jobs > 0

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


def per_job(counts: dict[str, int], jobs: int, latency_jobs: int) -> tuple[float, float]:
    """Counts by phase as (enqueue + process) per job and latency per latency job; NaN
    where a phase is missing (it did not finish, or nothing was counted)."""
    bulk = (
        (counts["enqueue"] + counts["process"]) / jobs
        if jobs and "enqueue" in counts and "process" in counts
        else math.nan
    )
    latency = counts["latency"] / latency_jobs if latency_jobs and "latency" in counts else math.nan
    return bulk, latency
