"""The zero-configuration in-process backend.

Everything lives in this process's memory; every method runs without an
``await`` in its body, so each call is atomic under trio's cooperative
scheduling. Indexes use lazy deletion: entries carry the job version (or ready
``seq``) they were made for and are dropped when that is no longer current.
"""

from __future__ import annotations

import bisect
import heapq
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from ..core import Job, OJSError, State, lifecycle
from ..core.events import change_key
from .base import (
    EVERY_CAPABILITY,
    Deduplicated,
    EventFilter,
    JobQuery,
    RateLimit,
    plan_insert,
    plan_inserts,
    replaced_by,
    timers_of,
)
from .outbox import EVENT_RETENTION, OutboxEntry, collect, cursor

Timer = tuple[int, str, int]
"""``(due, job id, job version)``."""


class ReadyOrder:
    """The available jobs of one queue in ready order: highest priority first, then FIFO.

    One FIFO lane of ``(version, job id)`` per priority: jobs are appended as they become
    available, so each lane is in order and a claim pops in O(1). The job's version at
    that moment tells a current entry from a stale one (the job moved on since)."""

    __slots__ = ("_lanes", "_order")

    def __init__(self) -> None:
        self._lanes: dict[int, deque[tuple[int, str]]] = {}
        self._order: list[int] = []  # the lanes' priorities, negated, ascending

    def push(self, priority: int, version: int, job_id: str) -> None:
        lane = self._lanes.get(priority)
        if lane is None:
            lane = self._lanes[priority] = deque()
            bisect.insort(self._order, -priority)
        lane.append((version, job_id))

    def pop(self) -> tuple[int, str] | None:
        """The first entry, or ``None``; it may be stale (check the job's ``version``)."""
        while self._order:
            lane = self._lanes[-self._order[0]]
            if lane:
                return lane.popleft()
            del self._lanes[-self._order.pop(0)]
        return None


class TimerIndex:
    """Job timers, earliest first, with lazy deletion of stale versions.

    Most timers are leases, due one visibility timeout after their claim, so for each
    timeout they arrive in due order: those go in a FIFO lane per timeout (O(1) in and
    out); any timer that would break a lane's order goes in one heap."""

    __slots__ = ("_heap", "_lanes")

    def __init__(self) -> None:
        self._heap: list[Timer] = []
        self._lanes: dict[int, deque[Timer]] = {}

    def add(self, timer: Timer, lane_key: int | None = None) -> None:
        if lane_key is not None:
            lane = self._lanes.get(lane_key)
            if lane is None:
                lane = self._lanes[lane_key] = deque()
            if not lane or lane[-1][0] <= timer[0]:
                lane.append(timer)
                return
        heapq.heappush(self._heap, timer)

    def _first(self, is_current: Callable[[str, int], bool]) -> deque[Timer] | list[Timer] | None:
        """The lane (or the heap) holding the earliest current timer, stale heads dropped."""
        best: deque[Timer] | list[Timer] | None = None
        heap = self._heap
        while heap and not is_current(heap[0][1], heap[0][2]):
            heapq.heappop(heap)
        if heap:
            best = heap
        for key, lane in list(self._lanes.items()):
            while lane and not is_current(lane[0][1], lane[0][2]):
                lane.popleft()
            if not lane:
                del self._lanes[key]
            elif best is None or lane[0][0] < best[0][0]:
                best = lane
        return best

    def earliest(self, is_current: Callable[[str, int], bool]) -> int | None:
        first = self._first(is_current)
        return first[0][0] if first is not None else None

    def take_due(self, now: int, limit: int, is_current: Callable[[str, int], bool]) -> list[Timer]:
        """Remove and return current timers due at or before ``now`` (at most ``limit``
        different jobs), earliest first; put back with :meth:`add` those still wanted."""
        taken: list[Timer] = []
        jobs: set[str] = set()
        while len(jobs) < limit:
            first = self._first(is_current)
            if first is None or first[0][0] > now:
                break
            timer = heapq.heappop(first) if isinstance(first, list) else first.popleft()
            taken.append(timer)
            jobs.add(timer[1])
        return taken


class Outbox:
    """The newest ``retention`` outbox entries, in order, and each one's position by key."""

    __slots__ = ("_entries", "_first", "_positions", "_retention")

    def __init__(self, retention: int) -> None:
        self._retention = retention
        self._entries: deque[tuple[str, OutboxEntry]] = deque()
        self._positions: dict[str, int] = {}
        self._first = 0  # the position of _entries[0]

    def append(self, key: str, entry: OutboxEntry) -> None:
        entries = self._entries
        self._positions[key] = self._first + len(entries)
        entries.append((key, entry))
        if len(entries) > self._retention:
            gone, _ = entries.popleft()
            del self._positions[gone]
            self._first += 1

    def read(self, query: EventFilter) -> list[dict[str, Any]]:
        start, skip = 0, 0
        after = cursor(query)
        if after is not None:
            key, skip = after
            position = self._positions.get(key)
            if position is not None:
                start = position - self._first
            elif not query.resume:
                return []
            else:
                skip = 0
        found: list[dict[str, Any]] = []
        entries = self._entries
        collect((entries[i][1] for i in range(start, len(entries))), query, skip, found)
        return found


class MemoryBackend:
    name = "memory"
    capabilities = EVERY_CAPABILITY
    needs_asyncio = False

    def __init__(self, *, event_retention: int = EVENT_RETENTION) -> None:
        self._event_retention = event_retention
        self._clear()

    def _clear(self) -> None:
        self._jobs: dict[str, Job] = {}
        self._ready: dict[str, ReadyOrder] = {}
        self._timers = TimerIndex()
        self._dead_letter: dict[str, None] = {}
        self._unique: dict[str, str] = {}
        self._counts: dict[str, dict[State, int]] = {}
        self._snapshots: dict[str, dict[str, Any]] = {}
        self._snapshot_versions: dict[str, int] = {}
        self._outbox = Outbox(self._event_retention)
        self._claim_times: dict[str, deque[int]] = {}  # per queue, for rate limits

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def ping(self) -> float:
        return 0.0

    # -- indexing ----------------------------------------------------------------

    def _store(self, job: Job, previous: Job | None) -> None:
        """Store ``job`` as the current version, index it and append its outbox entry
        (the job is kept as it is)."""
        state = job.state
        counts = self._counts.setdefault(job.queue, {})
        if previous is not None:
            counts[previous.state] -= 1
            if previous.state is State.DISCARDED and previous.dead_letter:
                self._dead_letter.pop(job.id, None)
            self._outbox.append(change_key(job), (previous.state, job, None))
        else:
            self._outbox.append(change_key(job), (None, job, None))
        counts[state] = counts.get(state, 0) + 1
        if state is State.AVAILABLE:
            ready = self._ready.get(job.queue)
            if ready is None:
                ready = self._ready[job.queue] = ReadyOrder()
            ready.push(job.priority, job.version, job.id)
        lease = job.lease_expires_at if state is State.ACTIVE else None
        for due in timers_of(job):
            lane = job.visibility_timeout_ms if due == lease else None
            self._timers.add((due, job.id, job.version), lane)
        if state is State.DISCARDED and job.dead_letter:
            self._dead_letter[job.id] = None
        self._jobs[job.id] = job

    def _timer_is_current(self, job_id: str, version: int) -> bool:
        job = self._jobs.get(job_id)
        return job is not None and job.version == version

    # -- jobs ----------------------------------------------------------------------

    async def insert_jobs(
        self, jobs: Sequence[Job], *, atomic: bool = False
    ) -> list[Job | Deduplicated | OJSError]:
        if atomic:
            planned = plan_inserts(jobs, self._jobs.__contains__, self._key_holder)
            if any(isinstance(result, OJSError) for result in planned):
                return planned
        results: list[Job | Deduplicated | OJSError] = []
        stored = self._jobs
        for job in jobs:
            decision = plan_insert(job, stored.__contains__, self._key_holder)
            if isinstance(decision, Job):
                if decision.unique_key is not None:
                    holder = self._key_holder(decision.unique_key)
                    cancelled = replaced_by(decision, holder)
                    if cancelled is not None and holder is not None:
                        self._store(cancelled, holder)
                    self._unique[decision.unique_key] = decision.id
                self._store(decision, None)
            results.append(decision)
        return results

    def _key_holder(self, key: str) -> Job | None:
        holder_id = self._unique.get(key)
        return self._jobs.get(holder_id) if holder_id else None

    async def get_jobs(self, job_ids: Sequence[str]) -> list[Job | None]:
        return [self._jobs.get(job_id) for job_id in job_ids]

    async def update_jobs(self, updates: Sequence[tuple[Job, int]]) -> list[bool]:
        results = []
        for job, expected_version in updates:
            current = self._jobs.get(job.id)
            if current is None or current.version != expected_version:
                results.append(False)
                continue
            self._store(job, current)
            results.append(True)
        return results

    async def claim(
        self,
        queue: str,
        count: int,
        now: int,
        worker_id: str | None,
        visibility_ms: int | None,
        *,
        rate: RateLimit | None = None,
    ) -> tuple[list[Job], list[Job]]:
        if rate is not None:
            times = self._claim_times.setdefault(queue, deque())
            while times and times[0] <= now - rate.window_ms:
                times.popleft()
            count = min(count, rate.limit - len(times))
        ready = self._ready.get(queue)
        claimed: list[Job] = []
        expired: list[Job] = []
        while ready is not None and len(claimed) < count:
            entry = ready.pop()
            if entry is None:
                break
            version, job_id = entry
            job = self._jobs.get(job_id)
            if job is None or job.state is not State.AVAILABLE or job.version != version:
                continue
            if job.expires_at is not None and job.expires_at <= now:
                gone = lifecycle.expire(job, now)
                self._store(gone, job)
                expired.append(gone)
                continue
            active = lifecycle.claim(job, now, worker_id, visibility_ms)
            self._store(active, job)
            claimed.append(active)
        if rate is not None:
            self._claim_times[queue].extend(now for _ in claimed)
        return claimed, expired

    async def due_jobs(self, now: int, limit: int) -> list[Job]:
        taken = self._timers.take_due(now, limit, self._timer_is_current)
        due: dict[str, Job] = {}
        for timer in taken:
            self._timers.add(timer)  # still the job's timer until the job changes
            due.setdefault(timer[1], self._jobs[timer[1]])
        return list(due.values())

    async def next_due_at(self) -> int | None:
        return self._timers.earliest(self._timer_is_current)

    async def count_jobs(self, queue: str) -> dict[State, int]:
        return {state: n for state, n in self._counts.get(queue, {}).items() if n}

    async def list_jobs(self, query: JobQuery) -> tuple[list[Job], int]:
        """:class:`~ojs_actors.backends.base.JobListing`: one pass over every job (no index
        serves it), keeping the best ``offset + limit``: O(n log page)."""
        if query.queue is not None and query.queue not in self._counts:
            return [], 0
        if not query.filtered:
            return query.page(self._jobs.values(), query.sort_key()), len(self._jobs)
        taken = [job for job in self._jobs.values() if query.matches(job)]
        return query.page(taken, query.sort_key()), len(taken)

    async def delete_jobs(self, jobs: Sequence[tuple[str, int]]) -> list[bool]:
        """:class:`~ojs_actors.backends.base.JobDeletion` (the other indexes drop a missing
        job's entries lazily)."""
        results = []
        for job_id, version in jobs:
            job = self._jobs.get(job_id)
            if job is None or job.version != version or not job.state.terminal:
                results.append(False)
                continue
            del self._jobs[job_id]
            self._dead_letter.pop(job_id, None)
            self._counts[job.queue][job.state] -= 1
            if job.unique_key is not None and self._unique.get(job.unique_key) == job_id:
                del self._unique[job.unique_key]
            results.append(True)
        return results

    # -- dead letter ----------------------------------------------------------------

    async def list_dead_letter(
        self, queue: str | None, limit: int, offset: int
    ) -> tuple[list[Job], int]:
        jobs = [self._jobs[job_id] for job_id in self._dead_letter]
        if queue is not None:
            jobs = [job for job in jobs if job.queue == queue]
        return jobs[offset : offset + limit], len(jobs)

    async def delete_dead_letter(self, job_id: str) -> bool:
        if job_id not in self._dead_letter:
            return False
        del self._dead_letter[job_id]
        job = self._jobs.pop(job_id)
        self._counts[job.queue][job.state] -= 1
        return True

    # -- snapshots ------------------------------------------------------------------

    async def load_snapshot(self, key: str) -> dict[str, Any] | None:
        state = self._snapshots.get(key)
        return dict(state) if state is not None else None

    async def save_snapshot(self, key: str, state: dict[str, Any]) -> None:
        self._snapshots[key] = dict(state)
        self._snapshot_versions[key] = self._snapshot_versions.get(key, 0) + 1

    async def load_snapshot_versioned(self, key: str) -> tuple[dict[str, Any], int] | None:
        state = self._snapshots.get(key)
        return (dict(state), self._snapshot_versions[key]) if state is not None else None

    async def save_snapshot_if(
        self,
        key: str,
        state: dict[str, Any],
        expected_version: int | None,
        *,
        events: Sequence[dict[str, Any]] = (),
    ) -> int | None:
        if self._snapshot_versions.get(key) != expected_version:
            return None
        await self.save_snapshot(key, state)
        for event in events:
            self._outbox.append(event["id"], (None, None, (event,)))
        return self._snapshot_versions[key]

    async def list_snapshots(self, prefix: str) -> dict[str, dict[str, Any]]:
        return {key: dict(v) for key, v in self._snapshots.items() if key.startswith(prefix)}

    async def delete_snapshot(self, key: str) -> bool:
        self._snapshot_versions.pop(key, None)
        return self._snapshots.pop(key, None) is not None

    # -- events -----------------------------------------------------------------------

    async def read_events(self, query: EventFilter) -> list[dict[str, Any]]:
        return self._outbox.read(query)

    async def reset(self) -> None:
        self._clear()
