"""The job system's actors under failure and time: QueueActor crash/restart, the Scheduler.

Time runs on trio's autojump clock; the system derives job timestamps from it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
import trio

from ojs_actors import MemoryBackend, State, open_system
from ojs_actors.backends import Deduplicated
from ojs_actors.core import Job, OJSError, ServiceRestarting, format_ms
from ojs_actors.system import QueueActor, Settings, System


class GatedBackend(MemoryBackend):
    """The real in-memory backend, with a gate that can hold or fail the next insert."""

    def __init__(self) -> None:
        super().__init__()
        self.gate: trio.Event | None = None
        self.held = trio.Event()
        self.fail_next_insert: BaseException | None = None

    async def insert_jobs(
        self, jobs: Sequence[Job], *, atomic: bool = False
    ) -> list[Job | Deduplicated | OJSError]:
        if self.fail_next_insert is not None:
            error, self.fail_next_insert = self.fail_next_insert, None
            raise error
        if self.gate is not None:
            gate, self.gate = self.gate, None
            self.held.set()
            await gate.wait()
        return await super().insert_jobs(jobs, atomic=atomic)


@pytest.fixture
async def gated() -> AsyncIterator[tuple[System, GatedBackend]]:
    backend = GatedBackend()
    async with open_system(backend, settings=Settings(poll_interval=0.5)) as system:
        yield system, backend


def job_request(n: int, **options: Any) -> dict[str, Any]:
    return {"type": "test.work", "args": [n], "options": options}


async def test_killed_queue_actor_resumes_with_jobs_and_pending_messages(
    gated: tuple[System, GatedBackend], autojump_clock: Any
) -> None:
    system, backend = gated
    stored = [await system.enqueue(job_request(n)) for n in range(3)]
    first_instance = system.queues.child("queue:default")

    backend.gate = trio.Event()  # the next insert blocks inside the actor
    outcomes: dict[int, Job | BaseException] = {}

    async def enqueue(n: int) -> None:
        try:
            outcomes[n] = await system.enqueue(job_request(n))
        except OJSError as error:
            outcomes[n] = error

    async with trio.open_nursery() as nursery:
        nursery.start_soon(enqueue, 10)
        await backend.held.wait()  # the actor is now stuck in its batch [10]
        for n in (11, 12, 13):
            nursery.start_soon(enqueue, n)
        await trio.testing.wait_all_tasks_blocked()
        assert system.queues.ref("queue:default").queued == 3  # waiting in the mailbox
        system.queues.kill_child("queue:default")

    # The request in flight was told (503, retryable); nothing claimed success for it.
    assert isinstance(outcomes[10], ServiceRestarting)
    assert outcomes[10].status == 503 and outcomes[10].retryable
    # The messages queued behind it were handled by the restarted actor.
    queued = [outcomes[n] for n in (11, 12, 13)]
    assert all(isinstance(job, Job) and job.state is State.AVAILABLE for job in queued)
    assert system.queues.child("queue:default") is not first_instance
    assert system.queues.which_children() == [("queue:default", True, 1)]

    # Every job that was acknowledged is there, in FIFO order; the failed one is not.
    # (trio may schedule the three queued senders in any order.)
    fetched = [job.id for job in await system.fetch(["default"], count=10)]
    assert fetched[:3] == [job.id for job in stored]
    assert set(fetched[3:]) == {job.id for job in queued if isinstance(job, Job)}
    assert len(fetched) == 6


async def test_queue_actor_crash_fails_only_the_batch_in_flight(
    gated: tuple[System, GatedBackend], autojump_clock: Any
) -> None:
    system, backend = gated
    await system.enqueue(job_request(0))
    backend.fail_next_insert = RuntimeError("backend fell over")
    with pytest.raises(ServiceRestarting):
        await system.enqueue(job_request(1))
    job = await system.enqueue(job_request(2))
    assert job.state is State.AVAILABLE
    assert system.queues.which_children() == [("queue:default", True, 1)]
    assert [j.args for j in await system.fetch(["default"], count=5)] == [[0], [2]]


async def test_paused_state_survives_restart_through_snapshot(
    gated: tuple[System, GatedBackend], autojump_clock: Any
) -> None:
    system, _ = gated
    await system.enqueue(job_request(0))
    await system.set_paused("default", True)
    system.queues.kill_child("queue:default")
    await trio.testing.wait_all_tasks_blocked()
    actor = system.queues.child("queue:default")
    assert isinstance(actor, QueueActor) and actor.paused
    # Paused means no fetching; enqueues are still accepted (conformance L4-PAUSE-001).
    await system.enqueue(job_request(1))
    assert await system.fetch(["default"]) == []
    await system.set_paused("default", False)
    assert len(await system.fetch(["default"], count=5)) == 2


async def test_repeated_crashes_escalate_and_root_restarts_the_queues(
    gated: tuple[System, GatedBackend], autojump_clock: Any
) -> None:
    system, backend = gated
    survivor = await system.enqueue(job_request(0))
    old_queues = system.queues
    restarts, _ = system.settings.queue_restarts
    for _ in range(restarts + 1):
        backend.fail_next_insert = RuntimeError("boom")
        with pytest.raises(ServiceRestarting):
            await system.enqueue(job_request(1))
        await trio.testing.wait_all_tasks_blocked()
    # The queue supervisor gave up; root started a fresh one; state lives in the backend.
    assert system.queues is not old_queues
    assert ("queues", True, 1) in system.root.which_children()
    assert (await system.info(survivor.id)).state is State.AVAILABLE
    assert [job.id for job in await system.fetch(["default"])] == [survivor.id]


async def test_scheduled_job_is_promoted_when_due(autojump_clock: Any) -> None:
    async with open_system() as system:
        job = await system.enqueue(job_request(0, delay_until="+PT10S"))
        assert job.state is State.SCHEDULED
        assert await system.fetch(["default"]) == []
        await trio.sleep(9.9)
        assert (await system.info(job.id)).state is State.SCHEDULED
        await trio.sleep(0.2)
        promoted = await system.info(job.id)
        assert promoted.state is State.AVAILABLE and promoted.enqueued_at is not None
        assert [j.id for j in await system.fetch(["default"])] == [job.id]


async def test_waiting_fetch_is_woken_by_promotion(autojump_clock: Any) -> None:
    async with open_system() as system:
        job = await system.enqueue(job_request(0, delay_until="+PT3S"))
        start = trio.current_time()
        [claimed] = await system.fetch(["default"], wait=10)
        assert claimed.id == job.id
        assert 3 <= trio.current_time() - start < 3.1


async def test_retry_backoff_then_available(autojump_clock: Any) -> None:
    async with open_system() as system:
        policy = {"max_attempts": 3, "initial_interval": "PT2S", "jitter": False}
        job = await system.enqueue(job_request(0, retry=policy))
        [claimed] = await system.fetch(["default"])
        failed = await system.nack(claimed.id, {"code": "handler_error", "message": "x"})
        assert failed.state is State.RETRYABLE and failed.retry_delay_ms == 2000
        await trio.sleep(1.9)
        assert await system.fetch(["default"]) == []
        await trio.sleep(0.2)
        [again] = await system.fetch(["default"])
        assert again.id == job.id and again.attempt == 2


async def test_lease_expiry_and_execution_timeout(autojump_clock: Any) -> None:
    async with open_system() as system:
        leased = await system.enqueue(job_request(0, visibility_timeout_ms=3000))
        timed = await system.enqueue(
            job_request(1, timeout_ms=1000, retry={"max_attempts": 2, "jitter": False})
        )
        claimed = await system.fetch(["default"], count=2, worker_id="w1")
        assert {job.id for job in claimed} == {leased.id, timed.id}
        await trio.sleep(1.1)
        timed_out = await system.info(timed.id)
        assert timed_out.state is State.RETRYABLE
        assert timed_out.error is not None and timed_out.error["type"] == "timeout"
        assert (await system.info(leased.id)).state is State.ACTIVE
        await trio.sleep(2.0)
        reclaimed = await system.info(leased.id)
        assert reclaimed.state is State.AVAILABLE
        assert reclaimed.errors[-1]["code"] == "timeout"
        # A late ack from the worker that lost the lease is refused.
        with pytest.raises(OJSError) as refused:
            await system.ack(leased.id)
        assert refused.value.status == 409


async def test_lease_expiry_on_last_attempt_discards(autojump_clock: Any) -> None:
    async with open_system() as system:
        job = await system.enqueue(
            job_request(
                0,
                visibility_timeout_ms=1000,
                retry={"max_attempts": 1, "on_exhaustion": "dead_letter"},
            )
        )
        await system.fetch(["default"])
        await trio.sleep(1.5)
        gone = await system.info(job.id)
        assert gone.state is State.DISCARDED and gone.dead_letter
        listed, total = await system.dead_letter()
        assert total == 1 and listed[0].id == job.id


async def test_heartbeat_keeps_the_lease(autojump_clock: Any) -> None:
    async with open_system() as system:
        job = await system.enqueue(job_request(0, visibility_timeout_ms=2000))
        await system.fetch(["default"], worker_id="w1")
        for _ in range(5):
            await trio.sleep(1.5)
            beat = await system.heartbeat("w1", [job.id])
            assert beat.jobs_extended == [job.id] and beat.state == "running"
        assert (await system.info(job.id)).state is State.ACTIVE
        system.set_worker_state("w1", "quiet")
        assert (await system.heartbeat("w1", [job.id])).state == "quiet"
        cancelled = await system.cancel(job.id)
        assert cancelled.state is State.CANCELLED
        assert (await system.heartbeat("w1", [job.id])).jobs_cancelled == [job.id]


async def test_idle_workers_are_forgotten(autojump_clock: Any) -> None:
    settings = Settings(worker_idle_timeout=60)
    async with open_system(settings=settings) as system:
        await system.fetch(["default"], worker_id="fetcher")
        await system.heartbeat("beater")
        system.set_worker_state("never-seen", "terminate")
        assert {"fetcher", "beater", "never-seen"} <= set(system.workers.ids())
        await trio.sleep(59)
        await system.heartbeat("beater")
        await trio.sleep(2)
        assert set(system.workers.ids()) == {"beater"}  # the other two were silent for 61 s
        await trio.sleep(60)
        assert len(system.workers) == 0


async def test_a_storm_of_worker_ids_stays_bounded(autojump_clock: Any) -> None:
    settings = Settings(worker_idle_timeout=60, max_workers=100)
    async with open_system(settings=settings) as system:
        await system.heartbeat("steady")
        system.set_worker_state("steady", "quiet")
        for n in range(1000):
            await system.heartbeat(f"storm-{n}")
            if n % 50 == 0:  # the steady worker keeps beating through the storm
                assert (await system.heartbeat("steady")).state == "quiet"
            assert len(system.workers) <= 100
        assert (await system.heartbeat("steady")).state == "quiet"


async def test_a_directive_reaches_an_active_worker_after_the_idle_timeout(
    autojump_clock: Any,
) -> None:
    settings = Settings(worker_idle_timeout=60)
    async with open_system(settings=settings) as system:
        job = await system.enqueue(job_request(0))
        await system.fetch(["default"], worker_id="w1")
        system.set_worker_state("w1", "quiet")
        for _ in range(10):  # ten minutes of heartbeats every 30 s
            await trio.sleep(30)
            assert (await system.heartbeat("w1", [job.id])).state == "quiet"
        system.set_worker_state("w1", "terminate")
        assert (await system.heartbeat("w1", [job.id])).state == "terminate"
        await trio.sleep(61)
        assert (await system.heartbeat("w1")).state == "running"  # silent a minute: forgotten
        with pytest.raises(ValueError):
            system.set_worker_state("w1", "paused")


async def test_expired_job_is_never_delivered(autojump_clock: Any) -> None:
    async with open_system() as system:
        deadline = format_ms(system.clock() + 1000)
        expiring = await system.enqueue(job_request(0, expires_at=deadline))
        lasting = await system.enqueue(job_request(1))
        await trio.sleep(1.5)
        gone = await system.info(expiring.id)
        assert gone.state is State.DISCARDED and gone.error is not None
        assert [j.id for j in await system.fetch(["default"], count=10)] == [lasting.id]


async def test_scheduler_restart_keeps_timers(autojump_clock: Any) -> None:
    async with open_system() as system:
        job = await system.enqueue(job_request(0, delay_until="+PT5S"))
        system.root.kill_child("scheduler")
        await trio.sleep(5.1)
        assert (await system.info(job.id)).state is State.AVAILABLE
        assert ("scheduler", True, 1) in system.root.which_children()


async def test_reset_clears_everything(autojump_clock: Any) -> None:
    async with open_system() as system:
        job = await system.enqueue(job_request(0, queue="other"))
        await system.set_paused("other", True)
        await system.reset()
        with pytest.raises(OJSError) as missing:
            await system.info(job.id)
        assert missing.value.status == 404
        assert await system.list_queues() == []
        assert (await system.enqueue(job_request(1, queue="other"))).state is State.AVAILABLE


async def test_scheduler_wakeups_come_only_for_sooner_timers(autojump_clock: Any) -> None:
    from ojs_actors.system.signals import Signals

    signals = Signals()
    signals.scheduler_awake()
    signals.timer_added(5_000)  # added while the scheduler was busy: folded into its plan
    assert signals.plan_wake(10_000) == 5_000
    signals.timer_added(7_000)  # later than the planned wake: no wake-up
    with trio.move_on_after(1) as idle:
        await signals.wait_timer()
    assert idle.cancelled_caught
    signals.timer_added(4_000)  # sooner: wakes it at once
    with trio.fail_after(0.001):
        await signals.wait_timer()
