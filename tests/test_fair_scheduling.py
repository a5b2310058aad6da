"""Fair scheduling (ojs-fair-scheduling) end to end: pools persisted through the backend's
snapshots (memory, SQLite, Redis), and the claim order of fetches over a pool's queues."""

from __future__ import annotations

import json as jsonlib
from collections import Counter
from typing import Any

import pytest
import trio

from ojs_actors.http import HttpSettings, create_app
from ojs_actors.system import System

DEADLINE = 10  # seconds


@pytest.fixture
def api(each_system: System) -> Any:
    return create_app(each_system, HttpSettings()).test_client()


async def call(client: Any, method: str, path: str, json: Any = None, status: int = 200) -> Any:
    with trio.fail_after(DEADLINE):
        response = await client.open(path, method=method, json=json)
        raw = await response.get_data()
    assert response.status_code == status, raw
    return jsonlib.loads(raw)


async def fill(system: System, queue: str, count: int) -> None:
    await system.enqueue_batch(
        [{"type": "work.item", "args": [n], "options": {"queue": queue}} for n in range(count)]
    )


async def queues_of_fetches(system: System, queues: list[str], fetches: int) -> list[str]:
    taken = []
    for _ in range(fetches):
        [job] = await system.fetch(queues, 1, worker_id="w")
        taken.append(job.queue)
    return taken


async def test_pool_crud(api: Any) -> None:
    body = {"name": "p1", "strategy": "weighted",
            "queues": {"high": {"weight": 70}, "low": {"weight": 30}}}  # fmt: skip
    created = await call(api, "PUT", "/ojs/v1/admin/pools/p1", body, status=201)
    assert created["pool"]["weights"] == {"high": 70, "low": 30}
    again = {"queues": ["a", "b"], "strategy": "round-robin"}
    assert (await call(api, "PUT", "/ojs/v1/admin/pools/p1", again))["pool"]["queues"] == ["a", "b"]
    assert (await call(api, "GET", "/ojs/v1/admin/pools/p1"))["pool"]["strategy"] == "round-robin"
    assert [pool["name"] for pool in (await call(api, "GET", "/ojs/v1/admin/pools"))["items"]] == [
        "p1"
    ]
    await call(api, "DELETE", "/ojs/v1/admin/pools/p1")
    await call(api, "GET", "/ojs/v1/admin/pools/p1", status=404)


@pytest.mark.parametrize(
    "body",
    [
        {"queues": ["a"], "strategy": "lottery"},
        {"queues": []},
        {"strategy": "weighted"},
        {"queues": ["a"], "weights": {"b": 1}},
        {"queues": ["a"], "weights": {"a": 0}},
        {"queues": ["Not A Queue"]},
        {"name": "other", "queues": ["a"]},
    ],
)
async def test_bad_pools_are_refused(api: Any, body: dict[str, Any]) -> None:
    error = await call(api, "PUT", "/ojs/v1/admin/pools/p1", body, status=400)
    assert error["error"]["code"] == "invalid_request"


async def test_weighted_pool_shares_claims_by_weight(each_system: System, api: Any) -> None:
    await fill(each_system, "high", 20)
    await fill(each_system, "low", 20)
    pool = {"strategy": "weighted", "queues": {"high": {"weight": 3}, "low": {"weight": 1}}}
    await call(api, "PUT", "/ojs/v1/admin/pools/mix", pool, status=201)
    taken = await queues_of_fetches(each_system, ["high", "low"], 8)
    assert Counter(taken) == {"high": 6, "low": 2}
    stats = await call(api, "GET", "/ojs/v1/admin/scheduling/stats")
    counts = {queue["name"]: queue["dispatch_count_1m"] for queue in stats["queues"]}
    assert counts == {"high": 6, "low": 2}
    assert stats["stats"]["dispatched_1m"] == 8 and stats["window"] == "PT1M"


async def test_round_robin_pool_alternates_and_fills_from_the_others(
    each_system: System, api: Any
) -> None:
    await fill(each_system, "a", 3)
    await fill(each_system, "b", 1)
    await call(api, "PUT", "/ojs/v1/admin/pools/rr", {"queues": ["a", "b"]}, status=201)
    batch = await each_system.fetch(["a", "b"], 2, worker_id="w")
    assert sorted(job.queue for job in batch) == ["a", "b"]
    rest = await each_system.fetch(["a", "b"], 4, worker_id="w")  # b is empty: a fills in
    assert [job.queue for job in rest] == ["a", "a"]


async def test_without_a_pool_queues_are_taken_in_order(each_system: System) -> None:
    await fill(each_system, "a", 3)
    await fill(each_system, "b", 3)
    assert await queues_of_fetches(each_system, ["a", "b"], 4) == ["a", "a", "a", "b"]
