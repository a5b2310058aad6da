"""DAG workflows (ojs-http-binding §14): steps naming each other in ``depends_on``.

The pure state machine on its own (validation, release order, ``parent_results``,
failure propagation, records); then the WorkflowActors in the real system (the
in-memory backend, trio's autojump clock), including a killed actor, a restarted
system and two systems on one backend; then real ``ojs-actors serve`` processes on
memory, SQLite and Redis, driven over HTTP as a worker would, one of them SIGKILLed.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
import trio.testing
from serving import HTTP_PATHS, OjsServer
from test_http import assert_error, call
from test_shared_backend import two_systems
from test_workflows import FAIL, GatedBackend, ids, nothing_in, outcome, settle, work

from ojs_actors import MemoryBackend, State, open_system
from ojs_actors.core.errors import InvalidWorkflow
from ojs_actors.core.workflow import (
    Node,
    NodeState,
    Workflow,
    WorkflowState,
    advance,
    job_request,
    parse_workflow,
    render,
)
from ojs_actors.http import HttpSettings, create_app
from ojs_actors.system import Settings, System


def dag_step(step_id: str, *depends_on: str, queue: str = "dag", **fields: Any) -> dict[str, Any]:
    return {
        "id": step_id,
        "type": f"dag.{step_id.replace('-', '_')}",
        "args": [step_id],
        "depends_on": list(depends_on),
        "options": {"queue": queue},
        **fields,
    }


def dag(*steps: dict[str, Any], name: str = "test-dag") -> dict[str, Any]:
    return {"name": name, "steps": list(steps)}


def onboarding(queue: str = "email") -> dict[str, Any]:
    """The request of ojs-http-binding §14.1: two roots, one join."""
    return {
        "name": "onboarding-pipeline",
        "steps": [
            {"id": "send-welcome", "type": "email.send",
             "args": ["user@example.com", "welcome", {"locale": "en"}], "depends_on": []},
            {"id": "create-profile", "type": "user.create_profile",
             "args": ["user@example.com", {"plan": "free"}], "depends_on": []},
            {"id": "send-confirmation", "type": "email.send",
             "args": ["user@example.com", "profile_ready", {"locale": "en"}],
             "depends_on": ["send-welcome", "create-profile"]},
        ],
        "options": {"queue": queue},
    }  # fmt: skip


def by_step(workflow: Workflow) -> dict[str | None, Node]:
    return {node.step_id: node for node in workflow.nodes}


def states(workflow: Workflow) -> dict[str | None, NodeState]:
    return {node.step_id: node.state for node in workflow.nodes}


# -- the pure core: validation ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "path", "message"),
    [
        (
            dag(dag_step("a", "b"), dag_step("b", "a")),
            "$.steps[0].depends_on",
            "cycle ('a' -> 'b' -> 'a'",
        ),
        (
            dag(dag_step("a"), dag_step("b", "a", "d"), dag_step("c", "b"), dag_step("d", "c")),
            "$.steps[1].depends_on",
            "cycle ('b' -> 'd' -> 'c' -> 'b'",
        ),
        (dag(dag_step("a", "a")), "$.steps[0].depends_on[0]", "cannot depend on itself"),
        (
            dag(dag_step("a"), dag_step("b", "nope")),
            "$.steps[1].depends_on[0]",
            "no step has the id 'nope'",
        ),
        (dag(dag_step("a"), dag_step("a")), "$.steps[1].id", "'a' is the id of $.steps[0] too"),
        (dag(dag_step("a"), dag_step("b", "a", "a")), "$.steps[1].depends_on[1]", "more than once"),
        (dag({**dag_step("a"), "id": ""}), "$.steps[0].id", "non-empty string"),
        (dag({**dag_step("a"), "id": 7}), "$.steps[0].id", "non-empty string"),
        (
            dag({k: v for k, v in dag_step("a").items() if k != "id"}),
            "$.steps[0].id",
            "is required",
        ),
        (
            dag(dag_step("a"), {**dag_step("b"), "depends_on": "a"}),
            "$.steps[1].depends_on",
            "array",
        ),
        (
            dag(dag_step("a"), {**dag_step("b"), "depends_on": [1]}),
            "$.steps[1].depends_on[0]",
            "step id",
        ),
        ({"steps": [dag_step("a")]}, "$.name", "required"),
        ({**dag(dag_step("a")), "jobs": []}, "$.jobs", "takes 'steps'"),
        ({**dag(dag_step("a")), "callbacks": {}}, "$.callbacks", "only batch"),
        ({**dag(dag_step("a")), "type": "dag"}, "$.type", "without 'type'"),
        (dag(), "$.steps", "at least one"),
        (dag({**dag_step("a"), "args": "x"}), "$.steps[0].args", "array"),
    ],
)
def test_invalid_dags_are_refused_with_each_violation(
    body: dict[str, Any], path: str, message: str
) -> None:
    with pytest.raises(InvalidWorkflow) as raised:
        parse_workflow(body, 0)
    error = raised.value
    assert error.code == "invalid_workflow" and error.status == 400
    problems = {
        problem["path"]: problem["message"] for problem in error.details["validation_errors"]
    }
    assert path in problems, problems
    assert message in problems[path]


def test_every_violation_is_listed_at_once() -> None:
    body = dag(dag_step("a", "a"), dag_step("a", "x"), dag_step("c", "d"), dag_step("d", "c"))
    with pytest.raises(InvalidWorkflow) as raised:
        parse_workflow(body, 0)
    paths = [problem["path"] for problem in raised.value.details["validation_errors"]]
    assert paths == [
        "$.steps[1].id",
        "$.steps[0].depends_on[0]",
        "$.steps[1].depends_on[0]",
        "$.steps[2].depends_on",
    ]
    assert raised.value.message.startswith("Workflow validation failed: $.steps[1].id:")


def test_a_step_may_be_listed_before_the_steps_it_depends_on() -> None:
    workflow = parse_workflow(dag(dag_step("last", "first"), dag_step("first")), 0, ids())
    assert states(workflow) == {"last": NodeState.WAITING, "first": NodeState.RELEASED}
    assert workflow.nodes[0].depends_on == (1,)


def test_absent_or_null_depends_on_makes_a_root_and_options_merge() -> None:
    body = {
        "name": "roots",
        "steps": [
            {"id": "a", "type": "dag.a", "args": []},
            {"id": "b", "type": "dag.b", "args": [], "depends_on": None,
             "options": {"priority": 5}},
        ],
        "options": {"queue": "shared", "priority": 1},
    }  # fmt: skip
    workflow = parse_workflow(body, 0, ids())
    assert [node.state for node in workflow.nodes] == [NodeState.RELEASED] * 2
    a, b = (job_request(workflow, node) for node in workflow.nodes)
    assert a["options"] == {"queue": "shared", "priority": 1}
    assert b["options"] == {"queue": "shared", "priority": 5}  # per-step options override
    assert "depends_on" not in a and a["parent_results"] == []


# -- the pure core: running ----------------------------------------------------------------------


def diamond() -> Workflow:
    """a, fanning out to b and c, which join in d (depending on c first, then b)."""
    return parse_workflow(
        dag(dag_step("a"), dag_step("b", "a"), dag_step("c", "a"), dag_step("d", "c", "b")),
        0,
        ids(),
    )


def test_steps_start_when_all_their_dependencies_completed_and_get_their_results() -> None:
    workflow = diamond()
    a, b, c, d = workflow.nodes
    assert [node.job_id for node in workflow.released()] == [a.job_id]
    assert job_request(workflow, a)["parent_results"] == []  # a root: as chain step 0
    moved = advance(workflow, [(a.job_id, outcome(NodeState.COMPLETED, "A"))], 1)
    assert [node.job_id for node in moved.release] == [b.job_id, c.job_id]  # fan-out
    assert job_request(moved.workflow, moved.release[1])["parent_results"] == ["A"]
    moved = advance(moved.workflow, [(b.job_id, outcome(NodeState.COMPLETED, {"b": 1}))], 2)
    assert moved.release == ()  # d still waits for c
    assert by_step(moved.workflow)["d"].state is NodeState.WAITING
    moved = advance(moved.workflow, [(c.job_id, outcome(NodeState.COMPLETED, None))], 3)
    assert [node.job_id for node in moved.release] == [d.job_id]  # fan-in
    request = job_request(moved.workflow, moved.release[0])
    assert request["parent_results"] == [None, {"b": 1}]  # in d's depends_on order: c, b
    assert request["id"] == d.job_id and request["workflow_id"] == workflow.id
    done = advance(moved.workflow, [(d.job_id, outcome(NodeState.COMPLETED, "D"))], 4).workflow
    assert done.state is WorkflowState.COMPLETED and done.completed_at == 4 and done.settled


def test_a_failed_step_cancels_its_dependents_and_independent_branches_run_on() -> None:
    """a -> b -> c fails at a; x -> y does not depend on it and runs to its end, then the
    workflow fails (as a group with a failed job, ojs-workflows §9.3)."""
    workflow = parse_workflow(
        dag(dag_step("a"), dag_step("b", "a"), dag_step("c", "b", "x"), dag_step("x"),
            dag_step("y", "x")),
        0,
        ids(),
    )  # fmt: skip
    nodes = by_step(workflow)
    failed = advance(workflow, [(nodes["a"].job_id, outcome(NodeState.FAILED))], 1)
    assert failed.release == ()
    assert states(failed.workflow) == {
        "a": NodeState.FAILED, "b": NodeState.CANCELLED, "c": NodeState.CANCELLED,
        "x": NodeState.RELEASED, "y": NodeState.WAITING,
    }  # fmt: skip
    assert failed.workflow.state is WorkflowState.RUNNING  # x is still running
    moved = advance(failed.workflow, [(nodes["x"].job_id, outcome(NodeState.COMPLETED, 1))], 2)
    assert [node.step_id for node in moved.release] == ["y"]
    assert moved.workflow.state is WorkflowState.RUNNING
    ended = advance(moved.workflow, [(nodes["y"].job_id, outcome(NodeState.COMPLETED))], 3)
    assert ended.workflow.state is WorkflowState.FAILED and ended.workflow.settled
    view = render(ended.workflow)
    assert view["metadata"]["failed_job_ids"] == [nodes["a"].job_id]
    assert view["metadata"]["errors"][0]["step_id"] == "a"
    assert [step["state"] for step in view["steps"]] == [
        "failed", "cancelled", "cancelled", "completed", "completed",
    ]  # fmt: skip
    assert view["steps"][1]["job_id"] is None  # never ran


def test_a_step_cancelled_on_its_own_fails_the_workflow() -> None:
    workflow = parse_workflow(dag(dag_step("a"), dag_step("b", "a")), 0, ids())
    a = workflow.nodes[0]
    moved = advance(workflow, [(a.job_id, outcome(NodeState.CANCELLED))], 1).workflow
    assert states(moved) == {"a": NodeState.FAILED, "b": NodeState.CANCELLED}
    assert moved.state is WorkflowState.FAILED


def test_the_wire_view_follows_the_http_binding() -> None:
    workflow = parse_workflow(onboarding(), 1_000, ids())
    view = render(workflow)
    assert "type" not in view  # a DAG request has none (§14.1)
    assert view["id"] == workflow.id and view["name"] == "onboarding-pipeline"
    assert view["state"] == "running" and view["created_at"] == "1970-01-01T00:00:01.000Z"
    welcome, profile, confirmation = view["steps"]
    assert welcome == {
        "id": "send-welcome", "type": "email.send", "state": "pending",
        "job_id": workflow.nodes[0].job_id, "depends_on": [],
    }  # fmt: skip  # released, but no live job given: pending until it is stored
    assert profile["depends_on"] == [] and profile["job_id"] == workflow.nodes[1].job_id
    assert confirmation == {
        "id": "send-confirmation", "type": "email.send", "state": "pending", "job_id": None,
        "depends_on": ["send-welcome", "create-profile"],
    }  # fmt: skip


def test_dag_records_round_trip_and_old_chain_records_still_read() -> None:
    workflow = diamond()
    moved = advance(workflow, [(workflow.nodes[0].job_id, outcome(NodeState.COMPLETED, 1))], 5)
    assert Workflow.from_record(moved.workflow.to_record()) == moved.workflow
    chain = parse_workflow({"type": "chain", "steps": [{"type": "c.a", "args": []}] * 3}, 0, ids())
    assert [node.depends_on for node in chain.nodes] == [(), (0,), (1,)]
    old = chain.to_record()
    for node in old["nodes"]:  # as written before nodes had edges
        node.pop("depends_on", None)
    assert Workflow.from_record(old) == chain


# -- the actor system ---------------------------------------------------------------------------


@pytest.fixture
async def system() -> Any:
    async with open_system(GatedBackend()) as opened:
        yield opened


async def run_roots(system: System, workflow_id: str) -> dict[str, Any]:
    """Claim both roots of the onboarding DAG; returns the claimed jobs by type."""
    claimed = await system.fetch(["email"], count=10, worker_id="w1")
    assert sorted(job.type for job in claimed) == ["email.send", "user.create_profile"]
    assert all(job.extra["workflow_id"] == workflow_id for job in claimed)
    assert all(job.extra["parent_results"] == [] for job in claimed)
    return {job.type: job for job in claimed}


async def test_a_dag_runs_in_dependency_order(system: System, autojump_clock: Any) -> None:
    created = await system.create_workflow(onboarding())
    assert [s["state"] for s in created["steps"]] == ["available", "available", "pending"]
    roots = await run_roots(system, created["id"])
    await system.ack(roots["user.create_profile"].id, {"profile": 1})
    await nothing_in(system, "email")  # the join waits for its other dependency
    info = await system.workflow_info(created["id"])
    assert [s["state"] for s in info["steps"]] == ["active", "completed", "pending"]
    await system.ack(roots["email.send"].id, {"message_id": "m-1"})
    join = await work(system, "email")
    assert join.args == ["user@example.com", "profile_ready", {"locale": "en"}]
    assert join.extra["parent_results"] == [{"message_id": "m-1"}, {"profile": 1}]
    await system.ack(join.id, "sent")
    await settle()
    info = await system.workflow_info(created["id"])
    assert info["state"] == "completed" and "completed_at" in info
    assert [s["job_id"] for s in info["steps"]] == [
        roots["email.send"].id, roots["user.create_profile"].id, join.id,
    ]  # fmt: skip
    assert info["steps"][2]["result"] == "sent"
    assert f"workflow:{created['id']}" not in system.workflows


async def test_a_failed_root_fails_the_join_and_the_dag(
    system: System, autojump_clock: Any
) -> None:
    created = await system.create_workflow(onboarding())
    roots = await run_roots(system, created["id"])
    await system.nack(roots["email.send"].id, {**FAIL, "retryable": False})
    await settle()
    info = await system.workflow_info(created["id"])
    assert info["state"] == "running"  # create-profile still runs
    assert [s["state"] for s in info["steps"]] == ["failed", "active", "cancelled"]
    await system.ack(roots["user.create_profile"].id)
    await nothing_in(system, "email")
    info = await system.workflow_info(created["id"])
    assert info["state"] == "failed"
    assert info["metadata"]["errors"][0]["step_id"] == "send-welcome"


async def test_cancel_stops_a_dag(system: System, autojump_clock: Any) -> None:
    created = await system.create_workflow(onboarding())
    roots = await run_roots(system, created["id"])
    await system.ack(roots["email.send"].id)
    await settle()
    cancelled = await system.cancel_workflow(created["id"])
    assert cancelled["state"] == "cancelled" and "cancelled_at" in cancelled
    assert cancelled["steps_cancelled"] == 1 and cancelled["steps_already_completed"] == 1
    await system.ack(roots["user.create_profile"].id)  # an attempt in progress may finish
    await nothing_in(system, "email")
    info = await system.workflow_info(created["id"])
    assert [s["state"] for s in info["steps"]] == ["completed", "completed", "cancelled"]
    assert info["steps"][2]["job_id"] is None


@pytest.mark.parametrize("gate", ["before_save", "after_save"])
async def test_a_killed_actor_resumes_the_dag_without_repeating_a_step(
    system: System, autojump_clock: Any, gate: str
) -> None:
    backend = system.backend
    assert isinstance(backend, GatedBackend)
    created = await system.create_workflow(onboarding())
    child = f"workflow:{created['id']}"
    roots = await run_roots(system, created["id"])
    await system.ack(roots["email.send"].id, "welcome")
    await settle()
    # The second root's progress is held around its write, and the actor killed there.
    release = trio.Event()
    setattr(backend, f"hold_{gate}", release)
    backend.held = trio.Event()
    await system.ack(roots["user.create_profile"].id, "profile")
    await backend.held.wait()
    first = system.workflows.child(child)
    system.workflows.kill_child(child)
    await settle()
    assert system.workflows.child(child) is not first  # restarted, and resumed
    release.set()
    join = await work(system, "email")
    assert join.extra["parent_results"] == ["welcome", "profile"]
    await nothing_in(system, "email")  # the join exists exactly once
    assert await backend.count_jobs("email") == {State.COMPLETED: 2, State.ACTIVE: 1}
    await system.ack(join.id)
    await settle()
    assert (await system.workflow_info(created["id"]))["state"] == "completed"


async def test_a_restarted_system_resumes_an_unfinished_dag(autojump_clock: Any) -> None:
    backend = MemoryBackend()
    settings = Settings(poll_interval=0.5)
    async with open_system(backend, settings=settings) as system:
        created = await system.create_workflow(onboarding())
        roots = await run_roots(system, created["id"])
        await system.ack(roots["email.send"].id, "welcome")
        await settle()
        await system.ack(roots["user.create_profile"].id, "profile")
        # The server dies before the workflow heard of the second ack: the notice is lost.
        system._inbox.drop_pending()
    async with open_system(backend, settings=settings) as system:
        join = await work(system, "email")  # resumed at start, caught up with the backend
        assert join.extra["parent_results"] == ["welcome", "profile"]
        await system.ack(join.id)
        await nothing_in(system, "email")
        assert (await system.workflow_info(created["id"]))["state"] == "completed"


async def test_roots_acked_through_two_systems_release_the_join_once(
    autojump_clock: Any,
) -> None:
    """Each system's actor has a copy in which the other's root still runs: the second
    write loses its compare-and-set, reloads, and releases the join exactly once."""
    async with two_systems() as (a, b):
        created = await a.create_workflow(onboarding())
        roots = await run_roots(a, created["id"])
        await b.ack(roots["email.send"].id, "welcome")
        await trio.testing.wait_all_tasks_blocked()
        await a.ack(roots["user.create_profile"].id, "profile")
        await trio.testing.wait_all_tasks_blocked()
        join = await work(a, "email")
        assert join.extra["parent_results"] == ["welcome", "profile"]
        assert await a.fetch(["email"], count=10) == [] and await b.fetch(["email"], count=10) == []
        await b.ack(join.id)
        await trio.testing.wait_all_tasks_blocked()
        for system in (a, b):
            assert (await system.workflow_info(created["id"]))["state"] == "completed"


async def test_http_refuses_an_invalid_dag_on_both_paths(
    system: System, autojump_clock: Any
) -> None:
    for direct in (True, False):
        client = create_app(system, HttpSettings(direct_routes=direct)).test_client()
        cyclic = dag(dag_step("a", "b"), dag_step("b", "a"))
        error = assert_error(
            await call(client, "POST", "/ojs/v1/workflows", json=cyclic), 400, "invalid_workflow"
        )
        [problem] = error["details"]["validation_errors"]
        assert problem["path"] == "$.steps[0].depends_on" and "cycle" in problem["message"]
        reply = await call(client, "POST", "/ojs/v1/workflows", json=onboarding())
        assert reply.status == 201, reply.body
        assert reply.headers["Location"] == f"/ojs/v1/workflows/{reply.body['workflow']['id']}"


# -- real servers over HTTP ------------------------------------------------------------------------

BACKENDS = ["memory", "sqlite", "redis"]
DURABLE = ["sqlite", "redis"]


@dataclass(frozen=True)
class Storage:
    """How to start a server on a backend (and, for durable ones, again on the same data)."""

    args: list[str]
    env: dict[str, str]


def storage_for(request: pytest.FixtureRequest, tmp_path: Path) -> Storage:
    backend: str = request.param
    if backend == "sqlite":
        return Storage(["--backend", "sqlite", "--db", str(tmp_path / "ojs.db")], {})
    if backend == "redis":
        return Storage(["--backend", "redis"], {"REDIS_URL": request.getfixturevalue("redis_url")})
    return Storage(["--backend", "memory"], {})


@pytest.fixture(params=BACKENDS)
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Storage]:
    yield storage_for(request, tmp_path)
    log = tmp_path / "server.log"
    if log.exists():
        text = log.read_text(errors="replace")
        assert "Traceback" not in text, f"server logged an error:\n{text}"


@pytest.fixture(params=DURABLE)
def durable(request: pytest.FixtureRequest, tmp_path: Path) -> Storage:
    return storage_for(request, tmp_path)


def start(storage: Storage, log: Path, *, direct: bool = True) -> OjsServer:
    args = [*storage.args, *HTTP_PATHS["direct" if direct else "quart"]]
    return OjsServer(args, log, env=storage.env, poll_interval=0.2)


def fetch(client: httpx.Client, wait_ms: int = 0) -> list[dict[str, Any]]:
    response = client.post(
        "/ojs/v1/workers/fetch",
        json={"queues": ["email"], "count": 10, "worker_id": "w1", "wait_ms": wait_ms},
    )
    assert response.status_code == 200, response.text
    jobs: list[dict[str, Any]] = response.json()["jobs"]
    return jobs


def ack(client: httpx.Client, job_id: str, result: Any) -> None:
    response = client.post("/ojs/v1/workers/ack", json={"job_id": job_id, "result": result})
    assert response.status_code == 200, response.text


def workflow_view(client: httpx.Client, workflow_id: str) -> dict[str, Any]:
    response = client.get(f"/ojs/v1/workflows/{workflow_id}")
    assert response.status_code == 200, response.text
    view: dict[str, Any] = response.json()["workflow"]
    return view


def settled_view(client: httpx.Client, workflow_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    view = workflow_view(client, workflow_id)
    while view["state"] == "running" and time.monotonic() < deadline:
        time.sleep(0.05)
        view = workflow_view(client, workflow_id)
    return view


def create_onboarding(client: httpx.Client) -> dict[str, Any]:
    response = client.post("/ojs/v1/workflows", json=onboarding())
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()["workflow"]
    assert response.headers["Location"] == f"/ojs/v1/workflows/{created['id']}"
    return created


def claim_roots(client: httpx.Client) -> dict[str, dict[str, Any]]:
    roots = fetch(client)
    assert sorted(job["type"] for job in roots) == ["email.send", "user.create_profile"]
    assert all(job["parent_results"] == [] for job in roots)
    return {job["type"]: job for job in roots}


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX processes")
@pytest.mark.parametrize("direct", [True, False], ids=["direct", "quart"])
def test_the_onboarding_dag_over_http(storage: Storage, tmp_path: Path, direct: bool) -> None:
    """ojs-http-binding §14.1 as a worker sees it: the join is fetchable only once both
    roots were acked, and gets their results in its depends_on order. Fetch and ack go
    through the direct path of the served app, or through Quart."""
    server = start(storage, tmp_path / "server.log", direct=direct)
    try:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            created = create_onboarding(client)
            steps = created["steps"]
            assert [s["id"] for s in steps] == [
                "send-welcome",
                "create-profile",
                "send-confirmation",
            ]
            assert [s["state"] for s in steps] == ["available", "available", "pending"]
            assert [s["depends_on"] for s in steps] == [
                [], [], ["send-welcome", "create-profile"],
            ]  # fmt: skip
            roots = claim_roots(client)
            welcome, profile = roots["email.send"], roots["user.create_profile"]
            assert [s["job_id"] for s in steps] == [welcome["id"], profile["id"], None]
            assert all(job["workflow_id"] == created["id"] for job in roots.values())

            ack(client, profile["id"], {"profile_id": "p-1"})  # the second dependency first
            assert fetch(client, wait_ms=500) == []  # the join waits for send-welcome
            view = workflow_view(client, created["id"])
            assert [s["state"] for s in view["steps"]] == ["active", "completed", "pending"]
            assert view["steps"][1]["result"] == {"profile_id": "p-1"}
            assert "started_at" in view["steps"][1] and "completed_at" in view["steps"][1]
            assert view["steps"][2]["job_id"] is None

            ack(client, welcome["id"], {"message_id": "m-1"})
            [join] = fetch(client, wait_ms=5_000)
            assert join["type"] == "email.send" and join["args"][1] == "profile_ready"
            assert join["parent_results"] == [{"message_id": "m-1"}, {"profile_id": "p-1"}]
            view = workflow_view(client, created["id"])
            assert view["steps"][2]["job_id"] == join["id"]
            assert view["steps"][2]["state"] == "active"
            ack(client, join["id"], "sent")
            view = settled_view(client, created["id"])
            assert view["state"] == "completed", view
            assert [s["state"] for s in view["steps"]] == ["completed"] * 3
            assert [s["job_id"] for s in view["steps"]] == [
                welcome["id"],
                profile["id"],
                join["id"],
            ]
            assert fetch(client) == []
    finally:
        server.stop()


@pytest.mark.skipif(sys.platform == "win32", reason="needs SIGKILL")
def test_a_dag_carries_on_after_a_sigkill(durable: Storage, tmp_path: Path) -> None:
    """One root acked, the server SIGKILLed while the other runs; restarted on its storage,
    acking the other root releases the join with both results, once."""
    log = tmp_path / "server.log"
    server = start(durable, log)
    try:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            created = create_onboarding(client)
            roots = claim_roots(client)
            ack(client, roots["email.send"]["id"], "welcome")
            assert fetch(client, wait_ms=300) == []
        server.kill()
        server = start(durable, log)
        with httpx.Client(base_url=server.url, timeout=10) as client:
            ack(client, roots["user.create_profile"]["id"], "profile")
            [join] = fetch(client, wait_ms=5_000)
            assert join["parent_results"] == ["welcome", "profile"]
            ack(client, join["id"], None)
            assert settled_view(client, created["id"])["state"] == "completed"
            assert fetch(client, wait_ms=300) == []
    finally:
        server.stop()
