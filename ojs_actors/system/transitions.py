"""Lifecycle transitions bound to their inputs, as a QueueActor's ``Apply`` takes them.

A transition is a pure function ``(stored job, now) -> new job version`` that raises an
``OJSError`` when the job may not change that way; the QueueActor applies it by
compare-and-set.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..core import NO_RESULT, Job, NotFound, State, lifecycle
from ..core.timefmt import parse_timestamp

Transition = Callable[[Job, int], Job]


def ack_with(result: Any = NO_RESULT) -> Transition:
    """Complete the job, storing ``result`` (``NO_RESULT``: none; ``None``: JSON null)."""
    if result is NO_RESULT:
        return _ack_without_result
    return lambda job, now: lifecycle.ack(job, now, result, has_result=True)


def _ack_without_result(job: Job, now: int) -> Job:
    return lifecycle.ack(job, now)


def fail_with(report: dict[str, Any]) -> Transition:
    """A failed attempt; a report with ``rate_limit_until`` (checked by
    ``parse_error_report``) is a :class:`DownstreamLimited` instead."""
    until = report.get("rate_limit_until")
    if until is not None:
        return DownstreamLimited(report, parse_timestamp(until, "error.rate_limit_until"))
    return lambda job, now: lifecycle.fail(job, now, report)


@dataclass(frozen=True, slots=True)
class DownstreamLimited:
    """The handler's downstream rate-limited it until ``until`` (ojs-rate-limiting §9):
    the job is rescheduled for then, unspent (:func:`lifecycle.downstream_limited`), and
    the QueueActor that stores it pauses the job's key (:mod:`.rate_limit_pause`)."""

    report: dict[str, Any]
    until: int

    def __call__(self, job: Job, now: int) -> Job:
        return lifecycle.downstream_limited(job, now, self.report, self.until)


def extend_lease_by(visibility_ms: int | None) -> Transition:
    return lambda job, now: lifecycle.extend_lease(job, now, visibility_ms)


def retry_from_dead_letter(job: Job, now: int) -> Job:
    if not (job.state is State.DISCARDED and job.dead_letter):
        raise dead_letter_not_found(job.id)
    return lifecycle.retry_dead_letter(job, now)


def job_not_found(job_id: str) -> NotFound:
    return NotFound(
        f"Job '{job_id}' not found.", details={"resource_type": "job", "resource_id": job_id}
    )


def dead_letter_not_found(job_id: str) -> NotFound:
    return NotFound(
        f"Dead letter job '{job_id}' not found.",
        details={"resource_type": "dead_letter_job", "resource_id": job_id},
    )


__all__ = [
    "DownstreamLimited", "Transition", "ack_with", "dead_letter_not_found", "extend_lease_by", "fail_with",
    "job_not_found", "retry_from_dead_letter",
]  # fmt: skip
