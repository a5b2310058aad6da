"""The ``crons`` supervisor: a CronActor for every entry stored in the backend."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import Any

import trio

from ..actors import ActorStopped, ChildSpec, Restart, Strategy, Supervisor
from ..backends import Backend
from ..core import OJSError
from .clock import Clock
from .cron_actor import SNAPSHOT_PREFIX, CronActor, JobPort, RefreshCron
from .supervision import STORE_OUTAGE

log = logging.getLogger("ojs_actors.cron")

CRON_RESTARTS = (10, 5.0)
"""Restart intensity of the ``crons`` supervisor: N restarts within T seconds."""


class CronSupervisor(Supervisor):
    """Supervises the CronActors; each time it starts, it starts one for every ``cron:``
    snapshot in the backend (the registry), so entries survive a restart of the server
    or of this supervisor.

    Every ``poll_interval`` it reads the registry again, for entries registered, changed
    or deleted through another server process on the same backend: it starts actors for
    new entries, stops those whose snapshot is gone and tells those whose snapshot
    changed to look again. ``lock`` is the one the system holds while it registers or
    deletes an entry, so this never stops an actor being registered in this process."""

    def __init__(
        self,
        backend: Backend,
        child_spec: Callable[[str], ChildSpec],
        *,
        lock: trio.Lock | None = None,
        poll_interval: float = 1.0,
    ) -> None:
        restarts, within = CRON_RESTARTS
        super().__init__(
            "crons",
            strategy=Strategy.ONE_FOR_ONE,
            max_restarts=restarts,
            within=within,
            backoff=STORE_OUTAGE,
        )
        self._backend = backend
        self._child_spec = child_spec
        self._lock = lock or trio.Lock()
        self._poll_interval = poll_interval
        self._seen: dict[str, dict[str, Any]] = {}

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        records = await self._backend.list_snapshots(SNAPSHOT_PREFIX)
        self._seen = records
        self._initial.extend(
            self._child_spec(key.removeprefix(SNAPSHOT_PREFIX)) for key in sorted(records)
        )
        await super().run(task_status=task_status)

    async def _supervise(self) -> None:
        assert self._nursery is not None
        self._nursery.start_soon(self._follow)  # cancelled with the children's nursery
        await super()._supervise()

    async def _follow(self) -> None:
        while True:
            await trio.sleep(self._poll_interval)
            try:
                await self.sync()
            except ActorStopped:
                return
            except OJSError as error:
                log.warning("crons: registry not read: %s", error)

    async def sync(self) -> None:
        """Bring the running actors in line with the stored entries (see the class doc)."""
        async with self._lock:
            records = await self._backend.list_snapshots(SNAPSHOT_PREFIX)
            running = {child_id for child_id, _, _ in self.which_children()}
            for key in sorted(running - set(records)):
                await self.stop_child(key)
            for key in sorted(records):
                if key not in running:
                    await self.start_child(self._child_spec(key.removeprefix(SNAPSHOT_PREFIX)))
                elif self._seen.get(key) != records[key]:
                    with contextlib.suppress(ActorStopped):
                        await self.ref(key).tell(RefreshCron())
            self._seen = records


def cron_child_spec(
    name: str, backend: Backend, jobs: JobPort, clock: Clock, *, poll_interval: float
) -> ChildSpec:
    return ChildSpec(
        f"{SNAPSHOT_PREFIX}{name}",
        lambda: CronActor(name, backend, jobs, clock, poll_interval=poll_interval),
        restart=Restart.PERMANENT,
    )


__all__ = ["CRON_RESTARTS", "CronSupervisor", "cron_child_spec"]
