"""Keyed rate limits (ojs-rate-limiting): concurrency, sliding windows and throttles per
``rate_limit.key``, over the real app and System, and shared by two real ``ojs-actors
serve`` processes on one Redis (the partition is a backend snapshot, decided by
compare-and-set, not a counter of either process)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from app_client import request
from serving import OjsServer
from trio.testing import MockClock

from ojs_actors.backends import EventFilter, create_backend
from ojs_actors.core import format_ms, parse_timestamp
from ojs_actors.http import HttpSettings, create_app
from ojs_actors.system import System, open_system


def job(queue: str, **rate_limit: Any) -> dict[str, Any]:
    return {"type": "rl.job", "args": [], "options": {"queue": queue, "rate_limit": rate_limit}}


async def enqueue(client: Any, queue: str, count: int, **rate_limit: Any) -> list[str]:
    ids = []
    for _ in range(count):
        status, _, body = await request(client, "POST", "/ojs/v1/jobs", job(queue, **rate_limit))
        assert status == 201, body
        assert body["job"]["state"] == "available"
        ids.append(body["job"]["id"])
    return ids


async def fetch(client: Any, queue: str, count: int = 10) -> list[dict[str, Any]]:
    body = {"queues": [queue], "count": count, "worker_id": "rl-worker"}
    _, _, reply = await request(client, "POST", "/ojs/v1/workers/fetch", body)
    jobs: list[dict[str, Any]] = reply["jobs"]
    return jobs


async def test_a_concurrency_limit_holds_jobs_available_until_a_slot_frees(client: Any) -> None:
    ids = await enqueue(client, "rl-c", 3, key="api", concurrency=1)
    [first] = await fetch(client, "rl-c")
    assert first["id"] == ids[0]
    assert await fetch(client, "rl-c") == []
    _, _, waiting = await request(client, "GET", f"/ojs/v1/jobs/{ids[1]}")
    assert waiting["job"]["state"] == "available"  # on_limit "wait": never discarded
    await request(client, "POST", "/ojs/v1/workers/ack", {"job_id": first["id"]})
    [second] = await fetch(client, "rl-c")
    assert second["attempt"] == 1  # handed back while refused: no attempt spent
    await request(client, "POST", "/ojs/v1/workers/nack", {"job_id": second["id"], "error": {"message": "x"}})  # fmt: skip
    [third] = await fetch(client, "rl-c")  # a failure frees the slot too
    assert third["id"] == ids[2]  # the nacked one waits for its retry (backoff)


async def test_keys_are_independent_and_unlimited_jobs_pass_limited_ones(client: Any) -> None:
    await enqueue(client, "rl-k", 2, key="a", concurrency=1)
    await enqueue(client, "rl-k", 2, key="b", concurrency=1)
    plain = {"type": "rl.job", "args": [], "options": {"queue": "rl-k"}}
    await request(client, "POST", "/ojs/v1/jobs", plain)
    fetched = await fetch(client, "rl-k")
    keys = sorted(str((j.get("rate_limit") or {}).get("key")) for j in fetched)
    assert keys == ["None", "a", "b"]


async def test_a_window_allows_its_limit_per_period(client: Any, autojump_clock: Any) -> None:
    await enqueue(client, "rl-w", 3, key="mail", rate={"limit": 2, "period": "PT1M"})
    assert len(await fetch(client, "rl-w")) == 2
    assert await fetch(client, "rl-w") == []
    await trio.sleep(61)
    assert len(await fetch(client, "rl-w")) == 1


async def test_a_throttle_spaces_starts_evenly(client: Any, autojump_clock: Any) -> None:
    await enqueue(client, "rl-t", 3, key="smooth", throttle={"limit": 2, "period": "PT1S"})
    assert len(await fetch(client, "rl-t")) == 1
    await trio.sleep(0.3)
    assert await fetch(client, "rl-t") == []
    await trio.sleep(0.3)
    assert len(await fetch(client, "rl-t")) == 1


async def test_a_long_poll_wakes_when_a_slot_frees(client: Any, autojump_clock: Any) -> None:
    await enqueue(client, "rl-p", 2, key="poll", concurrency=1)
    [held] = await fetch(client, "rl-p")
    body = {"queues": ["rl-p"], "count": 1, "wait_ms": 20_000}
    async with trio.open_nursery() as nursery:

        async def ack_later() -> None:
            await trio.sleep(0.1)
            await request(client, "POST", "/ojs/v1/workers/ack", {"job_id": held["id"]})

        nursery.start_soon(ack_later)
        started = trio.current_time()
        _, _, reply = await request(client, "POST", "/ojs/v1/workers/fetch", body)
    assert len(reply["jobs"]) == 1
    assert trio.current_time() - started < 1  # woken by the ack, not the next poll


async def test_inspection_and_listing(client: Any) -> None:
    status, _, body = await request(client, "GET", "/ojs/v1/rate-limits/nobody")
    assert status == 404 and body["error"]["code"] == "not_found"
    await enqueue(client, "rl-i", 2, key="stripe", concurrency=5, rate=10, period="minute")
    await fetch(client, "rl-i", 1)
    status, _, body = await request(client, "GET", "/ojs/v1/rate-limits/stripe")
    assert status == 200
    assert body["key"] == "stripe"
    assert body["concurrency"] == {"limit": 5, "active": 1, "available": 4}
    assert body["rate"]["limit"] == 10 and body["rate"]["current_count"] == 1
    assert body["rate"]["period_ms"] == 60_000
    _, _, listing = await request(client, "GET", "/ojs/v1/rate-limits")
    assert [item["key"] for item in listing["items"]] == ["stripe"]


async def test_enqueue_answers_carry_the_window_limit(client: Any) -> None:
    _, headers, _ = await request(
        client, "POST", "/ojs/v1/jobs", job("rl-h", key="h", rate=1, period="second")
    )
    assert headers["X-RateLimit-Limit"] == "1"


@pytest.mark.parametrize(
    ("rate_limit", "status", "field"),
    [
        ({"key": "bad key!"}, 400, "rate_limit.key"),
        ({"key": "k", "concurrency": -1}, 400, "rate_limit.concurrency"),
        ({"key": "k", "rate": {"limit": 0, "period": "PT1S"}}, 400, "rate_limit.rate.limit"),
        ({"key": "k", "rate": 1, "period": "fortnight"}, 400, "rate_limit.period"),
        ({"key": "k", "on_limit": "later"}, 400, "rate_limit.on_limit"),
        ({"max_per_second": 0}, 400, "rate_limit.max_per_second"),
    ],
)
async def test_malformed_policies_are_refused(
    client: Any, rate_limit: dict[str, Any], status: int, field: str
) -> None:
    body = {"type": "rl.job", "args": [], "options": {"rate_limit": rate_limit}}
    got, _, reply = await request(client, "POST", "/ojs/v1/jobs", body)
    assert got == status and reply["error"]["details"]["field"] == field


async def test_two_systems_on_one_store_share_a_key(tmp_path: Path) -> None:
    db = str(tmp_path / "rl.db")
    async with (
        open_system(create_backend("sqlite", path=db)) as a,
        open_system(create_backend("sqlite", path=db)) as b,
    ):
        for _ in range(4):
            await a.enqueue(job("shared", key="db", concurrency=2))
        got_a = await a.fetch(["shared"], 4)
        got_b = await b.fetch(["shared"], 4)
        assert len(got_a) + len(got_b) == 2
        await b.ack((got_a + got_b)[0].id)
        assert len(await b.fetch(["shared"], 4)) == 1


# -- on_limit, events and overrides, on the memory, SQLite and Redis backends ---------------


@pytest.fixture
def api(each_system: System) -> Any:
    return create_app(each_system, HttpSettings()).test_client()


async def events_of(system: System, *kinds: str) -> list[dict[str, Any]]:
    found = await system.events(EventFilter(types=frozenset(kinds), limit=1000))
    return [event["data"] | {"type": event["type"]} for event in found]


async def job_of(client: Any, job_id: str) -> dict[str, Any]:
    _, _, body = await request(client, "GET", f"/ojs/v1/jobs/{job_id}")
    found: dict[str, Any] = body["job"]
    return found


async def test_reschedule_moves_a_refused_job_to_when_its_key_admits_it(
    api: Any, each_system: System, each_clock: MockClock
) -> None:
    policy = {"key": "mail", "rate": {"limit": 2, "period": "PT1M"}, "on_limit": "reschedule"}
    ids = await enqueue(api, "rl-r", 3, **policy)
    started = await fetch(api, "rl-r")
    assert [j["id"] for j in started] == ids[:2]
    first_start = parse_timestamp(started[0]["started_at"], "started_at")
    third = await job_of(api, ids[2])
    assert third["state"] == "scheduled" and third["attempt"] == 0  # attempt unspent
    assert parse_timestamp(third["scheduled_at"], "scheduled_at") == first_start + 60_000
    assert await fetch(api, "rl-r") == []  # scheduled: not fetchable before its time
    await trio.sleep(61)
    [late] = await fetch(api, "rl-r")
    assert late["id"] == ids[2] and late["attempt"] == 1
    events = await events_of(each_system, "rate_limit.exceeded", "rate_limit.released")
    assert events == [
        {"type": "rate_limit.exceeded", "key": "mail", "strategy": "rate", "limit": 2, "current": 2},
        {"type": "rate_limit.released", "key": "mail", "strategy": "rate", "job_id": ids[2], "queue": "rl-r"},
    ]  # fmt: skip


async def test_reschedule_after_a_full_concurrency_looks_again_a_second_later(
    api: Any, each_clock: MockClock
) -> None:
    ids = await enqueue(api, "rl-rc", 2, key="db", concurrency=1, on_limit="reschedule")
    [first] = await fetch(api, "rl-rc")
    waiting = await job_of(api, ids[1])
    assert waiting["state"] == "scheduled"
    delay = parse_timestamp(waiting["scheduled_at"], "t") - parse_timestamp(
        first["started_at"], "t"
    )
    assert delay == 1_000
    await trio.sleep(1.5)
    assert await fetch(api, "rl-rc") == []  # still held: rescheduled again
    assert (await job_of(api, ids[1]))["state"] == "scheduled"
    await request(api, "POST", "/ojs/v1/workers/ack", {"job_id": first["id"]})
    await trio.sleep(1.5)
    assert [j["id"] for j in await fetch(api, "rl-rc")] == [ids[1]]


async def test_drop_discards_a_refused_job_with_its_event(api: Any, each_system: System) -> None:
    ids = await enqueue(api, "rl-d", 3, key="push", rate=1, period="minute", on_limit="drop")
    assert [j["id"] for j in await fetch(api, "rl-d")] == ids[:1]
    for job_id in ids[1:]:
        dropped = await job_of(api, job_id)
        assert dropped["state"] == "discarded" and dropped["attempt"] == 0
        assert dropped["error"]["code"] == "rate_limited"
    assert await fetch(api, "rl-d") == []
    events = await events_of(each_system, "rate_limit.dropped", "rate_limit.exceeded")
    assert events == [
        {"type": "rate_limit.exceeded", "key": "push", "strategy": "rate", "limit": 1, "current": 1},
        *[
            {"type": "rate_limit.dropped", "key": "push", "job_id": job_id, "job_type": "rl.job", "queue": "rl-d"}
            for job_id in ids[1:]
        ],
    ]  # fmt: skip
    discarded = await events_of(each_system, "job.discarded", "job.failed")
    assert [e["type"] for e in discarded] == ["job.discarded", "job.discarded"]


async def test_waiting_jobs_are_counted_and_released_once(api: Any, each_system: System) -> None:
    await enqueue(api, "rl-wc", 3, key="slow", concurrency=1)
    [first] = await fetch(api, "rl-wc")
    assert await fetch(api, "rl-wc") == []
    assert await fetch(api, "rl-wc") == []  # refused again: no second exceeded event
    _, _, state = await request(api, "GET", "/ojs/v1/rate-limits/slow")
    assert state["waiting_count"] == 2
    await request(api, "POST", "/ojs/v1/workers/ack", {"job_id": first["id"]})
    [second] = await fetch(api, "rl-wc", 1)  # one claimed: the key is not hit again
    events = await events_of(each_system, "rate_limit.exceeded", "rate_limit.released")
    assert [(e["type"], e.get("job_id")) for e in events] == [
        ("rate_limit.exceeded", None),
        ("rate_limit.released", second["id"]),
    ]
    _, _, state = await request(api, "GET", "/ojs/v1/rate-limits/slow")
    assert state["waiting_count"] == 1


async def test_an_override_replaces_the_jobs_limits_until_lifted(api: Any) -> None:
    ids = await enqueue(api, "rl-o", 3, key="stripe", concurrency=5)
    status, _, state = await request(api, "PUT", "/ojs/v1/rate-limits/stripe", {"concurrency": 0})
    assert status == 200
    assert state["override"] == {"concurrency": 0, "expires_at": None}
    assert state["concurrency"] == {"limit": 0, "active": 0, "available": 0}
    assert await fetch(api, "rl-o") == []
    _, _, state = await request(api, "GET", "/ojs/v1/rate-limits/stripe")
    assert state["waiting_count"] == 3 and state["policy"]["concurrency"] == 5
    status, _, state = await request(api, "DELETE", "/ojs/v1/rate-limits/stripe")
    assert status == 200 and "override" not in state
    assert state["concurrency"]["limit"] == 5
    assert sorted(j["id"] for j in await fetch(api, "rl-o")) == sorted(ids)


async def test_an_override_expires(api: Any, each_system: System, each_clock: MockClock) -> None:
    await enqueue(api, "rl-x", 2, key="ext", concurrency=5)
    until = each_system.clock() + 10_000
    body = {"concurrency": 1, "expires_at": format_ms(until)}
    status, _, state = await request(api, "PUT", "/ojs/v1/rate-limits/ext", body)
    assert status == 200 and state["override"]["expires_at"] == format_ms(until)
    assert len(await fetch(api, "rl-x")) == 1
    assert await fetch(api, "rl-x") == []
    await trio.sleep(11)
    assert len(await fetch(api, "rl-x")) == 1  # back to the jobs' own 5
    _, _, state = await request(api, "GET", "/ojs/v1/rate-limits/ext")
    assert "override" not in state


async def test_an_override_may_come_before_any_job_and_bad_ones_are_refused(api: Any) -> None:
    status, _, _ = await request(api, "PUT", "/ojs/v1/rate-limits/early", {"rate": {"limit": 1, "period": "PT1H"}})  # fmt: skip
    assert status == 200
    ids = await enqueue(api, "rl-e", 2, key="early")  # no limits of their own
    assert [j["id"] for j in await fetch(api, "rl-e")] == ids[:1]
    for body, field in [
        ({}, "concurrency"),
        ({"concurrency": -1}, "rate_limit.concurrency"),
        ({"concurrency": 1, "expires_at": "2000-01-01T00:00:00Z"}, "expires_at"),
        ({"concurrency": 1, "expires_at": "soon"}, "expires_at"),
    ]:
        status, _, reply = await request(api, "PUT", "/ojs/v1/rate-limits/early", body)
        assert status == 400 and reply["error"]["details"]["field"] == field, body
    assert (await request(api, "PUT", "/ojs/v1/rate-limits/bad key!", {"concurrency": 1}))[0] == 404
    assert (await request(api, "DELETE", "/ojs/v1/rate-limits/nobody"))[0] == 404


async def test_an_override_set_through_one_process_holds_in_another(tmp_path: Path) -> None:
    db = str(tmp_path / "rl.db")
    async with (
        open_system(create_backend("sqlite", path=db)) as a,
        open_system(create_backend("sqlite", path=db)) as b,
    ):
        for _ in range(2):
            await a.enqueue(job("shared-o", key="api", concurrency=2))
        await a.limits.override_rate_limit("api", {"concurrency": 0})
        assert await b.fetch(["shared-o"], 2) == []
        await a.limits.clear_rate_limit_override("api")
        assert len(await b.fetch(["shared-o"], 2)) == 2


async def test_a_queue_limit_holds_every_job_of_the_queue(
    api: Any, each_system: System, each_clock: MockClock
) -> None:
    path = "/ojs/v1/admin/queues/rl-q/rate-limit"
    status, _, body = await request(api, "PUT", path, {"concurrency": 2, "rate": {"limit": 3, "period": "PT1M"}})  # fmt: skip
    assert status == 200
    assert body["rate_limit"] == {"concurrency": 2, "rate": {"limit": 3, "period": "PT1M"}}
    plain = [(await request(api, "POST", "/ojs/v1/jobs", {"type": "rl.job", "args": [], "options": {"queue": "rl-q"}}))[2]["job"]["id"] for _ in range(3)]  # fmt: skip
    keyed = await enqueue(api, "rl-q", 2, key="own", concurrency=5)
    first = await fetch(api, "rl-q")
    assert [j["id"] for j in first] == plain[:2]  # the queue's concurrency, whatever the key
    _, _, body = await request(api, "GET", path)
    assert body["state"]["concurrency"] == {"limit": 2, "active": 2, "available": 0}
    assert body["state"]["waiting_count"] == 3
    for started in first:
        await request(api, "POST", "/ojs/v1/workers/ack", {"job_id": started["id"]})
    [third] = await fetch(api, "rl-q")  # the window: 3 starts a minute
    assert third["id"] == plain[2]
    await request(api, "POST", "/ojs/v1/workers/ack", {"job_id": third["id"]})
    assert await fetch(api, "rl-q") == []
    _, _, key_state = await request(api, "GET", "/ojs/v1/rate-limits/own")
    assert key_state["concurrency"]["active"] == 0  # refused by the queue: no slot of its key
    await trio.sleep(61)
    assert sorted(j["id"] for j in await fetch(api, "rl-q")) == sorted(keyed)
    status, _, body = await request(api, "DELETE", path)
    assert status == 200 and body == {"queue": "rl-q", "rate_limit": None}
    assert (await request(api, "GET", path))[2]["rate_limit"] is None
    exceeded = await events_of(each_system, "rate_limit.exceeded")
    assert {e["key"] for e in exceeded} == {"@queue:rl-q"}


async def test_a_queue_limit_is_validated(api: Any) -> None:
    path = "/ojs/v1/admin/queues/rl-v/rate-limit"
    for body in ({}, {"concurrency": -1}, {"concurrency": 1, "expires_at": "2100-01-01T00:00:00Z"}):
        assert (await request(api, "PUT", path, body))[0] == 400, body
    status, _, _ = await request(api, "PUT", "/ojs/v1/admin/queues/Bad Queue/rate-limit", {"concurrency": 1})  # fmt: skip
    assert status == 400


# -- two real server processes on one Redis ------------------------------------------------


@pytest.fixture
def replicas(redis_url: str, tmp_path: Path) -> Iterator[tuple[OjsServer, OjsServer]]:
    env = {"REDIS_URL": redis_url}
    a = OjsServer(["--backend", "redis"], tmp_path / "a.log", env=env, poll_interval=0.2)
    try:
        b = OjsServer(["--backend", "redis"], tmp_path / "b.log", env=env, poll_interval=0.2)
    except BaseException:
        a.stop()
        raise
    try:
        yield a, b
    finally:
        a.stop()
        b.stop()


def test_two_replicas_on_redis_share_one_rate_limit(replicas: tuple[OjsServer, OjsServer]) -> None:
    """Fetchers racing through both processes never hold more than the key's concurrency,
    a slot freed through one is used through the other, and a window counts the starts
    made through both."""
    a, b = replicas
    with httpx.Client(timeout=10) as http:
        for _ in range(12):
            reply = http.post(
                f"{a.url}/ojs/v1/jobs", json=job("rl-shared", key="ext", concurrency=3)
            )
            assert reply.status_code == 201
        claimed: list[dict[str, Any]] = []
        lock = threading.Lock()

        def fetcher(url: str) -> None:
            with httpx.Client(timeout=10) as own:
                for _ in range(10):
                    body = {"queues": ["rl-shared"], "count": 2}
                    jobs = own.post(f"{url}/ojs/v1/workers/fetch", json=body).json()["jobs"]
                    with lock:
                        claimed.extend(jobs)

        threads = [threading.Thread(target=fetcher, args=(s.url,)) for s in (a, b, a, b)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert len(claimed) == 3, [j["id"] for j in claimed]
        inspected = http.get(f"{b.url}/ojs/v1/rate-limits/ext").json()
        assert inspected["concurrency"] == {"limit": 3, "active": 3, "available": 0}

        assert http.post(
            f"{b.url}/ojs/v1/workers/ack", json={"job_id": claimed[0]["id"]}
        ).is_success
        body = {"queues": ["rl-shared"], "count": 5}
        assert http.post(f"{a.url}/ojs/v1/workers/fetch", json=body).json()["jobs"] != []
        assert http.post(f"{b.url}/ojs/v1/workers/fetch", json=body).json()["jobs"] == []

        for server in (a, b, a):
            reply = http.post(
                f"{server.url}/ojs/v1/jobs",
                json=job("rl-window", key="win", rate={"limit": 2, "period": "PT1H"}),
            )
            assert reply.status_code == 201
        body = {"queues": ["rl-window"], "count": 3}
        started = [
            *http.post(f"{a.url}/ojs/v1/workers/fetch", json=body).json()["jobs"],
            *http.post(f"{b.url}/ojs/v1/workers/fetch", json=body).json()["jobs"],
            *http.post(f"{a.url}/ojs/v1/workers/fetch", json=body).json()["jobs"],
        ]
        assert len(started) == 2


@pytest.mark.parametrize("store", ["memory", "redis"])
async def test_a_worker_group_runs_one_job_of_a_key_at_a_time(
    store: str, request: pytest.FixtureRequest
) -> None:
    """On Redis the group settles and claims in one round trip (the QueueActor's
    apply-and-claim path); on memory, one after the other. Either way its 4 slots run the
    key's jobs one at a time, and all of them run."""
    backend = (
        create_backend("redis", url=request.getfixturevalue("redis_url"))
        if store == "redis"
        else create_backend("memory")
    )
    running = 0
    most = 0
    done: list[str] = []
    all_done = trio.Event()

    async def handler(job: Any) -> None:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await trio.sleep(0.05)
        running -= 1
        done.append(job.id)
        if len(done) == 6:
            all_done.set()

    async with open_system(backend) as system:
        ids = [(await system.enqueue(job("rl-g", key="one", concurrency=1))).id for _ in range(6)]
        async with system.worker_group(["rl-g"], {"rl.job": handler}, concurrency=4):
            with trio.fail_after(60):
                await all_done.wait()
    assert sorted(done) == sorted(ids)
    assert most == 1
