"""Administration and queries in a System: single jobs, queues, the dead letter queue, the
event log, health, and the reset the conformance suites use."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..backends import Backend, EventFilter, EventSink
from ..core import Job, NotFound, State, lifecycle, parse_queue_name
from .clock import Clock
from .crons import Crons
from .event_relay import EventRelay
from .outbox_gate import OutboxGate
from .queue_messages import Describe, SetPaused
from .routing import QueueRouter
from .transitions import dead_letter_not_found, job_not_found, retry_from_dead_letter
from .worker_registry import WorkerRegistry
from .workflows import Workflows


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
                    "status": "disconnected",
                    "error": str(error),
                },
            }
        report: dict[str, Any] = {
            "status": "ok",
            "uptime_seconds": uptime,
            "backend": {"type": self.backend.name, "status": "connected", "latency_ms": latency},
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


__all__ = ["Admin"]
