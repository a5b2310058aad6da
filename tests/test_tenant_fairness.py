"""Tenants' weighted fairness, job listing and statistics (ojs-multi-tenancy §7.2, §10.2,
§10.3): the real app over a real System on the memory, SQLite and Redis backends. A shared
worker's fetch over tenants' queues claims in proportion to their ``fairness_weight``; a
tenant's jobs are listed over all its queues as the admin job listing lists them; its
statistics show its throughput and its fairness shares."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
import trio
from test_tenants import call, enqueue, fetch
from trio.testing import MockClock

from ojs_actors.backends import EventFilter, create_backend
from ojs_actors.backends.memory import MemoryBackend
from ojs_actors.http import HttpSettings, create_app
from ojs_actors.system import System, open_system
from ojs_actors.system.fair_scheduling import FairScheduler

TENANTS = "/ojs/v1/admin/tenants"


@pytest.fixture
def api(each_system: System) -> Any:
    return create_app(each_system, HttpSettings()).test_client()


async def weigh(api: Any, tenant: str, weight: int) -> None:
    await call(api, "PUT", f"{TENANTS}/{tenant}", {"fairness_weight": weight}, status=201)


async def shared_fetches(api: Any, times: int) -> list[str]:
    """The tenants of ``times`` single-job fetches of a shared worker (no header)."""
    taken = []
    for _ in range(times):
        [job] = await fetch(api, None, count=1)
        taken.append(job["meta"].get("tenant_id", "_default"))
    return taken


async def test_shared_fetches_follow_the_tenants_weights(api: Any) -> None:
    """Weights 3:1, both backlogged: single-job fetches take 3 of one for 1 of the other,
    in every run of 4 (smooth weighted round-robin); the empty untagged queue takes none."""
    await weigh(api, "acme", 3)
    await weigh(api, "globex", 1)
    for index in range(20):
        await enqueue(api, "acme", f"a{index}")
        await enqueue(api, "globex", f"g{index}")
    taken = await shared_fetches(api, 16)
    for start in range(0, 16, 4):
        assert Counter(taken[start : start + 4]) == {"acme": 3, "globex": 1}, taken
    # a batch fetch shares its jobs alike
    batch = await fetch(api, None, count=8)
    assert Counter(job["meta"]["tenant_id"] for job in batch) == {"acme": 6, "globex": 2}


async def test_a_tenant_out_of_work_leaves_its_turns_to_the_others(api: Any) -> None:
    await weigh(api, "acme", 3)
    for index in range(2):
        await enqueue(api, "acme", f"a{index}")
    for index in range(6):
        await enqueue(api, "globex", f"g{index}")
    await enqueue(api, None, "untagged")  # _default, weight 1
    taken = await shared_fetches(api, 9)
    assert Counter(taken) == {"acme": 2, "globex": 6, "_default": 1}
    assert await fetch(api, None) == []


async def test_a_tenants_jobs_are_listed_over_all_its_queues(api: Any) -> None:
    mine = [await enqueue(api, "acme", f"a{index}") for index in range(3)]
    mine.append(await enqueue(api, "acme", "e", queue="emails"))
    await enqueue(api, "globex", "g")
    untagged = await enqueue(api, None, "plain")
    [active] = await fetch(api, "acme", count=1)

    listed = await call(api, "GET", f"{TENANTS}/acme/jobs")
    assert {job["id"] for job in listed["items"]} == {job["id"] for job in mine}
    assert listed["pagination"] == {"total": 4, "page": 1, "per_page": 20, "has_more": False}
    assert {job["queue"] for job in listed["items"]} == {"reports", "emails"}  # as named

    by_state = await call(api, "GET", f"{TENANTS}/acme/jobs?state=active")
    assert [job["id"] for job in by_state["items"]] == [active["id"]]
    emails = await call(api, "GET", f"{TENANTS}/acme/jobs?queue=emails")
    assert [job["id"] for job in emails["items"]] == [mine[3]["id"]]
    paged = await call(
        api, "GET", f"{TENANTS}/acme/jobs?per_page=3&page=2&order=asc&sort=created_at"
    )
    assert paged["pagination"] == {"total": 4, "page": 2, "per_page": 3, "has_more": False}
    assert [job["id"] for job in paged["items"]] == [mine[3]["id"]]
    default = await call(api, "GET", f"{TENANTS}/_default/jobs")
    assert [job["id"] for job in default["items"]] == [untagged["id"]]

    # the tenant itself may list its jobs; another tenant may not even see it exists
    assert (await call(api, "GET", f"{TENANTS}/acme/jobs", tenant="acme"))["pagination"]["total"]
    await call(api, "GET", f"{TENANTS}/acme/jobs", tenant="globex", status=404)
    await call(api, "GET", f"{TENANTS}/acme/stats", tenant="globex", status=404)
    await call(api, "GET", f"{TENANTS}/nobody/jobs", status=404)
    for query in ("state=bogus", "queue=reports..t.globex", "per_page=0", "sort=size"):
        error = await call(api, "GET", f"{TENANTS}/acme/jobs?{query}", status=400)
        assert error["error"]["code"] == "invalid_request", query


async def test_a_configured_tenant_without_jobs_lists_none(api: Any) -> None:
    await weigh(api, "acme", 2)
    listed = await call(api, "GET", f"{TENANTS}/acme/jobs")
    assert listed["items"] == [] and listed["pagination"]["total"] == 0


async def test_stats_show_throughput_and_fairness(
    api: Any, each_system: System, each_clock: MockClock
) -> None:
    await weigh(api, "acme", 3)
    await weigh(api, "globex", 1)
    for index in range(4):
        await enqueue(api, "acme", f"a{index}")
    for index in range(2):
        await enqueue(api, "globex", f"g{index}")
    taken = await shared_fetches(api, 4)
    assert Counter(taken) == {"acme": 3, "globex": 1}
    acme_jobs = (await call(api, "GET", f"{TENANTS}/acme/jobs?state=active"))["items"]
    for job in acme_jobs[:2]:
        await call(api, "POST", "/ojs/v1/workers/ack", {"job_id": job["id"], "result": {}})

    stats = await call(api, "GET", f"{TENANTS}/acme/stats")
    assert stats["throughput"] == {"processed_per_minute": 2, "enqueued_per_minute": 4}
    # both have waiting work: 3 / (3 + 1); 3 of this process's 4 claims were acme's
    assert stats["fairness"] == {"weight": 3, "effective_share": 0.75, "actual_share": 0.75}
    globex = await call(api, "GET", f"{TENANTS}/globex/stats")
    assert globex["fairness"] == {"weight": 1, "effective_share": 0.25, "actual_share": 0.25}
    assert globex["throughput"] == {"processed_per_minute": 0, "enqueued_per_minute": 2}

    await fetch(api, "globex")  # globex has nothing waiting now: acme would have it all
    assert (await call(api, "GET", f"{TENANTS}/acme/stats"))["fairness"]["effective_share"] == 1
    await trio.sleep(61)  # the counts are of the last minute
    later = await call(api, "GET", f"{TENANTS}/acme/stats")
    assert later["throughput"] == {"processed_per_minute": 0, "enqueued_per_minute": 0}
    assert later["fairness"]["actual_share"] == 0


async def test_listing_a_tenants_jobs_is_unsupported_without_a_job_listing(
    nats_options: dict[str, Any],
) -> None:
    async with open_system(create_backend("nats", **nats_options)) as system:
        client = create_app(system, HttpSettings()).test_client()
        await enqueue(client, "acme", "one")
        error = await call(client, "GET", f"{TENANTS}/acme/jobs", status=422)
    assert error["error"]["code"] == "unsupported" and "nats" in error["error"]["message"]


async def test_a_noisy_tenant_is_throttled_for_a_while(
    api: Any, each_system: System, each_clock: MockClock
) -> None:
    """A tenant with ten times the median backlog (and at least 100 waiting) gets a fifth
    of its weight in shared fetches for five minutes (§9.2), with its events."""
    noisy = [{"type": "report.generate", "args": [n], "options": {"queue": "reports"}}
             for n in range(150)]  # fmt: skip
    await call(api, "POST", "/ojs/v1/jobs/batch", {"jobs": noisy}, tenant="noisy", status=201)
    for tenant in ("calm", "quiet"):
        for index in range(10):
            await enqueue(api, tenant, f"{tenant}{index}")
    taken = await shared_fetches(api, 11)
    assert taken.count("noisy") == 1, taken  # weights 0.2, 1, 1 (and the empty _default's 1)
    [throttled] = await each_system.events(
        EventFilter(types=frozenset({"tenant.throttled"}), limit=10)
    )
    assert throttled["data"]["tenant_id"] == "noisy"
    assert throttled["data"]["reason"] == "queue_depth_ratio_exceeded"
    assert throttled["data"]["original_weight"] == 1
    assert throttled["data"]["effective_weight"] == 0.2
    stats = await call(api, "GET", f"{TENANTS}/noisy/stats")
    assert stats["fairness"]["throttled"] == {
        "reason": "queue_depth_ratio_exceeded",
        "effective_weight": 0.2,
        "until": throttled["data"]["until"],
    }
    assert "throttled" not in (await call(api, "GET", f"{TENANTS}/calm/stats"))["fairness"]

    await trio.sleep(301)  # the throttle is time-bounded
    await shared_fetches(api, 1)
    kinds = [
        event["type"]
        for event in await each_system.events(
            EventFilter(types=frozenset({"tenant.throttled", "tenant.throttle_released"}))
        )
    ]
    assert kinds[:2] == ["tenant.throttled", "tenant.throttle_released"]
    # still far over the others' backlog: throttled again at once
    assert kinds[2:] == ["tenant.throttled"]


def test_idle_queues_rest_between_tries() -> None:
    """Fifty tenants' queues, five with work: the weighted turns share the jobs evenly
    among the five, and an empty queue, found so, rests for its share of the turns
    instead of being tried on every fetch (about one empty claim per job, not 45)."""
    scheduler = FairScheduler(MemoryBackend(), lambda: 0, 1000)
    queues = [f"q{index}" for index in range(50)]
    weights = dict.fromkeys(queues, 1)
    busy = set(queues[::10])
    claimed: Counter[str] = Counter()
    claims = 0
    for _ in range(1000):  # single-job fetches, as WorkerSide._claim_by_weight makes them
        drained: set[str] = set()
        while not drained >= set(queues):
            turns, eligible = scheduler.weighted_turns(queues, weights, 1, drained)
            [(queue, _)] = turns
            claims += 1
            if queue in busy:
                claimed[queue] += 1
                scheduler.give_back(queues, weights, eligible, {}, 1)
                break
            scheduler.give_back(queues, weights, eligible, {queue: 1}, 0)
            drained.add(queue)
    assert set(claimed) == busy and max(claimed.values()) - min(claimed.values()) <= 10
    assert claims <= 2 * 1000
