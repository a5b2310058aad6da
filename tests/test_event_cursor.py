"""The durable event cursor (``EventCursor``) over the outbox of a running system, on
memory, SQLite and Redis; SQLite and Redis across a restart."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import pytest

from ojs_actors import open_system
from ojs_actors.backends import Backend, EventFilter, create_backend
from ojs_actors.system import EventCursor, System

Opener = Callable[..., AbstractAsyncContextManager[System]]


@pytest.fixture(params=["memory", "sqlite", "redis"])
def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> Opener:
    """Opens a system on the backend under test; each opening finds what the last left."""
    name = request.param
    options: dict[str, Any] = {}
    if name == "sqlite":
        options["path"] = tmp_path / "ojs.db"
    elif name == "redis":
        options["url"] = request.getfixturevalue("redis_url")
    kept: list[Backend] = []

    def opener(**extra: Any) -> AbstractAsyncContextManager[System]:
        if name != "memory":
            return open_system(create_backend(name, **options, **extra))
        if not kept:  # one process's memory: every opening reuses the same store
            kept.append(create_backend("memory", **extra))
        return open_system(kept[0])

    return opener


async def run_jobs(system: System, count: int, queue: str = "q") -> list[str]:
    """Enqueue, fetch and ack ``count`` jobs."""
    ids = []
    for n in range(count):
        job = await system.enqueue({"type": "t", "args": [n], "options": {"queue": queue}})
        ids.append(job.id)
    for job in await system.fetch([queue], count=count, worker_id="w", wait=1.0):
        await system.ack(job.id)
    return ids


COMPLETED = EventFilter(types=frozenset({"job.completed"}))


async def test_a_consumer_resumes_after_its_last_commit(open_store: Opener) -> None:
    async with open_store() as system:
        ids = await run_jobs(system, 3)
        cursor = EventCursor(system.backend, "relay", COMPLETED)
        assert await cursor.position() is None
        first = await cursor.read(2)
        assert [e["data"]["job_id"] for e in first] == ids[:2]
        assert await cursor.read(2) == first  # nothing committed: the same again
        await cursor.commit(first[0]["id"])
    async with open_store() as system:  # a restart: the position is in the backend
        cursor = EventCursor(system.backend, "relay", COMPLETED)
        assert await cursor.position() == first[0]["id"]
        again = await cursor.read(10)
        assert [e["data"]["job_id"] for e in again] == ids[1:]  # the uncommitted one again
        await cursor.commit(again[-1]["id"])
        assert await cursor.read(10) == []
        more = await run_jobs(system, 1)
        assert [e["data"]["job_id"] for e in await cursor.read(10)] == more
        other = EventCursor(system.backend, "audit")  # consumers keep their own places
        assert len(await other.read(1000)) == 4 * 3  # enqueued, started, completed per job


async def test_a_consumer_that_fell_behind_resumes_at_the_oldest_event_kept(
    open_store: Opener,
) -> None:
    async with open_store(event_retention=4) as system:
        cursor = EventCursor(system.backend, "slow")
        [old] = await run_jobs(system, 1)
        seen = await cursor.read(1)
        await cursor.commit(seen[0]["id"])
        newer = await run_jobs(system, 2)  # six changes: the committed one is trimmed away
        resumed = await cursor.read(100)
        assert len(resumed) == 4
        assert {e["data"]["job_id"] for e in resumed} <= set(newer)
        assert old not in {e["data"]["job_id"] for e in resumed}
