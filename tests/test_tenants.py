"""Multi-tenancy (ojs-multi-tenancy) end to end: the real app over a real System on the
memory, SQLite and Redis backends. A tenant's jobs live in its own queues (namespace
isolation, §6.1), so what one tenant enqueues, another can neither fetch, see nor cancel,
and per-tenant statistics are the counts of those queues."""

from __future__ import annotations

import json as jsonlib
from typing import Any

import pytest
import trio

from ojs_actors.core import parse_queue_name
from ojs_actors.http import HttpSettings, create_app
from ojs_actors.system import System
from ojs_actors.system.tenancy import (
    DEFAULT_TENANT,
    acting_as,
    acting_tenant,
    shard_of,
    split_shard,
)

DEADLINE = 10  # seconds


@pytest.fixture
def api(each_system: System) -> Any:
    return create_app(each_system, HttpSettings()).test_client()


async def call(
    client: Any,
    method: str,
    path: str,
    json: Any = None,
    *,
    tenant: str | None = None,
    status: int = 200,
) -> dict[str, Any]:
    headers = {} if tenant is None else {"X-OJS-Tenant": tenant}
    with trio.fail_after(DEADLINE):
        response = await client.open(path, method=method, json=json, headers=headers)
        raw = await response.get_data()
    assert response.status_code == status, raw
    body: dict[str, Any] = jsonlib.loads(raw)
    return body


async def enqueue(api: Any, tenant: str | None, arg: str, queue: str = "reports") -> dict[str, Any]:
    job = {"type": "report.generate", "args": [arg], "options": {"queue": queue}}
    return (await call(api, "POST", "/ojs/v1/jobs", job, tenant=tenant, status=201))["job"]


async def fetch(api: Any, tenant: str | None, queue: str = "reports", count: int = 10) -> list[Any]:
    body = {"queues": [queue], "count": count, "worker_id": "w1"}
    jobs: list[Any] = (await call(api, "POST", "/ojs/v1/workers/fetch", body, tenant=tenant))[
        "jobs"
    ]
    return jobs


def test_shard_names_are_queue_names_and_split_back() -> None:
    for tenant in ("acme", "Acme_Corp", "org:team.7", "a-b", "X"):
        shard = shard_of("reports.daily", tenant)
        assert parse_queue_name(shard) == shard  # valid on every backend
        assert split_shard(shard) == ("reports.daily", tenant)
    assert shard_of("reports", None) == shard_of("reports", DEFAULT_TENANT) == "reports"
    assert split_shard("reports") == ("reports", DEFAULT_TENANT)
    assert shard_of("reports", "Acme") != shard_of("reports", "acme")


async def test_header_stamps_the_tenant_and_only_that_tenant_sees_the_job(api: Any) -> None:
    job = await enqueue(api, "acme", "q1")
    assert job["meta"]["tenant_id"] == "acme"
    assert job["queue"] == "reports"  # the queue asked for, not the tenant's own
    path = f"/ojs/v1/jobs/{job['id']}"
    assert (await call(api, "GET", path, tenant="acme"))["job"]["meta"]["tenant_id"] == "acme"
    await call(api, "GET", path, tenant="globex", status=404)
    assert (await call(api, "GET", path))["job"]["id"] == job["id"]  # the operator sees all


async def test_tenant_in_meta_without_header_is_the_same_tenant(api: Any) -> None:
    body = {"type": "report.generate", "args": [1], "meta": {"tenant_id": "acme"},
            "options": {"queue": "reports"}}  # fmt: skip
    await call(api, "POST", "/ojs/v1/jobs", body, status=201)
    assert [job["args"] for job in await fetch(api, "acme")] == [[1]]


async def test_fetch_returns_only_the_acting_tenants_jobs(api: Any) -> None:
    for index in range(3):
        await enqueue(api, "acme", f"acme-{index}")
        await enqueue(api, "globex", f"globex-{index}")
    await enqueue(api, None, "untagged")
    acme = await fetch(api, "acme")
    assert sorted(job["args"][0] for job in acme) == ["acme-0", "acme-1", "acme-2"]
    assert {job["meta"]["tenant_id"] for job in acme} == {"acme"}
    assert await fetch(api, "acme") == []
    assert [job["args"][0] for job in await fetch(api, "globex", count=1)] == ["globex-0"]
    # a shared worker (no header) takes from every tenant's queue and the untagged jobs
    shared = sorted(job["args"][0] for job in await fetch(api, None))
    assert shared == ["globex-1", "globex-2", "untagged"]


async def test_shared_workers_take_tenants_in_turn(api: Any) -> None:
    """A tenant with a backlog does not starve the others (ojs-fair-scheduling §9)."""
    for index in range(6):
        await enqueue(api, "big", f"big-{index}")
    await enqueue(api, "small", "small-0")
    await enqueue(api, "small", "small-1")
    taken = [(await fetch(api, None, count=1))[0]["meta"]["tenant_id"] for _ in range(4)]
    assert sorted(taken) == ["big", "big", "small", "small"]


async def test_conflicting_or_malformed_tenant_is_refused(api: Any) -> None:
    body = {"type": "report.generate", "args": [], "meta": {"tenant_id": "globex"}}
    error = await call(api, "POST", "/ojs/v1/jobs", body, tenant="acme", status=400)
    assert error["error"]["code"] == "invalid_request"
    await call(api, "POST", "/ojs/v1/jobs", {"type": "a.b", "args": []}, tenant="bad tenant!",
               status=400)  # fmt: skip
    bad_meta = {"type": "a.b", "args": [], "meta": {"tenant_id": 7}}
    await call(api, "POST", "/ojs/v1/jobs", bad_meta, status=400)


async def test_batch_jobs_all_belong_to_the_tenant(api: Any) -> None:
    jobs = [
        {"type": "report.generate", "args": [n], "options": {"queue": "reports"}} for n in range(3)
    ]
    reply = await call(api, "POST", "/ojs/v1/jobs/batch", {"jobs": jobs}, tenant="acme", status=201)
    assert [job["meta"]["tenant_id"] for job in reply["jobs"]] == ["acme"] * 3
    assert len(await fetch(api, "acme")) == 3


async def test_another_tenant_cannot_cancel(api: Any) -> None:
    job = await enqueue(api, "acme", "keep")
    path = f"/ojs/v1/jobs/{job['id']}"
    await call(api, "DELETE", path, tenant="globex", status=404)
    assert (await call(api, "GET", path, tenant="acme"))["job"]["state"] == "available"
    assert (await call(api, "DELETE", path, tenant="acme"))["job"]["state"] == "cancelled"


async def test_stats_per_tenant_and_per_tenant_queue(api: Any) -> None:
    for index in range(3):
        await enqueue(api, "acme", f"a{index}")
    await enqueue(api, "acme", "other", queue="emails")
    await enqueue(api, "globex", "g")
    await enqueue(api, None, "plain")
    await fetch(api, "acme", count=1)

    stats = await call(api, "GET", "/ojs/v1/admin/tenants/acme/stats")
    assert stats["tenant_id"] == "acme"
    assert stats["total_jobs"] == 4
    assert stats["jobs"]["available"] == 3 and stats["jobs"]["active"] == 1
    assert {q["name"]: q["total_jobs"] for q in stats["queues"]} == {"emails": 1, "reports": 3}

    listed = await call(api, "GET", "/ojs/v1/admin/tenants")
    totals = {tenant["tenant_id"]: tenant["total_jobs"] for tenant in listed["tenants"]}
    assert totals == {"_default": 1, "acme": 4, "globex": 1}
    await call(api, "GET", "/ojs/v1/admin/tenants/nobody/stats", status=404)

    queue = await call(api, "GET", "/ojs/v1/queues/reports", tenant="globex")
    assert queue["queue"]["name"] == "reports"
    assert queue["stats"]["available"] == 1
    listed_queues = await call(api, "GET", "/ojs/v1/queues", tenant="acme")
    assert [queue["name"] for queue in listed_queues["queues"]] == ["emails", "reports"]
    everyone = await call(api, "GET", "/ojs/v1/queues/reports/stats")
    assert everyone["stats"]["available"] == 1  # the untagged job: tenants' jobs are theirs


async def test_embedded_callers_act_for_a_tenant(each_system: System) -> None:
    with acting_as("acme"):
        job = await each_system.enqueue({"type": "a.b", "args": [], "options": {"queue": "q"}})
    assert job.meta["tenant_id"] == "acme" and job.to_wire()["queue"] == "q"
    with acting_as("globex"):
        assert await each_system.fetch(["q"]) == []  # another tenant's fetch
    with acting_as("acme"):
        [claimed] = await each_system.fetch(["q"])
    assert claimed.id == job.id


async def test_a_task_started_while_acting_does_not_act_after() -> None:
    """An actor first used by a tenant's request copies its context; it must not go on
    acting for the tenant (a cron entry firing later, say)."""
    seen: list[str | None] = []
    go = trio.Event()

    async def later(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        seen.append(acting_tenant())
        task_status.started()
        await go.wait()
        seen.append(acting_tenant())

    async with trio.open_nursery() as nursery:
        with acting_as("acme"):
            await nursery.start(later)
        go.set()
    assert seen == ["acme", None]


async def test_workflow_steps_naming_a_tenant_go_to_its_queues(each_system: System) -> None:
    step = {"type": "w.step", "args": [], "meta": {"tenant_id": "acme"}, "options": {"queue": "wf"}}
    await each_system.create_workflow({"type": "chain", "name": "t", "steps": [step]})
    with acting_as("globex"):
        assert await each_system.fetch(["wf"]) == []
    with acting_as("acme"):
        [job] = await each_system.fetch(["wf"])
    assert job.type == "w.step" and job.to_wire()["queue"] == "wf"
