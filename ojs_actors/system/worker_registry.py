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

from .clock import Clock

WORKER_STATES = ("running", "quiet", "terminate")


@dataclass(slots=True)
class WorkerRecord:
    last_seen: int
    """Epoch milliseconds of the worker's latest fetch or heartbeat (or directive)."""
    directive: str = "running"
    """The state the worker's next heartbeat reply asks for."""


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
