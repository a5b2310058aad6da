"""The DynamoDB job store: :class:`AwsJobs` (``JobStore``).

An insert writes the new jobs' items on the condition that their ids are free, with
the unique keys they take (each on the condition that it still has the holder read
before deciding), in one transaction; if an id or a key was taken meanwhile it reads
again and decides again. An update reads the stored versions, then writes each job
whose version is the expected one, on the condition that it still is: a job changed
in between is answered ``False``, like one found changed. Counts per state are one
item per queue, moved by ``ADD`` in every write.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial

from ...core import BackendUnavailable, Job, OJSError, PayloadTooLarge, State
from ..base import Deduplicated, plan_inserts, replaced_by, update_rounds
from .client import AwsClients
from .intents import BatchIntents
from .layout import Keys, s
from .records import JobReader
from .writes import (
    MAX_ATTEMPTS,
    Before,
    CasFailed,
    TooManyItems,
    Transaction,
    Writer,
    write_each,
)


@dataclass
class _Peek:
    """What an insert read before deciding."""

    existing: set[str] = field(default_factory=set)
    holders: dict[str, Job] = field(default_factory=dict)
    """Unique key -> the job holding it (keys held by a missing job are free)."""
    held: dict[str, str] = field(default_factory=dict)
    """Unique key -> the holder id read (the write's condition)."""


class AwsJobs:
    def __init__(self, aws: AwsClients, keys: Keys, table: str, writer: Writer) -> None:
        self._aws, self._keys, self._table = aws, keys, table
        self._writer = writer
        self._reader = JobReader(aws, keys, table)
        self._intents = BatchIntents(aws, keys, table, writer)

    async def repair(self, now: int) -> None:
        """Finish the atomic batches whose writer died half-way (:class:`BatchIntents`)."""
        await self._intents.repair(now)

    async def insert_jobs(
        self, jobs: Sequence[Job], *, atomic: bool = False
    ) -> list[Job | Deduplicated | OJSError]:
        if not jobs:
            return []
        keys = [job.unique_key for job in jobs if job.unique_key is not None]
        if len(set(keys)) < len(keys):
            # A key taken twice in one call: each insert must see the one before it.
            if atomic:
                peek = await self._peek(jobs, keys, set())
                planned = plan_inserts(jobs, peek.existing.__contains__, peek.holders.get)
                if any(isinstance(result, OJSError) for result in planned):
                    return planned
            return [result for job in jobs for result in await self.insert_jobs([job])]
        taken: set[str] = set()
        peek = _Peek()
        for _ in range(MAX_ATTEMPTS):
            if keys or taken:
                peek = await self._peek(jobs, keys, taken)
            results = plan_inserts(jobs, peek.existing.__contains__, peek.holders.get)
            if atomic and any(isinstance(result, OJSError) for result in results):
                return results
            new = [(i, r) for i, r in enumerate(results) if isinstance(r, Job)]
            if not new:
                return results
            try:
                stored = await self._write_inserts(new, peek)
            except TooManyItems:
                if atomic and not keys and len(new) > 1:
                    if taken != {job.id for job in jobs}:
                        taken = {job.id for job in jobs}  # ids checked before the intent
                        continue
                    stored = await self._intents.insert(dict(new))
                    for index, job in stored.items():
                        results[index] = job
                    return results
                if atomic or len(jobs) == 1:
                    raise PayloadTooLarge(
                        f"{len(jobs)} jobs do not fit one DynamoDB transaction (100 items);"
                        " enqueue fewer at once.",
                        details={"jobs": len(jobs)},
                    ) from None
                half = len(jobs) // 2  # not all or nothing: in parts that fit
                return [*await self.insert_jobs(jobs[:half]), *await self.insert_jobs(jobs[half:])]
            except CasFailed as failed:
                taken |= failed.job_ids  # an id (or a holder) changed: read, decide again
                continue
            for index, job in stored.items():
                results[index] = job
            return results
        raise BackendUnavailable(
            "Jobs or unique keys kept changing concurrently while inserting; try again."
        )

    async def _write_inserts(self, new: list[tuple[int, Job]], peek: _Peek) -> dict[int, Job]:
        """Write the jobs (by their index in the call) in one transaction."""
        stored: dict[int, Job] = {}

        def build(transaction: Transaction) -> None:
            stored.clear()
            for index, job in new:
                stored[index] = self._stage_insert(transaction, job, peek)

        await self._writer.write(build, crash_at="aws.insert.stored")
        return stored

    def _stage_insert(self, transaction: Transaction, job: Job, peek: _Peek) -> Job:
        key = job.unique_key
        if key is not None:
            holder = peek.holders.get(key)
            cancelled = replaced_by(job, holder)
            if cancelled is not None and holder is not None:
                transaction.put_job(cancelled, Before.of(holder))
            held = peek.held.get(key)
            unique = self._keys.unique(key)
            if held is None:
                transaction.put(unique, {"id": s(job.id)}, condition="attribute_not_exists(pk)")
            else:
                transaction.put(unique, {"id": s(job.id)}, condition="id = :held",
                                values={":held": s(held)})  # fmt: skip
        return transaction.put_job(job, None)

    async def _peek(self, jobs: Sequence[Job], keys: Sequence[str], taken: set[str]) -> _Peek:
        peek = _Peek()
        held = await self._unique_holders(keys) if keys else {}
        found = await self._reader.read([*taken, *held.values()])
        peek.existing = {job.id for job in jobs if job.id in found}
        for key, holder_id in held.items():
            peek.held[key] = holder_id
            if holder_id in found:
                peek.holders[key] = found[holder_id]
        return peek

    async def _unique_holders(self, keys: Sequence[str]) -> dict[str, str]:
        wanted = list(dict.fromkeys(keys))
        answer = await self._aws.dynamodb(
            "batch_get_item",
            RequestItems={self._table: {
                "Keys": [self._keys.unique(key) for key in wanted], "ConsistentRead": True,
            }},
        )  # fmt: skip
        prefix = len(self._keys.prefix) + len("unique#")
        return {
            item["pk"]["S"][prefix:]: item["id"]["S"]
            for item in answer.get("Responses", {}).get(self._table, [])
        }

    async def get_jobs(self, job_ids: Sequence[str]) -> list[Job | None]:
        found = await self._reader.read(job_ids)
        return [found.get(job_id) for job_id in job_ids]

    async def update_jobs(self, updates: Sequence[tuple[Job, int]]) -> list[bool]:
        """Each job written on the condition that it is still the version expected. What
        it replaces (version, state, timers) comes from the writer's :attr:`Writer.known`
        when that holds the expected version (an ack after this process's claim: no read
        first), else from a read; a cached one that turns out wrong (the job changed, or
        was deleted and made again) is read and tried once more, so the cache never
        decides an answer."""
        results = [False] * len(updates)
        for this_round in update_rounds(updates):
            known = self._writer.known
            befores: dict[str, Before] = {}
            unknown: list[int] = []
            for index in this_round:
                job, expected = updates[index]
                cached = known.get(job.id)
                if cached is not None and cached.version == expected:
                    befores[job.id] = cached
                else:
                    unknown.append(index)
            await self._read_befores(updates, unknown, befores)
            live = [index for index in this_round if updates[index][0].id in befores]
            await self._write_updates(updates, live, befores, results)
            again = [i for i in live if not results[i] and i not in unknown]
            if again:
                for index in again:
                    befores.pop(updates[index][0].id, None)
                await self._read_befores(updates, again, befores)
                await self._write_updates(
                    updates, [i for i in again if updates[i][0].id in befores], befores, results
                )
        return results

    async def _read_befores(
        self, updates: Sequence[tuple[Job, int]], indexes: list[int], befores: dict[str, Before]
    ) -> None:
        """``befores`` gets the stored version of each of ``indexes`` that is the one expected."""
        if not indexes:
            return
        current = await self._reader.read(updates[index][0].id for index in indexes)
        for index in indexes:
            job, expected = updates[index]
            stored = current.get(job.id)
            if stored is not None and stored.version == expected:
                befores[job.id] = Before.of(stored)

    async def _write_updates(
        self,
        updates: Sequence[tuple[Job, int]],
        indexes: list[int],
        befores: dict[str, Before],
        results: list[bool],
    ) -> None:
        await write_each(
            self._writer,
            indexes,
            partial(_stage_update, updates, befores),
            lambda index: updates[index][0].id,
            results,
            crash_at="aws.update.stored",
        )

    async def count_jobs(self, queue: str) -> dict[State, int]:
        answer = await self._aws.dynamodb(
            "get_item", TableName=self._table, Key=self._keys.count(queue), ConsistentRead=True
        )
        item = answer.get("Item") or {}
        counts: dict[State, int] = {}
        for state in State:
            value = int(item.get(state.value, {}).get("N", "0"))
            if value:
                counts[state] = value
        return counts


def _stage_update(
    updates: Sequence[tuple[Job, int]],
    befores: dict[str, Before],
    transaction: Transaction,
    index: int,
) -> None:
    job = updates[index][0]
    transaction.put_job(job, befores[job.id])


__all__ = ["AwsJobs"]
