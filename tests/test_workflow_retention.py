"""Retention of finished workflows (``ojs_actors.system.workflow_index``), on the memory,
SQLite and Redis backends, with trio's autojump clock.

A finished workflow stays readable for ``Settings.workflow_retention``, then is deleted;
start-up reads only the workflows still running; a late notice of a deleted workflow's
job changes nothing; several systems sharing a backend agree.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest
import trio
from test_workflows import chain, step
from trio.testing import MockClock

from ojs_actors import Backend, Job, MemoryBackend, SqliteBackend, State
from ojs_actors.core import NotFound
from ojs_actors.core.workflow import (
    NodeState,
    Outcome,
    WorkflowState,
    advance,
    cancel,
    parse_workflow,
)
from ojs_actors.system import Settings, System, open_system
from ojs_actors.system.workflow_index import BUCKET_MS, CURSOR_KEY, RUNNING_PREFIX, running_key

HOUR = 3_600.0
POLL = 10.0
RETENTION = 600.0
SWEEP_DELAY = 300.0
"""Past retention, by when a finished workflow is gone: two one-minute buckets (the
sweep's margin), a sweep period, and time for the sweep's calls."""

Storage = Callable[[], Backend]
"""Makes a backend over the test's one store (as processes sharing it do)."""


class RecordReads:
    """Counts the workflow records a real backend reads (mixed into its class)."""

    records_read = 0

    async def load_snapshot(self, key: str) -> Any:
        self.records_read += key.startswith("workflow:")
        return await super().load_snapshot(key)  # type: ignore[misc]

    async def load_snapshot_versioned(self, key: str) -> Any:
        self.records_read += key.startswith("workflow:")
        return await super().load_snapshot_versioned(key)  # type: ignore[misc]

    async def list_snapshots(self, prefix: str) -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = await super().list_snapshots(prefix)  # type: ignore[misc]
        self.records_read += sum(key.startswith("workflow:") for key in found)
        return found


class CountingMemory(RecordReads, MemoryBackend):
    pass


class CountingSqlite(RecordReads, SqliteBackend):
    pass


@pytest.fixture(params=["memory", "sqlite", "redis"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def clock(kind: str) -> MockClock:
    """trio's autojump clock. A backend answering from a thread or a socket is idle for a
    moment in real time while it works; jumping then would run the clock ahead of it."""
    return MockClock(autojump_threshold=0 if kind == "memory" else 0.01)


@pytest.fixture
def storage(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> Storage:
    if kind == "memory":
        shared = CountingMemory()
        return lambda: shared
    if kind == "sqlite":
        return lambda: CountingSqlite(tmp_path / "ojs.db", synchronous="normal")
    from ojs_actors.backends.redis import RedisBackend

    class CountingRedis(RecordReads, RedisBackend):
        pass

    url = request.getfixturevalue("redis_url")
    # No socket timeout: it counts trio's clock, which jumps while Redis works.
    return lambda: CountingRedis(url, socket_timeout=None)


def settings(retention: float = RETENTION) -> Settings:
    return Settings(poll_interval=POLL, workflow_retention=retention)


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 60.0) -> None:
    """Wait until ``check()`` holds, looking every few (simulated) seconds."""
    deadline = trio.current_time() + within
    while not await check():
        assert trio.current_time() < deadline, f"not within {within} s"
        await trio.sleep(POLL / 2)


async def work(system: System, queue: str = "wf") -> Job:
    """Claim exactly one job of ``queue``, once there is one."""
    claimed: list[Job] = []

    async def fetched() -> bool:
        claimed.extend(await system.fetch([queue], worker_id="w1"))
        return bool(claimed)

    await eventually(fetched)
    [job] = claimed
    return job


async def sleep_until(system: System, at_ms: int) -> None:
    await trio.sleep(max(0.0, (at_ms - system.clock()) / 1000))


async def index_keys(backend: Backend) -> set[str]:
    """The keys of workflow records and of the workflow indexes."""
    return {key for key in await backend.list_snapshots("workflow") if key != CURSOR_KEY}


async def finished_at(system: System, workflow_id: str) -> int:
    """When the workflow finished, once it has (and is filed so)."""
    keys = await index_keys(system.backend)
    record = await system.backend.load_snapshot(f"workflow:{workflow_id}")
    assert record is not None and running_key(workflow_id) not in keys
    assert isinstance(record.get("finished_at"), int), record
    return int(record["finished_at"])


async def filed(system: System, workflow_id: str) -> bool:
    """Finished, and moved from the running index to the finished one."""
    keys = await index_keys(system.backend)
    return running_key(workflow_id) not in keys and any(
        key.startswith("workflow-finished-") and key.endswith(f":{workflow_id}") for key in keys
    )


async def gone(system: System, workflow_id: str) -> bool:
    try:
        await system.workflow_info(workflow_id)
    except NotFound:
        return True
    return False


async def run_group(system: System, queue: str = "done") -> str:
    """A one-job group, run to completion and filed; returns its id."""
    created = await system.create_workflow({"type": "group", "jobs": [step("g.job", queue)]})
    workflow_id = str(created["id"])
    await system.ack((await work(system, queue)).id, "ok")
    await eventually(lambda: filed(system, workflow_id))
    return workflow_id


# -- the record ---------------------------------------------------------------------------------


def test_finished_at_is_stamped_when_the_workflow_settles() -> None:
    workflow = parse_workflow({"type": "group", "jobs": [step("a"), step("b")]}, 0)
    first, second = (node.job_id for node in workflow.nodes)
    done = Outcome(NodeState.COMPLETED, 5, "r")
    halfway = advance(workflow, [(first, done)], 10).workflow
    assert halfway.finished_at is None
    finished = advance(halfway, [(second, done)], 20).workflow
    assert finished.state is WorkflowState.COMPLETED and finished.finished_at == 20
    assert advance(finished, [(second, done)], 30).workflow.finished_at == 20
    # Cancelled while a job runs: terminal at once, settled (finished) when the job ends.
    cancelled = cancel(halfway, 40)
    assert cancelled.state.terminal and cancelled.finished_at is None
    over = advance(cancelled, [(second, Outcome(NodeState.CANCELLED, 45))], 50).workflow
    assert over.finished_at == 50
    assert type(over).from_record(over.to_record()) == over


# -- retention ----------------------------------------------------------------------------------


async def test_a_finished_workflow_is_readable_until_its_retention_ends(
    storage: Storage, clock: MockClock
) -> None:
    async with open_system(storage(), settings=settings()) as system:
        workflow_id = await run_group(system)
        running = (await system.create_workflow(chain("c.one", "c.two")))["id"]
        assert (await system.workflow_info(workflow_id))["state"] == "completed"
        assert running_key(running) in await index_keys(system.backend)

        end = await finished_at(system, workflow_id) + int(RETENTION * 1000)
        await sleep_until(system, end - 1_000)
        assert (await system.workflow_info(workflow_id))["state"] == "completed"
        await sleep_until(system, end)
        await eventually(lambda: gone(system, workflow_id), within=SWEEP_DELAY)
        # Only the finished workflow went: its job stays, the running workflow stays.
        assert await system.backend.count_jobs("done") == {State.COMPLETED: 1}
        assert await index_keys(system.backend) == {f"workflow:{running}", running_key(running)}
        for _ in range(2):
            await system.ack((await work(system)).id)
        await eventually(lambda: filed(system, running))
        assert (await system.workflow_info(running))["state"] == "completed"


async def test_start_up_reads_only_the_running_workflows(
    storage: Storage, clock: MockClock
) -> None:
    async with open_system(storage(), settings=settings(retention=24 * HOUR)) as system:
        for _ in range(1_000):
            await system.create_workflow({"type": "group", "jobs": [step("g.job", "done")]})
        while claimed := await system.fetch(["done"], count=100, worker_id="w"):
            for job in claimed:
                await system.ack(job.id)
        running = [(await system.create_workflow(chain("c.one", "c.two")))["id"] for _ in range(3)]

        async def all_filed() -> bool:
            keys = await index_keys(system.backend)
            return sum(key.startswith("workflow-finished-") for key in keys) == 1_000 and {
                key for key in keys if key.startswith(RUNNING_PREFIX)
            } == {running_key(workflow_id) for workflow_id in running}

        await eventually(all_filed)

    backend = storage()
    assert isinstance(backend, RecordReads)
    backend.records_read = 0
    async with open_system(backend, settings=settings(retention=24 * HOUR)) as system:
        resumed = {"keeper", *(f"workflow:{workflow_id}" for workflow_id in running)}

        async def started() -> bool:
            return {child for child, _, _ in system.workflows.which_children()} == resumed

        await eventually(started)
        await trio.sleep(10)
        assert backend.records_read == 3
        for _ in range(2 * len(running)):  # resumed: their second steps follow
            await system.ack((await work(system)).id)


async def test_a_late_notice_after_deletion_changes_nothing(
    storage: Storage, clock: MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    async with open_system(storage(), settings=settings()) as system:
        retry = {"max_attempts": 1, "on_exhaustion": "dead_letter"}
        created = await system.create_workflow(
            {"type": "group", "jobs": [step("g.fails", "q", retry=retry)]}
        )
        workflow_id = created["id"]
        job = await work(system, "q")
        await system.nack(job.id, {"code": "handler_error", "message": "no"})
        await eventually(lambda: filed(system, workflow_id))
        assert (await system.workflow_info(workflow_id))["state"] == "failed"
        await sleep_until(system, await finished_at(system, workflow_id) + int(RETENTION * 1000))
        await eventually(lambda: gone(system, workflow_id), within=SWEEP_DELAY)
        assert await index_keys(system.backend) == set()

        # The job comes back from the dead letter queue and ends: its notice is late. The
        # keeper handles notices in order: once a later workflow is filed, it has seen it.
        await system.retry_dead_letter(job.id)
        await system.ack((await work(system, "q")).id)
        later = await run_group(system)
        keys = await index_keys(system.backend)
        assert f"workflow:{later}" in keys and not any(workflow_id in key for key in keys)
        assert await gone(system, workflow_id)
        assert [child for child, _, _ in system.workflows.which_children()] == ["keeper"]
    assert [r.getMessage() for r in caplog.records if r.name.startswith("ojs_actors")] == []


async def test_a_running_entry_without_a_record_is_dropped_once_old(
    storage: Storage, clock: MockClock
) -> None:
    """What a crash leaves: an entry whose record was deleted (or is still being written)."""
    backend = storage()
    async with open_system(backend, settings=settings()) as system:
        now = system.clock()
        await backend.save_snapshot(running_key("old"), {"created_at": now - 3_600_000})
        await backend.save_snapshot(running_key("new"), {"created_at": now})
    async with open_system(storage(), settings=settings()) as system:

        async def dropped() -> bool:
            return await index_keys(system.backend) == {running_key("new")}

        await eventually(dropped)
        await eventually(lambda: gone(system, "old"))


async def test_workflows_stored_before_the_indexes_are_indexed_at_start_up(
    storage: Storage, clock: MockClock
) -> None:
    backend = storage()
    async with open_system(backend, settings=settings()) as system:
        finished = await run_group(system)
        running = (await system.create_workflow(chain("c.one", "c.two")))["id"]
        for key in [CURSOR_KEY, *await index_keys(backend)]:
            if not key.startswith("workflow:"):
                await backend.delete_snapshot(key)
        assert await index_keys(backend) == {f"workflow:{finished}", f"workflow:{running}"}
    async with open_system(storage(), settings=settings()) as system:

        async def indexed() -> bool:
            return f"workflow:{running}" in system.workflows and await filed(system, finished)

        await eventually(indexed)  # resumed at start-up, and the finished one filed
        assert running_key(running) in await index_keys(system.backend)
        await sleep_until(system, await finished_at(system, finished) + int(RETENTION * 1000))
        await eventually(lambda: gone(system, finished), within=SWEEP_DELAY)
        for _ in range(2):
            await system.ack((await work(system)).id)
        await eventually(lambda: filed(system, running))


# -- several systems on one backend ---------------------------------------------------------------


async def test_two_systems_sharing_a_backend_keep_and_delete_alike(
    storage: Storage, clock: MockClock
) -> None:
    async with AsyncExitStack() as stack:
        a = await stack.enter_async_context(open_system(storage(), settings=settings()))
        b = await stack.enter_async_context(open_system(storage(), settings=settings()))
        created = [(await a.create_workflow(chain("c.one", "c.two")))["id"] for _ in range(4)]
        for system in (b, a, b, a, b, a, b, a):  # each step ends through one or the other
            await system.ack((await work(system)).id)

        async def all_filed() -> bool:
            return all([await filed(a, workflow_id) for workflow_id in created])

        await eventually(all_filed)
        ends = [await finished_at(a, workflow_id) for workflow_id in created]
        await sleep_until(a, min(ends) + int(RETENTION * 1000) - 1_000)
        for system in (a, b):
            for workflow_id in created:
                assert (await system.workflow_info(workflow_id))["state"] == "completed"
        await sleep_until(a, max(ends) + int(RETENTION * 1000))

        async def all_gone() -> bool:
            return await index_keys(a.backend) == set()

        await eventually(all_gone, within=SWEEP_DELAY)
        for system in (a, b):
            for workflow_id in created:
                assert await gone(system, workflow_id)
        cursor = await a.backend.load_snapshot(CURSOR_KEY)
        assert cursor is not None and cursor["bucket"] * BUCKET_MS > max(ends)
