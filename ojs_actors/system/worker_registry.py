"""The workers this process has heard from, and the directives waiting for them.

A worker is seen when it fetches or sends a heartbeat. Worker ids are unique per
process instance (ojs-worker-protocol §3.1), so every restart of every worker brings a
new one: a worker not heard from for ``idle_timeout_ms`` is forgotten, together with
any directive still waiting for it, and ``capacity`` caps the record against a storm
of distinct ids (the longest silent go first).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from ..core.version_routes import VersionRoutes
from .clock import Clock

WORKER_STATES = ("running", "quiet", "terminate")
REPORTED_STATES = ("running", "quiet", "drain", "terminate")
"""What a worker may say it is in (``POST /ojs/v1/workers/beat``; ``drain``: the
ext-graceful-shutdown suite's name of ojs-graceful-shutdown §5.2's phase)."""
STOPPING_STATES = frozenset({"quiet", "drain", "terminate"})
"""Reported states in which a worker gets no new jobs (ojs-graceful-shutdown §5.1)."""


@dataclass(slots=True)
class WorkerRecord:
    last_seen: int
    """Epoch milliseconds of the worker's latest fetch or heartbeat (or directive)."""
    directive: str = "running"
    """The state the worker's next heartbeat reply asks for."""
    reported: str = "running"
    """The state the worker last said it is in (``POST /ojs/v1/workers/beat``)."""
    active_jobs: int = 0
    """The jobs it last said it is running."""
    handlers: VersionRoutes | None = None
    """The job versions it last declared it handles (ojs-job-versioning §8.1): its
    fetches get no job outside them. ``None``: any."""
    handed_back: bool = False
    """A claim of it took jobs outside them and handed them back, since
    :meth:`~.worker_side.WorkerSide.take_handed_back` last asked: it then waits for its
    next poll, not for the wake-up their return to the queue may send."""

    @property
    def stopping(self) -> bool:
        """The worker is shutting down: its fetches get nothing."""
        return self.reported in STOPPING_STATES


class WorkerRegistry:
    def __init__(self, clock: Clock, *, idle_timeout_ms: int, capacity: int) -> None:
        if idle_timeout_ms <= 0 or capacity <= 0:
            raise ValueError("idle_timeout_ms and capacity must be positive")
        self.clock = clock
        self.idle_timeout_ms = idle_timeout_ms
        self.capacity = capacity
        self._records: OrderedDict[str, WorkerRecord] = OrderedDict()
        """Least recently seen first, so the idle and the overflow leave from the front."""

    def __len__(self) -> int:
        self._forget_idle(self.clock())
        return len(self._records)

    def ids(self) -> list[str]:
        """The workers remembered, least recently seen first."""
        self._forget_idle(self.clock())
        return list(self._records)

    def records(self) -> list[tuple[str, WorkerRecord]]:
        """The workers remembered with their records, least recently seen first."""
        self._forget_idle(self.clock())
        return list(self._records.items())

    def seen(self, worker_id: str) -> WorkerRecord:
        """Note that the worker is alive now; its record (new or refreshed)."""
        now = self.clock()
        self._forget_idle(now)
        records = self._records
        record = records.pop(worker_id, None) or WorkerRecord(last_seen=now)
        record.last_seen = now
        records[worker_id] = record
        while len(records) > self.capacity:
            records.popitem(last=False)
        return record

    def direct(self, worker_id: str, state: str) -> None:
        """Ask the worker to move to ``state``; kept for at least the idle timeout."""
        if state not in WORKER_STATES:
            raise ValueError(f"worker state must be one of {WORKER_STATES}")
        self.seen(worker_id).directive = state

    def report(self, worker_id: str, state: str, active_jobs: int) -> WorkerRecord:
        """Note the state the worker says it is in (one of :data:`REPORTED_STATES`)."""
        if state not in REPORTED_STATES:
            raise ValueError(f"reported worker state must be one of {REPORTED_STATES}")
        record = self.seen(worker_id)
        record.reported = state
        record.active_jobs = active_jobs
        return record

    def declare(self, worker_id: str, handlers: VersionRoutes | None) -> WorkerRecord:
        """Note the job versions the worker handles (its latest declaration replaces the
        one before; ``None``: any version of any type)."""
        record = self.seen(worker_id)
        record.handlers = handlers
        return record

    def get(self, worker_id: str) -> WorkerRecord | None:
        """The worker's record, if it is remembered (not idle past the timeout)."""
        self._forget_idle(self.clock())
        return self._records.get(worker_id)

    def clear(self) -> None:
        self._records.clear()

    def _forget_idle(self, now: int) -> None:
        records = self._records
        cutoff = now - self.idle_timeout_ms
        while records:
            oldest = next(iter(records.values()))
            if oldest.last_seen > cutoff:
                break
            records.popitem(last=False)
