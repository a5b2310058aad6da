"""Atomic batches larger than one transaction: :class:`BatchIntents`.

A DynamoDB transaction holds at most 100 items and a new job needs at least three (its
item, its ready entry, its outbox entry), so an atomic batch enqueue of more than
about 25 jobs cannot be one transaction. It is stored as an intent instead: one item
(``batch`` / ``{intent id}``) holding every job's record, written alone (one item is
atomic: this write is the batch's commit point: all of it is accepted, or none),
then materialized in transactions that fit, each job on the condition that its id is
free, then deleted. The reply waits for all of that, so a client that got its 2xx
reads every job.

Crash window: between the intent and its deletion (``aws.batch.intent``). The intent
stays; any process's scheduler finishes it (:meth:`BatchIntents.repair`, at most every
:data:`REPAIR_EVERY_MS`, for intents older than :data:`REPAIR_AFTER_MS`): a job already
materialized is skipped (its id is taken by itself), the others are written.

Unique keys are not taken this way (a batch with unique keys must fit one transaction:
413 otherwise), and the ids are checked free before the intent: two batches racing
with the same client-chosen ids could each commit an intent, and the second's jobs of
those ids would not be stored (logged).
"""

from __future__ import annotations

import logging
import time

from ...core import Job, PayloadTooLarge, new_id
from ..codec import dumps_record, loads_record
from ..faults import crash_point
from .client import AwsClients
from .layout import Keys, n, s
from .writes import Writer, write_each

log = logging.getLogger("ojs_actors.backends.aws")

MAX_INTENT_BYTES = 350_000
"""The records of one intent (DynamoDB items are at most 400 KB)."""
REPAIR_AFTER_MS = 30_000
"""An intent this old has lost its writer (a batch takes well under a second)."""
REPAIR_EVERY_MS = 5_000


class BatchIntents:
    def __init__(self, aws: AwsClients, keys: Keys, table: str, writer: Writer) -> None:
        self._aws, self._keys, self._table = aws, keys, table
        self._writer = writer
        self._repaired_at = 0

    async def insert(self, jobs: dict[int, Job]) -> dict[int, Job]:
        """Store ``jobs`` (their index in the caller's batch -> job; ids checked free)
        all or nothing; returns them as stored."""
        records = [dumps_record(job.to_record()) for job in jobs.values()]
        size = sum(len(record) for record in records)
        if size > MAX_INTENT_BYTES:
            raise PayloadTooLarge(
                f"The batch is {size} bytes stored; an atomic batch on the AWS backend holds "
                f"at most {MAX_INTENT_BYTES} (one DynamoDB item). Enqueue fewer at once.",
                details={"size": size, "limit": MAX_INTENT_BYTES},
            )
        intent = self._keys.key("batch", new_id())
        at = int(time.time() * 1000)
        await self._aws.dynamodb(
            "put_item",
            TableName=self._table,
            Item={**intent, "recs": {"L": [s(record) for record in records]}, "at": n(at)},
            ConditionExpression="attribute_not_exists(pk)",
        )
        crash_point("aws.batch.intent")
        await self._materialize(list(jobs.values()))
        await self._aws.dynamodb("delete_item", TableName=self._table, Key=intent)
        return jobs

    async def repair(self, now: int) -> None:
        """Finish intents older than :data:`REPAIR_AFTER_MS` (at most every
        :data:`REPAIR_EVERY_MS` per process)."""
        if now - self._repaired_at < REPAIR_EVERY_MS:
            return
        self._repaired_at = now
        answer = await self._aws.dynamodb(
            "query",
            TableName=self._table,
            KeyConditionExpression="pk = :p",
            ExpressionAttributeValues={":p": s(self._keys.key("batch")["pk"]["S"])},
            ConsistentRead=True,
        )
        for item in answer.get("Items", []):
            if now - int(item["at"]["N"]) < REPAIR_AFTER_MS:
                continue
            jobs = [Job.from_record(loads_record(text["S"])) for text in item["recs"]["L"]]
            log.warning("finishing an atomic batch of %d jobs whose writer stopped", len(jobs))
            await self._materialize(jobs)
            key = {"pk": item["pk"], "sk": item["sk"]}
            await self._aws.dynamodb("delete_item", TableName=self._table, Key=key)

    async def _materialize(self, jobs: list[Job]) -> None:
        """Each job stored (in order, in transactions that fit), skipping those whose id
        is taken (by themselves, in a repair)."""
        stored = [False] * len(jobs)
        await write_each(
            self._writer,
            list(range(len(jobs))),
            lambda transaction, index: transaction.put_job(jobs[index], None),
            lambda index: jobs[index].id,
            stored,
            crash_at="aws.insert.stored",
        )
        taken = [job.id for job, done in zip(jobs, stored, strict=True) if not done]
        if taken:
            log.info("batch jobs already stored: %s", ", ".join(taken))


__all__ = ["MAX_INTENT_BYTES", "REPAIR_AFTER_MS", "REPAIR_EVERY_MS", "BatchIntents"]
