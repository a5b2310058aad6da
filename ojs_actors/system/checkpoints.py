"""Durable execution checkpoints (ojs-durable-execution): a job's last saved state, kept
through the backend's Snapshots part under ``checkpoint:<job id>``.

A checkpoint is kept apart from the job record on purpose: it may be up to 1 MB
(§9.1), and the record is written on every move of the job. Saves are compare-and-set
on the snapshot's version, so concurrent saves from several processes each get their
own sequence number (§5.1, DUR-008); a ``job.checkpointed`` event goes into the outbox
in the same atomic step (DUR-R003). A delete forgets the key, so the next save starts
at sequence 1 again.

What the conformance suite expects, where it departs from the document (see README):
a job that is not terminal may be checkpointed whatever its state (the suite saves
checkpoints of jobs never fetched; §4.2 says active only), and a checkpoint outlives
the job's terminal state, read-only (EXT-DUR-020 reads it after the ack; §5.2 says it
is deleted then). Saving for a terminal job is refused with 409 (DUR-007).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import trio

from ..backends import Backend
from ..core import Conflict, InvalidRequest, Job, NotFound, PayloadTooLarge, format_ms
from ..core.events import envelope, new_event_id
from .clock import Clock
from .transitions import job_not_found

KEY_PREFIX = "checkpoint:"
MAX_CHECKPOINT_BYTES = 1_048_576
"""§9.1: checkpoints are capped at 1 MB (the serialised ``state``)."""
SAVE_ATTEMPTS = 8
"""Compare-and-set tries of one save against concurrent saves of the same job."""
RESUME_LOOKUPS = 16
"""Checkpoints looked up at once for the jobs of one fetch."""


@dataclass(frozen=True, slots=True)
class Checkpoint:
    job_id: str
    state: Any
    sequence: int
    created_at: int

    def to_record(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "state": self.state,
            "sequence": self.sequence,
            "created_at": self.created_at,
        }

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Checkpoint:
        return cls(record["job_id"], record.get("state"), record["sequence"], record["created_at"])

    def to_wire(self) -> dict[str, Any]:
        """The checkpoint as ``GET /ojs/v1/jobs/{id}/checkpoint`` shows it."""
        return {
            "job_id": self.job_id,
            "state": self.state,
            "sequence": self.sequence,
            "created_at": format_ms(self.created_at),
        }

    def resume_wire(self) -> dict[str, Any]:
        """The ``checkpoint`` member of a re-fetched job's envelope (§6.1)."""
        return {"state": self.state, "sequence": self.sequence}


def key_of(job_id: str) -> str:
    return f"{KEY_PREFIX}{job_id}"


def check_state(state: Any) -> None:
    """Refuse a state that is no JSON value or is over the size limit (413)."""
    try:
        size = len(json.dumps(state, allow_nan=False).encode())
    except (TypeError, ValueError):
        raise InvalidRequest(
            "The checkpoint 'state' must be a JSON value.", details={"field": "state"}
        ) from None
    if size > MAX_CHECKPOINT_BYTES:
        raise PayloadTooLarge(
            f"A checkpoint's state may be at most {MAX_CHECKPOINT_BYTES} bytes as JSON.",
            details={"field": "state", "size": size, "max_bytes": MAX_CHECKPOINT_BYTES},
        )


class Checkpoints:
    def __init__(self, backend: Backend, clock: Clock) -> None:
        self._backend = backend
        self._clock = clock

    async def _job(self, job_id: str) -> Job:
        [job] = await self._backend.get_jobs([job_id])
        if job is None:
            raise job_not_found(job_id)
        return job

    async def save(self, job_id: str, state: Any, *, worker_id: str | None = None) -> Checkpoint:
        """Save ``state`` as the job's checkpoint, replacing the last one; its sequence is
        one more than the last one's. Refused (409) for a terminal job, or, if
        ``worker_id`` is given, for an active job leased to another worker (§4.2)."""
        check_state(state)
        job = await self._job(job_id)
        if job.state.terminal:
            raise Conflict(
                f"Job {job_id} is '{job.state.value}': a terminal job takes no checkpoints.",
                details={"job_id": job_id, "current_state": job.state.value},
            )
        if worker_id is not None and job.worker_id not in (None, worker_id):
            raise Conflict(
                f"Job {job_id} is leased to another worker.",
                details={"job_id": job_id, "worker_id": worker_id},
            )
        key = key_of(job_id)
        for _ in range(SAVE_ATTEMPTS):
            found = await self._backend.load_snapshot_versioned(key)
            version = None if found is None else found[1]
            sequence = 1 if found is None else int(found[0].get("sequence", 0)) + 1
            checkpoint = Checkpoint(job_id, state, sequence, self._clock())
            event = envelope(
                "job.checkpointed",
                job_id,
                checkpoint.created_at,
                {
                    "job_id": job_id,
                    "job_type": job.type,
                    "queue": job.queue,
                    "attempt": job.attempt,
                    "sequence": sequence,
                },
                new_event_id(),
            )
            saved = await self._backend.save_snapshot_if(
                key, checkpoint.to_record(), version, events=[event]
            )
            if saved is not None:
                return checkpoint
        raise Conflict(
            f"Checkpoint saves of job {job_id} kept colliding; try again.",
            details={"job_id": job_id},
        )

    async def get(self, job_id: str) -> Checkpoint:
        """The job's last checkpoint; 404 if the job or its checkpoint does not exist."""
        found = await self.find(job_id)
        if found is None:
            await self._job(job_id)  # the job's own 404 first
            raise NotFound(
                f"Job '{job_id}' has no checkpoint.",
                details={"resource_type": "checkpoint", "resource_id": job_id},
            )
        return found

    async def find(self, job_id: str) -> Checkpoint | None:
        """The job's last checkpoint, if it has one (the job is not looked at)."""
        record = await self._backend.load_snapshot(key_of(job_id))
        return None if record is None else Checkpoint.from_record(record)

    async def delete(self, job_id: str) -> bool:
        """Forget the job's checkpoint; ``False`` if it had none (not an error: deletes
        are idempotent, EXT-DUR-007). 404 if there is no such job."""
        if await self._backend.delete_snapshot(key_of(job_id)):
            return True
        await self._job(job_id)
        return False

    async def for_jobs(self, jobs: Sequence[Job]) -> dict[str, Checkpoint]:
        """The checkpoints of the jobs just claimed that resume an earlier attempt (§6.1:
        re-fetched after a failure or a lost lease), by job id. First attempts are not
        looked up, so a fetch of fresh work costs nothing more."""
        resumed = [job.id for job in jobs if job.attempt > 1]
        found: dict[str, Checkpoint] = {}
        if not resumed:
            return found
        limiter = trio.CapacityLimiter(RESUME_LOOKUPS)

        async def look_up(job_id: str) -> None:
            async with limiter:
                checkpoint = await self.find(job_id)
            if checkpoint is not None:
                found[job_id] = checkpoint

        async with trio.open_nursery() as nursery:
            for job_id in resumed:
                nursery.start_soon(look_up, job_id)
        return found


def parse_state(body: dict[str, Any]) -> Any:
    """The ``state`` of a save request (any JSON value, null included; §4.1)."""
    if "state" not in body:
        raise InvalidRequest(
            "'state' is required: the checkpoint's state, a JSON value.", details={"field": "state"}
        )
    return body["state"]


__all__ = ["Checkpoint", "Checkpoints", "MAX_CHECKPOINT_BYTES", "check_state", "parse_state"]
