"""One WorkflowActor per workflow, and the WorkflowKeeper that routes job changes to them.

A WorkflowActor owns one workflow. Its snapshot ``workflow:<id>`` holds the
definition and the progress (:class:`~ojs_actors.core.workflow.Workflow`), and
every node's job id, allocated at creation. Told that a job of its workflow
ended, it decides with the pure state machine, persists the new state, and only
then enqueues the jobs it released. Should it crash (or the server stop) between
the two, its next start reconciles with the backend: a released node whose job is
missing is enqueued, one whose job ended while nobody listened is advanced; an
enqueue that did land before the crash comes back as a duplicate of the same id,
so no step ever runs twice.

Several server processes on one backend may each run an actor for the same
workflow (each hears of the jobs that end through it). Every write of the
snapshot is a compare-and-set on the version the actor read; one that loses
(another process advanced the workflow meanwhile) reloads the stored state and
applies its change again to that, which the pure state machine makes cheap and
safe (an outcome already recorded is ignored). A stale copy therefore never
overwrites newer progress, and picks the newer state up when it next acts.

Job changes are hints, posted without waiting by the QueueActors and the
Scheduler (see :func:`notices_for`) to an unbounded in-process inbox that the
WorkflowKeeper drains, starting (resuming) a workflow's actor when it is not
running. A QueueActor thus never waits for a workflow actor, and the asks a
workflow actor makes of the queues cannot close a cycle. The keeper also resumes
unfinished workflows when it starts, stops the actors of settled ones (filed as
finished, kept for the retention period: see :mod:`.workflow_index`) and sweeps.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import trio

from ..actors import Actor, ActorRef, ActorStopped, Envelope
from ..backends import Backend, Deduplicated
from ..core import Duplicate, Job, NotFound, OJSError, State
from ..core.errors import BackendUnavailable
from ..core.workflow import (
    WORKFLOW_ID_FIELD,
    Node,
    NodeState,
    Outcome,
    Transition,
    Workflow,
    WorkflowState,
    advance,
    build_job,
    cancel,
    outcome_of,
    refused,
    snapshot_key,
)
from .clock import Clock
from .workflow_index import WorkflowIndex
from .workflow_notices import (
    CancelWorkflow,
    JobChanged,
    Notice,
    Reconcile,
    ReconcileAll,
    Retire,
    Wake,
)

log = logging.getLogger("ojs_actors.workflows")


@dataclass(frozen=True, slots=True)
class WorkflowServices:
    """What the workflow actors use of the system around them."""

    backend: Backend
    clock: Clock
    index: WorkflowIndex
    enqueue: Callable[[Sequence[Job]], Awaitable[list[Job | Deduplicated | OJSError]]]
    """Store new jobs through their queues' actors; per job, as ``insert_jobs`` answers."""
    cancel_job: Callable[[str], Awaitable[Job]]
    post: Callable[[Notice], None]
    """Hand a notice to the keeper; never waits."""
    actor_of: Callable[[str], Awaitable[ActorRef]]
    """The workflow's actor, started if it is not running."""
    is_running: Callable[[str], bool]
    running: Callable[[], list[str]]
    """The workflows whose actors run."""
    retire: Callable[[str], Awaitable[None]]


def advancing(
    outcomes: Sequence[tuple[str, Outcome]], now: int
) -> Callable[[Workflow], Transition]:
    """The change that records ``outcomes`` in whichever state it is applied to."""
    return lambda workflow: advance(workflow, outcomes, now)


class WorkflowActor(Actor):
    reply_errors = (OJSError,)

    def __init__(self, workflow_id: str, services: WorkflowServices) -> None:
        self.workflow_id = workflow_id
        self.services = services
        self.snapshot_key: str = snapshot_key(workflow_id)
        self.workflow: Workflow | None = None
        self.version: int | None = None
        """The stored snapshot's version :attr:`workflow` is based on."""
        self._retiring = False

    async def on_start(self) -> None:
        await self._reload()
        await self._reconcile()
        await self._retire_if_settled()

    async def _reload(self) -> None:
        found = await self.services.backend.load_snapshot_versioned(self.snapshot_key)
        if found is None:
            self.workflow, self.version = None, None
        else:
            state, self.version = found
            self.workflow = Workflow.from_record(state)

    async def _update(self, change: Callable[[Workflow], Transition]) -> tuple[Node, ...]:
        """Apply ``change`` to the workflow and persist the result (before acting on it)
        by compare-and-set; should another process have written the workflow since it
        was read, reload it and apply ``change`` to the stored state instead. Returns
        the nodes released by the change that was stored."""
        fresh = False
        while self.workflow is not None:
            transition = change(self.workflow)
            if transition.workflow is self.workflow:
                if fresh:
                    return ()
                # Nothing to do to our copy, which may be stale (the job's node released
                # through another process): only the stored state can tell.
                known = self.version
                await self._reload()
                fresh = True
                if self.version == known:
                    return ()
                log.info("workflow %s: advanced elsewhere meanwhile", self.workflow_id)
                continue
            version = await self.services.backend.save_snapshot_if(
                self.snapshot_key, transition.workflow.to_record(), self.version
            )
            if version is not None:
                self.workflow, self.version = transition.workflow, version
                return transition.release
            log.info("workflow %s: advanced elsewhere meanwhile; reloading", self.workflow_id)
            await self._reload()
            fresh = True
        return ()

    # -- messages --------------------------------------------------------------------------

    async def receive_batch(self, batch: Sequence[Envelope]) -> None:
        start = 0
        while start < len(batch):
            end = start + 1
            if isinstance(batch[start].message, JobChanged):
                while end < len(batch) and isinstance(batch[end].message, JobChanged):
                    end += 1
                await self._absorb([envelope.message.job for envelope in batch[start:end]])
                for envelope in batch[start:end]:
                    if envelope.reply is not None:
                        envelope.reply.set(None)
            else:
                await super().receive_batch(batch[start:end])
            start = end
        await self._retire_if_settled()

    async def receive(self, message: Any) -> Any:
        if isinstance(message, CancelWorkflow):
            await self._cancel()
            return None
        if isinstance(message, Reconcile):
            await self._reconcile()
            return None
        return await super().receive(message)

    # -- progress ------------------------------------------------------------------------------

    async def _absorb(self, jobs: Sequence[Job]) -> None:
        """Apply what these job versions mean, persist, then carry out the consequences."""
        if self.workflow is None:
            return
        now = self.services.clock()
        outcomes: list[tuple[str, Outcome]] = []
        unfinished: list[Job] = []
        for job in jobs:
            outcome = outcome_of(job)
            if outcome is None:
                unfinished.append(job)
            else:
                outcomes.append((job.id, outcome))
        release = await self._update(advancing(outcomes, now)) if outcomes else ()
        if self.workflow is None:
            return
        if self.workflow.state is WorkflowState.CANCELLED:
            # Graceful cancel: an attempt in progress may finish, but none starts again.
            ours = {node.job_id for node in self.workflow.released()}
            await self._cancel_jobs(
                [job.id for job in unfinished if job.id in ours and job.state is not State.ACTIVE]
            )
        await self._enqueue(release)

    async def _enqueue(self, nodes: Sequence[Node]) -> None:
        """Enqueue released nodes' jobs (already persisted as released)."""
        while nodes and self.workflow is not None:
            workflow = self.workflow
            now = self.services.clock()
            jobs: list[Job] = []
            outcomes: list[tuple[str, Outcome]] = []
            for node in nodes:
                try:
                    jobs.append(build_job(workflow, node, now))
                except OJSError as error:
                    outcomes.append((node.job_id, refused(error, now)))
            results = await self.services.enqueue(jobs) if jobs else []
            refusals = {
                job.id: result
                for job, result in zip(jobs, results, strict=True)
                if not isinstance(result, Job)
            }
            if refusals:
                found = await self.services.backend.get_jobs(list(refusals))
                for (job_id, reason), job in zip(refusals.items(), found, strict=True):
                    if job is not None and job.extra.get(WORKFLOW_ID_FIELD) == workflow.id:
                        outcome = outcome_of(job)  # ours, stored by an earlier run
                        if outcome is not None:
                            outcomes.append((job_id, outcome))
                        continue
                    if isinstance(reason, Deduplicated):
                        reason = Duplicate(
                            f"The job's unique policy matched job {reason.existing.id}.",
                            details={"existing_job_id": reason.existing.id},
                        )
                    outcomes.append((job_id, refused(reason, now)))
            nodes = await self._update(advancing(outcomes, now)) if outcomes else ()

    async def _reconcile(self) -> None:
        """Catch up with the backend: the jobs of released nodes may have ended unheard,
        or (after a crash between persisting and enqueueing) not exist yet."""
        workflow = self.workflow
        if workflow is None:
            return
        released = workflow.released()
        if not released:
            return
        found = await self.services.backend.get_jobs([node.job_id for node in released])
        present = [job for job in found if job is not None]
        missing = [node for node, job in zip(released, found, strict=True) if job is None]
        if workflow.state is WorkflowState.RUNNING:
            await self._absorb(present)
            await self._enqueue(missing)
            return
        # Terminal (cancelled): a job not created by now never will be.
        now = self.services.clock()
        gone = [(node.job_id, Outcome(NodeState.CANCELLED, now)) for node in missing]
        if gone:
            await self._update(advancing(gone, now))
        await self._absorb(present)

    async def _cancel(self) -> None:
        if self.workflow is None:
            raise NotFound(
                f"Workflow '{self.workflow_id}' not found.",
                details={"resource_type": "workflow", "resource_id": self.workflow_id},
            )
        now = self.services.clock()
        await self._update(lambda workflow: Transition(cancel(workflow, now)))
        await self._reconcile()

    async def _cancel_jobs(self, job_ids: Sequence[str]) -> None:
        for job_id in job_ids:
            try:
                await self.services.cancel_job(job_id)
            except OJSError:  # ended (or went) meanwhile; its notice tells us how
                continue

    async def _retire_if_settled(self) -> None:
        """Once the workflow is settled (or gone), file it as finished and stop."""
        if self._retiring:
            return
        if self.workflow is None:
            await self.services.index.drop_orphan(self.workflow_id)
        elif self.workflow.settled:
            await self.services.index.file(self.workflow)
        else:
            return
        self._retiring = True
        self.services.post(Retire(self.workflow_id))


class WorkflowKeeper(Actor):
    """Delivers job notices to workflow actors, resumes unfinished workflows when it
    starts, retires the actors of settled ones, sweeps finished ones past retention."""

    def __init__(
        self,
        services: WorkflowServices,
        inbox: trio.MemoryReceiveChannel[Notice],
        *,
        retry_interval: float = 1.0,
    ) -> None:
        self.services = services
        self.inbox = inbox
        self.retry_interval = retry_interval
        self._failed: set[str] = set()
        self._retry = trio.Event()

    async def on_start(self) -> None:
        self.nursery.start_soon(self._serve)
        self.nursery.start_soon(self._resume_unfinished)
        self.nursery.start_soon(self.services.index.sweep_forever)

    async def _serve(self) -> None:
        async for notice in self.inbox:
            if isinstance(notice, Retire):
                await self.services.retire(notice.workflow_id)
            elif isinstance(notice, Wake):
                await self._wake(notice.workflow_id)
            elif isinstance(notice, ReconcileAll):
                for workflow_id in self.services.running():
                    if (ref := await self._wake(workflow_id)) is not None:
                        await ref.tell(Reconcile())
            else:
                await self._deliver(notice)

    async def _deliver(self, notice: JobChanged) -> None:
        workflow_id = notice.workflow_id
        if not self.services.is_running(workflow_id):
            try:
                record = await self.services.backend.load_snapshot(snapshot_key(workflow_id))
            except BackendUnavailable as error:  # an outage is no crash: its start catches up
                log.warning("workflow %s: not read: %s; retrying", workflow_id, error)
                self._schedule_retry(workflow_id)
                return
            if record is None:
                return  # not (or no longer) a workflow of this system
        ref = await self._wake(workflow_id)
        if ref is None:
            return
        try:
            await ref.tell(notice)
        except ActorStopped:  # it failed to start; its next start reconciles
            self._schedule_retry(workflow_id)

    async def _resume_unfinished(self) -> None:
        while True:  # a backend away at start-up must not crash-loop the keeper
            try:
                running = await self.services.index.running_ids()
                break
            except BackendUnavailable as error:
                log.warning("unfinished workflows not read: %s; retrying", error)
                await trio.sleep(self.retry_interval)
        for workflow_id in running:
            await self._wake(workflow_id)
        while True:
            await self._retry.wait()
            self._retry = trio.Event()
            await trio.sleep(self.retry_interval)
            failed, self._failed = self._failed, set()
            for workflow_id in sorted(failed):
                await self._wake(workflow_id)

    async def _wake(self, workflow_id: str) -> ActorRef | None:
        try:
            return await self.services.actor_of(workflow_id)
        except ActorStopped:
            return None  # the system is stopping
        except Exception as error:  # one workflow that cannot start must not stop the rest
            log.warning("workflow %s could not start: %r; retrying", workflow_id, error)
            self._schedule_retry(workflow_id)
            return None

    def _schedule_retry(self, workflow_id: str) -> None:
        self._failed.add(workflow_id)
        self._retry.set()


__all__ = ["WorkflowActor", "WorkflowKeeper", "WorkflowServices"]
