"""The event outbox in DynamoDB, read and trimmed: :class:`AwsEventLog` (``EventLog``).

Entries are items of ``outbox#{seq // 1024}`` keyed by their 15-digit seq, appended by
every write (:mod:`.writes`); ``outkey#{key}`` says where an entry is, so a read after
an event id starts at its entry. Retention keeps the newest ``event_retention`` entries:
the oldest seq kept is ``outseq - event_retention + 1``, computed by every reader from
the counter it reads anyway, so trimming costs no request at all. Entries below it are
invisible (a read starts there; a cursor pointing below it is gone) and DynamoDB's TTL
deletes them, for free, once their ``exp`` (written with them: ``event_ttl`` seconds
after the write, see :mod:`.writes`) has passed. Deleting them one by one cost two
write requests per entry, three entries per job: most of a job's bill before.
"""

from __future__ import annotations

import json
from typing import Any

from ...core import State
from ..base import EventFilter
from ..outbox import EVENT_RETENTION, OutboxEntry, collect, cursor
from .client import AwsClients
from .layout import OUTBOX_BUCKET, Keys, pad
from .records import job_of

PAGE = 200
"""Outbox entries per Query."""


class AwsEventLog:
    def __init__(
        self, aws: AwsClients, keys: Keys, table: str, event_retention: int = EVENT_RETENTION
    ) -> None:
        self._aws, self._keys, self._table = aws, keys, table
        self._keep = max(1, event_retention)

    def forget(self) -> None:
        """Nothing kept per process (the head follows the counter)."""

    async def read_events(self, query: EventFilter) -> list[dict[str, Any]]:
        head, last = await self._bounds()
        found: list[dict[str, Any]] = []
        after = cursor(query)
        seq, skip = head, 0
        if after is not None:
            key, skip = after
            at = await self._seq_of(key)
            if at is None or at < head:
                if not query.resume:
                    return []
                skip = 0
            else:
                seq = at
        while seq <= last:
            page = await self._page(seq, last)
            if not page:
                seq = (seq // OUTBOX_BUCKET + 1) * OUTBOX_BUCKET  # an emptied bucket
                continue
            if collect(map(_entry, page), query, skip, found):
                break
            skip = 0
            seq = int(page[-1]["sk"]["S"]) + 1
        return found

    async def _bounds(self) -> tuple[int, int]:
        """The oldest seq kept and the newest written."""
        answer = await self._aws.dynamodb(
            "get_item", TableName=self._table, Key=self._keys.outseq(), ConsistentRead=True
        )
        item = answer.get("Item")
        last = int(item["n"]["N"]) if item and "n" in item else 0
        return max(1, last - self._keep + 1), last

    async def _seq_of(self, key: str) -> int | None:
        answer = await self._aws.dynamodb(
            "get_item", TableName=self._table, Key=self._keys.outkey(key), ConsistentRead=True
        )
        item = answer.get("Item")
        return int(item["seq"]["N"]) if item is not None else None

    async def _page(self, first: int, last: int) -> list[dict[str, Any]]:
        """Entries from ``first`` to ``last`` within ``first``'s bucket, at most :data:`PAGE`."""
        answer = await self._aws.dynamodb(
            "query",
            TableName=self._table,
            KeyConditionExpression="pk = :p AND sk BETWEEN :a AND :b",
            ExpressionAttributeValues={
                ":p": {"S": self._keys.outbox_partition(first // OUTBOX_BUCKET)},
                ":a": {"S": pad(first)},
                ":b": {"S": pad(last)},
            },
            ConsistentRead=True,
            Limit=PAGE,
        )
        items: list[dict[str, Any]] = answer.get("Items", [])
        return items


def _entry(item: dict[str, Any]) -> OutboxEntry:
    before, body = item["b"]["S"], item["r"]["S"]
    if before == "*":
        return None, None, (json.loads(body),)
    return (State(before) if before else None), job_of({"rec": {"S": body}}), None


__all__ = ["PAGE", "AwsEventLog"]
