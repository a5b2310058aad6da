"""Timers and the dead letter queue, read from their index partitions.

:class:`AwsTimers` (``Timers``): each job version's timers are entries of a timer
partition (a few, by job id), keyed by due time, so the due ones are a key-range Query
per partition: the cost follows the due timers, not the waiting jobs. Entries of
versions that moved on are skipped, and deleted by the reader that meets them.

:class:`AwsDeadLetter` (``DeadLetter``): a dead-lettered version's entry in its queue's
partition, oldest first; the queues that have one are listed in ``deadqueues``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ...core import Job, State
from ..base import timers_of
from .client import AwsClients
from .layout import TIMER_SHARDS, Keys, n, pad
from .records import JobReader
from .writes import CasFailed, Transaction, Writer


class _Index:
    """Index partitions read, and their stale entries deleted."""

    def __init__(self, aws: AwsClients, keys: Keys, table: str) -> None:
        self._aws, self._keys, self._table = aws, keys, table
        self._reader = JobReader(aws, keys, table)

    async def _query(
        self, partition: str, *, until: str | None = None, limit: int | None = None
    ) -> list[dict[str, Any]]:
        """Entries of ``partition`` in key order (up to the sort key ``until``)."""
        condition, values = "pk = :p", {":p": {"S": partition}}
        if until is not None:
            condition += " AND sk <= :u"
            values[":u"] = {"S": until}
        request: dict[str, Any] = {"TableName": self._table, "KeyConditionExpression": condition,
                                   "ExpressionAttributeValues": values, "ConsistentRead": True}  # fmt: skip
        if limit is not None:
            request["Limit"] = limit
        return await self._aws.dynamodb_items("query", limit=limit, **request)

    async def _drop(self, entries: Iterable[dict[str, Any]]) -> None:
        await self._aws.delete_items(
            self._table, [{"pk": entry["pk"], "sk": entry["sk"]} for entry in entries]
        )


def _due_of(entry: dict[str, Any]) -> int:
    return int(entry["sk"]["S"].split("#", 1)[0])


FUTURE_LOOK = 8
"""Timer entries not due yet that :meth:`AwsTimers.due_jobs` checks too, to know the
next due time without reading again."""


class AwsTimers(_Index):
    """Due timers, and the next one: the scheduler asks for both each tick, and one look
    answers both. :meth:`due_jobs` reads each shard's head (not only the due entries)
    and keeps the earliest current timer after ``now``; :meth:`next_due_at` right after
    answers from it (and from the timers this process wrote since, which
    :class:`~.writes.Writer` reports), instead of four Queries more each tick. A timer
    another process writes in between is found at the next poll, as one written just
    after the read would be."""

    def __init__(self, aws: AwsClients, keys: Keys, table: str, writer: Writer | None = None):
        super().__init__(aws, keys, table)
        self._next: int | None = None
        self._known = False
        """:attr:`_next` holds the next due time as of the last :meth:`due_jobs`."""
        if writer is not None:
            writer.on_timers = self._wrote

    def _wrote(self, added: list[int], gone: list[int]) -> None:
        """A write of this process stored timers due at ``added`` and deleted those due
        at ``gone``: the next due time known is the earlier of it and ``added``, or no
        longer known if the one it came from may be gone."""
        if not self._known:
            return
        if self._next is not None and self._next in gone:
            self._known = False
            return
        if added:
            self._next = min(added) if self._next is None else min(self._next, *added)

    async def due_jobs(self, now: int, limit: int) -> list[Job]:
        self._known = False
        if limit < 1:
            return []
        entries, cut = await self._shard_heads(limit)
        bound = f"{pad(now)}#~"
        due = [entry for entry in entries if str(entry["sk"]["S"]) <= bound]
        later = [entry for entry in entries if str(entry["sk"]["S"]) > bound]
        current = await self._current(due + later[:FUTURE_LOOK])
        found = [job for at, job in current if at <= now][:limit]
        future = [at for at, _ in current if at > now]
        # a shard read only in part may hold earlier entries after its last one read
        unread = min(cut, default=None)
        if unread is not None and unread <= now:
            self._next, self._known = now, True  # more may be due: look again at once
        elif future and (unread is None or future[0] <= unread):
            self._next, self._known = future[0], True
        elif not future and unread is None and len(later) <= FUTURE_LOOK:
            self._next, self._known = None, True  # no timer at all after now
        return found

    async def next_due_at(self) -> int | None:
        if self._known:
            self._known = False
            return self._next
        while True:
            entries = await self._heads(limit=8)
            if not entries:
                return None
            current = await self._current(entries)
            if current:
                return current[0][0]

    async def _shard_heads(self, limit: int) -> tuple[list[dict[str, Any]], list[int]]:
        """The first ``limit`` entries of each shard, merged, and the due time of the
        last one read of each shard read only in part (a Query of ``limit`` small items
        is one request: a 1 MB page holds some 10,000)."""
        entries: list[dict[str, Any]] = []
        cut: list[int] = []
        for shard in range(TIMER_SHARDS):
            partition = self._keys.timer_partition(shard)
            found = await self._query(partition, limit=limit)
            if len(found) >= limit:
                cut.append(_due_of(found[-1]))
            entries += found
        return sorted(entries, key=lambda entry: str(entry["sk"]["S"])), cut

    async def _heads(self, *, until: str | None = None, limit: int) -> list[dict[str, Any]]:
        entries: list[dict[str, Any]] = []
        for shard in range(TIMER_SHARDS):
            partition = self._keys.timer_partition(shard)
            entries += await self._query(partition, until=until, limit=limit)
        return sorted(entries, key=lambda entry: str(entry["sk"]["S"]))

    async def _current(self, entries: list[dict[str, Any]]) -> list[tuple[int, Job]]:
        """``(due, job)`` of the entries whose job is still that version with that timer,
        earliest first, one per job; the others are deleted."""
        jobs = await self._reader.read(entry["id"]["S"] for entry in entries)
        current: list[tuple[int, Job]] = []
        seen: set[str] = set()
        stale: list[dict[str, Any]] = []
        for entry in entries:
            job = jobs.get(entry["id"]["S"])
            due = _due_of(entry)
            if job is None or job.version != int(entry["v"]["N"]) or due not in timers_of(job):
                stale.append(entry)
            elif job.id not in seen:
                seen.add(job.id)
                current.append((due, job))
        if stale:
            await self._drop(stale)
        return current


class AwsDeadLetter(_Index):
    def __init__(self, aws: AwsClients, keys: Keys, table: str, writer: Writer) -> None:
        super().__init__(aws, keys, table)
        self._writer = writer

    async def list_dead_letter(
        self, queue: str | None, limit: int, offset: int
    ) -> tuple[list[Job], int]:
        queues = [queue] if queue is not None else await self._dead_queues()
        entries: list[dict[str, Any]] = []
        for name in queues:
            entries += await self._query(self._keys.dead_partition(name))
        entries.sort(key=lambda entry: str(entry["sk"]["S"]))
        jobs = await self._reader.read(entry["id"]["S"] for entry in entries)
        dead: list[Job] = []
        stale: list[dict[str, Any]] = []
        for entry in entries:
            job = jobs.get(entry["id"]["S"])
            if (
                job is not None
                and job.state is State.DISCARDED
                and job.dead_letter
                and (job.version >= int(entry["v"]["N"]))
            ):
                dead.append(job)
            else:
                stale.append(entry)
        if stale:
            await self._drop(stale)
        return dead[offset : offset + limit], len(dead)

    async def _dead_queues(self) -> list[str]:
        entries = await self._query(self._keys.dead_queues("")["pk"]["S"])
        return [entry["sk"]["S"] for entry in entries]

    async def delete_dead_letter(self, job_id: str) -> bool:
        found = (await self._reader.read([job_id])).get(job_id)
        if found is None or found.state is not State.DISCARDED or not found.dead_letter:
            return False
        job = found

        def build(transaction: Transaction) -> None:
            transaction.delete(self._keys.job(job.id), condition="v = :v",
                               values={":v": n(job.version)}, owner=job.id)  # fmt: skip
            transaction.count(job.queue, State.DISCARDED, -1)

        try:
            await self._writer.write(build)
        except CasFailed:
            return False  # changed meanwhile (retried from the dead letter queue)
        return True


__all__ = ["AwsDeadLetter", "AwsTimers"]
