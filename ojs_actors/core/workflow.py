"""Workflows: chain, group and batch (ojs-workflows) and DAGs (ojs-http-binding §14.1),
their definitions and their pure state machine.

A workflow is a tuple of *nodes*, one per job it may ever run: the steps of a
chain or DAG, the jobs of a group or batch, and a batch's callbacks. Every node's
job id is allocated when the workflow is created, so the record persisted before
anything is enqueued already names every job the workflow can create: enqueueing
a node a second time (after a crash) is a harmless duplicate, never a second job.

A node depends on other nodes (``depends_on``, their positions): a DAG step on
the steps its ``depends_on`` names, chain step N on step N-1, a group's or
batch's job on none. A node is released once every node it depends on completed;
one whose dependency failed (or was cancelled or skipped) is cancelled and never
runs, and so, in turn, are its own dependents. Nodes independent of a failure
keep running, as a group's jobs do (ojs-workflows §9.3): the workflow ends
``failed`` once nothing runs any more. A batch's callbacks wait for every job
and fire by their own rules.

Nodes move ``waiting -> released -> completed | failed | cancelled``; a batch
callback whose condition does not hold ends ``skipped``. ``released`` means "its
job is to exist": whoever runs the workflow enqueues each released node whose job
is not there yet. Results are passed on in the job envelope as
``parent_results``: a chain step gets the results of every step before it in
order (``[]`` for step 0), a DAG step those of the steps it depends on in its
``depends_on`` order (``[]`` for a root), and a batch callback those of every
batch job in order (``null`` for a job without one). ``workflow_id`` on the
envelope names the owning workflow.

:func:`advance` and :func:`cancel` take a workflow and an event and return the
next workflow (inputs are never mutated) and the nodes that became released.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from .errors import Conflict, InvalidWorkflow, OJSError
from .ids import new_id
from .job import NO_RESULT, Job
from .progress import view as progress_view
from .states import State
from .timefmt import format_ms
from .validation import parse_enqueue

KINDS = ("chain", "group", "batch")
"""The ``type`` of a create request; a request without one, with ``steps``, is a DAG."""
DAG = "dag"
"""The kind of a workflow created without ``type`` (ojs-http-binding §14.1)."""
DAG_STEP_FIELDS = ("id", "depends_on")
"""The fields of a DAG step that place it in the graph; the rest is its job's request."""
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
    step_id: str | None = None
    """A DAG step's ``id``."""
    depends_on: tuple[int, ...] = ()
    """The positions of the nodes it waits for, in the order the definition lists them."""
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
        for name in ("name", "step_id", "released_at", "started_at", "finished_at", "error"):
            value = getattr(self, name)
            if value is not None:
                record[name] = value
        if self.depends_on:
            record["depends_on"] = list(self.depends_on)
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
            step_id=record.get("step_id"),
            depends_on=tuple(record.get("depends_on", ())),
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
    """``chain``, ``group``, ``batch`` or ``dag``."""
    name: str | None
    state: WorkflowState
    created_at: int
    nodes: tuple[Node, ...]
    completed_at: int | None = None
    cancelled_at: int | None = None
    finished_at: int | None = None
    """When it became settled; retention counts from there."""

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
        for name in ("name", "completed_at", "cancelled_at", "finished_at"):
            value = getattr(self, name)
            if value is not None:
                record[name] = value
        return record

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Workflow:
        nodes = [Node.from_record(node) for node in record["nodes"]]
        if record["type"] == "chain":  # records written before nodes had edges
            nodes = [replace(node, depends_on=_chained(node.index)) for node in nodes]
        return cls(
            id=record["id"],
            kind=record["type"],
            name=record.get("name"),
            state=WorkflowState(record["state"]),
            created_at=record["created_at"],
            nodes=tuple(nodes),
            completed_at=record.get("completed_at"),
            cancelled_at=record.get("cancelled_at"),
            finished_at=record.get("finished_at"),
        )


@dataclass(frozen=True, slots=True)
class Transition:
    workflow: Workflow
    release: tuple[Node, ...] = ()
    """Nodes that became released: their jobs are to be enqueued now."""


# -- definitions ------------------------------------------------------------------------


def parse_workflow(body: object, now: int, make_id: Callable[[], str] = new_id) -> Workflow:
    """Validate a create request (ojs-workflows §3–§6, ojs-http-binding §14.1) and build the
    workflow, its first nodes released. Raises :class:`InvalidWorkflow` listing every
    violation."""
    problems: list[dict[str, str]] = []

    def bad(path: str, message: str) -> None:
        problems.append({"path": path, "message": message})

    if not isinstance(body, dict):
        raise InvalidWorkflow(
            "Workflow validation failed: the workflow must be a JSON object.",
            details={"validation_errors": [{"path": "$", "message": "must be an object"}]},
        )
    kind = _kind_of(body, bad)
    name = body.get("name")
    if name is not None and not isinstance(name, str):
        bad("$.name", "must be a string")
        name = None
    elif name is None and kind == DAG:
        bad("$.name", "is required for a DAG workflow (ojs-http-binding §14.1)")
    if "id" in body:
        bad("$.id", "workflow ids are assigned by the server")
    defaults = body.get("options")
    if defaults is not None and not isinstance(defaults, dict):
        bad("$.options", "must be an object")
        defaults = None
    members = "steps" if kind in ("chain", DAG) else "jobs"
    other = "jobs" if members == "steps" else "steps"
    if kind is not None and other in body:
        bad(f"$.{other}", f"a {kind} workflow takes '{members}', not '{other}'")
    if kind != "batch" and "callbacks" in body:
        bad("$.callbacks", "only batch workflows have callbacks")

    specs: list[tuple[str, int, str, object]] = []  # role, index, path, request
    listed = body.get(members)
    if kind is not None:
        if not isinstance(listed, list) or not listed:
            bad(f"$.{members}", f"{members} array must contain at least one element")
        else:
            specs.extend(
                ("job" if members == "jobs" else "step", i, f"$.{members}[{i}]", item)
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
    graph = _dag_graph([spec for _, _, _, spec in specs], bad) if kind == DAG else None

    workflow_id = make_id()
    nodes: list[Node] = []
    for role, index, path, spec in specs:
        step_id: str | None = None
        depends_on = _chained(index) if kind == "chain" else ()
        if graph is not None:
            step_id, depends_on = graph[index]
            if isinstance(spec, dict):
                spec = {key: value for key, value in spec.items() if key not in DAG_STEP_FIELDS}
        request = _job_request(spec, path, defaults, now, bad)
        if request is not None:
            node_name = spec.get("name") if isinstance(spec, dict) else None
            nodes.append(
                Node(
                    role,
                    index,
                    make_id(),
                    request,
                    name=node_name,
                    step_id=step_id,
                    depends_on=depends_on,
                )
            )
    if problems:
        raise InvalidWorkflow(
            f"Workflow validation failed: {problems[0]['path']}: "
            + problems[0]["message"].rstrip(".")
            + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else "")
            + ".",
            details={"validation_errors": problems},
        )
    assert kind is not None
    created = Workflow(workflow_id, kind, name, WorkflowState.RUNNING, now, tuple(nodes))
    return _evaluate(created, list(created.nodes), now)


def _kind_of(body: dict[str, Any], bad: Callable[[str, str], None]) -> str | None:
    kind = body.get("type")
    if kind is None and "steps" in body:
        return DAG
    if kind in KINDS:
        assert isinstance(kind, str)
        return kind
    bad(
        "$.type",
        f"must be one of {', '.join(KINDS)}; without 'type', 'steps' naming each other "
        "by 'id' in 'depends_on' form a DAG (ojs-http-binding §14.1)",
    )
    return None


def _chained(index: int) -> tuple[int, ...]:
    """What chain step ``index`` depends on: the step before it."""
    return (index - 1,) if index > 0 else ()


def _dag_graph(
    steps: Sequence[object], bad: Callable[[str, str], None]
) -> list[tuple[str | None, tuple[int, ...]]]:
    """Each DAG step's ``id`` and the positions of the steps its ``depends_on`` names, in
    that order; reports ids that are missing or not unique, dependencies that are not
    step ids, and cycles."""
    ids: list[str | None] = []
    position: dict[str, int] = {}
    for i, step in enumerate(steps):
        step_id = step.get("id") if isinstance(step, dict) else None
        if not isinstance(step, dict):
            ids.append(None)  # reported as not a job envelope
        elif not isinstance(step_id, str) or not step_id:
            bad(f"$.steps[{i}].id", "is required: a non-empty string naming the step")
            ids.append(None)
        elif step_id in position:
            bad(f"$.steps[{i}].id", f"'{step_id}' is the id of $.steps[{position[step_id]}] too")
            ids.append(None)
        else:
            position[step_id] = i
            ids.append(step_id)
    edges = [
        _dependencies(step, f"$.steps[{i}].depends_on", ids[i], position, bad)
        for i, step in enumerate(steps)
    ]
    cycle = _a_cycle(edges)
    if cycle:
        names = " -> ".join(f"'{ids[i]}'" for i in [*cycle, cycle[0]])
        bad(
            f"$.steps[{cycle[0]}].depends_on",
            f"the steps depend on each other in a cycle ({names}, each depending on the next)",
        )
    return list(zip(ids, edges, strict=True))


def _dependencies(
    step: object,
    path: str,
    step_id: str | None,
    position: Mapping[str, int],
    bad: Callable[[str, str], None],
) -> tuple[int, ...]:
    listed = step.get("depends_on") if isinstance(step, dict) else None
    if listed is None:  # a root; §14.1 lists `"depends_on": []`, absent or null is taken alike
        return ()
    if not isinstance(listed, list):
        bad(path, "must be an array of step ids")
        return ()
    found: list[int] = []
    for j, name in enumerate(listed):
        if not isinstance(name, str) or not name:
            bad(f"{path}[{j}]", "must be a step id (a non-empty string)")
        elif name == step_id:
            bad(f"{path}[{j}]", "a step cannot depend on itself")
        elif name not in position:
            bad(f"{path}[{j}]", f"no step has the id '{name}'")
        elif position[name] in found:
            bad(f"{path}[{j}]", f"'{name}' is listed more than once")
        else:
            found.append(position[name])
    return tuple(found)


def _topological_order(edges: Sequence[Sequence[int]]) -> list[int]:
    """Positions ordered so that each comes after every position it depends on (Kahn's
    algorithm); those on a cycle, or depending on one, are left out."""
    dependents: list[list[int]] = [[] for _ in edges]
    unmet = [len(depends_on) for depends_on in edges]
    for i, depends_on in enumerate(edges):
        for dependency in depends_on:
            dependents[dependency].append(i)
    ready = deque(i for i, count in enumerate(unmet) if count == 0)
    order: list[int] = []
    while ready:
        i = ready.popleft()
        order.append(i)
        for dependent in dependents[i]:
            unmet[dependent] -= 1
            if unmet[dependent] == 0:
                ready.append(dependent)
    return order


def _a_cycle(edges: Sequence[Sequence[int]]) -> list[int]:
    """One cycle of the graph (each position depending on the next, the last on the
    first), or ``[]`` if it has none."""
    left = set(range(len(edges))).difference(_topological_order(edges))
    if not left:
        return []
    # Every position left out depends on another one left out: follow those to a repeat.
    path: list[int] = []
    seen: dict[int, int] = {}
    i = min(left)
    while i not in seen:
        seen[i] = len(path)
        path.append(i)
        i = next(dependency for dependency in edges[i] if dependency in left)
    return path[seen[i] :]


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
    nxt = _stamp_finished(_evaluate(workflow, nodes, now), now)
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
    cancelled = replace(
        workflow, state=WorkflowState.CANCELLED, nodes=nodes, cancelled_at=now, completed_at=now
    )
    return _stamp_finished(cancelled, now)


def _stamp_finished(workflow: Workflow, now: int) -> Workflow:
    """``workflow`` with :attr:`Workflow.finished_at` set if it has just settled."""
    if workflow.finished_at is None and workflow.settled:
        return replace(workflow, finished_at=now)
    return workflow


def _release(node: Node, now: int) -> Node:
    return replace(node, state=NodeState.RELEASED, released_at=now)


def _finish(workflow: Workflow, nodes: list[Node], state: WorkflowState, now: int) -> Workflow:
    return replace(workflow, state=state, nodes=tuple(nodes), completed_at=now)


def _follow_dependencies(nodes: list[Node], now: int) -> None:
    """Release each waiting node whose dependencies all completed; cancel each one with a
    dependency that ended otherwise (it never runs). Visiting the nodes in dependency
    order carries a cancellation down to every dependent in one pass."""
    for i in _topological_order([node.depends_on for node in nodes]):
        node = nodes[i]
        if node.state is not NodeState.WAITING or node.is_callback:
            continue
        states = [nodes[dependency].state for dependency in node.depends_on]
        if all(state is NodeState.COMPLETED for state in states):
            nodes[i] = _release(node, now)
        elif any(state.finished and state is not NodeState.COMPLETED for state in states):
            nodes[i] = replace(node, state=NodeState.CANCELLED, finished_at=now)


def _evaluate(workflow: Workflow, nodes: list[Node], now: int) -> Workflow:
    """Apply the primitive's rules (ojs-workflows §4.3, §5.3, §6.4, §8.3, §9) to ``nodes``."""
    if workflow.state is not WorkflowState.RUNNING:
        return replace(workflow, nodes=tuple(nodes))
    _follow_dependencies(nodes, now)
    jobs = [i for i, node in enumerate(nodes) if not node.is_callback]
    if not all(nodes[i].state.finished for i in jobs):
        return replace(workflow, nodes=tuple(nodes))
    all_succeeded = all(nodes[i].state is NodeState.COMPLETED for i in jobs)
    if workflow.kind != "batch":
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
    """The results a node's job receives (ojs-workflows §7): for a DAG step those of the
    steps it depends on, in its ``depends_on`` order; for chain step N those of steps
    0…N-1; for a batch callback those of every batch job, each by index."""
    if workflow.kind == DAG:
        return [_result(workflow.nodes[dependency]) for dependency in node.depends_on]
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


def _shown_state(node: Node, live: Job | None, *, dag: bool) -> tuple[str, int | None]:
    """The state a node is shown in, and when its job started. A DAG step (ojs-http-binding
    §14.1) waiting for its dependencies is ``pending``, and once released shows its job's
    state (``available``, ``scheduled``, ``active``…); a chain, group or batch member
    waiting its turn is ``waiting``, and ``pending`` until its job is ``active``."""
    if node.state is NodeState.WAITING:
        return ("pending" if dag else "waiting"), node.started_at
    if node.state is not NodeState.RELEASED or live is None:
        return (node.state.value if node.state.finished else "pending"), node.started_at
    outcome = outcome_of(live)
    if outcome is not None:
        return outcome.state.value, live.started_at
    if dag or live.state is State.ACTIVE:
        return live.state.value, live.started_at
    return "pending", live.started_at


def _job_fields(node: Node, started_at: int | None) -> dict[str, Any]:
    """A node's job, once released: its id, how it ended, when it started and ended."""
    fields: dict[str, Any] = {"job_id": node.job_id if node.released_at is not None else None}
    if node.result is not NO_RESULT:
        fields["result"] = node.result
    if node.error is not None:
        fields["error"] = node.error
    for key, value in (("started_at", started_at), ("completed_at", node.finished_at)):
        if value is not None and node.released_at is not None:
            fields[key] = format_ms(value)
    return fields


def _node_view(node: Node, live: Job | None) -> dict[str, Any]:
    state, started_at = _shown_state(node, live, dag=False)
    view: dict[str, Any] = {"index": node.index, "type": node.request.get("type"), "state": state}
    if node.name is not None:
        view["name"] = node.name
    return {**view, **_job_fields(node, started_at)}


def _step_view(workflow: Workflow, node: Node, live: Job | None) -> dict[str, Any]:
    """A DAG step as ojs-http-binding §14.1–§14.2 show it."""
    state, started_at = _shown_state(node, live, dag=True)
    view: dict[str, Any] = {"id": node.step_id, "type": node.request.get("type"), "state": state}
    if node.name is not None:
        view["name"] = node.name
    view.update(_job_fields(node, started_at))
    view["depends_on"] = [workflow.nodes[dependency].step_id for dependency in node.depends_on]
    return view


def render(workflow: Workflow, live: Mapping[str, Job | None] | None = None) -> dict[str, Any]:
    """The ``workflow`` object of the HTTP binding. ``live`` holds the current versions of
    released nodes' jobs, to tell ``pending`` from ``active``."""
    live = live or {}
    members = [node for node in workflow.nodes if not node.is_callback]
    if workflow.kind == DAG:
        views = [_step_view(workflow, node, live.get(node.job_id)) for node in members]
    else:
        views = [_node_view(node, live.get(node.job_id)) for node in members]
    completed = sum(node.state is NodeState.COMPLETED for node in members)
    starts = [v["started_at"] for v in views if "started_at" in v]
    metadata: dict[str, Any] = {
        "created_at": format_ms(workflow.created_at),
        "job_count": len(members),
        "completed_count": completed,
        "failed_count": sum(node.state is NodeState.FAILED for node in members),
    }
    if starts:
        metadata["started_at"] = min(starts)
    view: dict[str, Any] = {"id": workflow.id}
    if workflow.kind != DAG:  # §14.1 shows a DAG without one (its request has none)
        view["type"] = workflow.kind
    view.update(name=workflow.name, state=workflow.state.value)
    if workflow.kind == DAG:
        view["steps"] = views
    elif workflow.kind == "chain":
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
    if workflow.kind == DAG and workflow.state is WorkflowState.CANCELLED:  # §14.3
        view["steps_cancelled"] = sum(node.state is NodeState.CANCELLED for node in members)
        view["steps_already_completed"] = completed
    metadata.update(_failures(workflow))
    view["metadata"] = metadata
    return view


def render_progress(
    workflow: Workflow, live: Mapping[str, Job | None] | None = None
) -> dict[str, Any]:
    """``GET /ojs/v1/workflows/{id}/progress`` (ojs-progress §9): each member's progress
    (1.0 once completed, its job's latest report while released, else null) and the
    aggregate of §9.1: a batch's share of completed jobs; a chain's completed steps plus
    its current step's part (the mean of its steps' progress, unreported ones as 0), and
    likewise the mean for a group and a DAG."""
    live = live or {}
    members = [node for node in workflow.nodes if not node.is_callback]
    steps = [_progress_step(node, live.get(node.job_id), workflow.kind == DAG) for node in members]
    if workflow.kind == "batch":
        done = sum(node.state is NodeState.COMPLETED for node in members)
        aggregate = done / len(members) if members else 1.0
    else:
        parts = [step["progress"] or 0.0 for step in steps]
        aggregate = sum(parts) / len(parts) if parts else 1.0
    return {
        "workflow_id": workflow.id,
        "type": workflow.kind,
        "state": workflow.state.value,
        "progress": round(aggregate, 4),
        "steps": steps,
    }


def _progress_step(node: Node, live: Job | None, dag: bool) -> dict[str, Any]:
    state, _ = _shown_state(node, live, dag=dag)
    step: dict[str, Any] = {"id": node.step_id} if dag else {"index": node.index}
    if node.name is not None:
        step["name"] = node.name
    step.update(
        job_id=node.job_id if node.released_at is not None else None,
        type=node.request.get("type"),
        state=state,
        progress=None,
    )
    shown = (
        None
        if live is None
        else progress_view(live.progress, live.state, live.attempt, live.started_at)
    )
    if shown is not None:
        step["progress"] = shown["progress"]
        step.update({key: shown[key] for key in ("message", "data") if shown[key] is not None})
    if node.state is NodeState.COMPLETED or state == NodeState.COMPLETED.value:
        step["progress"] = 1.0
    return step


def _failures(workflow: Workflow) -> dict[str, Any]:
    """What ojs-workflows §9.6 asks a workflow to report of its failed jobs."""
    failed = [node for node in workflow.nodes if node.state is NodeState.FAILED]
    if not failed:
        return {}
    report: dict[str, Any] = {}
    if workflow.kind == "chain":
        report["failed_step_index"] = failed[0].index
    report["failed_job_ids"] = [node.job_id for node in failed]
    report["errors"] = [
        {
            "job_id": node.job_id,
            **({"step_id": node.step_id} if node.step_id is not None else {}),
            "code": (node.error or {}).get("code", "handler_error"),
            "message": (node.error or {}).get("message", ""),
            "attempt": node.attempt,
            **({"callback": node.role} if node.is_callback else {}),
        }
        for node in failed
    ]
    return report


__all__ = [
    "CALLBACKS", "DAG", "KINDS", "PARENT_RESULTS_FIELD", "SNAPSHOT_PREFIX", "WORKFLOW_ID_FIELD",
    "Node", "NodeState", "Outcome", "Transition", "Workflow", "WorkflowState", "advance",
    "build_job", "cancel", "job_request", "outcome_of", "parent_results",
    "parse_workflow", "refused", "render", "render_progress", "snapshot_key",
]  # fmt: skip
