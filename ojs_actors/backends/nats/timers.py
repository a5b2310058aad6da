"""The NATS timers: :class:`NatsTimers`, on the shared :class:`~.records.JobRecords`.

Timer entries sit in one subject per second they fall due (``ojs.timer.{second}``,
:mod:`.layout`): the scheduler reads the buckets that are due, so its cost follows the
due timers, not the waiting jobs. Entries are hints checked against the records when
read; the stale ones before a bucket's first live entry are purged.
"""

from __future__ import annotations

from ...core import Job
from ..base import timers_of
from .layout import Entry, parse_entry
from .records import OnRecords
from .writes import Stored

NEXT_DUE_LOOKS = 64
"""Timer entries ``next_due_at`` reads at a time."""


class NatsTimers(OnRecords):
    """The :class:`~ojs_actors.backends.base.Timers` part."""

    async def _timer_buckets(self) -> list[int]:
        subjects = self._subjects
        found = await self._store.subjects_of(subjects.timers())
        return sorted(subjects.second_of(subject) for subject in found)

    async def _live_timers(
        self, second: int, limit: int
    ) -> tuple[list[Entry], list[tuple[Entry, Stored]]]:
        """The first ``limit`` entries of a timer bucket, and those of them that match their
        job's current version; the stale ones before the first live one are purged."""
        subject = self._subjects.timer(second * 1000)
        entries = [parse_entry(m.seq, m.data) for m in await self._store.read(subject, 1, limit)]
        if not entries:
            return entries, []
        # A job this process wrote at a later version than the entry's is past it for
        # sure (versions only grow): stale without reading its record.
        remembered = self._records.remembered
        versions = {
            entry.job_id: entry.version
            for entry in entries
            if (before := remembered(entry.job_id)) is None or before.version <= entry.version
        }
        newer: set[str] = set()  # the record read is older than the entry: keep the entry

        def wanted(job_id: str, version: int) -> bool:
            if version < versions[job_id]:
                newer.add(job_id)
            return version == versions[job_id]

        records = await self._records.read(versions, wanted)
        live: list[tuple[Entry, Stored]] = []
        first_live: int | None = None
        for entry in entries:
            if entry.job_id in newer and first_live is None:
                first_live = entry.seq
            stored = records.get(entry.job_id)
            if stored is None or stored.job.version != entry.version:
                continue  # stale (or past for sure: not read)
            if first_live is None:
                first_live = entry.seq
            live.append((entry, stored))
        head_end = first_live if first_live is not None else entries[-1].seq + 1
        if head_end > entries[0].seq:
            await self._store.purge(subject, before_seq=head_end)
        return entries, live

    async def due_jobs(self, now: int, limit: int) -> list[Job]:
        found: dict[str, tuple[int, Job]] = {}
        for second in await self._timer_buckets():
            if second > now // 1000 or len(found) >= limit:
                break
            _, live = await self._live_timers(second, limit * 2)
            for _, stored in live:
                due = min(timers_of(stored.job), default=None)
                if due is not None and due <= now and stored.job.id not in found:
                    found[stored.job.id] = (due, stored.job)
        ordered = sorted(found.values(), key=lambda pair: pair[0])
        return [job for _, job in ordered[:limit]]

    async def next_due_at(self) -> int | None:
        """The earliest timer among the first live entries of the earliest bucket holding
        any (exact to the bucket's second: entries within it are in write order, and the
        scheduler polls anyway); stale entries met on the way are purged."""
        for second in await self._timer_buckets():
            while True:
                entries, live = await self._live_timers(second, NEXT_DUE_LOOKS)
                dues = [min(timers_of(stored.job)) for _, stored in live if timers_of(stored.job)]
                if dues:
                    return min(dues)
                if len(entries) < NEXT_DUE_LOOKS:
                    break  # this bucket held only stale entries, purged now
        return None
