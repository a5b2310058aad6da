"""A queue's total job size, for its ``max_size_bytes`` bound (ojs-backpressure §6.1).

A job's size is the UTF-8 length of its compact JSON envelope (as the API shows it).
The backends count a queue's jobs by state but not their bytes, so the total is
approximated here: every ``poll_interval`` at most it is recounted exactly from the
backend's job listing (the queue's non-terminal jobs, a page per state); in between,
the jobs this process admits are added to it and those it drops subtracted. Jobs leaving
the queue through workers are noticed at the next recount, so between recounts the
total may only be too high (an enqueue refused that would have fitted: the 429 says to
retry in a second); enqueues through other processes sharing the backend are noticed
at the next recount too, so concurrent processes may pass the bound by what they admit
within a poll interval.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from ..backends import Backend, JobListing, JobQuery
from ..core import Job, State, Unsupported
from .clock import Clock

MAX_SIZES_KEPT = 100_000
"""Job sizes remembered between recounts (by id and version), the oldest dropped first."""


def job_size(job: Job) -> int:
    encoded = json.dumps(job.to_wire(), separators=(",", ":"), ensure_ascii=False, default=str)
    return len(encoded.encode())


def batch_size(jobs: Sequence[Job]) -> int:
    return sum(map(job_size, jobs))


def check_countable(backend: Backend) -> None:
    """Raise :class:`Unsupported` if the queue sizes cannot be counted on ``backend``."""
    if not isinstance(backend, JobListing):
        raise Unsupported(
            f"'backpressure.max_size_bytes' needs a backend that lists jobs; "
            f"{backend.name} does not: bound the depth.",
            details={"field": "backpressure.max_size_bytes"},
        )


class SizeGauge:
    def __init__(self, queue: str, backend: Backend, clock: Clock, refresh_ms: int) -> None:
        self.queue = queue
        self._backend = backend
        self._clock = clock
        self._refresh_ms = refresh_ms
        self._total: int | None = None
        self._counted_at = 0
        self._sizes: dict[str, tuple[int, int]] = {}
        """Job id -> (version, size), so a recount serializes only changed jobs."""

    async def total(self) -> int:
        """The queue's bytes: recounted if the last count is older than ``poll_interval``."""
        now = self._clock()
        if self._total is None or now - self._counted_at >= self._refresh_ms:
            self._total = await self._count()
            self._counted_at = now
        return self._total

    def changed(self, delta: int) -> None:
        """This process stored (positive) or dropped (negative) ``delta`` bytes."""
        if self._total is not None:
            self._total = max(self._total + delta, 0)

    def forget(self) -> None:
        self._total = None
        self._sizes.clear()

    async def _count(self) -> int:
        backend = self._backend
        check_countable(backend)
        assert isinstance(backend, JobListing)
        counts = await self._backend.count_jobs(self.queue)
        sizes = self._sizes
        seen: dict[str, tuple[int, int]] = {}
        for state, count in counts.items():
            if state.terminal or state is State.DISCARDED or not count:
                continue
            query = JobQuery(queue=self.queue, state=state, limit=count + 100)
            jobs, _ = await backend.list_jobs(query)
            for job in jobs:
                known = sizes.get(job.id)
                seen[job.id] = (
                    known if known and known[0] == job.version else (job.version, job_size(job))
                )
        if len(seen) <= MAX_SIZES_KEPT:
            self._sizes = seen
        return sum(size for _, size in seen.values())


__all__ = ["SizeGauge", "batch_size", "check_countable", "job_size"]
