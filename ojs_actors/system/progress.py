"""Job progress (ojs-progress), the system's side: recording a report on the job, reading
it back. The model and its rules are :mod:`ojs_actors.core.progress`.

A report is a transition applied by the job's QueueActor like any other (compare-and-set
on the job record), so it works on every backend and extends the lease in the same write
(§6.3). Its ``job.progress`` event comes out of the outbox entry of that write.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import trio

from ..backends import Backend
from ..core import Conflict, Job, State, format_ms, lifecycle
from ..core.progress import ProgressUpdate, updated, view
from .routing import QueueRouter
from .signals import Signals
from .transitions import job_not_found

FOLLOW_POLL_INTERVAL = 1.0
"""Longest a follower waits before reading the job again (changes stored through other
processes sharing the backend; those of this process wake it at once)."""
HEARTBEAT_INTERVAL = 15.0
"""A follower yields ``("heartbeat", None)`` after this long without news."""
ENDINGS = {State.COMPLETED: "completed", State.DISCARDED: "failed", State.CANCELLED: "cancelled"}
"""The last message of a follower, by the job's terminal state (ojs-progress §7.2)."""


class Progress:
    def __init__(self, router: QueueRouter, backend: Backend, signals: Signals) -> None:
        self._router = router
        self._backend = backend
        self._signals = signals

    async def report(self, job_id: str, update: ProgressUpdate) -> tuple[Job, bool]:
        """Record ``update`` on the active job ``job_id``. Returns the job as it now is
        and whether the update was recorded: an update for a job that is not active is
        ignored, not refused (§6.1: it may have finished meanwhile). Raises
        :class:`~ojs_actors.core.NotFound` if there is no such job."""
        try:
            job = await self._router.apply(job_id, lambda job, now: reported(job, update, now))
        except Conflict:
            return await self.job(job_id), False
        return job, True

    async def job(self, job_id: str) -> Job:
        [job] = await self._backend.get_jobs([job_id])
        if job is None:
            raise job_not_found(job_id)
        return job

    async def read(self, job_id: str) -> dict[str, Any]:
        """``GET /ojs/v1/jobs/{id}/progress``'s body (§7.1): null fields if none was reported."""
        return progress_body(await self.job(job_id))

    async def follow(
        self, job: Job, *, poll_interval: float = FOLLOW_POLL_INTERVAL
    ) -> AsyncIterator[tuple[str, dict[str, Any] | None]]:
        """The job's progress as it changes (§7.2), from ``job`` (as just read) on:
        ``("progress", body)`` for each new report seen, ``("heartbeat", None)`` when
        quiet, and last ``("completed" | "failed" | "cancelled", body)`` once the job is
        terminal. Reports closer together than the poll are seen as the latest of them."""
        shown_at: str | None = None
        quiet_since = trio.current_time()
        while True:
            body = progress_body(job)
            if body["updated_at"] is not None and body["updated_at"] != shown_at:
                shown_at = body["updated_at"]
                quiet_since = trio.current_time()
                yield "progress", body
            ending = ENDINGS.get(job.state)
            if ending is not None:
                final = {**body, "updated_at": format_ms(job.changed_at or job.created_at)}
                if job.state is State.COMPLETED:
                    final["progress"] = 1.0  # §8.1
                yield ending, final
                return
            if trio.current_time() - quiet_since >= HEARTBEAT_INTERVAL:
                quiet_since = trio.current_time()
                yield "heartbeat", None
            changed = self._signals.appended_event()
            with trio.move_on_after(poll_interval):
                await changed.wait()
            job = await self.job(job.id)


def reported(job: Job, update: ProgressUpdate, now: int) -> Job:
    """The transition of a report: the job with ``update`` recorded and its lease extended
    by its visibility timeout (§6.3, as a heartbeat without one does). Raises
    :class:`Conflict` unless the job is active (the caller ignores it, §6.1)."""
    if job.state is not State.ACTIVE:
        raise Conflict(
            f"Job {job.id} is '{job.state.value}', not active: progress is not recorded.",
            details={"job_id": job.id, "current_state": job.state.value},
        )
    nxt = lifecycle.extend_lease(job, now, None)
    nxt.progress = updated(
        job.progress,
        update,
        attempt=job.attempt,
        started_at=job.started_at,
        version=nxt.version,
        now=now,
    )
    return nxt


def progress_body(job: Job) -> dict[str, Any]:
    """The job's progress with its id and state; ``null`` fields if none was reported."""
    shown = view(job.progress, job.state, job.attempt, job.started_at) or {
        "progress": None,
        "message": None,
        "data": None,
        "updated_at": None,
    }
    return {"job_id": job.id, "state": job.state.value, **shown}


__all__ = ["Progress", "progress_body"]
