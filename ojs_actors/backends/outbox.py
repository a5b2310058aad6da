"""The event outbox: what every backend writes with each change, and how it is read.

Every write of a job version also appends, in the same atomic step (the same SQLite
transaction, the same Lua script), an outbox entry ``(state before, the job as
stored)`` under the key :func:`~ojs_actors.core.events.change_key`. Events that are
no job's change (cron's) are appended whole with the snapshot write that decides
them. Nothing else writes events, so the log always matches the stored state: a
crash loses a change and its events together, or neither.

Reading renders entries into events (:func:`~ojs_actors.core.events.job_events`,
the one place events are built) and filters them. A read ``after`` an event id
finds that event's entry by key (:func:`~ojs_actors.core.events.entry_of`) and
resumes behind it. Retention keeps the newest entries (``event_retention``); a read
after an event no longer kept returns nothing, or with ``EventFilter.resume`` starts
at the oldest entry kept (what a durable consumer that fell behind wants).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from ..core import Job, State
from ..core.events import entry_of, job_events
from .base import EventFilter

EVENT_RETENTION = 10_000
"""Outbox entries kept by default (each a job change, one to two events, or one cron event)."""

OutboxEntry = tuple[State | None, Job | None, Sequence[dict[str, Any]] | None]
"""``(state before or None, the job stored, None)`` for a job change;
``(None, None, events)`` for events stored whole."""


def collect(
    entries: Iterable[OutboxEntry], query: EventFilter, skip: int, found: list[dict[str, Any]]
) -> bool:
    """Append to ``found`` the events of ``entries`` that ``query`` selects, leaving out
    the first ``skip`` events of the first entry (those up to the cursor). Returns
    ``True`` once ``found`` holds ``query.limit`` events."""
    queues, job_types, types, limit = query.queues, query.job_types, query.types, query.limit
    for before, job, stored in entries:
        if job is not None:
            if (queues and job.queue not in queues) or (job_types and job.type not in job_types):
                skip = 0
                continue
            events = job_events(before, job)
            if query.with_jobs:
                for event in events:
                    event["job"] = job
        else:
            events = list(stored or ())
        if skip:
            events, skip = events[skip:], 0
        for event in events:
            if types and event["type"] not in types:
                continue
            if stored is not None:
                data = event.get("data") or {}
                if (queues and data.get("queue") not in queues) or (
                    job_types and data.get("job_type") not in job_types
                ):
                    continue
            found.append(event)
            if len(found) >= limit:
                return True
    return False


def cursor(query: EventFilter) -> tuple[str, int] | None:
    """``(entry key, events of that entry to skip)`` for a read after ``query.after``."""
    if query.after is None:
        return None
    key, position = entry_of(query.after)
    return key, position + 1
