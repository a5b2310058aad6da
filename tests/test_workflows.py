"""Level 3 workflows: chain, group, batch.

The pure state machine on its own; then the WorkflowActors in the real system (the
in-memory backend, trio's autojump clock), playing the worker with fetch/ack/nack,
including crashes of a workflow's actor and of the whole server; then the HTTP routes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
import trio
from test_http import assert_error, call

from ojs_actors import MemoryBackend, State, open_system
from ojs_actors.core import Conflict, Job, NotFound
from ojs_actors.core.errors import BackendUnavailable, InvalidWorkflow
from ojs_actors.core.workflow import (
    NodeState,
    Outcome,
    Workflow,
    WorkflowState,
    advance,
    job_request,
    parse_workflow,
    render,
)
from ojs_actors.http import HttpSettings, create_app
from ojs_actors.system import Settings, System


def step(job_type: str, queue: str = "wf", **options: Any) -> dict[str, Any]:
    return {"type": job_type, "args": [job_type], "options": {"queue": queue, **options}}


def chain(*types: str, **options: Any) -> dict[str, Any]:
    return {"type": "chain", "name": "test-chain", "steps": [step(t, **options) for t in types]}


def batch(*types: str, **callbacks: dict[str, Any]) -> dict[str, Any]:
    return {"type": "batch", "jobs": [step(t) for t in types], "callbacks": callbacks}


FAIL = {"code": "handler_error", "message": "boom"}


async def settle() -> None:
    await trio.testing.wait_all_tasks_blocked()


async def work(system: System, queue: str = "wf") -> Job:
    """Claim exactly one job of ``queue`` (waiting for it to appear)."""
    claimed = await system.fetch([queue], worker_id="w1", wait=5)
    assert len(claimed) == 1, claimed
    return claimed[0]


async def nothing_in(system: System, queue: str = "wf") -> None:
    await settle()
    assert await system.fetch([queue], count=10) == []


# -- the pure core ---------------------------------------------------------------------------


def ids() -> Any:
    counter = iter(range(1000))
    return lambda: f"id-{next(counter)}"


def outcome(state: NodeState, result: Any = None) -> Outcome:
    return Outcome(state, 0, result) if state is NodeState.COMPLETED else Outcome(state, 0)


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"jobs": [step("a")]}, "$.type"),
        ({"steps": [step("a")]}, "$.steps[0].id"),  # without a type: a DAG (test_dag_workflows)
        ({"type": "dag", "steps": [step("a")]}, "$.type"),
        ({"type": "chain", "steps": []}, "$.steps"),
        ({"type": "chain", "jobs": [step("a")]}, "$.steps"),
        ({"type": "group", "jobs": "x"}, "$.jobs"),
        ({"type": "group", "jobs": [step("a")], "callbacks": {}}, "$.callbacks"),
        ({"type": "batch", "jobs": [step("a")]}, "$.callbacks"),
        (
            {"type": "batch", "jobs": [step("a")], "callbacks": {"on_done": step("b")}},
            "$.callbacks",
        ),
        ({"type": "group", "jobs": [{"type": "Not.Valid", "args": []}]}, "$.jobs[0].type"),
        ({"type": "group", "jobs": [{"type": "a.b"}]}, "$.jobs[0].args"),
        ({"type": "group", "jobs": [{**step("a"), "id": "x"}]}, "$.jobs[0].id"),
        ({"type": "chain", "steps": [{"type": "group", "jobs": [step("a")]}]}, "$.steps[0]"),
        ({"type": "chain", "id": "mine", "steps": [step("a")]}, "$.id"),
    ],
)
def test_invalid_definitions_list_each_violation(body: dict[str, Any], path: str) -> None:
    with pytest.raises(InvalidWorkflow) as raised:
        parse_workflow(body, 0)
    error = raised.value
    assert error.code == "invalid_workflow" and error.status == 400
    assert path in [problem["path"] for problem in error.details["validation_errors"]]


def test_a_chain_releases_one_step_at_a_time_and_passes_every_result_on() -> None:
    workflow = parse_workflow(chain("a.zero", "a.one", "a.two"), 0, ids())
    assert [node.state for node in workflow.nodes] == [
        NodeState.RELEASED,
        NodeState.WAITING,
        NodeState.WAITING,
    ]
    first, second, third = workflow.nodes
    assert job_request(workflow, first)["parent_results"] == []
    moved = advance(workflow, [(first.job_id, outcome(NodeState.COMPLETED, {"r": 0}))], 1)
    assert [node.job_id for node in moved.release] == [second.job_id]
    moved = advance(moved.workflow, [(second.job_id, outcome(NodeState.COMPLETED, "one"))], 2)
    request = job_request(moved.workflow, moved.release[0])
    assert request["parent_results"] == [{"r": 0}, "one"]
    assert request["id"] == third.job_id and request["workflow_id"] == workflow.id
    done = advance(moved.workflow, [(third.job_id, outcome(NodeState.COMPLETED))], 3).workflow
    assert done.state is WorkflowState.COMPLETED and done.settled
    assert render(done)["steps_completed"] == 3


def test_a_failed_step_stops_the_chain_and_replays_are_ignored() -> None:
    workflow = parse_workflow(chain("a.zero", "a.one", "a.two"), 0, ids())
    first = workflow.nodes[0]
    failed = advance(workflow, [(first.job_id, outcome(NodeState.FAILED))], 1)
    assert failed.release == ()
    assert failed.workflow.state is WorkflowState.FAILED
    assert [n.state for n in failed.workflow.nodes[1:]] == [NodeState.CANCELLED] * 2
    replay = advance(failed.workflow, [(first.job_id, outcome(NodeState.COMPLETED))], 2)
    assert replay.workflow is failed.workflow and replay.release == ()
    view = render(failed.workflow)
    assert view["metadata"]["failed_step_index"] == 0
    assert view["metadata"]["failed_job_ids"] == [first.job_id]
    assert view["steps"][1]["job_id"] is None


def test_batch_callbacks_follow_the_matrix_and_get_every_result() -> None:
    callbacks = {name: step(f"cb.{name}") for name in ("on_complete", "on_success", "on_failure")}
    workflow = parse_workflow(batch("b.one", "b.two", **callbacks), 0, ids())
    one, two = workflow.nodes[:2]
    assert {n.job_id for n in workflow.released()} == {one.job_id, two.job_id}
    moved = advance(
        workflow,
        [(one.job_id, outcome(NodeState.COMPLETED, 1)), (two.job_id, outcome(NodeState.FAILED))],
        1,
    )
    assert sorted(node.role for node in moved.release) == ["on_complete", "on_failure"]
    roles = {node.role: node for node in moved.workflow.nodes}
    assert roles["on_success"].state is NodeState.SKIPPED
    assert job_request(moved.workflow, roles["on_failure"])["parent_results"] == [1, None]
    assert moved.workflow.state is WorkflowState.RUNNING  # until the callbacks have run
    finished = advance(
        moved.workflow, [(node.job_id, outcome(NodeState.COMPLETED)) for node in moved.release], 2
    )
    # ojs-workflows §8.3: the batch's state follows its callbacks.
    assert finished.workflow.state is WorkflowState.COMPLETED
    assert render(finished.workflow)["metadata"]["failed_count"] == 1


def test_workflow_records_round_trip() -> None:
    workflow = parse_workflow(batch("b.one", on_complete=step("cb.done")), 0, ids())
    moved = advance(workflow, [(workflow.nodes[0].job_id, outcome(NodeState.COMPLETED, [1]))], 5)
    assert Workflow.from_record(moved.workflow.to_record()) == moved.workflow


# -- the actor system -------------------------------------------------------------------------


class GatedBackend(MemoryBackend):
    """The in-memory backend with gates that hold a workflow's snapshot writes."""

    def __init__(self) -> None:
        super().__init__()
        self.hold_before_save: trio.Event | None = None
        self.hold_after_save: trio.Event | None = None
        self.hold_insert: trio.Event | None = None
        self.held = trio.Event()

    async def save_snapshot(self, key: str, state: dict[str, Any]) -> None:
        if key.startswith("workflow:") and self.hold_before_save is not None:
            gate, self.hold_before_save = self.hold_before_save, None
            self.held.set()
            await gate.wait()
        await super().save_snapshot(key, state)
        if key.startswith("workflow:") and self.hold_after_save is not None:
            gate, self.hold_after_save = self.hold_after_save, None
            self.held.set()
            await gate.wait()

    async def insert_jobs(self, jobs: Sequence[Job], *, atomic: bool = False) -> Any:
        if self.hold_insert is not None and any("workflow_id" in job.extra for job in jobs):
            gate, self.hold_insert = self.hold_insert, None
            self.held.set()
            await gate.wait()
        return await super().insert_jobs(jobs, atomic=atomic)


@pytest.fixture
async def system() -> AsyncIterator[System]:
    async with open_system(GatedBackend()) as opened:
        yield opened


async def test_chain_runs_in_order_and_passes_results(system: System, autojump_clock: Any) -> None:
    created = await system.create_workflow(chain("c.zero", "c.one", "c.two"))
    assert created["state"] == "running" and created["steps_total"] == 3
    assert [s["state"] for s in created["steps"]] == ["pending", "waiting", "waiting"]
    zero = await work(system)
    assert zero.type == "c.zero" and zero.extra["workflow_id"] == created["id"]
    assert zero.extra["parent_results"] == []
    await nothing_in(system)  # the next step waits for this one
    await system.ack(zero.id, {"report_id": "R-1"})
    one = await work(system)
    assert one.type == "c.one" and one.to_wire()["parent_results"] == [{"report_id": "R-1"}]
    info = await system.workflow_info(created["id"])
    assert info["steps"][0]["state"] == "completed" and info["steps"][1]["state"] == "active"
    await system.ack(one.id, 2)
    two = await work(system)
    assert two.extra["parent_results"] == [{"report_id": "R-1"}, 2]
    await system.ack(two.id)
    await settle()
    done = await system.workflow_info(created["id"])
    assert done["state"] == "completed" and done["steps_completed"] == 3
    assert [s["job_id"] for s in done["steps"]] == [zero.id, one.id, two.id]
    # A settled workflow's actor is retired; its snapshot stays.
    assert f"workflow:{created['id']}" not in system.workflows


async def test_chain_stops_on_failure_but_not_on_a_retry(
    system: System, autojump_clock: Any
) -> None:
    created = await system.create_workflow(
        {
            "type": "chain",
            "steps": [
                step("c.zero", retry={"max_attempts": 2, "initial_interval": "PT1S"}),
                step("c.one", retry={"max_attempts": 1}),
                step("c.two"),
            ],
        }
    )
    zero = await work(system)
    await system.nack(zero.id, FAIL)  # retryable: not a workflow failure
    await settle()
    assert (await system.workflow_info(created["id"]))["state"] == "running"
    again = await work(system)
    assert again.id == zero.id
    await system.ack(again.id)
    one = await work(system)
    assert (await system.nack(one.id, FAIL)).state is State.DISCARDED
    await nothing_in(system)
    info = await system.workflow_info(created["id"])
    assert info["state"] == "failed" and info["steps_completed"] == 1
    assert [s["state"] for s in info["steps"]] == ["completed", "failed", "cancelled"]
    assert info["metadata"]["failed_step_index"] == 1
    assert info["metadata"]["errors"][0]["message"] == "boom"


async def test_scheduler_transitions_reach_the_workflow(
    system: System, autojump_clock: Any
) -> None:
    created = await system.create_workflow(
        chain("c.zero", "c.one", visibility_timeout_ms=1000, retry={"max_attempts": 1})
    )
    await work(system)  # and never answered: the lease expires on the last attempt
    await trio.sleep(2)
    await nothing_in(system)
    assert (await system.workflow_info(created["id"]))["state"] == "failed"


async def test_cancel_stops_the_chain(system: System, autojump_clock: Any) -> None:
    created = await system.create_workflow(chain("c.zero", "c.one", "c.two"))
    await system.ack((await work(system)).id, "done")
    await settle()
    cancelled = await system.cancel_workflow(created["id"])
    assert cancelled["state"] == "cancelled" and "cancelled_at" in cancelled
    await nothing_in(system)
    info = await system.workflow_info(created["id"])
    assert [s["state"] for s in info["steps"]] == ["completed", "cancelled", "cancelled"]
    assert (await system.info(info["steps"][1]["job_id"])).state is State.CANCELLED
    with pytest.raises(Conflict):
        await system.cancel_workflow(created["id"])
    with pytest.raises(NotFound):
        await system.cancel_workflow("no-such-workflow")


async def test_cancel_lets_an_attempt_in_progress_finish_but_never_retries_it(
    system: System,
    autojump_clock: Any,
) -> None:
    created = await system.create_workflow(
        {"type": "group", "jobs": [step("g.a"), step("g.b"), step("g.c")]}
    )
    a = await work(system)
    b = await work(system)
    cancelled = await system.cancel_workflow(created["id"])
    assert [j["state"] for j in cancelled["jobs"]] == ["active", "active", "cancelled"]
    await nothing_in(system)
    assert (await system.ack(a.id, "kept")).state is State.COMPLETED
    assert (await system.nack(b.id, FAIL)).state is State.RETRYABLE
    await settle()
    assert (await system.info(b.id)).state is State.CANCELLED  # no second attempt
    info = await system.workflow_info(created["id"])
    assert info["state"] == "cancelled"
    assert [j["state"] for j in info["jobs"]] == ["completed", "cancelled", "cancelled"]
    assert f"workflow:{created['id']}" not in system.workflows


async def test_group_runs_in_parallel_and_reports_partial_failure(
    system: System, autojump_clock: Any
) -> None:
    created = await system.create_workflow(
        {
            "type": "group",
            "jobs": [step("g.a"), step("g.b", retry={"max_attempts": 1}), step("g.c")],
        }
    )
    assert created["jobs_total"] == 3 and created["jobs_completed"] == 0
    jobs = await system.fetch(["wf"], count=10, worker_id="w1")
    assert [job.type for job in jobs] == ["g.a", "g.b", "g.c"]
    await system.ack(jobs[0].id)
    await system.nack(jobs[1].id, FAIL)
    await settle()
    assert (await system.workflow_info(created["id"]))["state"] == "running"  # c still runs
    await system.ack(jobs[2].id)
    await settle()
    info = await system.workflow_info(created["id"])
    assert info["state"] == "failed" and info["jobs_completed"] == 2
    assert info["metadata"]["failed_job_ids"] == [jobs[1].id]


async def test_group_completes(system: System, autojump_clock: Any) -> None:
    created = await system.create_workflow({"type": "group", "jobs": [step("g.a"), step("g.b")]})
    for job in await system.fetch(["wf"], count=10):
        await system.ack(job.id, job.type)
    await settle()
    info = await system.workflow_info(created["id"])
    assert info["state"] == "completed" and info["jobs_completed"] == 2
    assert [j["result"] for j in info["jobs"]] == ["g.a", "g.b"]


@pytest.mark.parametrize("fail", [False, True])
async def test_batch_callbacks_fire_exactly_once(
    system: System, autojump_clock: Any, fail: bool
) -> None:
    created = await system.create_workflow(
        batch(
            "b.a",
            "b.b",
            on_complete=step("cb.complete", "cb-complete"),
            on_success=step("cb.success", "cb-success"),
            on_failure=step("cb.failure", "cb-failure"),
        )
    )
    first, second = await system.fetch(["wf"], count=10)
    await system.ack(first.id, "a")
    await nothing_in(system, "cb-complete")  # not before every job has ended
    stored = await system.nack(second.id, {**FAIL, "retryable": False}) if fail else None
    if not fail:
        stored = await system.ack(second.id, "b")
    assert stored is not None
    await settle()
    # A replayed notification changes nothing.
    system._inbox.jobs_changed(
        [(State.ACTIVE, stored), (State.ACTIVE, await system.info(first.id))]
    )
    await settle()
    complete = await work(system, "cb-complete")
    assert complete.extra["parent_results"] == ["a", None if fail else "b"]
    fired = await work(system, "cb-failure" if fail else "cb-success")
    await nothing_in(system, "cb-success" if fail else "cb-failure")
    for queue in ("cb-complete", "cb-success", "cb-failure"):
        await nothing_in(system, queue)
    info = await system.workflow_info(created["id"])
    assert info["state"] == "running"  # its callbacks are running
    assert info["callbacks"]["on_success" if fail else "on_failure"]["state"] == "skipped"
    await system.ack(complete.id)
    await system.nack(fired.id, {**FAIL, "retryable": False})
    await settle()
    info = await system.workflow_info(created["id"])
    assert info["state"] == "failed"  # a callback failed (§9.5)
    assert info["metadata"]["errors"][-1]["callback"] == ("on_failure" if fail else "on_success")


# -- crashes and restarts -------------------------------------------------------------------


async def advance_past_step_zero_while_killing(system: System, gate: str) -> tuple[str, Job]:
    """Run a chain to the point where step 0 is acked, and kill the workflow's actor
    while it is held at ``gate`` (``before_save``/``after_save``) of that progress."""
    backend = system.backend
    assert isinstance(backend, GatedBackend)
    created = await system.create_workflow(chain("c.zero", "c.one", "c.two"))
    child = f"workflow:{created['id']}"
    zero = await work(system)
    release = trio.Event()
    setattr(backend, f"hold_{gate}", release)
    backend.held = trio.Event()
    await system.ack(zero.id, "zero")
    await backend.held.wait()
    first = system.workflows.child(child)
    system.workflows.kill_child(child)
    await settle()
    assert system.workflows.child(child) is not first  # restarted, and resumed
    assert (child, True, 1) in system.workflows.which_children()
    release.set()
    return created["id"], zero


@pytest.mark.parametrize("gate", ["before_save", "after_save"])
async def test_a_killed_workflow_actor_resumes_without_repeating_a_step(
    system: System, autojump_clock: Any, gate: str
) -> None:
    workflow_id, _ = await advance_past_step_zero_while_killing(system, gate)
    one = await work(system)
    assert one.type == "c.one" and one.extra["parent_results"] == ["zero"]
    await nothing_in(system)  # step 1 exists exactly once
    assert (await system.backend.count_jobs("wf")) == {State.COMPLETED: 1, State.ACTIVE: 1}
    await system.ack(one.id)
    await system.ack((await work(system)).id)
    await settle()
    info = await system.workflow_info(workflow_id)
    assert info["state"] == "completed"
    assert info["steps"][1]["job_id"] == one.id


async def test_a_killed_enqueue_that_lands_late_is_not_repeated(
    system: System, autojump_clock: Any
) -> None:
    backend = system.backend
    assert isinstance(backend, GatedBackend)
    created = await system.create_workflow(chain("c.zero", "c.one"))
    child = f"workflow:{created['id']}"
    zero = await work(system)
    # The actor's enqueue of step 1 is held inside the queue's actor; the actor is
    # killed meanwhile, and its restart enqueues step 1 again behind the held one.
    release = backend.hold_insert = trio.Event()
    backend.held = trio.Event()
    await system.ack(zero.id, "zero")
    await backend.held.wait()
    system.workflows.kill_child(child)
    await settle()
    release.set()
    one = await work(system)
    assert one.type == "c.one" and one.extra["parent_results"] == ["zero"]
    await nothing_in(system)
    assert (await system.backend.count_jobs("wf")) == {State.COMPLETED: 1, State.ACTIVE: 1}
    assert (child, True, 1) in system.workflows.which_children()


async def test_a_whole_system_restart_resumes_unfinished_workflows(autojump_clock: Any) -> None:
    backend = MemoryBackend()
    settings = Settings(poll_interval=0.5)
    async with open_system(backend, settings=settings) as system:
        created = await system.create_workflow(chain("c.zero", "c.one", "c.two"))
        finished = await system.create_workflow({"type": "group", "jobs": [step("g.x", "other")]})
        await system.ack((await work(system, "other")).id)
        zero = await work(system)
        await system.ack(zero.id, "zero")
        # The server dies before the workflow heard of it: the notice is lost.
        system._inbox.drop_pending()
    async with open_system(backend, settings=settings) as system:
        one = await work(system)  # resumed at start, caught up with the backend
        assert one.type == "c.one" and one.extra["parent_results"] == ["zero"]
        await settle()
        assert f"workflow:{finished['id']}" not in system.workflows
        await system.ack(one.id, "one")
        two = await work(system)
        assert two.extra["parent_results"] == ["zero", "one"]
        await system.ack(two.id)
        await nothing_in(system)
        info = await system.workflow_info(created["id"])
        assert info["state"] == "completed" and info["steps_completed"] == 3


async def test_reset_stops_workflow_actors_and_forgets_workflows(
    system: System, autojump_clock: Any
) -> None:
    created = await system.create_workflow(chain("c.zero", "c.one"))
    assert f"workflow:{created['id']}" in system.workflows
    await system.reset()
    assert [child for child, _, _ in system.workflows.which_children()] == ["keeper"]
    with pytest.raises(NotFound):
        await system.workflow_info(created["id"])


# -- HTTP ---------------------------------------------------------------------------------------


async def test_http_create_get_cancel(system: System, autojump_clock: Any) -> None:
    client = create_app(system, HttpSettings()).test_client()
    reply = await call(client, "POST", "/ojs/v1/workflows", json=chain("h.zero", "h.one"))
    assert reply.status == 201, reply.body
    workflow = reply.body["workflow"]
    assert reply.headers["Location"] == f"/ojs/v1/workflows/{workflow['id']}"
    assert workflow["type"] == "chain" and workflow["state"] == "running"
    assert workflow["steps_total"] == 2 and workflow["steps_completed"] == 0

    reply = await call(client, "POST", "/ojs/v1/workers/fetch", json={"queues": ["wf"]})
    [job] = reply.body["jobs"]
    assert job["workflow_id"] == workflow["id"] and job["parent_results"] == []
    reply = await call(
        client, "POST", "/ojs/v1/workers/ack", json={"job_id": job["id"], "result": {"n": 1}}
    )
    assert reply.status == 200
    await settle()
    reply = await call(client, "GET", f"/ojs/v1/workflows/{workflow['id']}")
    assert reply.status == 200 and reply.body["workflow"]["steps_completed"] == 1

    reply = await call(client, "DELETE", f"/ojs/v1/workflows/{workflow['id']}")
    assert reply.status == 200 and reply.body["workflow"]["state"] == "cancelled"
    assert_error(
        await call(client, "DELETE", f"/ojs/v1/workflows/{workflow['id']}"), 409, "conflict"
    )
    assert_error(await call(client, "GET", "/ojs/v1/workflows/nope"), 404, "not_found")
    assert_error(await call(client, "DELETE", "/ojs/v1/workflows/nope"), 404, "not_found")
    error = assert_error(
        await call(client, "POST", "/ojs/v1/workflows", json={"type": "chain", "steps": []}),
        400,
        "invalid_workflow",
    )
    assert error["details"]["validation_errors"][0]["path"] == "$.steps"


@pytest.mark.parametrize("crashed", ["queue:wf", "keeper", "scheduler"])
async def test_a_notice_lost_to_a_crash_is_caught_up_after_the_restart(
    system: System, autojump_clock: Any, crashed: str
) -> None:
    """A QueueActor (or the Scheduler, or the keeper) that dies between storing a job's
    end and handing its notice to the workflow loses the notice; the restart of that
    actor makes every running workflow catch up with the backend (found by the chaos
    suite: a killed actor left a workflow waiting forever)."""
    created = await system.create_workflow(chain("c.zero", "c.one"))
    zero = await work(system)
    inbox = system._inbox
    hear = inbox.jobs_changed
    inbox.jobs_changed = lambda changes: None  # type: ignore[method-assign]  # the lost notice
    await system.ack(zero.id, "zero")
    inbox.jobs_changed = hear  # type: ignore[method-assign]
    await nothing_in(system)  # unheard: step one not released
    supervisor = system.queues if crashed.startswith("queue:") else system.workflows
    if crashed == "scheduler":
        supervisor = system.root
    supervisor.kill_child(crashed)
    one = await work(system)
    assert one.type == "c.one" and one.extra["parent_results"] == ["zero"]
    await system.ack(one.id)
    await settle()
    assert (await system.workflow_info(created["id"]))["state"] == "completed"


class AwayBackend(MemoryBackend):
    """Answers every snapshot listing (the keeper's start) and versioned snapshot read (a
    WorkflowActor's start) with a 503 while ``away`` (a backend outage)."""

    away = False

    async def list_snapshots(self, prefix: str) -> dict[str, dict[str, Any]]:
        if self.away:
            raise BackendUnavailable("the backend is away")
        return await super().list_snapshots(prefix)

    async def load_snapshot_versioned(self, key: str) -> tuple[dict[str, Any], int] | None:
        if self.away:
            raise BackendUnavailable("the backend is away")
        return await super().load_snapshot_versioned(key)


async def test_a_keeper_restarted_during_an_outage_waits_instead_of_crash_looping(
    autojump_clock: Any,
) -> None:
    """Found by the chaos suite: a keeper restarted while the store was cut failed its
    start-up read at once, again and again, until the workflows supervisor and then the
    root gave up and the server process died."""
    backend = AwayBackend()
    async with open_system(backend) as system:
        created = await system.create_workflow(chain("c.zero", "c.one"))
        backend.away = True
        system.workflows.kill_child("keeper")
        await trio.sleep(30)  # far past the supervisors' restart intensity window
        assert ("keeper", True, 1) in system.workflows.which_children()
        backend.away = False
        await system.ack((await work(system)).id)
        await system.ack((await work(system)).id)
        await settle()
        assert (await system.workflow_info(created["id"]))["state"] == "completed"


async def test_a_workflow_actor_restarted_during_an_outage_does_not_take_the_tree_down(
    autojump_clock: Any,
) -> None:
    """Found by the chaos suite (sqs): a WorkflowActor whose start-up read found the store
    away crash-looped until the workflows supervisor gave up, then the root."""
    backend = AwayBackend()
    async with open_system(backend) as system:
        created = await system.create_workflow(chain("c.zero", "c.one"))
        backend.away = True
        system.workflows.kill_child(f"workflow:{created['id']}")
        await trio.sleep(30)  # far past every restart intensity window
        assert ("workflows", True, 0) in system.root.which_children()  # never escalated
        backend.away = False
        await trio.sleep(5)  # the longest pause between two restarts
        await system.ack((await work(system)).id)
        await system.ack((await work(system)).id)
        await settle()
        assert (await system.workflow_info(created["id"]))["state"] == "completed"
