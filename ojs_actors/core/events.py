"""Lifecycle events (ojs-events §2–§4): the one place they are built. Pure.

Backends keep an outbox of job changes, each ``(state before, the job as stored)``,
written in the same atomic step as the change; :func:`job_events` renders an entry
into its events when the outbox is read. So an event's id is a function of the
change (``evt_<job id>_<version>_<n>``): rendering an entry twice gives the same
events, which is what lets consumers that read at least once drop duplicates.
Events that are no job's change (cron's) are stored whole, with ids of their own
(:func:`new_event_id`).
"""

from __future__ import annotations

from typing import Any

from .cron import CronSpec
from .ids import new_id
from .job import Job
from .progress import event_data as progress_event_data
from .states import State
from .timefmt import format_ms

SOURCE = "ojs://ojs-actors/server"


def envelope(
    kind: str, subject: str, now: int, data: dict[str, Any], event_id: str
) -> dict[str, Any]:
    """An event in the envelope of ojs-events §2."""
    return {
        "specversion": "1.0",
        "id": event_id,
        "type": kind,
        "source": SOURCE,
        "time": format_ms(now),
        "subject": subject,
        "data": data,
    }


def new_event_id() -> str:
    """An id for an event stored whole (no ``_``: :func:`entry_of` tells them apart)."""
    return f"evt_{new_id()}"


def change_key(job: Job) -> str:
    """The outbox key of the change that stored this job version."""
    return f"{job.id}_{job.version}"


def entry_of(event_id: str) -> tuple[str, int]:
    """``(outbox key, position within its entry)`` of an event id: the cursor a read
    ``after`` that event resumes from."""
    body = event_id[4:] if event_id.startswith("evt_") else event_id
    job_id, _, rest = body.partition("_")
    version, _, position = rest.partition("_")
    if version.isdigit() and position.isdigit():
        return f"{job_id}_{version}", int(position)
    return event_id, 0


def job_events(before: State | None, job: Job) -> list[dict[str, Any]]:
    """The events of a job's move from ``before`` (``None``: just created) to its state,
    dated when the version was made."""
    state = job.state
    now = job.changed_at or job.created_at
    if state is before and state is State.ACTIVE:
        # A lease extended (heartbeat), or progress reported (ojs-progress §7).
        progress = progress_event_data(job.progress, job.version)
        if progress is None:
            return []
        data = {
            "job_id": job.id, "job_type": job.type, "queue": job.queue,
            "worker_id": job.worker_id, "attempt": job.attempt, **progress,
        }  # fmt: skip
        events = [envelope("job.progress", job.id, now, data, "")]
    else:
        events = _events(before, job, state, now)
    prefix = f"evt_{job.id}_{job.version}_"
    for position, event in enumerate(events):
        event["id"] = f"{prefix}{position}"
    return events


def _event(kind: str, job: Job, now: int, data: dict[str, Any]) -> dict[str, Any]:
    return envelope(
        kind, job.id, now, {"job_id": job.id, "job_type": job.type, "queue": job.queue, **data}, ""
    )


def _events(before: State | None, job: Job, state: State, now: int) -> list[dict[str, Any]]:
    # The three moves of every job are written out in full: they run once per job each.
    if state is State.AVAILABLE:
        data: dict[str, Any] = {
            "job_id": job.id, "job_type": job.type, "queue": job.queue, "priority": job.priority,
        }  # fmt: skip
        return [envelope("job.enqueued", job.id, now, data, "")]
    if state is State.ACTIVE:
        data = {
            "job_id": job.id, "job_type": job.type, "queue": job.queue,
            "worker_id": job.worker_id, "attempt": job.attempt,
        }  # fmt: skip
        return [envelope("job.started", job.id, now, data, "")]
    if state is State.COMPLETED:
        data = {
            "job_id": job.id, "job_type": job.type, "queue": job.queue,
            "attempt": job.attempt, "duration_ms": now - (job.started_at or now),
        }  # fmt: skip
        if job.has_result:
            data["result"] = job.result
        return [envelope("job.completed", job.id, now, data, "")]
    if state is State.SCHEDULED:
        return [
            _event("job.scheduled", job, now, {"scheduled_at": format_ms(job.scheduled_at or now)})
        ]
    if state is State.CANCELLED:
        return [_event("job.cancelled", job, now, {})]
    if state is State.DISCARDED and (job.error or {}).get("code") in DROPPED_EVENTS:
        return _dropped(job, now)
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
        return [failed, _discarded(job, now, error)]
    if state is State.DISCARDED:
        return [_event("job.expired", job, now, {})]
    return []


DROPPED_EVENTS = {
    "rate_limited": "rate_limit.dropped",
    "backpressure_dropped": "backpressure.dropped",
}
"""The event of a job discarded unrun, by the code of the error on its record."""


def _dropped(job: Job, now: int) -> list[dict[str, Any]]:
    """A job dropped unrun: by its rate-limit key (``rate_limit.dropped``,
    ojs-rate-limiting §11.1) or to make room in its full queue (``backpressure.dropped``,
    ojs-backpressure §10.1); then ``job.discarded`` for those following lifecycles."""
    error = job.error or {}
    data: dict[str, Any] = {"job_id": job.id, "job_type": job.type, "queue": job.queue}
    if error.get("code") == "rate_limited":
        data["key"] = (job.rate_limit or {}).get("key")
    dropped = envelope(DROPPED_EVENTS[error["code"]], job.id, now, data, "")
    return [dropped, _discarded(job, now, error)]


def _discarded(job: Job, now: int, error: dict[str, Any]) -> dict[str, Any]:
    return _event(
        "job.discarded",
        job,
        now,
        {
            "total_attempts": job.attempt,
            "last_error": {"code": error.get("code"), "message": error.get("message")},
            "dead_letter": job.dead_letter,
        },
    )


def cron_event(kind: str, spec: CronSpec, now: int, data: dict[str, Any]) -> dict[str, Any]:
    """``cron.triggered`` / ``cron.skipped`` (ojs-cron §9) in the event log's envelope,
    with the ``tenant_id`` its job template names, if any (whose webhooks get it)."""
    queue = (spec.job_template.get("options") or {}).get("queue") or "default"
    tenant = (spec.job_template.get("meta") or {}).get("tenant_id")
    if isinstance(tenant, str):
        data = {**data, "tenant_id": tenant}
    return envelope(
        kind,
        spec.name,
        now,
        {
            "cron_name": spec.name,
            "cron_expression": spec.expression,
            "timezone": spec.timezone,
            "job_type": spec.job_template.get("type"),
            "queue": queue,
            **data,
        },
        new_event_id(),
    )
