"""Pure lifecycle transitions: ``(job, now, inputs) -> next job``.

Each function checks the transition table first, so it raises
:class:`~ojs_actors.core.errors.Conflict` on an illegal move and otherwise
returns a new :class:`Job` (the input is never mutated). Backends apply the
result with compare-and-set on ``version``, which is what keeps several
processes sharing one backend correct.
"""

from __future__ import annotations

import random
from typing import Any

from .errors import Conflict
from .job import Job
from .retry import HandlerCode, decide_failure
from .states import Event, State, check_transition
from .timefmt import format_ms

MAX_ERROR_HISTORY = 50
EXPIRED_ERROR = {
    "code": "expired",
    "type": "expired",
    "message": "The job expired before it started.",
}
"""The error on record of a job :func:`expire` discarded."""
RATE_LIMITED_ERROR = {
    "code": "rate_limited",
    "type": "rate_limited",
    "message": "Dropped: its rate-limit key was at its limit (on_limit 'drop').",
}
"""The error on record of a job :func:`rate_limited` dropped."""
BACKPRESSURE_DROPPED_ERROR = {
    "code": "backpressure_dropped",
    "type": "backpressure_dropped",
    "message": "Dropped to make room in its full queue (backpressure strategy 'drop_oldest').",
}


def _next(job: Job, event: Event, now: int) -> Job:
    target = check_transition(job.state, event, job.id)
    successor = job.evolve()
    successor.state = target
    successor.version = job.version + 1
    successor.changed_at = now
    return successor


def _release_claim(job: Job) -> None:
    job.lease_expires_at = None
    job.worker_id = None


def promote(job: Job, now: int) -> Job:
    """``scheduled``/``retryable`` -> ``available`` once its time has come."""
    nxt = _next(job, Event.PROMOTE, now)
    nxt.enqueued_at = now
    nxt.next_attempt_at = None
    return nxt


def activate(job: Job, now: int) -> Job:
    nxt = _next(job, Event.ACTIVATE, now)
    nxt.enqueued_at = now
    return nxt


def claim(job: Job, now: int, worker_id: str | None, visibility_ms: int | None) -> Job:
    """``available`` -> ``active``: one more attempt, leased for the visibility timeout."""
    nxt = _next(job, Event.FETCH, now)
    nxt.attempt = job.attempt + 1
    nxt.started_at = now
    nxt.worker_id = worker_id
    nxt.lease_expires_at = now + (visibility_ms or job.visibility_timeout_ms)
    return nxt


def extend_lease(job: Job, now: int, visibility_ms: int | None) -> Job:
    """Heartbeat: push the lease deadline out; only an active job has one."""
    if job.state is not State.ACTIVE:
        raise Conflict(
            f"Cannot extend the lease of job {job.id} in state '{job.state.value}': only active jobs hold one.",
            details={
                "job_id": job.id,
                "current_state": job.state.value,
                "expected_state": "active",
            },
        )
    nxt = job.evolve()
    nxt.version = job.version + 1
    nxt.changed_at = now
    nxt.lease_expires_at = now + (visibility_ms or job.visibility_timeout_ms)
    return nxt


def ack(job: Job, now: int, result: Any = None, *, has_result: bool = False) -> Job:
    nxt = _next(job, Event.ACK, now)
    nxt.completed_at = now
    nxt.error = None
    nxt.next_attempt_at = None
    if has_result:
        nxt.result = result
    _release_claim(nxt)
    return nxt


def error_type_of(report: dict[str, Any]) -> str:
    """The error's type for matching ``non_retryable_errors``.

    Workers name it ``type`` (ojs-core §8); HTTP clients often send only a
    ``code`` and put the exception class in ``details.error_class``.
    """
    if isinstance(report.get("type"), str) and report["type"]:
        return str(report["type"])
    details = report.get("details")
    if isinstance(details, dict) and isinstance(details.get("error_class"), str):
        return str(details["error_class"])
    return str(report.get("code") or "handler_error")


def _history_entry(report: dict[str, Any], attempt: int, now_wire: str) -> dict[str, Any]:
    entry = {
        "attempt": attempt,
        "type": error_type_of(report),
        "code": report.get("code", "handler_error"),
        "message": report.get("message", ""),
        "occurred_at": now_wire,
        "timestamp": now_wire,
    }
    for name in ("retryable", "details", "backtrace", "rate_limit_until"):
        if name in report:
            entry[name] = report[name]
    return entry


def fail(job: Job, now: int, report: dict[str, Any], rng: random.Random | None = None) -> Job:
    """``active`` -> ``retryable`` (with its next attempt time) or ``discarded``."""
    if job.state is not State.ACTIVE:
        check_transition(job.state, Event.FAIL_RETRY, job.id)  # raises Conflict
    code = report.get("code")
    handler_code = (
        HandlerCode(code)
        if isinstance(code, str) and code in HandlerCode.__members__
        else HandlerCode.RETRY
    )
    decision = decide_failure(
        job.retry,
        job.attempt,
        error_type_of(report),
        worker_says_retryable=report.get("retryable", True) is not False,
        handler_code=handler_code,
        rng=rng,
    )
    entry = _history_entry(report, job.attempt, format_ms(now))
    if decision.retry:
        nxt = _next(job, Event.FAIL_RETRY, now)
        nxt.next_attempt_at = now + decision.delay_ms
        nxt.retry_delay_ms = decision.delay_ms
    else:
        nxt = _next(job, Event.FAIL_DISCARD, now)
        nxt.discarded_at = now
        nxt.completed_at = now
        nxt.next_attempt_at = None
        nxt.dead_letter = decision.dead_letter
    nxt.error = {k: v for k, v in entry.items() if k != "timestamp"}
    nxt.errors = [*job.errors, entry][-MAX_ERROR_HISTORY:]
    _release_claim(nxt)
    return nxt


def requeue(job: Job, now: int) -> Job:
    """The worker hands the job back unprocessed (nack with ``requeue``): the attempt is not spent."""
    nxt = _next(job, Event.REQUEUE, now)
    nxt.attempt = max(job.attempt - 1, 0)
    nxt.enqueued_at = now
    _release_claim(nxt)
    return nxt


def lease_expired(job: Job, now: int) -> Job:
    """The worker went silent past the visibility timeout.

    The job returns to ``available`` (ojs-core §6.3) with a ``timeout`` error on
    record, unless that was its last allowed attempt: then ``max_attempts``
    stays an exact bound and the job is discarded per ``on_exhaustion``.
    """
    report = {
        "code": "timeout",
        "type": "visibility_timeout",
        "message": "The worker neither acknowledged nor failed the job within its visibility timeout.",
        "retryable": True,
    }
    if job.attempt >= job.retry.max_attempts:
        return fail(job, now, report)
    nxt = _next(job, Event.LEASE_EXPIRED, now)
    entry = _history_entry(report, job.attempt, format_ms(now))
    nxt.error = {k: v for k, v in entry.items() if k != "timestamp"}
    nxt.errors = [*job.errors, entry][-MAX_ERROR_HISTORY:]
    nxt.enqueued_at = now
    nxt.started_at = None  # ojs-core §6.3: "Clear started_at"
    _release_claim(nxt)
    return nxt


def execution_timed_out(job: Job, now: int, rng: random.Random | None = None) -> Job:
    """The attempt ran past ``timeout_ms``: a failure of type ``timeout`` under the retry policy."""
    report = {
        "code": "timeout",
        "type": "timeout",
        "message": f"The job exceeded its execution timeout of {job.timeout_ms} ms.",
        "retryable": True,
    }
    return fail(job, now, report, rng)


def cancel(job: Job, now: int) -> Job:
    nxt = _next(job, Event.CANCEL, now)
    nxt.cancelled_at = now
    nxt.next_attempt_at = None
    _release_claim(nxt)
    return nxt


def expire(job: Job, now: int) -> Job:
    """``expires_at`` passed before the job started: discarded, never delivered."""
    nxt = _next(job, Event.EXPIRE, now)
    nxt.discarded_at = now  # no completed_at: the job never ran (conformance L2-TTL-001)
    nxt.error = dict(EXPIRED_ERROR)
    return nxt


def rate_limited(job: Job, now: int, *, until: int | None) -> Job:
    """A claimed job its rate-limit key refused (ojs-rate-limiting §6.2 ``on_limit``),
    handed back with its attempt unspent: ``scheduled`` for ``until``
    (``"reschedule"``), or ``discarded`` with a ``rate_limited`` error (``"drop"``,
    ``until`` ``None``). One version: to the outside it never left ``available``."""
    if until is None:
        return dropped(job, now, RATE_LIMITED_ERROR)
    nxt = _next(requeue(job, now), Event.RESCHEDULE, now)
    nxt.scheduled_at = until
    nxt.version = job.version + 1
    return nxt


def downstream_limited(job: Job, now: int, report: dict[str, Any], until: int) -> Job:
    """The handler reported that its downstream rate-limited it (``rate_limit_until``,
    ojs-rate-limiting §9): not a failed attempt. The job goes back with its attempt
    unspent, ``scheduled`` for ``until`` (``available`` if that has passed), the error on
    record; ``retryable: false`` in the report makes it an ordinary failure."""
    if report.get("retryable") is False or job.state is not State.ACTIVE:
        return fail(job, now, report)
    back = requeue(job, now)
    nxt = back if until <= now else _next(back, Event.RESCHEDULE, now)
    if until > now:
        nxt.scheduled_at = until
    entry = _history_entry(report, job.attempt, format_ms(now))
    nxt.error = {k: v for k, v in entry.items() if k != "timestamp"}
    nxt.errors = [*job.errors, entry][-MAX_ERROR_HISTORY:]
    nxt.version = job.version + 1
    return nxt


def dropped(job: Job, now: int, error: dict[str, Any]) -> Job:
    """A job waiting to run (or claimed only to be dropped, its attempt unspent) discarded
    without running, ``error`` on record: dropped by a rate limit or a full queue."""
    back = requeue(job, now) if job.state is State.ACTIVE else job
    nxt = _next(back, Event.EXPIRE, now)
    nxt.discarded_at = now
    nxt.error = dict(error)
    nxt.version = job.version + 1
    return nxt


def retry_dead_letter(job: Job, now: int) -> Job:
    """Manual retry from the dead-letter queue: a fresh start with a clean history."""
    nxt = _next(job, Event.MANUAL_RETRY, now)
    nxt.attempt = 0
    nxt.errors = ()
    nxt.error = None
    nxt.dead_letter = False
    nxt.enqueued_at = now
    for name in ("started_at", "completed_at", "discarded_at", "next_attempt_at", "retry_delay_ms"):
        setattr(nxt, name, None)
    return nxt
