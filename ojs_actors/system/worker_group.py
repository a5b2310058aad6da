"""In-process worker groups: registered handlers run on claimed jobs, no HTTP in between.

    async with system.worker_group(["default"], {"report.build": build_report}) as group:
        ...  # handlers run while the block is open

A group is four kinds of task in one nursery:

* the **fetcher** claims ``batch_size`` jobs at a time whenever fewer than
  ``concurrency`` claimed jobs wait for a runner, and otherwise sleeps on the
  queues' ready signals (looking again every ``poll_interval`` for work stored by
  other processes sharing the backend);
* ``concurrency`` **runners** take claimed jobs in claim order and await their
  handlers;
* the **settler** sends outcomes back in batches: everything that finished while
  the previous batch was being stored goes in the next one, as one ask per queue
  (the QueueActor applies it in one backend write);
* the **lease keeper** extends the lease of every job in hand once half of its
  visibility timeout has passed, so long handlers keep their jobs.

Outcomes: the handler's return value is the result (``None``: no result); an
exception is a failed attempt with ``type`` = the exception's class name and
``message`` = ``str(exc)``, and the job's retry policy decides retry or discard.
A job whose type has no handler in the group fails with ``type``
``UnknownJobType`` and ``retryable: false`` (ojs-errors §8.3: an unrecognised
condition is not retried), so it is discarded, or dead-lettered if its policy says
``on_exhaustion: "dead_letter"``; a queue's jobs should all have handlers in the
groups that fetch it.

Leaving the block stops the group (ojs-graceful-shutdown §5): no more fetches,
claimed jobs not started yet are handed back unspent (nack with ``requeue``),
running handlers get up to ``grace_period`` seconds to finish, those still running
then are cancelled and fail with type ``ShutdownError`` (retryable), and every
outcome is stored before the block returns.
"""

from __future__ import annotations

import json
import logging
import math
import traceback
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

import trio

from ..core import (
    BackendUnavailable,
    Job,
    OJSError,
    ServiceRestarting,
    lifecycle,
    new_id,
    parse_queue_name,
)
from .queue_actor import Transition, ack_with, fail_with
from .signals import wait_any

if TYPE_CHECKING:
    from .system import System

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


class WorkerGroup:
    def __init__(
        self,
        system: System,
        queues: Sequence[str],
        handlers: Mapping[str, Handler],
        *,
        concurrency: int = 16,
        batch_size: int = 100,
        worker_id: str | None = None,
        visibility_timeout_ms: int | None = None,
        grace_period: float = 30.0,
        heartbeat_interval: float = 30.0,
        on_settled: Callable[[Sequence[Job]], None] | None = None,
    ) -> None:
        """``queues`` are tried in order; ``handlers`` map job types to handlers.

        ``concurrency``: handlers running at once. ``batch_size``: jobs claimed per
        fetch, done whenever fewer than ``concurrency`` claimed jobs wait for a runner
        (so about ``batch_size + 2 * concurrency`` jobs are in hand, leased, at most). ``visibility_timeout_ms``: the lease of claimed jobs (default: each
        job's own, 1800 s unless set at enqueue). ``grace_period``: how long a stop
        lets running handlers finish (ojs-graceful-shutdown's default, 30 s).
        ``heartbeat_interval``: the longest the lease keeper sleeps. ``on_settled``: told
        of the jobs (as stored: completed, retryable, discarded, available again) after
        each batch of outcomes is stored; must not wait."""
        if not queues:
            raise ValueError("a worker group needs at least one queue")
        for queue in queues:
            parse_queue_name(queue, "queues[]")
        if concurrency < 1 or batch_size < 1:
            raise ValueError("concurrency and batch_size must be at least 1")
        for job_type, handler in handlers.items():
            if not callable(handler):
                raise TypeError(f"the handler of {job_type!r} is not callable")
        if grace_period < 0 or heartbeat_interval <= 0:
            raise ValueError("grace_period must be >= 0 and heartbeat_interval > 0")
        self.system = system
        self.queues = list(queues)
        self.handlers = dict(handlers)
        self.concurrency = concurrency
        self.batch_size = batch_size
        self.worker_id = worker_id or f"group-{new_id()}"
        self.visibility_timeout_ms = visibility_timeout_ms
        self.grace_period = grace_period
        self.heartbeat_interval = heartbeat_interval
        self.on_settled = on_settled
        self.stats = WorkerGroupStats()

        self._ready: deque[Job] = deque()
        """Claimed, waiting for a runner."""
        self._running: dict[int, Job] = {}
        """Each busy runner's job, by runner number (a job whose lease ran out may be
        claimed again while its first run goes on: ids are not unique here)."""
        self._finished: list[tuple[Job, Transition]] = []
        """Outcomes waiting for the settler."""
        self._leases: dict[str, tuple[float, int]] = {}
        """Every job in hand (claimed, outcome not stored yet): its lease deadline (ms;
        infinite once renewing failed) and the visibility timeout a renewal grants."""
        self._quiet = False
        self._runner_lot = trio.lowlevel.ParkingLot()
        self._fetcher_lot = trio.lowlevel.ParkingLot()
        self._fetch_wait: trio.CancelScope | None = None
        self._fetcher_done = trio.Event()
        self._runners_idle = trio.Event()
        self._runners_scope = trio.CancelScope()
        self._runners_done = trio.Event()
        self._settle_wake = trio.Event()
        self._settle_lock = trio.Lock()
        self._keeper_wake = trio.Event()
        self._keeper_wakes_at = math.inf
        self._nursery: trio.Nursery | None = None

    @property
    def in_hand(self) -> int:
        """Jobs claimed by this group whose outcome is not stored yet."""
        return len(self._leases)

    # -- lifecycle -------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run until :meth:`stop` ends it (use :meth:`System.worker_group` instead)."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self._settle_loop)
            nursery.start_soon(self._keep_leases)
            nursery.start_soon(self._run_runners)
            nursery.start_soon(self._fetch_loop)
            task_status.started()

    async def stop(self) -> None:
        """Quiet, drain (up to ``grace_period``), stop; every outcome stored on return."""
        try:
            self._quiet = True
            if self._fetch_wait is not None:
                self._fetch_wait.cancel()
            self._fetcher_lot.unpark_all()
            await self._fetcher_done.wait()  # a claim in flight lands in _ready first
            self._runner_lot.unpark_all()
            self._hand_back_unstarted()
            with trio.move_on_after(self.grace_period):
                await self._runners_idle.wait()
            self._runners_scope.cancel()
            await self._runners_done.wait()
        finally:  # also when cancelled: hand back and store what we can, then end
            self._runners_scope.cancel()
            with trio.CancelScope(shield=True):
                self._hand_back_unstarted()
                self._fail_interrupted()
                await self._settle_pending()
            if self._nursery is not None:
                self._nursery.cancel_scope.cancel()

    def _hand_back_unstarted(self) -> None:
        while self._ready:
            self._finish(self._ready.popleft(), lifecycle.requeue)
            self.stats.requeued += 1

    def _fail_interrupted(self) -> None:
        report = {
            "code": "handler_error",
            "type": "ShutdownError",
            "message": f"The worker group stopped; the handler was still running after the "
            f"{self.grace_period:g} s grace period.",
            "retryable": True,
        }
        for job in self._running.values():
            self._finish(job, fail_with(report))
            self.stats.interrupted += 1
        self._running.clear()

    # -- fetching ---------------------------------------------------------------------

    async def _fetch_loop(self) -> None:
        try:
            while not self._quiet:
                if len(self._ready) >= self.concurrency:
                    await self._fetcher_lot.park()  # a runner unparks us when it runs low
                    continue
                # Taken before the claim, so work stored meanwhile is not waited for.
                ready = [self.system.signals.ready_event(queue) for queue in self.queues]
                try:
                    # Shielded: a claim cancelled in flight would leave its jobs leased to
                    # nobody until their visibility timeout.
                    with trio.CancelScope(shield=True):
                        jobs = await self.system.fetch(
                            self.queues,
                            self.batch_size,
                            worker_id=self.worker_id,
                            visibility_timeout_ms=self.visibility_timeout_ms,
                        )
                except OJSError as error:  # backend away, actor restarting: not our crash
                    log.warning("worker group %s: fetch failed: %s", self.worker_id, error)
                    await self._wait_for_work(trio.sleep_forever)
                    continue
                if jobs:
                    self._take(jobs)
                else:
                    await self._wait_for_work(partial(wait_any, ready))
        finally:
            self._fetcher_done.set()

    async def _wait_for_work(self, waiter: Callable[[], Awaitable[object]]) -> None:
        """``waiter``, bounded by the poll interval and ended early by a stop."""
        with trio.move_on_after(self.system.settings.poll_interval) as scope:
            self._fetch_wait = scope
            if not self._quiet:
                await waiter()
        self._fetch_wait = None

    def _take(self, jobs: list[Job]) -> None:
        self.stats.claimed += len(jobs)
        self._ready.extend(jobs)
        leases = self._leases
        override = self.visibility_timeout_ms
        first_renewal = math.inf
        for job in jobs:
            deadline = job.lease_expires_at or 0
            visibility = override or job.visibility_timeout_ms
            leases[job.id] = (deadline, visibility)
            first_renewal = min(first_renewal, deadline - visibility / 2)
        if first_renewal < self._keeper_wakes_at:
            self._keeper_wake.set()
        self._runner_lot.unpark(count=len(jobs))

    # -- running ------------------------------------------------------------------------

    async def _run_runners(self) -> None:
        try:
            with self._runners_scope:
                async with trio.open_nursery() as nursery:
                    for number in range(self.concurrency):
                        nursery.start_soon(self._runner, number)
        finally:
            self._runners_done.set()

    async def _runner(self, number: int) -> None:
        ready = self._ready
        running = self._running
        handlers = self.handlers
        while True:
            if not ready or self._quiet:
                if self._quiet and not running:
                    self._runners_idle.set()
                await self._runner_lot.park()
                continue
            job = ready.popleft()
            if len(ready) < self.concurrency and self._fetcher_lot:
                self._fetcher_lot.unpark_all()
            handler = handlers.get(job.type)
            if handler is None:
                self._finish(job, fail_with(_unknown_type_report(job, handlers)))
                self.stats.failed += 1
                continue
            running[number] = job
            try:
                result = await handler(job)
            except Exception as error:
                transition = fail_with(_error_report(error))
                self.stats.failed += 1
            else:
                transition = _ack_transition(result)
            running.pop(number, None)  # gone if a stop gave up on it meanwhile
            self._finish(job, transition)

    def _finish(self, job: Job, transition: Transition) -> None:
        finished = self._finished
        finished.append((job, transition))
        if len(finished) == 1:
            self._settle_wake.set()

    # -- settling ----------------------------------------------------------------------

    async def _settle_loop(self) -> None:
        while True:
            await self._settle_wake.wait()
            self._settle_wake = trio.Event()
            await self._settle_pending()

    async def _settle_pending(self) -> None:
        async with self._settle_lock:
            for attempt in range(SETTLE_ATTEMPTS):
                batch, self._finished = self._finished, []
                if not batch:
                    return
                if attempt:
                    await trio.sleep(0.1 * 2**attempt)
                with trio.CancelScope(shield=True):  # a lost answer would rerun the jobs
                    answers = await self.system._apply_many(
                        [(job.id, transition) for job, transition in batch]
                    )
                again = self._count(batch, answers, last_try=attempt == SETTLE_ATTEMPTS - 1)
                if not again:
                    return
                self._finished = again + self._finished

    def _count(
        self,
        batch: list[tuple[Job, Transition]],
        answers: Sequence[Job | OJSError],
        *,
        last_try: bool,
    ) -> list[tuple[Job, Transition]]:
        """Book the answers; returns the outcomes worth another try."""
        leases = self._leases
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
        if self.on_settled is not None:
            self.on_settled([answer for answer in answers if isinstance(answer, Job)])
        return again

    # -- leases ---------------------------------------------------------------------------

    async def _keep_leases(self) -> None:
        """Renew each lease in hand once half its visibility timeout has passed."""
        clock = self.system.clock
        while True:
            now = clock()
            due: list[str] = []
            wake_at = now + self.heartbeat_interval * 1000
            for job_id, (deadline, visibility) in self._leases.items():
                renew_at = deadline - visibility / 2
                if renew_at <= now:
                    due.append(job_id)
                elif renew_at < wake_at:
                    wake_at = renew_at
            if due:
                try:
                    await self._renew(due)
                    continue
                except OJSError as error:
                    log.warning("worker group %s: lease renewal failed: %s", self.worker_id, error)
                    wake_at = now + self.system.settings.poll_interval * 1000
            self._keeper_wakes_at = wake_at
            with trio.move_on_after((wake_at - now) / 1000):
                await self._keeper_wake.wait()
            self._keeper_wake = trio.Event()
            self._keeper_wakes_at = math.inf

    async def _renew(self, job_ids: list[str]) -> None:
        answers = await self.system.extend_leases(
            job_ids, visibility_timeout_ms=self.visibility_timeout_ms
        )
        leases = self._leases
        for job_id, answer in zip(job_ids, answers, strict=True):
            lease = leases.get(job_id)
            if lease is None:
                continue  # settled while the renewal was in flight
            if isinstance(answer, Job) and answer.lease_expires_at is not None:
                leases[job_id] = (answer.lease_expires_at, lease[1])
            else:  # no longer ours (cancelled, or its lease ran out): stop renewing it
                log.info(
                    "worker group %s: lease of job %s lost: %s", self.worker_id, job_id, answer
                )
                leases[job_id] = (math.inf, lease[1])


# -- outcomes ---------------------------------------------------------------------------


def _ack_transition(result: Any) -> Transition:
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


def _error_report(error: Exception) -> dict[str, Any]:
    return {
        "code": "handler_error",
        "type": type(error).__name__,
        "message": str(error),
        "backtrace": traceback.format_tb(error.__traceback__)[-20:],
    }


def _unknown_type_report(job: Job, handlers: Mapping[str, Handler]) -> dict[str, Any]:
    return {
        "code": "handler_error",
        "type": "UnknownJobType",
        "message": f"No handler for job type '{job.type}' in this worker group "
        f"(it handles: {', '.join(sorted(handlers)) or 'nothing'}).",
        "retryable": False,
    }


@asynccontextmanager
async def run_worker_group(group: WorkerGroup) -> AsyncIterator[WorkerGroup]:
    """Run ``group`` while the context is open; stop it on the way out."""
    async with trio.open_nursery() as nursery:
        await nursery.start(group.run)
        try:
            yield group
        finally:
            await group.stop()


__all__ = ["Handler", "WorkerGroup", "WorkerGroupStats", "run_worker_group"]
