"""The Redis backend, assembled: :class:`RedisBackend` (see the package docstring)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ...core import Job, OJSError
from ..assembly import AssembledBackend
from ..base import EVERY_CAPABILITY, Deduplicated, JobQuery, RateLimit
from ..outbox import EVENT_RETENTION
from .connection import DEFAULT_PREFIX, RedisConnection
from .events import RedisEventLog
from .jobs import RedisJobs
from .snapshots import RedisSnapshots


class RedisBackend(AssembledBackend):
    """Every part on one :class:`RedisConnection`: :class:`RedisJobs` (job store, ready
    queue, timers, dead letter), :class:`RedisSnapshots` and :class:`RedisEventLog`."""

    name = "redis"
    capabilities = EVERY_CAPABILITY
    needs_asyncio = False

    def __init__(
        self,
        url: str | None = None,
        *,
        prefix: str = DEFAULT_PREFIX,
        event_retention: int = EVENT_RETENTION,
        socket_timeout: float | None = 5.0,
        connect_timeout: float = 2.0,
    ) -> None:
        connection = RedisConnection(
            url, prefix=prefix, socket_timeout=socket_timeout, connect_timeout=connect_timeout
        )
        self.connection = connection
        self._jobs_part = jobs = RedisJobs(connection, event_retention)
        super().__init__(
            name=self.name,
            capabilities=self.capabilities,
            needs_asyncio=connection.needs_asyncio,
            lifetime=connection,
            jobs=jobs,
            ready=jobs,
            timers=jobs,
            dead_letter=jobs,
            snapshots=RedisSnapshots(connection, event_retention),
            events=RedisEventLog(connection),
        )

    @property
    def url(self) -> str:
        return self.connection.url

    @property
    def prefix(self) -> str:
        return self.connection.prefix

    async def watch_ready(self, notify: Callable[[str], None]) -> None:
        """:class:`~ojs_actors.backends.base.ReadyNotices`, from :class:`RedisJobs`."""
        await self._jobs_part.watch_ready(notify)

    async def list_jobs(self, query: JobQuery) -> tuple[list[Job], int]:
        """:class:`~ojs_actors.backends.base.JobListing`, from :class:`RedisJobs` (a scan)."""
        return await self._jobs_part.list_jobs(query)

    async def delete_jobs(self, jobs: Sequence[tuple[str, int]]) -> list[bool]:
        """:class:`~ojs_actors.backends.base.JobDeletion`, from :class:`RedisJobs`."""
        return await self._jobs_part.delete_jobs(jobs)

    async def insert_and_claim(
        self,
        jobs: Sequence[Job],
        queue: str,
        count: int,
        now: int,
        worker_id: str | None,
        visibility_ms: int | None,
        *,
        rate: RateLimit | None = None,
    ) -> tuple[list[Job | Deduplicated | OJSError], list[Job], list[Job]]:
        """:class:`~ojs_actors.backends.base.InsertAndClaim`, from :class:`RedisJobs`."""
        return await self._jobs_part.insert_and_claim(
            jobs, queue, count, now, worker_id, visibility_ms, rate=rate
        )

    async def update_and_claim(
        self,
        updates: Sequence[tuple[Job, int]],
        queue: str,
        count: int,
        now: int,
        worker_id: str | None,
        visibility_ms: int | None,
        *,
        rate: RateLimit | None = None,
    ) -> tuple[list[bool], list[Job], list[Job]]:
        """:class:`~ojs_actors.backends.base.UpdateAndClaim`, from :class:`RedisJobs`."""
        return await self._jobs_part.update_and_claim(
            updates, queue, count, now, worker_id, visibility_ms, rate=rate
        )
