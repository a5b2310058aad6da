"""Per-tenant configuration and limits (ojs-multi-tenancy §8, §10.1, §11.1, §15): the real
app over a real System on the memory, SQLite and Redis backends. Limits are refused at
enqueue with 429 ``TENANT_LIMIT_EXCEEDED``; ``max_concurrency`` holds at claim, across
fetchers; a workflow keeps to one tenant; a client cannot name a tenant's own queue."""

from __future__ import annotations

import json as jsonlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio
from test_tenants import call, enqueue, fetch

from ojs_actors.backends import EventFilter, create_backend
from ojs_actors.cli import build_parser, serve_config
from ojs_actors.core import InvalidRequest, Job, State
from ojs_actors.core.errors import TenantLimitExceeded
from ojs_actors.http import HttpSettings, create_app
from ojs_actors.system import System, open_system
from ojs_actors.system.tenancy import acting_as, shard_of
from ojs_actors.system.tenant_config import load_static

TENANTS = "/ojs/v1/admin/tenants"


@pytest.fixture
def api(each_system: System) -> Any:
    return create_app(each_system, HttpSettings()).test_client()


async def configure(api: Any, tenant: str, limits: dict[str, Any], status: int = 201) -> Any:
    return await call(api, "PUT", f"{TENANTS}/{tenant}", {"limits": limits}, status=status)


async def events_of(system: System, kind: str) -> list[dict[str, Any]]:
    return await system.events(EventFilter(types=frozenset({kind}), limit=1000))


async def test_configure_update_and_deregister_a_tenant(api: Any, each_system: System) -> None:
    body = {
        "limits": {"max_concurrency": 20, "max_enqueue_rate": {"limit": 1000, "period": "PT1M"}},
        "fairness_weight": 10,
        "priority_boost": 0,
    }
    created = await call(api, "PUT", f"{TENANTS}/acme", body, status=201)
    assert created["tenant"]["limits"] == body["limits"]
    assert created["tenant"]["fairness_weight"] == 10
    await enqueue(api, "acme", "one")

    detail = await call(api, "GET", f"{TENANTS}/acme")
    assert detail["limits"] == {
        "max_concurrency": {"limit": 20, "current": 0},
        "max_enqueue_rate": {"limit": 1000, "period": "PT1M", "current": 1},
    }
    assert detail["fairness"] == {"weight": 10, "effective_share": 1.0, "actual_share": 0.0}
    assert detail["total_jobs"] == 1

    changed = await call(api, "PUT", f"{TENANTS}/acme/limits",
                         {"max_concurrency": 5, "max_queue_depth": 100, "reason": "incident"})  # fmt: skip
    assert changed["tenant"]["limits"]["max_concurrency"] == 5
    assert changed["tenant"]["limits"]["max_enqueue_rate"]["limit"] == 1000  # kept
    assert changed["tenant"]["last_change_reason"] == "incident"
    removed = await call(api, "PUT", f"{TENANTS}/acme/limits", {"max_enqueue_rate": None})
    assert set(removed["tenant"]["limits"]) == {"max_concurrency", "max_queue_depth"}
    stats = await call(api, "GET", f"{TENANTS}/acme/stats")
    assert stats["limits"]["max_queue_depth"] == {"limit": 100, "current": 1}

    await call(api, "PUT", f"{TENANTS}/acme", body, status=200)  # replaced, not created
    assert [e["subject"] for e in await events_of(each_system, "tenant.created")] == ["acme"]

    await call(api, "PUT", f"{TENANTS}/idle", {"limits": {}}, status=201)
    listed = await call(api, "GET", TENANTS)
    assert {t["tenant_id"]: t["configured"] for t in listed["tenants"]} == {
        "acme": True,
        "idle": True,
    }
    await call(api, "DELETE", f"{TENANTS}/idle")
    await call(api, "GET", f"{TENANTS}/idle", status=404)  # no config and no jobs
    await call(api, "DELETE", f"{TENANTS}/idle", status=404)


@pytest.mark.parametrize(
    "body",
    [
        {"limits": {"max_concurrency": -1}},
        {"limits": {"max_depth": 5}},
        {"limits": {"max_enqueue_rate": {"limit": 0, "period": "PT1M"}}},
        {"limits": {"max_enqueue_rate": {"limit": 5, "period": "soon"}}},
        {"limits": {"max_scheduled": "10"}},
        {"fairness_weight": 0},
        {"priority_boost": 1.5},
        {"tenant_id": "globex"},
    ],
)
async def test_bad_configuration_is_a_400(system: System, body: dict[str, Any]) -> None:
    api = create_app(system, HttpSettings()).test_client()
    error = await call(api, "PUT", f"{TENANTS}/acme", body, status=400)
    assert error["error"]["code"] == "invalid_request"
    await call(api, "GET", f"{TENANTS}/acme", status=404)  # nothing stored


async def test_queue_depth_limit_refuses_enqueues_with_429(api: Any, each_system: System) -> None:
    await configure(api, "acme", {"max_queue_depth": 2})
    await enqueue(api, "acme", "a")
    await enqueue(api, "acme", "b", queue="emails")  # counted over all the tenant's queues
    job = {"type": "report.generate", "args": ["c"], "options": {"queue": "reports"}}
    with trio.fail_after(10):
        response = await api.post("/ojs/v1/jobs", json=job, headers={"X-OJS-Tenant": "acme"})
        error = (await response.get_json())["error"]
    assert response.status_code == 429 and response.headers["Retry-After"] == "1"
    assert error["code"] == "TENANT_LIMIT_EXCEEDED"
    assert (error["tenant_id"], error["limit"], error["current"], error["maximum"]) == (
        "acme", "max_queue_depth", 2, 2,
    )  # fmt: skip
    await enqueue(api, "globex", "other")  # another tenant is not limited

    assert len(await fetch(api, "acme")) == 1  # an active job is not waiting
    batch = {"jobs": [job, job]}
    refused = await call(api, "POST", "/ojs/v1/jobs/batch", batch, tenant="acme", status=429)
    assert refused["error"]["code"] == "TENANT_LIMIT_EXCEEDED"
    stats = await call(api, "GET", f"{TENANTS}/acme/stats")
    assert stats["total_jobs"] == 2  # the batch was refused whole
    await call(api, "POST", "/ojs/v1/jobs/batch", {"jobs": [job]}, tenant="acme", status=201)

    [event] = await events_of(each_system, "tenant.limit_exceeded")  # one a second at most
    assert event["subject"] == "acme" and event["data"]["limit"] == "max_queue_depth"


async def test_scheduled_limit_counts_only_future_jobs(each_system: System) -> None:
    await each_system.tenant_configs.put("acme", {"limits": {"max_scheduled": 1}})
    later = {"type": "a.b", "args": [], "options": {"delay_until": "2099-01-01T00:00:00Z"}}
    with acting_as("acme"):
        await each_system.enqueue(later)
        with pytest.raises(TenantLimitExceeded) as refused:
            await each_system.enqueue(later)
        await each_system.enqueue({"type": "a.b", "args": []})  # available: not scheduled
    assert refused.value.details["limit"] == "max_scheduled"


@pytest.fixture(params=["memory", "sqlite", "redis"])
async def clocked(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[System, list[int]]]:
    """A system on each backend whose clock moves only when the test moves it."""
    if request.param == "redis":
        backend = create_backend("redis", url=request.getfixturevalue("redis_url"))
    else:
        backend = create_backend(request.param, **({"path": str(tmp_path / "ojs.db")}
                                                    if request.param == "sqlite" else {}))  # fmt: skip
    now = [1_800_000_000_000]
    async with open_system(backend, clock=lambda: now[0]) as system:
        yield system, now


async def test_enqueue_rate_is_a_sliding_window(clocked: tuple[System, list[int]]) -> None:
    system, now = clocked
    limits = {"max_enqueue_rate": {"limit": 2, "period": "PT1M"}}
    await system.tenant_configs.put("acme", {"limits": limits})
    job = {"type": "a.b", "args": []}
    with acting_as("acme"):
        await system.enqueue(job)
        now[0] += 30_000
        await system.enqueue(job)
        with pytest.raises(TenantLimitExceeded):
            await system.enqueue_batch([job])
        now[0] += 30_001  # the first enqueue left the window
        await system.enqueue(job)
        with pytest.raises(TenantLimitExceeded) as refused:
            await system.enqueue(job)
    assert refused.value.details == {
        "tenant_id": "acme", "limit": "max_enqueue_rate", "current": 2, "maximum": 2,
    }  # fmt: skip


async def test_concurrency_limit_holds_across_concurrent_fetchers(each_system: System) -> None:
    """Two fetchers at once, one acting for the tenant, one shared, over two of its
    queues: the tenant's active jobs never pass its limit; an ack frees a slot."""
    system = each_system
    await system.tenant_configs.put("acme", {"limits": {"max_concurrency": 2}})
    with acting_as("acme"):
        for index in range(6):
            await system.enqueue({"type": "a.b", "args": [index],
                                  "options": {"queue": "q1" if index % 2 else "q2"}})  # fmt: skip
    await system.enqueue({"type": "a.b", "args": ["shared"], "options": {"queue": "q1"}})
    claimed: list[Job] = []

    async def fetcher(tenant: str | None) -> None:
        with acting_as(tenant) if tenant else acting_as(None):
            for _ in range(5):
                claimed.extend(await system.fetch(["q1", "q2"], count=5))

    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(fetcher, "acme")
            nursery.start_soon(fetcher, None)
    mine = [job for job in claimed if job.meta.get("tenant_id") == "acme"]
    assert len(mine) == 2
    assert [job.args for job in claimed if "tenant_id" not in job.meta] == [["shared"]]
    stats = await system.all_queue_stats()
    tenants = [counts for record, counts in stats if record["name"] != "q1"]
    assert sum(counts.get(State.ACTIVE, 0) for counts in tenants) == 2

    with acting_as("acme"):
        assert await system.fetch(["q1", "q2"], count=5) == []  # at the limit: nothing
        await system.ack(mine[0].id, {"ok": True})
        [next_job] = await system.fetch(["q1", "q2"], count=5)  # one slot free: one job
    assert next_job.meta["tenant_id"] == "acme"


async def test_client_names_of_tenant_queues_are_refused(api: Any, each_system: System) -> None:
    """``<queue>..t.<tenant>`` is how a tenant's queue is stored; a client naming it would
    reach that tenant's jobs. It is a 400 at every entry point."""
    await enqueue(api, "globex", "secret")
    shard = shard_of("reports", "globex")
    job = {"type": "a.b", "args": [], "options": {"queue": shard}}
    error = await call(api, "POST", "/ojs/v1/jobs", job, tenant="acme", status=400)
    assert error["error"]["details"]["field"] == "options.queue"
    await call(api, "POST", "/ojs/v1/jobs", job, status=400)
    fetch_body = {"queues": [shard], "count": 5, "worker_id": "w"}
    await call(api, "POST", "/ojs/v1/workers/fetch", fetch_body, tenant="acme", status=400)
    await call(api, "GET", f"/ojs/v1/queues/{shard}", tenant="acme", status=400)
    with acting_as("acme"), pytest.raises(InvalidRequest):
        await each_system.fetch([shard])
    with pytest.raises(InvalidRequest):
        each_system.worker_group([shard], {"a.b": lambda job: None})
    assert [job["args"] for job in await fetch(api, "globex")] == [["secret"]]  # untouched


async def test_workflow_steps_inherit_the_workflow_tenant(each_system: System) -> None:
    plain = {"type": "w.step", "args": [], "options": {"queue": "wf"}}
    other = {**plain, "meta": {"tenant_id": "globex"}}
    with acting_as("acme"):
        with pytest.raises(InvalidRequest) as refused:
            await each_system.create_workflow(
                {"type": "chain", "name": "x", "steps": [plain, other]}
            )
        assert refused.value.details["field"] == "steps[1].meta.tenant_id"
        await each_system.create_workflow({"type": "chain", "name": "ok", "steps": [plain]})
    with acting_as("globex"):
        assert await each_system.fetch(["wf"]) == []
    with acting_as("acme"):
        [job] = await each_system.fetch(["wf"])
    assert job.meta["tenant_id"] == "acme"


async def test_worker_group_works_for_one_tenant(each_system: System) -> None:
    system = each_system
    for tenant in ("acme", "globex"):
        with acting_as(tenant):
            await system.enqueue({"type": "w.run", "args": [tenant], "options": {"queue": "q"}})
    ran: list[str] = []
    done = trio.Event()

    async def run(job: Job) -> None:
        ran.append(job.args[0])
        await system.enqueue({"type": "w.child", "args": [], "options": {"queue": "kids"}})
        done.set()

    with trio.fail_after(10):
        async with system.worker_group(["q"], {"w.run": run}, tenant="acme"):
            await done.wait()
            await trio.sleep(0.2)  # would take globex's job now, if it could
    assert ran == ["acme"]
    with acting_as("acme"):
        [child] = await system.fetch(["kids"])  # what its handler enqueued is the tenant's
    assert child.meta["tenant_id"] == "acme"
    with acting_as("globex"):
        assert len(await system.fetch(["q"])) == 1


async def test_priority_boost_raises_the_tenants_jobs(system: System) -> None:
    await system.tenant_configs.put("gold", {"priority_boost": 10})
    with acting_as("gold"):
        job = await system.enqueue({"type": "a.b", "args": [], "options": {"priority": 95}})
    assert job.priority == 100  # boosted, within the priority range


async def test_static_configuration_is_written_at_start(tmp_path: Path) -> None:
    config = {"acme": {"limits": {"max_queue_depth": 1}}, "globex": {"priority_boost": 2}}
    path = tmp_path / "tenants.json"
    path.write_text(jsonlib.dumps(config))
    args = build_parser().parse_args(["serve", "--tenants", str(path)])
    settings = serve_config(args).system
    assert settings.tenants == load_static(jsonlib.dumps(config))
    async with open_system(settings=settings) as system:
        stored = await system.tenant_configs.get("acme")
        assert stored is not None and stored["limits"] == {"max_queue_depth": 1}
        with acting_as("acme"):
            await system.enqueue({"type": "a.b", "args": []})
            with pytest.raises(TenantLimitExceeded):
                await system.enqueue({"type": "a.b", "args": []})
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--tenants", '{"acme": {"limits": {"nope": 1}}}'])


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
async def test_concurrency_limit_holds_across_replicas(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """Two processes' systems over one backend, fetching for the tenant at once: the
    slots are booked by compare-and-set, so together they never pass the limit."""
    options = (
        {"url": request.getfixturevalue("redis_url")}
        if kind == "redis"
        else {"path": str(tmp_path / "ojs.db")}
    )
    async with (
        open_system(create_backend(kind, **options)) as one,
        open_system(create_backend(kind, **options)) as two,
    ):
        await one.tenant_configs.put("acme", {"limits": {"max_concurrency": 3}})
        with acting_as("acme"):
            for index in range(8):
                await one.enqueue({"type": "a.b", "args": [index], "options": {"queue": "q"}})
        claimed: list[Job] = []

        async def fetcher(system: System) -> None:
            with acting_as("acme"):
                for _ in range(4):
                    claimed.extend(await system.fetch(["q"], count=2))

        with trio.fail_after(20):
            async with trio.open_nursery() as nursery:
                for system in (one, two, one, two):
                    nursery.start_soon(fetcher, system)
        assert len(claimed) == 3
        counts = await one.backend.count_jobs(shard_of("q", "acme"))
        assert counts.get(State.ACTIVE, 0) == 3 and counts.get(State.AVAILABLE, 0) == 5


async def test_the_429_is_alike_on_both_http_paths(system: System, client: Any) -> None:
    await system.tenant_configs.put("acme", {"limits": {"max_queue_depth": 0}})
    job = {"type": "a.b", "args": []}
    for path, body in (("/ojs/v1/jobs", job), ("/ojs/v1/jobs/batch", {"jobs": [job]})):
        with trio.fail_after(10):
            response = await client.post(path, json=body, headers={"X-OJS-Tenant": "acme"})
            error = (await response.get_json())["error"]
        assert response.status_code == 429 and response.headers["Retry-After"] == "1"
        assert error["code"] == "TENANT_LIMIT_EXCEEDED" and error["maximum"] == 0


async def test_metrics_carry_the_tenant(system: System) -> None:
    """ojs-multi-tenancy §11.2 (MT-006): counters and gauges labelled ``tenant_id``."""
    from prometheus_client.parser import text_string_to_metric_families

    api = create_app(system, HttpSettings()).test_client()
    for index in range(3):
        await enqueue(api, "acme", f"a{index}")
    await enqueue(api, None, "plain")
    [job] = await fetch(api, "acme", count=1)
    await call(api, "POST", "/ojs/v1/workers/ack", {"job_id": job["id"], "result": {}})
    await fetch(api, "acme", count=1)
    with trio.fail_after(10):
        text = (await (await api.get("/metrics")).get_data()).decode()
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    acme = (("queue", "reports"), ("tenant_id", "acme"))
    assert samples[("ojs_tenant_jobs_enqueued_total", acme)] == 3
    assert samples[("ojs_tenant_jobs_processed_total", acme)] == 1
    assert samples[("ojs_tenant_jobs_active", acme)] == 1
    assert samples[("ojs_tenant_queue_depth", acme)] == 1
    default = (("queue", "reports"), ("tenant_id", "_default"))
    assert samples[("ojs_tenant_queue_depth", default)] == 1
