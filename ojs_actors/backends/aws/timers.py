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


class AwsTimers(_Index):
    async def due_jobs(self, now: int, limit: int) -> list[Job]:
        if limit < 1:
            return []
        entries = await self._heads(until=f"{pad(now)}#~", limit=limit)
        return [job for _, job in await self._current(entries)][:limit]

    async def next_due_at(self) -> int | None:
        while True:
            entries = await self._heads(limit=8)
            if not entries:
                return None
            current = await self._current(entries)
            if current:
                return current[0][0]

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
