"""Cron entries in a System (ojs-cron §8): the supervisor of their actors and the API.

``lock`` is held while an entry is registered, changed or deleted, and by the
supervisor while it syncs its actors with the stored entries, so neither undoes
the other's work in progress.
"""

from __future__ import annotations

from typing import Any

import trio

from ..actors import ActorCrashed, ActorRef, ActorStopped, ChildSpec
from ..backends import Backend
from ..core import NotFound, ServiceRestarting
from ..core.cron import parse_cron
from .clock import Clock
from .cron_actor import SNAPSHOT_PREFIX, DescribeCron, JobPort, RegisterCron, SetCronEnabled
from .cron_supervisor import CronSupervisor, cron_child_spec
from .settings import Settings
from .supervision import SupervisorSlot


class Crons:
    def __init__(self, backend: Backend, clock: Clock, settings: Settings, jobs: JobPort) -> None:
        """``jobs``: the job operations the entries' actors use (enqueue, cancel, activate)."""
        self.backend = backend
        self.clock = clock
        self.settings = settings
        self.jobs = jobs
        self.lock = trio.Lock()
        self.supervisors = SupervisorSlot("crons", self._new_supervisor)

    @property
    def supervisor(self) -> CronSupervisor:
        """The supervisor of the entries' actors (a new one after each restart)."""
        return self.supervisors.current

    def _new_supervisor(self) -> CronSupervisor:
        return CronSupervisor(
            self.backend, self._child, lock=self.lock, poll_interval=self.settings.poll_interval
        )

    def _child(self, name: str) -> ChildSpec:
        return cron_child_spec(
            name, self.backend, self.jobs, self.clock, poll_interval=self.settings.poll_interval
        )

    async def register_cron(self, request: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """Register a cron entry, or update the one of that name (upsert, ojs-cron §8.1).
        Returns its record and whether it is new."""
        spec = parse_cron(request, self.clock())
        async with self.lock:
            ref = await self.supervisor.start_child(self._child(spec.name))
            record, created = await self._ask(ref, RegisterCron(spec))
        return record, created

    async def list_crons(self) -> list[dict[str, Any]]:
        records = await self.backend.list_snapshots(SNAPSHOT_PREFIX)
        return sorted(records.values(), key=lambda record: record["name"])

    async def cron_info(self, name: str) -> dict[str, Any]:
        record = await self.backend.load_snapshot(SNAPSHOT_PREFIX + name)
        if record is None:
            raise _cron_not_found(name)
        return record

    async def set_cron_enabled(self, name: str, enabled: bool) -> dict[str, Any]:
        async with self.lock:
            child_id = SNAPSHOT_PREFIX + name
            record: dict[str, Any] | None = None
            if child_id not in self.supervisor and await self.backend.load_snapshot(child_id):
                await self.supervisor.start_child(self._child(name))  # registered elsewhere
            if child_id in self.supervisor:
                record = await self._ask(self.supervisor.ref(child_id), SetCronEnabled(enabled))
        if record is None:
            raise _cron_not_found(name)
        return record

    async def delete_cron(self, name: str) -> dict[str, Any]:
        """Stop the entry's actor and forget it; jobs it enqueued are not touched."""
        async with self.lock:
            child_id = SNAPSHOT_PREFIX + name
            record: dict[str, Any] | None = None
            if child_id in self.supervisor:
                record = await self._ask(self.supervisor.ref(child_id), DescribeCron())
                await self.supervisor.stop_child(child_id)
            record = await self.backend.load_snapshot(child_id) or record
            await self.backend.delete_snapshot(child_id)
        if record is None:
            raise _cron_not_found(name)
        return record

    @staticmethod
    async def _ask(ref: ActorRef, message: Any) -> Any:
        try:
            return await ref.ask(message)
        except (ActorCrashed, ActorStopped) as error:
            raise ServiceRestarting(
                f"The actor of cron entry '{ref.name}' restarted while handling the request.",
                details={"cron": ref.name, "reason": str(error)},
            ) from error


def _cron_not_found(name: str) -> NotFound:
    return NotFound(
        f"Cron entry '{name}' not found.", details={"resource_type": "cron", "resource_id": name}
    )


__all__ = ["Crons"]
