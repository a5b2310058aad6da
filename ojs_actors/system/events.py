"""Lifecycle events (ojs-events §3–§4) derived from state changes. Pure."""

from __future__ import annotations

from typing import Any

from ..core import Job, State, format_ms, new_id

SOURCE = "ojs://ojs-actors/server"


def envelope(kind: str, subject: str, now: int, data: dict[str, Any]) -> dict[str, Any]:
    """An event in the envelope of ojs-events §2."""
    return {
        "specversion": "1.0",
        "id": f"evt_{new_id()}",
        "type": kind,
        "source": SOURCE,
        "time": format_ms(now),
        "subject": subject,
        "data": data,
    }


def _event(kind: str, job: Job, now: int, data: dict[str, Any]) -> dict[str, Any]:
    return envelope(
        kind, job.id, now, {"job_id": job.id, "job_type": job.type, "queue": job.queue, **data}
    )


def lifecycle_events(before: State | None, job: Job, now: int) -> list[dict[str, Any]]:
    """The events a job's move from ``before`` (``None``: just created) to its state emits."""
    state = job.state
    # The three moves of every job are written out in full: they run once per job each.
    if state is State.AVAILABLE:
        data: dict[str, Any] = {
            "job_id": job.id, "job_type": job.type, "queue": job.queue, "priority": job.priority,
        }  # fmt: skip
        return [envelope("job.enqueued", job.id, now, data)]
    if state is State.ACTIVE:
        data = {
            "job_id": job.id, "job_type": job.type, "queue": job.queue,
            "worker_id": job.worker_id, "attempt": job.attempt,
        }  # fmt: skip
        return [envelope("job.started", job.id, now, data)]
    if state is State.COMPLETED:
        data = {
            "job_id": job.id, "job_type": job.type, "queue": job.queue,
            "attempt": job.attempt, "duration_ms": now - (job.started_at or now),
        }  # fmt: skip
        if job.has_result:
            data["result"] = job.result
        return [envelope("job.completed", job.id, now, data)]
    if state is State.SCHEDULED:
        return [
            _event("job.scheduled", job, now, {"scheduled_at": format_ms(job.scheduled_at or now)})
        ]
    if state is State.CANCELLED:
        return [_event("job.cancelled", job, now, {})]
    if state is State.RETRYABLE or (state is State.DISCARDED and before is State.ACTIVE):
        error = job.error or {}
        failed = _event(
            "job.failed",
            job,
            now,
            {
                "attempt": job.attempt,
                "error": {
                    "code": error.get("code", "handler_error"),
                    "message": error.get("message", ""),
                    "retryable": state is State.RETRYABLE,
                },
            },
        )
        if state is State.RETRYABLE:
            retrying = _event(
                "job.retrying",
                job,
                now,
                {
                    "attempt": job.attempt,
                    "max_attempts": job.retry.max_attempts,
                    "next_retry_at": format_ms(job.next_attempt_at or now),
                    "error": failed["data"]["error"],
                },
            )
            return [failed, retrying]
        discarded = _event(
            "job.discarded",
            job,
            now,
            {
                "total_attempts": job.attempt,
                "last_error": {"code": error.get("code"), "message": error.get("message")},
                "dead_letter": job.dead_letter,
            },
        )
        return [failed, discarded]
    if state is State.DISCARDED:
        return [_event("job.expired", job, now, {})]
    return []
