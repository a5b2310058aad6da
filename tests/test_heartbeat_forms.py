"""Heartbeats in both forms the spec documents, against real ``ojs-actors serve`` processes
on memory, SQLite and Redis, with the hot routes on the direct path and on Quart:

* ojs-worker-protocol §4.2 (what the JavaScript SDK's worker sends): ``active_jobs`` is
  a count and ``active_job_ids`` the ids, with ``state``, ``hostname``, ``pid``,
  ``queues``, ``concurrency``, ``labels`` and ``started_at`` beside them;
* ojs-http-binding §10.4: ``active_jobs`` is the array of ids;
* the OpenAPI document's single ``job_id``.

Each must extend the worker's leases. The answers and the validation are checked on the
in-process app too (both paths), where no server start is needed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from conftest import RedisServer
from serving import HTTP_PATHS, OjsServer
from test_http import assert_error, call, parse_time

FETCH_VISIBILITY_MS = 1000
JOB_VISIBILITY_MS = 60_000
"""The job's own visibility timeout: what a heartbeat without ``visibility_timeout_ms``
extends the lease by."""

Form = Callable[[str], dict[str, Any]]


def worker_protocol_form(job_id: str) -> dict[str, Any]:
    """Byte for byte what the JavaScript SDK's worker sends (ojs-worker-protocol §4.3)."""
    return {
        "worker_id": "worker_js",
        "state": "running",
        "active_jobs": 1,
        "active_job_ids": [job_id],
        "hostname": "web-server-1",
        "pid": 12345,
        "queues": ["beats"],
        "concurrency": 10,
        "labels": ["canary", "v2.1"],
        "started_at": "2025-06-01T08:00:00Z",
    }


def http_binding_form(job_id: str) -> dict[str, Any]:
    return {"worker_id": "worker_http", "active_jobs": [job_id], "visibility_timeout_ms": 60_000}


def single_job_form(job_id: str) -> dict[str, Any]:
    return {"worker_id": "worker_one", "job_id": job_id}


FORMS: dict[str, Form] = {
    "worker-protocol": worker_protocol_form,
    "http-binding": http_binding_form,
    "job-id": single_job_form,
}


# -- against real servers ------------------------------------------------------------------------


SERVERS = [
    (backend, path) for backend in ("memory", "sqlite", "redis") for path in ("direct", "quart")
]


@pytest.fixture(scope="module", params=SERVERS, ids=lambda param: "-".join(param))
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OjsServer]:
    backend, path = request.param
    workdir = tmp_path_factory.mktemp(f"heartbeat-{backend}-{path}")
    args, env = ["--backend", backend], {}
    if backend == "sqlite":
        args += ["--db", str(workdir / "ojs.db")]
    if backend == "redis":
        redis: RedisServer = request.getfixturevalue("redis_server")
        redis.flush()
        env["REDIS_URL"] = redis.url
    served = OjsServer([*args, *HTTP_PATHS[path]], workdir / "server.log", env=env)
    try:
        yield served
    finally:
        served.stop()
        log = served.log_path.read_text(errors="replace")
        assert "Traceback" not in log, f"the server logged an error:\n{log}"


@pytest.fixture
def http(server: OjsServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=10) as client:
        yield client


def post(http: httpx.Client, path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = http.post(path, json=body)
    assert response.status_code in (200, 201), response.text
    answer: dict[str, Any] = response.json()
    return answer


def claim_fresh_jobs(http: httpx.Client, queue: str, count: int) -> list[dict[str, Any]]:
    """``count`` new jobs of ``queue``, fetched with a lease of ``FETCH_VISIBILITY_MS``."""
    job = {"type": "beat.job", "args": [], "options": {"queue": queue,
           "visibility_timeout_ms": JOB_VISIBILITY_MS}}  # fmt: skip
    post(http, "/ojs/v1/jobs/batch", {"jobs": [job] * count})
    fetched = post(
        http,
        "/ojs/v1/workers/fetch",
        {"queues": [queue], "count": count, "visibility_timeout_ms": FETCH_VISIBILITY_MS},
    )
    jobs: list[dict[str, Any]] = fetched["jobs"]
    assert len(jobs) == count
    return jobs


def lease_deadline(http: httpx.Client, job_id: str) -> int:
    response = http.get(f"/ojs/v1/jobs/{job_id}")
    assert response.status_code == 200, response.text
    job = response.json()["job"]
    assert job["state"] == "active"
    return parse_time(job["visibility_expires_at"])


@pytest.mark.parametrize("form", FORMS)
def test_each_form_extends_the_lease(http: httpx.Client, form: str) -> None:
    queue = f"beats-{form}"
    [job] = claim_fresh_jobs(http, queue, 1)
    original = lease_deadline(http, job["id"])
    assert original - parse_time(job["started_at"]) == FETCH_VISIBILITY_MS

    beat = post(http, "/ojs/v1/workers/heartbeat", FORMS[form](job["id"]))
    assert beat["state"] == "running" and beat["jobs_extended"] == [job["id"]]
    # Extended by a minute (the request's or the job's own visibility timeout): far past
    # the fetch's one-second lease.
    assert lease_deadline(http, job["id"]) >= original + JOB_VISIBILITY_MS - 5_000


def test_leases_outlive_the_original_visibility_timeout(http: httpx.Client) -> None:
    """What the worker sees: a job heartbeated in any form is not handed out again once
    the fetch's lease would have run out, and its ack still succeeds."""
    started = time.monotonic()
    jobs = claim_fresh_jobs(http, "beats-outlive", len(FORMS))
    for job, form in zip(jobs, FORMS.values(), strict=True):
        beat = post(http, "/ojs/v1/workers/heartbeat", form(job["id"]))
        assert beat["jobs_extended"] == [job["id"]]
    time.sleep(max(0.0, started + 1.3 * FETCH_VISIBILITY_MS / 1000 - time.monotonic()))

    again = post(http, "/ojs/v1/workers/fetch", {"queues": ["beats-outlive"], "count": 10})
    assert again["jobs"] == []
    for job in jobs:
        acked = post(http, "/ojs/v1/workers/ack", {"job_id": job["id"]})
        assert acked["state"] == "completed" and acked["attempt"] == 1


# -- answers and validation, in process ------------------------------------------------------------


async def claimed_job(client: Any) -> str:
    reply = await call(client, "POST", "/ojs/v1/jobs", json={"type": "beat.job", "args": []})
    fetched = await call(client, "POST", "/ojs/v1/workers/fetch", json={"queues": ["default"]})
    assert fetched.body["jobs"][0]["id"] == reply.body["job"]["id"]
    job_id: str = reply.body["job"]["id"]
    return job_id


async def test_ids_come_from_active_job_ids_when_both_are_sent(client: Any) -> None:
    job_id = await claimed_job(client)
    body = {"worker_id": "w1", "active_jobs": ["not-this-one"], "active_job_ids": [job_id]}
    beat = await call(client, "POST", "/ojs/v1/workers/heartbeat", json=body)
    assert beat.status == 200 and beat.body["jobs_extended"] == [job_id]


@pytest.mark.parametrize(
    "extra",
    [
        {"active_jobs": 0, "active_job_ids": []},
        {"active_jobs": 3},  # a count without ids: nothing to extend
        {"state": "quiet", "labels": [], "queues": [], "pid": 0, "concurrency": 1},
        {"metadata": {"region": "eu"}, "some_future_field": True},  # not ours to refuse
    ],
)
async def test_documented_and_unknown_optional_fields_are_accepted(
    client: Any, extra: dict[str, Any]
) -> None:
    beat = await call(
        client, "POST", "/ojs/v1/workers/heartbeat", json={"worker_id": "w1", **extra}
    )
    assert beat.status == 200 and beat.body["state"] == "running"
    assert beat.body["jobs_extended"] == []


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"active_jobs": -1}, "active_jobs"),
        ({"active_jobs": True}, "active_jobs"),
        ({"active_jobs": 1.5}, "active_jobs"),
        ({"active_jobs": "3"}, "active_jobs"),
        ({"active_jobs": [1]}, "active_jobs"),
        ({"active_jobs": 1, "active_job_ids": "id"}, "active_job_ids"),
        ({"active_job_ids": [None]}, "active_job_ids"),
        ({"active_jobs": ["ok"], "active_job_ids": [2]}, "active_job_ids"),
        ({"job_id": 7}, "job_id"),
        ({"state": "sleeping"}, "state"),
        ({"state": 1}, "state"),
        ({"hostname": 5}, "hostname"),
        ({"pid": "12"}, "pid"),
        ({"pid": -1}, "pid"),
        ({"concurrency": False}, "concurrency"),
        ({"queues": "default"}, "queues"),
        ({"labels": [1]}, "labels"),
        ({"started_at": 0}, "started_at"),
        ({"visibility_timeout_ms": "1s"}, "visibility_timeout_ms"),
    ],
)
async def test_bad_fields_are_400_naming_the_field(
    client: Any, extra: dict[str, Any], field: str
) -> None:
    job_id = await claimed_job(client)
    body = {"worker_id": "w1", "active_job_ids": [job_id], **extra}
    reply = await call(client, "POST", "/ojs/v1/workers/heartbeat", json=body)
    error = assert_error(reply, 400, "invalid_request")
    assert error["details"]["field"] == field and f"'{field}'" in error["message"]
