"""In-process worker groups and batched settling (``System.worker_group``, ``settle_many``).

Everything runs against real backends (memory, and SQLite in a temporary file); time
runs on trio's autojump clock where it matters, so retries, grace periods and leases
take no real time.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
import trio

from bench.embedded import embedded_lifecycle
from ojs_actors import Ack, Job, MemoryBackend, Nack, SqliteBackend, State, open_system
from ojs_actors.backends.redis import RedisBackend
from ojs_actors.core import InvalidRequest, NotFound, OJSError, lifecycle
from ojs_actors.system import Settings
from ojs_actors.system.queue_messages import Apply, Claim
from ojs_actors.system.transitions import ack_with
from ojs_actors.system.worker_group import WorkerGroupStats

WAIT_LIMIT_S = 30.0


def request(job_type: str, *args: Any, queue: str = "default", **options: Any) -> dict[str, Any]:
    return {"type": job_type, "args": list(args), "options": {"queue": queue, **options}}


class Settled:
    """An ``on_settled`` hook: the latest stored version of every job, and batch sizes."""

    def __init__(self) -> None:
        self.latest: dict[str, Job] = {}
        self.batches: list[int] = []
        self._changed = trio.Event()

    def __call__(self, jobs: Sequence[Job]) -> None:
        self.batches.append(len(jobs))
        for job in jobs:
            self.latest[job.id] = job
        self._changed.set()
        self._changed = trio.Event()

    def count(self, state: State) -> int:
        return sum(1 for job in self.latest.values() if job.state is state)

    async def until(self, condition: Callable[[], bool]) -> None:
        with trio.fail_after(WAIT_LIMIT_S):
            while not condition():
                await self._changed.wait()


class CountingBackend(MemoryBackend):
    """The real in-memory backend, recording the size of every ``update_jobs`` call."""

    def __init__(self) -> None:
        super().__init__()
        self.update_sizes: list[int] = []

    async def update_jobs(self, updates: Sequence[tuple[Job, int]]) -> list[bool]:
        self.update_sizes.append(len(updates))
        return await super().update_jobs(updates)


async def test_handlers_run_and_their_results_are_stored(autojump_clock: Any) -> None:
    async def double(job: Job) -> dict[str, int]:
        return {"doubled": job.args[0] * 2}

    async def quiet(job: Job) -> None:
        return None

    settled = Settled()
    async with open_system() as system:
        doubles = [await system.enqueue(request("math.double", n)) for n in range(5)]
        silent = await system.enqueue(request("math.quiet", queue="other"))
        handlers = {"math.double": double, "math.quiet": quiet}
        async with system.worker_group(["default", "other"], handlers, on_settled=settled):
            await settled.until(lambda: settled.count(State.COMPLETED) == 6)
        for n, job in enumerate(doubles):
            stored = await system.info(job.id)
            assert stored.state is State.COMPLETED and stored.attempt == 1
            assert stored.result == {"doubled": n * 2}
        assert not (await system.info(silent.id)).has_result  # None: no result stored


async def test_exceptions_fail_the_attempt_and_the_retry_policy_decides(
    autojump_clock: Any,
) -> None:
    calls: list[int] = []

    async def flaky(job: Job) -> str:
        calls.append(job.attempt)
        raise ValueError(f"boom {job.attempt}")

    async def fine(job: Job) -> str:
        return "ok"

    settled = Settled()
    retry = {"max_attempts": 2, "initial_interval": "PT1S"}
    async with open_system() as system:
        failing = await system.enqueue(request("work.flaky", retry=retry))
        later = await system.enqueue(request("work.fine"))
        handlers = {"work.flaky": flaky, "work.fine": fine}
        async with system.worker_group(["default"], handlers, on_settled=settled) as group:
            await settled.until(lambda: settled.count(State.DISCARDED) == 1)
            await settled.until(lambda: settled.count(State.COMPLETED) == 1)
        job = await system.info(failing.id)
        assert calls == [1, 2] and job.attempt == 2
        assert [(e["type"], e["message"]) for e in job.errors] == [
            ("ValueError", "boom 1"),
            ("ValueError", "boom 2"),
        ]
        assert job.errors[0]["backtrace"]  # where it was raised, for the operator
        assert (await system.info(later.id)).result == "ok"  # the group survived the crashes
        assert group.stats.failed == 2 and group.stats.completed == 1


async def test_a_job_type_without_handler_fails_without_retry(autojump_clock: Any) -> None:
    settled = Settled()
    retry = {"max_attempts": 5}
    async with open_system() as system:
        plain = await system.enqueue(request("nobody.handles", retry=retry))
        kept = await system.enqueue(
            request("nobody.handles", retry={**retry, "on_exhaustion": "dead_letter"})
        )

        async def unused(job: Job) -> None:
            raise AssertionError("not this type")

        async with system.worker_group(["default"], {"report.build": unused}, on_settled=settled):
            await settled.until(lambda: settled.count(State.DISCARDED) == 2)
        for job_id, dead_letter in ((plain.id, False), (kept.id, True)):
            job = await system.info(job_id)
            assert job.state is State.DISCARDED and job.attempt == 1
            assert job.dead_letter is dead_letter
            assert job.error is not None and job.error["type"] == "UnknownJobType"
            assert "nobody.handles" in job.error["message"]


async def test_outcomes_are_stored_in_batches(autojump_clock: Any) -> None:
    async def noop(job: Job) -> None:
        return None

    backend = CountingBackend()
    settled = Settled()
    async with open_system(backend) as system:
        await system.enqueue_batch([request("bench.noop", n) for n in range(300)])
        async with system.worker_group(
            ["default"], {"bench.noop": noop}, batch_size=100, on_settled=settled
        ):
            await settled.until(lambda: settled.count(State.COMPLETED) == 300)
    assert sum(backend.update_sizes) == 300
    assert len(backend.update_sizes) <= 12  # one write per batch of outcomes, not per job
    assert max(backend.update_sizes) >= 50


async def test_leaving_the_block_drains_then_interrupts(autojump_clock: Any) -> None:
    both_started = trio.Event()
    started: list[str] = []

    async def sleepy(job: Job) -> str:
        started.append(job.id)
        if len(started) == 2:
            both_started.set()
        await trio.sleep(job.args[0])
        return "woke"

    async with open_system() as system:
        quick, slow, *waiting = [
            await system.enqueue(request("work.sleep", seconds)) for seconds in (0.5, 100, 0, 0)
        ]
        group_options = {"concurrency": 2, "batch_size": 10, "grace_period": 1.0}
        began = trio.current_time()
        async with system.worker_group(["default"], {"work.sleep": sleepy}, **group_options) as g:
            await both_started.wait()
        assert trio.current_time() - began == 1.0  # the grace period, then no longer
        assert (await system.info(quick.id)).result == "woke"  # finished within the grace
        interrupted = await system.info(slow.id)
        assert interrupted.state is State.RETRYABLE
        assert interrupted.error is not None and interrupted.error["type"] == "ShutdownError"
        for job in waiting:  # claimed but never started: handed back, attempt not spent
            handed_back = await system.info(job.id)
            assert handed_back.state is State.AVAILABLE and handed_back.attempt == 0
        assert (g.stats.completed, g.stats.interrupted, g.stats.requeued) == (1, 1, 2)
        assert g.in_hand == 0


async def test_cancelling_the_group_stores_what_it_can(autojump_clock: Any) -> None:
    started = trio.Event()

    async def forever(job: Job) -> None:
        started.set()
        await trio.sleep_forever()

    async with open_system() as system:
        job = await system.enqueue(request("work.forever"))
        with trio.move_on_after(5) as scope:
            async with system.worker_group(["default"], {"work.forever": forever}):
                await started.wait()
                await trio.sleep_forever()
        assert scope.cancelled_caught
        stopped = await system.info(job.id)
        assert stopped.state is State.RETRYABLE
        assert stopped.error is not None and stopped.error["type"] == "ShutdownError"


async def test_long_handlers_keep_their_lease(autojump_clock: Any) -> None:
    calls = 0

    async def slow(job: Job) -> str:
        nonlocal calls
        calls += 1
        await trio.sleep(9)
        return "done"

    settled = Settled()
    async with open_system() as system:
        job = await system.enqueue(request("work.slow", visibility_timeout_ms=2000))
        async with system.worker_group(["default"], {"work.slow": slow}, on_settled=settled):
            await settled.until(lambda: settled.count(State.COMPLETED) == 1)
        stored = await system.info(job.id)
        # Without renewals the scheduler would have taken the job back after 2 s.
        assert calls == 1 and stored.attempt == 1 and stored.errors == ()


async def test_leases_of_mixed_timeouts_run_out_in_time_order(autojump_clock: Any) -> None:
    """The memory backend keeps lease timers in FIFO lanes per visibility timeout; a
    lease that breaks a lane's order (a shorter override) must still run out on time."""
    async with open_system() as system:
        long = await system.enqueue(request("work.any", visibility_timeout_ms=5000))
        short = await system.enqueue(request("work.any", visibility_timeout_ms=1000))
        overridden = await system.enqueue(request("work.any", visibility_timeout_ms=5000))
        await system.fetch(["default"], count=2, worker_id="w1")
        await system.fetch(["default"], worker_id="w1", visibility_timeout_ms=500)
        back: list[str] = []
        claimed_at = trio.current_time()
        for moment in (0.6, 1.1, 5.1):
            await trio.sleep_until(claimed_at + moment)
            for job in (overridden, short, long):
                if job.id not in back and (await system.info(job.id)).state is State.AVAILABLE:
                    back.append(job.id)
            assert len(back) == {0.6: 1, 1.1: 2, 5.1: 3}[moment]
        assert back == [overridden.id, short.id, long.id]


async def test_new_work_wakes_an_idle_group_at_once(autojump_clock: Any) -> None:
    handled = trio.Event()

    async def note(job: Job) -> None:
        handled.set()

    async with open_system() as system:
        async with system.worker_group(["default"], {"work.note": note}):
            await trio.sleep(0.25)  # the group is waiting for work by now
            enqueued_at = trio.current_time()
            await system.enqueue(request("work.note"))
            await handled.wait()
            assert trio.current_time() - enqueued_at < 0.001  # no poll interval waited


async def test_settle_many_answers_each_outcome(autojump_clock: Any) -> None:
    async with open_system() as system:
        for n in range(3):
            await system.enqueue(request("work.any", n))
        done, failed, handed_back = await system.fetch(["default"], count=3, worker_id="w1")
        answers = await system.settle_many(
            [
                Ack(done.id, {"ok": True}),
                Nack(failed.id, {"type": "KeyError", "message": "missing"}),
                Nack(handed_back.id, requeue=True),
                Ack("0190a5c8-0000-7000-8000-000000000000"),
                Nack(done.id, {"message": 42}),
            ]
        )
        completed, retryable, available, missing, malformed = answers
        assert isinstance(completed, Job) and completed.result == {"ok": True}
        assert isinstance(retryable, Job) and retryable.state is State.RETRYABLE
        assert retryable.error is not None and retryable.error["type"] == "KeyError"
        assert isinstance(available, Job) and available.state is State.AVAILABLE
        assert available.attempt == 0
        assert isinstance(missing, NotFound)
        assert isinstance(malformed, InvalidRequest)


async def test_worker_group_on_sqlite(tmp_path: Path) -> None:
    async def square(job: Job) -> int:
        return int(job.args[0]) ** 2

    settled = Settled()
    async with open_system(SqliteBackend(tmp_path / "ojs.db", synchronous="normal")) as system:
        jobs = await system.enqueue_batch([request("math.square", n) for n in range(40)])
        async with system.worker_group(
            ["default"], {"math.square": square}, batch_size=16, on_settled=settled
        ):
            await settled.until(lambda: settled.count(State.COMPLETED) == 40)
        for n, job in enumerate(jobs):
            stored = await system.info(job.id)
            assert stored.state is State.COMPLETED and stored.result == n * n


async def test_bench_embedded_lifecycle_completes_every_job() -> None:
    result = await embedded_lifecycle("memory", {}, 200, 10, timeout_s=60.0)
    assert result.ok and result.completed == 200 and result.latency_jobs == 10
    assert result.enqueue_per_s > 0 and result.process_per_s > 0
    assert 0 <= result.latency_p50_ms <= result.latency_p99_ms < 1000
    assert "concurrency" in result.settings


# -- hand-over: jobs stored for a worker already waiting -------------------------------------


class CallOrder(MemoryBackend):
    """The memory backend, noting the job calls it gets."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    async def insert_jobs(self, jobs: Any, *, atomic: bool = False) -> Any:
        self.calls.append("insert")
        return await super().insert_jobs(jobs, atomic=atomic)

    async def claim(self, queue: str, count: int, now: int, *args: Any, **kwargs: Any) -> Any:
        claimed, expired = await super().claim(queue, count, now, *args, **kwargs)
        self.calls.append(f"claim {len(claimed)}")
        return claimed, expired


async def test_a_job_stored_for_a_waiting_group_is_claimed_with_it_and_handed_over(
    autojump_clock: Any,
) -> None:
    backend = CallOrder()
    started = trio.Event()

    async def handle(job: Job) -> None:
        started.set()

    async with open_system(backend) as system:
        async with system.worker_group(["hand"], {"hand.t": handle}, worker_id="g"):
            await trio.sleep(0.1)  # the group found nothing and waits
            backend.calls.clear()
            job = await system.enqueue({"type": "hand.t", "args": [], "options": {"queue": "hand"}})
            assert backend.calls[:2] == ["insert", "claim 1"]  # one actor step, no fetch between
            with trio.fail_after(1):
                await started.wait()
        stored = await system.info(job.id)
        assert stored.state is State.COMPLETED and stored.worker_id is None and stored.attempt == 1


async def test_jobs_claimed_for_a_worker_gone_meanwhile_go_back_unspent(
    autojump_clock: Any,
) -> None:
    from ojs_actors.system.signals import IdleClaim

    async with open_system() as system:
        refused: list[list[Job]] = []

        def gone(jobs: list[Job]) -> bool:
            refused.append(jobs)
            return False

        system.signals.add_idle_claim("back", IdleClaim("w", 10, None, gone))
        job = await system.enqueue({"type": "t", "args": [], "options": {"queue": "back"}})
        assert [[j.id for j in jobs] for jobs in refused] == [[job.id]]
        stored = await system.info(job.id)
        assert stored.state is State.AVAILABLE and stored.attempt == 0  # as never claimed
        [again] = await system.fetch(["back"], worker_id="other")
        assert again.id == job.id and again.attempt == 1


# -- a settle and the claim behind it: one round trip on Redis -------------------------------


class TwoCalls(RedisBackend):
    """The Redis backend without its :class:`UpdateAndClaim` part, as before it: a settle
    and the claim behind it take an ``update_jobs`` and a ``claim`` call."""

    update_and_claim = None  # type: ignore[assignment]  # blocks the protocol's method


class Cycles(Settled):
    """``Settled``, also noting the backend client's round trips at each stored batch."""

    def __init__(self, backend: RedisBackend) -> None:
        super().__init__()
        self.backend = backend
        self.round_trips: list[int] = []

    def __call__(self, jobs: Sequence[Job]) -> None:
        self.round_trips.append(self.backend.connection.client.round_trips)
        super().__call__(jobs)


QUIET = Settings(poll_interval=30.0)
"""No poll (nor re-read of a queue's record) within a test: only the group's calls count."""


async def run_noop_group(
    backend: RedisBackend, jobs: int
) -> tuple[list[int], Cycles, WorkerGroupStats]:
    """A no-op group (batches of 100) over ``jobs`` jobs on ``backend``: the round trips
    between one stored batch and the next, what was stored, and the group's stats."""
    runs: Counter[int] = Counter()

    async def noop(job: Job) -> None:
        runs[job.args[0]] += 1

    cycles = Cycles(backend)
    async with open_system(backend, settings=QUIET) as system:
        await system.enqueue_batch([request("work.noop", n) for n in range(jobs)])
        async with system.worker_group(
            ["default"], {"work.noop": noop}, batch_size=100, on_settled=cycles
        ) as group:
            await cycles.until(lambda: cycles.count(State.COMPLETED) == jobs)
        assert runs == Counter(range(jobs))  # every job ran once
    marks = cycles.round_trips
    deltas = [later - earlier for earlier, later in zip(marks[:-1], marks[1:], strict=True)]
    return deltas, cycles, group.stats


async def test_a_groups_settle_and_next_claim_share_one_round_trip_on_redis(
    redis_url: str,
) -> None:
    """Steady state: the group stores batch N's outcomes and claims batch N+1 in one step of
    the QueueActor, one pipelined round trip (update and claim scripts); without the
    backend's UpdateAndClaim part, the same step takes two, as before it."""
    combined, stored, stats = await run_noop_group(RedisBackend(redis_url), 1000)
    two_calls, stored_before, stats_before = await run_noop_group(TwoCalls(redis_url), 1000)
    assert len(combined) == len(two_calls) == 9  # ten batches of 100
    assert Counter(combined)[1] >= len(combined) - 1  # one round trip per batch
    assert min(two_calls) >= 2
    for run, group_stats in ((stored, stats), (stored_before, stats_before)):
        assert run.count(State.COMPLETED) == 1000
        assert all(job.attempt == 1 for job in run.latest.values())
        assert (group_stats.completed, group_stats.settle_errors) == (1000, 0)


def answer_of(answer: Job | OJSError) -> tuple[Any, ...]:
    """What an ``Apply`` answered for one item, comparable across runs (ids left out)."""
    if isinstance(answer, Job):
        return (answer.state, answer.attempt, answer.args, answer.has_result and answer.result)
    job_id = answer.details.get("job_id") or answer.details.get("resource_id") or "-"
    return (type(answer).__name__, answer.message.replace(job_id, "<id>"))


async def settle_and_claim_after_a_cancel_elsewhere(
    backend: RedisBackend, redis_url: str
) -> tuple[list[tuple[Any, ...]], list[Any], int]:
    """Jobs 0-2 claimed through ``backend``'s system, job 1 cancelled through another
    (another process on the same Redis: the claimed version the QueueActor keeps goes
    stale), then one ``Apply`` (ack 0, ack 1, requeue 2) and a ``Claim`` reach the
    QueueActor back to back. Its answers, the jobs claimed, and their round trips."""
    async with (
        open_system(backend, settings=QUIET) as system,
        open_system(RedisBackend(redis_url), settings=QUIET) as other,
    ):
        await system.enqueue_batch([request("work.any", n) for n in range(4)])
        first, second, third = await system.fetch(["default"], count=3, worker_id="w")
        await other.cancel(second.id)
        queue = await system.queue_ref("default")
        client = backend.connection.client
        before = client.round_trips
        applied = await queue.send(
            Apply(
                [
                    (first.id, ack_with("ok")),
                    (second.id, ack_with("ok")),
                    (third.id, lifecycle.requeue),
                ]
            )
        )
        claim = await queue.send(Claim(5, "w", None))
        answers = await applied.wait()
        claimed = await claim.wait()
        round_trips = client.round_trips - before
        assert (await system.info(second.id)).state is State.CANCELLED
    return [answer_of(answer) for answer in answers], [job.args[0] for job in claimed], round_trips


async def test_a_settle_whose_job_changed_elsewhere_answers_as_before(redis_url: str) -> None:
    """The first compare-and-set round goes with the claim; the job another process
    cancelled meanwhile loses it, is read and decided again after: the same answers as
    two calls give, one round trip fewer."""
    combined = await settle_and_claim_after_a_cancel_elsewhere(RedisBackend(redis_url), redis_url)
    two_calls = await settle_and_claim_after_a_cancel_elsewhere(TwoCalls(redis_url), redis_url)
    answers, claimed, round_trips = combined
    assert (answers, claimed) == two_calls[:2]
    completed, refused, requeued = answers
    assert completed == (State.COMPLETED, 1, [0], "ok")
    assert refused == ("Conflict", "Cannot ack job <id> in state 'cancelled'.")
    assert requeued == (State.AVAILABLE, 0, [2], False)
    assert claimed == [3, 2]  # the claim came after the requeue: it took that job too
    # update+claim, then the read of the job that changed; two calls: update, read, claim
    assert (round_trips, two_calls[2]) == (2, 3)


class LostWithClaim(RedisBackend):
    """The Redis backend, noting the jobs whose update lost its compare-and-set in an
    ``update_and_claim`` call (a settle that went with a claim)."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.lost: list[str] = []

    async def update_and_claim(
        self, updates: Sequence[tuple[Job, int]], *args: Any, **kwargs: Any
    ) -> tuple[list[bool], list[Job], list[Job]]:
        stored, claimed, expired = await super().update_and_claim(updates, *args, **kwargs)
        self.lost += [job.id for (job, _), ok in zip(updates, stored, strict=True) if not ok]
        return stored, claimed, expired


async def test_a_job_cancelled_elsewhere_before_its_ack_is_refused_as_before(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """At group level: job 150 is cancelled through another process once the group has
    claimed it (the version its QueueActor keeps goes stale), and the rest of its batch
    waits for that; its ack, sent with the next claim, loses the compare-and-set and is
    refused with the same error as with two calls. Every other job is completed once."""

    async def run(backend: RedisBackend) -> tuple[Any, ...]:
        caplog.clear()
        cancelled = trio.Event()
        async with (
            open_system(backend, settings=QUIET) as system,
            open_system(RedisBackend(redis_url), settings=QUIET) as other,
        ):
            jobs = await system.enqueue_batch([request("work.any", n) for n in range(300)])
            victim = jobs[150].id

            async def handle(job: Job) -> None:
                if job.args[0] == 100:  # the first of the victim's batch
                    await other.cancel(victim)
                    cancelled.set()
                elif 100 < job.args[0] < 200 and not cancelled.is_set():
                    await cancelled.wait()

            settled = Settled()
            with caplog.at_level(logging.WARNING, logger="ojs_actors.worker_group"):
                async with system.worker_group(
                    ["default"],
                    {"work.any": handle},
                    batch_size=100,
                    worker_id="g",
                    on_settled=settled,
                ) as group:
                    await settled.until(lambda: settled.count(State.COMPLETED) == 299)
                    await settled.until(lambda: group.stats.settle_errors == 1)
            assert (await system.info(victim)).state is State.CANCELLED
            assert all(job.attempt == 1 for job in settled.latest.values())
            assert group.in_hand == 0
        warnings = [record.getMessage().replace(victim, "<id>") for record in caplog.records]
        stats = group.stats
        return stats.completed, stats.settle_errors, stats.failed, warnings, victim

    combined = LostWithClaim(redis_url)
    *outcome, victim = await run(combined)
    assert combined.lost == [victim]  # the ack went with a claim, and lost
    *outcome_before, _ = await run(TwoCalls(redis_url))
    assert outcome == outcome_before
    assert outcome[:3] == [299, 1, 0]
    assert outcome[3] == ["worker group g: job <id>: Cannot ack job <id> in state 'cancelled'."]
