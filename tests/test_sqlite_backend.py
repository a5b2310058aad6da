"""What only the SQLite backend has: a file that outlives the process, threads, group commit.

The protocol behaviour both backends share is in ``test_backend_contract.py``;
the crash test against a real server process is ``test_crash_restart.py``.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from ojs_actors import State, open_system
from ojs_actors.backends import Backend, EventFilter, SqliteBackend, create_backend
from ojs_actors.core import BackendUnavailable, InvalidRequest, Job, lifecycle, parse_enqueue
from ojs_actors.system import Settings

NOW = 1_767_225_600_000


def make(n: int = 0, now: int = NOW, queue: str = "q", **options: Any) -> Job:
    return parse_enqueue(
        {"type": "test.work", "args": [n], "options": {"queue": queue, **options}}, now
    )


async def everything(backend: Backend, job_ids: list[str]) -> dict[str, Any]:
    """All a backend answers about the given jobs, queues, snapshots and events."""
    jobs = await backend.get_jobs(job_ids)
    return {
        "jobs": [job.to_record() if job else None for job in jobs],
        "counts": {q: await backend.count_jobs(q) for q in ("q", "r")},
        "dead": [job.id for job in (await backend.list_dead_letter(None, 100, 0))[0]],
        "due": [job.id for job in await backend.due_jobs(NOW + 10**9, 100)],
        "next_due": await backend.next_due_at(),
        "snapshots": await backend.list_snapshots(""),
        "events": await backend.read_events(EventFilter(limit=1000)),
    }


async def test_everything_survives_close_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "ojs.db"
    backend = SqliteBackend(path)
    await backend.start()
    available = [make(n, priority=n % 2) for n in range(4)]
    scheduled = make(10, scheduled_at="+PT1H")
    keyed = make(11, queue="r", unique={"keys": ["type", "args"]})
    failing = make(12, retry={"max_attempts": 1, "on_exhaustion": "dead_letter"}, queue="r")
    await backend.insert_jobs([*available, scheduled, keyed, failing])
    [active_failing], _ = await backend.claim("r", 1, NOW + 1, "w", None)
    assert active_failing.id == keyed.id  # FIFO in r
    [active_failing], _ = await backend.claim("r", 1, NOW + 1, "w", None)
    dead = lifecycle.fail(active_failing, NOW + 2, {"code": "handler_error", "message": "no"})
    assert await backend.update_jobs([(dead, active_failing.version)]) == [True]
    [active], _ = await backend.claim("q", 1, NOW + 3, "w", 5_000)
    await backend.save_snapshot("queue:q", {"name": "q", "paused_at": None})
    await backend.save_snapshot("cron:nightly", {"expression": "@daily", "last_run": 5})
    cron_events = [{"id": f"evt_{n}", "type": "x", "data": {"n": n}} for n in range(3)]
    assert await backend.save_snapshot_if("cron:hourly", {"n": 1}, None, events=cron_events)
    job_ids = [job.id for job in (*available, scheduled, keyed, failing)]
    before = await everything(backend, job_ids)
    await backend.close()

    reopened = SqliteBackend(path)
    await reopened.start()
    try:
        assert await everything(reopened, job_ids) == before
        # The ready order continues: a job enqueued now comes after the older ones.
        late = make(99, priority=1)
        await reopened.insert_jobs([late])
        claimed, _ = await reopened.claim("q", 10, NOW + 4, "w", None)
        assert [job.id for job in claimed] == [
            available[3].id,  # priority 1 (available[1] was claimed before the restart)
            late.id,
            available[0].id,
            available[2].id,
        ]
        assert active.id == available[1].id
        # Unique keys survive too.
        [duplicate] = await reopened.insert_jobs(
            [make(11, NOW + 5, queue="r", unique={"keys": ["type", "args"]})]
        )
        assert isinstance(duplicate, Exception)
    finally:
        await reopened.close()


async def test_system_resumes_from_a_reopened_file(tmp_path: Path) -> None:
    """Queue pause state, scheduled promotion and lease expiry carry over a restart."""
    path = tmp_path / "ojs.db"
    settings = Settings(poll_interval=0.1)

    def request(n: int, queue: str, **options: Any) -> dict[str, Any]:
        return {"type": "test.work", "args": [n], "options": {"queue": queue, **options}}

    async with open_system(SqliteBackend(path), settings=settings) as system:
        await system.set_paused("held", True)
        held = await system.enqueue(request(1, "held"))
        done = await system.enqueue(request(2, "work"))
        [claimed] = await system.fetch(["work"], worker_id="w1")
        await system.ack(claimed.id, {"ok": True})
        running = await system.enqueue(request(3, "work"))
        [leased] = await system.fetch(["work"], worker_id="w1", visibility_timeout_ms=800)
        assert leased.id == running.id
        later = await system.enqueue(request(4, "work", delay_until="+PT1S"))
        assert later.state is State.SCHEDULED

    async with open_system(SqliteBackend(path), settings=settings) as system:
        queues = {queue["name"]: queue for queue in await system.list_queues()}
        assert queues["held"]["paused_at"] is not None
        assert await system.fetch(["held"]) == []
        assert (await system.info(held.id)).state is State.AVAILABLE
        assert (await system.info(done.id)).state is State.COMPLETED
        assert (await system.info(running.id)).state is State.ACTIVE
        with trio.fail_after(10):
            seen: dict[str, Job] = {}
            while len(seen) < 2:
                for job in await system.fetch(["work"], count=2, worker_id="w2", wait=2.0):
                    seen[job.id] = job
        assert set(seen) == {running.id, later.id}
        reclaimed = seen[running.id]
        assert reclaimed.attempt == 2 and reclaimed.worker_id == "w2"
        assert reclaimed.errors[-1]["type"] == "visibility_timeout"
        assert seen[later.id].attempt == 1
        assert (await system.info(done.id)).state is State.COMPLETED
        await system.set_paused("held", False)
        [resumed] = await system.fetch(["held"], worker_id="w2")
        assert resumed.id == held.id


# -- threads and group commit -------------------------------------------------------------


async def test_concurrent_calls_share_commits_and_stay_atomic_each(tmp_path: Path) -> None:
    backend = SqliteBackend(tmp_path / "ojs.db")
    await backend.start()
    try:
        gate = threading.Event()
        entered = threading.Event()

        def hold(connection: sqlite3.Connection) -> None:  # keeps the writer busy
            entered.set()
            gate.wait(10)

        good = [make(n) for n in range(20)]
        half_bad = [make(100), make(101)]
        half_bad[1].args = [{1, 2}]  # a set: cannot be stored, so the whole call fails
        outcome: dict[str, Any] = {}

        async def insert(job: Job) -> None:
            outcome[job.id] = await backend.insert_jobs([job])

        async def insert_bad() -> None:
            with pytest.raises(TypeError):
                await backend.insert_jobs(half_bad)
            outcome["bad"] = "raised"

        before = backend.stats
        async with trio.open_nursery() as nursery:
            nursery.start_soon(backend._write, hold)
            await trio.to_thread.run_sync(entered.wait)
            for job in good[:10]:
                nursery.start_soon(insert, job)
            nursery.start_soon(insert_bad)
            for job in good[10:]:
                nursery.start_soon(insert, job)
            await trio.testing.wait_all_tasks_blocked()  # every call is queued behind `hold`
            gate.set()
        after = backend.stats
        calls = after["calls"] - before["calls"]
        transactions = after["transactions"] - before["transactions"]
        assert calls == 22 and transactions <= 2  # `hold`'s, then all the others at once
        assert outcome["bad"] == "raised"
        assert all(outcome[job.id] == [job] for job in good)
        stored = await backend.get_jobs([job.id for job in good + half_bad])
        assert all(stored[:20]) and stored[20:] == [None, None]  # the failing call left nothing
        assert await backend.count_jobs("q") == {State.AVAILABLE: 20}
    finally:
        await backend.close()


async def test_a_started_call_completes_even_if_the_caller_is_cancelled(tmp_path: Path) -> None:
    backend = SqliteBackend(tmp_path / "ojs.db")
    await backend.start()
    try:
        job = make(1)
        with trio.CancelScope() as scope:
            scope.cancel()
            result = await backend.insert_jobs([job])
        assert result == [job]
        assert await backend.get_jobs([job.id]) != [None]
    finally:
        await backend.close()


async def test_two_backends_on_one_file_never_claim_the_same_job(tmp_path: Path) -> None:
    """Two processes sharing the file (here two backends, each with its own writer)."""
    path = tmp_path / "ojs.db"
    one, two = SqliteBackend(path), SqliteBackend(path)
    await one.start()
    await two.start()
    try:
        jobs = [make(n) for n in range(200)]
        await one.insert_jobs(jobs)
        claimed: list[str] = []

        async def worker(backend: Backend) -> None:
            while True:
                got, _ = await backend.claim("q", 3, NOW + 1, "w", None)
                if not got:
                    return
                claimed.extend(job.id for job in got)

        async with trio.open_nursery() as nursery:
            for _ in range(4):
                nursery.start_soon(worker, one)
                nursery.start_soon(worker, two)
        assert sorted(claimed) == sorted(job.id for job in jobs)
        assert await two.count_jobs("q") == {State.ACTIVE: 200}
        # Taking turns, each sees what the other claimed: the next job in line, every time.
        more = [make(n) for n in range(300, 306)]
        await two.insert_jobs(more)
        turns = [(await backend.claim("q", 1, NOW + 2, "w", None))[0] for backend in (one, two) * 3]
        assert [job.id for [job] in turns] == [job.id for job in more]
    finally:
        await one.close()
        await two.close()


# -- files, schema, configuration ------------------------------------------------------------


async def test_queries_use_the_indexes(tmp_path: Path) -> None:
    path = tmp_path / "ojs.db"
    backend = SqliteBackend(path)
    await backend.start()
    await backend.close()
    connection = sqlite3.connect(path)
    queries = {
        "jobs_ready": "SELECT record FROM jobs WHERE queue = 'q' AND state = 'available'"
        " ORDER BY priority DESC, seq LIMIT 5",
        "jobs_due": "SELECT record FROM jobs WHERE due_at IS NOT NULL AND due_at <= 5"
        " ORDER BY due_at, id LIMIT 5",
        "jobs_dead_by_queue": "SELECT record FROM jobs WHERE dead_seq IS NOT NULL AND queue = 'q'"
        " ORDER BY dead_seq LIMIT 5 OFFSET 0",
        "jobs_dead": "SELECT record FROM jobs WHERE dead_seq IS NOT NULL"
        " ORDER BY dead_seq LIMIT 5 OFFSET 0",
    }
    try:
        for index, sql in queries.items():
            plan = " ".join(row[-1] for row in connection.execute(f"EXPLAIN QUERY PLAN {sql}"))
            assert f"USING INDEX {index}" in plan, (index, plan)
            assert "TEMP B-TREE" not in plan, (index, plan)  # no sort: the index is the order
        plan = " ".join(
            row[-1]
            for row in connection.execute(
                "EXPLAIN QUERY PLAN SELECT due_at FROM jobs WHERE due_at IS NOT NULL"
                " ORDER BY due_at LIMIT 1"
            )
        )
        assert "USING COVERING INDEX jobs_due" in plan, plan
        mode = connection.execute("PRAGMA journal_mode").fetchone()[0]
        assert mode == "wal"
    finally:
        connection.close()


async def test_create_backend_and_options(tmp_path: Path) -> None:
    backend = create_backend("sqlite", path=tmp_path / "sub" / "dir" / "x.db", synchronous="normal")
    assert isinstance(backend, SqliteBackend) and backend.name == "sqlite"
    await backend.start()  # creates the missing directories
    assert await backend.ping() >= 0
    await backend.close()
    assert (tmp_path / "sub" / "dir" / "x.db").exists()
    with pytest.raises(InvalidRequest):
        SqliteBackend(tmp_path / "y.db", synchronous="off")


async def test_in_memory_database_works_without_a_reader(tmp_path: Path) -> None:
    backend = SqliteBackend(":memory:")
    await backend.start()
    try:
        job = make(1)
        assert await backend.insert_jobs([job]) == [job]
        claimed, _ = await backend.claim("q", 1, NOW + 1, "w", None)
        assert [j.id for j in claimed] == [job.id]
    finally:
        await backend.close()


async def test_unusable_file_or_closed_backend_is_unavailable(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not a database" * 100)
    with pytest.raises(BackendUnavailable):
        await SqliteBackend(garbage).start()
    backend = SqliteBackend(tmp_path / "ok.db")
    await backend.start()
    await backend.close()
    await backend.close()  # idempotent
    with pytest.raises(BackendUnavailable):
        await backend.get_jobs(["x"])
    with pytest.raises(BackendUnavailable):
        await backend.ping()


async def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "ojs.db"
    backend = SqliteBackend(path)
    await backend.start()
    await backend.close()
    connection = sqlite3.connect(path)
    with connection:
        connection.execute("UPDATE meta SET value = 99 WHERE name = 'schema_version'")
    connection.close()
    with pytest.raises(BackendUnavailable, match="schema version 99"):
        await SqliteBackend(path).start()
