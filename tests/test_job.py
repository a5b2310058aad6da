"""The job envelope (ojs-core §5), enqueue validation and the pure lifecycle transitions."""

from __future__ import annotations

import copy
import json
import random
from typing import Any

import pytest

from ojs_actors.core import lifecycle
from ojs_actors.core.errors import Conflict, InvalidRequest, OJSError, ValidationFailed
from ojs_actors.core.ids import is_uuid7, new_id
from ojs_actors.core.job import DEFAULT_VISIBILITY_TIMEOUT_MS, Job
from ojs_actors.core.retry import DEFAULT_POLICY, Backoff, Exhaustion, RetryPolicy
from ojs_actors.core.states import State
from ojs_actors.core.timefmt import format_ms, parse_timestamp
from ojs_actors.core.validation import parse_enqueue

NOW = 1_767_225_600_000  # 2026-01-01T00:00:00Z
PAST = "2020-01-01T00:00:00Z"
FUTURE = "2030-01-01T00:00:00Z"
NO_JITTER = {"jitter": False}


def enqueue(now: int = NOW, **body: Any) -> Job:
    body.setdefault("type", "email.send")
    body.setdefault("args", ["user@example.com", "welcome"])
    return parse_enqueue(body, now)


def active(retry: dict[str, Any] | None = None, **body: Any) -> Job:
    options = body.pop("options", {})
    options["retry"] = {**NO_JITTER, **(retry or {})}
    return lifecycle.claim(enqueue(options=options, **body), NOW + 10, "worker-1", None)


def in_state(state: State) -> Job:
    if state is State.AVAILABLE:
        return enqueue()
    if state is State.SCHEDULED:
        return enqueue(options={"delay_until": "+PT1H"})
    if state is State.PENDING:
        return enqueue(options={"pending": True})
    if state is State.ACTIVE:
        return active()
    if state is State.RETRYABLE:
        return lifecycle.fail(active(), NOW + 20, {"type": "boom", "message": "x"})
    if state is State.COMPLETED:
        return lifecycle.ack(active(), NOW + 20)
    if state is State.CANCELLED:
        return lifecycle.cancel(enqueue(), NOW + 20)
    if state is State.DISCARDED:
        return lifecycle.fail(active({"max_attempts": 1}), NOW + 20, {"type": "boom"})
    raise AssertionError(state)


def test_in_state_helper_reaches_every_state() -> None:
    for state in State:
        assert in_state(state).state is state


# =========================================================================== parse_enqueue


def test_minimal_job_defaults() -> None:
    job = enqueue()
    assert is_uuid7(job.id)
    assert job.type == "email.send"
    assert job.args == ["user@example.com", "welcome"]
    assert job.queue == "default"
    assert job.meta == {}
    assert job.priority == 0
    assert job.retry is DEFAULT_POLICY
    assert job.timeout_ms is None
    assert job.visibility_timeout_ms == DEFAULT_VISIBILITY_TIMEOUT_MS
    assert job.scheduled_at is None
    assert job.expires_at is None
    assert job.tags == ()
    assert job.unique is None
    assert job.schema is None
    assert job.extra == {}
    assert job.state is State.AVAILABLE
    assert job.attempt == 0
    assert job.created_at == NOW
    assert job.enqueued_at == NOW
    assert job.started_at is None
    assert job.completed_at is None
    assert job.error is None
    assert job.errors == ()
    assert job.has_result is False
    assert job.version == 0


def test_minimal_job_wire_form() -> None:
    wire = enqueue().to_wire()
    assert wire["specversion"] == "1.0"
    assert wire["queue"] == "default"
    assert wire["state"] == "available"
    assert wire["attempt"] == 0
    assert wire["max_attempts"] == 3
    assert wire["priority"] == 0
    assert wire["meta"] == {}
    assert wire["created_at"] == wire["enqueued_at"] == format_ms(NOW)
    # L0-ENV system-managed fields: absent until set
    for absent in ("started_at", "completed_at", "error", "result", "errors", "scheduled_at"):
        assert absent not in wire
    json.dumps(wire)  # JSON-native


def test_empty_args_and_json_native_args_are_accepted() -> None:
    assert enqueue(args=[]).args == []
    nested = ["s", 42, 3.14, True, False, None, [1, "two", [3, [4, 5]]], {"a": {"b": [None]}}]
    assert enqueue(args=nested).args == nested


def test_client_supplied_uuid7_is_kept() -> None:
    job_id = new_id()
    assert enqueue(id=job_id).id == job_id


def test_generated_ids_are_unique_uuid7() -> None:
    ids = {enqueue().id for _ in range(200)}
    assert len(ids) == 200
    assert all(is_uuid7(i) for i in ids)


def test_specversion() -> None:
    assert enqueue(specversion="1.0").state is State.AVAILABLE
    with pytest.raises(InvalidRequest) as info:
        enqueue(specversion="2.0")
    assert info.value.details["field"] == "specversion"


def test_full_job_of_the_conformance_suite() -> None:
    job = enqueue(
        type="report.generate",
        args=[42, "quarterly", {"include_charts": True}],
        meta={"trace_id": "4bf9", "tags": ["quarterly", "finance"]},
        options={
            "queue": "reports",
            "priority": 10,
            "timeout_ms": 300000,
            "delay_until": "2020-01-01T00:00:00Z",
            "retry": {
                "max_attempts": 5,
                "initial_interval": "PT1S",
                "backoff_coefficient": 2.0,
                "max_interval": "PT5M",
                "jitter": True,
                "non_retryable_errors": ["ValidationError", "AuthenticationError"],
            },
            "unique": {"keys": ["type", "args"], "period": "PT1H", "on_conflict": "reject"},
        },
    )
    assert job.state is State.AVAILABLE
    assert job.queue == "reports"
    assert job.priority == 10
    assert job.timeout_ms == 300_000
    assert job.scheduled_at == parse_timestamp("2020-01-01T00:00:00Z", "x")
    assert job.retry == RetryPolicy(
        max_attempts=5, non_retryable_errors=("ValidationError", "AuthenticationError")
    )
    assert job.unique == {"keys": ["type", "args"], "period": "PT1H", "on_conflict": "reject"}
    assert job.meta["tags"] == ["quarterly", "finance"]
    wire = job.to_wire()
    assert wire["max_attempts"] == 5
    assert wire["timeout_ms"] == 300_000
    assert wire["unique"]["on_conflict"] == "reject"


# --------------------------------------------------------------------------- options


@pytest.mark.parametrize(
    ("name", "value", "attribute", "expected"),
    [
        ("queue", "emails", "queue", "emails"),
        ("priority", 5, "priority", 5),
        ("priority", "high", "priority", 10),
        ("priority", "LOW", "priority", -10),
        ("timeout_ms", 60_000, "timeout_ms", 60_000),
        ("tags", ["a", "b"], "tags", ["a", "b"]),
        ("visibility_timeout_ms", 5_000, "visibility_timeout_ms", 5_000),
        ("visibility_timeout", "PT45S", "visibility_timeout_ms", 45_000),
        ("unique", {"keys": ["args"]}, "unique", {"keys": ["args"]}),
        ("expires_at", FUTURE, "expires_at", parse_timestamp(FUTURE, "x")),
        ("retry", {"max_attempts": 7}, "retry", RetryPolicy(max_attempts=7)),
        ("retry_policy", {"max_attempts": 8}, "retry", RetryPolicy(max_attempts=8)),
    ],
)
def test_options_object_or_top_level(name: str, value: Any, attribute: str, expected: Any) -> None:
    assert getattr(enqueue(options={name: value}), attribute) == expected
    assert getattr(enqueue(**{name: value}), attribute) == expected


@pytest.mark.parametrize(
    ("name", "top", "inner", "attribute"),
    [
        ("queue", "top-level", "from-options", "queue"),
        ("priority", -5, 7, "priority"),
        ("timeout_ms", 1_000, 2_000, "timeout_ms"),
        ("tags", ["top"], ["inner"], "tags"),
    ],
)
def test_options_win_over_top_level(name: str, top: Any, inner: Any, attribute: str) -> None:
    job = enqueue(options={name: inner}, **{name: top})
    assert getattr(job, attribute) == inner
    assert name not in job.extra


def test_null_options_and_meta_are_defaults() -> None:
    job = enqueue(options=None, meta=None)
    assert job.queue == "default"
    assert job.meta == {}


def test_top_level_timeout_in_seconds() -> None:
    assert enqueue(timeout=30).timeout_ms == 30_000
    assert enqueue(timeout=0).timeout_ms == 0
    assert enqueue(timeout=30, options={"timeout_ms": 5}).timeout_ms == 5


# --------------------------------------------------------------------------- scheduling


@pytest.mark.parametrize("name", ["delay_until", "scheduled_at"])
@pytest.mark.parametrize("where", ["options", "top"])
def test_future_schedule_is_scheduled(name: str, where: str) -> None:
    job = enqueue(options={name: FUTURE}) if where == "options" else enqueue(**{name: FUTURE})
    assert job.state is State.SCHEDULED
    assert job.scheduled_at == parse_timestamp(FUTURE, "x")
    assert job.enqueued_at is None
    assert job.created_at == NOW
    assert job.to_wire()["scheduled_at"] == "2030-01-01T00:00:00Z"  # echoed as the client wrote it


@pytest.mark.parametrize("name", ["delay_until", "scheduled_at"])
@pytest.mark.parametrize("when", [PAST, format_ms(NOW)])
def test_past_or_present_schedule_is_available(name: str, when: str) -> None:
    job = enqueue(options={name: when})
    assert job.state is State.AVAILABLE
    assert job.enqueued_at == NOW
    assert job.scheduled_at == parse_timestamp(when, "x")


def test_one_millisecond_in_the_future_is_scheduled() -> None:
    assert enqueue(options={"scheduled_at": format_ms(NOW + 1)}).state is State.SCHEDULED


def test_scheduled_at_with_offset() -> None:
    job = enqueue(options={"scheduled_at": "2026-01-01T02:00:05+02:00"})
    assert job.scheduled_at == NOW + 5_000
    assert job.state is State.SCHEDULED


def test_relative_schedule() -> None:
    job = enqueue(options={"delay_until": "+PT5S"})
    assert job.scheduled_at == NOW + 5_000
    assert job.state is State.SCHEDULED
    assert enqueue(scheduled_at="+PT1H30M").scheduled_at == NOW + 5_400_000
    now_job = enqueue(options={"delay_until": "+PT0S"})
    assert now_job.state is State.AVAILABLE
    assert now_job.scheduled_at == NOW


@pytest.mark.parametrize("value", ["+5S", "+", "+P1Y", "+PT", "+ PT5S"])
def test_bad_relative_schedule(value: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        enqueue(options={"delay_until": value})
    assert "scheduled_at" in info.value.message


def test_scheduled_at_wins_over_delay_until() -> None:
    job = enqueue(options={"scheduled_at": FUTURE, "delay_until": PAST})
    assert job.state is State.SCHEDULED


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"scheduled_at": "2030-01-01T00:00:00"}, "scheduled_at"),
        ({"delay_until": "2030-01-01T00:00:00.000"}, "scheduled_at"),
        ({"expires_at": "2030-01-01T00:00:00"}, "expires_at"),
        ({"scheduled_at": "2030-01-01"}, "scheduled_at"),
        ({"scheduled_at": 1893456000000}, "scheduled_at"),
        ({"expires_at": "tomorrow"}, "expires_at"),
    ],
)
def test_timestamps_without_timezone_are_rejected(options: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        enqueue(options=options)
    assert field in info.value.message
    assert info.value.details["field"] == field


# --------------------------------------------------------------------------- pending


def test_pending_flag() -> None:
    job = enqueue(options={"pending": True})
    assert job.state is State.PENDING
    assert job.enqueued_at is None
    assert job.created_at == NOW
    assert enqueue(pending=True).state is State.PENDING


def test_pending_wins_over_future_schedule() -> None:
    job = enqueue(options={"pending": True, "delay_until": FUTURE})
    assert job.state is State.PENDING
    assert job.scheduled_at == parse_timestamp(FUTURE, "x")


def test_pending_false_is_available() -> None:
    assert enqueue(options={"pending": False}).state is State.AVAILABLE


@pytest.mark.parametrize("value", ["true", 1, [], {}])
def test_pending_must_be_boolean(value: Any) -> None:
    with pytest.raises(InvalidRequest) as info:
        enqueue(options={"pending": value})
    assert info.value.details["field"] == "pending"


# --------------------------------------------------------------------------- meta


def test_options_metadata_merges_into_meta() -> None:
    job = enqueue(
        meta={"trace_id": "t1", "shared": "from-meta"},
        options={"metadata": {"tenant_id": "acme", "shared": "from-options"}},
    )
    # On a key clash the envelope's own `meta` wins (implementation choice).
    assert job.meta == {"trace_id": "t1", "tenant_id": "acme", "shared": "from-meta"}
    assert job.to_wire()["meta"] == job.meta


def test_options_metadata_alone() -> None:
    assert enqueue(options={"metadata": {"a": 1}}).meta == {"a": 1}


def test_metadata_and_meta_must_be_objects() -> None:
    with pytest.raises(InvalidRequest) as info:
        enqueue(options={"metadata": ["a"]})
    assert info.value.details["field"] == "options.metadata"
    with pytest.raises(InvalidRequest) as info:
        enqueue(meta="x")
    assert info.value.details["field"] == "meta"


# --------------------------------------------------------------------------- unknown / system fields


def test_unknown_top_level_fields_are_preserved() -> None:
    unknown = {
        "x_custom_field": "custom_value",
        "x_future_spec_attribute": {"nested": True, "version": "2.0.0"},
        "x_numeric_extension": 42,
    }
    job = enqueue(**unknown)
    assert job.extra == unknown
    wire = job.to_wire()
    for key, value in unknown.items():
        assert wire[key] == value
    assert Job.from_record(job.to_record()).to_wire() == wire


def test_unknown_fields_cannot_override_envelope_fields_on_the_wire() -> None:
    job = enqueue(x_state="weird")
    wire = job.to_wire()
    assert wire["state"] == "available"
    assert wire["x_state"] == "weird"


SYSTEM_MANAGED_BODY = {
    "state": "completed",
    "attempt": 7,
    "created_at": "2020-01-01T00:00:00Z",
    "enqueued_at": "2020-01-01T00:00:00Z",
    "started_at": "2020-01-01T00:00:00Z",
    "completed_at": "2020-01-01T00:00:00Z",
    "cancelled_at": "2020-01-01T00:00:00Z",
    "discarded_at": "2020-01-01T00:00:00Z",
    "error": {"type": "forged", "message": "forged"},
    "errors": [{"type": "forged"}],
    "result": {"forged": True},
    "max_attempts": 99,
    "next_attempt_at": "2020-01-01T00:00:00Z",
    "retry_delay_ms": 5,
    "worker_id": "forged-worker",
    "visibility_expires_at": "2020-01-01T00:00:00Z",
}


def test_system_managed_fields_from_the_client_are_ignored() -> None:
    job = enqueue(**SYSTEM_MANAGED_BODY)
    assert job == enqueue(id=job.id)
    assert job.state is State.AVAILABLE
    assert job.attempt == 0
    assert job.created_at == NOW
    assert job.enqueued_at == NOW
    assert job.started_at is None
    assert job.completed_at is None
    assert job.error is None
    assert job.errors == ()
    assert job.has_result is False
    assert job.retry.max_attempts == 3
    assert job.worker_id is None
    assert job.extra == {}
    wire = job.to_wire()
    assert "result" not in wire
    assert "error" not in wire
    assert wire["max_attempts"] == 3


# --------------------------------------------------------------------------- invalid inputs

ARGS = ["user@example.com", "welcome"]
DROP = object()  # remove the key from the request

INVALID: list[tuple[str, dict[str, Any], type[OJSError], str]] = [
    # L0-ENV invalid-args-not-array / invalid-missing-args
    ("args-object", {"type": "email.send", "args": {"email": "u"}}, InvalidRequest, "args"),
    ("args-string", {"type": "email.send", "args": "user@example.com"}, InvalidRequest, "args"),
    ("args-number", {"type": "email.send", "args": 42}, InvalidRequest, "args"),
    ("args-bool", {"type": "email.send", "args": True}, InvalidRequest, "args"),
    ("args-null", {"type": "email.send", "args": None}, InvalidRequest, "args"),
    ("args-missing", {"args": DROP}, InvalidRequest, "args"),
    # invalid-missing-type / invalid-type-format
    ("type-missing", {"type": DROP}, InvalidRequest, "type"),
    ("type-null", {"type": None, "args": ARGS}, InvalidRequest, "type"),
    ("type-uppercase", {"type": "Email.Send", "args": ARGS}, InvalidRequest, "type"),
    ("type-space", {"type": "email send", "args": ARGS}, InvalidRequest, "type"),
    ("type-leading-digit", {"type": "1email.send", "args": ARGS}, InvalidRequest, "type"),
    ("type-empty", {"type": "", "args": ARGS}, InvalidRequest, "type"),
    ("type-special", {"type": "email@send!", "args": ARGS}, InvalidRequest, "type"),
    ("type-segment-digit", {"type": "email.2send", "args": ARGS}, InvalidRequest, "type"),
    ("type-empty-segment", {"type": "email..send", "args": ARGS}, InvalidRequest, "type"),
    ("type-leading-dot", {"type": ".email", "args": ARGS}, InvalidRequest, "type"),
    ("type-trailing-dot", {"type": "email.", "args": ARGS}, InvalidRequest, "type"),
    ("type-newline", {"type": "email.send\n", "args": ARGS}, InvalidRequest, "type"),
    ("type-number", {"type": 7, "args": ARGS}, InvalidRequest, "type"),
    ("type-too-long", {"type": "a" * 256, "args": ARGS}, InvalidRequest, "type"),
    # invalid-queue-format
    ("queue-uppercase", {"options": {"queue": "Default"}}, InvalidRequest, "queue"),
    ("queue-bang", {"options": {"queue": "my_queue!"}}, InvalidRequest, "queue"),
    ("queue-hyphen", {"options": {"queue": "-invalid"}}, InvalidRequest, "queue"),
    ("queue-space", {"options": {"queue": "my queue"}}, InvalidRequest, "queue"),
    ("queue-empty", {"options": {"queue": ""}}, InvalidRequest, "queue"),
    ("queue-dot-first", {"options": {"queue": ".q"}}, InvalidRequest, "queue"),
    ("queue-newline", {"options": {"queue": "default\n"}}, InvalidRequest, "queue"),
    ("queue-number", {"options": {"queue": 5}}, InvalidRequest, "queue"),
    ("queue-too-long", {"options": {"queue": "q" * 129}}, InvalidRequest, "queue"),
    ("queue-top-level", {"queue": "Bad"}, InvalidRequest, "queue"),
    # invalid-id-format
    ("id-uuidv4", {"id": "550e8400-e29b-41d4-a716-446655440000"}, InvalidRequest, "id"),
    ("id-plain", {"id": "not-a-uuid-at-all"}, InvalidRequest, "id"),
    ("id-uppercase", {"id": "019461A8-1A2B-7C3D-8E4F-5A6B7C8D9E0F"}, InvalidRequest, "id"),
    ("id-empty", {"id": ""}, InvalidRequest, "id"),
    ("id-no-hyphens", {"id": "019461a81a2b7c3d8e4f5a6b7c8d9e0f"}, InvalidRequest, "id"),
    ("id-bad-variant", {"id": "019461a8-1a2b-7c3d-0e4f-5a6b7c8d9e0f"}, InvalidRequest, "id"),
    ("id-newline", {"id": "019461a8-1a2b-7c3d-8e4f-5a6b7c8d9e0f\n"}, InvalidRequest, "id"),
    ("id-number", {"id": 12345}, InvalidRequest, "id"),
    # invalid-priority-out-of-range: a rule on a well-typed value -> 422
    ("priority-101", {"options": {"priority": 101}}, ValidationFailed, "priority"),
    ("priority--101", {"options": {"priority": -101}}, ValidationFailed, "priority"),
    ("priority-999999", {"options": {"priority": 999999}}, ValidationFailed, "priority"),
    ("priority-string", {"options": {"priority": "urgent"}}, InvalidRequest, "priority"),
    ("priority-float", {"options": {"priority": 1.5}}, InvalidRequest, "priority"),
    ("priority-bool", {"options": {"priority": True}}, InvalidRequest, "priority"),
    # other option types
    ("options-list", {"options": ["queue"]}, InvalidRequest, "options"),
    ("tags-string", {"options": {"tags": "a,b"}}, InvalidRequest, "tags"),
    ("tags-numbers", {"options": {"tags": [1]}}, InvalidRequest, "tags"),
    ("unique-list", {"options": {"unique": ["args"]}}, InvalidRequest, "unique"),
    ("schema-number", {"schema": 1}, InvalidRequest, "schema"),
    ("timeout-negative", {"timeout": -1}, InvalidRequest, "timeout"),
    ("timeout-float", {"timeout": 1.5}, InvalidRequest, "timeout"),
    ("timeout-ms-string", {"options": {"timeout_ms": "60s"}}, InvalidRequest, "timeout_ms"),
    ("timeout-ms-negative", {"options": {"timeout_ms": -5}}, InvalidRequest, "timeout_ms"),
    ("visibility-zero", {"options": {"visibility_timeout_ms": 0}}, InvalidRequest, "visibility_timeout_ms"),
    ("visibility-bad", {"options": {"visibility_timeout": "30s"}}, InvalidRequest, "visibility_timeout"),
    # retry policy validation surfaces unchanged
    ("retry-coefficient", {"options": {"retry": {"backoff_coefficient": 0.5}}}, ValidationFailed, "retry.backoff_coefficient"),
    ("retry-attempts", {"options": {"retry": {"max_attempts": -1}}}, ValidationFailed, "retry.max_attempts"),
    ("retry-duration", {"options": {"retry": {"initial_interval": "1S"}}}, InvalidRequest, "retry.initial_interval"),
    ("retry-not-object", {"options": {"retry": 3}}, InvalidRequest, "retry"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("body", "error", "field"), [case[1:] for case in INVALID], ids=[case[0] for case in INVALID]
)
def test_invalid_enqueue_is_rejected(
    body: dict[str, Any], error: type[OJSError], field: str
) -> None:
    request = {"type": "email.send", "args": ARGS, **body}
    request = {key: value for key, value in request.items() if value is not DROP}
    with pytest.raises(OJSError) as info:
        parse_enqueue(request, NOW)
    err = info.value
    assert type(err) is error
    assert err.details["field"] == field
    assert err.retryable is False
    assert 400 <= err.status <= 422
    assert err.status == (422 if error is ValidationFailed else 400)
    wire = err.to_wire()["error"]
    assert wire["code"]
    assert wire["message"]


@pytest.mark.parametrize("body", [None, [], "job", 42, True])
def test_body_must_be_an_object(body: object) -> None:
    with pytest.raises(InvalidRequest):
        parse_enqueue(body, NOW)


@pytest.mark.parametrize(
    # Hyphens are accepted although ojs-core §5.1 says [a-z][a-z0-9_]*: the official
    # conformance suites enqueue types such as "retry.test.linear-backoff".
    "type_name",
    ["email.send", "a", "data.etl.transform", "a_b.c_d1", "x9.y9", "retry.test.linear-backoff"],
)
def test_valid_types(type_name: str) -> None:
    assert enqueue(type=type_name).type == type_name


@pytest.mark.parametrize("queue", ["default", "q", "0", "emails.high", "eu-west-1", "q" * 128])
def test_valid_queues(queue: str) -> None:
    assert enqueue(options={"queue": queue}).queue == queue


@pytest.mark.parametrize("priority", [-100, -10, 0, 10, 100])
def test_priority_range_boundaries(priority: int) -> None:
    assert enqueue(options={"priority": priority}).priority == priority


def test_priority_error_details() -> None:
    with pytest.raises(ValidationFailed) as info:
        enqueue(options={"priority": 101})
    assert info.value.status == 422
    assert info.value.details == {
        "field": "priority",
        "received": 101,
        "minimum": -100,
        "maximum": 100,
    }


# =========================================================================== records


def rich_job() -> Job:
    return enqueue(
        meta={"trace_id": "abc"},
        schema="urn:ojs:schema:email.send:v1",
        x_extension={"k": [1, 2]},
        options={
            "queue": "emails",
            "priority": -3,
            "timeout_ms": 12_000,
            "visibility_timeout_ms": 9_000,
            "delay_until": FUTURE,
            "expires_at": "2031-01-01T00:00:00Z",
            "tags": ["t1"],
            "unique": {"keys": ["args"]},
            "retry": {
                "max_attempts": 4,
                "initial_interval": "PT0.25S",
                "backoff_coefficient": 3,
                "max_interval": "PT90S",
                "jitter": False,
                "non_retryable_errors": ["auth.*"],
                "on_exhaustion": "dead_letter",
                "backoff_strategy": "polynomial",
            },
        },
    )


def round_trip(job: Job) -> Job:
    return Job.from_record(json.loads(json.dumps(job.to_record())))


@pytest.mark.parametrize("state", list(State))
def test_record_round_trip_in_every_state(state: State) -> None:
    job = in_state(state)
    assert round_trip(job) == job
    assert round_trip(job).to_wire() == job.to_wire()


def test_record_round_trip_of_a_rich_job() -> None:
    job = rich_job()
    again = round_trip(job)
    assert again == job
    assert again.retry.backoff is Backoff.POLYNOMIAL
    assert again.retry.on_exhaustion is Exhaustion.DEAD_LETTER
    assert again.extra == {"x_extension": {"k": [1, 2]}}


def test_record_keeps_bookkeeping_clients_never_see() -> None:
    job = lifecycle.claim(enqueue(), NOW + 1, "w", 5_000)
    job.seq = 17
    record = job.to_record()
    assert record["version"] == 1
    assert record["seq"] == 17
    assert record["lease_expires_at"] == NOW + 5_001
    assert record["dead_letter"] is False
    assert record["state"] == "active"
    again = Job.from_record(record)
    assert (again.version, again.seq, again.lease_expires_at) == (1, 17, NOW + 5_001)
    wire = job.to_wire()
    assert "version" not in wire
    assert "seq" not in wire
    assert wire["visibility_expires_at"] == format_ms(NOW + 5_001)


def test_result_none_is_kept_distinct_from_no_result() -> None:
    with_none = lifecycle.ack(active(), NOW + 50, None, has_result=True)
    without = lifecycle.ack(active(), NOW + 50)
    assert with_none.has_result is True
    assert with_none.result is None
    assert without.has_result is False
    assert "result" in with_none.to_record()
    assert with_none.to_record()["result"] is None
    assert "result" not in without.to_record()
    assert with_none.to_wire()["result"] is None
    assert "result" not in without.to_wire()
    assert round_trip(with_none).has_result is True
    assert round_trip(with_none).result is None
    assert round_trip(without).has_result is False
    assert round_trip(with_none) == with_none
    assert round_trip(without) == without


@pytest.mark.parametrize("result", [0, False, "", [], {}, {"rows": 3}, [1, "two"], 1.5])
def test_falsy_and_structured_results_survive(result: Any) -> None:
    job = lifecycle.ack(active(), NOW + 50, result, has_result=True)
    assert round_trip(job).result == result
    assert job.to_wire()["result"] == result


def test_clear_result() -> None:
    job = lifecycle.ack(active(), NOW + 50, 5, has_result=True)
    job.clear_result()
    assert job.has_result is False
    assert "result" not in job.to_record()


def test_copies_keep_the_no_result_marker() -> None:
    job = enqueue()
    assert copy.copy(job).has_result is False
    assert copy.deepcopy(job).has_result is False
    assert copy.deepcopy(job) == job


# =========================================================================== lifecycle


def test_claim() -> None:
    job = enqueue(options={"visibility_timeout_ms": 7_000})
    claimed = lifecycle.claim(job, NOW + 100, "worker-9", None)
    assert claimed.state is State.ACTIVE
    assert claimed.attempt == 1
    assert claimed.started_at == NOW + 100
    assert claimed.worker_id == "worker-9"
    assert claimed.lease_expires_at == NOW + 100 + 7_000
    assert claimed.version == job.version + 1
    explicit = lifecycle.claim(job, NOW + 100, None, 2_000)
    assert explicit.lease_expires_at == NOW + 2_100
    assert explicit.worker_id is None


def test_claim_again_after_retry_increments_attempt() -> None:
    job = lifecycle.fail(active(), NOW + 20, {"type": "boom"})
    job = lifecycle.promote(job, NOW + 2_000)
    again = lifecycle.claim(job, NOW + 2_001, "w2", None)
    assert again.attempt == 2
    assert again.started_at == NOW + 2_001
    assert again.worker_id == "w2"


@pytest.mark.parametrize("state", [s for s in State if s is not State.AVAILABLE])
def test_claim_only_from_available(state: State) -> None:
    with pytest.raises(Conflict):
        lifecycle.claim(in_state(state), NOW + 100, "w", None)


def test_timeout_at() -> None:
    job = active(options={"timeout_ms": 4_000})
    assert job.timeout_at == NOW + 10 + 4_000
    assert active().timeout_at is None
    assert enqueue(options={"timeout_ms": 4_000}).timeout_at is None
    assert lifecycle.ack(job, NOW + 20).timeout_at is None


def test_extend_lease() -> None:
    job = active()
    beat = lifecycle.extend_lease(job, NOW + 1_000, 60_000)
    assert beat.state is State.ACTIVE
    assert beat.lease_expires_at == NOW + 61_000
    assert beat.version == job.version + 1
    default = lifecycle.extend_lease(job, NOW + 1_000, None)
    assert default.lease_expires_at == NOW + 1_000 + DEFAULT_VISIBILITY_TIMEOUT_MS


@pytest.mark.parametrize("state", [s for s in State if s is not State.ACTIVE])
def test_extend_lease_only_when_active(state: State) -> None:
    with pytest.raises(Conflict) as info:
        lifecycle.extend_lease(in_state(state), NOW + 1_000, None)
    assert info.value.details["current_state"] == state.value


def test_ack() -> None:
    job = active()
    done = lifecycle.ack(job, NOW + 500, {"sent": True}, has_result=True)
    assert done.state is State.COMPLETED
    assert done.completed_at == NOW + 500
    assert done.result == {"sent": True}
    assert done.error is None
    assert done.next_attempt_at is None
    assert done.worker_id is None
    assert done.lease_expires_at is None
    assert done.attempt == 1
    assert done.version == job.version + 1
    wire = done.to_wire()
    assert wire["completed_at"] == format_ms(NOW + 500)
    assert "visibility_expires_at" not in wire


def test_ack_after_a_failure_clears_error_but_keeps_history() -> None:
    job = lifecycle.fail(active(), NOW + 20, {"type": "boom", "message": "first"})
    assert job.error is not None
    job = lifecycle.claim(lifecycle.promote(job, NOW + 2_000), NOW + 2_001, "w", None)
    done = lifecycle.ack(job, NOW + 2_500)
    assert done.error is None
    assert "error" not in done.to_wire()
    assert [e["message"] for e in done.errors] == ["first"]
    assert done.attempt == 2


@pytest.mark.parametrize("state", [s for s in State if s is not State.ACTIVE])
def test_ack_only_from_active(state: State) -> None:
    with pytest.raises(Conflict):
        lifecycle.ack(in_state(state), NOW + 500)


# --------------------------------------------------------------------------- fail


REPORT = {
    "type": "smtp.connection_refused",
    "code": "handler_error",
    "message": "Connection refused",
    "retryable": True,
    "details": {"host": "smtp.example.com"},
    "backtrace": ["at send (smtp.js:42)"],
}


def test_fail_with_attempts_left_is_retryable() -> None:
    job = active()
    failed = lifecycle.fail(job, NOW + 1_000, REPORT)
    assert failed.state is State.RETRYABLE
    assert failed.retry_delay_ms == 1_000
    assert failed.next_attempt_at == NOW + 1_000 + 1_000
    assert failed.attempt == 1
    assert failed.completed_at is None
    assert failed.discarded_at is None
    assert failed.worker_id is None
    assert failed.lease_expires_at is None
    assert failed.version == job.version + 1
    assert len(failed.errors) == 1
    entry = failed.errors[0]
    assert entry["attempt"] == 1
    assert entry["type"] == "smtp.connection_refused"
    assert entry["code"] == "handler_error"
    assert entry["message"] == "Connection refused"
    assert entry["occurred_at"] == format_ms(NOW + 1_000)
    assert entry["details"] == {"host": "smtp.example.com"}
    assert entry["backtrace"] == ["at send (smtp.js:42)"]
    assert entry["retryable"] is True
    assert failed.error == {k: v for k, v in entry.items() if k != "timestamp"}
    wire = failed.to_wire()
    assert wire["state"] == "retryable"
    assert wire["retry_delay_ms"] == 1_000
    assert wire["next_attempt_at"] == format_ms(NOW + 2_000)
    assert wire["error"]["type"] == "smtp.connection_refused"


def test_successive_failures_grow_the_delay_and_the_history() -> None:
    job = active({"max_attempts": 5})
    delays = []
    for attempt in range(1, 4):
        job = lifecycle.fail(
            job, NOW + attempt * 10_000, {"type": "boom", "message": f"#{attempt}"}
        )
        delays.append(job.retry_delay_ms)
        assert [e["attempt"] for e in job.errors] == list(range(1, attempt + 1))
        job = lifecycle.claim(lifecycle.promote(job, job.next_attempt_at or 0), NOW, "w", None)
    assert delays == [1_000, 2_000, 4_000]


def test_fail_uses_the_given_rng_for_jitter() -> None:
    job = lifecycle.claim(enqueue(), NOW, "w", None)  # default policy: jitter on
    a = lifecycle.fail(job, NOW + 5, REPORT, random.Random(11))
    b = lifecycle.fail(job, NOW + 5, REPORT, random.Random(11))
    assert a.retry_delay_ms == b.retry_delay_ms
    assert 500 <= (a.retry_delay_ms or 0) < 1_500


@pytest.mark.parametrize(
    ("on_exhaustion", "dead_letter"), [("discard", False), ("dead_letter", True)]
)
def test_fail_on_the_last_attempt_discards(on_exhaustion: str, dead_letter: bool) -> None:
    job = active({"max_attempts": 1, "on_exhaustion": on_exhaustion})
    failed = lifecycle.fail(job, NOW + 1_000, REPORT)
    assert failed.state is State.DISCARDED
    assert failed.completed_at == NOW + 1_000
    assert failed.discarded_at == NOW + 1_000
    assert failed.next_attempt_at is None
    assert failed.dead_letter is dead_letter
    assert failed.errors[-1]["attempt"] == 1
    assert failed.error is not None
    wire = failed.to_wire()
    assert wire["discarded_at"] == wire["completed_at"] == format_ms(NOW + 1_000)


def test_fail_after_max_attempts_reached_through_retries() -> None:
    job = active({"max_attempts": 2, "on_exhaustion": "dead_letter"})
    job = lifecycle.fail(job, NOW + 100, REPORT)
    assert job.state is State.RETRYABLE
    job = lifecycle.claim(lifecycle.promote(job, NOW + 2_000), NOW + 2_000, "w", None)
    job = lifecycle.fail(job, NOW + 3_000, REPORT)
    assert job.state is State.DISCARDED
    assert job.dead_letter is True
    assert job.attempt == 2
    assert len(job.errors) == 2


@pytest.mark.parametrize(
    ("code", "dead_letter"), [("DEAD_LETTER", True), ("DISCARD", False), ("FAIL", False)]
)
@pytest.mark.parametrize("on_exhaustion", ["discard", "dead_letter"])
def test_handler_codes_override_remaining_attempts(
    code: str, dead_letter: bool, on_exhaustion: str
) -> None:
    job = active({"max_attempts": 10, "on_exhaustion": on_exhaustion})
    failed = lifecycle.fail(job, NOW + 1, {"type": "x", "message": "m", "code": code})
    assert failed.state is State.DISCARDED
    assert failed.dead_letter is dead_letter
    assert failed.errors[-1]["code"] == code


def test_handler_code_retry_follows_the_policy() -> None:
    failed = lifecycle.fail(active(), NOW + 1, {"type": "x", "code": "RETRY"})
    assert failed.state is State.RETRYABLE


def test_worker_retryable_false_discards() -> None:
    failed = lifecycle.fail(active({"max_attempts": 10}), NOW + 1, {**REPORT, "retryable": False})
    assert failed.state is State.DISCARDED


def test_non_retryable_type_discards_per_on_exhaustion() -> None:
    retry = {"max_attempts": 10, "non_retryable_errors": ["smtp.*"], "on_exhaustion": "dead_letter"}
    failed = lifecycle.fail(active(retry), NOW + 1, REPORT)
    assert failed.state is State.DISCARDED
    assert failed.dead_letter is True


def test_error_class_in_details_is_matched_conformance_prefix_case() -> None:
    job = active({"max_attempts": 5, "non_retryable_errors": ["Auth.*"]})
    report = {
        "code": "handler_error",
        "message": "Invalid credentials",
        "details": {"error_class": "Auth.TokenExpired"},
    }
    failed = lifecycle.fail(job, NOW + 1, report)
    assert failed.state is State.DISCARDED
    assert failed.errors[-1]["type"] == "Auth.TokenExpired"
    assert failed.errors[-1]["code"] == "handler_error"


@pytest.mark.parametrize(
    ("report", "expected"),
    [
        ({"type": "T", "details": {"error_class": "E"}, "code": "C"}, "T"),
        ({"type": "", "details": {"error_class": "E"}, "code": "C"}, "E"),
        ({"details": {"error_class": "E"}, "code": "C"}, "E"),
        ({"details": {"error_class": 5}, "code": "C"}, "C"),
        ({"details": "E", "code": "C"}, "C"),
        ({"code": "C"}, "C"),
        ({"type": 3, "code": "C"}, "C"),
        ({}, "handler_error"),
        ({"code": ""}, "handler_error"),
    ],
)
def test_error_type_precedence(report: dict[str, Any], expected: str) -> None:
    assert lifecycle.error_type_of(report) == expected
    failed = lifecycle.fail(active(), NOW + 1, report)
    assert failed.errors[-1]["type"] == expected


def test_error_entry_defaults_for_an_empty_report() -> None:
    failed = lifecycle.fail(active(), NOW + 1, {})
    entry = failed.errors[-1]
    assert entry["code"] == "handler_error"
    assert entry["message"] == ""
    assert entry["type"] == "handler_error"
    assert entry["attempt"] == 1
    assert "details" not in entry


def test_error_history_is_capped_keeping_the_newest() -> None:
    job = active()
    job.errors = [{"attempt": 0, "message": f"old {i}"} for i in range(lifecycle.MAX_ERROR_HISTORY)]
    failed = lifecycle.fail(job, NOW + 1, {"type": "boom", "message": "newest"})
    assert len(failed.errors) == lifecycle.MAX_ERROR_HISTORY >= 10
    assert failed.errors[-1]["message"] == "newest"
    assert failed.errors[0]["message"] == "old 1"


@pytest.mark.parametrize("state", [s for s in State if s is not State.ACTIVE])
def test_fail_only_from_active(state: State) -> None:
    with pytest.raises(Conflict):
        lifecycle.fail(in_state(state), NOW + 1, REPORT)


# --------------------------------------------------------------------------- requeue / lease / timeout


def test_requeue_gives_the_attempt_back() -> None:
    job = active()
    back = lifecycle.requeue(job, NOW + 50)
    assert back.state is State.AVAILABLE
    assert back.attempt == job.attempt - 1 == 0
    assert back.enqueued_at == NOW + 50
    assert back.worker_id is None
    assert back.lease_expires_at is None
    assert back.errors == ()
    assert back.version == job.version + 1


def test_requeue_never_goes_below_zero() -> None:
    job = active()
    job.attempt = 0
    assert lifecycle.requeue(job, NOW).attempt == 0


@pytest.mark.parametrize("state", [s for s in State if s is not State.ACTIVE])
def test_requeue_only_from_active(state: State) -> None:
    with pytest.raises(Conflict):
        lifecycle.requeue(in_state(state), NOW)


def test_lease_expired_returns_to_available_with_an_error() -> None:
    job = active({"max_attempts": 3})
    expired = lifecycle.lease_expired(job, NOW + 40_000)
    assert expired.state is State.AVAILABLE
    assert expired.attempt == 1  # the attempt stays spent
    assert expired.enqueued_at == NOW + 40_000
    assert expired.started_at is None  # ojs-core §6.3: "Clear started_at"
    assert expired.worker_id is None
    assert expired.lease_expires_at is None
    assert expired.version == job.version + 1
    assert expired.error is not None
    assert expired.error["code"] == "timeout"
    assert expired.error["type"] == "visibility_timeout"
    assert expired.error["attempt"] == 1
    assert len(expired.errors) == 1
    assert expired.errors[0]["occurred_at"] == format_ms(NOW + 40_000)
    again = lifecycle.claim(expired, NOW + 40_001, "w2", None)
    assert again.attempt == 2


@pytest.mark.parametrize(
    ("on_exhaustion", "dead_letter"), [("discard", False), ("dead_letter", True)]
)
def test_lease_expired_on_the_last_attempt_discards(on_exhaustion: str, dead_letter: bool) -> None:
    job = active({"max_attempts": 1, "on_exhaustion": on_exhaustion})
    expired = lifecycle.lease_expired(job, NOW + 40_000)
    assert expired.state is State.DISCARDED
    assert expired.dead_letter is dead_letter
    assert expired.discarded_at == expired.completed_at == NOW + 40_000
    assert expired.errors[-1]["type"] == "visibility_timeout"


@pytest.mark.parametrize("state", [s for s in State if s is not State.ACTIVE])
def test_lease_expired_only_from_active(state: State) -> None:
    with pytest.raises(Conflict):
        lifecycle.lease_expired(in_state(state), NOW)


def test_execution_timeout_is_a_failure_of_type_timeout() -> None:
    job = active(options={"timeout_ms": 1_000})
    timed_out = lifecycle.execution_timed_out(job, NOW + 2_000)
    assert timed_out.state is State.RETRYABLE
    assert timed_out.errors[-1]["type"] == "timeout"
    assert timed_out.errors[-1]["code"] == "timeout"
    assert "1000" in timed_out.errors[-1]["message"]
    assert timed_out.next_attempt_at == NOW + 2_000 + 1_000


def test_execution_timeout_on_the_last_attempt_or_non_retryable_discards() -> None:
    last = lifecycle.execution_timed_out(active({"max_attempts": 1}), NOW + 2_000)
    assert last.state is State.DISCARDED
    listed = active({"max_attempts": 5, "non_retryable_errors": ["timeout"]})
    assert lifecycle.execution_timed_out(listed, NOW + 2_000).state is State.DISCARDED


def test_execution_timeout_only_from_active() -> None:
    with pytest.raises(Conflict):
        lifecycle.execution_timed_out(in_state(State.COMPLETED), NOW)


# --------------------------------------------------------------------------- cancel / promote / activate / expire


NON_TERMINAL = [s for s in State if not s.terminal]
TERMINAL_STATES = [s for s in State if s.terminal]


@pytest.mark.parametrize("state", NON_TERMINAL)
def test_cancel_from_each_non_terminal_state(state: State) -> None:
    job = in_state(state)
    cancelled = lifecycle.cancel(job, NOW + 99)
    assert cancelled.state is State.CANCELLED
    assert cancelled.cancelled_at == NOW + 99
    assert cancelled.next_attempt_at is None
    assert cancelled.worker_id is None
    assert cancelled.lease_expires_at is None
    assert cancelled.version == job.version + 1
    assert cancelled.to_wire()["cancelled_at"] == format_ms(NOW + 99)


@pytest.mark.parametrize("state", TERMINAL_STATES)
def test_cancel_from_a_terminal_state_conflicts(state: State) -> None:
    with pytest.raises(Conflict) as info:
        lifecycle.cancel(in_state(state), NOW + 99)
    assert info.value.status == 409
    assert info.value.details["current_state"] == state.value


@pytest.mark.parametrize("state", [State.SCHEDULED, State.RETRYABLE])
def test_promote(state: State) -> None:
    job = in_state(state)
    promoted = lifecycle.promote(job, NOW + 7_000)
    assert promoted.state is State.AVAILABLE
    assert promoted.enqueued_at == NOW + 7_000
    assert promoted.next_attempt_at is None


@pytest.mark.parametrize("state", [s for s in State if s not in (State.SCHEDULED, State.RETRYABLE)])
def test_promote_conflicts_elsewhere(state: State) -> None:
    with pytest.raises(Conflict):
        lifecycle.promote(in_state(state), NOW)


def test_activate() -> None:
    activated = lifecycle.activate(in_state(State.PENDING), NOW + 3)
    assert activated.state is State.AVAILABLE
    assert activated.enqueued_at == NOW + 3
    for state in State:
        if state is not State.PENDING:
            with pytest.raises(Conflict):
                lifecycle.activate(in_state(state), NOW)


@pytest.mark.parametrize(
    "state", [State.SCHEDULED, State.AVAILABLE, State.PENDING, State.RETRYABLE]
)
def test_expire(state: State) -> None:
    gone = lifecycle.expire(in_state(state), NOW + 8)
    assert gone.state is State.DISCARDED
    assert gone.discarded_at == NOW + 8
    assert gone.completed_at is None  # it never ran (conformance L2-TTL-001)
    assert gone.error is not None
    assert gone.error["code"] == "expired"


@pytest.mark.parametrize("state", [State.ACTIVE, *TERMINAL_STATES])
def test_expire_conflicts_once_started_or_terminal(state: State) -> None:
    with pytest.raises(Conflict):
        lifecycle.expire(in_state(state), NOW)


# --------------------------------------------------------------------------- dead letter retry


def test_retry_dead_letter_resets_the_job() -> None:
    job = active({"max_attempts": 2, "on_exhaustion": "dead_letter"})
    job = lifecycle.fail(job, NOW + 1, REPORT)
    job = lifecycle.claim(lifecycle.promote(job, NOW + 2), NOW + 3, "w", None)
    dead = lifecycle.fail(job, NOW + 4, REPORT)
    assert dead.state is State.DISCARDED
    assert dead.dead_letter is True
    revived = lifecycle.retry_dead_letter(dead, NOW + 100)
    assert revived.state is State.AVAILABLE
    assert revived.attempt == 0
    assert revived.errors == ()
    assert revived.error is None
    assert revived.dead_letter is False
    assert revived.enqueued_at == NOW + 100
    for name in ("started_at", "completed_at", "discarded_at", "next_attempt_at", "retry_delay_ms"):
        assert getattr(revived, name) is None, name
    assert revived.version == dead.version + 1
    assert revived.id == dead.id
    assert revived.retry == dead.retry
    assert lifecycle.claim(revived, NOW + 101, "w", None).attempt == 1


@pytest.mark.parametrize("state", [s for s in State if s is not State.DISCARDED])
def test_retry_dead_letter_only_from_discarded(state: State) -> None:
    with pytest.raises(Conflict):
        lifecycle.retry_dead_letter(in_state(state), NOW)


# --------------------------------------------------------------------------- purity


OPERATIONS: list[tuple[str, State, Any]] = [
    ("claim", State.AVAILABLE, lambda j: lifecycle.claim(j, NOW + 1, "w", None)),
    ("extend_lease", State.ACTIVE, lambda j: lifecycle.extend_lease(j, NOW + 1, 10)),
    ("ack", State.ACTIVE, lambda j: lifecycle.ack(j, NOW + 1, {"r": 1}, has_result=True)),
    ("fail-retry", State.ACTIVE, lambda j: lifecycle.fail(j, NOW + 1, dict(REPORT))),
    ("fail-discard", State.ACTIVE, lambda j: lifecycle.fail(j, NOW + 1, {"code": "DISCARD"})),
    ("requeue", State.ACTIVE, lambda j: lifecycle.requeue(j, NOW + 1)),
    ("lease_expired", State.ACTIVE, lambda j: lifecycle.lease_expired(j, NOW + 1)),
    ("timed_out", State.ACTIVE, lambda j: lifecycle.execution_timed_out(j, NOW + 1)),
    ("cancel", State.ACTIVE, lambda j: lifecycle.cancel(j, NOW + 1)),
    ("promote", State.RETRYABLE, lambda j: lifecycle.promote(j, NOW + 1)),
    ("activate", State.PENDING, lambda j: lifecycle.activate(j, NOW + 1)),
    ("expire", State.SCHEDULED, lambda j: lifecycle.expire(j, NOW + 1)),
    ("retry_dead_letter", State.DISCARDED, lambda j: lifecycle.retry_dead_letter(j, NOW + 1)),
]


@pytest.mark.parametrize(
    ("state", "operation"), [op[1:] for op in OPERATIONS], ids=[op[0] for op in OPERATIONS]
)
def test_operations_never_mutate_their_input_and_bump_the_version(
    state: State, operation: Any
) -> None:
    job = in_state(state)
    job.meta["k"] = ["v"]
    job.errors = [*job.errors, {"attempt": 0, "message": "earlier"}]
    before = copy.deepcopy(job)
    record = json.dumps(job.to_record(), sort_keys=True)
    successor = operation(job)
    assert job == before
    assert json.dumps(job.to_record(), sort_keys=True) == record
    assert successor is not job
    assert successor.version == job.version + 1
    assert successor.id == job.id
    assert successor.seq == job.seq


@pytest.mark.parametrize("state", list(State))
def test_operations_leave_the_input_untouched_whether_accepted_or_rejected(state: State) -> None:
    job = in_state(state)
    before = copy.deepcopy(job)
    for operation in (lifecycle.ack, lifecycle.requeue, lifecycle.promote, lifecycle.activate):
        try:
            operation(job, NOW)
        except Conflict:
            pass
    assert job == before


def test_versions_increase_by_one_per_transition() -> None:
    job = enqueue()
    assert job.version == 0
    job = lifecycle.claim(job, NOW + 1, "w", None)
    job = lifecycle.extend_lease(job, NOW + 2, None)
    job = lifecycle.fail(job, NOW + 3, REPORT)
    job = lifecycle.promote(job, NOW + 4)
    job = lifecycle.claim(job, NOW + 5, "w", None)
    job = lifecycle.ack(job, NOW + 6)
    assert job.version == 6
    assert job.state is State.COMPLETED
    assert job.attempt == 2
