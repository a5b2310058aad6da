"""Where workflows are found, and how long finished ones are kept.

A workflow's record ``workflow:<id>`` stays after the workflow finished (settled:
terminal, with no job left to hear from), so that ``GET /ojs/v1/workflows/{id}``
answers, for ``Settings.workflow_retention``; then it is deleted. Two indexes, themselves
snapshots, keep start-up and deletion from reading every workflow ever run:

* ``workflow-running:<id>``, written before the record and deleted once the workflow is
  settled and filed as finished. Start-up resumes the workflows it lists.
* ``workflow-finished-<bucket>:<id>``, written when the workflow settles, in the bucket
  of the minute it did (its record's ``finished_at``). The sweep lists only buckets past
  retention. The bucket is in the key's first segment (before ``:``) because a backend
  may index keys by it (Redis does), so that listing one bucket reads no other.

``workflow-retention:cursor`` holds the first bucket not swept yet. Every process sharing
the backend sweeps: deletes are idempotent, and the cursor moves on by compare-and-set.
The sweep leaves a bucket's worth of margin, and a workflow found past retention when it
is filed (a crash left it in the running index) is deleted there and then, so nothing is
filed into a bucket already swept unless clocks differ by more than a minute. A deleted
workflow stays deleted: a late notice of one of its jobs finds no record and is ignored,
and a stale actor's compare-and-set write fails.

A store without a cursor (new, reset, or written before these indexes existed) is
indexed once, from every workflow record in it, when the cursor is created.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import trio

from ..backends import Snapshots
from ..core import BackendUnavailable
from ..core.workflow import SNAPSHOT_PREFIX, Workflow, snapshot_key
from .clock import Clock

RUNNING_PREFIX = "workflow-running:"
CURSOR_KEY = "workflow-retention:cursor"
BUCKET_MS = 60_000
"""The finished index's granularity, also the sweep's period and its safety margin."""
SWEEP_BATCH = 512
"""The most steps (a bucket listed, a workflow deleted) one sweep call takes."""
CREATE_GRACE_MS = 60_000
"""How long a running-index entry without a record may be a create still in progress."""

log = logging.getLogger("ojs_actors.workflows")


def running_key(workflow_id: str) -> str:
    return f"{RUNNING_PREFIX}{workflow_id}"


def finished_prefix(bucket: int) -> str:
    return f"workflow-finished-{bucket}:"


@dataclass(frozen=True, slots=True)
class WorkflowIndex:
    backend: Snapshots
    clock: Clock
    retention_ms: int
    _creating: set[str] = field(default_factory=set, init=False, repr=False)
    """Workflows whose running entry this process is writing before their record."""

    async def create(self, workflow: Workflow) -> None:
        """Store a new workflow; indexed as running first, so start-up always finds it."""
        self._creating.add(workflow.id)
        try:
            await self._mark_running(workflow)
            await self.backend.save_snapshot(snapshot_key(workflow.id), workflow.to_record())
        finally:
            self._creating.discard(workflow.id)

    async def file(self, workflow: Workflow) -> int | None:
        """Move a settled workflow from the running index to the finished one, or delete
        it if it is past retention already. Returns the bucket it went to, if any."""
        now = self.clock()
        finished_at = workflow.finished_at or workflow.completed_at or now
        bucket = finished_at // BUCKET_MS
        marker = f"{finished_prefix(bucket)}{workflow.id}"
        expired = finished_at + self.retention_ms <= now
        if expired:
            await self._delete(workflow.id, marker)
        else:
            await self.backend.save_snapshot(marker, {"finished_at": finished_at})
        await self.backend.delete_snapshot(running_key(workflow.id))
        return None if expired else bucket

    async def drop_orphan(self, workflow_id: str) -> None:
        """The workflow has no record (deleted, or its create failed): drop its running
        entry, unless it is recent enough to be a create still writing the record."""
        entry = await self.backend.load_snapshot(running_key(workflow_id))
        if entry is not None and entry.get("created_at", 0) + CREATE_GRACE_MS <= self.clock():
            await self.backend.delete_snapshot(running_key(workflow_id))

    async def running_ids(self) -> list[str]:
        """The workflows to resume at start-up (but those being created here, which their
        creation starts once their record is written)."""
        await self._cursor()
        entries = await self.backend.list_snapshots(RUNNING_PREFIX)
        ids = (key.removeprefix(RUNNING_PREFIX) for key in entries)
        return [workflow_id for workflow_id in ids if workflow_id not in self._creating]

    async def sweep(self) -> bool:
        """Delete finished workflows past retention, oldest bucket first, in at most
        :data:`SWEEP_BATCH` steps; ``True`` if more are due already."""
        start, version = await self._cursor()
        end = (self.clock() - self.retention_ms) // BUCKET_MS - 1  # one bucket of margin
        bucket, budget = start, SWEEP_BATCH
        while bucket < end and budget > 0:
            prefix = finished_prefix(bucket)
            markers = list(await self.backend.list_snapshots(prefix))
            budget -= 1
            for marker in markers[:budget]:
                await self._delete(marker.removeprefix(prefix), marker)
            if len(markers) > budget:
                break  # the rest of this bucket next time
            budget -= len(markers)
            bucket += 1
        if bucket > start:
            moved = await self.backend.save_snapshot_if(CURSOR_KEY, {"bucket": bucket}, version)
            if moved is None:
                return False  # another process swept meanwhile: look again next time
        return bucket < end

    async def sweep_forever(self) -> None:
        while True:
            await trio.sleep(BUCKET_MS / 1000)
            try:
                while await self.sweep():
                    pass
            except BackendUnavailable as error:  # an outage is no crash: sweep next time
                log.warning("sweeping finished workflows: %s", error)

    async def _mark_running(self, workflow: Workflow) -> None:
        entry = {"created_at": workflow.created_at}
        await self.backend.save_snapshot(running_key(workflow.id), entry)

    async def _delete(self, workflow_id: str, marker: str) -> None:
        await self.backend.delete_snapshot(snapshot_key(workflow_id))
        await self.backend.delete_snapshot(marker)

    async def _cursor(self) -> tuple[int, int]:
        """The first bucket not swept yet, and the cursor's version."""
        while True:
            found = await self.backend.load_snapshot_versioned(CURSOR_KEY)
            if found is not None:
                return int(found[0]["bucket"]), found[1]
            first = await self._index_all()
            version = await self.backend.save_snapshot_if(CURSOR_KEY, {"bucket": first}, None)
            if version is not None:
                return first, version

    async def _index_all(self) -> int:
        """Index every workflow record; the first bucket the sweep needs to look at."""
        first = (self.clock() - self.retention_ms) // BUCKET_MS
        for record in (await self.backend.list_snapshots(SNAPSHOT_PREFIX)).values():
            workflow = Workflow.from_record(record)
            if not workflow.settled:
                await self._mark_running(workflow)
            elif (bucket := await self.file(workflow)) is not None:
                first = min(first, bucket)
        return first


__all__ = ["WorkflowIndex"]
