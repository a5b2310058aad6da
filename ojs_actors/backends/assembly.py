"""A whole :class:`~ojs_actors.backends.base.Backend` assembled from separate parts.

:class:`AssembledBackend` answers every protocol call by handing it to the part given
for it: a :class:`Lifetime` (start, close, ping, reset) and one object per data part
(:class:`~ojs_actors.backends.base.JobStore`, :class:`~ojs_actors.backends.base.ReadyQueue`,
:class:`~ojs_actors.backends.base.Timers`, :class:`~ojs_actors.backends.base.DeadLetter`,
:class:`~ojs_actors.backends.base.Snapshots`, :class:`~ojs_actors.backends.base.EventLog`).
One object may serve several parts (Redis's ``RedisJobs`` is the job store, ready queue,
timers and dead letter at once), and a backend can take some parts from another
backend's package as they are, e.g. Redis's job parts with an event log of its own.

Each call is one plain ``async def`` forward, so a subclass or a mixin can still override
any method and reach the part with ``super()``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from ..core import Job, OJSError, State
from .base import (
    Backend,
    Capabilities,
    DeadLetter,
    Deduplicated,
    EventFilter,
    EventLog,
    JobStore,
    RateLimit,
    ReadyQueue,
    Snapshots,
    Timers,
)


class Lifetime(Protocol):
    """What opens and closes the stores behind the parts: the methods of
    :class:`~ojs_actors.backends.base.Lifecycle` (its descriptive attributes are the
    assembly's own)."""

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def ping(self) -> float: ...

    async def reset(self) -> None: ...


class AssembledBackend(Backend):
    """A :class:`~ojs_actors.backends.base.Backend` whose calls go to the parts given."""

    def __init__(
        self,
        *,
        name: str,
        capabilities: Capabilities,
        needs_asyncio: bool,
        lifetime: Lifetime,
        jobs: JobStore,
        ready: ReadyQueue,
        timers: Timers,
        dead_letter: DeadLetter,
        snapshots: Snapshots,
        events: EventLog,
    ) -> None:
        self.name = name
        self.capabilities = capabilities
        self.needs_asyncio = needs_asyncio
        self._lifetime = lifetime
        self._jobs = jobs
        self._ready = ready
        self._timers = timers
        self._dead_letter = dead_letter
        self._snapshots = snapshots
        self._events = events

    # -- Lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        await self._lifetime.start()

    async def close(self) -> None:
        await self._lifetime.close()

    async def ping(self) -> float:
        return await self._lifetime.ping()

    async def reset(self) -> None:
        await self._lifetime.reset()

    # -- JobStore -----------------------------------------------------------------------

    async def insert_jobs(
        self, jobs: Sequence[Job], *, atomic: bool = False
    ) -> list[Job | Deduplicated | OJSError]:
        return await self._jobs.insert_jobs(jobs, atomic=atomic)

    async def get_jobs(self, job_ids: Sequence[str]) -> list[Job | None]:
        return await self._jobs.get_jobs(job_ids)

    async def update_jobs(self, updates: Sequence[tuple[Job, int]]) -> list[bool]:
        return await self._jobs.update_jobs(updates)

    async def count_jobs(self, queue: str) -> dict[State, int]:
        return await self._jobs.count_jobs(queue)

    # -- ReadyQueue ---------------------------------------------------------------------

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
        return await self._ready.claim(queue, count, now, worker_id, visibility_ms, rate=rate)

    # -- Timers -------------------------------------------------------------------------

    async def due_jobs(self, now: int, limit: int) -> list[Job]:
        return await self._timers.due_jobs(now, limit)

    async def next_due_at(self) -> int | None:
        return await self._timers.next_due_at()

    # -- DeadLetter ---------------------------------------------------------------------

    async def list_dead_letter(
        self, queue: str | None, limit: int, offset: int
    ) -> tuple[list[Job], int]:
        return await self._dead_letter.list_dead_letter(queue, limit, offset)

    async def delete_dead_letter(self, job_id: str) -> bool:
        return await self._dead_letter.delete_dead_letter(job_id)

    # -- Snapshots ----------------------------------------------------------------------

    async def load_snapshot(self, key: str) -> dict[str, Any] | None:
        return await self._snapshots.load_snapshot(key)

    async def save_snapshot(self, key: str, state: dict[str, Any]) -> None:
        await self._snapshots.save_snapshot(key, state)

    async def list_snapshots(self, prefix: str) -> dict[str, dict[str, Any]]:
        return await self._snapshots.list_snapshots(prefix)

    async def load_snapshot_versioned(self, key: str) -> tuple[dict[str, Any], int] | None:
        return await self._snapshots.load_snapshot_versioned(key)

    async def save_snapshot_if(
        self,
        key: str,
        state: dict[str, Any],
        expected_version: int | None,
        *,
        events: Sequence[dict[str, Any]] = (),
    ) -> int | None:
        return await self._snapshots.save_snapshot_if(key, state, expected_version, events=events)

    async def delete_snapshot(self, key: str) -> bool:
        return await self._snapshots.delete_snapshot(key)

    # -- EventLog -----------------------------------------------------------------------

    async def read_events(self, query: EventFilter) -> list[dict[str, Any]]:
        return await self._events.read_events(query)
