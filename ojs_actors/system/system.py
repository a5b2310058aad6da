"""The embedded API: open the actor system inside a trio program.

    async with open_system() as system:
        job = await system.enqueue({"type": "email.send", "args": ["a@example.com"]})
        [claimed] = await system.fetch(["default"], worker_id="w1")
        await system.ack(claimed.id, result={"sent": True})

The HTTP layer is a thin client of exactly this class.
"""

from __future__ import annotations

import logging
import math
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import trio

from ..actors import (
    ActorCrashed,
    ActorRef,
    ActorStopped,
    ChildSpec,
    Restart,
    Strategy,
    Supervisor,
)
from ..backends import Backend, Deduplicated, EventFilter, create_backend
from ..core import (
    NO_RESULT,
    InvalidRequest,
    Job,
    NotFound,
    OJSError,
    ServiceRestarting,
    State,
    lifecycle,
    parse_enqueue,
    parse_queue_name,
)
from ..core.cron import parse_cron
from ..core.workflow import Workflow, WorkflowState, parse_workflow, render, snapshot_key
from ..core.workflow import cancel as cancel_workflow_state
from .clock import Clock, trio_wall_clock
from .cron_actor import SNAPSHOT_PREFIX as CRON_PREFIX
from .cron_actor import (
    CronSupervisor,
    DescribeCron,
    RegisterCron,
    SetCronEnabled,
    cron_child_spec,
)
from .queue_actor import (
    Apply,
    Claim,
    Describe,
    Enqueue,
    EnqueueBatch,
    Hold,
    QueueActor,
    SetPaused,
    Transition,
    extend_lease_by,
    retry_from_dead_letter,
)
from .scheduler import Scheduler
from .settle import Ack, Nack, Outcome, transition_of
from .signals import Signals, wait_any
from .worker_group import Handler, WorkerGroup, run_worker_group
from .worker_registry import WorkerRegistry
from .workflow_actor import (
    CancelWorkflow,
    Notice,
    Wake,
    WorkflowActor,
    WorkflowKeeper,
    WorkflowServices,
    notices_for,
)

log = logging.getLogger("ojs_actors.system")

QUEUE_CACHE_SIZE = 65_536


@dataclass(slots=True)
class Settings:
    poll_interval: float = 1.0
    """How often waiting fetchers and the scheduler look again without a local wake-up
    (what they see of other processes sharing a networked backend)."""
    mailbox_capacity: int = 4096
    queue_restarts: tuple[int, float] = (10, 5.0)
    """Restart intensity of the queue supervisor: N restarts within T seconds."""
    workflow_restarts: tuple[int, float] = (10, 5.0)
    """Restart intensity of the workflows supervisor: N restarts within T seconds."""
    test_hooks: bool = False
    """Conformance-suite hooks: honour ``meta.test_directive`` in heartbeats."""
    worker_idle_timeout: float = 300.0
    """Seconds after a worker's last fetch or heartbeat when this process forgets it,
    with any directive (``set_worker_state``) still waiting for it."""
    max_workers: int = 65_536
    """The most workers remembered at once; past it, the longest silent is forgotten."""


@dataclass(slots=True)
class Heartbeat:
    state: str
    jobs_extended: list[str] = field(default_factory=list)
    jobs_cancelled: list[str] = field(default_factory=list)


class System:
    def __init__(
        self, backend: Backend, *, clock: Clock | None = None, settings: Settings | None = None
    ) -> None:
        self.backend = backend
        self.settings = settings or Settings()
        self.clock = clock or trio_wall_clock()
        self.signals = Signals()
        self.started_at = self.clock()
        self.queues = self._new_queue_supervisor()
        self._workflow_notices, self._workflow_inbox = trio.open_memory_channel[Notice](math.inf)
        self._workflow_services = WorkflowServices(
            backend=self.backend,
            clock=self.clock,
            enqueue=self._enqueue_each,
            cancel_job=self.cancel,
            post=self._workflow_notices.send_nowait,
            actor_of=self.workflow_ref,
            is_running=lambda workflow_id: f"workflow:{workflow_id}" in self.workflows,
            retire=self._retire_workflow,
        )
        self.workflows = self._new_workflow_supervisor()
        self.root = Supervisor(
            "root",
            strategy=Strategy.ONE_FOR_ONE,
            max_restarts=3,
            within=5.0,
            children=[
                ChildSpec("scheduler", self._new_scheduler),
                ChildSpec("queues", self._restart_queue_supervisor),
                ChildSpec("crons", self._restart_cron_supervisor),
                ChildSpec("workflows", self._restart_workflow_supervisor),
            ],
        )
        self._cron_lock = trio.Lock()
        self.crons = self._new_cron_supervisor()
        self._queue_of: OrderedDict[str, str] = OrderedDict()
        self.workers = WorkerRegistry(
            self.clock,
            idle_timeout_ms=int(self.settings.worker_idle_timeout * 1000),
            capacity=self.settings.max_workers,
        )

    def _new_queue_supervisor(self) -> Supervisor:
        restarts, within = self.settings.queue_restarts
        return Supervisor(
            "queues", strategy=Strategy.ONE_FOR_ONE, max_restarts=restarts, within=within
        )

    def _restart_queue_supervisor(self) -> Supervisor:
        """The first start uses the supervisor built in ``__init__``; restarts get a new one."""
        if self.queues.started:
            self.queues = self._new_queue_supervisor()
        return self.queues

    def _new_cron_supervisor(self) -> CronSupervisor:
        return CronSupervisor(
            self.backend,
            self._cron_child,
            lock=self._cron_lock,
            poll_interval=self.settings.poll_interval,
        )

    def _restart_cron_supervisor(self) -> CronSupervisor:
        if self.crons.started:
            self.crons = self._new_cron_supervisor()
        return self.crons

    def _cron_child(self, name: str) -> ChildSpec:
        return cron_child_spec(
            name, self.backend, self, self.clock, poll_interval=self.settings.poll_interval
        )

    def _new_scheduler(self) -> Scheduler:
        return Scheduler(
            self.backend,
            self.clock,
            self.signals,
            poll_interval=self.settings.poll_interval,
            on_change=self._jobs_changed,
        )

    def _new_workflow_supervisor(self) -> Supervisor:
        restarts, within = self.settings.workflow_restarts
        keeper = ChildSpec(
            "keeper",
            lambda: WorkflowKeeper(
                self._workflow_services,
                self._workflow_inbox,
                retry_interval=self.settings.poll_interval,
            ),
        )
        return Supervisor(
            "workflows",
            strategy=Strategy.ONE_FOR_ONE,
            max_restarts=restarts,
            within=within,
            children=[keeper],
        )

    def _restart_workflow_supervisor(self) -> Supervisor:
        if self.workflows.started:
            self.workflows = self._new_workflow_supervisor()
        return self.workflows

    def _jobs_changed(self, changes: Sequence[tuple[State | None, Job]]) -> None:
        """Stored job changes, from the QueueActors and the Scheduler: tell workflows."""
        for notice in notices_for(changes):
            self._workflow_notices.send_nowait(notice)

    # -- routing ----------------------------------------------------------------------

    async def queue_ref(self, queue: str) -> ActorRef:
        """The QueueActor of ``queue``, started (supervised) on first use."""
        child_id = f"queue:{queue}"
        if child_id in self.queues:
            return self.queues.ref(child_id)
        return await self.queues.start_child(
            ChildSpec(
                child_id,
                lambda: QueueActor(
                    queue,
                    self.backend,
                    self.clock,
                    self.signals,
                    on_change=self._jobs_changed,
                    refresh_interval=self.settings.poll_interval,
                ),
                restart=Restart.PERMANENT,
                mailbox_capacity=self.settings.mailbox_capacity,
            )
        )

    async def _ask(self, queue: str, message: Any) -> Any:
        try:
            return await (await self.queue_ref(queue)).ask(message)
        except (ActorCrashed, ActorStopped) as error:
            raise ServiceRestarting(
                f"The actor of queue '{queue}' restarted while handling the request.",
                details={"queue": queue, "reason": str(error)},
            ) from error

    def _remember(self, job: Job) -> None:
        """Cache the job's queue (it never changes), so acks find its actor without a read."""
        queue_of = self._queue_of
        if job.id not in queue_of:
            queue_of[job.id] = job.queue
            if len(queue_of) > QUEUE_CACHE_SIZE:
                queue_of.popitem(last=False)

    async def _apply(self, job_id: str, transition: Transition) -> Job:
        [result] = await self._apply_many([(job_id, transition)])
        if isinstance(result, OJSError):
            raise result
        return result

    async def _apply_many(self, items: Sequence[tuple[str, Transition]]) -> list[Job | OJSError]:
        """Apply transitions to many jobs, each on its own: one ask per queue involved.
        Per item, in order, the stored job or the error that kept it from changing."""
        answers: list[Job | OJSError | None] = [None] * len(items)
        by_queue: dict[str, list[int]] = {}
        unknown: list[int] = []
        queue_of = self._queue_of
        for position, (job_id, _) in enumerate(items):
            queue = queue_of.get(job_id)
            if queue is None:
                unknown.append(position)
            else:
                by_queue.setdefault(queue, []).append(position)
        if unknown:
            found = await self.backend.get_jobs([items[position][0] for position in unknown])
            for position, job in zip(unknown, found, strict=True):
                if job is None:
                    answers[position] = _job_not_found(items[position][0])
                else:
                    self._remember(job)
                    by_queue.setdefault(job.queue, []).append(position)
        for queue, positions in by_queue.items():
            message = Apply([items[position] for position in positions])
            try:
                results = await self._ask(queue, message)
            except OJSError as error:  # the actor restarted or the backend is away
                results = [error] * len(positions)
            for position, result in zip(positions, results, strict=True):
                answers[position] = result
        return answers  # type: ignore[return-value]  # every position is filled in

    # -- producers ----------------------------------------------------------------------

    async def enqueue(self, request: dict[str, Any] | Job) -> Job:
        """Validate, store durably, and return the job with its system-managed fields.

        Under a unique policy with ``on_conflict: "ignore"``, a duplicate is not stored
        and the existing job is returned instead: its ``id`` differs from the one submitted.
        """
        job = request if isinstance(request, Job) else parse_enqueue(request, self.clock())
        [result] = await self._ask(job.queue, Enqueue([job]))
        return self._stored(result)

    async def enqueue_batch(self, requests: Sequence[dict[str, Any] | Job]) -> list[Job]:
        """Enqueue several jobs atomically: every one is stored, or none is."""
        if not requests:
            raise InvalidRequest("'jobs' must contain at least one job.", details={"field": "jobs"})
        now = self.clock()
        jobs: list[Job] = []
        for index, request in enumerate(requests):
            try:
                jobs.append(request if isinstance(request, Job) else parse_enqueue(request, now))
            except OJSError as error:
                error.message = f"Job at index {index}: {error.message}"
                error.args = (error.message,)
                error.details = {"index": index, **error.details}
                raise
        results = await self._insert_atomically(jobs)
        for index, result in enumerate(results):
            if isinstance(result, OJSError):
                result.details = {"index": index, **result.details}
                raise result
        return [self._stored(result) for result in results]

    async def _insert_atomically(
        self, jobs: Sequence[Job]
    ) -> Sequence[Job | Deduplicated | OJSError]:
        """Store ``jobs`` in one atomic backend call, made by the actor of the last of their
        queues (by name) while the actors of the others are held; each actor then applies
        its queue's policies (rate limit, events, wake-ups) to its own jobs before it
        handles anything else. Actors are taken in queue-name order, so batches over
        the same queues cannot deadlock."""
        *held, last = sorted({job.queue for job in jobs})
        batch = EnqueueBatch(jobs, {queue: Hold() for queue in held})
        failures: list[OJSError] = []
        results: Sequence[Job | Deduplicated | OJSError] | None = None
        try:
            async with trio.open_nursery() as nursery:
                for queue, hold in batch.holds.items():
                    nursery.start_soon(self._hold_queue, queue, hold, failures)
                    await hold.parked.wait()
                    if failures:
                        break
                else:
                    try:
                        results = await self._ask(last, batch)
                    except OJSError as error:
                        failures.append(error)
        finally:
            if not batch.taken:  # else the storing actor releases the holds, come what may
                batch.withdrawn = True
                for hold in batch.holds.values():
                    hold.released.set()
        if results is None:
            raise failures[0]
        return results

    async def _hold_queue(self, queue: str, hold: Hold, failures: list[OJSError]) -> None:
        try:
            await self._ask(queue, hold)
        except OJSError as error:
            if hold.results is None:
                failures.append(error)
            else:  # stored: only the queue's follow-up (events, wake-ups) is missing
                log.warning("queue %r missed the follow-up of a stored batch: %s", queue, error)
        finally:
            hold.parked.set()

    def _stored(self, result: Job | Deduplicated | OJSError) -> Job:
        if isinstance(result, OJSError):
            raise result
        job = result.existing if isinstance(result, Deduplicated) else result
        self._remember(job)
        return job

    # -- workers --------------------------------------------------------------------------

    async def fetch(
        self,
        queues: Sequence[str],
        count: int = 1,
        *,
        worker_id: str | None = None,
        visibility_timeout_ms: int | None = None,
        wait: float = 0.0,
    ) -> list[Job]:
        """Claim up to ``count`` jobs, trying ``queues`` in order; wait up to ``wait``
        seconds for work if there is none now."""
        for queue in queues:
            parse_queue_name(queue, "queues[]")
        if worker_id is not None:
            self.workers.seen(worker_id)
        deadline = trio.current_time() + wait
        while True:
            # Take the wake-up events before claiming: work stored while the claim is in
            # flight sets them, so the wait below cannot miss it.
            ready = [self.signals.ready_event(queue) for queue in queues] if wait > 0 else []
            claimed: list[Job] = []
            for queue in queues:
                if len(claimed) >= count:
                    break
                claimed.extend(
                    await self._ask(
                        queue, Claim(count - len(claimed), worker_id, visibility_timeout_ms)
                    )
                )
            if claimed or trio.current_time() >= deadline:
                for job in claimed:
                    self._remember(job)
                return claimed
            remaining = deadline - trio.current_time()
            with trio.move_on_after(min(remaining, self.settings.poll_interval)):
                await wait_any(ready)

    async def settle_many(self, outcomes: Sequence[Outcome]) -> list[Job | OJSError]:
        """Ack and nack many claimed jobs in one go: one ask per queue, applied by its
        QueueActor in one backend write. Each outcome succeeds or fails on its own; the
        answer holds, in order, the stored job or the error (nothing is raised for one
        job's failure, e.g. :class:`Conflict` for a job cancelled meanwhile)."""
        items: list[tuple[str, Transition]] = []
        invalid: dict[int, OJSError] = {}
        for position, outcome in enumerate(outcomes):
            try:
                items.append((outcome.job_id, transition_of(outcome)))
            except OJSError as error:
                invalid[position] = error
        if not invalid:
            return await self._apply_many(items)
        applied = iter(await self._apply_many(items))
        return [invalid.get(position) or next(applied) for position in range(len(outcomes))]

    async def extend_leases(
        self, job_ids: Sequence[str], *, visibility_timeout_ms: int | None = None
    ) -> list[Job | OJSError]:
        """Push out the lease deadlines of active jobs (each by its own visibility
        timeout, or by ``visibility_timeout_ms``), in one ask per queue."""
        extend = extend_lease_by(visibility_timeout_ms)
        return await self._apply_many([(job_id, extend) for job_id in job_ids])

    def worker_group(
        self,
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
    ) -> AbstractAsyncContextManager[WorkerGroup]:
        """Run ``handlers`` (job type -> ``async def handler(job)``) on jobs of ``queues``
        in this process while the returned context is open; leaving it stops the group
        gracefully. The options are explained at
        :class:`~ojs_actors.system.worker_group.WorkerGroup`."""
        return run_worker_group(
            WorkerGroup(
                self,
                queues,
                handlers,
                concurrency=concurrency,
                batch_size=batch_size,
                worker_id=worker_id,
                visibility_timeout_ms=visibility_timeout_ms,
                grace_period=grace_period,
                heartbeat_interval=heartbeat_interval,
                on_settled=on_settled,
            )
        )

    async def ack(self, job_id: str, result: Any = NO_RESULT) -> Job:
        return await self._apply(job_id, transition_of(Ack(job_id, result)))

    async def nack(
        self, job_id: str, error: dict[str, Any] | None, *, requeue: bool = False
    ) -> Job:
        """Report a failed attempt; the retry policy decides retryable or discarded.
        ``requeue`` hands the job back at once without spending the attempt."""
        return await self._apply(job_id, transition_of(Nack(job_id, error, requeue)))

    async def heartbeat(
        self,
        worker_id: str,
        job_ids: Iterable[str] = (),
        *,
        visibility_timeout_ms: int | None = None,
    ) -> Heartbeat:
        """Extend the leases of the worker's active jobs; the reply carries the state the
        worker should be in (``running``, ``quiet``, ``terminate``)."""
        beat = Heartbeat(state=self.workers.seen(worker_id).directive)
        ids = list(dict.fromkeys(job_ids))
        if not ids:
            return beat
        results = await self.extend_leases(ids, visibility_timeout_ms=visibility_timeout_ms)
        refused = [
            job_id for job_id, job in zip(ids, results, strict=True) if not isinstance(job, Job)
        ]
        gone = (
            dict(zip(refused, await self.backend.get_jobs(refused), strict=True)) if refused else {}
        )
        for job_id, job in zip(ids, results, strict=True):
            if not isinstance(job, Job):
                stored = gone[job_id]
                if stored is not None and stored.state is State.CANCELLED:
                    beat.jobs_cancelled.append(job_id)
                continue
            beat.jobs_extended.append(job_id)
            directive = job.meta.get("test_directive") if self.settings.test_hooks else None
            if directive in ("quiet", "terminate") and beat.state == "running":
                beat.state = directive
        return beat

    def set_worker_state(self, worker_id: str, state: str) -> None:
        """Operator directive delivered in the worker's heartbeat replies; forgotten with
        the worker once it has been silent for ``Settings.worker_idle_timeout``."""
        self.workers.direct(worker_id, state)

    # -- job operations ------------------------------------------------------------------

    async def info(self, job_id: str) -> Job:
        [job] = await self.backend.get_jobs([job_id])
        if job is None:
            raise NotFound(
                f"Job '{job_id}' not found.",
                details={"resource_type": "job", "resource_id": job_id},
            )
        return job

    async def cancel(self, job_id: str) -> Job:
        return await self._apply(job_id, lifecycle.cancel)

    async def activate(self, job_id: str) -> Job:
        return await self._apply(job_id, lifecycle.activate)

    # -- workflows ------------------------------------------------------------------------

    async def create_workflow(self, definition: dict[str, Any]) -> dict[str, Any]:
        """Validate and start a chain, group, batch (ojs-workflows) or DAG (ojs-http-binding
        §14.1); returns its view.

        The workflow is stored, every job id it may use already allocated, before its
        actor starts and enqueues the first jobs."""
        workflow = parse_workflow(definition, self.clock())
        await self.backend.save_snapshot(snapshot_key(workflow.id), workflow.to_record())
        try:
            await self.workflow_ref(workflow.id)  # its start enqueues the released jobs
        except Exception as error:
            self._workflow_notices.send_nowait(Wake(workflow.id))
            raise ServiceRestarting(
                f"Workflow {workflow.id} is stored but did not start; it will be retried.",
                details={"workflow_id": workflow.id, "reason": str(error)},
            ) from error
        return await self.workflow_info(workflow.id)

    async def workflow_info(self, workflow_id: str) -> dict[str, Any]:
        workflow = await self._load_workflow(workflow_id)
        released = [node.job_id for node in workflow.released()]
        jobs = await self.backend.get_jobs(released) if released else []
        return render(workflow, dict(zip(released, jobs, strict=True)))

    async def cancel_workflow(self, workflow_id: str) -> dict[str, Any]:
        """Cancel a running workflow: steps not yet started never run and jobs waiting for
        a worker are cancelled; an attempt in progress may finish, but is not retried
        (ojs-workflows §11.3). :class:`Conflict` if the workflow already ended."""
        workflow = await self._load_workflow(workflow_id)
        if workflow.state.terminal:
            cancel_workflow_state(workflow, self.clock())  # raises Conflict
        try:
            await (await self.workflow_ref(workflow_id)).ask(CancelWorkflow())
        except (ActorCrashed, ActorStopped) as error:
            after = await self._load_workflow(workflow_id)
            if after.state.terminal and after.state is not WorkflowState.CANCELLED:
                cancel_workflow_state(after, self.clock())  # raises Conflict
            if after.state is not WorkflowState.CANCELLED:
                raise ServiceRestarting(
                    f"The actor of workflow '{workflow_id}' restarted while cancelling it.",
                    details={"workflow_id": workflow_id, "reason": str(error)},
                ) from error
        return await self.workflow_info(workflow_id)

    async def workflow_ref(self, workflow_id: str) -> ActorRef:
        """The workflow's actor, started (resumed from its snapshot) if not running."""
        child_id = f"workflow:{workflow_id}"
        if child_id in self.workflows:
            return self.workflows.ref(child_id)
        return await self.workflows.start_child(
            ChildSpec(
                child_id,
                lambda: WorkflowActor(workflow_id, self._workflow_services),
                restart=Restart.TRANSIENT,
                mailbox_capacity=self.settings.mailbox_capacity,
            )
        )

    async def _retire_workflow(self, workflow_id: str) -> None:
        await self.workflows.stop_child(f"workflow:{workflow_id}")

    async def _load_workflow(self, workflow_id: str) -> Workflow:
        record = await self.backend.load_snapshot(snapshot_key(workflow_id))
        if record is None:
            raise NotFound(
                f"Workflow '{workflow_id}' not found.",
                details={"resource_type": "workflow", "resource_id": workflow_id},
            )
        return Workflow.from_record(record)

    async def _enqueue_each(self, jobs: Sequence[Job]) -> list[Job | Deduplicated | OJSError]:
        """Store jobs, each on its own (not atomically), through their queues' actors;
        the answers in input order."""
        by_queue: dict[str, list[int]] = {}
        for position, job in enumerate(jobs):
            by_queue.setdefault(job.queue, []).append(position)
        answers: dict[int, Job | Deduplicated | OJSError] = {}
        for queue, positions in by_queue.items():
            results = await self._ask(queue, Enqueue([jobs[i] for i in positions]))
            for position, result in zip(positions, results, strict=True):
                answers[position] = result
                if isinstance(result, Job):
                    self._remember(result)
        return [answers[position] for position in range(len(jobs))]

    # -- queues -----------------------------------------------------------------------------

    async def list_queues(self) -> list[dict[str, Any]]:
        records = await self.backend.list_snapshots("queue:")
        return sorted(records.values(), key=lambda record: record["name"])

    async def queue_info(self, queue: str) -> dict[str, Any]:
        record: dict[str, Any] = await self._ask(parse_queue_name(queue), Describe())
        return record

    async def set_paused(self, queue: str, paused: bool) -> dict[str, Any]:
        """Pause (no fetches; enqueues still accepted) or resume a queue."""
        record: dict[str, Any] = await self._ask(parse_queue_name(queue), SetPaused(paused))
        return record

    async def queue_stats(self, queue: str) -> tuple[dict[str, Any], dict[State, int]]:
        """The queue's record and its job counts by state."""
        record = await self.queue_info(queue)
        return record, await self.backend.count_jobs(queue)

    # -- dead letter -----------------------------------------------------------------------

    async def dead_letter(
        self, queue: str | None = None, limit: int = 50, offset: int = 0
    ) -> tuple[list[Job], int]:
        return await self.backend.list_dead_letter(queue, limit, offset)

    async def retry_dead_letter(self, job_id: str) -> Job:
        try:
            return await self._apply(job_id, retry_from_dead_letter)
        except NotFound as error:
            raise NotFound(
                f"Dead letter job '{job_id}' not found.",
                details={"resource_type": "dead_letter_job", "resource_id": job_id},
            ) from error

    async def delete_dead_letter(self, job_id: str) -> None:
        if not await self.backend.delete_dead_letter(job_id):
            raise NotFound(
                f"Dead letter job '{job_id}' not found.",
                details={"resource_type": "dead_letter_job", "resource_id": job_id},
            )
        self._queue_of.pop(job_id, None)

    # -- events and health -------------------------------------------------------------------

    async def events(self, query: EventFilter) -> list[dict[str, Any]]:
        return await self.backend.read_events(query)

    async def health(self) -> dict[str, Any]:
        uptime = (self.clock() - self.started_at) // 1000
        try:
            latency = await self.backend.ping()
        except Exception as error:  # the health report is where backend errors belong
            return {
                "status": "degraded",
                "uptime_seconds": uptime,
                "backend": {
                    "type": self.backend.name,
                    "status": "disconnected",
                    "error": str(error),
                },
            }
        return {
            "status": "ok",
            "uptime_seconds": uptime,
            "backend": {"type": self.backend.name, "status": "connected", "latency_ms": latency},
        }

    # -- cron ---------------------------------------------------------------------------------

    async def register_cron(self, request: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """Register a cron entry, or update the one of that name (upsert, ojs-cron §8.1).
        Returns its record and whether it is new."""
        spec = parse_cron(request, self.clock())
        async with self._cron_lock:
            ref = await self.crons.start_child(self._cron_child(spec.name))
            record, created = await self._ask_cron(ref, RegisterCron(spec))
        return record, created

    async def list_crons(self) -> list[dict[str, Any]]:
        records = await self.backend.list_snapshots(CRON_PREFIX)
        return sorted(records.values(), key=lambda record: record["name"])

    async def cron_info(self, name: str) -> dict[str, Any]:
        record = await self.backend.load_snapshot(CRON_PREFIX + name)
        if record is None:
            raise _cron_not_found(name)
        return record

    async def set_cron_enabled(self, name: str, enabled: bool) -> dict[str, Any]:
        async with self._cron_lock:
            child_id = CRON_PREFIX + name
            record: dict[str, Any] | None = None
            if child_id not in self.crons and await self.backend.load_snapshot(child_id):
                await self.crons.start_child(self._cron_child(name))  # registered elsewhere
            if child_id in self.crons:
                record = await self._ask_cron(self.crons.ref(child_id), SetCronEnabled(enabled))
        if record is None:
            raise _cron_not_found(name)
        return record

    async def delete_cron(self, name: str) -> dict[str, Any]:
        """Stop the entry's actor and forget it; jobs it enqueued are not touched."""
        async with self._cron_lock:
            child_id = CRON_PREFIX + name
            record: dict[str, Any] | None = None
            if child_id in self.crons:
                record = await self._ask_cron(self.crons.ref(child_id), DescribeCron())
                await self.crons.stop_child(child_id)
            record = await self.backend.load_snapshot(child_id) or record
            await self.backend.delete_snapshot(child_id)
        if record is None:
            raise _cron_not_found(name)
        return record

    async def _ask_cron(self, ref: ActorRef, message: Any) -> Any:
        try:
            return await ref.ask(message)
        except (ActorCrashed, ActorStopped) as error:
            raise ServiceRestarting(
                f"The actor of cron entry '{ref.name}' restarted while handling the request.",
                details={"cron": ref.name, "reason": str(error)},
            ) from error

    async def reset(self) -> None:
        """Drop every job, queue and event; stop the queue actors (their caches go too)."""
        for child_id, _, _ in self.workflows.which_children():
            if child_id.startswith("workflow:"):
                await self.workflows.stop_child(child_id)
        while True:
            try:
                self._workflow_inbox.receive_nowait()
            except trio.WouldBlock:
                break
        async with self._cron_lock:  # the crons supervisor's registry sync waits
            for child_id, _, _ in self.crons.which_children():
                await self.crons.stop_child(child_id)
            for child_id, _, _ in self.queues.which_children():
                await self.queues.stop_child(child_id)
            await self.backend.reset()
        self._queue_of.clear()
        self.workers.clear()


def _job_not_found(job_id: str) -> NotFound:
    return NotFound(
        f"Job '{job_id}' not found.", details={"resource_type": "job", "resource_id": job_id}
    )


def _cron_not_found(name: str) -> NotFound:
    return NotFound(
        f"Cron entry '{name}' not found.", details={"resource_type": "cron", "resource_id": name}
    )


@asynccontextmanager
async def open_system(
    backend: Backend | str = "memory",
    *,
    clock: Clock | None = None,
    settings: Settings | None = None,
) -> AsyncIterator[System]:
    """Start the actor system over ``backend``; stop it, in order, on exit."""
    store = create_backend(backend) if isinstance(backend, str) else backend
    await store.start()
    try:
        system = System(store, clock=clock, settings=settings)
        async with trio.open_nursery() as nursery:
            await nursery.start(system.root.run)
            try:
                yield system
            finally:
                system.root.request_stop()
    finally:
        with trio.CancelScope(shield=True):
            await store.close()


__all__ = ["Heartbeat", "Settings", "System", "open_system"]
