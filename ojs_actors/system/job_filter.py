"""The job filter of the admin API (ojs-admin-api §7.1, §8): which jobs a listing or a
bulk operation takes."""

from __future__ import annotations

from dataclasses import dataclass

from ..backends.base import type_matches
from ..core import Job


@dataclass(frozen=True, slots=True)
class JobFilter:
    queue: str | None = None
    type: str | None = None
    """An exact job type, or a prefix ending in ``*`` (``email.*``)."""
    since: int | None = None
    """Created at or after (epoch ms)."""
    until: int | None = None
    """Created before (epoch ms)."""

    def matches(self, job: Job) -> bool:
        if self.queue is not None and job.queue != self.queue:
            return False
        if self.type is not None and not type_matches(self.type, job.type):
            return False
        if self.since is not None and job.created_at < self.since:
            return False
        return self.until is None or job.created_at < self.until

    @property
    def beyond_queue(self) -> bool:
        """Whether it filters on more than the queue (the backends' dead letter index
        narrows by queue only: the rest is a scan)."""
        return self.type is not None or self.since is not None or self.until is not None


__all__ = ["JobFilter"]
