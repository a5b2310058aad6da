"""A worker: a registry's handlers in a worker group until asked to stop, as ``ojs-actors
worker`` runs them.

The first stop request (SIGTERM or SIGINT in a worker process) stops the group
gracefully: no more fetches, claimed jobs not started yet handed back, running handlers
given the grace period; a second one stops it at once (running handlers cancelled and
failed with ``ShutdownError``, retryable). Either way every outcome is stored before
:func:`work_until_stopped` returns.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

import trio

from ..backends import Backend
from ..system import Settings, System, WorkerGroup, WorkerGroupStats, open_system
from ._registry import JobRegistry

log = logging.getLogger("ojs_actors.worker")


@dataclass(frozen=True, slots=True)
class WorkerOptions:
    """How a worker runs its registry (see :meth:`System.worker_group` for each)."""

    queues: Sequence[str] = ()
    """The queues to fetch from, in order; empty: the registry's."""
    concurrency: int = 16
    batch_size: int = 100
    grace_period: float = 30.0
    worker_id: str | None = None
    """Default: ``<host name>-<process id>``."""
    visibility_timeout_ms: int | None = None
    """The lease of claimed jobs (renewed while they run); default: each job's own. A
    worker that dies (SIGKILL) leaves its jobs leased until it runs out."""


@dataclass(slots=True)
class WorkerReport:
    """How a worker ended."""

    worker_id: str
    stats: WorkerGroupStats = field(default_factory=WorkerGroupStats)
    reason: str = ""
    """The first stop request (e.g. ``SIGTERM``)."""
    at_once: bool = False
    """A second request stopped it without waiting for running handlers."""
    seconds: float = 0.0


def default_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


async def work_until_stopped(
    system: System,
    registry: JobRegistry,
    stops: AsyncIterator[str],
    options: WorkerOptions = WorkerOptions(),
    *,
    task_status: trio.TaskStatus[WorkerGroup] = trio.TASK_STATUS_IGNORED,
) -> WorkerReport:
    """Run ``registry``'s handlers on ``system`` until ``stops`` yields a reason (or ends):
    then stop gracefully, or at once on a second reason."""
    queues = list(options.queues or registry.queues)
    report = WorkerReport(options.worker_id or default_worker_id())
    started = trio.current_time()
    with trio.CancelScope() as at_once:
        async with trio.open_nursery() as watching:
            async with registry.worker_group(
                system,
                queues,
                concurrency=options.concurrency,
                batch_size=options.batch_size,
                worker_id=report.worker_id,
                visibility_timeout_ms=options.visibility_timeout_ms,
                grace_period=options.grace_period,
            ) as group:
                report.stats = group.stats
                log.info(
                    "worker %s started: backend %s, queues %s, concurrency %d, batch size %d, "
                    "job types %s",
                    report.worker_id,
                    system.backend.name,
                    ",".join(queues),
                    options.concurrency,
                    options.batch_size,
                    ",".join(registry.types),
                )
                task_status.started(group)
                report.reason = await anext(stops, "end of stop requests")
                log.info(
                    "worker %s: %s, stopping: no more fetches, running handlers get up to "
                    "%g s, %d jobs in hand (%s again to stop at once)",
                    report.worker_id,
                    report.reason,
                    options.grace_period,
                    group.in_hand,
                    report.reason,
                )
                watching.start_soon(_stop_at_once_on_request, stops, at_once, report)
            watching.cancel_scope.cancel()
    report.seconds = trio.current_time() - started
    stats = report.stats
    log.info(
        "worker %s stopped (%s%s) after %.1f s: claimed %d, completed %d, failed %d, "
        "requeued %d, interrupted %d, settle errors %d",
        report.worker_id,
        report.reason,
        ", at once" if report.at_once else "",
        report.seconds,
        stats.claimed,
        stats.completed,
        stats.failed,
        stats.requeued,
        stats.interrupted,
        stats.settle_errors,
    )
    return report


async def _stop_at_once_on_request(
    stops: AsyncIterator[str], at_once: trio.CancelScope, report: WorkerReport
) -> None:
    reason = await anext(stops, None)
    if reason is None:
        return
    log.warning("worker %s: %s again, stopping at once", report.worker_id, reason)
    report.at_once = True
    at_once.cancel()


class SignalNames:
    """The names of the signals a ``trio.open_signal_receiver`` receives (``SIGTERM``)."""

    def __init__(self, received: AsyncIterator[int]) -> None:
        self._received = received

    def __aiter__(self) -> SignalNames:
        return self

    async def __anext__(self) -> str:
        return signal.Signals(await anext(self._received)).name


async def run_worker(
    registry: JobRegistry,
    backend: Backend,
    options: WorkerOptions = WorkerOptions(),
    *,
    settings: Settings | None = None,
) -> WorkerReport:
    """A worker process's life: open the system over ``backend``, work until SIGTERM or
    SIGINT (twice: at once), close the system. Must run in the main thread."""
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as received:
        async with open_system(backend, settings=settings) as system:
            return await work_until_stopped(system, registry, SignalNames(received), options)


__all__ = [
    "SignalNames", "WorkerOptions", "WorkerReport", "default_worker_id", "run_worker",
    "work_until_stopped",
]  # fmt: skip
