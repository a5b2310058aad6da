"""The OJS HTTP binding, end to end: the real Quart-trio app over a real in-memory System.

Every request goes through :func:`call`, which also checks what the binding promises
for *every* response (ojs-http-binding §4, §6.5): the OJS media type, ``OJS-Version``,
an ``X-Request-Id``, a JSON body, no 5xx, and an answer within a deadline.
"""

from __future__ import annotations

import json as jsonlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pytest
import trio

from ojs_actors.core.timefmt import MAX_DURATION_MS
from ojs_actors.http.wire import MAX_JSON_DEPTH
from ojs_actors.system import System

MEDIA_TYPE = "application/openjobspec+json"
UUID7 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
RFC3339_MS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
UNKNOWN_ID = "019414d4-0000-7000-8000-000000000000"
_UNSET: Any = object()
REQUEST_DEADLINE = 10  # seconds (virtual ones under autojump_clock)


# -- harness -----------------------------------------------------------------------------


@dataclass
class Reply:
    status: int
    headers: Any
    body: dict[str, Any]

    @property
    def error(self) -> dict[str, Any]:
        error: dict[str, Any] = self.body["error"]
        return error


async def call(
    client: Any,
    method: str,
    path: str,
    *,
    json: Any = _UNSET,
    data: bytes | str | None = None,
    headers: dict[str, str] | None = None,
) -> Reply:
    kwargs: dict[str, Any] = {"method": method, "headers": headers or {}}
    if json is not _UNSET:
        kwargs["json"] = json
    if data is not None:
        kwargs["data"] = data
    with trio.fail_after(REQUEST_DEADLINE):  # "never hangs"
        response = await client.open(path, **kwargs)
        raw = await response.get_data()
    assert response.status_code < 500, raw
    assert response.headers["Content-Type"] == MEDIA_TYPE
    assert response.headers["OJS-Version"] == "1.0"
    assert response.headers["X-Request-Id"]
    body = jsonlib.loads(raw)
    assert isinstance(body, dict)
    return Reply(response.status_code, response.headers, body)


def assert_error(reply: Reply, status: int, code: str) -> dict[str, Any]:
    """The error envelope of ojs-http-binding §16.1 / ojs-json-format §12."""
    assert reply.status == status, reply.body
    error = reply.error
    assert error["code"] == code, error
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["retryable"], bool)
    assert error["request_id"] == reply.headers["X-Request-Id"]
    return error


def parse_time(stamp: str) -> int:
    assert RFC3339_MS.match(stamp), stamp
    return int(datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp() * 1000)


async def enqueue(client: Any, job_type: str = "test.job", **options: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"type": job_type, "args": options.pop("args", [])}
    if options:
        body["options"] = options
    reply = await call(client, "POST", "/ojs/v1/jobs", json=body)
    assert reply.status == 201, reply.body
    job: dict[str, Any] = reply.body["job"]
    return job


async def fetch(client: Any, *queues: str, **fields: Any) -> list[dict[str, Any]]:
    reply = await call(
        client, "POST", "/ojs/v1/workers/fetch", json={"queues": list(queues), **fields}
    )
    assert reply.status == 200, reply.body
    jobs: list[dict[str, Any]] = reply.body["jobs"]
    return jobs


async def info(client: Any, job_id: str) -> dict[str, Any]:
    reply = await call(client, "GET", f"/ojs/v1/jobs/{job_id}")
    assert reply.status == 200, reply.body
    job: dict[str, Any] = reply.body["job"]
    return job


async def nack(client: Any, job_id: str, message: str = "boom") -> Reply:
    return await call(
        client,
        "POST",
        "/ojs/v1/workers/nack",
        json={"job_id": job_id, "error": {"code": "handler_error", "message": message}},
    )


# -- standard headers and the error envelope --------------------------------------------


async def test_the_test_client_reaches_the_system_inside_a_trio_test(client: Any) -> None:
    reply = await call(client, "GET", "/ojs/v1/health")
    assert reply.status == 200
    assert reply.body["status"] == "ok"


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("GET", "/ojs/manifest", _UNSET, 200),
        ("GET", "/ojs/v1/health", _UNSET, 200),
        ("POST", "/ojs/v1/jobs", {"type": "test.job", "args": []}, 201),
        ("POST", "/ojs/v1/workers/fetch", {"queues": ["default"]}, 200),
        ("GET", "/ojs/v1/queues", _UNSET, 200),
        ("GET", "/ojs/v1/dead-letter", _UNSET, 200),
        ("GET", "/ojs/v1/events", _UNSET, 200),
        ("GET", f"/ojs/v1/jobs/{UNKNOWN_ID}", _UNSET, 404),
        ("POST", "/ojs/v1/jobs", {"args": []}, 400),
        ("PUT", "/ojs/v1/jobs", _UNSET, 405),
        ("GET", "/no/such/route", _UNSET, 404),
    ],
)
async def test_every_response_carries_the_standard_headers_and_echoes_the_request_id(
    client: Any, method: str, path: str, body: Any, status: int
) -> None:
    generated = await call(client, method, path, json=body)
    assert generated.status == status
    assert generated.headers["X-Request-Id"].startswith("req_")

    echoed = await call(client, method, path, json=body, headers={"X-Request-Id": "trace-42"})
    assert echoed.status == status
    assert echoed.headers["X-Request-Id"] == "trace-42"
    if status >= 400:
        error = assert_error(echoed, status, echoed.error["code"])
        assert error["request_id"] == "trace-42"


async def test_generated_request_ids_are_unique_and_overlong_ones_are_replaced(client: Any) -> None:
    first = await call(client, "GET", "/ojs/v1/health")
    second = await call(client, "GET", "/ojs/v1/health")
    assert first.headers["X-Request-Id"] != second.headers["X-Request-Id"]

    overlong = await call(
        client, "GET", f"/ojs/v1/jobs/{UNKNOWN_ID}", headers={"X-Request-Id": "x" * 300}
    )
    assert overlong.headers["X-Request-Id"].startswith("req_")
    assert overlong.error["request_id"] == overlong.headers["X-Request-Id"]


async def test_the_media_type_is_returned_whatever_the_accept_header(client: Any) -> None:
    reply = await call(client, "GET", "/ojs/v1/health", headers={"Accept": "text/html"})
    assert reply.status == 200


# -- bad input: 4xx, never 500, never a hang -------------------------------------------------


async def test_malformed_json_is_invalid_payload(client: Any) -> None:
    reply = await call(
        client,
        "POST",
        "/ojs/v1/jobs",
        data=b'{"type": "test.job", "args": [',
        headers={"Content-Type": MEDIA_TYPE},
    )
    error = assert_error(reply, 400, "invalid_payload")
    assert error["retryable"] is False


@pytest.mark.parametrize("raw", [b"[1, 2]", b'"a string"', b"42", b"null", b"true"])
async def test_a_body_that_is_not_a_json_object_is_rejected(client: Any, raw: bytes) -> None:
    # Implementation choice: parseable-but-not-an-object is invalid_request (malformed JSON
    # is invalid_payload).
    reply = await call(
        client, "POST", "/ojs/v1/jobs", data=raw, headers={"Content-Type": MEDIA_TYPE}
    )
    assert_error(reply, 400, "invalid_request")


async def test_non_utf8_bytes_are_invalid_payload(client: Any) -> None:
    raw = b'{"type": "test.job", "args": ["\xff\xfe"]}'
    reply = await call(
        client, "POST", "/ojs/v1/jobs", data=raw, headers={"Content-Type": MEDIA_TYPE}
    )
    assert_error(reply, 400, "invalid_payload")


@pytest.mark.parametrize(
    "raw",
    [
        b'{"type": "test.job", "args": [NaN]}',
        b'{"type": "test.job", "args": [Infinity]}',
        b'{"type": "test.job", "args": [-Infinity]}',
        b'{"type": "test.job", "args": [1e400]}',
    ],
)
async def test_non_finite_numbers_are_refused_rather_than_echoed_as_invalid_json(
    client: Any, raw: bytes
) -> None:
    reply = await call(
        client, "POST", "/ojs/v1/jobs", data=raw, headers={"Content-Type": MEDIA_TYPE}
    )
    assert_error(reply, 400, "invalid_payload")


async def test_an_integer_literal_beyond_the_interpreter_limit_is_a_400(client: Any) -> None:
    raw = b'{"type": "test.job", "args": [' + b"1" * 5000 + b"]}"
    reply = await call(
        client, "POST", "/ojs/v1/jobs", data=raw, headers={"Content-Type": MEDIA_TYPE}
    )
    assert_error(reply, 400, "invalid_payload")


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH, 1_000, 100_000])
async def test_deeply_nested_bodies_are_refused(client: Any, depth: int) -> None:
    # The body object itself is one level, so args nested `depth` deep exceed the limit.
    raw = b'{"type": "test.job", "args": ' + b"[" * depth + b"]" * depth + b"}"
    reply = await call(
        client, "POST", "/ojs/v1/jobs", data=raw, headers={"Content-Type": MEDIA_TYPE}
    )
    assert_error(reply, 400, "invalid_payload")


async def test_nesting_within_the_limit_round_trips(client: Any) -> None:
    depth = MAX_JSON_DEPTH - 1
    args: Any = []
    for _ in range(depth - 1):
        args = [args]
    job = await enqueue(client, args=args, queue="nested")
    assert job["args"] == args
    [fetched] = await fetch(client, "nested")
    assert fetched["args"] == args


@pytest.mark.parametrize(
    "content_type", [MEDIA_TYPE, "application/json", "application/json; charset=utf-8"]
)
async def test_both_media_types_are_accepted(client: Any, content_type: str) -> None:
    raw = jsonlib.dumps({"type": "test.job", "args": []})
    reply = await call(
        client, "POST", "/ojs/v1/jobs", data=raw, headers={"Content-Type": content_type}
    )
    assert reply.status == 201


@pytest.mark.parametrize("path", ["/ojs/v1/jobs", "/ojs/v1/workers/fetch", "/ojs/v1/workers/ack"])
async def test_an_unsupported_content_type_is_invalid_request(client: Any, path: str) -> None:
    raw = jsonlib.dumps({"type": "test.job", "args": [], "queues": ["default"], "job_id": "x"})
    reply = await call(client, "POST", path, data=raw, headers={"Content-Type": "text/plain"})
    error = assert_error(reply, 400, "invalid_request")
    assert error["details"]["content_type"] == "text/plain"


async def test_a_body_over_the_limit_is_413_with_an_ojs_error(
    make_client: Callable[..., Any],
) -> None:
    client = make_client(max_body_bytes=512)
    small = {"type": "test.job", "args": ["x" * 100]}
    assert (await call(client, "POST", "/ojs/v1/jobs", json=small)).status == 201

    big = {"type": "test.job", "args": ["x" * 2000]}
    reply = await call(client, "POST", "/ojs/v1/jobs", json=big, headers={"X-Request-Id": "big-1"})
    error = assert_error(reply, 413, "envelope_too_large")
    assert error["request_id"] == "big-1"
    assert error["details"]["max_bytes"] == 512

    fetch_reply = await call(client, "POST", "/ojs/v1/workers/fetch", json={"queues": ["q" * 600]})
    assert_error(fetch_reply, 413, "envelope_too_large")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"type": "test.job", "args": {"a": 1}}, "args"),
        ({"type": "test.job", "args": "not-an-array"}, "args"),
        ({"type": "test.job"}, "args"),
        ({"args": []}, "type"),
        ({"type": 42, "args": []}, "type"),
        ({"type": "Not A Type", "args": []}, "type"),
        ({"type": "test.job", "args": [], "options": {"queue": "Bad Queue!"}}, "queue"),
        ({"type": "test.job", "args": [], "options": {"queue": ""}}, "queue"),
        ({"type": "test.job", "args": [], "options": {"priority": "urgent"}}, "priority"),
        ({"type": "test.job", "args": [], "options": "fast"}, "options"),
        ({"type": "test.job", "args": [], "id": "not-a-uuid"}, "id"),
        ({"type": "test.job", "args": [], "options": {"tags": "a,b"}}, "tags"),
        ({"type": "test.job", "args": [], "options": {"scheduled_at": "tomorrow"}}, "scheduled_at"),
    ],
)
async def test_malformed_enqueue_fields_are_invalid_request(
    client: Any, body: dict[str, Any], field: str
) -> None:
    error = assert_error(
        await call(client, "POST", "/ojs/v1/jobs", json=body), 400, "invalid_request"
    )
    assert error["details"]["field"] == field


async def test_an_empty_enqueue_body_asks_for_type(client: Any) -> None:
    reply = await call(
        client, "POST", "/ojs/v1/jobs", data=b"", headers={"Content-Type": MEDIA_TYPE}
    )
    assert assert_error(reply, 400, "invalid_request")["details"]["field"] == "type"


@pytest.mark.parametrize("priority", [101, -101])
async def test_priority_out_of_range_is_a_422_validation_error(client: Any, priority: int) -> None:
    body = {"type": "test.job", "args": [], "options": {"priority": priority}}
    error = assert_error(
        await call(client, "POST", "/ojs/v1/jobs", json=body), 422, "validation_error"
    )
    assert error["details"]["field"] == "priority"


@pytest.mark.parametrize(
    ("retry", "field"),
    [
        ({"backoff_coefficient": 0.5}, "backoff_coefficient"),
        ({"max_attempts": -1}, "max_attempts"),
        ({"on_exhaustion": "explode"}, "on_exhaustion"),
        ({"initial_interval": "PT10S", "max_interval": "PT1S"}, "max_interval"),
    ],
)
async def test_retry_policy_rule_violations_are_422_naming_the_field(
    client: Any, retry: dict[str, Any], field: str
) -> None:
    body = {"type": "test.job", "args": [], "options": {"retry": retry}}
    error = assert_error(
        await call(client, "POST", "/ojs/v1/jobs", json=body), 422, "validation_error"
    )
    assert error["type"] == "validation_error"
    assert field in error["message"]
    assert error["retryable"] is False


@pytest.mark.parametrize(
    "options",
    [
        {"scheduled_at": "2026-13-45T00:00:00Z"},  # matches the pattern, no such date
        {"scheduled_at": "9999-12-31T23:59:59-05:00"},  # year 10000 in UTC
        {"scheduled_at": "0001-01-01T00:00:00+05:00"},  # year 0 in UTC
        {"expires_at": "2026-02-30T00:00:00Z"},
        {"scheduled_at": "+P99999999D"},
        {"retry": {"initial_interval": "P99999999999D", "max_interval": "P99999999999D"}},
        {"visibility_timeout": "P99999999999D"},
        {"visibility_timeout_ms": 10**20},
    ],
)
async def test_times_and_durations_out_of_range_are_refused_up_front(
    client: Any, options: dict[str, Any]
) -> None:
    body = {"type": "test.job", "args": [], "options": options}
    reply = await call(client, "POST", "/ojs/v1/jobs", json=body)
    assert reply.status in (400, 422), reply.body
    assert reply.error["code"] in ("invalid_request", "validation_error")
    # Nothing half-stored: the queue never saw a job.
    assert (await call(client, "GET", "/ojs/v1/queues")).body["queues"] == []


async def test_retry_intervals_in_ms_beyond_the_maximum_are_422(client: Any) -> None:
    retry = {"initial_interval_ms": MAX_DURATION_MS + 1, "max_interval_ms": MAX_DURATION_MS + 1}
    body = {"type": "test.job", "args": [], "options": {"retry": retry}}
    error = assert_error(
        await call(client, "POST", "/ojs/v1/jobs", json=body), 422, "validation_error"
    )
    assert "initial_interval_ms" in error["message"]


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", f"/ojs/v1/jobs/{UNKNOWN_ID}", _UNSET),
        ("GET", "/ojs/v1/jobs/not-even-a-uuid", _UNSET),
        ("DELETE", f"/ojs/v1/jobs/{UNKNOWN_ID}", _UNSET),
        ("POST", f"/ojs/v1/jobs/{UNKNOWN_ID}/activate", _UNSET),
        ("POST", "/ojs/v1/workers/ack", {"job_id": UNKNOWN_ID}),
        ("POST", "/ojs/v1/workers/nack", {"job_id": UNKNOWN_ID, "error": {"message": "x"}}),
        ("POST", f"/ojs/v1/dead-letter/{UNKNOWN_ID}/retry", _UNSET),
        ("DELETE", f"/ojs/v1/dead-letter/{UNKNOWN_ID}", _UNSET),
    ],
)
async def test_unknown_job_ids_are_404_not_found_with_hint_and_docs(
    client: Any, method: str, path: str, body: Any
) -> None:
    error = assert_error(await call(client, method, path, json=body), 404, "not_found")
    assert error["retryable"] is False
    assert isinstance(error["hint"], str) and error["hint"]
    assert error["docs_url"].startswith("https://")
    assert error["details"]["resource_type"] in ("job", "dead_letter_job")


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"queues": []},
        {"queues": "default"},
        {"queues": [1]},
        {"queues": ["Bad Queue!"]},
        {"queues": ["default"], "count": 0},
        {"queues": ["default"], "count": "x"},
        {"queues": ["default"], "count": True},
        {"queues": ["default"], "count": 1001},
        {"queues": ["default"], "worker_id": 7},
        {"queues": ["default"], "visibility_timeout_ms": 0},
        {"queues": ["default"], "visibility_timeout_ms": 10**20},
        {"queues": ["default"], "wait_ms": -1},
    ],
)
async def test_bad_fetch_requests_are_400(client: Any, body: dict[str, Any]) -> None:
    assert_error(
        await call(client, "POST", "/ojs/v1/workers/fetch", json=body), 400, "invalid_request"
    )


@pytest.mark.parametrize("body", [{}, {"job_id": 42}, {"job_id": ""}, {"result": {"ok": True}}])
async def test_ack_without_a_job_id_is_400(client: Any, body: dict[str, Any]) -> None:
    error = assert_error(
        await call(client, "POST", "/ojs/v1/workers/ack", json=body), 400, "invalid_request"
    )
    assert error["details"]["field"] == "job_id"


async def test_nack_needs_an_error_object(client: Any) -> None:
    job = await enqueue(client, queue="nack-bad")
    await fetch(client, "nack-bad")
    for body, field in [
        ({"job_id": job["id"]}, "error"),
        ({"job_id": job["id"], "error": "it broke"}, "error"),
        ({"job_id": job["id"], "error": {"message": 5}}, "error.message"),
        ({"job_id": job["id"], "error": {"message": "x", "retryable": "yes"}}, "error.retryable"),
        ({"job_id": job["id"], "error": {"message": "x"}, "requeue": "yes"}, "requeue"),
    ]:
        reply = await call(client, "POST", "/ojs/v1/workers/nack", json=body)
        assert assert_error(reply, 400, "invalid_request")["details"]["field"] == field
    assert (await info(client, job["id"]))["state"] == "active"  # none of them touched the job


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"worker_id": ""},
        {"worker_id": 3},
        {"worker_id": "w1", "active_jobs": "x"},
        {"worker_id": "w1", "active_jobs": [1]},
    ],
)
async def test_bad_heartbeats_are_400(client: Any, body: dict[str, Any]) -> None:
    assert_error(
        await call(client, "POST", "/ojs/v1/workers/heartbeat", json=body), 400, "invalid_request"
    )


async def test_heartbeat_visibility_beyond_the_maximum_is_400(client: Any) -> None:
    body = {"worker_id": "w1", "active_jobs": [], "visibility_timeout_ms": 10**20}
    assert_error(
        await call(client, "POST", "/ojs/v1/workers/heartbeat", json=body), 400, "invalid_request"
    )


@pytest.mark.parametrize("path", ["/", "/ojs", "/ojs/v1", "/ojs/v2/jobs", "/ojs/v1/jobs/a/b/c"])
async def test_unknown_routes_are_404_with_an_ojs_body(client: Any, path: str) -> None:
    error = assert_error(await call(client, "GET", path), 404, "not_found")
    assert error["details"]["path"] == path


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("PUT", "/ojs/v1/jobs"),
        ("GET", "/ojs/v1/jobs"),
        ("PATCH", f"/ojs/v1/jobs/{UNKNOWN_ID}"),
        ("GET", "/ojs/v1/workers/fetch"),
        ("DELETE", "/ojs/v1/workers/ack"),
        ("POST", "/ojs/v1/health"),
    ],
)
async def test_wrong_methods_are_405_with_an_ojs_body(client: Any, method: str, path: str) -> None:
    error = assert_error(await call(client, method, path), 405, "invalid_request")
    assert error["details"]["method"] == method


@pytest.mark.parametrize(
    "query", ["limit=abc", "limit=0", "limit=101", "offset=-1", "offset=x", "queue=Bad!"]
)
async def test_bad_dead_letter_query_parameters_are_400(client: Any, query: str) -> None:
    assert_error(await call(client, "GET", f"/ojs/v1/dead-letter?{query}"), 400, "invalid_request")


@pytest.mark.parametrize(
    "path", ["/ojs/v1/events?limit=abc", "/ojs/v1/queues?limit=abc", "/ojs/v1/queues?offset=-5"]
)
async def test_bad_list_query_parameters_are_400(client: Any, path: str) -> None:
    assert_error(await call(client, "GET", path), 400, "invalid_request")


# -- enqueue and info -------------------------------------------------------------------------


async def test_enqueue_returns_201_location_and_the_full_envelope(client: Any) -> None:
    body = {
        "type": "email.send",
        "args": ["user@example.com", 42, True, None, {"nested": "value"}],
        "meta": {"trace_id": "trace-1"},
        "options": {"queue": "email", "tags": ["onboarding"], "retry": {"max_attempts": 5}},
    }
    reply = await call(client, "POST", "/ojs/v1/jobs", json=body)
    assert reply.status == 201
    job = reply.body["job"]
    assert reply.headers["Location"] == f"/ojs/v1/jobs/{job['id']}"
    assert UUID7.match(job["id"])
    assert job["specversion"] == "1.0"
    assert job["type"] == "email.send"
    assert job["args"] == body["args"]
    assert job["meta"] == {"trace_id": "trace-1"}
    assert job["queue"] == "email"
    assert job["state"] == "available"
    assert job["attempt"] == 0
    assert job["priority"] == 0
    assert job["max_attempts"] == 5
    assert job["tags"] == ["onboarding"]
    assert parse_time(job["enqueued_at"]) >= parse_time(job["created_at"])
    for absent in ("started_at", "completed_at", "result", "error"):
        assert absent not in job

    located = await call(client, "GET", reply.headers["Location"])
    assert located.status == 200
    assert located.body["job"] == job


async def test_defaults_and_named_priorities(client: Any) -> None:
    job = await enqueue(client)
    assert job["queue"] == "default"
    assert job["max_attempts"] == 3
    assert (await enqueue(client, priority="high"))["priority"] == 10
    assert (await enqueue(client, priority=100))["priority"] == 100
    assert (await enqueue(client, priority=-100))["priority"] == -100


async def test_a_client_supplied_id_is_kept_and_a_second_use_is_409(client: Any) -> None:
    job_id = "019414d4-8b2e-7c3a-b5d1-f0e2a3b4c5d6"
    body = {"type": "test.job", "args": [], "id": job_id}
    first = await call(client, "POST", "/ojs/v1/jobs", json=body)
    assert first.status == 201 and first.body["job"]["id"] == job_id
    assert_error(await call(client, "POST", "/ojs/v1/jobs", json=body), 409, "duplicate")


async def test_info_is_read_only(client: Any) -> None:
    job = await enqueue(client)
    assert await info(client, job["id"]) == await info(client, job["id"]) == job


async def test_a_future_schedule_enqueues_as_scheduled_and_is_not_fetchable(client: Any) -> None:
    job = await enqueue(client, queue="later", scheduled_at="+PT1H")
    assert job["state"] == "scheduled"
    assert "enqueued_at" not in job
    assert await fetch(client, "later") == []


# -- fetch ---------------------------------------------------------------------------------------


async def test_fetch_returns_jobs_by_priority_then_fifo(client: Any) -> None:
    plan = [("a", 0), ("b", 5), ("c", 0), ("d", 10), ("e", 5)]
    ids = {
        name: (await enqueue(client, queue="ordered", priority=p, args=[name]))["id"]
        for name, p in plan
    }

    reply = await call(
        client,
        "POST",
        "/ojs/v1/workers/fetch",
        json={"queues": ["ordered"], "count": 10, "worker_id": "w1"},
    )
    assert reply.status == 200
    jobs = reply.body["jobs"]
    assert [job["args"][0] for job in jobs] == ["d", "b", "e", "a", "c"]
    assert reply.body["job"] == jobs[0]
    for job in jobs:
        assert job["id"] == ids[job["args"][0]]
        assert job["state"] == "active"
        assert job["attempt"] == 1
        assert job["worker_id"] == "w1"
        assert "started_at" in job and "visibility_expires_at" in job


async def test_fetch_claims_exclusively_and_honours_count(client: Any) -> None:
    for n in range(3):
        await enqueue(client, queue="claims", args=[n])
    first = await fetch(client, "claims", count=2)
    second = await fetch(client, "claims", count=2)
    assert [job["args"] for job in first] == [[0], [1]]
    assert [job["args"] for job in second] == [[2]]

    empty = await call(client, "POST", "/ojs/v1/workers/fetch", json={"queues": ["claims"]})
    assert empty.status == 200
    assert empty.body["jobs"] == []
    assert "job" not in empty.body


async def test_fetch_tries_queues_in_the_given_order(client: Any) -> None:
    await enqueue(client, queue="second", args=["s1"])
    await enqueue(client, queue="first", args=["f1"])
    await enqueue(client, queue="second", args=["s2"])
    jobs = await fetch(client, "first", "second", count=2)
    assert [job["args"][0] for job in jobs] == ["f1", "s1"]


async def test_fetch_of_an_unknown_queue_is_an_empty_200(client: Any) -> None:
    assert await fetch(client, "never-used") == []


async def test_a_long_poll_fetch_wakes_on_enqueue(client: Any, autojump_clock: Any) -> None:
    result: list[dict[str, Any]] = []

    async def waiting_fetch() -> None:
        result.extend(await fetch(client, "poll", wait_ms=20_000))

    started = trio.current_time()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(waiting_fetch)
        await trio.sleep(3)
        job = await enqueue(client, queue="poll")
    assert [j["id"] for j in result] == [job["id"]]
    assert trio.current_time() - started < 20


async def test_a_long_poll_fetch_on_an_empty_queue_returns_after_wait_ms(
    client: Any, autojump_clock: Any
) -> None:
    started = trio.current_time()
    assert await fetch(client, "idle", wait_ms=2_000) == []
    assert 2 <= trio.current_time() - started < 5


# -- ack ---------------------------------------------------------------------------------------------


async def test_ack_with_a_result_completes_the_job_and_keeps_the_result(client: Any) -> None:
    job = await enqueue(client, queue="acks")
    await fetch(client, "acks")
    result = {"processed": True, "count": 42, "details": {"skipped": 2}}
    reply = await call(
        client, "POST", "/ojs/v1/workers/ack", json={"job_id": job["id"], "result": result}
    )
    assert reply.status == 200
    assert reply.body["acknowledged"] is True
    assert reply.body["job_id"] == job["id"]
    assert reply.body["state"] == "completed"
    assert RFC3339_MS.match(reply.body["completed_at"])
    assert reply.body["result"] == result

    stored = await info(client, job["id"])
    assert stored["state"] == "completed"
    assert stored["result"] == result
    assert "visibility_expires_at" not in stored and "worker_id" not in stored


async def test_ack_distinguishes_a_null_result_from_no_result(client: Any) -> None:
    with_null = await enqueue(client, queue="nulls")
    without = await enqueue(client, queue="nulls")
    await fetch(client, "nulls", count=2)

    reply = await call(
        client, "POST", "/ojs/v1/workers/ack", json={"job_id": with_null["id"], "result": None}
    )
    assert reply.status == 200 and reply.body["result"] is None
    reply = await call(client, "POST", "/ojs/v1/workers/ack", json={"job_id": without["id"]})
    assert reply.status == 200 and "result" not in reply.body

    assert "result" in (stored := await info(client, with_null["id"])) and stored["result"] is None
    assert "result" not in await info(client, without["id"])


async def test_ack_of_a_job_that_is_not_active_is_409(client: Any) -> None:
    job = await enqueue(client, queue="acks")
    error = assert_error(
        await call(client, "POST", "/ojs/v1/workers/ack", json={"job_id": job["id"]}),
        409,
        "conflict",
    )
    assert error["retryable"] is False
    await fetch(client, "acks")
    assert (
        await call(client, "POST", "/ojs/v1/workers/ack", json={"job_id": job["id"]})
    ).status == 200
    assert_error(
        await call(client, "POST", "/ojs/v1/workers/ack", json={"job_id": job["id"]}),
        409,
        "conflict",
    )


# -- nack and retry ---------------------------------------------------------------------------------------


async def test_nack_makes_the_job_retryable_and_it_returns_after_the_backoff(
    client: Any, system: System, autojump_clock: Any
) -> None:
    retry = {
        "max_attempts": 3,
        "initial_interval": "PT2S",
        "backoff_coefficient": 2.0,
        "jitter": False,
    }
    job = await enqueue(client, queue="retries", retry=retry)
    await fetch(client, "retries")

    before = system.clock()
    reply = await nack(client, job["id"], "SMTP refused")
    assert reply.status == 200
    assert reply.body["job_id"] == job["id"]
    assert reply.body["state"] == "retryable"
    assert reply.body["attempt"] == 1
    assert reply.body["max_attempts"] == 3
    assert reply.body["retry_delay_ms"] == 2000
    assert parse_time(reply.body["next_attempt_at"]) - before == 2000
    assert reply.body["error"]["message"] == "SMTP refused"

    assert await fetch(client, "retries") == []  # not before the backoff has passed
    await trio.sleep(1)
    assert await fetch(client, "retries") == []
    assert (await info(client, job["id"]))["state"] == "retryable"

    await trio.sleep(1.5)
    [again] = await fetch(client, "retries")
    assert again["id"] == job["id"]
    assert again["attempt"] == 2
    assert again["state"] == "active"
    assert [entry["message"] for entry in again["errors"]] == ["SMTP refused"]

    second = await nack(client, job["id"])
    assert second.body["retry_delay_ms"] == 4000  # exponential: 2 s × 2


async def test_nack_with_requeue_hands_the_job_back_without_spending_the_attempt(
    client: Any,
) -> None:
    job = await enqueue(client, queue="requeue")
    await fetch(client, "requeue")
    reply = await call(
        client, "POST", "/ojs/v1/workers/nack", json={"job_id": job["id"], "requeue": True}
    )
    assert reply.status == 200
    assert reply.body["state"] == "available"
    assert reply.body["attempt"] == 0
    [again] = await fetch(client, "requeue")
    assert again["attempt"] == 1


async def test_exhausted_attempts_are_discarded_by_default_and_not_dead_lettered(
    client: Any,
) -> None:
    job = await enqueue(client, queue="exhaust", retry={"max_attempts": 1})
    await fetch(client, "exhaust")
    reply = await nack(client, job["id"])
    assert reply.body["state"] == "discarded"
    assert RFC3339_MS.match(reply.body["discarded_at"])
    dead = await call(client, "GET", "/ojs/v1/dead-letter")
    assert dead.body["jobs"] == [] and dead.body["pagination"]["total"] == 0
    assert_error(await nack(client, job["id"]), 409, "conflict")


async def test_huge_backoff_coefficients_do_not_crash_the_queue(
    client: Any, autojump_clock: Any
) -> None:
    retry = {
        "max_attempts": 10,
        "initial_interval": "PT1S",
        "max_interval": "PT2S",
        "backoff_coefficient": 1e308,
        "jitter": False,
    }
    job = await enqueue(client, queue="overflow", retry=retry)
    for attempt in range(1, 5):
        [claimed] = await fetch(client, "overflow")
        assert claimed["attempt"] == attempt
        reply = await nack(client, job["id"])
        assert reply.status == 200
        assert reply.body["state"] == "retryable"
        assert reply.body["retry_delay_ms"] <= 2000  # capped at max_interval, never overflowing
        await trio.sleep(2.5)


# -- dead letter --------------------------------------------------------------------------------------------


async def _dead_letter(client: Any, queue: str, count: int) -> list[str]:
    retry = {"max_attempts": 1, "on_exhaustion": "dead_letter"}
    ids = [(await enqueue(client, queue=queue, retry=retry, args=[n]))["id"] for n in range(count)]
    await fetch(client, queue, count=count)
    for job_id in ids:
        reply = await nack(client, job_id)
        assert reply.body["state"] == "discarded"
    return ids


async def test_dead_letter_list_paginates_and_filters_by_queue(client: Any) -> None:
    ids = await _dead_letter(client, "dlq", 3)
    other = await _dead_letter(client, "dlq-other", 1)

    page = await call(client, "GET", "/ojs/v1/dead-letter?queue=dlq&limit=2")
    assert page.status == 200
    assert [job["id"] for job in page.body["jobs"]] == ids[:2]
    assert page.body["pagination"] == {"total": 3, "limit": 2, "offset": 0, "has_more": True}
    for job in page.body["jobs"]:
        assert job["state"] == "discarded"
        assert job["error"]["message"] == "boom"
        assert "discarded_at" in job

    rest = await call(client, "GET", "/ojs/v1/dead-letter?queue=dlq&limit=2&offset=2")
    assert [job["id"] for job in rest.body["jobs"]] == ids[2:]
    assert rest.body["pagination"] == {"total": 3, "limit": 2, "offset": 2, "has_more": False}

    everything = await call(client, "GET", "/ojs/v1/dead-letter")
    assert {job["id"] for job in everything.body["jobs"]} == {*ids, *other}
    assert everything.body["pagination"]["total"] == 4

    none = await call(client, "GET", "/ojs/v1/dead-letter?queue=elsewhere")
    assert none.body["jobs"] == [] and none.body["pagination"]["total"] == 0


async def test_dead_letter_retry_and_delete(client: Any) -> None:
    retried, deleted = await _dead_letter(client, "dlq", 2)

    reply = await call(client, "POST", f"/ojs/v1/dead-letter/{retried}/retry")
    assert reply.status == 200
    job = reply.body["job"]
    assert job["id"] == retried
    assert job["state"] == "available"
    assert job["attempt"] == 0
    assert RFC3339_MS.match(job["re_enqueued_at"])
    assert "errors" not in job and "error" not in job
    assert_error(
        await call(client, "POST", f"/ojs/v1/dead-letter/{retried}/retry"), 404, "not_found"
    )
    [fetched] = await fetch(client, "dlq")
    assert fetched["id"] == retried and fetched["attempt"] == 1

    reply = await call(client, "DELETE", f"/ojs/v1/dead-letter/{deleted}")
    assert reply.status == 200
    assert reply.body == {"deleted": True, "job_id": deleted}
    error = assert_error(
        await call(client, "DELETE", f"/ojs/v1/dead-letter/{deleted}"), 404, "not_found"
    )
    assert error["details"] == {"resource_type": "dead_letter_job", "resource_id": deleted}
    assert_error(await call(client, "GET", f"/ojs/v1/jobs/{deleted}"), 404, "not_found")

    listed = await call(client, "GET", "/ojs/v1/dead-letter")
    assert listed.body["jobs"] == [] and listed.body["pagination"]["total"] == 0


async def test_a_job_that_is_not_dead_lettered_cannot_be_retried_or_deleted_from_there(
    client: Any,
) -> None:
    job = await enqueue(client)
    assert_error(
        await call(client, "POST", f"/ojs/v1/dead-letter/{job['id']}/retry"), 404, "not_found"
    )
    assert_error(await call(client, "DELETE", f"/ojs/v1/dead-letter/{job['id']}"), 404, "not_found")
    assert (await info(client, job["id"]))["state"] == "available"


# -- cancel and activate -------------------------------------------------------------------------------------


async def test_cancel_an_available_job(client: Any) -> None:
    job = await enqueue(client, queue="cancel")
    reply = await call(client, "DELETE", f"/ojs/v1/jobs/{job['id']}")
    assert reply.status == 200
    cancelled = reply.body["job"]
    assert cancelled["state"] == "cancelled"
    assert cancelled["previous_state"] == "available"
    assert RFC3339_MS.match(cancelled["cancelled_at"])
    assert await fetch(client, "cancel") == []
    assert (await info(client, job["id"]))["state"] == "cancelled"


async def test_cancel_an_active_job_and_the_worker_learns_of_it(client: Any) -> None:
    job = await enqueue(client, queue="cancel")
    await fetch(client, "cancel", worker_id="w1")
    reply = await call(client, "DELETE", f"/ojs/v1/jobs/{job['id']}")
    assert reply.body["job"]["state"] == "cancelled"
    assert reply.body["job"]["previous_state"] == "active"

    beat = await call(
        client,
        "POST",
        "/ojs/v1/workers/heartbeat",
        json={"worker_id": "w1", "active_jobs": [job["id"]]},
    )
    assert beat.body["jobs_extended"] == []
    assert beat.body["jobs_cancelled"] == [job["id"]]
    assert_error(
        await call(client, "POST", "/ojs/v1/workers/ack", json={"job_id": job["id"]}),
        409,
        "conflict",
    )


async def test_cancel_of_a_terminal_job_is_409(client: Any) -> None:
    job = await enqueue(client, queue="cancel")
    await fetch(client, "cancel")
    await call(client, "POST", "/ojs/v1/workers/ack", json={"job_id": job["id"]})
    # The binding's example says code invalid_request; the conformance suite (L0-OPS-032)
    # says conflict, which is what the server sends.
    assert_error(await call(client, "DELETE", f"/ojs/v1/jobs/{job['id']}"), 409, "conflict")

    other = await enqueue(client, queue="cancel")
    await call(client, "DELETE", f"/ojs/v1/jobs/{other['id']}")
    assert_error(await call(client, "DELETE", f"/ojs/v1/jobs/{other['id']}"), 409, "conflict")


async def test_pending_jobs_wait_for_activation(client: Any) -> None:
    job = await enqueue(client, queue="staged", pending=True)
    assert job["state"] == "pending"
    assert "enqueued_at" not in job
    assert await fetch(client, "staged") == []

    reply = await call(client, "POST", f"/ojs/v1/jobs/{job['id']}/activate")
    assert reply.status == 200
    assert reply.body["job"]["state"] == "available"
    assert reply.body["job"]["previous_state"] == "pending"
    assert "enqueued_at" in reply.body["job"]

    assert_error(await call(client, "POST", f"/ojs/v1/jobs/{job['id']}/activate"), 409, "conflict")
    [fetched] = await fetch(client, "staged")
    assert fetched["id"] == job["id"]
    assert_error(await call(client, "POST", f"/ojs/v1/jobs/{job['id']}/activate"), 409, "conflict")


# -- heartbeats and visibility timeouts -------------------------------------------------------------------------


async def test_heartbeats_extend_the_lease_past_the_original_visibility_timeout(
    client: Any, autojump_clock: Any
) -> None:
    job = await enqueue(client, queue="beats")
    [claimed] = await fetch(client, "beats", worker_id="w1", visibility_timeout_ms=1000)
    original_expiry = parse_time(claimed["visibility_expires_at"])

    for _ in range(5):
        await trio.sleep(0.7)
        beat = await call(
            client,
            "POST",
            "/ojs/v1/workers/heartbeat",
            json={"worker_id": "w1", "active_jobs": [job["id"]], "visibility_timeout_ms": 1000},
        )
        assert beat.status == 200
        assert beat.body["state"] == "running"
        assert beat.body["jobs_extended"] == [job["id"]]
        assert RFC3339_MS.match(beat.body["server_time"])

    current = await info(client, job["id"])  # 3.5 s in: well past the first 1 s lease
    assert current["state"] == "active"
    assert current["attempt"] == 1
    assert parse_time(current["visibility_expires_at"]) > original_expiry + 2000

    await trio.sleep(2)  # no more heartbeats: the lease lapses
    lapsed = await info(client, job["id"])
    assert lapsed["state"] == "available"
    assert lapsed["error"]["code"] == "timeout"

    late = await call(
        client,
        "POST",
        "/ojs/v1/workers/heartbeat",
        json={"worker_id": "w1", "active_jobs": [job["id"]]},
    )
    assert late.body["jobs_extended"] == []
    [again] = await fetch(client, "beats")
    assert again["attempt"] == 2


async def test_a_lapsed_visibility_timeout_returns_the_job_to_available(
    client: Any, autojump_clock: Any
) -> None:
    job = await enqueue(client, queue="lapse", visibility_timeout_ms=1500)
    [claimed] = await fetch(client, "lapse", worker_id="w1")
    assert parse_time(claimed["visibility_expires_at"]) - parse_time(claimed["started_at"]) == 1500

    await trio.sleep(1)
    assert (await info(client, job["id"]))["state"] == "active"
    await trio.sleep(1)
    returned = await info(client, job["id"])
    assert returned["state"] == "available"
    assert "worker_id" not in returned and "visibility_expires_at" not in returned

    # The old holder's ack is refused; the job is someone else's to take.
    assert_error(
        await call(client, "POST", "/ojs/v1/workers/ack", json={"job_id": job["id"]}),
        409,
        "conflict",
    )
    [again] = await fetch(client, "lapse", worker_id="w2")
    assert again["attempt"] == 2 and again["worker_id"] == "w2"


async def test_a_heartbeat_without_jobs_reports_running(client: Any) -> None:
    reply = await call(client, "POST", "/ojs/v1/workers/heartbeat", json={"worker_id": "w9"})
    assert reply.status == 200
    assert reply.body["state"] == "running"
    assert reply.body["jobs_extended"] == [] and reply.body["jobs_cancelled"] == []


# -- events ----------------------------------------------------------------------------------------------------


async def test_events_filter_by_type_and_queue_and_paginate(client: Any) -> None:
    a = await enqueue(client, "report.build", queue="ev-a")
    b = await enqueue(client, "email.send", queue="ev-b")
    await fetch(client, "ev-a")
    await call(client, "POST", "/ojs/v1/workers/ack", json={"job_id": a["id"], "result": {"ok": 1}})

    everything = (await call(client, "GET", "/ojs/v1/events")).body
    assert [e["type"] for e in everything["events"]] == [
        "job.enqueued",
        "job.enqueued",
        "job.started",
        "job.completed",
    ]
    assert everything["has_more"] is False
    assert everything["cursor"] == everything["events"][-1]["id"]
    for event in everything["events"]:
        assert event["specversion"] == "1.0"
        assert event["id"].startswith("evt_")
        assert RFC3339_MS.match(event["time"])
        assert event["subject"] == event["data"]["job_id"]

    completed = (await call(client, "GET", "/ojs/v1/events?types=job.completed")).body["events"]
    assert len(completed) == 1
    assert completed[0]["subject"] == a["id"]
    assert completed[0]["data"]["queue"] == "ev-a"
    assert completed[0]["data"]["result"] == {"ok": 1}

    enqueued = (await call(client, "GET", "/ojs/v1/events?types=job.enqueued")).body["events"]
    assert [e["subject"] for e in enqueued] == [a["id"], b["id"]]
    in_b = (await call(client, "GET", "/ojs/v1/events?types=job.enqueued&queues=ev-b")).body[
        "events"
    ]
    assert [e["subject"] for e in in_b] == [b["id"]]
    both = (await call(client, "GET", "/ojs/v1/events?types=job.enqueued,job.completed")).body[
        "events"
    ]
    assert len(both) == 3
    by_job_type = (await call(client, "GET", "/ojs/v1/events?job_types=email.send")).body["events"]
    assert [e["subject"] for e in by_job_type] == [b["id"]]

    pages: list[dict[str, Any]] = []
    after = ""
    while True:
        page = (await call(client, "GET", f"/ojs/v1/events?limit=1&after={after}")).body
        pages.extend(page["events"])
        assert len(page["events"]) <= 1
        if not page["has_more"]:
            break
        after = page["cursor"]
    assert pages == everything["events"]

    beyond = (await call(client, "GET", f"/ojs/v1/events?after={everything['cursor']}")).body
    assert beyond == {"events": [], "cursor": None, "has_more": False}


# -- queues, health, manifest, reset ---------------------------------------------------------------------------------


async def test_queues_are_listed_with_pagination(client: Any) -> None:
    await enqueue(client, queue="beta")
    await enqueue(client, queue="alpha")
    reply = await call(client, "GET", "/ojs/v1/queues")
    assert reply.status == 200
    assert [q["name"] for q in reply.body["queues"]] == ["alpha", "beta"]
    for queue in reply.body["queues"]:
        assert queue["status"] == "active"
        assert RFC3339_MS.match(queue["created_at"])
    assert reply.body["pagination"] == {"total": 2, "limit": 50, "offset": 0, "has_more": False}

    page = await call(client, "GET", "/ojs/v1/queues?limit=1")
    assert [q["name"] for q in page.body["queues"]] == ["alpha"]
    assert page.body["pagination"]["has_more"] is True


async def test_health(client: Any) -> None:
    reply = await call(client, "GET", "/ojs/v1/health")
    assert reply.status == 200
    assert reply.body["status"] == "ok"
    assert reply.body["version"] == "1.0"
    assert reply.body["backend"]["type"] == "memory"
    assert reply.body["backend"]["status"] == "ok"


async def test_metrics_are_prometheus_text(client: Any) -> None:
    with trio.fail_after(REQUEST_DEADLINE):
        response = await client.open("/metrics", method="GET")
        text = (await response.get_data()).decode()
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/plain"
    assert "# TYPE process_resident_memory_bytes gauge" in text
    assert "ojs_event_relay" not in text  # the memory backend has no event sink


async def test_manifest(client: Any) -> None:
    reply = await call(client, "GET", "/ojs/manifest")
    assert reply.status == 200
    manifest = reply.body
    assert manifest["specversion"] == "1.0"
    assert manifest["implementation"]["name"] == "ojs-actors"
    assert isinstance(manifest["conformance_level"], int)
    assert "http" in manifest["protocols"]
    assert manifest["capabilities"]["dead_letter"] is True


async def test_reset_is_not_routed_unless_allowed(client: Any) -> None:
    job = await enqueue(client)
    assert_error(await call(client, "POST", "/ojs/v1/admin/reset"), 404, "not_found")
    assert (await info(client, job["id"]))["state"] == "available"


async def test_reset_clears_jobs_and_the_system_keeps_working(
    make_client: Callable[..., Any],
) -> None:
    client = make_client(allow_reset=True)
    old = await enqueue(client, queue="wipe")
    dead = (await _dead_letter(client, "wipe-dl", 1))[0]

    reply = await call(client, "POST", "/ojs/v1/admin/reset")
    assert reply.status == 200
    assert reply.body == {"reset": True}
    assert_error(await call(client, "GET", f"/ojs/v1/jobs/{old['id']}"), 404, "not_found")
    assert_error(await call(client, "GET", f"/ojs/v1/jobs/{dead}"), 404, "not_found")
    assert (await call(client, "GET", "/ojs/v1/dead-letter")).body["jobs"] == []
    assert await fetch(client, "wipe") == []

    new = await enqueue(client, queue="wipe")  # queue actors are restarted on demand
    [fetched] = await fetch(client, "wipe")
    assert fetched["id"] == new["id"]
