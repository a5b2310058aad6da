"""A worker group's outcomes: what a handler's return or exception means, and the settler
that stores outcomes in batches (everything that finished while the previous batch was
being stored goes in the next one, as one ask per queue)."""

from __future__ import annotations

import json
import logging
import traceback
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import trio

from ..core import (
    BackendUnavailable,
    Job,
    OJSError,
    ServiceRestarting,
    format_ms,
    parse_timestamp,
)
from ..core.version_routes import VersionRoutes
from . import tracing
from .transitions import Transition, ack_with, fail_with
from .worker_side import WorkerSide

log = logging.getLogger("ojs_actors.worker_group")

Handler = Callable[[Job], Awaitable[Any]]
"""``async def handler(job: Job) -> result``."""

SETTLE_ATTEMPTS = 3
"""Tries for outcomes whose store failed for a passing reason (backend away, actor restart)."""


@dataclass(slots=True)
class WorkerGroupStats:
    claimed: int = 0
    completed: int = 0
    """Acked and stored as completed."""
    failed: int = 0
    """Handler raised (or unknown type): stored as retryable or discarded."""
    requeued: int = 0
    """Claimed but not started when the group stopped: handed back unspent."""
    interrupted: int = 0
    """Still running at the end of the grace period: failed with ``ShutdownError``."""
    settle_errors: int = 0
    """Outcomes the backend refused (e.g. the job was cancelled meanwhile) or that could
    not be stored; such a job's lease expires and the scheduler takes it back."""


class Settler:
    def __init__(
        self,
        worker_side: WorkerSide,
        worker_id: str,
        stats: WorkerGroupStats,
        leases: dict[str, tuple[float, int]],
        on_settled: Callable[[Sequence[Job]], None] | None,
        routes: VersionRoutes | None = None,
    ) -> None:
        """``leases``: the jobs in hand, by id; each leaves once its outcome is stored
        (or refused). ``on_settled`` is told of each batch of jobs stored. ``routes``:
        the group's version declarations, for its claims (:meth:`settle_with_claim`)."""
        self.worker_side = worker_side
        self.worker_id = worker_id
        self.routes = routes
        self.stats = stats
        self.leases = leases
        self.on_settled = on_settled
        self._finished: list[tuple[Job, Transition]] = []
        """Outcomes waiting to be stored."""
        self._wake = trio.Event()
        self._lock = trio.Lock()
        """Held while a batch is being stored (by :meth:`settle_pending`, or by
        :meth:`settle_with_claim` for the fetcher); a free lock is taken, and the batch
        sent, without a pause, so whoever finds it free finds nothing sent."""

    def finish(self, job: Job, transition: Transition) -> None:
        """Queue the outcome of ``job`` for the next batch; never waits."""
        finished = self._finished
        finished.append((job, transition))
        if len(finished) == 1:
            self._wake.set()

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake = trio.Event()
            # One turn for the group's fetcher, woken with us when the runner step that
            # finished these outcomes ran its jobs low: its claim takes them along.
            await trio.lowlevel.checkpoint()
            # The fetcher storing a batch with its claim wakes us again after, if needed.
            if self._finished and not self._lock.locked():
                await self.settle_pending()

    async def settle_with_claim(
        self, queue: str, count: int, visibility_timeout_ms: int | None
    ) -> list[Job] | None:
        """Store the outcomes of ``queue``'s jobs waiting here together with a claim of up
        to ``count`` jobs of ``queue`` (:meth:`WorkerSide.settle_and_claim`: the outcomes
        first, the claim right behind them, one QueueActor step); the jobs claimed.
        ``None``, with nothing sent, if no such outcome waits or a batch is being stored:
        the caller claims alone. The outcomes' answers are booked as :meth:`settle_pending`
        books them (those that failed for a passing reason go back to the settler, which
        tries them again); then the claim's error, if it failed, is raised."""
        if self._lock.locked():
            return None
        batch = [outcome for outcome in self._finished if outcome[0].queue == queue]
        if not batch:
            return None
        self._lock.acquire_nowait()
        try:
            self._finished = [outcome for outcome in self._finished if outcome[0].queue != queue]
            try:
                with trio.CancelScope(shield=True):  # a lost answer would rerun the jobs
                    answers, claimed = await self.worker_side.settle_and_claim(
                        queue,
                        [(job.id, transition) for job, transition in batch],
                        count,
                        worker_id=self.worker_id,
                        visibility_timeout_ms=visibility_timeout_ms,
                        routes=self.routes,
                    )
            except BaseException:
                self._finished = batch + self._finished
                raise
            self._finished = self._count(batch, answers, last_try=False) + self._finished
        finally:
            self._lock.release()
            if self._finished:  # left, put back or finished meanwhile: the settler's now
                self._wake.set()
        if isinstance(claimed, OJSError):
            raise claimed
        return claimed

    async def settle_pending(self) -> None:
        """Store every outcome queued (retrying passing failures a few times)."""
        try:
            self._lock.acquire_nowait()
        except trio.WouldBlock:
            await self._lock.acquire()
        try:
            for attempt in range(SETTLE_ATTEMPTS):
                batch, self._finished = self._finished, []
                if not batch:
                    return
                if attempt:
                    await trio.sleep(0.1 * 2**attempt)
                with trio.CancelScope(shield=True):  # a lost answer would rerun the jobs
                    answers = await self.worker_side.apply_many(
                        [(job.id, transition) for job, transition in batch]
                    )
                again = self._count(batch, answers, last_try=attempt == SETTLE_ATTEMPTS - 1)
                if not again:
                    return
                self._finished = again + self._finished
        finally:
            self._lock.release()

    def _count(
        self,
        batch: list[tuple[Job, Transition]],
        answers: Sequence[Job | OJSError],
        *,
        last_try: bool,
    ) -> list[tuple[Job, Transition]]:
        """Book the answers; returns the outcomes worth another try."""
        leases = self.leases
        again: list[tuple[Job, Transition]] = []
        completed = 0
        for item, answer in zip(batch, answers, strict=True):
            if not isinstance(answer, OJSError):
                leases.pop(answer.id, None)
                completed += answer.state.value == "completed"
                continue
            if isinstance(answer, BackendUnavailable | ServiceRestarting) and not last_try:
                again.append(item)
                continue
            leases.pop(item[0].id, None)
            self.stats.settle_errors += 1
            log.warning("worker group %s: job %s: %s", self.worker_id, item[0].id, answer)
        self.stats.completed += completed
        if tracing.current is not None:
            tracing.current.settled(batch, answers, again)
        if self.on_settled is not None:
            self.on_settled([answer for answer in answers if isinstance(answer, Job)])
        return again


# -- what a handler's run means ---------------------------------------------------------


def ack_transition(result: Any) -> Transition:
    """The handler returned ``result``: complete the job with it, if it is JSON."""
    if result is None:
        return ack_with()
    if not _is_json(result):
        return fail_with(
            {
                "code": "handler_error",
                "type": "InvalidResult",
                "message": f"The handler returned a {type(result).__name__}, "
                "which is not JSON-serialisable.",
                "retryable": False,
            }
        )
    return ack_with(result)


def _is_json(value: Any) -> bool:
    if type(value) in (str, int, float, bool):
        return True
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


class RateLimitExceeded(Exception):
    """Raised by a handler whose downstream rate-limited it (e.g. an HTTP 429 with
    ``Retry-After``): the job's rate-limit key (else its queue) is paused until
    ``until`` and the job is tried again then, its attempt unspent (ojs-rate-limiting
    §9). Any exception with a ``rate_limit_until`` attribute (an aware ``datetime`` or
    epoch milliseconds) is taken the same way."""

    def __init__(self, message: str, until: datetime | int) -> None:
        super().__init__(message)
        self.rate_limit_until = until


def error_report(error: Exception) -> dict[str, Any]:
    """The handler raised ``error``: a failed attempt; the retry policy decides."""
    report = {
        "code": "handler_error",
        "type": type(error).__name__,
        "message": str(error),
        "backtrace": traceback.format_tb(error.__traceback__)[-20:],
    }
    until = getattr(error, "rate_limit_until", None)
    if isinstance(until, datetime) and until.tzinfo is not None:
        until = int(until.timestamp() * 1000)
    if isinstance(until, int) and not isinstance(until, bool):
        try:
            report["rate_limit_until"] = format_ms(parse_timestamp(format_ms(until), "until"))
        except (OJSError, ValueError, OverflowError):
            pass  # no time it could mean: an ordinary failure
    return report


def unknown_type_report(job: Job, handlers: Mapping[str, Handler]) -> dict[str, Any]:
    """No handler for the job's type: not retried (ojs-errors §8.3)."""
    return {
        "code": "handler_error",
        "type": "UnknownJobType",
        "message": f"No handler for job type '{job.type}' in this worker group "
        f"(it handles: {', '.join(sorted(handlers)) or 'nothing'}).",
        "retryable": False,
    }


def interrupted_report(grace_period: float) -> dict[str, Any]:
    """Still running when the group's grace period ended: failed, retryable."""
    return {
        "code": "handler_error",
        "type": "ShutdownError",
        "message": f"The worker group stopped; the handler was still running after the "
        f"{grace_period:g} s grace period.",
        "retryable": True,
    }


__all__ = [
    "Handler", "RateLimitExceeded", "Settler", "WorkerGroupStats", "ack_transition", "error_report",
    "interrupted_report", "unknown_type_report",
]  # fmt: skip
