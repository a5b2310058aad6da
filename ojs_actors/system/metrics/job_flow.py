"""Jobs (ojs-observability §8): the transitions this process stores, counted as they are
stored, and the jobs by queue and state, read from the backend at scrape time.

:meth:`JobFlow.record` is told of every job change this process stores (the System's
change hook, which the QueueActors and the Scheduler call once per stored change), so
each transition is counted once, by the process that made it; the sum over replicas is
the cluster's figure.

Labels: ``queue`` and ``type`` (the job type), as the spec names them. Job types come
from clients, so past :data:`MAX_TYPES` distinct ones in a process the rest count under
``type="_other"``: the series stay bounded whatever clients send.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from prometheus_client.core import Metric

from ...backends import Backend
from ...core import Job, State
from ..queue_writes import Changes
from .families import DURATION_BUCKETS, QUEUE_TIME_BUCKETS, gauge
from .instruments import CounterVec, Instruments
from .tenants import TenantFlow, tenant_families

MAX_TYPES = 200
"""Distinct job types labelled as themselves (the spec's "typically < 200")."""
OTHER_TYPE = "_other"
_QUEUE_PREFIX = "queue:"  # the QueueActors' snapshots: the queue registry
_WAITING = frozenset({State.SCHEDULED, State.RETRYABLE, State.AVAILABLE, State.PENDING})
"""States a job may expire from (``lifecycle.expire``)."""


class JobFlow:
    def __init__(self, instruments: Instruments) -> None:
        def count(name: str, documentation: str) -> CounterVec:
            return instruments.counter(name, documentation, ["queue", "type"])

        self._enqueued = count("ojs_job_enqueued", "Jobs stored by an enqueue.")
        self._completed = count("ojs_job_completed", "Jobs that reached completed.")
        self._failed = count(
            "ojs_job_failed", "Jobs discarded by a failure (retries exhausted or not retryable)."
        )
        self._retried = count(
            "ojs_job_retried",
            "Failed attempts given another: retryable, or available again after a lost lease.",
        )
        self._dead_lettered = count(
            "ojs_job_dead_lettered", "Jobs discarded into the dead letter queue."
        )
        self._cancelled = count("ojs_job_cancelled", "Jobs cancelled.")
        self._expired = count("ojs_job_expired", "Jobs discarded by their expires_at (TTL).")
        self._queue_time = instruments.histogram(
            "ojs_job_queue_time_seconds",
            "Time a job was available (since enqueued, due or given back) before a claim.",
            ["queue", "type"],
            QUEUE_TIME_BUCKETS,
        )
        self._duration = instruments.histogram(
            "ojs_job_duration_seconds",
            "Attempts, from the claim to the ack or failure; state: what the job became "
            "(completed, retryable, discarded).",
            ["queue", "type", "state"],
            DURATION_BUCKETS,
        )
        self._types: set[str] = set()
        self.tenants = TenantFlow(instruments)

    def record(self, changes: Changes) -> None:
        """Count stored changes (``(state before or None if new, job as stored)``)."""
        types = self._types
        tenants = self.tenants
        for before, job in changes:
            tenants.record(before, job)
            queue = job.queue
            kind = job.type
            if kind not in types:
                kind = self._new_type(kind)
            state = job.state
            if before is None:
                self._enqueued.child(queue, kind).inc()
            elif before is State.AVAILABLE and state is State.ACTIVE:
                if job.started_at is not None:
                    waited = job.started_at - (job.enqueued_at or job.created_at)
                    self._queue_time.child(queue, kind).observe(max(waited, 0) / 1000)
            elif before is State.ACTIVE and state is not State.ACTIVE:
                self._attempt_ended(queue, kind, job)
            elif state is State.CANCELLED:
                self._cancelled.child(queue, kind).inc()
            elif state is State.DISCARDED and before in _WAITING:
                self._expired.child(queue, kind).inc()

    def _attempt_ended(self, queue: str, kind: str, job: Job) -> None:
        """``job`` left ``active``: how its attempt ended."""
        state = job.state
        started = job.started_at
        if state is State.COMPLETED:
            self._completed.child(queue, kind).inc()
        elif state is State.RETRYABLE:
            self._retried.child(queue, kind).inc()
        elif state is State.DISCARDED:
            self._failed.child(queue, kind).inc()
            if job.dead_letter:
                self._dead_lettered.child(queue, kind).inc()
        elif state is State.CANCELLED:
            self._cancelled.child(queue, kind).inc()
            return
        elif state is State.AVAILABLE and started is None:
            # lifecycle.lease_expired clears started_at; a requeue (nack) keeps it
            self._retried.child(queue, kind).inc()
            return
        else:
            return  # handed back unspent (requeue)
        if started is not None:
            ran = max(job.changed_at - started, 0) / 1000
            self._duration.child(queue, kind, state.value).observe(ran)

    def _new_type(self, kind: str) -> str:
        if len(self._types) >= MAX_TYPES:
            return OTHER_TYPE
        self._types.add(kind)
        return kind


JobCounts = Mapping[str, Mapping[State, int]]


async def count_jobs(backend: Backend) -> JobCounts:
    """Every known queue's jobs by state (one ``count_jobs`` per queue)."""
    records = await backend.list_snapshots(_QUEUE_PREFIX)
    names = sorted(
        record.get("name") or key.removeprefix(_QUEUE_PREFIX) for key, record in records.items()
    )
    return {name: await backend.count_jobs(name) for name in names}


def job_count_families(counts: JobCounts | None, workers: Callable[[], int]) -> Iterator[Metric]:
    yield gauge(
        "ojs_workers_active",
        "Workers this process heard from (fetch or heartbeat) within the worker idle timeout.",
        [],
        [([], workers())],
    )
    if counts is None:
        return
    yield gauge(
        "ojs_queue_depth",
        "Jobs by queue and state, as the backend counts them at scrape time.",
        ["queue", "state"],
        (
            ([queue, state.value], by_state.get(state, 0))
            for queue, by_state in counts.items()
            for state in State
        ),
    )
    yield gauge(
        "ojs_workers_busy",
        "Jobs being executed (active), by queue, as the backend counts them at scrape time.",
        ["queue"],
        (([queue], by_state.get(State.ACTIVE, 0)) for queue, by_state in counts.items()),
    )
    yield from tenant_families(counts)  # ojs-multi-tenancy §11.2


__all__ = ["MAX_TYPES", "OTHER_TYPE", "JobCounts", "JobFlow", "count_jobs", "job_count_families"]
