"""Job progress (ojs-progress): the update a worker sends, the record kept of it, and how
it reads back. Pure, and independent of :class:`~.job.Job`, which holds the record.

Progress lives on the job record (``Job.progress``), so it changes by the same
compare-and-set as the rest of the job, on every backend, and an update extends the
lease in the same write (ojs-progress §6.3: progress is a heartbeat; the transition is
:func:`ojs_actors.system.progress.reported`). The record holds the attempt it belongs to,
which makes the lifecycle rules a matter of reading it (:func:`view`): a new attempt sees
no progress (§5.3), a failed one keeps its last value (§8.2), a completed one reads
``1.0`` (§8.1); no other transition needs to know.

The record also says which job version last emitted a ``job.progress`` event
(:func:`event_data`): at most one a second per job (§6.2), while every update is
stored, so the latest value is always the one read.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from .errors import InvalidRequest, PayloadTooLarge
from .states import State
from .timefmt import format_ms

MAX_PROGRESS_DATA_BYTES = 16 * 1024
"""Largest ``data`` object accepted (serialised). §5.2 recommends 4 KB; the record carries
it with every write of the job, so it is bounded."""
MAX_MESSAGE_LENGTH = 1024
EVENT_INTERVAL_MS = 1000
"""At most one ``job.progress`` event per job in this interval (ojs-progress §6.2)."""


@dataclass(frozen=True, slots=True)
class ProgressUpdate:
    """One progress report: at least one of the three is set."""

    progress: float | None = None
    """Clamped to ``[0.0, 1.0]`` (§5.1)."""
    message: str | None = None
    data: dict[str, Any] | None = None


def parse_update(body: dict[str, Any]) -> ProgressUpdate:
    """A progress report from a request body (``progress``, ``message``, ``data``)."""
    raw = body.get("progress")
    progress: float | None = None
    if raw is not None:
        if isinstance(raw, bool) or not isinstance(raw, int | float):
            raise InvalidRequest(
                "'progress' must be a number between 0.0 and 1.0.",
                details={"field": "progress", "received": raw},
            )
        progress = float(min(max(raw, 0), 1))  # clamped before float(): any int fits
    message = body.get("message")
    if message is not None and not isinstance(message, str):
        raise InvalidRequest("'message' must be a string.", details={"field": "message"})
    if message is not None and len(message) > MAX_MESSAGE_LENGTH:
        raise InvalidRequest(
            f"'message' may be at most {MAX_MESSAGE_LENGTH} characters.",
            details={"field": "message", "length": len(message)},
        )
    data = body.get("data")
    if data is not None:
        if not isinstance(data, dict):
            raise InvalidRequest("'data' must be a JSON object.", details={"field": "data"})
        size = len(json.dumps(data).encode())
        if size > MAX_PROGRESS_DATA_BYTES:
            raise PayloadTooLarge(
                f"Progress 'data' may be at most {MAX_PROGRESS_DATA_BYTES} bytes as JSON.",
                details={"field": "data", "size": size, "max_bytes": MAX_PROGRESS_DATA_BYTES},
            )
    if progress is None and message is None and data is None:
        raise InvalidRequest(
            "A progress update needs 'progress', 'data' or 'message' (ojs-progress §5.2).",
            details={"fields": ["progress", "data", "message"]},
        )
    return ProgressUpdate(progress, message, data)


def current(
    record: dict[str, Any] | None, attempt: int, started_at: int | None
) -> dict[str, Any] | None:
    """A job's progress record if it belongs to the job's current attempt (``attempt``,
    ``started_at``), else ``None``: a record of an earlier attempt is not shown."""
    if record is None or record.get("attempt") != attempt or record.get("started_at") != started_at:
        return None
    return record


def updated(
    before: dict[str, Any] | None,
    update: ProgressUpdate,
    *,
    attempt: int,
    started_at: int | None,
    version: int,
    now: int,
) -> dict[str, Any]:
    """The progress record after ``update``, stored with job version ``version`` of the
    attempt ``attempt`` (``before``: the record as stored, of this attempt or not)."""
    last = current(before, attempt, started_at) or {}
    progress = last.get("progress")
    if update.progress is not None:
        # Non-decreasing within one attempt (§5.1): a lower value keeps the higher one.
        progress = update.progress if progress is None else max(progress, update.progress)
    evented_at = last.get("evented_at")
    emits = evented_at is None or now - evented_at >= EVENT_INTERVAL_MS
    return {
        "attempt": attempt,
        "started_at": started_at,
        "progress": progress,
        "message": update.message if update.message is not None else last.get("message"),
        "data": update.data if update.data is not None else last.get("data"),
        "updated_at": now,
        "event_version": version if emits else last.get("event_version"),
        "evented_at": now if emits else evented_at,
    }


def view(
    record: dict[str, Any] | None, state: State, attempt: int, started_at: int | None
) -> dict[str, Any] | None:
    """A job's progress as clients read it; ``None`` if none was reported this attempt."""
    shown = current(record, attempt, started_at)
    if shown is None:
        return None
    progress = shown.get("progress")
    if state is State.COMPLETED:
        progress = 1.0  # §8.1: a completed job is done, whatever was reported last
    return {
        "progress": progress,
        "message": shown.get("message"),
        "data": shown.get("data"),
        "updated_at": format_ms(shown["updated_at"]),
    }


def event_data(record: dict[str, Any] | None, version: int) -> dict[str, Any] | None:
    """The progress fields of the ``job.progress`` event that job version ``version``
    emits (ojs-events §4.1), or ``None`` if it emits none (a plain heartbeat, or a report
    within a second of the last event)."""
    if record is None or record.get("event_version") != version:
        return None
    progress = record.get("progress")
    data: dict[str, Any] = {
        "progress": progress,
        "progress_percent": None if progress is None else round(progress * 100, 2),
    }
    if record.get("message") is not None:
        data["progress_message"] = record["message"]
    if record.get("data") is not None:
        data["data"] = record["data"]
    return data


__all__ = [
    "EVENT_INTERVAL_MS", "MAX_PROGRESS_DATA_BYTES", "ProgressUpdate", "current", "event_data",
    "parse_update", "updated", "view",
]  # fmt: skip
