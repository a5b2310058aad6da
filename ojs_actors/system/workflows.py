"""Workflows in a System: the supervisor of their actors, the inbox of job notices that
feeds them, and the workflow API (ojs-workflows; DAGs as ojs-http-binding §14.1)."""

from __future__ import annotations

import math
from typing import Any

import trio

from ..actors import ActorCrashed, ActorRef, ActorStopped, ChildSpec, Restart, Supervisor
from ..backends import Backend
from ..core import Job, NotFound, ServiceRestarting, lifecycle
from ..core.workflow import (
    Workflow,
    WorkflowState,
    parse_workflow,
    render,
    render_progress,
    snapshot_key,
)
from ..core.workflow import cancel as cancel_workflow_state
from .clock import Clock
from .outbox_gate import OutboxGate
from .queue_writes import Changes
from .routing import QueueRouter
from .settings import Settings
from .supervision import SupervisorSlot, one_for_one
from .tenancy import acting_tenant, settle_workflow_tenant
from .workflow_actor import WorkflowActor, WorkflowKeeper, WorkflowServices
from .workflow_index import WorkflowIndex
from .workflow_notices import CancelWorkflow, Notice, ReconcileAll, Wake, notices_for


class WorkflowInbox:
    """Job notices for the workflows, posted without waiting; the keeper drains it."""

    def __init__(self) -> None:
        self.post, self.receive = trio.open_memory_channel[Notice](math.inf)

    def jobs_changed(self, changes: Changes) -> None:
        """Stored job changes, from the QueueActors and the Scheduler: tell workflows."""
        for notice in notices_for(changes):
            self.post.send_nowait(notice)

    def restarted(self, child_id: str) -> None:
        """An actor was restarted after a crash: unless it was a workflow's own (which
        reconciles as it starts), notices it was handling may be lost."""
        if not child_id.startswith("workflow:"):
            self.post.send_nowait(ReconcileAll())

    def drop_pending(self) -> None:
        """Forget every notice not delivered yet."""
        while True:
            try:
                self.receive.receive_nowait()
            except trio.WouldBlock:
                return


class Workflows:
    def __init__(
        self,
        backend: Backend,
        clock: Clock,
        settings: Settings,
        router: QueueRouter,
        inbox: WorkflowInbox,
        gate: OutboxGate,
    ) -> None:
        self.backend = backend
        self._gate = gate
        self.clock = clock
        self.settings = settings
        self.inbox = inbox
        self._router = router
        self.services = WorkflowServices(
            backend=backend,
            clock=clock,
            index=WorkflowIndex(backend, clock, int(settings.workflow_retention * 1000)),
            enqueue=router.enqueue_each,
            cancel_job=self._cancel_job,
            post=inbox.post.send_nowait,
            actor_of=self.workflow_ref,
            is_running=lambda workflow_id: f"workflow:{workflow_id}" in self.supervisors.current,
            running=self._running,
            retire=self._retire,
        )
        self.supervisors = SupervisorSlot("workflows", self._new_supervisor)

    def _new_supervisor(self) -> Supervisor:
        keeper = ChildSpec(
            "keeper",
            lambda: WorkflowKeeper(
                self.services, self.inbox.receive, retry_interval=self.settings.poll_interval
            ),
        )
        return one_for_one("workflows", self.settings.workflow_restarts, [keeper])

    async def create_workflow(self, definition: dict[str, Any]) -> dict[str, Any]:
        """Validate and start a chain, group, batch (ojs-workflows) or DAG (ojs-http-binding
        §14.1); returns its view.

        The workflow is stored, every job id it may use already allocated, before its
        actor starts and enqueues the first jobs."""
        workflow = parse_workflow(definition, self.clock())
        settle_workflow_tenant(  # ojs-multi-tenancy §15.2: one tenant for every step
            [
                (f"{node.role}s[{node.step_id or node.index}]", node.request)
                for node in workflow.nodes
            ]
        )
        await self._gate.admit()
        await self.services.index.create(workflow)
        try:
            await self.workflow_ref(workflow.id)  # its start enqueues the released jobs
        except Exception as error:
            self.inbox.post.send_nowait(Wake(workflow.id))
            raise ServiceRestarting(
                f"Workflow {workflow.id} is stored but did not start; it will be retried.",
                details={"workflow_id": workflow.id, "reason": str(error)},
            ) from error
        return await self.workflow_info(workflow.id)

    async def workflow_info(self, workflow_id: str) -> dict[str, Any]:
        workflow = await self._load(workflow_id)
        return render(workflow, await self._live(workflow))

    async def workflow_progress(self, workflow_id: str) -> dict[str, Any]:
        """The workflow's aggregate progress (ojs-progress §9), from its jobs as stored."""
        workflow = await self._load(workflow_id)
        return render_progress(workflow, await self._live(workflow))

    async def _live(self, workflow: Workflow) -> dict[str, Job | None]:
        """The current versions of the released nodes' jobs."""
        released = [node.job_id for node in workflow.released()]
        jobs = await self.backend.get_jobs(released) if released else []
        return dict(zip(released, jobs, strict=True))

    async def cancel_workflow(self, workflow_id: str) -> dict[str, Any]:
        """Cancel a running workflow: steps not yet started never run and jobs waiting for
        a worker are cancelled; an attempt in progress may finish, but is not retried
        (ojs-workflows §11.3). :class:`Conflict` if the workflow already ended."""
        workflow = await self._load(workflow_id)
        if workflow.state.terminal:
            cancel_workflow_state(workflow, self.clock())  # raises Conflict
        try:
            await (await self.workflow_ref(workflow_id)).ask(CancelWorkflow())
        except (ActorCrashed, ActorStopped) as error:
            after = await self._load(workflow_id)
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
        workflows = self.supervisors.current
        if child_id in workflows:
            return workflows.ref(child_id)
        return await workflows.start_child(
            ChildSpec(
                child_id,
                lambda: WorkflowActor(workflow_id, self.services),
                restart=Restart.TRANSIENT,
                mailbox_capacity=self.settings.mailbox_capacity,
            )
        )

    def _running(self) -> list[str]:
        return [
            child_id.removeprefix("workflow:")
            for child_id, alive, _ in self.supervisors.current.which_children()
            if alive and child_id.startswith("workflow:")
        ]

    async def stop_all(self) -> None:
        """Stop every workflow's actor and drop the notices not delivered yet."""
        await self.supervisors.stop_children("workflow:")
        self.inbox.drop_pending()

    async def _retire(self, workflow_id: str) -> None:
        await self.supervisors.current.stop_child(f"workflow:{workflow_id}")

    async def _cancel_job(self, job_id: str) -> Job:
        return await self._router.apply(job_id, lifecycle.cancel)

    async def _load(self, workflow_id: str) -> Workflow:
        record = await self.backend.load_snapshot(snapshot_key(workflow_id))
        tenant = acting_tenant()
        if record is None or (tenant is not None and _tenant_of(record) != tenant):
            # Another tenant's workflow is as missing as its jobs are (ojs-multi-tenancy §6).
            raise NotFound(
                f"Workflow '{workflow_id}' not found.",
                details={"resource_type": "workflow", "resource_id": workflow_id},
            )
        return Workflow.from_record(record)


def _tenant_of(record: dict[str, Any]) -> str | None:
    """The tenant of a stored workflow: every step's request names it (§15.2), if any."""
    for node in record.get("nodes") or ():
        meta = (node.get("request") or {}).get("meta") if isinstance(node, dict) else None
        if isinstance(meta, dict) and isinstance(meta.get("tenant_id"), str):
            return str(meta["tenant_id"])
    return None


__all__ = ["WorkflowInbox", "Workflows"]
