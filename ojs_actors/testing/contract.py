"""The backend contract: one test suite every backend passes, in this repository or not.

Writing a backend
=================

A backend implements :class:`ojs_actors.backends.Backend` (``ojs_actors/backends/base.py``;
its module docstring states the conventions): the lifecycle (``start``, ``close``,
``ping``), jobs (``insert_jobs`` with unique policies, ``get_jobs``, ``update_jobs`` by
compare-and-set on ``version``, ``claim`` in priority-then-FIFO order, ``due_jobs`` and
``next_due_at`` for timers, ``count_jobs``), the dead letter queue, snapshots (with the
versioned ``load_snapshot_versioned`` / ``save_snapshot_if``), the event outbox
(written with every job change and by ``save_snapshot_if(events=...)``; read by
``read_events``) and ``reset``. Every call is atomic on its own and safe
against callers in other processes sharing the store.

Check it with this suite: subclass :class:`BackendContract` in a test module and provide
the ``backend_factory`` fixture, which opens a fresh, empty backend (``**options`` are the
backend's constructor options the suite varies, today ``event_retention``) as an async
context manager that closes it on exit::

    # tests/test_my_backend.py
    import pytest

    from ojs_actors.backends import open_backend
    from ojs_actors.testing.contract import BackendContract, BackendFactory
    from my_package import MyBackend

    class TestMyBackend(BackendContract):
        @pytest.fixture
        def backend_factory(self) -> BackendFactory:
            return lambda **options: open_backend(MyBackend(**options))

(``open_backend`` starts it, on the shared asyncio bridge if it ``needs_asyncio``, and
closes it on exit.)
Then ``pytest tests/test_my_backend.py``. The suite needs pytest and pytest-trio
(``pip install 'ojs-actors[test]'``); its tests are marked ``trio``, so no
``trio_mode`` setting is needed. Fixtures of your own (a server URL, a temporary
directory) are requested as arguments of ``backend_factory``, as for any fixture. Every
test opens one backend, which must start empty: give each its own database, file or key
prefix, or empty the shared one in the fixture. ``tests/test_backend_contract.py`` runs
the suite on the memory, SQLite and Redis backends.

Each test states one documented behaviour of the protocol. Times are explicit epoch
milliseconds: no clock is involved.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from typing import Any

import pytest
import trio

from ..backends import Backend, Deduplicated, EventFilter, EventSink, OutboxBacklog, RateLimit
from ..core import Duplicate, Job, State, lifecycle, parse_enqueue

NOW = 1_767_225_600_000  # 2026-01-01T00:00:00Z
SECOND = 1_000

BackendFactory = Callable[..., AbstractAsyncContextManager[Backend]]
"""Opens a fresh, empty backend with the given options; closes it on exit."""
Opener = Callable[..., Awaitable[Backend]]
"""Opens a backend for the rest of the test (the ``new_backend`` fixture)."""


def make(n: int = 0, now: int = NOW, queue: str = "q", **options: Any) -> Job:
    body: dict[str, Any] = {
        "type": "test.work",
        "args": [n],
        "options": {"queue": queue, **options},
    }
    return parse_enqueue(body, now)


def unique_job(n: int = 0, now: int = NOW, **policy: Any) -> Job:
    """A job unique by type and args (so ``n`` decides who conflicts with whom)."""
    return make(n, now, unique={"keys": ["type", "args"], **policy})


async def stored(backend: Backend, job_id: str) -> Job | None:
    [job] = await backend.get_jobs([job_id])
    return job


async def put(backend: Backend, *jobs: Job) -> list[Job]:
    results = await backend.insert_jobs(jobs)
    assert all(isinstance(result, Job) for result in results), results
    return [result for result in results if isinstance(result, Job)]


async def advance(backend: Backend, job: Job, nxt: Job) -> Job:
    """Store ``nxt`` over ``job`` (compare-and-set) and return it as stored."""
    assert await backend.update_jobs([(nxt, job.version)]) == [True]
    current = await stored(backend, nxt.id)
    assert current is not None
    return current


def ids(jobs: list[Job]) -> list[str]:
    return [job.id for job in jobs]


def dead_lettered(n: int, queue: str = "q") -> Job:
    """A job that failed its only attempt under ``on_exhaustion: dead_letter`` (in memory)."""
    job = make(n, queue=queue, retry={"max_attempts": 1, "on_exhaustion": "dead_letter"})
    active = lifecycle.claim(job, NOW + 1, "w", None)
    return lifecycle.fail(active, NOW + 2, {"code": "handler_error", "message": "no"})


def event(
    n: int, kind: str = "job.enqueued", queue: str = "q", job_type: str = "test.work"
) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": f"evt_{n}",
        "type": kind,
        "time": "2026-01-01T00:00:00Z",
        "data": {"job_id": f"job_{n}", "job_type": job_type, "queue": queue, "n": n},
    }


class BackendContract:
    """The contract's tests; a subclass named ``Test…`` provides ``backend_factory``."""

    pytestmark = pytest.mark.trio

    @pytest.fixture
    def backend_factory(self) -> BackendFactory:
        raise NotImplementedError(
            f"{type(self).__name__} must provide the backend_factory fixture "
            "(see ojs_actors.testing.contract)"
        )

    @pytest.fixture
    async def new_backend(self, backend_factory: BackendFactory) -> AsyncIterator[Opener]:
        """Opens backends (``**options`` for the factory); closes them after the test."""
        async with AsyncExitStack() as stack:

            async def open_one(**options: Any) -> Backend:
                return await stack.enter_async_context(backend_factory(**options))

            yield open_one

    @pytest.fixture
    async def backend(self, new_backend: Opener) -> Backend:
        return await new_backend()

    # -- start / ping ------------------------------------------------------------------------------

    async def test_ping_answers_latency_in_ms(self, backend: Backend) -> None:
        latency = await backend.ping()
        assert isinstance(latency, float) and latency >= 0

    # -- insert / get ------------------------------------------------------------------------------

    async def test_insert_stores_jobs_losslessly_and_get_keeps_order(
        self, backend: Backend
    ) -> None:
        job = make(
            1,
            priority=7,
            tags=["a", "b"],
            metadata={"tenant": "t1", "nested": {"x": [1, 2.5, None, True]}},
            retry={"max_attempts": 4, "backoff_strategy": "linear", "initial_interval": "PT2S"},
            timeout_ms=9_000,
            visibility_timeout_ms=12_000,
            expires_at="2030-01-01T00:00:00Z",
        )
        job.extra = {"x-custom": {"kept": "as sent"}}
        job.args = [2**70, -(2**64), 0.1, 1e300, 'é ✓ \u2028 "quoted"', [], {}, [[]], {"": None}]
        other = make(2)
        [first, second] = await backend.insert_jobs([job, other])
        assert first is job and second is other  # results are the stored jobs, in order
        got = await backend.get_jobs([other.id, "missing", job.id, other.id])
        assert [j.id if j else None for j in got] == [other.id, None, job.id, other.id]
        # ``seq`` (the ready order) is the backend's own: it may or may not show it
        assert got[2] is not None and got[2].to_record() | {"seq": 0} == job.to_record()
        assert got[2].to_wire() == job.to_wire()
        assert await backend.get_jobs([]) == []
        [active], _ = await backend.claim("q", 1, NOW + 1, "w", None)  # rewritten by the claim
        assert active.id == job.id and (active.args, active.meta) == (job.args, job.meta)

    async def test_insert_reports_duplicate_ids_in_store_and_in_batch(
        self, backend: Backend
    ) -> None:
        job = make(1)
        await put(backend, job)
        again = make(2)
        again.id = job.id
        twin = make(3)
        twin_copy = make(4)
        twin_copy.id = twin.id
        results = await backend.insert_jobs([again, twin, twin_copy])
        assert isinstance(results[0], Duplicate) and results[0].details["job_id"] == job.id
        assert results[1] is twin
        assert isinstance(results[2], Duplicate)
        kept = await stored(backend, job.id)
        assert kept is not None and kept.args == [1]  # the first stays as it was
        assert (await stored(backend, twin.id)) is not None
        assert await backend.count_jobs("q") == {State.AVAILABLE: 2}

    async def test_atomic_insert_writes_all_or_nothing(self, backend: Backend) -> None:
        existing = make(0)
        await put(backend, existing)
        clash = make(9)
        clash.id = existing.id
        fresh = make(1)
        results = await backend.insert_jobs([fresh, clash], atomic=True)
        assert results[0] is fresh  # returned unsaved, next to the failure
        assert isinstance(results[1], Duplicate)
        assert await stored(backend, fresh.id) is None
        assert await backend.count_jobs("q") == {State.AVAILABLE: 1}

        batch = [make(n) for n in range(1, 4)]
        assert await backend.insert_jobs(batch, atomic=True) == batch
        assert all(await backend.get_jobs(ids(batch)))

        # A unique conflict inside the batch fails it too.
        a, b = unique_job(5), unique_job(5)
        results = await backend.insert_jobs([make(6), a, b], atomic=True)
        assert isinstance(results[2], Duplicate)
        assert await stored(backend, a.id) is None

    async def test_unique_reject(self, backend: Backend) -> None:
        first = unique_job(1)
        await put(backend, first)
        second = unique_job(1, NOW + 1)
        other_args = unique_job(2, NOW + 1)
        [rejected, accepted] = await backend.insert_jobs([second, other_args])
        assert isinstance(rejected, Duplicate)
        assert rejected.details["existing_job_id"] == first.id
        assert rejected.details["unique_key"] == second.unique_key
        assert accepted is other_args
        assert await stored(backend, second.id) is None
        # Within one (non-atomic) batch the earlier job holds the key.
        a, b = unique_job(3, NOW + 2), unique_job(3, NOW + 2)
        results = await backend.insert_jobs([a, b])
        assert results[0] is a and isinstance(results[1], Duplicate)

    async def test_unique_ignore_returns_the_existing_job(self, backend: Backend) -> None:
        first = unique_job(1, on_conflict="ignore")
        await put(backend, first)
        second = unique_job(1, NOW + 1, on_conflict="ignore")
        [result] = await backend.insert_jobs([second])
        assert isinstance(result, Deduplicated)
        assert result.existing.id == first.id and result.existing.state is State.AVAILABLE
        assert await stored(backend, second.id) is None
        assert await backend.count_jobs("q") == {State.AVAILABLE: 1}

    async def test_unique_replace_cancels_the_holder(self, backend: Backend) -> None:
        first = unique_job(1, on_conflict="replace")
        await put(backend, first)
        second = unique_job(1, NOW + 5, on_conflict="replace")
        [result] = await backend.insert_jobs([second])
        assert result is second
        old = await stored(backend, first.id)
        assert old is not None and old.state is State.CANCELLED
        assert old.cancelled_at == NOW + 5 and old.version == first.version + 1
        assert await backend.count_jobs("q") == {State.AVAILABLE: 1, State.CANCELLED: 1}
        # The new job holds the key now: a third replaces it in turn.
        third = unique_job(1, NOW + 6, on_conflict="replace")
        assert await backend.insert_jobs([third]) == [third]
        replaced = await stored(backend, second.id)
        assert replaced is not None and replaced.state is State.CANCELLED
        # The cancelled job no longer offers itself for claiming.
        claimed, _ = await backend.claim("q", 10, NOW + 10, "w", None)
        assert ids(claimed) == [third.id]

    async def test_unique_replace_of_a_terminal_holder_only_takes_the_key(
        self, backend: Backend
    ) -> None:
        states = ["available", "completed"]
        first = unique_job(1, on_conflict="replace", states=states)
        await put(backend, first)
        [active], _ = await backend.claim("q", 1, NOW + 1, "w", None)
        done = await advance(backend, active, lifecycle.ack(active, NOW + 2))
        second = unique_job(1, NOW + 3, on_conflict="replace", states=states)
        assert await backend.insert_jobs([second], atomic=True) == [second]
        still = await stored(backend, first.id)
        assert (
            still is not None and still.state is State.COMPLETED and still.version == done.version
        )
        third = unique_job(1, NOW + 4, on_conflict="reject", states=states)
        [refused] = await backend.insert_jobs([third])
        assert isinstance(refused, Duplicate) and refused.details["existing_job_id"] == second.id

    async def test_unique_replace_refuses_while_the_holder_is_active(
        self, backend: Backend
    ) -> None:
        first = unique_job(1, on_conflict="replace")
        await put(backend, first)
        [active], _ = await backend.claim("q", 1, NOW + 1, "w", None)
        second = unique_job(1, NOW + 2, on_conflict="replace")
        [result] = await backend.insert_jobs([second])
        assert isinstance(result, Duplicate)
        assert result.details["existing_state"] == "active"
        still = await stored(backend, first.id)
        assert still is not None and still.state is State.ACTIVE and still.version == active.version

    async def test_unique_replace_except_schedule_keeps_the_holders_time(
        self, backend: Backend
    ) -> None:
        at = "2030-06-01T00:00:00Z"
        first = make(
            1,
            scheduled_at=at,
            unique={"keys": ["type", "args"], "on_conflict": "replace_except_schedule"},
        )
        assert first.state is State.SCHEDULED
        await put(backend, first)
        second = make(
            1, NOW + 1, unique={"keys": ["type", "args"], "on_conflict": "replace_except_schedule"}
        )
        assert second.state is State.AVAILABLE
        [result] = await backend.insert_jobs([second])
        assert isinstance(result, Job)
        assert result.state is State.SCHEDULED and result.scheduled_at == first.scheduled_at
        assert second.state is State.AVAILABLE  # the caller's job is left as it was
        new = await stored(backend, second.id)
        assert new is not None
        assert new.state is State.SCHEDULED and new.scheduled_at == first.scheduled_at
        assert new.enqueued_at is None
        old = await stored(backend, first.id)
        assert old is not None and old.state is State.CANCELLED

    async def test_unique_period_limits_the_conflict(self, backend: Backend) -> None:
        first = unique_job(1, period="PT1M")
        await put(backend, first)
        inside = unique_job(1, NOW + 59 * SECOND, period="PT1M")
        assert isinstance((await backend.insert_jobs([inside]))[0], Duplicate)
        after = unique_job(1, NOW + 60 * SECOND, period="PT1M")
        assert await backend.insert_jobs([after]) == [after]

    async def test_unique_states_decide_which_holders_count(self, backend: Backend) -> None:
        first = unique_job(1)
        await put(backend, first)
        [active], _ = await backend.claim("q", 1, NOW + 1, "w", None)
        await advance(backend, active, lifecycle.ack(active, NOW + 2))
        # Default states exclude completed: no conflict.
        free = unique_job(1, NOW + 3)
        assert await backend.insert_jobs([free]) == [free]
        # A policy checking completed jobs conflicts with a completed holder.
        a = unique_job(2, states=["completed"])
        await put(backend, a)
        [claimed], _ = await backend.claim("q", 1, NOW + 4, "w", None)
        assert claimed.id == free.id  # FIFO: `free` was ready before `a`
        [claimed], _ = await backend.claim("q", 1, NOW + 4, "w", None)
        assert claimed.id == a.id
        await advance(backend, claimed, lifecycle.ack(claimed, NOW + 5))
        b = unique_job(2, NOW + 6, states=["completed"])
        [result] = await backend.insert_jobs([b])
        assert isinstance(result, Duplicate) and result.details["existing_state"] == "completed"
        # ... and not with an available one.
        c = unique_job(3, states=["completed"])
        await put(backend, c)
        d = unique_job(3, NOW + 1, states=["completed"])
        assert await backend.insert_jobs([d]) == [d]

    # -- compare-and-set ---------------------------------------------------------------------------

    async def test_the_callers_jobs_are_never_changed(self, backend: Backend) -> None:
        """Jobs are values: a backend keeps its own copies (and its own ready order)."""
        jobs = [make(n) for n in range(3)]
        before = [(job.to_record(), job.seq) for job in jobs]
        await backend.insert_jobs(jobs[:2])
        await backend.insert_jobs(jobs[2:], atomic=True)
        [claimed], _ = await backend.claim("q", 1, NOW + 1, "w", None)
        requeued = lifecycle.requeue(claimed, NOW + 2)
        snapshot = (requeued.to_record(), requeued.seq)
        assert await backend.update_jobs([(requeued, claimed.version)]) == [True]
        assert [(job.to_record(), job.seq) for job in jobs] == before
        assert (requeued.to_record(), requeued.seq) == snapshot

    async def test_update_jobs_is_compare_and_set_on_version(self, backend: Backend) -> None:
        job = make(1)
        other = make(2)
        await put(backend, job, other)
        cancelled = lifecycle.cancel(job, NOW + 1)
        stale = lifecycle.cancel(job, NOW + 2)  # built from the same version: loses the race
        ghost = make(3)
        ok = await backend.update_jobs(
            [(cancelled, job.version), (stale, job.version), (ghost, 0), (other, other.version + 7)]
        )
        assert ok == [True, False, False, False]
        current = await stored(backend, job.id)
        assert current is not None
        assert current.state is State.CANCELLED and current.cancelled_at == NOW + 1
        assert current.version == job.version + 1
        assert await stored(backend, ghost.id) is None
        assert await backend.update_jobs([]) == []
        assert await backend.count_jobs("q") == {State.AVAILABLE: 1, State.CANCELLED: 1}

    # -- claim -------------------------------------------------------------------------------------

    async def test_claim_takes_priority_first_then_fifo(self, backend: Backend) -> None:
        jobs = [make(n, priority=p) for n, p in enumerate([0, 5, 0, 5, -1, 10])]
        await put(backend, *jobs[:3])
        await put(backend, *jobs[3:])
        await put(backend, make(99, queue="elsewhere", priority=100))
        first, expired = await backend.claim("q", 2, NOW + 1, "w1", None)
        assert expired == []
        assert ids(first) == [jobs[5].id, jobs[1].id]
        rest, _ = await backend.claim("q", 10, NOW + 2, "w2", 5_000)
        assert ids(rest) == [jobs[3].id, jobs[0].id, jobs[2].id, jobs[4].id]
        assert await backend.claim("q", 10, NOW + 3, "w3", None) == ([], [])
        for job in first:
            assert job.state is State.ACTIVE and job.attempt == 1 and job.worker_id == "w1"
            assert job.started_at == NOW + 1
            assert job.lease_expires_at == NOW + 1 + job.visibility_timeout_ms
        assert all(job.lease_expires_at == NOW + 2 + 5_000 for job in rest)
        # What claim returned is what is stored.
        again = await stored(backend, first[0].id)
        assert again is not None and again.to_record() == first[0].to_record()
        assert await backend.count_jobs("q") == {State.ACTIVE: 6}
        assert await backend.claim("q", 0, NOW + 4, "w", None) == ([], [])

    async def test_claim_stores_what_the_lifecycle_decides(self, backend: Backend) -> None:
        """A claim applies ``lifecycle.claim`` (or ``lifecycle.expire`` past ``expires_at``)
        field for field: the backend supplies the atomic step, core decides the change."""
        plain, timed = make(1), make(2, timeout_ms=2_000, priority=-1)
        expiring, anonymous = make(3, expires_at="+PT1S", queue="x"), make(4, queue="x")
        await put(backend, plain, timed, expiring, anonymous)
        claimed, _ = await backend.claim("q", 2, NOW + 7, "w", 9_000)
        [unnamed], [expired] = await backend.claim("x", 2, NOW + SECOND, None, None)

        def same(job: Job, decided: Job) -> None:
            mine, theirs = job.to_record(), decided.to_record()
            mine.pop("seq", None), theirs.pop("seq", None)  # the backend's own order
            assert mine == theirs

        for job, original in zip(claimed, [plain, timed], strict=True):
            same(job, lifecycle.claim(original, NOW + 7, "w", 9_000))
        same(unnamed, lifecycle.claim(anonymous, NOW + SECOND, None, None))
        same(expired, lifecycle.expire(expiring, NOW + SECOND))
        for job in (*claimed, unnamed, expired):  # and what claim returned is what is stored
            again = await stored(backend, job.id)
            assert again is not None
            same(again, job)

    async def test_a_rate_limit_counts_every_claim_of_the_queue_in_its_window(
        self, backend: Backend
    ) -> None:
        """The backend counts the claims (whoever asks: every process sharing it)."""
        await put(backend, *[make(n) for n in range(8)])
        rate = RateLimit(3, window_ms=1_000)
        first, _ = await backend.claim("q", 2, NOW, "w1", None, rate=rate)
        second, _ = await backend.claim("q", 5, NOW + 10, "w2", None, rate=rate)
        assert (len(first), len(second)) == (2, 1)
        assert await backend.claim("q", 5, NOW + 999, "w3", None, rate=rate) == ([], [])
        third, _ = await backend.claim("q", 5, NOW + 1_000, "w3", None, rate=rate)
        assert len(third) == 2  # the first two left the window; the one at +10 is in it
        unlimited, _ = await backend.claim("q", 5, NOW + 1_001, "w4", None)
        assert len(unlimited) == 3
        assert await backend.count_jobs("q") == {State.ACTIVE: 8}

    async def test_fifo_order_is_by_when_a_job_became_available(self, backend: Backend) -> None:
        a, b = make(1), make(2)
        await put(backend, a, b)
        [active_a], _ = await backend.claim("q", 1, NOW + 1, "w", None)
        await advance(backend, active_a, lifecycle.requeue(active_a, NOW + 2))  # back of the line
        scheduled = make(3, scheduled_at="+PT1S")
        await put(backend, scheduled)
        await advance(backend, scheduled, lifecycle.promote(scheduled, NOW + 3))
        claimed, _ = await backend.claim("q", 3, NOW + 4, "w", None)
        assert ids(claimed) == [b.id, a.id, scheduled.id]

    async def test_expired_jobs_are_never_claimed(self, backend: Backend) -> None:
        doomed = make(1, expires_at="+PT1S")
        fine = make(2)
        also = make(3)
        await put(backend, doomed, fine, also)
        claimed, expired = await backend.claim("q", 1, NOW + SECOND, "w", None)
        assert ids(claimed) == [fine.id]  # the expired one did not use up the count
        assert ids(expired) == [doomed.id]
        gone = await stored(backend, doomed.id)
        assert gone is not None and gone.state is State.DISCARDED
        assert gone.discarded_at == NOW + SECOND and gone.error and gone.error["code"] == "expired"
        assert not gone.dead_letter
        claimed, expired = await backend.claim("q", 5, NOW + SECOND, "w", None)
        assert ids(claimed) == [also.id] and expired == []
        # Not yet expired: claimable.
        later = make(4, expires_at="+PT1S")
        await put(backend, later)
        claimed, _ = await backend.claim("q", 1, NOW + SECOND - 1, "w", None)
        assert ids(claimed) == [later.id]

    async def test_paused_or_non_available_jobs_are_not_claimed(self, backend: Backend) -> None:
        await put(backend, make(1, pending=True), make(2, scheduled_at="+PT1H"))
        assert await backend.claim("q", 5, NOW + 1, "w", None) == ([], [])
        assert await backend.count_jobs("q") == {State.PENDING: 1, State.SCHEDULED: 1}

    # -- timers ------------------------------------------------------------------------------------

    async def test_timers_follow_the_current_version(self, backend: Backend) -> None:
        assert await backend.next_due_at() is None
        job = make(1, scheduled_at="+PT10S", timeout_ms=4_000, retry={"jitter": False})
        await put(backend, job)
        at = NOW + 10 * SECOND
        assert await backend.next_due_at() == at
        assert await backend.due_jobs(at - 1, 10) == []
        [due] = await backend.due_jobs(at, 10)
        assert due.id == job.id and due.version == job.version
        assert ids(await backend.due_jobs(at, 10)) == [job.id]  # reported until it changes

        ready = await advance(backend, due, lifecycle.promote(due, at))
        assert await backend.next_due_at() is None  # available, no expiry: no timer
        assert await backend.due_jobs(at + 10**9, 10) == []

        [active], _ = await backend.claim("q", 1, at + 1, "w", 20_000)
        # Two timers (execution timeout at +4 s, lease at +20 s): the earliest is reported,
        # and the job once, however many of its timers are due.
        assert await backend.next_due_at() == at + 1 + 4_000
        assert ids(await backend.due_jobs(at + 1 + 30_000, 10)) == [active.id]
        assert ready.version < active.version

        failed = await advance(
            backend,
            active,
            lifecycle.fail(active, at + 2, {"code": "handler_error", "message": "x"}),
        )
        assert failed.state is State.RETRYABLE and failed.next_attempt_at is not None
        assert await backend.next_due_at() == failed.next_attempt_at
        assert await backend.due_jobs(failed.next_attempt_at - 1, 10) == []
        assert ids(await backend.due_jobs(failed.next_attempt_at, 10)) == [job.id]

        again = await advance(backend, failed, lifecycle.promote(failed, failed.next_attempt_at))
        [active], _ = await backend.claim("q", 1, failed.next_attempt_at + 1, "w", None)
        assert again.state is State.AVAILABLE
        await advance(backend, active, lifecycle.ack(active, failed.next_attempt_at + 2))
        assert await backend.next_due_at() is None

    async def test_expiry_is_a_timer_until_the_job_starts(self, backend: Backend) -> None:
        expiring = make(1, expires_at="+PT30S")
        pending = make(2, expires_at="+PT20S", pending=True)
        await put(backend, expiring, pending)
        assert await backend.next_due_at() == NOW + 20 * SECOND
        assert ids(await backend.due_jobs(NOW + 30 * SECOND, 10)) == [pending.id, expiring.id]
        [active], _ = await backend.claim("q", 1, NOW + 1, "w", 60_000)
        assert active.id == expiring.id
        # Active: the lease counts, expires_at no longer does.
        assert ids(await backend.due_jobs(NOW + 59 * SECOND, 10)) == [pending.id]

    async def test_due_jobs_are_ordered_by_time_and_limited(self, backend: Backend) -> None:
        jobs = [make(n, scheduled_at=f"+PT{s}S") for n, s in enumerate([30, 10, 20, 40])]
        await put(backend, *jobs)
        assert await backend.next_due_at() == NOW + 10 * SECOND
        due = await backend.due_jobs(NOW + 35 * SECOND, 10)
        assert ids(due) == [jobs[1].id, jobs[2].id, jobs[0].id]
        assert ids(await backend.due_jobs(NOW + 35 * SECOND, 2)) == [jobs[1].id, jobs[2].id]
        assert await backend.due_jobs(NOW + 35 * SECOND, 0) == []
        cancelled = lifecycle.cancel(jobs[1], NOW + 1)
        await advance(backend, jobs[1], cancelled)
        assert await backend.next_due_at() == NOW + 20 * SECOND

    # -- counts ------------------------------------------------------------------------------------

    async def test_count_jobs_per_queue_and_state(self, backend: Backend) -> None:
        assert await backend.count_jobs("q") == {}
        await put(backend, make(1), make(2), make(3, scheduled_at="+PT1M"), make(4, queue="other"))
        [active], _ = await backend.claim("q", 1, NOW + 1, "w", None)
        await advance(backend, active, lifecycle.ack(active, NOW + 2))
        assert await backend.count_jobs("q") == {
            State.AVAILABLE: 1,
            State.SCHEDULED: 1,
            State.COMPLETED: 1,
        }
        assert await backend.count_jobs("other") == {State.AVAILABLE: 1}
        assert await backend.count_jobs("nobody") == {}

    # -- dead letter -------------------------------------------------------------------------------

    async def test_dead_letter_lists_pages_and_deletes(self, backend: Backend) -> None:
        dead = [dead_lettered(n, queue="q" if n % 2 == 0 else "r") for n in range(5)]
        discarded_only = lifecycle.fail(
            lifecycle.claim(make(9, retry={"max_attempts": 1}), NOW + 1, "w", None),
            NOW + 2,
            {"code": "handler_error", "message": "no"},
        )
        assert discarded_only.state is State.DISCARDED and not discarded_only.dead_letter
        await put(backend, *dead, discarded_only)
        page, total = await backend.list_dead_letter(None, 100, 0)
        assert ids(page) == ids(dead) and total == 5  # oldest first; plain discards excluded
        page, total = await backend.list_dead_letter(None, 2, 1)
        assert ids(page) == [dead[1].id, dead[2].id] and total == 5
        page, total = await backend.list_dead_letter("q", 100, 0)
        assert ids(page) == [dead[0].id, dead[2].id, dead[4].id] and total == 3
        page, total = await backend.list_dead_letter("q", 1, 2)
        assert ids(page) == [dead[4].id] and total == 3
        assert await backend.list_dead_letter("none", 10, 0) == ([], 0)
        assert (await backend.list_dead_letter(None, 10, 50)) == ([], 5)

        assert await backend.delete_dead_letter(dead[2].id) is True
        assert await backend.delete_dead_letter(dead[2].id) is False
        assert await backend.delete_dead_letter(discarded_only.id) is False  # not dead-lettered
        assert await backend.delete_dead_letter("missing") is False
        assert await stored(backend, dead[2].id) is None
        assert (await stored(backend, discarded_only.id)) is not None
        assert await backend.count_jobs("q") == {State.DISCARDED: 3}
        page, total = await backend.list_dead_letter(None, 100, 0)
        assert ids(page) == [dead[0].id, dead[1].id, dead[3].id, dead[4].id] and total == 4

    async def test_dead_letter_follows_the_jobs_state(self, backend: Backend) -> None:
        a, b = dead_lettered(1), dead_lettered(2)
        await put(backend, a, b)
        retried = await advance(backend, a, lifecycle.retry_dead_letter(a, NOW + 10))
        assert retried.state is State.AVAILABLE and retried.attempt == 0
        page, total = await backend.list_dead_letter(None, 10, 0)
        assert ids(page) == [b.id] and total == 1
        assert await backend.delete_dead_letter(a.id) is False
        # It fails again: back in the dead letter queue, now after b.
        [active], _ = await backend.claim("q", 1, NOW + 11, "w", None)
        again = lifecycle.fail(active, NOW + 12, {"code": "handler_error", "message": "still no"})
        await advance(backend, active, again)
        page, total = await backend.list_dead_letter(None, 10, 0)
        assert ids(page) == [b.id, a.id] and total == 2
        assert page[1].errors[-1]["message"] == "still no"

    # -- snapshots ---------------------------------------------------------------------------------

    async def test_snapshots_save_load_list_delete(self, backend: Backend) -> None:
        assert await backend.load_snapshot("queue:a") is None
        await backend.save_snapshot("queue:b", {"name": "b", "paused_at": None})
        await backend.save_snapshot("queue:a", {"name": "a", "paused_at": 5})
        await backend.save_snapshot(
            "cron:nightly", {"expression": "0 0 * * *", "nested": {"k": [1]}}
        )
        await backend.save_snapshot("queue:b", {"name": "b", "paused_at": 7})  # overwrite
        state = await backend.load_snapshot("queue:b")
        assert state == {"name": "b", "paused_at": 7}
        assert state is not None
        state["paused_at"] = 99  # a copy: the stored snapshot is not affected
        assert await backend.load_snapshot("queue:b") == {"name": "b", "paused_at": 7}

        listed = await backend.list_snapshots("queue:")
        assert list(listed) == ["queue:b", "queue:a"]  # first-saved order
        assert listed["queue:a"] == {"name": "a", "paused_at": 5}
        assert set(await backend.list_snapshots("")) == {"queue:a", "queue:b", "cron:nightly"}
        assert await backend.list_snapshots("cron:") == {
            "cron:nightly": {"expression": "0 0 * * *", "nested": {"k": [1]}}
        }
        assert await backend.list_snapshots("queue:a") == {"queue:a": {"name": "a", "paused_at": 5}}
        assert await backend.list_snapshots("workflow:") == {}

        assert await backend.delete_snapshot("queue:a") is True
        assert await backend.delete_snapshot("queue:a") is False
        assert await backend.load_snapshot("queue:a") is None
        assert list(await backend.list_snapshots("queue:")) == ["queue:b"]

    async def test_snapshots_are_listed_by_plain_string_prefix(self, backend: Backend) -> None:
        for key in ["w-1:a", "w-12:b", "w-1:c", "w", "x:w-1:d"]:
            await backend.save_snapshot(key, {"key": key})
        assert list(await backend.list_snapshots("w-1:")) == ["w-1:a", "w-1:c"]
        assert list(await backend.list_snapshots("w-1")) == ["w-1:a", "w-12:b", "w-1:c"]
        assert list(await backend.list_snapshots("w")) == ["w-1:a", "w-12:b", "w-1:c", "w"]
        assert await backend.list_snapshots("w-2") == {}

    async def test_saved_snapshot_is_a_copy_of_the_callers_dict(self, backend: Backend) -> None:
        state: dict[str, Any] = {"n": 1}
        await backend.save_snapshot("k", state)
        state["n"] = 2
        assert await backend.load_snapshot("k") == {"n": 1}

    async def test_snapshot_compare_and_set(self, backend: Backend) -> None:
        assert await backend.load_snapshot_versioned("cron:x") is None
        assert await backend.save_snapshot_if("cron:x", {"n": 1}, 1) is None  # does not exist
        first = await backend.save_snapshot_if("cron:x", {"n": 1}, None)
        assert first is not None
        assert await backend.load_snapshot_versioned("cron:x") == ({"n": 1}, first)
        assert await backend.save_snapshot_if("cron:x", {"n": 9}, None) is None  # exists now
        second = await backend.save_snapshot_if("cron:x", {"n": 2}, first)
        assert second is not None and second > first
        assert await backend.save_snapshot_if("cron:x", {"n": 9}, first) is None  # stale
        assert await backend.load_snapshot_versioned("cron:x") == ({"n": 2}, second)
        assert await backend.load_snapshot("cron:x") == {"n": 2}
        # An unconditional save also moves the version on, so it defeats stale CAS writers.
        await backend.save_snapshot("cron:x", {"n": 3})
        found = await backend.load_snapshot_versioned("cron:x")
        assert found is not None and found[0] == {"n": 3} and found[1] > second
        assert await backend.save_snapshot_if("cron:x", {"n": 9}, second) is None
        assert list(await backend.list_snapshots("cron:")) == ["cron:x"]
        # Deleted: only a "must not exist" write succeeds again.
        assert await backend.delete_snapshot("cron:x") is True
        assert await backend.load_snapshot_versioned("cron:x") is None
        assert await backend.save_snapshot_if("cron:x", {"n": 9}, found[1]) is None
        assert await backend.save_snapshot_if("cron:x", {"n": 4}, None) is not None
        assert await backend.load_snapshot("cron:x") == {"n": 4}

    async def test_snapshot_compare_and_set_has_one_winner(self, backend: Backend) -> None:
        """Concurrent writers holding the same version: exactly one succeeds."""
        version = await backend.save_snapshot_if("workflow:w", {"writer": None}, None)
        results: list[int | None] = []

        async def writer(n: int) -> None:
            results.append(await backend.save_snapshot_if("workflow:w", {"writer": n}, version))

        async with trio.open_nursery() as nursery:
            for n in range(5):
                nursery.start_soon(writer, n)
        assert sum(result is not None for result in results) == 1
        winner = [n for n, result in enumerate(results) if result is not None]
        found = await backend.load_snapshot_versioned("workflow:w")
        assert found is not None and found[1] == results[winner[0]]

    # -- events (the outbox) -----------------------------------------------------------------------

    async def test_every_job_write_appends_its_events(self, backend: Backend) -> None:
        assert await backend.read_events(EventFilter()) == []
        [job] = await put(backend, make(1))
        [active], _ = await backend.claim("q", 1, NOW + 5, "w", None)
        await advance(
            backend, active, lifecycle.ack(active, NOW + 9, {"ok": True}, has_result=True)
        )
        found = await backend.read_events(EventFilter())
        assert [(e["type"], e["id"], e["time"]) for e in found] == [
            ("job.enqueued", f"evt_{job.id}_0_0", "2026-01-01T00:00:00.000Z"),
            ("job.started", f"evt_{job.id}_1_0", "2026-01-01T00:00:00.005Z"),
            ("job.completed", f"evt_{job.id}_2_0", "2026-01-01T00:00:00.009Z"),
        ]
        assert found[1]["data"] == {
            "job_id": job.id, "job_type": "test.work", "queue": "q", "worker_id": "w", "attempt": 1,
        }  # fmt: skip
        assert found[2]["data"]["result"] == {"ok": True}
        assert await backend.read_events(EventFilter()) == found  # rendered alike every time

    async def test_writes_that_do_not_land_append_nothing(self, backend: Backend) -> None:
        [job] = await put(backend, make(1))
        assert await backend.update_jobs([(lifecycle.cancel(job, NOW + 1), 7)]) == [False]
        assert isinstance((await backend.insert_jobs([job]))[0], Duplicate)
        refused = await backend.insert_jobs([make(2), job], atomic=True)
        assert isinstance(refused[1], Duplicate)
        assert await backend.save_snapshot_if("cron:c", {"n": 1}, 3, events=[event(1)]) is None
        assert [e["type"] for e in await backend.read_events(EventFilter())] == ["job.enqueued"]

    async def test_events_filter_after_and_limit(self, backend: Backend) -> None:
        a, b = make(0), make(1, queue="other")
        c = parse_enqueue({"type": "mail.send", "args": [], "options": {"queue": "q"}}, NOW)
        await put(backend, a, b, c)
        [active], _ = await backend.claim("q", 1, NOW + 1, "w", None)  # a
        failed = lifecycle.fail(active, NOW + 2, {"code": "handler_error", "message": "no"})
        await advance(backend, active, failed)  # job.failed + job.retrying: one entry, two events
        version = await backend.save_snapshot_if("cron:c", {"n": 1}, None, events=[event(9)])
        assert version is not None

        def kinds(found: list[dict[str, Any]]) -> list[tuple[str, str]]:
            return [(e["type"], e["data"]["job_id"]) for e in found]

        everything = await backend.read_events(EventFilter())
        assert kinds(everything) == [
            ("job.enqueued", a.id), ("job.enqueued", b.id), ("job.enqueued", c.id),
            ("job.started", a.id), ("job.failed", a.id), ("job.retrying", a.id),
            ("job.enqueued", "job_9"),
        ]  # fmt: skip
        assert len({e["id"] for e in everything}) == len(everything)
        assert kinds(await backend.read_events(EventFilter(limit=2))) == kinds(everything[:2])
        enqueued = EventFilter(types=frozenset({"job.enqueued"}))
        assert kinds(await backend.read_events(enqueued)) == [
            ("job.enqueued", a.id), ("job.enqueued", b.id), ("job.enqueued", c.id),
            ("job.enqueued", "job_9"),
        ]  # fmt: skip
        assert kinds(await backend.read_events(EventFilter(queues=frozenset({"other"})))) == [
            ("job.enqueued", b.id)
        ]
        mail = EventFilter(job_types=frozenset({"mail.send"}))
        assert kinds(await backend.read_events(mail)) == [("job.enqueued", c.id)]
        both = EventFilter(
            types=frozenset({"job.retrying", "job.started"}), queues=frozenset({"q"})
        )
        assert kinds(await backend.read_events(both)) == [
            ("job.started", a.id), ("job.retrying", a.id)
        ]  # fmt: skip
        for position, seen in enumerate(everything):
            rest = await backend.read_events(EventFilter(after=seen["id"]))
            assert rest == everything[position + 1 :], seen["id"]
        inside = everything[4]["id"]  # job.failed: its entry's second event comes next
        assert kinds(await backend.read_events(EventFilter(after=inside, limit=1))) == [
            ("job.retrying", a.id)
        ]
        after_filtered = EventFilter(after=everything[0]["id"], queues=frozenset({"other"}))
        assert kinds(await backend.read_events(after_filtered)) == [("job.enqueued", b.id)]
        assert await backend.read_events(EventFilter(after="evt_unknown")) == []
        assert await backend.read_events(EventFilter(after=f"evt_{a.id}_7_0")) == []

    async def test_the_outbox_keeps_the_newest(self, new_backend: Opener) -> None:
        backend = await new_backend(event_retention=5)
        jobs = [make(n) for n in range(8)]
        await put(backend, *jobs[:4])
        if isinstance(backend, OutboxBacklog) and isinstance(backend, EventSink):
            # Such a backend keeps every event its sink has not taken: hand these over.
            relayed = await backend.read_events(EventFilter(limit=100, with_jobs=True))
            await backend.publish_events(relayed)
            assert await backend.outbox_backlog() == 0
        await put(backend, *jobs[4:])
        found = await backend.read_events(EventFilter(limit=100))
        assert [e["data"]["job_id"] for e in found] == ids(jobs[3:])
        gone = f"evt_{jobs[1].id}_0_0"
        assert await backend.read_events(EventFilter(after=gone)) == []  # trimmed away
        resumed = await backend.read_events(EventFilter(after=gone, resume=True))
        assert resumed == found  # a consumer that fell behind starts at the oldest kept
        kept = f"evt_{jobs[5].id}_0_0"
        assert [
            e["data"]["job_id"] for e in await backend.read_events(EventFilter(after=kept))
        ] == [
            jobs[6].id,
            jobs[7].id,
        ]

    async def test_reading_events_after_an_id_deep_in_a_long_log(self, new_backend: Opener) -> None:
        backend = await new_backend(event_retention=1500)
        common = [make(n) for n in range(1200)]
        rare = [make(n, queue="rare") for n in range(100)]
        await put(backend, *common)
        await put(backend, *rare)
        after = f"evt_{common[700].id}_0_0"
        found = await backend.read_events(EventFilter(after=after, queues=frozenset({"rare"})))
        assert [e["data"]["job_id"] for e in found] == ids(rare)
        found = await backend.read_events(EventFilter(after=f"evt_{common[1198].id}_0_0", limit=3))
        assert [e["data"]["job_id"] for e in found] == [common[1199].id, rare[0].id, rare[1].id]

    # -- reset -------------------------------------------------------------------------------------

    async def test_reset_deletes_everything(self, backend: Backend) -> None:
        keyed = unique_job(1)
        await put(backend, keyed, make(2, scheduled_at="+PT1M"), dead_lettered(3))
        await backend.save_snapshot("queue:q", {"name": "q"})
        await backend.save_snapshot_if("cron:c", {"n": 1}, None, events=[event(1)])
        await backend.reset()
        assert await backend.get_jobs([keyed.id]) == [None]
        assert await backend.count_jobs("q") == {}
        assert await backend.next_due_at() is None
        assert await backend.list_dead_letter(None, 10, 0) == ([], 0)
        assert await backend.list_snapshots("") == {}
        assert await backend.read_events(EventFilter()) == []
        # Unique keys went too; the backend works as new.
        again = unique_job(1)
        assert await backend.insert_jobs([again]) == [again]
        a, b = make(4), make(5)
        await put(backend, a, b)
        claimed, _ = await backend.claim("q", 3, NOW + 1, "w", None)
        assert ids(claimed) == [again.id, a.id, b.id]


__all__ = ["BackendContract", "BackendFactory", "Opener"]
