"""A cron entry's bookkeeping (ojs-cron §2.2's system-managed fields, and the fire in
progress), and how each step of its CronActor changes it. Pure: no I/O.

``handled_through`` is the instant up to which every slot has been dealt with
(fired or skipped); ``next_run_at`` is the first slot after it, while enabled.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from ..core.cron import CronSpec


@dataclass(slots=True)
class Intent:
    """A fire in progress: written before the enqueue, cleared once it is recorded."""

    slot: int
    job_id: str
    hold: bool = False
    owner: str | None = None
    """The CronActor instance that wrote it."""
    at: int | None = None
    """When it was written."""


@dataclass(slots=True)
class Book:
    """The system-managed part of an entry (ojs-cron §2.2) and the actor's bookkeeping."""

    created_at: int
    updated_at: int
    anchor_at: int
    """Origin of an ``@every`` grid: when the expression was registered."""
    handled_through: int
    next_run_at: int | None = None
    last_run_at: int | None = None
    last_slot: int | None = None
    last_job_id: str | None = None
    current_job_id: str | None = None
    """The job overlaps are judged against: the last one released to workers."""
    held: list[str] = field(default_factory=list)
    """Policy ``enqueue``: ``pending`` jobs waiting, in order, for the current one to end."""
    run_count: int = 0
    intent: Intent | None = None

    @classmethod
    def new(cls, now: int) -> Book:
        """The book of an entry registered at ``now``: its first slot comes after now."""
        return cls(created_at=now, updated_at=now, anchor_at=now, handled_through=now)

    def to_record(self) -> dict[str, Any]:
        record = dataclasses.asdict(self)
        record["held"] = list(self.held)
        return record

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Book:
        names = {f.name for f in dataclasses.fields(cls)}
        values = {name: record[name] for name in names if name in record}
        values["held"] = list(values.get("held") or [])
        intent = values.get("intent")
        values["intent"] = Intent(**intent) if intent else None
        return cls(**values)

    def plan(self, spec: CronSpec) -> None:
        """Set ``next_run_at``: the first slot not handled yet (none while disabled)."""
        self.next_run_at = (
            spec.schedule.next_after(self.handled_through, self.anchor_at) if spec.enabled else None
        )

    def reregistered(self, old: CronSpec, new: CronSpec, now: int) -> None:
        """The entry was registered again (upsert): a new schedule, or one enabled again,
        starts from now; slots before the change are not missed occurrences."""
        self.updated_at = now
        if (new.expression, new.timezone) != (old.expression, old.timezone):
            self.anchor_at = now
            self.handled_through = max(self.handled_through, now)
        elif new.enabled and not old.enabled:
            self.handled_through = max(self.handled_through, now)

    def skipped(self, slot: int) -> None:
        """``slot`` is not fired (an overlap policy said so)."""
        self.handled_through = slot

    def dropped(self, intent: Intent) -> None:
        """The fire of ``intent`` failed for good: its slot is handled, unfired."""
        self.intent = None
        self.handled_through = max(self.handled_through, intent.slot)

    def fired(self, intent: Intent, job_id: str, now: int) -> None:
        """The fire of ``intent`` stored job ``job_id``."""
        self.handled_through = max(self.handled_through, intent.slot)
        self.last_slot = intent.slot
        self.last_run_at = now
        self.last_job_id = job_id
        self.run_count += 1
        if intent.hold:
            self.held.append(job_id)
        else:
            self.current_job_id = job_id
        self.intent = None


__all__ = ["Book", "Intent"]
