"""The job listing, ``GET /ojs/v1/admin/jobs`` (ojs-admin-api §7.1), and the queue purge,
``DELETE /ojs/v1/admin/queues/{name}/jobs`` (§6.5), with the backends' optional
:class:`~ojs_actors.backends.JobListing` and :class:`~ojs_actors.backends.JobDeletion`
parts under them.

The part is checked on the memory, SQLite and Redis backends, against the same jobs: each
filter (queue, state, exact and prefix type, created since/until), each sort in both
orders (ties by creation, then id), pages and totals. The route is checked end to end
over the real app: its parameters, a 400 for each bad one, and on a backend without the
part (NATS) the ``unsupported`` error naming it. The purge deletes only finished jobs, by
compare-and-set, with their index entries, and only with ``"confirm": true``.
"""

from __future__ import annotations

import json as jsonlib
import sqlite3
from collections.abc import AsyncIterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
import trio

from ojs_actors.backends import (
    Backend,
    JobDeletion,
    JobListing,
    JobQuery,
    create_backend,
    open_backend,
)
from ojs_actors.core import Job, State, format_ms, lifecycle, parse_enqueue
from ojs_actors.http import HttpSettings, create_app
from ojs_actors.system import System, open_system
from ojs_actors.testing.contract import NOW, SECOND, dead_lettered, put

MEDIA_TYPE = "application/openjobspec+json"
DEADLINE = 20  # seconds


def _backend(name: str, request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if name == "redis":
        return create_backend("redis", url=request.getfixturevalue("redis_url"))
    if name == "sqlite":
        return create_backend("sqlite", path=str(tmp_path / "ojs.db"))
    return create_backend("memory")


@pytest.fixture(params=["memory", "sqlite", "redis"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    async with open_backend(_backend(request.param, request, tmp_path)) as opened:
        yield opened


def new_job(n: int, queue: str, job_type: str, priority: int = 0, **options: Any) -> Job:
    """Job ``n``, created ``n`` seconds after ``NOW``."""
    body = {"type": job_type, "args": [n], "options": {"queue": queue, "priority": priority}}
    body["options"].update(options)
    return parse_enqueue(body, NOW + n * SECOND)


async def six_jobs(backend: Backend) -> list[str]:
    """Jobs 0 to 5, their ids by number: 1 active (claimed), 2 and 3 scheduled, the
    others available."""
    jobs = [
        new_job(0, "a", "email.send"),
        new_job(1, "a", "email.verify", 5),
        new_job(2, "b", "sms.send", 5, scheduled_at="+PT100S"),  # at NOW + 102 s
        new_job(3, "b", "email.send", -1, scheduled_at="+PT10S"),  # at NOW + 13 s
        new_job(4, "a", "emailer"),
        new_job(5, "b", "email.send", 5),
    ]
    await put(backend, *jobs)
    claimed, _ = await backend.claim("a", 1, NOW + 10 * SECOND, "w", None)
    assert [job.id for job in claimed] == [jobs[1].id]
    return [job.id for job in jobs]


async def listed(backend: Backend, ids: list[str], **query: Any) -> tuple[list[int], int]:
    """The page (as job numbers) and the total of ``query``."""
    assert isinstance(backend, JobListing)
    with trio.fail_after(DEADLINE):
        jobs, total = await backend.list_jobs(JobQuery(**query))
    return [ids.index(job.id) for job in jobs], total


async def test_the_listing_backends_have_the_part(backend: Backend) -> None:
    assert isinstance(backend, JobListing)


async def test_every_job_newest_first_by_default(backend: Backend) -> None:
    ids = await six_jobs(backend)
    assert await listed(backend, ids) == ([5, 4, 3, 2, 1, 0], 6)
    jobs, _ = await backend.list_jobs(JobQuery(limit=1))  # as stored: the claim shows
    [newest] = await backend.get_jobs([ids[5]])
    assert jobs == [newest]
    [active], _ = await backend.list_jobs(JobQuery(state=State.ACTIVE))
    assert active.worker_id == "w" and active.state is State.ACTIVE


async def test_filters_narrow_the_jobs_and_their_total(backend: Backend) -> None:
    ids = await six_jobs(backend)
    assert await listed(backend, ids, queue="a") == ([4, 1, 0], 3)
    assert await listed(backend, ids, state=State.AVAILABLE) == ([5, 4, 0], 3)
    assert await listed(backend, ids, state=State.ACTIVE) == ([1], 1)
    assert await listed(backend, ids, queue="b", state=State.SCHEDULED) == ([3, 2], 2)
    assert await listed(backend, ids, type="email.send") == ([5, 3, 0], 3)
    assert await listed(backend, ids, type="email.*") == ([5, 3, 1, 0], 4)  # not "emailer"
    assert await listed(backend, ids, type="*") == ([5, 4, 3, 2, 1, 0], 6)
    since, until = NOW + 1 * SECOND, NOW + 4 * SECOND  # since inclusive, until exclusive
    assert await listed(backend, ids, since=since, until=until) == ([3, 2, 1], 3)
    assert await listed(backend, ids, since=since, queue="a", type="email.*") == ([1], 1)
    assert await listed(backend, ids, queue="nowhere") == ([], 0)
    assert await listed(backend, ids, state=State.COMPLETED) == ([], 0)
    assert await listed(backend, ids, type="sms") == ([], 0)


async def test_sorts_in_both_orders_with_ties_by_creation(backend: Backend) -> None:
    ids = await six_jobs(backend)
    by_priority = [3, 0, 4, 1, 2, 5]
    assert await listed(backend, ids, sort="priority", descending=False) == (by_priority, 6)
    assert await listed(backend, ids, sort="priority") == (by_priority[::-1], 6)
    unscheduled_first = [0, 1, 4, 5, 3, 2]  # then by scheduled_at: 3 at +13 s, 2 at +102 s
    assert await listed(backend, ids, sort="scheduled_at", descending=False) == (
        unscheduled_first,
        6,
    )
    assert await listed(backend, ids, sort="scheduled_at") == (unscheduled_first[::-1], 6)
    assert await listed(backend, ids, descending=False) == ([0, 1, 2, 3, 4, 5], 6)
    assert await listed(backend, ids, sort="priority", queue="b") == ([5, 2, 3], 3)


async def test_pages_follow_the_order_and_keep_the_total(backend: Backend) -> None:
    ids = await six_jobs(backend)
    pages = [await listed(backend, ids, offset=offset, limit=4) for offset in (0, 4, 8)]
    assert pages == [([5, 4, 3, 2], 6), ([1, 0], 6), ([], 6)]
    assert await listed(backend, ids, sort="priority", descending=False, offset=4, limit=4) == (
        [2, 5],
        6,
    )
    assert await listed(backend, ids, type="email.*", offset=1, limit=2) == ([3, 1], 4)


async def test_many_jobs_are_all_counted_and_paged(backend: Backend) -> None:
    """More jobs than one step of a scan takes (Redis reads ``LIST_SCAN`` at a time)."""
    jobs = [new_job(n, "many", "bulk.odd" if n % 2 else "bulk.even") for n in range(2500)]
    await put(backend, *jobs)
    found, total = await backend.list_jobs(JobQuery(type="bulk.odd", offset=1000, limit=5))
    assert total == 1250
    assert [job.id for job in found] == [jobs[n].id for n in (499, 497, 495, 493, 491)]
    found, total = await backend.list_jobs(JobQuery(queue="many", descending=False, limit=3))
    assert total == 2500 and [job.id for job in found] == [job.id for job in jobs[:3]]


# -- the route -----------------------------------------------------------------------------


async def call(
    client: Any, path: str, status: int = 200, method: str = "GET", json: Any = None
) -> dict[str, Any]:
    with trio.fail_after(DEADLINE):
        response = await client.open(path, method=method, json=json)
        raw = await response.get_data()
    assert response.status_code == status, raw
    assert response.headers["Content-Type"] == MEDIA_TYPE
    body: dict[str, Any] = jsonlib.loads(raw)
    return body


async def test_the_route_lists_filters_sorts_and_pages(each_system: System) -> None:
    client = create_app(each_system, HttpSettings()).test_client()
    ids = await six_jobs(each_system.backend)
    body = await call(client, "/ojs/v1/admin/jobs")
    assert [item["id"] for item in body["items"]] == ids[::-1]
    assert body["pagination"] == {"total": 6, "page": 1, "per_page": 20, "has_more": False}
    newest = body["items"][0]
    assert newest["queue"] == "b" and newest["type"] == "email.send"
    assert newest["state"] == "available" and newest["priority"] == 5
    assert newest["created_at"] == format_ms(NOW + 5 * SECOND)

    since = format_ms(NOW + 1 * SECOND)
    query = f"queue=a&state=available&type=email.*&since={since}"
    assert (await call(client, f"/ojs/v1/admin/jobs?{query}"))["items"] == []
    body = await call(client, "/ojs/v1/admin/jobs?sort=priority&order=asc&page=2&per_page=4")
    assert [item["id"] for item in body["items"]] == [ids[2], ids[5]]
    assert body["pagination"] == {"total": 6, "page": 2, "per_page": 4, "has_more": False}
    body = await call(client, "/ojs/v1/admin/jobs?state=scheduled&sort=scheduled_at&order=desc")
    assert [item["id"] for item in body["items"]] == [ids[2], ids[3]]
    body = await call(client, f"/ojs/v1/admin/jobs?until={format_ms(NOW + 2 * SECOND)}&per_page=1")
    assert [item["id"] for item in body["items"]] == [ids[1]]
    assert body["pagination"] == {"total": 2, "page": 1, "per_page": 1, "has_more": True}


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ("state=finished", "state"),
        ("sort=id", "sort"),
        ("order=up", "order"),
        ("per_page=0", "per_page"),
        ("per_page=101", "per_page"),
        ("page=0", "page"),
        ("page=two", "page"),
        ("since=yesterday", "since"),
        ("until=2026-13-01T00:00:00Z", "until"),
        ("type=", "type"),
        ("queue=Not%20A%20Queue", "queue"),
    ],
)
async def test_bad_parameters_are_400s(query: str, parameter: str) -> None:
    async with open_system("memory") as system:
        client = create_app(system, HttpSettings()).test_client()
        body = await call(client, f"/ojs/v1/admin/jobs?{query}", 400)
    error = body["error"]
    assert error["code"] == "invalid_request" and error["retryable"] is False
    assert parameter in error["message"], error


async def test_a_backend_without_the_part_answers_unsupported(
    nats_options: dict[str, Any],
) -> None:
    backend = create_backend("nats", **nats_options)
    assert not isinstance(backend, JobListing)
    async with open_system(backend) as system:
        client = create_app(system, HttpSettings()).test_client()
        body = await call(client, "/ojs/v1/admin/jobs", 422)
        assert (await call(client, "/ojs/v1/admin/jobs?sort=bad", 400))["error"]["details"]
        purge = {"states": ["completed"], "confirm": True}
        refused = await call(client, "/ojs/v1/admin/queues/q/jobs", 422, "DELETE", purge)
        assert refused["error"]["code"] == "unsupported" and "nats" in refused["error"]["message"]
    error = body["error"]
    assert error["code"] == "unsupported" and "nats" in error["message"]
    assert error["details"]["backend"] == "nats"


async def test_an_older_sqlite_file_gets_the_listing_index(tmp_path: Path) -> None:
    """The index the listing walks is created at start-up in a file made without it."""
    path = str(tmp_path / "old.db")
    async with open_backend(create_backend("sqlite", path=path)) as backend:
        await put(backend, new_job(0, "a", "email.send"), new_job(1, "a", "email.send"))
    with closing(sqlite3.connect(path)) as connection:
        connection.execute("DROP INDEX jobs_created")
    async with open_backend(create_backend("sqlite", path=path)) as backend:
        jobs, total = await backend.list_jobs(JobQuery(descending=False))
        assert [job.args for job in jobs] == [[0], [1]] and total == 2
    with closing(sqlite3.connect(path)) as connection:
        plan = connection.execute(
            "EXPLAIN QUERY PLAN SELECT id FROM jobs ORDER BY created_at DESC, id DESC LIMIT 1"
        ).fetchall()
    assert "jobs_created" in str(plan)


def test_which_backends_list_jobs() -> None:
    """Kafka keeps its jobs in the Redis backend's parts, so it lists and deletes them too;
    NATS and SQS do neither (the routes answer ``unsupported``)."""
    from ojs_actors.backends.aws.backend import AwsBackend
    from ojs_actors.backends.kafka import KafkaBackend
    from ojs_actors.backends.nats import NatsBackend
    from ojs_actors.backends.redis import RedisBackend

    assert issubclass(KafkaBackend, RedisBackend) and callable(KafkaBackend.list_jobs)
    assert callable(KafkaBackend.delete_jobs)
    for backend_class in (NatsBackend, AwsBackend):
        assert not hasattr(backend_class, "list_jobs")
        assert not hasattr(backend_class, "delete_jobs")


# -- the queue purge ------------------------------------------------------------------------


async def test_delete_jobs_takes_finished_jobs_at_their_version(backend: Backend) -> None:
    assert isinstance(backend, JobDeletion) and isinstance(backend, JobListing)
    dead = dead_lettered(0)
    cancelled = lifecycle.cancel(new_job(1, "q", "email.send"), NOW + 2 * SECOND)
    waiting = new_job(2, "q", "email.send")
    await put(backend, dead, cancelled, waiting)
    doomed = [(dead.id, dead.version), (cancelled.id, cancelled.version + 1)]
    doomed += [(waiting.id, waiting.version), ("missing", 0)]
    assert await backend.delete_jobs(doomed) == [True, False, False, False]
    assert await backend.delete_jobs([(dead.id, dead.version)]) == [False]  # gone
    assert await backend.delete_jobs([(cancelled.id, cancelled.version)]) == [True]
    assert await backend.get_jobs([dead.id, cancelled.id]) == [None, None]
    assert await backend.count_jobs("q") == {State.AVAILABLE: 1}
    assert await backend.list_dead_letter(None, 10, 0) == ([], 0)
    assert await backend.list_jobs(JobQuery(queue="q")) == (await backend.get_jobs([waiting.id]), 1)
    assert await backend.due_jobs(NOW + 10**9, 10) == []  # no timer of a deleted job left


async def test_a_purge_deletes_the_queues_finished_jobs(each_system: System) -> None:
    client = create_app(each_system, HttpSettings()).test_client()
    jobs = [new_job(n, "p", "email.send") for n in range(3)] + [new_job(3, "other", "x")]
    await put(each_system.backend, *jobs)
    for queue in ("p", "other"):
        body = {"queues": [queue], "worker_id": "w"}
        [fetched] = (await call(client, "/ojs/v1/workers/fetch", method="POST", json=body))["jobs"]
        ack = {"job_id": fetched["id"]}
        await call(client, "/ojs/v1/workers/ack", method="POST", json=ack)
    await call(client, f"/ojs/v1/admin/jobs/{jobs[2].id}/cancel", method="POST")
    path = "/ojs/v1/admin/queues/p/jobs"
    purge = {"states": ["completed", "cancelled"], "confirm": True}

    early = {**purge, "older_than": format_ms(NOW)}  # every job finished later
    assert await call(client, path, method="DELETE", json=early) == {
        "purged_count": 0,
        "states": ["completed", "cancelled"],
    }
    body = await call(client, path, method="DELETE", json=purge)
    assert body == {"purged_count": 2, "states": ["completed", "cancelled"]}
    left = await call(client, "/ojs/v1/admin/jobs")
    assert sorted(item["queue"] + ":" + item["state"] for item in left["items"]) == [
        "other:completed",
        "p:available",
    ]
    again = await call(client, path, method="DELETE", json=purge)
    assert again["purged_count"] == 0


@pytest.mark.parametrize(
    "body",
    [
        {"states": ["completed"]},
        {"states": ["completed"], "confirm": "true"},
        {"states": ["available"], "confirm": True},
        {"states": [], "confirm": True},
        {"confirm": True},
        {"states": "completed", "confirm": True},
        {"states": ["completed"], "older_than": "soon", "confirm": True},
        {"states": ["completed"], "filter": {"type": "x"}, "confirm": True},
    ],
)
async def test_a_purge_needs_confirm_and_finished_states(body: dict[str, Any]) -> None:
    async with open_system("memory") as system:
        client = create_app(system, HttpSettings()).test_client()
        job = lifecycle.cancel(new_job(0, "p", "x"), NOW + SECOND)
        await put(system.backend, job)
        path = "/ojs/v1/admin/queues/p/jobs"
        error = (await call(client, path, 400, method="DELETE", json=body))["error"]
        assert error["code"] == "invalid_request"
        assert await system.backend.get_jobs([job.id]) == [job]  # nothing deleted
