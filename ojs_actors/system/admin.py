"""Administration and queries in a System: single jobs, queues, the dead letter queue, the
event log, health, the admin API's statistics and bulk operations (ojs-admin-api), and
the reset the conformance suites use."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from ..backends import Backend, EventFilter, EventSink, JobDeletion, JobListing, JobQuery
from ..core import (
    Conflict,
    Job,
    NotFound,
    OJSError,
    State,
    Unsupported,
    lifecycle,
    parse_queue_name,
)
from .checkpoints import key_of as checkpoint_key
from .clock import Clock
from .crons import Crons
from .event_relay import EventRelay
from .job_filter import JobFilter
from .outbox_gate import OutboxGate
from .queue_messages import Describe, SetPaused
from .routing import QueueRouter
from .throughput import Throughput
from .transitions import dead_letter_not_found, job_not_found, retry_from_dead_letter
from .worker_registry import WorkerRecord, WorkerRegistry
from .workflows import Workflows

SCAN_PAGE = 500
"""Dead letter jobs read per backend call when a filter needs a scan."""
BULK_CHUNK = 500
"""Jobs per batch of transitions of a bulk operation."""
LIST_PAGE = 500
"""Jobs per listing call when a queue purge collects its jobs."""


@dataclass(slots=True)
class Stats:
    """Deployment-wide figures (ojs-admin-api §10.1)."""

    queues: int
    workers: int
    jobs: dict[State, int]
    processed_per_minute: float
    failed_per_minute: float
    uptime_seconds: int


@dataclass(slots=True)
class BulkOutcome:
    """What a bulk operation did (ojs-admin-api §8.1)."""

    matched: int = 0
    succeeded: int = 0
    errors: list[tuple[str, str]] = field(default_factory=list)
    """``(job id, why)`` of each matched job the operation could not change."""


class Admin:
    def __init__(
        self,
        backend: Backend,
        clock: Clock,
        router: QueueRouter,
        *,
        workflows: Workflows,
        crons: Crons,
        workers: WorkerRegistry,
        gate: OutboxGate,
        relay: Callable[[], EventRelay | None],
    ) -> None:
        """``workflows``, ``crons`` and ``workers`` are the parts :meth:`reset` clears;
        ``gate`` and ``relay`` (the running event relay, if any) report in :meth:`health`."""
        self._gate = gate
        self._relay = relay
        self.backend = backend
        self.clock = clock
        self.started_at = clock()
        self._router = router
        self._workflows = workflows
        self._crons = crons
        self._workers = workers
        self._throughput = Throughput()

    # -- jobs ---------------------------------------------------------------------------

    async def info(self, job_id: str) -> Job:
        [job] = await self.backend.get_jobs([job_id])
        if job is None:
            raise job_not_found(job_id)
        return job

    async def cancel(self, job_id: str) -> Job:
        return await self._router.apply(job_id, lifecycle.cancel)

    async def activate(self, job_id: str) -> Job:
        return await self._router.apply(job_id, lifecycle.activate)

    async def retry_job(self, job_id: str) -> Job:
        """Re-enqueue a discarded job, dead-lettered or not, with fresh attempts."""
        return await self._router.apply(job_id, _manual_retry)

    async def list_jobs(self, query: JobQuery) -> tuple[list[Job], int]:
        """A page of every job ``query`` takes, and their total (ojs-admin-api §7.1), from
        the backend's optional :class:`~ojs_actors.backends.JobListing` part;
        :class:`Unsupported` on a backend without it."""
        if not isinstance(self.backend, JobListing):
            raise Unsupported(
                f"The {self.backend.name} backend cannot list jobs (GET /ojs/v1/admin/jobs): "
                "open a job by its id, or list a queue's dead letter jobs.",
                details={"backend": self.backend.name, "feature": "job-listing"},
            )
        return await self.backend.list_jobs(query)

    async def purge_queue(
        self, queue: str, states: Sequence[State], older_than: int | None = None
    ) -> int:
        """Delete for good the jobs of ``queue`` in ``states`` (finished states only),
        those finished before ``older_than`` if given (ojs-admin-api §6.5); how many went.
        Each goes by compare-and-set: a job changed meanwhile (retried, say) stays."""
        backend = self.backend
        if not isinstance(backend, JobListing) or not isinstance(backend, JobDeletion):
            raise Unsupported(
                f"The {backend.name} backend cannot purge a queue's jobs.",
                details={"backend": backend.name, "feature": "queue-purge"},
            )
        name = parse_queue_name(queue)
        doomed: list[tuple[str, int]] = []
        for state in states:
            query = JobQuery(queue=name, state=state, descending=False, limit=LIST_PAGE)
            page, total = await backend.list_jobs(query)
            for number in range(1, total // LIST_PAGE + 2):  # the pages there were at first
                doomed.extend(
                    (job.id, job.version)
                    for job in page
                    if older_than is None or _finished_at(job) < older_than
                )
                if len(page) < LIST_PAGE:
                    break
                offset = number * LIST_PAGE
                page, _ = await backend.list_jobs(replace(query, offset=offset))
        purged = 0
        for start in range(0, len(doomed), BULK_CHUNK):
            chunk = doomed[start : start + BULK_CHUNK]
            for (job_id, _), deleted in zip(chunk, await backend.delete_jobs(chunk), strict=True):
                if deleted:
                    self._router.forget(job_id)
                    await backend.delete_snapshot(checkpoint_key(job_id))  # gone with its job
                    purged += 1
        return purged

    # -- queues -------------------------------------------------------------------------

    async def list_queues(self) -> list[dict[str, Any]]:
        records = await self.backend.list_snapshots("queue:")
        return sorted(records.values(), key=lambda record: record["name"])

    async def queue_info(self, queue: str) -> dict[str, Any]:
        record: dict[str, Any] = await self._router.ask(parse_queue_name(queue), Describe())
        return record

    async def set_paused(self, queue: str, paused: bool) -> dict[str, Any]:
        """Pause (no fetches; enqueues still accepted) or resume a queue."""
        record: dict[str, Any] = await self._router.ask(parse_queue_name(queue), SetPaused(paused))
        return record

    async def queue_stats(self, queue: str) -> tuple[dict[str, Any], dict[State, int]]:
        """The queue's record and its job counts by state."""
        record = await self.queue_info(queue)
        return record, await self.backend.count_jobs(queue)

    async def known_queue_stats(self, queue: str) -> tuple[dict[str, Any], dict[State, int]]:
        """:meth:`queue_stats` of a queue that exists; :class:`NotFound` for any other
        (which :meth:`queue_stats` would start)."""
        name = parse_queue_name(queue)
        if await self.backend.load_snapshot(f"queue:{name}") is None:
            raise NotFound(
                f"Queue '{name}' not found.",
                details={"resource_type": "queue", "resource_id": name},
            )
        return await self.queue_stats(name)

    async def all_queue_stats(self) -> list[tuple[dict[str, Any], dict[State, int]]]:
        """Every queue's record and job counts, by name."""
        return [
            (record, await self.backend.count_jobs(record["name"]))
            for record in await self.list_queues()
        ]

    # -- statistics and workers -----------------------------------------------------------

    async def stats(self) -> Stats:
        queues = await self.all_queue_stats()
        totals = dict.fromkeys(State, 0)
        for _, counts in queues:
            for state, count in counts.items():
                totals[state] += count
        failed = totals[State.DISCARDED]
        processed, failed_rate = self._throughput.observe(
            self.clock(), totals[State.COMPLETED] + failed, failed
        )
        return Stats(
            queues=len(queues),
            workers=len(self._workers),
            jobs=totals,
            processed_per_minute=processed,
            failed_per_minute=failed_rate,
            uptime_seconds=(self.clock() - self.started_at) // 1000,
        )

    def workers(self) -> list[tuple[str, WorkerRecord]]:
        """The workers this process has heard from, most recently seen first."""
        return self._workers.records()[::-1]

    # -- dead letter --------------------------------------------------------------------

    async def dead_letter(
        self, queue: str | None = None, limit: int = 50, offset: int = 0
    ) -> tuple[list[Job], int]:
        return await self.backend.list_dead_letter(queue, limit, offset)

    async def retry_dead_letter(self, job_id: str) -> Job:
        try:
            return await self._router.apply(job_id, retry_from_dead_letter)
        except NotFound as error:
            raise dead_letter_not_found(job_id) from error

    async def delete_dead_letter(self, job_id: str) -> None:
        if not await self.backend.delete_dead_letter(job_id):
            raise dead_letter_not_found(job_id)
        self._router.forget(job_id)
        await self.backend.delete_snapshot(checkpoint_key(job_id))  # gone with its job

    async def dead_letter_matching(
        self, query: JobFilter, limit: int, offset: int
    ) -> tuple[list[Job], int]:
        """A page of the dead letter jobs ``query`` takes, oldest first, and their total."""
        if not query.beyond_queue:
            return await self.backend.list_dead_letter(query.queue, limit, offset)
        found = await self._scan_dead_letter(query)
        return found[offset : offset + limit], len(found)

    async def dead_letter_stats(self) -> dict[str, Any]:
        """Total, per queue, and the discard times of the oldest and newest job."""
        first, total = await self.backend.list_dead_letter(None, 1, 0)
        by_queue: dict[str, int] = {}
        for record in await self.list_queues():
            _, count = await self.backend.list_dead_letter(record["name"], 1, 0)
            if count:
                by_queue[record["name"]] = count
        last = (await self.backend.list_dead_letter(None, 1, total - 1))[0] if total else []
        return {
            "total": total,
            "by_queue": by_queue,
            "oldest": first[0] if first else None,
            "newest": last[0] if last else None,
        }

    async def retry_dead_letter_matching(self, query: JobFilter) -> BulkOutcome:
        """Retry every dead letter job ``query`` takes (ojs-admin-api §8.1)."""
        jobs = await self._scan_dead_letter(query)
        outcome = BulkOutcome(matched=len(jobs))
        for start in range(0, len(jobs), BULK_CHUNK):
            chunk = jobs[start : start + BULK_CHUNK]
            results = await self._router.apply_many(
                [(job.id, retry_from_dead_letter) for job in chunk]
            )
            for job, result in zip(chunk, results, strict=True):
                if isinstance(result, OJSError):
                    outcome.errors.append((job.id, result.message))
                else:
                    outcome.succeeded += 1
        return outcome

    async def purge_dead_letter(self, query: JobFilter) -> BulkOutcome:
        """Delete every dead letter job ``query`` takes, for good (ojs-admin-api §11.3)."""
        jobs = await self._scan_dead_letter(query)
        outcome = BulkOutcome(matched=len(jobs))
        for job in jobs:
            if await self.backend.delete_dead_letter(job.id):
                self._router.forget(job.id)
                await self.backend.delete_snapshot(checkpoint_key(job.id))
                outcome.succeeded += 1
            else:  # retried or deleted meanwhile
                outcome.errors.append((job.id, "no longer in the dead letter queue"))
        return outcome

    async def _scan_dead_letter(self, query: JobFilter) -> list[Job]:
        found: list[Job] = []
        offset = 0
        while True:
            page, total = await self.backend.list_dead_letter(query.queue, SCAN_PAGE, offset)
            found.extend(job for job in page if query.matches(job))
            offset += len(page)
            if not page or offset >= total:
                return found

    # -- events and health --------------------------------------------------------------

    async def events(self, query: EventFilter) -> list[dict[str, Any]]:
        return await self.backend.read_events(query)

    async def health(self) -> dict[str, Any]:
        uptime = (self.clock() - self.started_at) // 1000
        try:
            latency = await self.backend.ping()
        except Exception as error:  # the health report is where backend errors belong
            return {
                "status": "degraded",
                "uptime_seconds": uptime,
                "backend": {
                    "type": self.backend.name,
                    "status": "unhealthy",
                    "error": str(error),
                },
            }
        report: dict[str, Any] = {
            "status": "ok",
            "uptime_seconds": uptime,
            "backend": {"type": self.backend.name, "status": "ok", "latency_ms": latency},
        }
        events = await self.relay_status()
        if events is not None:
            report["events"] = events
            if events["status"] == "full":
                report["status"] = "degraded"
        return report

    async def relay_status(self) -> dict[str, Any] | None:
        """The event relay, if the backend has an event sink: whether this process
        publishes, how far behind the sink is; ``None`` without a sink."""
        if not isinstance(self.backend, EventSink):
            return None
        relay = self._relay()
        report: dict[str, Any] = {
            "sink": self.backend.relay_name,
            "relay": "publishing" if relay is not None and relay.holding else "standby",
            "status": "ok",
        }
        if relay is not None:
            report["published"], report["failures"] = relay.published, relay.failures
            if relay.last_error is not None:
                report["last_error"] = relay.last_error
        bound = await self._gate.backlog()
        if bound is not None:
            backlog, limit = bound
            report["backlog"], report["limit"] = backlog, limit
            if backlog >= limit:
                report["status"] = "full"
            elif relay is not None and relay.last_error is not None:
                report["status"] = "behind"
        return report

    async def reset(self) -> None:
        """Drop every job, queue and event; stop the queue actors (their caches go too)."""
        await self._workflows.stop_all()
        async with self._crons.lock:  # the crons supervisor's registry sync waits
            await self._crons.supervisors.stop_children()
            await self._router.supervisors.stop_children()
            await self.backend.reset()
        self._router.forget_all()
        self._workers.clear()


def _finished_at(job: Job) -> int:
    """When the (finished) job reached its state."""
    stamp = {
        State.COMPLETED: job.completed_at,
        State.CANCELLED: job.cancelled_at,
        State.DISCARDED: job.discarded_at,
    }.get(job.state)
    return stamp if stamp is not None else job.changed_at or job.created_at


def _manual_retry(job: Job, now: int) -> Job:
    if job.state is not State.DISCARDED:
        raise Conflict(
            f"Job '{job.id}' is {job.state.value}: only a discarded job can be retried.",
            details={"job_id": job.id, "state": job.state.value},
        )
    return lifecycle.retry_dead_letter(job, now)


__all__ = ["Admin", "BulkOutcome", "Stats"]
