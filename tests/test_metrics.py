"""Prometheus metrics (``GET /metrics``, :mod:`ojs_actors.system.metrics`): a real job
lifecycle on the memory and SQLite backends, scraped and parsed as Prometheus parses it;
actor restarts, backend errors, HTTP route templates, and metrics turned off."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import trio
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from ojs_actors.backends import MemoryBackend, SqliteBackend
from ojs_actors.backends.base import (
    EventSink,
    InsertAndClaim,
    OutboxBacklog,
    ReadyNotices,
    UpdateAndClaim,
)
from ojs_actors.cli import build_parser, serve_config
from ojs_actors.core import BackendUnavailable, Job, State
from ojs_actors.http import HttpSettings, create_app
from ojs_actors.system import Settings, System, open_system
from ojs_actors.system.metrics import job_flow
from ojs_actors.system.metrics.actors import actor_labels
from ojs_actors.system.metrics.backend_calls import BackendCalls, measured
from ojs_actors.system.metrics.instruments import Instruments
from ojs_actors.system.metrics.job_flow import OTHER_TYPE, JobFlow
from ojs_actors.system.worker_side import WorkerSide

DEADLINE = 10
Samples = Mapping[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, metric: str, /, **labels: str) -> float | None:
    return samples.get((metric, frozenset(labels.items())))


async def scrape(client: Any) -> Samples:
    with trio.fail_after(DEADLINE):
        response = await client.open("/metrics", method="GET")
        text = (await response.get_data()).decode()
    assert response.status_code == 200, text
    return parse(text)


async def post(client: Any, path: str, body: dict[str, Any]) -> dict[str, Any]:
    with trio.fail_after(DEADLINE):
        response = await client.post(path, json=body)
        reply: dict[str, Any] = await response.get_json()
    assert response.status_code < 300, reply
    return reply


def restarts(system: System, kind: str, name: str) -> float | None:
    samples = parse(generate_latest(system.metrics.registry).decode())
    return value(samples, "ojs_actor_restarts_total", kind=kind, name=name)


async def until(condition: Callable[[], bool]) -> None:
    with trio.fail_after(DEADLINE):
        while not condition():  # noqa: ASYNC110 (a condition, not an event to wait on)
            await trio.sleep(0.01)


@pytest.fixture(params=["memory", "sqlite"])
async def any_system(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[System]:
    backend = MemoryBackend() if request.param == "memory" else SqliteBackend(tmp_path / "ojs.db")
    async with open_system(backend) as system:
        yield system


async def test_a_job_lifecycle_shows_in_the_metrics(any_system: System) -> None:
    client = create_app(any_system).test_client()
    retry_later = {"max_attempts": 3, "initial_interval": "PT1H", "max_interval": "PT2H"}
    dead_letter = {"max_attempts": 1, "on_exhaustion": "dead_letter"}
    for kind, retry in (("ok", None), ("doomed", dead_letter), ("again", retry_later)):
        job = {"type": kind, "args": [], "queue": "mq", **({"retry": retry} if retry else {})}
        await post(client, "/ojs/v1/jobs", job)
    fetch = {"queues": ["mq"], "count": 3, "worker_id": "w1"}
    fetched = await post(client, "/ojs/v1/workers/fetch", fetch)
    by_type = {job["type"]: job["id"] for job in fetched["jobs"]}
    assert set(by_type) == {"ok", "doomed", "again"}
    await post(client, "/ojs/v1/workers/ack", {"job_id": by_type["ok"], "result": 1})
    failure = {"code": "handler_error", "message": "no"}
    for kind in ("doomed", "again"):
        await post(client, "/ojs/v1/workers/nack", {"job_id": by_type[kind], "error": failure})
    assert (await post(client, "/ojs/v1/workers/fetch", {"queues": ["none"]}))["jobs"] == []

    samples = await scrape(client)

    def job(metric: str, kind: str, **labels: str) -> float | None:
        return value(samples, metric, queue="mq", type=kind, **labels)

    for kind in ("ok", "doomed", "again"):
        assert job("ojs_job_enqueued_total", kind) == 1
        assert job("ojs_job_queue_time_seconds_count", kind) == 1
    assert job("ojs_job_completed_total", "ok") == 1
    assert job("ojs_job_failed_total", "doomed") == 1
    assert job("ojs_job_dead_lettered_total", "doomed") == 1
    assert job("ojs_job_retried_total", "again") == 1
    assert job("ojs_job_failed_total", "again") is None  # no series for what never happened
    assert job("ojs_job_duration_seconds_count", "ok", state="completed") == 1
    assert job("ojs_job_duration_seconds_count", "doomed", state="discarded") == 1
    assert job("ojs_job_duration_seconds_count", "again", state="retryable") == 1
    depth = {"completed": 1, "discarded": 1, "retryable": 1, "available": 0, "active": 0}
    for state, count in depth.items():
        assert value(samples, "ojs_queue_depth", queue="mq", state=state) == count, state
    assert value(samples, "ojs_workers_busy", queue="mq") == 0
    assert value(samples, "ojs_workers_active") == 1
    assert value(samples, "ojs_fetch_wait_seconds_count", result="jobs") == 1
    assert value(samples, "ojs_fetch_wait_seconds_count", result="empty") == 1
    for operation in ("insert_jobs", "claim", "update_jobs", "count_jobs"):
        calls = value(samples, "ojs_backend_call_duration_seconds_count", operation=operation)
        assert calls is not None and calls >= 1, operation
    assert value(samples, "ojs_backend_call_errors_total", operation="claim", error="other") == 0
    assert value(samples, "ojs_actors_running", kind="queue") == 2  # mq and none
    assert value(samples, "ojs_actor_mailbox_depth", kind="queue", name="mq") == 0
    assert value(samples, "ojs_actor_mailbox_depth", kind="scheduler", name="scheduler") == 0
    post_ok = {"method": "POST", "status": "200"}
    assert value(samples, "ojs_http_requests_total", route="/ojs/v1/jobs", method="POST",
                 status="201") == 3  # fmt: skip
    assert value(samples, "ojs_http_requests_total", route="/ojs/v1/workers/fetch", **post_ok) == 2
    assert value(samples, "ojs_http_requests_total", route="/ojs/v1/workers/ack", **post_ok) == 1
    assert value(samples, "ojs_http_requests_total", route="/ojs/v1/workers/nack", **post_ok) == 2
    assert value(samples, "ojs_http_request_duration_seconds_count", method="POST",
                 route="/ojs/v1/jobs") == 3  # fmt: skip
    labels = {label for _, pairs in samples for _, label in pairs}
    assert not labels & set(by_type.values())  # never a job id


@pytest.mark.parametrize("direct_routes", [True, False], ids=["direct", "quart"])
async def test_http_requests_are_labelled_by_route_template(
    system: System, direct_routes: bool
) -> None:
    client = create_app(system, HttpSettings(direct_routes=direct_routes)).test_client()
    job = (await post(client, "/ojs/v1/jobs", {"type": "t", "args": []}))["job"]
    with trio.fail_after(DEADLINE):
        for path in (f"/ojs/v1/jobs/{job['id']}", "/ojs/v1/jobs/missing", "/no/such/path"):
            await client.get(path)
        await client.put("/ojs/v1/jobs", json={})  # no such method there
        await client.open("/ojs/v1/health", method="BREW")
    samples = await scrape(client)

    def requests(method: str, route: str, status: str) -> float | None:
        return value(samples, "ojs_http_requests_total", method=method, route=route, status=status)

    assert requests("POST", "/ojs/v1/jobs", "201") == 1
    assert requests("GET", "/ojs/v1/jobs/<job_id>", "200") == 1
    assert requests("GET", "/ojs/v1/jobs/<job_id>", "404") == 1
    assert requests("GET", "other", "404") == 1
    assert requests("PUT", "other", "405") == 1
    assert requests("other", "other", "405") == 1
    routes = {dict(pairs).get("route") for name, pairs in samples if name.startswith("ojs_http")}
    assert job["id"] not in "".join(route or "" for route in routes)


async def test_the_refused_requests_are_counted_too(system: System) -> None:
    client = create_app(system, HttpSettings(api_keys=("k",))).test_client()
    with trio.fail_after(DEADLINE):
        await client.post("/ojs/v1/jobs", json={"type": "t", "args": []})
        response = await client.get("/metrics", headers={"Authorization": "Bearer k"})
        samples = parse((await response.get_data()).decode())
    labels = {"method": "POST", "route": "/ojs/v1/jobs", "status": "401"}
    assert value(samples, "ojs_http_requests_total", **labels) == 1


async def test_an_actor_restart_shows_in_the_restart_counter(system: System) -> None:
    await system.enqueue({"type": "t", "args": [], "queue": "restarting"})
    assert restarts(system, "queue", "restarting") is None
    system.queues.kill_child("queue:restarting")
    await until(lambda: restarts(system, "queue", "restarting") == 1)
    await system.enqueue({"type": "t", "args": [], "queue": "restarting"})  # it works again


async def test_a_restarted_supervisor_keeps_counting_its_children(system: System) -> None:
    killed = system.queues
    system.root.kill_child("queues")
    await until(lambda: system.queues is not killed and system.queues.started)
    await system.enqueue({"type": "t", "args": [], "queue": "q"})
    system.queues.kill_child("queue:q")
    await until(lambda: restarts(system, "queue", "q") == 1)
    assert restarts(system, "supervisor", "queues") == 1


def test_cancels_and_expiries_are_counted() -> None:
    flow = JobFlow(Instruments(registry := CollectorRegistry()))
    job = Job(id="j1", type="t", args=[], queue="q")

    def moved(before: State, state: State) -> tuple[State, Job]:
        return before, replace(job, state=state)

    flow.record(
        [
            moved(State.AVAILABLE, State.CANCELLED),
            moved(State.SCHEDULED, State.DISCARDED),
            moved(State.DISCARDED, State.AVAILABLE),  # a dead letter retry: not a failure
            moved(State.ACTIVE, State.ACTIVE),  # a lease extended: nothing
        ]
    )
    samples = parse(generate_latest(registry).decode())
    for metric in ("ojs_job_cancelled_total", "ojs_job_expired_total"):
        assert value(samples, metric, queue="q", type="t") == 1, metric
    for metric in ("ojs_job_failed_total", "ojs_job_retried_total"):
        assert value(samples, metric, queue="q", type="t") is None, metric


def test_job_types_past_the_bound_share_one_series(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(job_flow, "MAX_TYPES", 2)
    flow = JobFlow(Instruments(registry := CollectorRegistry()))
    flow.record([(None, Job(id=f"j{n}", type=kind, args=[])) for n, kind in enumerate("abcda")])
    samples = parse(generate_latest(registry).decode())
    enqueued = {
        dict(labels)["type"]: count
        for (name, labels), count in samples.items()
        if name == "ojs_job_enqueued_total"
    }
    assert enqueued == {"a": 2, "b": 1, OTHER_TYPE: 2}


def test_the_light_histogram_exposes_cumulative_buckets() -> None:
    instruments = Instruments(registry := CollectorRegistry())
    seconds = instruments.histogram("t_seconds", "Test.", ["op"], [0.01, 0.1, 1.0])
    for observed in (0.005, 0.01, 0.05, 5.0):
        seconds.child("x").observe(observed)
    samples = parse(generate_latest(registry).decode())
    buckets = {"0.01": 2, "0.1": 3, "1.0": 3, "+Inf": 4}
    for edge, count in buckets.items():
        assert value(samples, "t_seconds_bucket", op="x", le=edge) == count, edge
    assert value(samples, "t_seconds_count", op="x") == 4
    assert value(samples, "t_seconds_sum", op="x") == pytest.approx(5.065)


def test_actor_labels_are_bounded() -> None:
    assert actor_labels("queue:emails", False) == ("queue", "emails")
    assert actor_labels("cron:nightly", False) == ("cron", "nightly")
    assert actor_labels("workflow:wf_0192", False) == ("workflow", "*")
    assert actor_labels("scheduler", False) == ("scheduler", "scheduler")
    assert actor_labels("queues", True) == ("supervisor", "queues")


async def test_backend_errors_are_counted_and_leave_the_scrape_standing(
    system: System, monkeypatch: pytest.MonkeyPatch
) -> None:
    await system.enqueue({"type": "t", "args": [], "queue": "q"})

    async def away(queue: str) -> Any:
        raise BackendUnavailable("the store is away")

    monkeypatch.setattr(system.backend, "count_jobs", away)
    with pytest.raises(BackendUnavailable):
        await system.queue_stats("q")
    samples = parse((await system.metrics.exposition()).decode())  # its count_jobs fails too
    errors = {"operation": "count_jobs", "error": "unavailable"}
    assert value(samples, "ojs_backend_call_errors_total", **errors) == 2
    assert value(samples, "ojs_backend_call_duration_seconds_count", operation="count_jobs") == 2
    assert not any(name == "ojs_queue_depth" for name, _ in samples)  # left out, not wrong
    assert value(samples, "ojs_job_enqueued_total", queue="q", type="t") == 1


@pytest.mark.parametrize("make", [MemoryBackend, lambda: SqliteBackend(":memory:")])
def test_the_measured_backend_has_the_optional_parts_the_backend_has(make: Any) -> None:
    backend = make()
    view = measured(backend, BackendCalls(Instruments(CollectorRegistry())))
    for part in (EventSink, InsertAndClaim, UpdateAndClaim, OutboxBacklog, ReadyNotices):
        assert isinstance(view, part) == isinstance(backend, part), part
    assert view.name == backend.name
    assert view.capabilities == backend.capabilities


def test_a_sink_stays_a_sink_when_measured() -> None:
    class Sink(MemoryBackend):
        relay_name = "test-events"

        async def publish_events(self, events: Any) -> None:
            pass

    view = measured(Sink(), BackendCalls(Instruments(CollectorRegistry())))
    assert isinstance(view, EventSink)
    assert view.relay_name == "test-events"  # type: ignore[attr-defined]


async def test_with_metrics_off_nothing_is_recorded() -> None:
    async with open_system(settings=Settings(metrics=False)) as system:
        metrics = system.metrics
        assert metrics.jobs is None and metrics.http is None
        assert metrics.measure_backend(system.backend) is system.backend
        assert getattr(system.fetch, "__func__", None) is WorkerSide.fetch  # not wrapped
        assert system.root.on_restart is not None  # the workflows still hear of restarts
        system.root.on_restart("queue:default", False)  # and nothing counts it
        client = create_app(system).test_client()
        await post(client, "/ojs/v1/jobs", {"type": "t", "args": [], "queue": "off"})
        [job] = (await post(client, "/ojs/v1/workers/fetch", {"queues": ["off"]}))["jobs"]
        await post(client, "/ojs/v1/workers/ack", {"job_id": job["id"]})
        system.queues.kill_child("queue:off")
        assert generate_latest(metrics.registry) == b""  # no collector at all
        with trio.fail_after(DEADLINE):
            response = await client.get("/metrics")
            body = await response.get_json()
        assert response.status_code == 404
        assert body["error"]["code"] == "not_found"


def test_the_setting_comes_from_the_environment_and_the_flag(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def metrics_setting(*arguments: str) -> bool:
        return serve_config(build_parser().parse_args(["serve", *arguments])).system.metrics

    monkeypatch.delenv("OJS_METRICS_ENABLED", raising=False)
    assert metrics_setting() is True
    assert metrics_setting("--no-metrics") is False
    monkeypatch.setenv("OJS_METRICS_ENABLED", "false")
    assert metrics_setting() is False
    assert metrics_setting("--metrics") is True
