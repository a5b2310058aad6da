"""The pure core: job model, validation, state machine, retry maths. No I/O, no clocks."""

from . import lifecycle, unique
from .errors import (
    BackendUnavailable,
    BodyTimedOut,
    Conflict,
    Duplicate,
    InternalError,
    InvalidPayload,
    InvalidRequest,
    NotFound,
    OJSError,
    OutboxFull,
    PayloadTooLarge,
    QueuePaused,
    RequestTimedOut,
    ServiceRestarting,
    Unauthenticated,
    Unsupported,
    ValidationFailed,
)
from .ids import is_uuid7, new_id
from .job import NO_RESULT, SPEC_VERSION, Job
from .retry import DEFAULT_POLICY, RetryPolicy, backoff_delay_ms, decide_failure, parse_policy
from .states import TERMINAL, Event, State, check_transition
from .timefmt import format_ms, parse_duration_ms, parse_timestamp
from .validation import parse_enqueue, parse_error_report, parse_queue_name

__all__ = [
    "DEFAULT_POLICY", "NO_RESULT", "SPEC_VERSION", "TERMINAL", "BackendUnavailable", "BodyTimedOut", "Conflict", "Duplicate",
    "Event", "InternalError", "InvalidPayload", "InvalidRequest", "Job", "NotFound", "OJSError", "OutboxFull",
    "PayloadTooLarge", "QueuePaused", "RequestTimedOut", "RetryPolicy", "ServiceRestarting", "State",
    "Unauthenticated", "Unsupported",
    "ValidationFailed", "backoff_delay_ms", "check_transition", "decide_failure", "format_ms",
    "is_uuid7", "lifecycle", "unique", "new_id", "parse_duration_ms", "parse_enqueue",
    "parse_error_report", "parse_policy", "parse_queue_name", "parse_timestamp",
]  # fmt: skip
