"""Two systems on one backend, as two server processes on one Redis (in-memory backend,
trio's autojump clock): the compare-and-set paths of the CronActors and WorkflowActors.

Each system runs its own actors over the shared backend and hears only of the job
changes made through it, like a separate process would.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
import trio.testing
from test_cron import FIRST_SLOT, MINUTE, START, clock_at, cron, cron_jobs, minutes, sleep_until
from test_workflows import batch, chain, step, work

from ojs_actors import Job, MemoryBackend, OJSError, State
from ojs_actors.core import format_ms
from ojs_actors.system import Settings, System, open_system
from ojs_actors.system.cron_actor import CronActor, SnapshotConflict

POLL = 1.0


@asynccontextmanager
async def two_systems(backend: MemoryBackend | None = None) -> AsyncIterator[tuple[System, System]]:
    shared = backend or MemoryBackend()
    settings = Settings(poll_interval=POLL)
    async with (
        open_system(shared, clock=clock_at(START), settings=settings) as a,
        open_system(shared, clock=clock_at(START), settings=settings) as b,
    ):
        yield a, b


def conflicts(caplog: pytest.LogCaptureFixture, text: str) -> int:
    return sum(text in record.getMessage() for record in caplog.records)


# -- cron --------------------------------------------------------------------------------------


async def test_both_systems_run_the_entry_and_each_slot_fires_once(
    autojump_clock: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="ojs_actors.cron")
    async with two_systems() as (a, b):
        await a.register_cron(cron(overlap_policy="allow"))
        await trio.sleep(2 * POLL)  # B's crons supervisor re-reads the registry
        assert isinstance(b.crons.child("cron:tick"), CronActor)
        await sleep_until(a, FIRST_SLOT + 4 * MINUTE)
        jobs = await cron_jobs(a)
        assert [job.meta["cron_triggered_at"] for job in jobs] == minutes(FIRST_SLOT, 5)
        assert (await a.backend.count_jobs("default"))[State.AVAILABLE] == 5
        assert (await b.cron_info("tick"))["run_count"] == 5
        # Both actors woke for every slot; the loser's compare-and-set failed.
        assert conflicts(caplog, "changed elsewhere meanwhile") >= 1


async def test_changes_through_one_system_reach_the_other(autojump_clock: Any) -> None:
    async with two_systems() as (a, b):
        await a.register_cron(cron(overlap_policy="allow"))
        await trio.sleep(2 * POLL)
        # Disabled through B (whose actor was started by its supervisor): nothing fires.
        assert (await b.set_cron_enabled("tick", False))["enabled"] is False
        await sleep_until(a, FIRST_SLOT + 2 * MINUTE)
        assert await cron_jobs(a) == []
        # Deleted through A: B's supervisor stops its actor within a poll interval.
        await a.delete_cron("tick")
        await trio.sleep(2 * POLL)
        assert "cron:tick" not in b.crons and "cron:tick" not in a.crons
        # Registered again through B: A starts an actor for it, still one job per slot.
        await b.register_cron(cron(overlap_policy="allow"))
        await trio.sleep(2 * POLL)
        assert "cron:tick" in a.crons
        start = FIRST_SLOT + 3 * MINUTE
        await sleep_until(a, start + 2 * MINUTE)
        assert [job.meta["cron_triggered_at"] for job in await cron_jobs(a)] == minutes(start, 3)


async def test_another_instances_fresh_intent_is_finished_with_its_job_id(
    autojump_clock: Any,
) -> None:
    """The winner of a slot crashed (or is slow) between writing its intent and the enqueue:
    the other instance enqueues that same job id instead of deciding the slot afresh."""
    backend = MemoryBackend()
    async with open_system(
        backend, clock=clock_at(START), settings=Settings(poll_interval=POLL)
    ) as system:
        await system.register_cron(cron(overlap_policy="allow"))
        await sleep_until(system, FIRST_SLOT - 10_000)
        record = await backend.load_snapshot("cron:tick")
        assert record is not None
        record["intent"] = {
            "slot": FIRST_SLOT, "job_id": "019c5000-0000-7000-8000-000000000001",
            "hold": False, "owner": "another-process", "at": system.clock(),
        }  # fmt: skip
        await backend.save_snapshot("cron:tick", record)
        await sleep_until(system, FIRST_SLOT)
        jobs = await cron_jobs(system)
        assert [job.id for job in jobs] == ["019c5000-0000-7000-8000-000000000001"]
        assert [job.meta["cron_triggered_at"] for job in jobs] == [format_ms(FIRST_SLOT)]
        info = await system.cron_info("tick")
        assert info["intent"] is None and info["run_count"] == 1


async def test_a_stale_actor_does_not_overwrite_a_newer_entry(autojump_clock: Any) -> None:
    """An actor whose copy is stale loses its compare-and-set, re-reads and adopts the
    stored entry (here changed by a plain write, as another process would)."""
    backend = MemoryBackend()
    async with open_system(
        backend, clock=clock_at(START), settings=Settings(poll_interval=POLL)
    ) as system:
        await system.register_cron(cron(overlap_policy="allow"))
        actor = system.crons.child("cron:tick")
        assert isinstance(actor, CronActor)
        record = await backend.load_snapshot("cron:tick")
        assert record is not None
        await backend.save_snapshot("cron:tick", {**record, "enabled": False, "next_run_at": None})
        assert actor.spec is not None and actor.spec.enabled  # its copy is stale
        with pytest.raises(SnapshotConflict):
            await actor.persist()
        await sleep_until(system, FIRST_SLOT + MINUTE)
        assert await cron_jobs(system) == []
        assert actor.spec is not None and not actor.spec.enabled
        assert (await system.cron_info("tick"))["enabled"] is False


# -- workflows ------------------------------------------------------------------------------------


async def test_a_chain_advanced_through_both_systems_runs_each_step_once(
    autojump_clock: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="ojs_actors.workflows")
    async with two_systems() as (a, b):
        created = await a.create_workflow(chain("c.zero", "c.one", "c.two", "c.three"))
        workflow_id = created["id"]
        seen: list[str] = []
        for n, (worker, acker) in enumerate([(a, b), (b, a), (a, b), (b, a)]):
            job = await work(worker)
            seen.append(job.type)
            assert job.extra["parent_results"] == list(range(n))
            await acker.ack(job.id, n)
            await trio.testing.wait_all_tasks_blocked()
        assert seen == ["c.zero", "c.one", "c.two", "c.three"]
        counts = await a.backend.count_jobs("wf")
        assert counts == {State.COMPLETED: 4}
        for system in (a, b):
            info = await system.workflow_info(workflow_id)
            assert info["state"] == "completed" and info["steps_completed"] == 4
        # A's actor was stale after B advanced the workflow: it reloaded, did not overwrite.
        assert conflicts(caplog, "advanced elsewhere meanwhile") >= 1
        assert await a.fetch(["wf"], count=10) == []


async def test_a_batch_finished_through_both_systems_fires_its_callback_once(
    autojump_clock: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Both systems run the batch's actor, each with a copy in which the other's job is
    still running: the second write loses its compare-and-set, reloads, and the callback
    is released exactly once, with both results."""
    caplog.set_level(logging.INFO, logger="ojs_actors.workflows")
    async with two_systems() as (a, b):
        created = await a.create_workflow(
            batch("b.one", "b.two", on_complete=step("cb.complete", "cb"))
        )
        first, second = await a.fetch(["wf"], count=10)
        await b.ack(first.id, "one")  # B starts an actor for the batch from its snapshot
        await trio.testing.wait_all_tasks_blocked()
        assert f"workflow:{created['id']}" in a.workflows  # A's copy: both jobs running
        await a.ack(second.id, "two")
        await trio.testing.wait_all_tasks_blocked()
        callback = await work(a, "cb")
        assert callback.extra["parent_results"] == ["one", "two"]
        assert await a.fetch(["cb"], count=10) == [] and await b.fetch(["cb"], count=10) == []
        assert conflicts(caplog, "advanced elsewhere meanwhile; reloading") >= 1
        await b.ack(callback.id)
        await trio.testing.wait_all_tasks_blocked()
        for system in (a, b):
            assert (await system.workflow_info(created["id"]))["state"] == "completed"


# -- the claimed versions a queue actor keeps ----------------------------------------------


def request(n: int, **options: Any) -> dict[str, Any]:
    return {"type": "test.work", "args": [n], "options": options}


class ReadCountingBackend(MemoryBackend):
    """The real in-memory backend, counting the jobs read back by ``get_jobs``."""

    def __init__(self) -> None:
        super().__init__()
        self.jobs_read = 0

    async def get_jobs(self, job_ids: Sequence[str]) -> list[Job | None]:
        self.jobs_read += len(job_ids)
        return await super().get_jobs(job_ids)


async def test_an_ack_of_a_job_claimed_here_needs_no_read(autojump_clock: Any) -> None:
    backend = ReadCountingBackend()
    async with open_system(backend, clock=clock_at(START)) as system:
        await system.enqueue_batch([request(n) for n in range(3)])
        claimed = await system.fetch(["default"], count=3)
        before = backend.jobs_read
        for job in claimed:
            assert (await system.ack(job.id)).state is State.COMPLETED
        assert backend.jobs_read == before
        assert (await backend.count_jobs("default")) == {State.COMPLETED: 3}


async def test_a_job_changed_through_another_system_is_read_again(autojump_clock: Any) -> None:
    """A's remembered claim is stale once B changed the job: A's ack loses its
    compare-and-set and is decided on the stored version (cancelled: a conflict)."""
    async with two_systems() as (a, b):
        job = await a.enqueue(request(1))
        [claimed] = await a.fetch(["default"])
        await b.cancel(claimed.id)
        with pytest.raises(OJSError) as refused:
            await a.ack(claimed.id)
        assert refused.value.status == 409
        assert (await a.info(job.id)).state is State.CANCELLED


async def test_a_move_refused_on_the_remembered_claim_is_tried_on_the_stored_job(
    autojump_clock: Any,
) -> None:
    """A remembers the job active; B dead-letters it. Retrying it from the dead letter
    through A is refused for an active job, so A reads it back and it succeeds."""
    async with two_systems() as (a, b):
        job = await a.enqueue(request(1, retry={"max_attempts": 1, "on_exhaustion": "dead_letter"}))
        [claimed] = await a.fetch(["default"])
        failed = await b.nack(claimed.id, {"type": "Boom", "message": "no"})
        assert failed.state is State.DISCARDED and failed.dead_letter
        again = await a.retry_dead_letter(job.id)
        assert again.state is State.AVAILABLE
