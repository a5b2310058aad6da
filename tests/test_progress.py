"""Job progress (ojs-progress): reports through the HTTP API and from handlers in a worker
group, read back from the progress endpoint, the job and the event log, on real backends
(memory, SQLite in a temporary file, a real Redis). Time runs on trio's autojump clock
where it matters (retry delays, the event interval)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import trio

from ojs_actors import Job, State, open_system
from ojs_actors.backends import EventFilter, SqliteBackend
from ojs_actors.backends.redis import RedisBackend
from ojs_actors.core import InvalidRequest, NotFound
from ojs_actors.core.progress import ProgressUpdate
from ojs_actors.http import HttpSettings, create_app
from ojs_actors.library import current_job, report_progress
from ojs_actors.system import System

WAIT_LIMIT_S = 30.0


class Stored:
    """An ``on_settled`` hook: wakes :meth:`until` when a job is stored in a given state."""

    def __init__(self) -> None:
        self.states: dict[str, State] = {}
        self._changed = trio.Event()

    def __call__(self, jobs: Sequence[Job]) -> None:
        for job in jobs:
            self.states[job.id] = job.state
        self._changed.set()
        self._changed = trio.Event()

    async def until(self, job_id: str, state: State) -> None:
        with trio.fail_after(WAIT_LIMIT_S):
            while self.states.get(job_id) is not state:
                await self._changed.wait()


async def send(client: Any, method: str, path: str, body: Any = None) -> tuple[int, Any, Any]:
    with trio.fail_after(WAIT_LIMIT_S):
        response = await client.open(path, method=method, json=body)
        return response.status_code, await response.get_json(), response.headers


async def active_job(client: Any, queue: str = "progress", **options: Any) -> dict[str, Any]:
    status, body, _ = await send(
        client,
        "POST",
        "/ojs/v1/jobs",
        {"type": "report.build", "args": [], "options": {"queue": queue, **options}},
    )
    assert status == 201
    status, body, _ = await send(
        client, "POST", "/ojs/v1/workers/fetch", {"queues": [queue], "worker_id": "w1"}
    )
    assert status == 200 and body["jobs"][0]["state"] == "active"
    job: dict[str, Any] = body["jobs"][0]
    return job


async def test_a_report_is_stored_returned_and_read_back(client: Any) -> None:
    job = await active_job(client)
    path = f"/ojs/v1/jobs/{job['id']}/progress"
    report = {"progress": 0.5, "message": "halfway", "data": {"rows": 500, "total": 1000}}
    status, body, headers = await send(client, "PUT", path, report)
    assert status == 200
    assert body["progress"] == 0.5 and body["message"] == "halfway"
    assert body["data"] == {"rows": 500, "total": 1000}
    assert body["recorded"] is True and body["state"] == "active"
    assert headers["X-OJS-Progress"] == "0.5"
    assert headers["Cache-Control"] == "no-cache"

    status, body, headers = await send(client, "GET", path)
    assert status == 200
    assert (body["job_id"], body["progress"], body["message"]) == (job["id"], 0.5, "halfway")
    assert body["updated_at"].endswith("Z") and headers["Last-Modified"].endswith("GMT")
    status, detail, _ = await send(client, "GET", f"/ojs/v1/jobs/{job['id']}")
    assert detail["job"]["progress"]["progress"] == 0.5
    assert detail["job"]["progress"]["data"] == {"rows": 500, "total": 1000}


async def test_values_are_clamped_and_never_go_back(client: Any) -> None:
    job = await active_job(client)
    path = f"/ojs/v1/jobs/{job['id']}/progress"
    status, body, _ = await send(client, "PUT", path, {"progress": -3})
    assert (status, body["progress"]) == (200, 0.0)
    await send(client, "PUT", path, {"progress": 0.6})
    status, body, _ = await send(client, "PUT", path, {"progress": 0.2, "message": "re-reading"})
    assert (body["progress"], body["message"]) == (0.6, "re-reading")  # §5.1: keeps the higher
    status, body, _ = await send(client, "POST", path, {"progress": 7})
    assert body["progress"] == 1.0


async def test_no_progress_yet_reads_as_nulls_and_unknown_jobs_as_404(client: Any) -> None:
    status, created, _ = await send(
        client, "POST", "/ojs/v1/jobs", {"type": "report.build", "args": []}
    )
    path = f"/ojs/v1/jobs/{created['job']['id']}/progress"
    status, body, _ = await send(client, "GET", path)
    assert status == 200
    assert (body["progress"], body["data"], body["message"]) == (None, None, None)
    assert body["state"] == "available"
    assert "progress" not in created["job"]
    missing = "/ojs/v1/jobs/01965000-0000-7000-8000-000000000000/progress"
    for method, report in (("GET", None), ("PUT", {"progress": 0.1})):
        status, body, _ = await send(client, method, missing, report)
        assert status == 404 and body["error"]["code"] == "not_found"


async def test_reports_for_jobs_that_are_not_active_are_ignored_not_refused(client: Any) -> None:
    status, created, _ = await send(
        client, "POST", "/ojs/v1/jobs", {"type": "report.build", "args": []}
    )
    path = f"/ojs/v1/jobs/{created['job']['id']}/progress"
    status, body, _ = await send(client, "PUT", path, {"progress": 0.4})
    assert status == 200 and body["recorded"] is False and body["progress"] is None


@pytest.mark.parametrize(
    "report",
    [{}, {"progress": "half"}, {"progress": True}, {"data": [1, 2]}, {"message": 5}],
    ids=["empty", "string", "bool", "data-list", "message-number"],
)
async def test_bad_reports_are_400(client: Any, report: dict[str, Any]) -> None:
    job = await active_job(client)
    status, body, _ = await send(client, "PUT", f"/ojs/v1/jobs/{job['id']}/progress", report)
    assert status == 400 and body["error"]["code"] == "invalid_request"


async def test_oversized_data_is_413(client: Any) -> None:
    job = await active_job(client)
    report = {"data": {"blob": "x" * 20_000}}
    status, body, _ = await send(client, "PUT", f"/ojs/v1/jobs/{job['id']}/progress", report)
    assert status == 413 and body["error"]["details"]["max_bytes"] == 16 * 1024


async def test_a_report_is_a_heartbeat(each_system: System) -> None:
    system = each_system
    await system.enqueue({"type": "t", "args": [], "options": {"queue": "beat"}})
    [claimed] = await system.fetch(["beat"], visibility_timeout_ms=5000)
    assert claimed.lease_expires_at is not None
    await trio.sleep(0.05)
    job, recorded = await system.report_progress(claimed.id, ProgressUpdate(0.3))
    assert recorded
    assert job.lease_expires_at is not None
    # extended as a BEAT would (by the job's own visibility timeout, from now)
    assert job.lease_expires_at >= job.changed_at + job.visibility_timeout_ms
    stored = await system.info(claimed.id)
    assert stored.progress is not None and stored.lease_expires_at == job.lease_expires_at


@pytest.fixture(params=["sqlite", "redis"])
async def io_system(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[System]:
    """A system whose backend waits on threads or sockets, so on real time: trio's
    autojump clock would jump over those waits (the memory backend runs on it)."""
    if request.param == "sqlite":
        backend: Any = SqliteBackend(tmp_path / "ojs.db")
    else:
        backend = RedisBackend(request.getfixturevalue("redis_url"))
    async with open_system(backend) as system:
        yield system


async def test_progress_follows_the_attempt(system: System, autojump_clock: Any) -> None:
    await progress_follows_the_attempt(system)


async def test_progress_follows_the_attempt_on_io_backends(io_system: System) -> None:
    await progress_follows_the_attempt(io_system)


async def test_progress_events_are_throttled(system: System, autojump_clock: Any) -> None:
    await reports_emit_job_progress_events_at_most_once_a_second(system)


async def test_progress_events_are_throttled_on_io_backends(io_system: System) -> None:
    await reports_emit_job_progress_events_at_most_once_a_second(io_system)


async def progress_follows_the_attempt(system: System) -> None:
    """§8.2 a failed attempt keeps its progress, §5.3 the next one starts without,
    §8.1 a completed one reads 1.0."""
    retry = {"max_attempts": 3, "initial_interval": "PT1S", "jitter": False}
    await system.enqueue({"type": "t", "args": [], "options": {"queue": "att", "retry": retry}})
    [first] = await system.fetch(["att"])
    await system.report_progress(first.id, ProgressUpdate(0.7, "at 70%"))
    failed = await system.nack(first.id, {"message": "boom"})
    assert failed.state is State.RETRYABLE
    assert (await system.job_progress(first.id))["progress"] == 0.7
    await trio.sleep(2)
    [second] = await system.fetch(["att"], wait=5)
    assert second.attempt == 2
    assert (await system.job_progress(first.id))["progress"] is None
    await system.report_progress(first.id, ProgressUpdate(0.25))
    assert (await system.job_progress(first.id))["progress"] == 0.25
    done = await system.ack(first.id)
    read = await system.job_progress(done.id)
    assert read["state"] == "completed" and read["progress"] == 1.0


async def reports_emit_job_progress_events_at_most_once_a_second(system: System) -> None:
    await system.enqueue({"type": "t", "args": [], "options": {"queue": "ev"}})
    [job] = await system.fetch(["ev"], worker_id="w-ev")
    await system.report_progress(job.id, ProgressUpdate(0.1, "one"))
    await system.report_progress(job.id, ProgressUpdate(0.2, "two"))  # within the second
    await trio.sleep(1.5)
    await system.report_progress(job.id, ProgressUpdate(0.3, None, {"step": 3}))
    await system.heartbeat("w-ev", [job.id])  # a plain heartbeat: no event
    events = await system.events(EventFilter(types=frozenset({"job.progress"})))
    assert [event["data"]["progress_percent"] for event in events] == [10.0, 30.0]
    first, last = events
    assert first["subject"] == job.id and first["data"]["progress_message"] == "one"
    assert first["data"]["worker_id"] == "w-ev" and first["data"]["attempt"] == 1
    assert last["data"]["data"] == {"step": 3}
    # every report was stored, throttled or not
    assert (await system.job_progress(job.id))["progress"] == 0.3


async def test_handlers_report_progress_from_a_worker_group(autojump_clock: Any) -> None:
    seen: list[dict[str, Any]] = []

    async with open_system() as system:

        async def build(job: Job) -> str:
            assert current_job().job.id == job.id
            for step in range(1, 5):
                assert await report_progress(step / 4, message=f"step {step}", data={"step": step})
                seen.append(await system.job_progress(job.id))
            return "built"

        created = await system.enqueue({"type": "report.build", "args": []})
        stored = Stored()
        async with system.worker_group(["default"], {"report.build": build}, on_settled=stored):
            await stored.until(created.id, State.COMPLETED)
        assert [entry["progress"] for entry in seen] == [0.25, 0.5, 0.75, 1.0]
        assert seen[1]["message"] == "step 2" and seen[1]["data"] == {"step": 2}
        assert (await system.job_progress(created.id))["progress"] == 1.0


async def test_report_progress_outside_a_handler_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="worker group"):
        await report_progress(0.5)


async def test_a_handler_report_for_a_finished_job_is_not_an_exception(
    autojump_clock: Any,
) -> None:
    """Fire and forget: the job was cancelled under the handler; its report says False."""
    outcome: list[bool] = []
    async with open_system() as system:
        started, cancelled, reported = trio.Event(), trio.Event(), trio.Event()

        async def slow(job: Job) -> None:
            started.set()
            await cancelled.wait()
            outcome.append(await report_progress(0.9))
            reported.set()

        created = await system.enqueue({"type": "slow", "args": []})
        async with system.worker_group(["default"], {"slow": slow}):
            with trio.fail_after(WAIT_LIMIT_S):
                await started.wait()
                await system.cancel(created.id)
                cancelled.set()
                await reported.wait()
        assert outcome == [False]


async def test_a_handler_report_without_content_is_refused(autojump_clock: Any) -> None:
    errors: list[Exception] = []
    async with open_system() as system:

        async def empty(job: Job) -> None:
            try:
                await report_progress()
            except InvalidRequest as error:
                errors.append(error)

        created = await system.enqueue({"type": "empty", "args": []})
        stored = Stored()
        async with system.worker_group(["default"], {"empty": empty}, on_settled=stored):
            await stored.until(created.id, State.COMPLETED)
    assert len(errors) == 1


async def test_progress_of_an_unknown_job_is_not_found(system: System) -> None:
    with pytest.raises(NotFound):
        await system.report_progress("01965000-0000-7000-8000-000000000000", ProgressUpdate(0.1))


def sse_events(text: str) -> list[tuple[str, dict[str, Any]]]:
    events = []
    for frame in text.split("\n\n"):
        lines = dict(line.split(": ", 1) for line in frame.splitlines() if ": " in line)
        if "event" in lines:
            events.append((lines["event"], json.loads(lines["data"])))
    return events


async def test_the_progress_stream_follows_the_job_until_it_ends(
    client: Any, autojump_clock: Any
) -> None:
    job = await active_job(client)
    path = f"/ojs/v1/jobs/{job['id']}/progress"
    await send(client, "PUT", path, {"progress": 0.3})
    streamed: list[tuple[int, str, str]] = []

    async def watch() -> None:
        response = await client.get(f"{path}/stream", headers={"Accept": "text/event-stream"})
        body = (await response.get_data()).decode()
        streamed.append((response.status_code, response.headers["Content-Type"], body))

    with trio.fail_after(WAIT_LIMIT_S):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch)
            await trio.sleep(1.5)
            await send(client, "PUT", path, {"progress": 0.6, "message": "more"})
            await trio.sleep(1.5)
            await send(client, "POST", "/ojs/v1/workers/ack", {"job_id": job["id"]})
    [(status, content_type, body)] = streamed
    assert status == 200 and content_type.startswith("text/event-stream")
    events = sse_events(body)
    assert [kind for kind, _ in events] == ["progress", "progress", "completed"]
    assert [data["progress"] for _, data in events] == [0.3, 0.6, 1.0]
    assert events[1][1]["message"] == "more" and events[2][1]["state"] == "completed"


async def test_the_progress_stream_of_a_finished_job_ends_at_once(client: Any) -> None:
    status, created, _ = await send(
        client, "POST", "/ojs/v1/jobs", {"type": "report.build", "args": []}
    )
    await send(client, "DELETE", f"/ojs/v1/jobs/{created['job']['id']}")
    stream = f"/ojs/v1/jobs/{created['job']['id']}/progress/stream"
    with trio.fail_after(WAIT_LIMIT_S):
        response = await client.get(stream, headers={"Accept": "text/event-stream"})
        events = sse_events((await response.get_data()).decode())
    assert events == [("cancelled", events[0][1])] and events[0][1]["progress"] is None
    status, body, _ = await send(client, "GET", stream)
    assert status == 406
    missing = "/ojs/v1/jobs/01965000-0000-7000-8000-000000000000/progress/stream"
    response = await client.get(missing, headers={"Accept": "text/event-stream"})
    assert response.status_code == 404


# -- workflow aggregate progress (§9) ---------------------------------------------------------


def wf_step(job_type: str) -> dict[str, Any]:
    return {"type": job_type, "args": [], "options": {"queue": "wf-progress"}}


async def fetch_one(client: Any) -> dict[str, Any]:
    """The next job of the workflows' queue, once the workflow has released it."""
    with trio.fail_after(WAIT_LIMIT_S):
        while True:
            body = {"queues": ["wf-progress"], "worker_id": "w1"}
            status, fetched, _ = await send(client, "POST", "/ojs/v1/workers/fetch", body)
            assert status == 200
            if fetched["jobs"]:
                job: dict[str, Any] = fetched["jobs"][0]
                return job
            await trio.sleep(0.05)


async def workflow_progress(client: Any, workflow: dict[str, Any]) -> dict[str, Any]:
    status, body, _ = await send(client, "GET", f"/ojs/v1/workflows/{workflow['id']}/progress")
    assert status == 200
    return dict(body)


async def start_workflow(client: Any, definition: dict[str, Any]) -> dict[str, Any]:
    status, body, _ = await send(client, "POST", "/ojs/v1/workflows", definition)
    assert status == 201
    return dict(body["workflow"])


async def test_a_chains_progress_is_its_done_steps_and_the_current_ones_part(
    each_system: System,
) -> None:
    client = create_app(each_system, HttpSettings()).test_client()
    steps = [wf_step("data.extract"), wf_step("data.transform"), wf_step("data.load")]
    workflow = await start_workflow(client, {"type": "chain", "name": "etl", "steps": steps})
    body = await workflow_progress(client, workflow)
    assert (body["workflow_id"], body["type"], body["progress"]) == (workflow["id"], "chain", 0)
    assert [s["progress"] for s in body["steps"]] == [None, None, None]
    first = await fetch_one(client)
    await send(client, "PUT", f"/ojs/v1/jobs/{first['id']}/progress", {"progress": 0.5})
    assert (await workflow_progress(client, workflow))["progress"] == round(0.5 / 3, 4)
    await send(client, "POST", "/ojs/v1/workers/ack", {"job_id": first["id"]})
    second = await fetch_one(client)
    report = {"progress": 0.73, "data": {"records_transformed": 21900}}
    await send(client, "PUT", f"/ojs/v1/jobs/{second['id']}/progress", report)
    body = await workflow_progress(client, workflow)
    assert body["progress"] == round(1.73 / 3, 4)  # §9.1: (1 + 0.73) / 3
    done, current, waiting = body["steps"]
    assert (done["job_id"], done["type"], done["state"]) == (
        first["id"],
        "data.extract",
        "completed",
    )
    assert done["progress"] == 1.0
    assert (current["job_id"], current["state"], current["progress"]) == (
        second["id"],
        "active",
        0.73,
    )
    assert current["data"] == {"records_transformed": 21900}
    assert (waiting["type"], waiting["state"], waiting["progress"]) == (
        "data.load",
        "waiting",
        None,
    )
    assert waiting["job_id"] is None


async def test_group_and_batch_aggregates(each_system: System) -> None:
    """A group averages its jobs' progress; a batch counts its completed jobs (§9.1)."""
    client = create_app(each_system, HttpSettings()).test_client()
    group = await start_workflow(
        client, {"type": "group", "name": "g", "jobs": [wf_step("g.a"), wf_step("g.b")]}
    )
    job = await fetch_one(client)
    await send(client, "PUT", f"/ojs/v1/jobs/{job['id']}/progress", {"progress": 0.4})
    body = await workflow_progress(client, group)
    assert (body["type"], body["progress"]) == ("group", 0.2)
    assert sorted(s["progress"] or 0 for s in body["steps"]) == [0, 0.4]
    for member in (job, await fetch_one(client)):
        await send(client, "POST", "/ojs/v1/workers/ack", {"job_id": member["id"]})
    assert (await workflow_progress(client, group))["progress"] == 1.0

    callback = {"type": "b.done", "args": [], "options": {"queue": "wf-callbacks"}}
    jobs = [wf_step("b.a"), wf_step("b.b")]
    definition = {
        "type": "batch",
        "name": "b",
        "jobs": jobs,
        "callbacks": {"on_complete": callback},
    }
    batch = await start_workflow(client, definition)
    done, running = await fetch_one(client), await fetch_one(client)
    await send(client, "POST", "/ojs/v1/workers/ack", {"job_id": done["id"]})
    await send(client, "PUT", f"/ojs/v1/jobs/{running['id']}/progress", {"progress": 0.9})
    body = await workflow_progress(client, batch)
    assert (body["type"], body["progress"]) == ("batch", 0.5)  # completed / total
    by_job = {s["job_id"]: s["progress"] for s in body["steps"]}
    assert by_job == {done["id"]: 1.0, running["id"]: 0.9}


async def test_workflow_progress_is_the_tenants_and_unknown_ones_are_404(
    each_system: System,
) -> None:
    client = create_app(each_system, HttpSettings()).test_client()
    created = await client.post(
        "/ojs/v1/workflows",
        json={"type": "chain", "name": "t", "steps": [wf_step("t.a")]},
        headers={"X-OJS-Tenant": "acme"},
    )
    path = f"/ojs/v1/workflows/{(await created.get_json())['workflow']['id']}/progress"
    assert (await client.get(path, headers={"X-OJS-Tenant": "acme"})).status_code == 200
    assert (await client.get(path)).status_code == 200  # an operator sees every tenant's
    other = await client.get(path, headers={"X-OJS-Tenant": "globex"})
    assert other.status_code == 404
    assert (await other.get_json())["error"]["code"] == "not_found"
    missing = await client.get("/ojs/v1/workflows/wf_01965000-0000-7000-8000-000000000000/progress")
    assert missing.status_code == 404
