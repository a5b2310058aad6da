"""What a handler running in a worker group can do about its job: report progress
(ojs-progress §6.1) and save or read its checkpoint (ojs-durable-execution §8).

A handler keeps its plain signature, ``async def handler(job)``; the worker group sets
the running job's :class:`JobContext` for the handler's task (a context variable), so
anything the handler calls can reach it::

    from ojs_actors.library import current_job, report_progress

    async def import_rows(job: Job) -> dict:
        saved = await current_job().last_checkpoint()
        start = saved.state["row"] if saved else 0
        for row in range(start, total):
            ...
            await current_job().checkpoint({"row": row + 1})
            await report_progress((row + 1) / total, message=f"row {row + 1}")
"""

from __future__ import annotations

import logging
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from ..core import Job, OJSError
from ..core.progress import parse_update
from .checkpoints import Checkpoint, Checkpoints, check_state
from .progress import Progress

log = logging.getLogger("ojs_actors.worker_group")


@dataclass(frozen=True, slots=True)
class JobServices:
    """The system parts a :class:`JobContext` calls (one set per worker group)."""

    progress: Progress
    checkpoints: Checkpoints


_NOT_LOADED: Any = object()


class JobContext:
    """The running job and what its handler may do about it."""

    __slots__ = ("_checkpoint", "_services", "job")

    def __init__(self, job: Job, services: JobServices) -> None:
        self.job = job
        self._services = services
        self._checkpoint: Checkpoint | None = _NOT_LOADED

    async def report_progress(
        self,
        progress: float | None = None,
        *,
        message: str | None = None,
        data: dict[str, Any] | None = None,
    ) -> bool:
        """Record the job's progress (``progress`` from 0.0 to 1.0, clamped; a lower value
        than the last keeps the last). It also renews the job's lease. Fire and forget
        (§4): ``False`` if it was not recorded (the job is no longer active, or the
        backend is away: logged), never an exception for that. A report without any of
        the three, or with bad values, raises :class:`~ojs_actors.core.InvalidRequest`."""
        update = parse_update({"progress": progress, "message": message, "data": data})
        try:
            _, recorded = await self._services.progress.report(self.job.id, update)
        except OJSError as error:
            log.warning("job %s: progress not recorded: %s", self.job.id, error)
            return False
        return recorded

    async def checkpoint(self, state: Any) -> Checkpoint:
        """Save ``state`` (any JSON value, at most 1 MB) as the job's checkpoint: a later
        attempt of the job resumes from it. Raises if it was not saved (the job is no longer
        this worker's, or it is over the size limit)."""
        check_state(state)
        saved = await self._services.checkpoints.save(
            self.job.id, state, worker_id=self.job.worker_id
        )
        self._checkpoint = saved
        return saved

    async def last_checkpoint(self) -> Checkpoint | None:
        """The job's checkpoint, saved by an earlier attempt (or this one); ``None`` if it
        has none. Looked up once per run, then kept up to date by :meth:`checkpoint`."""
        if self._checkpoint is _NOT_LOADED:
            self._checkpoint = await self._services.checkpoints.find(self.job.id)
        return self._checkpoint

    async def clear_checkpoint(self) -> None:
        """Forget the job's checkpoint: a later attempt starts from the beginning."""
        await self._services.checkpoints.delete(self.job.id)
        self._checkpoint = None


running_job: ContextVar[JobContext] = ContextVar("ojs_running_job")
"""Set by the worker group's runner for each handler it runs."""


def current_job() -> JobContext:
    """The context of the job whose handler is running in this task; raises
    ``RuntimeError`` outside a worker group's handler."""
    try:
        return running_job.get()
    except LookupError:
        raise RuntimeError(
            "current_job() is only available inside a handler run by a worker group"
        ) from None


async def report_progress(
    progress: float | None = None,
    *,
    message: str | None = None,
    data: dict[str, Any] | None = None,
) -> bool:
    """:meth:`JobContext.report_progress` of the running job (see :func:`current_job`)."""
    return await current_job().report_progress(progress, message=message, data=data)


__all__ = ["JobContext", "JobServices", "current_job", "report_progress", "running_job"]
