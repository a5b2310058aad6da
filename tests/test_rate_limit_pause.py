"""Dynamic rate limiting (ojs-rate-limiting §9, RL-R003): a nack whose error carries
``rate_limit_until`` pauses the job's key (or its queue, for a job without a key) until
then, for every process sharing the backend, and reschedules the job for then with its
attempt unspent; on the memory, SQLite and Redis backends."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio
from app_client import request
from test_rate_limits import fetch
from trio.testing import MockClock

from ojs_actors.backends import EventFilter, create_backend
from ojs_actors.core import Job, format_ms, parse_timestamp
from ojs_actors.http import HttpSettings, create_app
from ojs_actors.system import RateLimitExceeded, System, open_system


@pytest.fixture
def api(each_system: System) -> Any:
    return create_app(each_system, HttpSettings()).test_client()


def job(queue: str, **rate_limit: Any) -> dict[str, Any]:
    options: dict[str, Any] = {"queue": queue}
    if rate_limit:
        options["rate_limit"] = rate_limit
    return {"type": "rl.job", "args": [], "options": options}


async def enqueue(client: Any, queue: str, count: int, **rate_limit: Any) -> list[str]:
    ids = []
    for _ in range(count):
        status, _, body = await request(client, "POST", "/ojs/v1/jobs", job(queue, **rate_limit))
        assert status == 201, body
        ids.append(body["job"]["id"])
    return ids


async def nack_limited(client: Any, job_id: str, until: int, **extra: Any) -> dict[str, Any]:
    error = {
        "type": "RateLimitExceeded",
        "message": "Stripe API rate limit exceeded",
        "rate_limit_until": format_ms(until),
        **extra,
    }
    status, _, body = await request(
        client, "POST", "/ojs/v1/workers/nack", {"job_id": job_id, "error": error}
    )
    assert status == 200, body
    return body


async def job_of(client: Any, job_id: str) -> dict[str, Any]:
    _, _, body = await request(client, "GET", f"/ojs/v1/jobs/{job_id}")
    found: dict[str, Any] = body["job"]
    return found


async def events_of(system: System, *kinds: str) -> list[dict[str, Any]]:
    found = await system.events(EventFilter(types=frozenset(kinds), limit=1000))
    return [event["data"] | {"type": event["type"]} for event in found]


async def test_a_reported_limit_pauses_the_key_and_reschedules_the_job_unspent(
    api: Any, each_system: System, each_clock: MockClock
) -> None:
    ids = await enqueue(api, "rl-p", 3, key="stripe", concurrency=5)
    await enqueue(api, "rl-p", 1, key="other")
    [first] = await fetch(api, "rl-p", 1)
    until = each_system.clock() + 30_000
    await nack_limited(api, first["id"], until)
    nacked = await job_of(api, first["id"])
    assert nacked["state"] == "scheduled" and nacked["attempt"] == 0  # not a failed attempt
    assert parse_timestamp(nacked["scheduled_at"], "t") == until
    assert nacked["error"]["rate_limit_until"] == format_ms(until)
    [other] = await fetch(api, "rl-p")  # the key's other jobs are held; another key's not
    assert other["rate_limit"]["key"] == "other"
    assert (await job_of(api, ids[1]))["state"] == "available"  # on_limit "wait"
    _, _, state = await request(api, "GET", "/ojs/v1/rate-limits/stripe")
    assert state["paused_until"] == format_ms(until) and state["waiting_count"] == 2
    await trio.sleep(29)
    assert await fetch(api, "rl-p") == []
    await trio.sleep(2)
    again = await fetch(api, "rl-p")
    assert sorted(j["id"] for j in again) == sorted(ids)
    assert {j["id"]: j["attempt"] for j in again}[first["id"]] == 1
    _, _, state = await request(api, "GET", "/ojs/v1/rate-limits/stripe")
    assert "paused_until" not in state
    events = await events_of(each_system, "rate_limit.dynamic_adjusted", "rate_limit.exceeded")
    assert events == [
        {"type": "rate_limit.dynamic_adjusted", "key": "stripe", "until": format_ms(until),
         "reason": "Stripe API rate limit exceeded", "job_id": first["id"]},
        {"type": "rate_limit.exceeded", "key": "stripe", "strategy": "dynamic", "limit": 0, "current": 0},
    ]  # fmt: skip
    failed = await events_of(each_system, "job.failed", "job.retrying", "job.scheduled")
    assert [e["type"] for e in failed] == ["job.scheduled"]


async def test_a_job_without_a_key_pauses_its_queue(
    api: Any, each_system: System, each_clock: MockClock
) -> None:
    ids = await enqueue(api, "rl-pq", 3)
    await enqueue(api, "rl-pq-other", 1)
    [first] = await fetch(api, "rl-pq", 1)
    until = each_system.clock() + 10_000
    await nack_limited(api, first["id"], until)
    assert await fetch(api, "rl-pq") == []
    assert len(await fetch(api, "rl-pq-other")) == 1
    _, _, body = await request(api, "GET", "/ojs/v1/admin/queues/rl-pq/rate-limit")
    assert body["rate_limit"] is None and body["state"]["paused_until"] == format_ms(until)
    [adjusted] = await events_of(each_system, "rate_limit.dynamic_adjusted")
    assert adjusted["key"] == "@queue:rl-pq" and adjusted["queue"] == "rl-pq"
    await trio.sleep(11)
    assert sorted(j["id"] for j in await fetch(api, "rl-pq")) == sorted(ids)


async def test_a_pause_only_lengthens_and_can_be_lifted(
    api: Any, each_system: System, each_clock: MockClock
) -> None:
    ids = await enqueue(api, "rl-pl", 3, key="mail")
    first, second = await fetch(api, "rl-pl", 2)
    now = each_system.clock()
    await nack_limited(api, first["id"], now + 60_000)
    await nack_limited(api, second["id"], now + 5_000)  # shorter: the key stays paused
    _, _, state = await request(api, "GET", "/ojs/v1/rate-limits/mail")
    assert state["paused_until"] == format_ms(now + 60_000)
    [_] = await events_of(each_system, "rate_limit.dynamic_adjusted")
    await trio.sleep(6)
    assert await fetch(api, "rl-pl") == []  # the second job is due, its key is not
    status, _, state = await request(api, "DELETE", "/ojs/v1/rate-limits/mail")
    assert status == 200 and "paused_until" not in state
    got = await fetch(api, "rl-pl")
    assert sorted(j["id"] for j in got) == sorted([second["id"], ids[2]])


async def test_jobs_of_a_paused_key_follow_their_on_limit(
    api: Any, each_system: System, each_clock: MockClock
) -> None:
    first, later = await enqueue(api, "rl-pr", 2, key="resched", on_limit="reschedule")
    dropped = (await enqueue(api, "rl-pr", 1, key="resched", on_limit="drop"))[0]
    [_] = await fetch(api, "rl-pr", 1)
    until = each_system.clock() + 15_000
    await nack_limited(api, first, until)
    assert await fetch(api, "rl-pr") == []
    held = await job_of(api, later)
    assert held["state"] == "scheduled" and parse_timestamp(held["scheduled_at"], "t") == until
    assert (await job_of(api, dropped))["state"] == "discarded"
    await trio.sleep(16)
    assert sorted(j["id"] for j in await fetch(api, "rl-pr")) == sorted([first, later])


async def test_a_non_retryable_report_fails_the_job_and_a_past_time_pauses_nothing(
    api: Any, each_system: System
) -> None:
    first, second = await enqueue(api, "rl-pn", 2, key="ext")
    [_] = await fetch(api, "rl-pn", 1)
    await nack_limited(api, first, each_system.clock() + 60_000, retryable=False)
    assert (await job_of(api, first))["state"] == "discarded"
    assert await fetch(api, "rl-pn") == []  # the key is paused all the same
    await request(api, "DELETE", "/ojs/v1/rate-limits/ext")
    [_] = await fetch(api, "rl-pn")
    await nack_limited(api, second, each_system.clock() - 1_000)
    back = await job_of(api, second)
    assert back["state"] == "available" and back["attempt"] == 0
    assert [j["id"] for j in await fetch(api, "rl-pn")] == [second]


@pytest.mark.parametrize("value", ["soon", 1700000000, "2026-13-01T00:00:00Z"])
async def test_a_malformed_rate_limit_until_is_refused(api: Any, value: Any) -> None:
    [job_id] = await enqueue(api, "rl-pm", 1, key="m")
    [_] = await fetch(api, "rl-pm")
    body = {"job_id": job_id, "error": {"message": "429", "rate_limit_until": value}}
    status, _, reply = await request(api, "POST", "/ojs/v1/workers/nack", body)
    assert status == 400
    assert reply["error"]["details"]["field"] == "error.rate_limit_until"
    assert (await job_of(api, job_id))["state"] == "active"


@pytest.mark.parametrize("store", ["sqlite", "redis"])
async def test_two_systems_on_one_store_share_the_pause(
    store: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    def backend() -> Any:
        if store == "redis":
            return create_backend("redis", url=request.getfixturevalue("redis_url"))
        return create_backend("sqlite", path=str(tmp_path / "rl.db"))

    async with open_system(backend()) as a, open_system(backend()) as b:
        for _ in range(3):
            await a.enqueue(job("rl-ps", key="shared", concurrency=5))
        [held] = await a.fetch(["rl-ps"], 1)
        until = a.clock() + 3_600_000
        error = {"message": "429", "rate_limit_until": format_ms(until)}
        await a.nack(held.id, error)
        assert await b.fetch(["rl-ps"], 3) == []
        assert await a.fetch(["rl-ps"], 3) == []
        await b.limits.clear_rate_limit_override("shared")
        assert len(await b.fetch(["rl-ps"], 3)) == 2
        for _ in range(2):  # no key: the queue is paused
            await a.enqueue(job("rl-ps-q"))
        [plain] = await a.fetch(["rl-ps-q"], 1)
        await a.nack(plain.id, error)
        assert await b.fetch(["rl-ps-q"], 2) == []
        assert await a.fetch(["rl-ps-q"], 2) == []


async def test_a_worker_group_handler_raising_rate_limit_exceeded_pauses_its_key(
    autojump_clock: MockClock,
) -> None:
    starts: list[tuple[str, int]] = []
    done = trio.Event()

    async with open_system(create_backend("memory")) as system:
        pause_until = system.clock() + 20_000

        async def handler(job: Job) -> None:
            starts.append((job.id, system.clock()))
            if len(starts) == 1:
                raise RateLimitExceeded("HTTP 429 from the API", pause_until)
            if len(starts) == 4:
                done.set()

        ids = [(await system.enqueue(job("rl-pg", key="api", concurrency=1))).id for _ in range(3)]
        async with system.worker_group(["rl-pg"], {"rl.job": handler}, concurrency=1):
            with trio.fail_after(120):
                await done.wait()
        first = await system.info(ids[0])
    assert starts[0][0] == ids[0]
    assert all(at >= pause_until for _, at in starts[1:])
    assert sorted(job_id for job_id, _ in starts[1:]) == sorted(ids)
    assert first.attempt == 1 and first.errors[0]["type"] == "RateLimitExceeded"
