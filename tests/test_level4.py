"""Level 4: unique jobs, atomic batch enqueue, queue pause/resume/stats, rate limits.

Through the embedded API (against the real in-memory backend) and through the real app.
"""

from __future__ import annotations

from typing import Any

import pytest
import trio
from test_http import assert_error, call

from ojs_actors import State
from ojs_actors.core import Duplicate, InvalidRequest, OJSError
from ojs_actors.http import HttpSettings, create_app
from ojs_actors.system import System


@pytest.fixture
def client(system: System) -> Any:
    return create_app(system, HttpSettings()).test_client()


def unique_job(n: Any, on_conflict: str = "reject", **unique: Any) -> dict[str, Any]:
    return {
        "type": "unique.job",
        "args": [{"n": n}],
        "options": {"unique": {"keys": ["type", "args"], "on_conflict": on_conflict, **unique}},
    }


# -- unique jobs ---------------------------------------------------------------------------


async def test_unique_reject(system: System) -> None:
    first = await system.enqueue(unique_job(1))
    with pytest.raises(Duplicate) as duplicate:
        await system.enqueue(unique_job(1))
    assert duplicate.value.details["existing_job_id"] == first.id
    assert (await system.enqueue(unique_job(2))).state is State.AVAILABLE


async def test_unique_ignore_returns_the_existing_job(system: System, client: Any) -> None:
    first = await system.enqueue(unique_job(1, "ignore"))
    again = await system.enqueue(unique_job(1, "ignore"))
    assert again.id == first.id
    reply = await call(client, "POST", "/ojs/v1/jobs", json=unique_job(1, "ignore"))
    assert reply.status == 200 and reply.body["deduplicated"] is True
    assert reply.body["job"]["id"] == first.id
    assert len(await system.fetch(["default"], count=10)) == 1


async def test_unique_replace_cancels_the_old_job(system: System) -> None:
    policy = {"keys": ["type"], "on_conflict": "replace"}
    old = await system.enqueue({"type": "report.build", "args": [1], "unique": policy})
    new = await system.enqueue({"type": "report.build", "args": [2], "unique": policy})
    assert new.id != old.id
    assert (await system.info(old.id)).state is State.CANCELLED
    [fetched] = await system.fetch(["default"], count=10)
    assert fetched.id == new.id
    # An active holder cannot be replaced: the new job is rejected instead.
    with pytest.raises(Duplicate, match="active"):
        await system.enqueue({"type": "report.build", "args": [3], "unique": policy})


async def test_unique_replace_except_schedule_keeps_the_time(system: System) -> None:
    policy = {"keys": ["type"], "on_conflict": "replace_except_schedule"}
    old = await system.enqueue(
        {"type": "notify.send", "args": [1], "unique": policy, "scheduled_at": "+PT60S"}
    )
    new = await system.enqueue(
        {"type": "notify.send", "args": [2], "unique": policy, "scheduled_at": "+PT600S"}
    )
    assert new.state is State.SCHEDULED and new.scheduled_at == old.scheduled_at
    assert (await system.info(old.id)).state is State.CANCELLED


async def test_unique_states_and_period(system: System, autojump_clock: Any) -> None:
    only_available = unique_job(1, states=["available"])
    first = await system.enqueue(only_available)
    [claimed] = await system.fetch(["default"])
    await system.ack(claimed.id)
    # The holder completed: not in the checked states, so the key is free again.
    assert (await system.enqueue(only_available)).id != first.id

    periodic = unique_job(2, period="PT2S")
    await system.enqueue(periodic)
    with pytest.raises(Duplicate):
        await system.enqueue(periodic)
    await trio.sleep(2.1)
    assert (await system.enqueue(periodic)).state is State.AVAILABLE


@pytest.mark.parametrize(
    "unique",
    [
        {"keys": ["colour"]},
        {"keys": ["meta"]},
        {"keys": ["args"], "args_keys": ["missing"]},
        {"states": ["sleeping"]},
        {"on_conflict": "merge"},
        {"period": "soon"},
        "yes",
    ],
)
async def test_invalid_unique_policies(system: System, unique: Any) -> None:
    with pytest.raises(InvalidRequest):
        await system.enqueue({"type": "a.b", "args": [{"n": 1}], "unique": unique})


async def test_unique_key_ignores_unicode_normalisation(system: System) -> None:
    composed, decomposed = "caf\u00e9", "cafe\u0301"
    await system.enqueue(unique_job(composed))
    with pytest.raises(Duplicate):
        await system.enqueue(unique_job(decomposed))


# -- batch enqueue -------------------------------------------------------------------------


async def test_batch_is_atomic(system: System, client: Any) -> None:
    good = {"type": "bulk.job", "args": [1], "options": {"queue": "bulk"}}
    reply = await call(
        client, "POST", "/ojs/v1/jobs/batch", json={"jobs": [good, good, {"args": [3]}]}
    )
    error = assert_error(reply, 400, "invalid_request")
    assert error["details"]["index"] == 2
    assert await system.fetch(["bulk"], count=10) == []

    # A conflict found by the backend (an existing id) also stores nothing.
    existing = await system.enqueue({"type": "bulk.job", "args": [0], "options": {"queue": "bulk"}})
    clash = {"id": existing.id, "type": "bulk.job", "args": [9], "options": {"queue": "bulk"}}
    with pytest.raises(OJSError) as refused:
        await system.enqueue_batch([good, clash])
    assert refused.value.status == 409 and refused.value.details["index"] == 1
    assert [job.id for job in await system.fetch(["bulk"], count=10)] == [existing.id]


async def test_batch_across_queues_wakes_each(system: System, client: Any) -> None:
    jobs = [{"type": "bulk.job", "args": [n], "options": {"queue": f"q{n % 2}"}} for n in range(6)]
    reply = await call(client, "POST", "/ojs/v1/jobs/batch", json={"jobs": jobs})
    assert reply.status == 201 and reply.body["count"] == 6
    assert [job["state"] for job in reply.body["jobs"]] == ["available"] * 6
    for queue in ("q0", "q1"):
        stats = await call(client, "GET", f"/ojs/v1/queues/{queue}/stats")
        assert stats.body["queue"]["available"] == 3


async def test_batch_rejects_bad_envelopes(client: Any) -> None:
    for body in ({}, {"jobs": []}, {"jobs": "x"}):
        assert_error(
            await call(client, "POST", "/ojs/v1/jobs/batch", json=body), 400, "invalid_request"
        )


# -- queue operations ------------------------------------------------------------------------


async def test_pause_resume_and_stats(system: System, client: Any) -> None:
    paused = await call(client, "POST", "/ojs/v1/queues/ops/pause")
    assert paused.status == 200 and paused.body["queue"]["paused"] is True
    job = await system.enqueue({"type": "ops.job", "args": [], "options": {"queue": "ops"}})
    assert await system.fetch(["ops"]) == []
    stats = await call(client, "GET", "/ojs/v1/queues/ops/stats")
    assert stats.body["queue"]["name"] == "ops" and stats.body["queue"]["paused"] is True
    assert stats.body["queue"]["available"] == 1 and stats.body["queue"]["active"] == 0

    resumed = await call(client, "POST", "/ojs/v1/queues/ops/resume")
    assert resumed.body["queue"]["paused"] is False
    [claimed] = await system.fetch(["ops"])
    assert claimed.id == job.id
    await system.ack(claimed.id)
    stats = await call(client, "GET", "/ojs/v1/queues/ops/stats")
    assert (stats.body["queue"]["available"], stats.body["queue"]["completed"]) == (0, 1)
    listed = await call(client, "GET", "/ojs/v1/queues")
    assert {"name": "ops", "status": "active"}.items() <= listed.body["queues"][0].items()


async def test_bad_queue_names_in_paths(client: Any) -> None:
    assert_error(await call(client, "POST", "/ojs/v1/queues/Bad!/pause"), 400, "invalid_request")
    assert_error(await call(client, "GET", "/ojs/v1/queues/UPPER/stats"), 400, "invalid_request")


# -- rate limits --------------------------------------------------------------------------------


async def test_rate_limit_per_queue(system: System, autojump_clock: Any) -> None:
    for n in range(5):
        await system.enqueue(
            {
                "type": "rl.job",
                "args": [n],
                "options": {"queue": "rl", "rate_limit": {"max_per_second": 2}},
            }
        )
    assert len(await system.fetch(["rl"], count=5)) == 2
    assert await system.fetch(["rl"]) == []
    await trio.sleep(1.01)
    assert len(await system.fetch(["rl"], count=5)) == 2
    started = trio.current_time()
    [last] = await system.fetch(["rl"], wait=5)
    assert last.args == [4]
    assert trio.current_time() - started <= 1.01


async def test_invalid_rate_limit(system: System) -> None:
    for limit in ({"max_per_second": 0}, {"max_per_second": "fast"}, "fast"):
        with pytest.raises(InvalidRequest):
            await system.enqueue({"type": "a.b", "args": [], "options": {"rate_limit": limit}})
