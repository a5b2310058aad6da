"""Enqueue requests to jobs: every rule of ojs-core §5 and the HTTP binding's PUSH body.

Options may come in the HTTP binding's ``options`` object or as the top-level
attributes of the JSON wire format (``queue``, ``priority``, ``scheduled_at``,
…); ``options`` wins when both are given. System-managed attributes sent by
the client are ignored (ojs-core §5.3); unknown attributes are preserved.
"""

from __future__ import annotations

import re
from typing import Any

from .errors import InvalidRequest, ValidationFailed
from .ids import is_uuid7, new_id
from .job import DEFAULT_VISIBILITY_TIMEOUT_MS, SPEC_VERSION, Job
from .rate_policy import check_rate_limit
from .retry import parse_policy
from .states import State
from .timefmt import MAX_DURATION_MS, parse_duration_ms, parse_timestamp
from .unique import parse_unique, unique_key
from .versions import parse_version, split_type

TYPE_PATTERN = re.compile(r"^[a-z][a-z0-9_\-]*(\.[a-z][a-z0-9_\-]*)*$")
QUEUE_PATTERN = re.compile(r"^[a-z0-9][a-z0-9\-.]*$")
MAX_TYPE_LENGTH = 255
MAX_QUEUE_LENGTH = 128
PRIORITY_RANGE = (-100, 100)
NAMED_PRIORITIES = {"high": 10, "normal": 0, "low": -10}

SYSTEM_MANAGED = frozenset(
    {
        "state", "attempt", "created_at", "enqueued_at", "started_at", "completed_at",
        "cancelled_at", "discarded_at", "error", "errors", "result", "max_attempts",
        "next_attempt_at", "retry_delay_ms", "worker_id", "visibility_expires_at", "unique_key",
    }
)  # fmt: skip
_OPTION_NAMES = frozenset(
    {
        "queue", "priority", "timeout_ms", "timeout", "scheduled_at", "delay_until",
        "expires_at", "retry", "retry_policy", "unique", "tags", "visibility_timeout_ms",
        "visibility_timeout", "pending", "metadata", "rate_limit",
    }
)  # fmt: skip
_ENVELOPE_NAMES = frozenset({"specversion", "id", "type", "args", "meta", "schema", "options"})


def _bad(field: str, message: str, received: object = None) -> InvalidRequest:
    details: dict[str, Any] = {"field": field}
    if received is not None:
        details["received"] = (
            type(received).__name__ if isinstance(received, dict | list) else received
        )
    return InvalidRequest(f"'{field}' {message}.", details=details)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def parse_queue_name(value: object, field: str = "queue") -> str:
    if not isinstance(value, str) or not value:
        raise _bad(field, "must be a non-empty string", value)
    if len(value) > MAX_QUEUE_LENGTH:
        raise _bad(field, f"must be at most {MAX_QUEUE_LENGTH} characters")
    if not QUEUE_PATTERN.fullmatch(value):
        raise _bad(
            field,
            "must be lowercase letters, digits, '-' and '.', starting with a letter or digit",
            value,
        )
    return value


def parse_enqueue(body: object, now_ms: int) -> Job:
    """Validate one enqueue request and build the job it asks for."""
    if not isinstance(body, dict):
        raise InvalidRequest(
            "The job must be a JSON object.", details={"received": type(body).__name__}
        )
    options = body.get("options", {})
    if options is None:
        options = {}
    if not isinstance(options, dict):
        raise _bad("options", "must be an object", options)

    # An option may also come as a top-level attribute; the options object wins.
    option = ({**body, **options} if options else body).get

    if "specversion" in body and body["specversion"] != SPEC_VERSION:
        raise _bad("specversion", f"must be '{SPEC_VERSION}'", body["specversion"])

    job_type = body.get("type")
    if job_type is None:
        raise _bad("type", "is required")
    if not isinstance(job_type, str) or not job_type:
        raise _bad("type", "must be a non-empty string", job_type)
    job_type, typed_version = split_type(job_type)  # "type@2.0" (ojs-job-versioning §5.3)
    if len(job_type) > MAX_TYPE_LENGTH:
        raise _bad("type", f"must be at most {MAX_TYPE_LENGTH} characters")
    if not TYPE_PATTERN.fullmatch(job_type):
        raise _bad(
            "type",
            "must be dot-separated lowercase segments, each starting with a letter (e.g. email.send)",
            job_type,
        )

    if "args" not in body:
        raise _bad("args", "is required")
    args = body["args"]
    if not isinstance(args, list):
        raise _bad("args", "must be a JSON array", args)

    job_id = body.get("id")
    if job_id is None:
        job_id = new_id()
    elif not is_uuid7(job_id):
        raise _bad("id", "must be a lowercase hyphenated UUIDv7", job_id)

    meta = body.get("meta", {})
    if meta is None:
        meta = {}
    if not isinstance(meta, dict):
        raise _bad("meta", "must be an object", meta)
    metadata = options.get("metadata")
    if metadata is not None:
        if not isinstance(metadata, dict):
            raise _bad("options.metadata", "must be an object", metadata)
        meta = {**metadata, **meta}

    queue = option("queue")
    queue = "default" if queue is None else parse_queue_name(queue)

    priority = _parse_priority(option("priority"))

    timeout_ms = option("timeout_ms")
    if timeout_ms is None and body.get("timeout") is not None:
        seconds = body["timeout"]
        if not _is_int(seconds) or seconds < 0:
            raise _bad("timeout", "must be a non-negative integer number of seconds", seconds)
        timeout_ms = seconds * 1000
    if timeout_ms is not None and (not _is_int(timeout_ms) or timeout_ms < 0):
        raise _bad("timeout_ms", "must be a non-negative integer", timeout_ms)

    visibility_ms = option("visibility_timeout_ms")
    if visibility_ms is None and option("visibility_timeout") is not None:
        visibility_ms = parse_duration_ms(option("visibility_timeout"), "visibility_timeout")
    if visibility_ms is None:
        visibility_ms = DEFAULT_VISIBILITY_TIMEOUT_MS
    if not _is_int(visibility_ms) or not 0 < visibility_ms <= MAX_DURATION_MS:
        raise _bad(
            "visibility_timeout_ms",
            f"must be a positive integer of at most {MAX_DURATION_MS}",
            visibility_ms,
        )

    scheduled_raw = option("scheduled_at")
    if scheduled_raw is None:
        scheduled_raw = option("delay_until")
    scheduled_at = _parse_schedule(scheduled_raw, now_ms, "scheduled_at")

    expires_at = _parse_schedule(option("expires_at"), now_ms, "expires_at")

    retry_raw = option("retry")
    if retry_raw is None:
        retry_raw = option("retry_policy")
    policy = parse_policy(retry_raw)

    tags = option("tags")
    if tags is None:
        tags = ()  # shared: most jobs have no tags, and an empty list costs 56 bytes each
    elif not isinstance(tags, list) or not all(isinstance(tag, str) for tag in tags):
        raise _bad("tags", "must be an array of strings", tags)

    unique = option("unique")
    unique_key_value = None
    if unique is not None:
        unique_policy = parse_unique(unique, args, meta)
        unique_key_value = unique_key(unique_policy, job_type, queue, args, meta)

    rate_limit = option("rate_limit")
    if rate_limit is not None:
        check_rate_limit(rate_limit)

    schema = body.get("schema")
    if schema is not None and not isinstance(schema, str):
        raise _bad("schema", "must be a URI string", schema)

    pending = option("pending")
    if pending is not None and not isinstance(pending, bool):
        raise _bad("pending", "must be a boolean", pending)

    extra = {
        name: value
        for name, value in body.items()
        if name not in _ENVELOPE_NAMES and name not in _OPTION_NAMES and name not in SYSTEM_MANAGED
    }

    if body.get("version") is not None:  # the version field wins over "type@version"
        parse_version(body["version"])
    elif typed_version is not None:
        parse_version(typed_version, "type")
        extra["version"] = typed_version

    if pending:
        state, enqueued_at = State.PENDING, None
    elif scheduled_at is not None and scheduled_at > now_ms:
        state, enqueued_at = State.SCHEDULED, None
    else:
        state, enqueued_at = State.AVAILABLE, now_ms

    return Job(
        id=job_id,
        type=job_type,
        args=args,
        queue=queue,
        meta=meta,
        priority=priority,
        retry=policy,
        timeout_ms=timeout_ms,
        visibility_timeout_ms=visibility_ms,
        scheduled_at=scheduled_at,
        expires_at=expires_at,
        tags=tags,
        unique=unique,
        unique_key=unique_key_value,
        rate_limit=rate_limit,
        schema=schema,
        extra=extra,
        state=state,
        created_at=now_ms,
        enqueued_at=enqueued_at,
    )


def _parse_priority(value: object) -> int:
    if value is None:
        return 0
    if isinstance(value, str) and value.lower() in NAMED_PRIORITIES:
        return NAMED_PRIORITIES[value.lower()]
    if not _is_int(value):
        raise _bad("priority", "must be an integer or one of high, normal, low", value)
    low, high = PRIORITY_RANGE
    if not low <= value <= high:  # type: ignore[operator]
        raise ValidationFailed(
            f"'priority' must be between {low} and {high}.",
            details={"field": "priority", "received": value, "minimum": low, "maximum": high},
        )
    return value  # type: ignore[return-value]


def _parse_schedule(value: object, now_ms: int, field: str) -> int | None:
    """An absolute RFC 3339 time, or ``+PT5S`` meaning that long from now."""
    if value is None:
        return None
    if isinstance(value, str) and value.startswith("+"):
        return now_ms + parse_duration_ms(value[1:], field)
    return parse_timestamp(value, field)


def parse_error_report(raw: object) -> dict[str, Any]:
    """The ``error`` object of a nack, checked; missing parts defaulted."""
    if raw is None:
        return {"code": "handler_error", "message": "The handler failed without an error report."}
    if not isinstance(raw, dict):
        raise _bad("error", "must be an object", raw)
    message = raw.get("message", "")
    if not isinstance(message, str):
        raise _bad("error.message", "must be a string", message)
    for name in ("code", "type"):
        if name in raw and not isinstance(raw[name], str):
            raise _bad(f"error.{name}", "must be a string", raw[name])
    if "retryable" in raw and not isinstance(raw["retryable"], bool):
        raise _bad("error.retryable", "must be a boolean", raw["retryable"])
    if "details" in raw and not isinstance(raw["details"], dict):
        raise _bad("error.details", "must be an object", raw["details"])
    if "backtrace" in raw and not (
        isinstance(raw["backtrace"], list) and all(isinstance(f, str) for f in raw["backtrace"])
    ):
        raise _bad("error.backtrace", "must be an array of strings", raw["backtrace"])
    if raw.get("rate_limit_until") is not None:  # ojs-rate-limiting §9.1
        parse_timestamp(raw["rate_limit_until"], "error.rate_limit_until")
    return dict(raw)
