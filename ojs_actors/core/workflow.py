"""Workflows (ojs-workflows): chain, group and batch definitions and their pure state machine.

A workflow is a tuple of *nodes*, one per job it may ever run: the steps of a
chain, the jobs of a group or batch, and a batch's callbacks. Every node's job id
is allocated when the workflow is created, so the record persisted before
anything is enqueued already names every job the workflow can create: enqueueing
a node a second time (after a crash) is a harmless duplicate, never a second job.

Nodes move ``waiting -> released -> completed | failed | cancelled``; a batch
callback whose condition does not hold ends ``skipped``. ``released`` means "its
job is to exist": whoever runs the workflow enqueues each released node whose job
is not there yet. Results are passed on in the job envelope: a chain step gets
``parent_results``, the results of every step before it in order (``[]`` for step
0), and a batch callback the results of every batch job in order (``null`` for a
job without one). ``workflow_id`` on the envelope names the owning workflow.

:func:`advance` and :func:`cancel` take a workflow and an event and return the
next workflow (inputs are never mutated) and the nodes that became released.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from .errors import Conflict, InvalidWorkflow, OJSError
from .ids import new_id
from .job import NO_RESULT, Job
from .states import State
from .timefmt import format_ms
from .validation import parse_enqueue

KINDS = ("chain", "group", "batch")
CALLBACKS = ("on_complete", "on_success", "on_failure")
MAX_JOBS = 10_000
SNAPSHOT_PREFIX = "workflow:"
WORKFLOW_ID_FIELD = "workflow_id"
"""The job envelope attribute naming the workflow a job belongs to."""
PARENT_RESULTS_FIELD = "parent_results"


def snapshot_key(workflow_id: str) -> str:
    return f"{SNAPSHOT_PREFIX}{workflow_id}"


class WorkflowState(StrEnum):
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self is not WorkflowState.RUNNING


class NodeState(StrEnum):
    WAITING = "waiting"
    RELEASED = "released"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"

    @property
    def finished(self) -> bool:
        return self not in (NodeState.WAITING, NodeState.RELEASED)


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a node's job ended."""

    state: NodeState
    """``completed``, ``failed`` or ``cancelled``."""
    at: int
    result: Any = NO_RESULT
    error: dict[str, Any] | None = None
    attempt: int = 0
    started_at: int | None = None


def outcome_of(job: Job) -> Outcome | None:
    """What a stored job version means for its node; ``None`` while it is not terminal."""
    if job.state is State.COMPLETED:
        return Outcome(
            NodeState.COMPLETED,
            job.completed_at or 0,
            job.result,
            None,
            job.attempt,
            job.started_at,
        )
    if job.state is State.DISCARDED:
        error = job.error or {"code": "discarded", "message": "The job was discarded."}
        at = job.discarded_at or job.completed_at or 0
        return Outcome(NodeState.FAILED, at, NO_RESULT, error, job.attempt, job.started_at)
    if job.state is State.CANCELLED:
        error = {"code": "cancelled", "message": "The job was cancelled."}
        at = job.cancelled_at or 0
        return Outcome(NodeState.CANCELLED, at, NO_RESULT, error, job.attempt, job.started_at)
    return None


def refused(error: OJSError, now: int) -> Outcome:
    """The outcome of a node whose job the backend would not store (e.g. a unique conflict)."""
    return Outcome(
        NodeState.FAILED, now, error={"code": error.code, "message": error.message}, attempt=0
    )


@dataclass(frozen=True, slots=True)
class Node:
    role: str
    """``step`` (chain), ``job`` (group, batch) or the name of a batch callback."""
    index: int
    job_id: str
    request: dict[str, Any]
    """The validated enqueue request of its job (without ``id``)."""
    name: str | None = None
    state: NodeState = NodeState.WAITING
    released_at: int | None = None
    started_at: int | None = None
    finished_at: int | None = None
    attempt: int = 0
    result: Any = NO_RESULT
    error: dict[str, Any] | None = None

    @property
    def is_callback(self) -> bool:
        return self.role in CALLBACKS

    def to_record(self) -> dict[str, Any]:
        record: dict[str, Any] = {
            "role": self.role,
            "index": self.index,
            "job_id": self.job_id,
            "request": self.request,
            "state": self.state.value,
            "attempt": self.attempt,
        }
        for name in ("name", "released_at", "started_at", "finished_at", "error"):
            value = getattr(self, name)
            if value is not None:
                record[name] = value
        if self.result is not NO_RESULT:
            record["result"] = self.result
        return record

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Node:
        return cls(
            role=record["role"],
            index=record["index"],
            job_id=record["job_id"],
            request=record["request"],
            name=record.get("name"),
            state=NodeState(record["state"]),
            released_at=record.get("released_at"),
            started_at=record.get("started_at"),
            finished_at=record.get("finished_at"),
            attempt=record.get("attempt", 0),
            result=record["result"] if "result" in record else NO_RESULT,
            error=record.get("error"),
        )


@dataclass(frozen=True, slots=True)
class Workflow:
    id: str
    kind: str
    """``chain``, ``group`` or ``batch``."""
    name: str | None
    state: WorkflowState
    created_at: int
    nodes: tuple[Node, ...]
    completed_at: int | None = None
    cancelled_at: int | None = None

    @property
    def settled(self) -> bool:
        """Terminal, and no job of it still to be heard from: nothing more will happen."""
        return self.state.terminal and all(n.state is not NodeState.RELEASED for n in self.nodes)

    def released(self) -> list[Node]:
        return [node for node in self.nodes if node.state is NodeState.RELEASED]

    def to_record(self) -> dict[str, Any]:
        record: dict[str, Any] = {
            "id": self.id,
            "type": self.kind,
            "state": self.state.value,
            "created_at": self.created_at,
            "nodes": [node.to_record() for node in self.nodes],
        }
        for name in ("name", "completed_at", "cancelled_at"):
            value = getattr(self, name)
            if value is not None:
                record[name] = value
        return record

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Workflow:
        return cls(
            id=record["id"],
            kind=record["type"],
            name=record.get("name"),
            state=WorkflowState(record["state"]),
            created_at=record["created_at"],
            nodes=tuple(Node.from_record(node) for node in record["nodes"]),
            completed_at=record.get("completed_at"),
            cancelled_at=record.get("cancelled_at"),
        )


def is_settled_record(record: dict[str, Any]) -> bool:
    """:attr:`Workflow.settled` of a stored record, without building the workflow."""
    return record.get("state") != WorkflowState.RUNNING and all(
        node.get("state") != NodeState.RELEASED for node in record.get("nodes", ())
    )


@dataclass(frozen=True, slots=True)
class Transition:
    workflow: Workflow
    release: tuple[Node, ...] = ()
    """Nodes that became released: their jobs are to be enqueued now."""


# -- definitions ------------------------------------------------------------------------


def parse_workflow(body: object, now: int, make_id: Callable[[], str] = new_id) -> Workflow:
    """Validate a create request (ojs-workflows §3–§6) and build the workflow, its first
    nodes released. Raises :class:`InvalidWorkflow` listing every violation."""
    problems: list[dict[str, str]] = []

    def bad(path: str, message: str) -> None:
        problems.append({"path": path, "message": message})

    if not isinstance(body, dict):
        raise InvalidWorkflow(
            "Workflow validation failed: the workflow must be a JSON object.",
            details={"validation_errors": [{"path": "$", "message": "must be an object"}]},
        )
    kind = body.get("type")
    if kind not in KINDS:
        bad("$.type", f"is required and must be one of {', '.join(KINDS)}")
    name = body.get("name")
    if name is not None and not isinstance(name, str):
        bad("$.name", "must be a string")
        name = None
    if "id" in body:
        bad("$.id", "workflow ids are assigned by the server")
    defaults = body.get("options")
    if defaults is not None and not isinstance(defaults, dict):
        bad("$.options", "must be an object")
        defaults = None
    members = "steps" if kind == "chain" else "jobs"
    other = "jobs" if kind == "chain" else "steps"
    if kind in KINDS and other in body:
        bad(f"$.{other}", f"a {kind} workflow takes '{members}', not '{other}'")
    if kind != "batch" and "callbacks" in body:
        bad("$.callbacks", "only batch workflows have callbacks")

    specs: list[tuple[str, int, str, object]] = []  # role, index, path, request
    listed = body.get(members)
    if kind in KINDS:
        if not isinstance(listed, list) or not listed:
            bad(f"$.{members}", f"{members} array must contain at least one element")
        else:
            specs.extend(
                ("step" if kind == "chain" else "job", i, f"$.{members}[{i}]", item)
                for i, item in enumerate(listed)
            )
    if kind == "batch":
        callbacks = body.get("callbacks")
        if not isinstance(callbacks, dict) or not any(c in callbacks for c in CALLBACKS):
            bad("$.callbacks", f"must be an object with at least one of {', '.join(CALLBACKS)}")
        else:
            for key in callbacks:
                if key not in CALLBACKS:
                    bad(f"$.callbacks.{key}", f"unknown callback; use {', '.join(CALLBACKS)}")
            specs.extend(
                (role, i, f"$.callbacks.{role}", callbacks[role])
                for i, role in enumerate(c for c in CALLBACKS if c in callbacks)
            )
    if len(specs) > MAX_JOBS:
        bad(f"$.{members}", f"a workflow may hold at most {MAX_JOBS} jobs")
        specs = []

    workflow_id = make_id()
    nodes: list[Node] = []
    for role, index, path, spec in specs:
        request = _job_request(spec, path, defaults, now, bad)
        if request is not None:
            node_name = spec.get("name") if isinstance(spec, dict) else None
            nodes.append(Node(role, index, make_id(), request, name=node_name))
    if problems:
        raise InvalidWorkflow(
            f"Workflow validation failed: {problems[0]['path']}: "
            + problems[0]["message"].rstrip(".")
            + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else "")
            + ".",
            details={"validation_errors": problems},
        )
    assert isinstance(kind, str)
    created = Workflow(workflow_id, kind, name, WorkflowState.RUNNING, now, tuple(nodes))
    return _evaluate(created, list(created.nodes), now)


def _job_request(
    spec: object,
    path: str,
    defaults: dict[str, Any] | None,
    now: int,
    bad: Callable[[str, str], None],
) -> dict[str, Any] | None:
    if not isinstance(spec, dict):
        bad(path, "must be a job envelope (an object with 'type' and 'args')")
        return None
    if spec.get("type") in KINDS and ("steps" in spec or "jobs" in spec):
        bad(path, "nested workflows are not supported (maximum nesting depth is 1)")
        return None
    if "id" in spec:
        bad(f"{path}.id", "job ids inside a workflow are assigned by the server")
        return None
    if spec.get("name") is not None and not isinstance(spec.get("name"), str):
        bad(f"{path}.name", "must be a string")
        return None
    request = {key: value for key, value in spec.items() if key != "name"}
    if defaults:
        options = request.get("options")
        request["options"] = (
            {**defaults, **options}
            if isinstance(options, dict)
            else (defaults if options is None else options)
        )
    try:
        parse_enqueue(request, now)
    except OJSError as error:
        field = error.details.get("field")
        bad(f"{path}.{field}" if isinstance(field, str) else path, error.message)
        return None
    return request


# -- the state machine --------------------------------------------------------------------


def advance(workflow: Workflow, outcomes: Sequence[tuple[str, Outcome]], now: int) -> Transition:
    """Record how jobs ended and decide what runs next.

    Outcomes for unknown jobs, or for nodes not ``released``, are ignored (a node's
    end is final), so replaying a notification is harmless."""
    nodes = list(workflow.nodes)
    position = {node.job_id: i for i, node in enumerate(nodes)}
    changed = False
    for job_id, outcome in outcomes:
        i = position.get(job_id)
        if i is None or nodes[i].state is not NodeState.RELEASED:
            continue
        state = outcome.state
        if state is NodeState.CANCELLED and workflow.state is WorkflowState.RUNNING:
            state = NodeState.FAILED  # cancelled on its own, not by the workflow: a failure
        nodes[i] = replace(
            nodes[i],
            state=state,
            finished_at=outcome.at,
            started_at=outcome.started_at,
            attempt=outcome.attempt,
            result=outcome.result,
            error=outcome.error,
        )
        changed = True
    if not changed:
        return Transition(workflow)
    before = {node.job_id for node in workflow.released()}
    nxt = _evaluate(workflow, nodes, now)
    return Transition(nxt, tuple(n for n in nxt.released() if n.job_id not in before))


def cancel(workflow: Workflow, now: int) -> Workflow:
    """The workflow is cancelled: nodes not yet released never will be. Released nodes
    stay released until their jobs end; the caller cancels those jobs (an attempt in
    progress may finish, ojs-workflows §11.3). :class:`Conflict` if already terminal."""
    if workflow.state.terminal:
        raise Conflict(
            f"Workflow {workflow.id} is already in terminal state '{workflow.state.value}'.",
            details={"workflow_id": workflow.id, "current_state": workflow.state.value},
        )
    nodes = tuple(
        replace(node, state=NodeState.CANCELLED, finished_at=now)
        if node.state is NodeState.WAITING
        else node
        for node in workflow.nodes
    )
    return replace(
        workflow,
        state=WorkflowState.CANCELLED,
        nodes=nodes,
        cancelled_at=now,
        completed_at=now,
    )


def _release(node: Node, now: int) -> Node:
    return replace(node, state=NodeState.RELEASED, released_at=now)


def _finish(workflow: Workflow, nodes: list[Node], state: WorkflowState, now: int) -> Workflow:
    return replace(workflow, state=state, nodes=tuple(nodes), completed_at=now)


def _evaluate(workflow: Workflow, nodes: list[Node], now: int) -> Workflow:
    """Apply the primitive's rules (ojs-workflows §4.3, §5.3, §6.4, §8.3) to ``nodes``."""
    if workflow.state is not WorkflowState.RUNNING:
        return replace(workflow, nodes=tuple(nodes))
    if workflow.kind == "chain":
        for i, node in enumerate(nodes):
            if node.state is NodeState.COMPLETED:
                continue
            if node.state is NodeState.WAITING:
                nodes[i] = _release(node, now)
            elif node.state.finished:  # failed: the chain stops, later steps never run
                for j in range(i + 1, len(nodes)):
                    nodes[j] = replace(nodes[j], state=NodeState.CANCELLED, finished_at=now)
                return _finish(workflow, nodes, WorkflowState.FAILED, now)
            return replace(workflow, nodes=tuple(nodes))
        return _finish(workflow, nodes, WorkflowState.COMPLETED, now)

    jobs = [i for i, node in enumerate(nodes) if not node.is_callback]
    for i in jobs:
        if nodes[i].state is NodeState.WAITING:
            nodes[i] = _release(nodes[i], now)
    if not all(nodes[i].state.finished for i in jobs):
        return replace(workflow, nodes=tuple(nodes))
    all_succeeded = all(nodes[i].state is NodeState.COMPLETED for i in jobs)
    if workflow.kind == "group":
        state = WorkflowState.COMPLETED if all_succeeded else WorkflowState.FAILED
        return _finish(workflow, nodes, state, now)

    # A batch: once every job has ended, its callbacks fire by the matrix of §6.5, and
    # the batch ends when they have (failed if a callback failed, §8.3).
    for i, node in enumerate(nodes):
        if node.is_callback and node.state is NodeState.WAITING:
            fires = node.role == "on_complete" or (node.role == "on_success") == all_succeeded
            nodes[i] = (
                _release(node, now)
                if fires
                else replace(node, state=NodeState.SKIPPED, finished_at=now)
            )
    callbacks = [node for node in nodes if node.is_callback]
    if not all(node.state.finished for node in callbacks):
        return replace(workflow, nodes=tuple(nodes))
    failed = any(node.state in (NodeState.FAILED, NodeState.CANCELLED) for node in callbacks)
    return _finish(
        workflow, nodes, WorkflowState.FAILED if failed else WorkflowState.COMPLETED, now
    )


# -- jobs ---------------------------------------------------------------------------------


def _result(node: Node) -> Any:
    return node.result if node.result is not NO_RESULT else None


def parent_results(workflow: Workflow, node: Node) -> list[Any] | None:
    """The results a node's job receives (ojs-workflows §7): for chain step N those of
    steps 0…N-1, for a batch callback those of every batch job, each by index."""
    if node.role == "step":
        return [_result(n) for n in workflow.nodes if n.role == "step" and n.index < node.index]
    if node.is_callback:
        return [_result(n) for n in workflow.nodes if not n.is_callback]
    return None


def job_request(workflow: Workflow, node: Node) -> dict[str, Any]:
    """The enqueue request of a node's job: always the same for a released node, since
    the results it is given come from nodes that have ended for good."""
    request = {**node.request, "id": node.job_id, WORKFLOW_ID_FIELD: workflow.id}
    results = parent_results(workflow, node)
    if results is not None:
        request[PARENT_RESULTS_FIELD] = results
    return request


def build_job(workflow: Workflow, node: Node, now: int) -> Job:
    return parse_enqueue(job_request(workflow, node), now)


# -- the wire view ------------------------------------------------------------------------


def _node_view(node: Node, live: Job | None) -> dict[str, Any]:
    state = node.state.value
    started_at = node.started_at
    if node.state is NodeState.RELEASED:
        state = "pending"
        if live is not None:
            outcome = outcome_of(live)
            if outcome is not None:
                state = outcome.state.value
            elif live.state is State.ACTIVE:
                state = "active"
            started_at = live.started_at
    view: dict[str, Any] = {"index": node.index, "type": node.request.get("type"), "state": state}
    if node.name is not None:
        view["name"] = node.name
    view["job_id"] = node.job_id if node.released_at is not None else None
    if node.result is not NO_RESULT:
        view["result"] = node.result
    if node.error is not None:
        view["error"] = node.error
    for key, value in (("started_at", started_at), ("completed_at", node.finished_at)):
        if value is not None and node.released_at is not None:
            view[key] = format_ms(value)
    return view


def render(workflow: Workflow, live: Mapping[str, Job | None] | None = None) -> dict[str, Any]:
    """The ``workflow`` object of the HTTP binding. ``live`` holds the current versions of
    released nodes' jobs, to tell ``pending`` from ``active``."""
    live = live or {}
    members = [node for node in workflow.nodes if not node.is_callback]
    views = [_node_view(node, live.get(node.job_id)) for node in members]
    completed = sum(node.state is NodeState.COMPLETED for node in members)
    failed = [node for node in workflow.nodes if node.state is NodeState.FAILED]
    starts = [v["started_at"] for v in views if "started_at" in v]
    metadata: dict[str, Any] = {
        "created_at": format_ms(workflow.created_at),
        "job_count": len(members),
        "completed_count": completed,
        "failed_count": sum(node.state is NodeState.FAILED for node in members),
    }
    if starts:
        metadata["started_at"] = min(starts)
    view: dict[str, Any] = {
        "id": workflow.id,
        "type": workflow.kind,
        "name": workflow.name,
        "state": workflow.state.value,
    }
    if workflow.kind == "chain":
        view.update(steps_total=len(members), steps_completed=completed, steps=views)
    else:
        view.update(jobs_total=len(members), jobs_completed=completed, jobs=views)
    if workflow.kind == "batch":
        view["callbacks"] = {
            node.role: _node_view(node, live.get(node.job_id))
            for node in workflow.nodes
            if node.is_callback
        }
    view["created_at"] = metadata["created_at"]
    for key, value in (
        ("completed_at", workflow.completed_at),
        ("cancelled_at", workflow.cancelled_at),
    ):
        if value is not None:
            view[key] = metadata[key] = format_ms(value)
    if failed:
        if workflow.kind == "chain":
            metadata["failed_step_index"] = failed[0].index
        metadata["failed_job_ids"] = [node.job_id for node in failed]
        metadata["errors"] = [
            {
                "job_id": node.job_id,
                "code": (node.error or {}).get("code", "handler_error"),
                "message": (node.error or {}).get("message", ""),
                "attempt": node.attempt,
                **({"callback": node.role} if node.is_callback else {}),
            }
            for node in failed
        ]
    view["metadata"] = metadata
    return view


__all__ = [
    "CALLBACKS", "KINDS", "PARENT_RESULTS_FIELD", "SNAPSHOT_PREFIX", "WORKFLOW_ID_FIELD", "Node",
    "NodeState", "Outcome", "Transition", "Workflow", "WorkflowState", "advance", "build_job",
    "cancel", "is_settled_record", "job_request", "outcome_of", "parent_results",
    "parse_workflow", "refused", "render", "snapshot_key",
]  # fmt: skip
