"""Version routing (ojs-job-versioning §8, VER-003..VER-006): workers declare the versions
they handle (heartbeat, beat, or the fetch itself; an embedded worker group from its job
definitions), and a fetch never hands a worker a versioned job outside its declaration:
the job is claimed and handed straight back (the keyed rate limits' admission step), so
it stays ``available`` with its attempt unspent for a compatible worker. Over the app and
the embedded System, on the memory, SQLite and Redis backends."""

from __future__ import annotations

from typing import Any

import pytest
import trio
from app_client import request

from ojs_actors.backends.base import EventFilter
from ojs_actors.core import InvalidRequest, Job
from ojs_actors.core.version_routes import parse_handlers, parse_version_range
from ojs_actors.http import HttpSettings, create_app
from ojs_actors.library import JobRegistry
from ojs_actors.system import Settings, System, open_system

OLD = [{"type": "invoice.generate", "versions": ">=1.0 <3.0"}]
NEW = [{"type": "invoice.generate", "versions": ">=3.0"}]


def invoice(version: str | None = None, queue: str = "ver") -> dict[str, Any]:
    body: dict[str, Any] = {"type": "invoice.generate", "args": [], "options": {"queue": queue}}
    if version is not None:
        body["version"] = version
    return body


async def enqueue(client: Any, body: dict[str, Any]) -> str:
    status, _, reply = await request(client, "POST", "/ojs/v1/jobs", body)
    assert status == 201, reply
    job_id: str = reply["job"]["id"]
    return job_id


async def fetch(client: Any, worker_id: str, **extra: Any) -> list[dict[str, Any]]:
    body = {"queues": ["ver"], "count": 10, "worker_id": worker_id, **extra}
    status, _, reply = await request(client, "POST", "/ojs/v1/workers/fetch", body)
    assert status == 200, reply
    jobs: list[dict[str, Any]] = reply["jobs"]
    return jobs


async def job_of(client: Any, job_id: str) -> dict[str, Any]:
    _, _, reply = await request(client, "GET", f"/ojs/v1/jobs/{job_id}")
    job: dict[str, Any] = reply["job"]
    return job


def app(system: System) -> Any:
    return create_app(system, HttpSettings()).test_client()


# -- ranges (pure) ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "inside", "outside"),
    [
        ("*", ["1.0", "9.9", 3], []),
        ("2.0", ["2.0", "2", "2.0.0", 2], ["2.1", "1.0", "3.0"]),
        (">=1.0 <3.0", ["1.0", "2.9", "2.99.1"], ["0.9", "3.0", "3.0.1"]),
        (">=2.0", ["2.0", "10.0"], ["1.9"]),
        (">1 <=2.5", ["1.1", "2.5"], ["1.0", "2.6"]),
    ],
)
def test_a_range_includes_its_versions_and_every_unversioned_job(
    text: str, inside: list[Any], outside: list[Any]
) -> None:
    declared = parse_version_range(text)
    assert declared.includes(None)  # VER-006: unversioned jobs go to any worker
    assert all(declared.includes(version) for version in inside)
    assert not any(declared.includes(version) for version in outside)


@pytest.mark.parametrize("bad", ["", "  ", "~1.0", ">=x", ">= 1.0", "1.0 || 2.0", "v2", 2, None])
def test_a_malformed_range_is_a_400_naming_the_field(bad: Any) -> None:
    with pytest.raises(InvalidRequest) as raised:
        parse_version_range(bad, "handlers[0].versions")
    assert raised.value.details["field"] == "handlers[0].versions"


@pytest.mark.parametrize(
    ("handlers", "field"),
    [
        ({"type": "a.b"}, "handlers"),
        (["a.b"], "handlers[0]"),
        ([{"versions": "*"}], "handlers[0].type"),
        ([{"type": "a.b@2.0", "versions": "*"}], "handlers[0].type"),
        ([{"type": "a.b", "versions": ">=1"}, {"type": "c.d", "versions": "1.x"}], "handlers[1].versions"),
    ],
)  # fmt: skip
def test_a_malformed_declaration_names_the_item_at_fault(handlers: Any, field: str) -> None:
    with pytest.raises(InvalidRequest) as raised:
        parse_handlers(handlers)
    assert raised.value.details["field"] == field


def test_undeclared_types_and_star_declarations_route_as_any() -> None:
    assert parse_handlers([{"type": "a.b"}, {"type": "c.d", "versions": "*"}]) is None
    routes = parse_handlers(
        [{"type": "a.b", "versions": "1.0"}, {"type": "a.b", "versions": "3.0"}]
    )
    assert routes is not None
    job = Job(id="j", type="a.b", queue="q", args=[], extra={"version": "3.0"})
    assert routes.accepts(job)  # a type declared twice takes either range
    job.extra["version"] = "2.0"
    assert not routes.accepts(job)
    job.type = "c.d"
    assert routes.accepts(job)


# -- over HTTP, on each backend ----------------------------------------------------------


async def test_versioned_jobs_go_only_to_compatible_workers(each_system: System) -> None:
    """VER-003 (heartbeat declaration), VER-004, VER-005, VER-006; then the held job
    completes through a worker that declared its range in the fetch itself."""
    client = app(each_system)
    beat = {"worker_id": "w-old", "handlers": OLD}
    status, _, reply = await request(client, "POST", "/ojs/v1/workers/heartbeat", beat)
    assert status == 200, reply
    v3 = await enqueue(client, invoice("3.0"))
    v2 = await enqueue(client, invoice("2.0"))
    plain = await enqueue(client, invoice())

    got = await fetch(client, "w-old")
    assert sorted(job["id"] for job in got) == sorted([v2, plain])  # VER-004, VER-006
    held = await job_of(client, v3)
    assert (held["state"], held["attempt"]) == ("available", 0)  # VER-005, attempt unspent
    assert await fetch(client, "w-old") == []  # still not: nor on its next fetch

    [taken] = await fetch(client, "w-new", handlers=NEW)  # declared in the fetch alone
    assert (taken["id"], taken["attempt"]) == (v3, 1)
    status, _, acked = await request(client, "POST", "/ojs/v1/workers/ack", {"job_id": v3})
    assert status == 200, acked
    done = await job_of(client, v3)
    assert (done["state"], done["attempt"]) == ("completed", 1)


async def test_the_type_at_version_form_and_the_beat_declaration_route_too(
    each_system: System,
) -> None:
    client = app(each_system)
    beat = {"worker_id": "w-exact", "handlers": [{"type": "invoice.generate", "versions": "2.0"}]}
    status, _, reply = await request(client, "POST", "/ojs/v1/workers/beat", beat)
    assert status == 200, reply
    two = await enqueue(client, {**invoice(), "type": "invoice.generate@2"})
    four = await enqueue(client, {**invoice(), "type": "invoice.generate@4.0"})
    assert [job["id"] for job in await fetch(client, "w-exact")] == [two]
    assert (await job_of(client, four))["state"] == "available"
    # A worker that declares nothing takes any version; a later declaration replaces one.
    await request(client, "POST", "/ojs/v1/workers/heartbeat", {**beat, "handlers": [{"type": "invoice.generate"}]})  # fmt: skip
    assert [job["id"] for job in await fetch(client, "w-exact")] == [four]


async def test_a_handed_back_job_goes_behind_the_others(each_system: System) -> None:
    """The ordering cost of the hand-back (README): the refused job is re-enqueued."""
    client = app(each_system)
    v3 = await enqueue(client, invoice("3.0"))
    first, second = [await enqueue(client, invoice()) for _ in range(2)]
    assert [job["id"] for job in await fetch(client, "w-old", handlers=OLD, count=1)] == [first]
    assert [job["id"] for job in await fetch(client, "w-any", count=1)] == [second]
    assert [job["id"] for job in await fetch(client, "w-any", count=1)] == [v3]


async def test_other_types_are_routed_as_any_version(each_system: System) -> None:
    client = app(each_system)
    mail = await enqueue(client, {"type": "email.send", "version": "7.0", "args": [], "options": {"queue": "ver"}})  # fmt: skip
    assert [job["id"] for job in await fetch(client, "w-old", handlers=OLD)] == [mail]


@pytest.mark.parametrize(
    ("path", "handlers", "field"),
    [
        ("/ojs/v1/workers/heartbeat", [{"type": "invoice.generate", "versions": "~2"}], "handlers[0].versions"),
        ("/ojs/v1/workers/beat", "invoice.generate", "handlers"),
        ("/ojs/v1/workers/fetch", [{"versions": "*"}], "handlers[0].type"),
    ],
)  # fmt: skip
async def test_a_malformed_declaration_is_a_400(
    system: System, path: str, handlers: Any, field: str
) -> None:
    body = {"worker_id": "w-bad", "queues": ["ver"], "handlers": handlers}
    status, _, reply = await request(app(system), "POST", path, body)
    assert status == 400, reply
    assert reply["error"]["code"] == "invalid_request"
    assert reply["error"]["details"]["field"] == field
    assert system.workers.get("w-bad") is None or system.workers.get("w-bad").handlers is None


async def test_a_long_poll_over_incompatible_jobs_waits_without_spinning(
    each_system: System,
) -> None:
    """A long poll that finds only jobs it may not take hands them back once per poll
    (each return to the queue may wake it again, through Redis's notices: it does not
    listen for them), and returns nothing at its deadline; the jobs keep their attempt."""
    client = app(each_system)
    ids = [await enqueue(client, invoice("3.0")) for _ in range(3)]
    body = {"queues": ["ver"], "count": 1, "worker_id": "w-old", "handlers": OLD, "wait_ms": 2500}
    with trio.fail_after(10):
        status, _, reply = await request(client, "POST", "/ojs/v1/workers/fetch", body)
    assert (status, reply["jobs"]) == (200, [])
    for job_id in ids:
        job = await job_of(client, job_id)
        assert (job["state"], job["attempt"]) == ("available", 0)
    starts = await each_system.backend.read_events(
        EventFilter(types=frozenset({"job.started"}), limit=1000)
    )
    # Three claims a poll at most (the admission's rounds), a poll a second: not hundreds.
    assert len(starts) <= 3 * 4, len(starts)


# -- embedded worker groups ------------------------------------------------------------------


async def test_a_worker_group_takes_only_the_versions_it_declares(each_system: System) -> None:
    system = each_system
    ran: dict[str, list[str]] = {"old": [], "new": []}
    finished = {"old": trio.Event(), "new": trio.Event()}

    def handler(name: str, expected: int) -> Any:
        async def handle(job: Job) -> None:
            ran[name].append(job.id)
            if len(ran[name]) == expected:
                finished[name].set()

        return handle

    v1 = await system.enqueue(invoice("1.0"))
    v2 = await system.enqueue(invoice("2.0"))
    plain = await system.enqueue(invoice())
    async with system.worker_group(
        ["ver"], {"invoice.generate": handler("old", 2)}, versions={"invoice.generate": "<2.0"}
    ):
        with trio.fail_after(20):
            await finished["old"].wait()
        await trio.sleep(1.5)  # more fetches: v2 is handed back each time
    assert sorted(ran["old"]) == sorted([v1.id, plain.id])
    starts = await system.backend.read_events(EventFilter(types=frozenset({"job.started"})))
    # Handed back about once a poll (a second), never spinning on its own wake-ups.
    assert sum(1 for event in starts if event["subject"] == v2.id) <= 5
    held = await system.info(v2.id)
    assert (held.state.value, held.attempt) == ("available", 0)

    jobs = JobRegistry()
    jobs.job("invoice.generate", queue="ver", versions=">=2.0")(handler("new", 1))
    async with jobs.worker_group(system):
        with trio.fail_after(20):
            await finished["new"].wait()
    assert ran["new"] == [v2.id]
    done = await system.info(v2.id)
    for _ in range(100):  # the outcome is stored by the group's settler, before it returns
        if done.state.value == "completed":
            break
        await trio.sleep(0.05)
        done = await system.info(v2.id)
    assert (done.state.value, done.attempt) == ("completed", 1)


def test_a_definition_with_a_malformed_range_is_refused() -> None:
    jobs = JobRegistry()

    async def handle(job: Job) -> None:
        return None

    with pytest.raises(ValueError, match="versions of 'invoice.generate'"):
        jobs.job("invoice.generate", versions=">=two")(handle)
    jobs.job("invoice.generate", versions=">=2.0 <3")(handle)
    assert jobs.versions() == {"invoice.generate": ">=2.0 <3"}


async def test_an_idle_group_is_handed_only_compatible_jobs(autojump_clock: Any) -> None:
    """A group waiting on the queue is handed jobs stored by this process in the same
    round trip (the QueueActor's hand-over); an incompatible one goes back instead."""
    ran: list[str] = []
    async with open_system(settings=Settings(poll_interval=1.0)) as system:
        group = system.worker_group(
            ["ver"], {"invoice.generate": _recorder(ran)}, versions={"invoice.generate": "2.0"}
        )
        async with group:
            await trio.sleep(0.5)  # idle, waiting on the queue
            v3 = await system.enqueue(invoice("3.0"))
            v2 = await system.enqueue(invoice("2.0"))
            await trio.sleep(5)
        assert ran == [v2.id]
        held = await system.info(v3.id)
        assert (held.state.value, held.attempt) == ("available", 0)


def _recorder(ran: list[str]) -> Any:
    async def handle(job: Job) -> None:
        ran.append(job.id)

    return handle
