"""The Redis backend against a real ``redis-server`` (see ``conftest.py``): the Backend
protocol's contract, checked the way MemoryBackend behaves."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from ojs_actors import open_system
from ojs_actors.backends import (
    EVERY_CAPABILITY,
    Backend,
    Deduplicated,
    EventFilter,
    create_backend,
    open_backend,
)
from ojs_actors.backends.assembly import AssembledBackend
from ojs_actors.backends.redis import (
    RedisBackend,
    RedisConnection,
    RedisEventLog,
    RedisJobs,
    RedisSnapshots,
)
from ojs_actors.core import BackendUnavailable, Duplicate, Job, State, lifecycle
from ojs_actors.core.unique import parse_unique, unique_key


@pytest.fixture
async def backend(redis_url: str) -> AsyncIterator[RedisBackend]:
    async with open_backend("redis", url=redis_url) as store:
        assert isinstance(store, RedisBackend)
        yield store


def make(job_id: str, *, priority: int = 0, queue: str = "q", **fields: Any) -> Job:
    fields.setdefault("created_at", 1_000)
    fields.setdefault("enqueued_at", fields["created_at"])
    return Job(id=job_id, type="t", args=[1, 2.5, [], {}], queue=queue, priority=priority, **fields)


def uniq(job_id: str, on_conflict: str, *, created_at: int = 1_000) -> Job:
    raw = {"keys": ["type"], "on_conflict": on_conflict}
    policy = parse_unique(raw, [], {})
    return make(
        job_id,
        unique=raw,
        unique_key=unique_key(policy, "t", "q", [], {}),
        created_at=created_at,
    )


async def test_insert_claim_in_ready_order(backend: RedisBackend) -> None:
    jobs = [make("a"), make("b", priority=5), make("c"), make("d", priority=-3)]
    results = await backend.insert_jobs(jobs)
    assert results == jobs
    assert [job.seq for job in jobs] == sorted(job.seq for job in jobs)
    assert await backend.count_jobs("q") == {State.AVAILABLE: 4}
    claimed, expired = await backend.claim("q", 3, 2_000, "w1", None)
    assert [job.id for job in claimed] == ["b", "a", "c"] and expired == []
    first = claimed[0]
    assert (first.state, first.attempt, first.started_at, first.worker_id) == (
        State.ACTIVE, 1, 2_000, "w1",
    )  # fmt: skip
    assert first.lease_expires_at == 2_000 + first.visibility_timeout_ms
    assert first.version == 1 and first.args == [1, 2.5, [], {}]
    [stored] = await backend.get_jobs(["b"])
    assert stored == first
    assert await backend.count_jobs("q") == {State.AVAILABLE: 1, State.ACTIVE: 3}
    claimed, _ = await backend.claim("q", 5, 2_000, None, 500)
    assert [job.id for job in claimed] == ["d"]
    assert claimed[0].worker_id is None and claimed[0].lease_expires_at == 2_500
    assert await backend.claim("q", 5, 2_000, None, None) == ([], [])


async def test_duplicate_ids_and_atomic_batches(backend: RedisBackend) -> None:
    await backend.insert_jobs([make("a")])
    results = await backend.insert_jobs([make("a"), make("b")])
    assert isinstance(results[0], Duplicate) and isinstance(results[1], Job)
    results = await backend.insert_jobs([make("c"), make("b")], atomic=True)
    assert isinstance(results[0], Job) and isinstance(results[1], Duplicate)
    assert await backend.get_jobs(["c", "nope"]) == [None, None]
    results = await backend.insert_jobs([make("x"), make("x")])
    assert isinstance(results[0], Job) and isinstance(results[1], Duplicate)


async def test_compare_and_set_and_requeue_goes_last(backend: RedisBackend) -> None:
    await backend.insert_jobs([make("a"), make("b")])
    [active], _ = await backend.claim("q", 1, 2_000, "w", None)
    stale = lifecycle.ack(active, 2_100)
    back = lifecycle.requeue(active, 2_100)
    assert await backend.update_jobs([(back, active.version)]) == [True]
    assert await backend.update_jobs([(stale, active.version)]) == [False]
    assert await backend.update_jobs([(make("ghost"), 0)]) == [False]
    claimed, _ = await backend.claim("q", 2, 3_000, "w", None)
    assert [job.id for job in claimed] == ["b", "a"]
    assert await backend.next_due_at() == min(job.lease_expires_at or 0 for job in claimed)


async def test_expired_jobs_are_discarded_not_claimed(backend: RedisBackend) -> None:
    await backend.insert_jobs([make("old", expires_at=1_500), make("new")])
    claimed, expired = await backend.claim("q", 1, 2_000, "w", None)
    assert [job.id for job in claimed] == ["new"]
    assert [(job.id, job.state, job.discarded_at) for job in expired] == [
        ("old", State.DISCARDED, 2_000)
    ]
    assert expired[0].error is not None and expired[0].error["code"] == "expired"


async def test_timers(backend: RedisBackend) -> None:
    await backend.insert_jobs(
        [make("s", state=State.SCHEDULED, scheduled_at=5_000, enqueued_at=None)]
    )
    assert await backend.next_due_at() == 5_000
    assert await backend.due_jobs(4_999, 10) == []
    [due] = await backend.due_jobs(5_000, 10)
    assert due.id == "s"
    promoted = lifecycle.promote(due, 5_000)
    assert await backend.update_jobs([(promoted, due.version)]) == [True]
    assert await backend.next_due_at() is None
    claimed, _ = await backend.claim("q", 1, 5_000, "w", None)
    assert [job.id for job in claimed] == ["s"]


async def test_dead_letter(backend: RedisBackend) -> None:
    await backend.insert_jobs([make("a"), make("b", queue="other")])
    for queue in ("q", "other"):
        [job], _ = await backend.claim(queue, 1, 2_000, "w", None)
        dead = lifecycle.fail(job, 2_100, {"code": "DEAD_LETTER", "message": "no"})
        assert dead.dead_letter and dead.state is State.DISCARDED
        assert await backend.update_jobs([(dead, job.version)]) == [True]
    jobs, total = await backend.list_dead_letter(None, 10, 0)
    assert ([job.id for job in jobs], total) == (["a", "b"], 2)
    jobs, total = await backend.list_dead_letter("other", 10, 0)
    assert ([job.id for job in jobs], total) == (["b"], 1)
    jobs, total = await backend.list_dead_letter(None, 1, 1)
    assert ([job.id for job in jobs], total) == (["b"], 2)
    assert await backend.delete_dead_letter("a") is True
    assert await backend.delete_dead_letter("a") is False
    assert await backend.get_jobs(["a"]) == [None]
    assert await backend.count_jobs("q") == {}
    [b] = await backend.get_jobs(["b"])
    assert b is not None
    retried = lifecycle.retry_dead_letter(b, 3_000)
    assert await backend.update_jobs([(retried, b.version)]) == [True]
    assert await backend.list_dead_letter(None, 10, 0) == ([], 0)


async def test_unique_policies(backend: RedisBackend) -> None:
    [first] = await backend.insert_jobs([uniq("u1", "reject")])
    [rejected] = await backend.insert_jobs([uniq("u2", "reject", created_at=1_001)])
    assert isinstance(rejected, Duplicate)
    [ignored] = await backend.insert_jobs([uniq("u3", "ignore", created_at=1_002)])
    assert isinstance(ignored, Deduplicated) and ignored.existing.id == "u1"
    [replacing] = await backend.insert_jobs([uniq("u4", "replace", created_at=1_003)])
    assert isinstance(replacing, Job)
    u1, u4 = await backend.get_jobs(["u1", "u4"])
    assert u1 is not None and u1.state is State.CANCELLED and u1.version == first.version + 1
    assert u4 is not None and u4.state is State.AVAILABLE
    # within one batch, the second job sees the first
    results = await backend.insert_jobs(
        [uniq("u5", "replace", created_at=1_004), uniq("u6", "reject", created_at=1_005)]
    )
    assert isinstance(results[0], Job) and isinstance(results[1], Duplicate)
    # atomic: one conflict, nothing written
    results = await backend.insert_jobs(
        [make("plain"), uniq("u7", "reject", created_at=1_006)], atomic=True
    )
    assert isinstance(results[1], Duplicate)
    assert await backend.get_jobs(["plain"]) == [None]
    assert await backend.count_jobs("q") == {State.CANCELLED: 2, State.AVAILABLE: 1}


async def test_snapshots_and_reset(backend: RedisBackend) -> None:
    await backend.save_snapshot("queue:b", {"n": 1})
    await backend.save_snapshot("cron:x", {"n": 2})
    await backend.save_snapshot("queue:a", {"n": 3})
    await backend.save_snapshot("queue:b", {"n": 4})
    assert await backend.list_snapshots("queue:") == {"queue:b": {"n": 4}, "queue:a": {"n": 3}}
    assert list(await backend.list_snapshots("queue:")) == ["queue:b", "queue:a"]
    assert await backend.load_snapshot("cron:x") == {"n": 2}
    assert await backend.delete_snapshot("cron:x") is True
    assert await backend.delete_snapshot("cron:x") is False
    assert await backend.load_snapshot("cron:x") is None
    await backend.insert_jobs([make("a")])
    await backend.reset()
    assert await backend.get_jobs(["a"]) == [None]
    assert await backend.list_snapshots("") == {}
    assert await backend.read_events(EventFilter()) == []
    assert await backend.count_jobs("q") == {}


async def test_parts_assemble_into_another_backend(redis_url: str) -> None:
    """The Redis parts as another backend would reuse them: one connection, assembled
    under another name, with the outbox written by the job part and read by the event part."""
    connection = RedisConnection(redis_url, prefix="other:")
    jobs = RedisJobs(connection, event_retention=100)
    assembled = AssembledBackend(
        name="redis-parts",
        capabilities=EVERY_CAPABILITY,
        needs_asyncio=connection.needs_asyncio,
        lifetime=connection,
        jobs=jobs,
        ready=jobs,
        timers=jobs,
        dead_letter=jobs,
        snapshots=RedisSnapshots(connection, event_retention=100),
        events=RedisEventLog(connection),
    )
    assert isinstance(assembled, Backend)
    async with open_backend(assembled) as store:
        await store.reset()
        job = make("p1")
        assert await store.insert_jobs([job]) == [job]
        [active], _ = await store.claim("q", 1, 2_000, "w", None)
        assert await store.update_jobs([(lifecycle.ack(active, 3_000), active.version)]) == [True]
        assert await store.count_jobs("q") == {State.COMPLETED: 1}
        events = await store.read_events(EventFilter())
        assert [e["type"] for e in events] == ["job.enqueued", "job.started", "job.completed"]
        await store.reset()


async def test_a_batch_costs_redis_the_same_commands_as_one_job(
    backend: RedisBackend, redis_url: str
) -> None:
    """``INFO stats`` ``total_commands_processed`` counts the commands scripts run: inserting
    500 jobs, claiming 200 and acking them each run about as many commands as for one job
    (one ``HSET`` of every record, one command per index and for the outbox)."""
    import redis

    admin = redis.Redis.from_url(redis_url)

    def commands() -> int:
        processed: int = admin.info("stats")["total_commands_processed"]
        return processed - 1  # the INFO itself

    async def cost(count: int, first: int) -> tuple[int, int, int]:
        jobs = [make(f"c{first + n}", queue=f"q{count}") for n in range(count)]
        before = commands()
        await backend.insert_jobs(jobs)
        inserted = commands()
        claimed, _ = await backend.claim(f"q{count}", count, 2_000, "w", None)
        taken = commands()
        acks = [(lifecycle.ack(job, 3_000), job.version) for job in claimed]
        assert await backend.update_jobs(acks) == [True] * count
        return inserted - before, taken - inserted, commands() - taken

    try:
        one = await cost(1, 0)
        many = await cost(200, 100)
    finally:
        admin.close()
    assert all(n <= 12 for n in one), one
    assert all(m <= n + 2 for m, n in zip(many, one, strict=True)), (one, many)


async def test_unreachable_redis_is_backend_unavailable() -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(BackendUnavailable):
        async with open_backend(RedisBackend(f"redis://127.0.0.1:{port}/0")):
            pass


async def test_system_round_trip(redis_url: str) -> None:
    async with open_system(create_backend("redis", url=redis_url)) as system:
        await system.enqueue({"type": "report.build", "args": [42], "options": {"queue": "r"}})
        [job] = await system.fetch(["r"], count=10, worker_id="w1", wait=1.0)
        done = await system.ack(job.id, result={"ok": True})
        assert done.state is State.COMPLETED and done.result == {"ok": True}
    async with open_system(create_backend("redis", url=redis_url)) as system:
        assert (await system.info(job.id)).state is State.COMPLETED


async def test_large_batches_and_mixed_outcomes(backend: RedisBackend) -> None:
    await backend.insert_jobs([make("taken")])
    jobs = [make(f"j{i}", priority=i % 3) for i in range(2_500)]
    later = make("s", state=State.SCHEDULED, scheduled_at=9_000, enqueued_at=None)
    results = await backend.insert_jobs([*jobs, make("taken"), later])
    assert all(isinstance(result, Job) for result in results[:2_500])
    assert isinstance(results[2_500], Duplicate) and results[2_501] is later
    assert await backend.count_jobs("q") == {State.AVAILABLE: 2_501, State.SCHEDULED: 1}
    assert await backend.next_due_at() == 9_000
    claimed, _ = await backend.claim("q", 3, 2_000, "w", None)
    assert [job.id for job in claimed] == ["j2", "j5", "j8"]


async def test_snapshots_saved_before_the_per_kind_index_are_listed(
    backend: RedisBackend, redis_url: str
) -> None:
    """Data from a version without ``snapkind:`` indexes: the first listing builds them."""
    import redis

    raw = redis.Redis.from_url(redis_url)
    try:
        for n, key in enumerate(["cron:a", "workflow:w", "cron:b"], start=1):
            raw.hset("ojs:snapshots", key, f'{{"n": {n}}}')
            raw.zadd("ojs:snaporder", {key: n})
        raw.set("ojs:snapseq", 3)
        assert await backend.list_snapshots("cron:") == {"cron:a": {"n": 1}, "cron:b": {"n": 3}}
        assert raw.exists("ojs:snapindexed") == 1
        await backend.save_snapshot("cron:c", {"n": 4})
        await backend.delete_snapshot("cron:a")
        assert list(await backend.list_snapshots("cron:")) == ["cron:b", "cron:c"]
        assert list(await backend.list_snapshots("workflow:")) == ["workflow:w"]
        assert [k.decode() for k in raw.zrange("ojs:snapkind:cron:", 0, -1)] == ["cron:b", "cron:c"]
    finally:
        raw.close()


# -- combined round trips (ready notices: tests/test_ready_notices.py) --------------------


async def test_insert_and_claim_is_one_round_trip(backend: RedisBackend) -> None:
    client = backend.connection.client
    taken = make("taken")
    assert await backend.insert_jobs([taken]) == [taken]
    first, second = make("h1", priority=5), make("h2")
    before = client.round_trips
    results, claimed, expired = await backend.insert_and_claim(
        [first, second, taken], "q", 2, 2_000, "w", None
    )
    assert client.round_trips == before + 1
    assert results[:2] == [first, second] and isinstance(results[2], Duplicate)
    assert [job.id for job in claimed] == ["h1", "taken"] and expired == []  # ready order
    assert all(job.state is State.ACTIVE and job.worker_id == "w" for job in claimed)
    assert await backend.count_jobs("q") == {State.ACTIVE: 2, State.AVAILABLE: 1}
    # jobs with unique keys take the two calls (the insert reads the keys' holders first)
    keyed = uniq("k1", "reject")
    results, claimed, _ = await backend.insert_and_claim([keyed], "q", 5, 3_000, "w", None)
    assert results == [keyed] and {job.id for job in claimed} == {"h2", "k1"}


async def test_update_and_claim_is_one_round_trip(backend: RedisBackend) -> None:
    client = backend.connection.client
    await backend.insert_jobs([make("u1"), make("u2"), make("u3")])
    [first, second], _ = await backend.claim("q", 2, 2_000, "w", None)
    [waiting] = await backend.get_jobs(["u3"])
    assert waiting is not None
    updates = [
        (lifecycle.ack(first, 3_000), first.version),
        (lifecycle.requeue(second, 3_000), second.version),
        (lifecycle.cancel(waiting, 3_000), waiting.version + 1),  # a stale version: refused
    ]
    before = client.round_trips
    stored, claimed, expired = await backend.update_and_claim(updates, "q", 5, 4_000, "w2", None)
    assert client.round_trips == before + 1
    assert stored == [True, True, False]
    # the claim comes second: it takes the job just requeued too, after u3 (requeue goes last)
    assert [job.id for job in claimed] == ["u3", "u2"] and expired == []
    assert all(job.state is State.ACTIVE and job.worker_id == "w2" for job in claimed)
    [done] = await backend.get_jobs(["u1"])
    assert done is not None and done.state is State.COMPLETED
    assert await backend.count_jobs("q") == {State.ACTIVE: 2, State.COMPLETED: 1}
    # nothing to update: the claim alone, still one round trip
    await backend.insert_jobs([make("u4")])
    before = client.round_trips
    stored, claimed, _ = await backend.update_and_claim([], "q", 5, 5_000, "w2", None)
    assert client.round_trips == before + 1
    assert stored == [] and [job.id for job in claimed] == ["u4"]
