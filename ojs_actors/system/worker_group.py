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
* the **settler** (:mod:`.worker_outcomes`) sends outcomes back in batches:
  everything that finished while the previous batch was being stored goes in the
  next one, as one ask per queue (the QueueActor applies it in one backend write);
  outcomes of the first queue's jobs still waiting when the fetcher claims go along
  with its claim instead, which the QueueActor then stores and claims in one step
  (one round trip where the backend can);
* the **lease keeper** (:mod:`.worker_leases`) extends the lease of every job in
  hand once half of its visibility timeout has passed, so long handlers keep their jobs.

Outcomes: the handler's return value is the result (``None``: no result); an
exception is a failed attempt with ``type`` = the exception's class name and
``message`` = ``str(exc)``, and the job's retry policy decides retry or discard
(but :class:`~.worker_outcomes.RateLimitExceeded`, the downstream's rate limit, pauses the
job's key and reschedules it unspent: :mod:`.rate_limit_pause`).
A job whose type has no handler in the group fails with ``type``
``UnknownJobType`` and ``retryable: false`` (ojs-errors §8.3: an unrecognised
condition is not retried), so it is discarded, or dead-lettered if its policy says
``on_exhaustion: "dead_letter"``; a queue's jobs should all have handlers in the
groups that fetch it.

A handler reaches its job's context through
:func:`~ojs_actors.system.job_context.current_job` (a context variable the runner sets):
it reports progress and saves or reads its checkpoint there, so a retried attempt
resumes where the last one stopped.

Leaving the block stops the group (ojs-graceful-shutdown §5): no more fetches,
claimed jobs not started yet are handed back unspent (nack with ``requeue``),
running handlers get up to ``grace_period`` seconds to finish, those still running
then are cancelled and fail with type ``ShutdownError`` (retryable), and every
outcome is stored before the block returns.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager, nullcontext
from functools import partial

import trio

from ..core import Job, OJSError, lifecycle, new_id, parse_queue_name
from ..core.version_routes import routes_of
from . import tracing
from .job_context import JobContext, JobServices, running_job
from .signals import IdleClaim, wait_any
from .tenancy import acting_as, check_client_queue, parse_tenant, shard_of
from .transitions import fail_with
from .worker_leases import LeaseKeeper
from .worker_outcomes import (
    Handler,
    Settler,
    WorkerGroupStats,
    ack_transition,
    error_report,
    interrupted_report,
    unknown_type_report,
)
from .worker_side import WorkerSide

log = logging.getLogger("ojs_actors.worker_group")


class WorkerGroup:
    def __init__(
        self,
        worker_side: WorkerSide,
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
        services: JobServices | None = None,
        tenant: str | None = None,
        versions: Mapping[str, str] | None = None,
    ) -> None:
        """Claims through ``worker_side`` (use :meth:`System.worker_group`).
        ``queues`` are tried in order; ``handlers`` map job types to handlers.

        ``concurrency``: handlers running at once. ``batch_size``: jobs claimed per
        fetch, done whenever fewer than ``concurrency`` claimed jobs wait for a runner
        (so about ``batch_size + 2 * concurrency`` jobs are in hand, leased, at most). ``visibility_timeout_ms``: the lease of claimed jobs (default: each
        job's own, 1800 s unless set at enqueue). ``grace_period``: how long a stop
        lets running handlers finish (ojs-graceful-shutdown's default, 30 s).
        ``heartbeat_interval``: the longest the lease keeper sleeps. ``on_settled``: told
        of the jobs (as stored: completed, retryable, discarded, available again) after
        each batch of outcomes is stored; must not wait. ``services``: what handlers reach
        through :func:`~ojs_actors.system.job_context.current_job` (progress, checkpoints).
        ``tenant``: the group works for that tenant only (ojs-multi-tenancy), its jobs of
        ``queues``, and acts for it (:func:`~.tenancy.acting_as`: jobs its handlers
        enqueue are the tenant's); without it, a shared group takes every tenant's jobs.
        ``versions``: job type -> the version range its handler takes (ojs-job-versioning
        §8.1, e.g. ``">=1.0 <3.0"``); the group is handed no job outside it."""
        if not queues:
            raise ValueError("a worker group needs at least one queue")
        for queue in queues:
            check_client_queue(parse_queue_name(queue, "queues[]"), "queues[]")
        if concurrency < 1 or batch_size < 1:
            raise ValueError("concurrency and batch_size must be at least 1")
        for job_type, handler in handlers.items():
            if not callable(handler):
                raise TypeError(f"the handler of {job_type!r} is not callable")
        if grace_period < 0 or heartbeat_interval <= 0:
            raise ValueError("grace_period must be >= 0 and heartbeat_interval > 0")
        self.worker_side = worker_side
        self.queues = list(queues)
        self.tenant = None if tenant is None else parse_tenant(tenant, "tenant")
        self._physical = [shard_of(queue, self.tenant) for queue in queues]
        """The queues the group's jobs are in (the tenant's own, :mod:`.tenancy`)."""
        self.handlers = dict(handlers)
        self.concurrency = concurrency
        self.batch_size = batch_size
        self.worker_id = worker_id or f"group-{new_id()}"
        self.visibility_timeout_ms = visibility_timeout_ms
        self.routes = routes_of(versions)
        self.grace_period = grace_period
        self.services = services
        self.stats = WorkerGroupStats()
        self._lease_keeper = LeaseKeeper(
            worker_side,
            self.worker_id,
            visibility_timeout_ms=visibility_timeout_ms,
            heartbeat_interval=heartbeat_interval,
        )
        leases = self._lease_keeper.leases
        self._settler = Settler(
            worker_side, self.worker_id, self.stats, leases, on_settled, self.routes
        )

        self._ready: deque[Job] = deque()
        """Claimed, waiting for a runner."""
        self._running: dict[int, Job] = {}
        """Each busy runner's job, by runner number (a job whose lease ran out may be
        claimed again while its first run goes on: ids are not unique here)."""
        self._quiet = False
        self._runner_lot = trio.lowlevel.ParkingLot()
        self._fetcher_lot = trio.lowlevel.ParkingLot()
        self._fetch_wait: trio.CancelScope | None = None
        self._fetcher_done = trio.Event()
        self._runners_idle = trio.Event()
        self._runners_scope = trio.CancelScope()
        self._runners_done = trio.Event()
        self._nursery: trio.Nursery | None = None

    @property
    def in_hand(self) -> int:
        """Jobs claimed by this group whose outcome is not stored yet."""
        return len(self._lease_keeper.leases)

    # -- lifecycle -------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run until :meth:`stop` ends it (use :meth:`System.worker_group` instead)."""
        with acting_as(self.tenant) if self.tenant is not None else nullcontext():
            await self._run(task_status)

    async def _run(self, task_status: trio.TaskStatus[None]) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self._settler.run)
            nursery.start_soon(self._lease_keeper.run)
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
                await self._settler.settle_pending()
            if self._nursery is not None:
                self._nursery.cancel_scope.cancel()

    def _hand_back_unstarted(self) -> None:
        while self._ready:
            self._settler.finish(self._ready.popleft(), lifecycle.requeue)
            self.stats.requeued += 1

    def _fail_interrupted(self) -> None:
        report = interrupted_report(self.grace_period)
        for job in self._running.values():
            self._settler.finish(job, fail_with(report))
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
                ready = [self.worker_side.signals.ready_event(queue) for queue in self._physical]
                try:
                    # Shielded: a claim cancelled in flight would leave its jobs leased to
                    # nobody until their visibility timeout.
                    with trio.CancelScope(shield=True):
                        jobs = await self._claim()
                except OJSError as error:  # backend away, actor restarting: not our crash
                    log.warning("worker group %s: fetch failed: %s", self.worker_id, error)
                    await self._wait_for_work(trio.sleep_forever)
                    continue
                if jobs:
                    self._take(jobs)
                else:
                    await self._wait_idle(ready)
        finally:
            self._fetcher_done.set()

    async def _claim(self) -> list[Job]:
        """Up to ``batch_size`` jobs, from the queues in order. Outcomes of the first
        queue's jobs waiting to be stored go along with its claim (settle of the last
        batch and claim of the next in one QueueActor step), unless the settler is
        storing a batch already."""
        side = self.worker_side
        first, rest = self._physical[0], self.queues[1:]
        jobs = await self._settler.settle_with_claim(
            first, self.batch_size, self.visibility_timeout_ms
        )
        if jobs is None:
            return await side.fetch(
                self.queues,
                self.batch_size,
                worker_id=self.worker_id,
                visibility_timeout_ms=self.visibility_timeout_ms,
                routes=self.routes,
            )
        if len(jobs) < self.batch_size and rest:
            try:
                jobs = jobs + await side.fetch(
                    rest,
                    self.batch_size - len(jobs),
                    worker_id=self.worker_id,
                    visibility_timeout_ms=self.visibility_timeout_ms,
                    routes=self.routes,
                )
            except OJSError:
                if not jobs:
                    raise
                # keep the first queue's jobs; the next fetch tries the others again
        return jobs

    async def _wait_for_work(self, waiter: Callable[[], Awaitable[object]]) -> None:
        """``waiter``, bounded by the poll interval and ended early by a stop."""
        with trio.move_on_after(self.worker_side.settings.poll_interval) as scope:
            self._fetch_wait = scope
            if not self._quiet:
                await waiter()
        self._fetch_wait = None

    async def _wait_idle(self, ready: list[trio.Event]) -> None:
        """Wait for work, offering a claim on each queue meanwhile: a QueueActor of this
        process that stores jobs for it claims for us in the same round trip and hands
        them over (:meth:`_handed`)."""
        signals = self.worker_side.signals
        offer = (self.worker_id, self.batch_size, self.visibility_timeout_ms, self._handed)
        claims = [(queue, IdleClaim(*offer, self.routes)) for queue in self._physical]
        for queue, claim in claims:
            signals.add_idle_claim(queue, claim)
        try:
            # Jobs just handed back (outside ``versions``) may send a wake-up: the poll only.
            poll_only = self.worker_side.take_handed_back(self.worker_id)
            await self._wait_for_work(trio.sleep_forever if poll_only else partial(wait_any, ready))
        finally:
            for queue, claim in claims:
                signals.remove_idle_claim(queue, claim)

    def _handed(self, jobs: list[Job]) -> bool:
        """Jobs a QueueActor claimed for this group; ``False`` once it stops taking any."""
        if self._quiet:
            return False
        if tracing.current is not None:
            tracing.current.handed(jobs, self.worker_id)
        self._take(jobs)
        return True

    def _take(self, jobs: list[Job]) -> None:
        self.stats.claimed += len(jobs)
        self._ready.extend(jobs)
        self._lease_keeper.track(jobs)
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
        finish = self._settler.finish
        services = self.services
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
                finish(job, fail_with(unknown_type_report(job, handlers)))
                self.stats.failed += 1
                continue
            running[number] = job
            span = None if tracing.current is None else tracing.current.process(job, self.worker_id)
            context = None if services is None else running_job.set(JobContext(job, services))
            try:
                result = await (handler(job) if span is None else span.run(handler))
            except Exception as error:
                transition = fail_with(error_report(error))
                self.stats.failed += 1
            else:
                transition = ack_transition(result)
            finally:
                if context is not None:
                    running_job.reset(context)
            running.pop(number, None)  # gone if a stop gave up on it meanwhile
            if span is not None:
                span.finished()
            finish(job, transition)


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
