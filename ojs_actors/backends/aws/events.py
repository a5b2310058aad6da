"""The event outbox in DynamoDB, read and trimmed: :class:`AwsEventLog` (``EventLog``).

Entries are items of ``outbox#{seq // 1024}`` keyed by their 15-digit seq, appended by
every write (:mod:`.writes`); ``outkey#{key}`` says where an entry is, so a read after
an event id starts at its entry; ``outhead`` holds the oldest seq kept. Retention keeps
the newest ``event_retention`` entries: the process that appended trims once it has
appended a tenth of that (deleting entries, their ``outkey`` items, then moving the head).
"""

from __future__ import annotations

import json
from typing import Any

from ...core import State
from ..base import EventFilter
from ..outbox import EVENT_RETENTION, OutboxEntry, collect, cursor
from .client import AwsClients
from .layout import OUTBOX_BUCKET, Keys, n, pad
from .records import job_of

PAGE = 200
"""Outbox entries per Query."""


class AwsEventLog:
    def __init__(
        self, aws: AwsClients, keys: Keys, table: str, event_retention: int = EVENT_RETENTION
    ) -> None:
        self._aws, self._keys, self._table = aws, keys, table
        self._keep = event_retention
        self._trim_every = max(1, event_retention // 10)
        self._untrimmed = 0

    def forget(self) -> None:
        self._untrimmed = 0

    async def appended(self, entries: int) -> None:
        """``entries`` were appended by this process: trim once enough piled up."""
        self._untrimmed += entries
        if self._untrimmed >= self._trim_every:
            await self.trim()

    async def read_events(self, query: EventFilter) -> list[dict[str, Any]]:
        if self._untrimmed:
            await self.trim()
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

    async def trim(self) -> None:
        self._untrimmed = 0
        head, last = await self._bounds()
        until = last - self._keep  # entries up to this seq go
        while head <= until:
            page = await self._page(head, until)
            if not page:
                head = (head // OUTBOX_BUCKET + 1) * OUTBOX_BUCKET
                continue
            keys = [{"pk": item["pk"], "sk": item["sk"]} for item in page]
            keys += [self._keys.outkey(item["k"]["S"]) for item in page]
            await self._aws.delete_items(self._table, keys)
            head = int(page[-1]["sk"]["S"]) + 1
            await self._aws.dynamodb(
                "put_item", TableName=self._table, Item={**self._keys.key("outhead"), "n": n(head)}
            )

    async def _bounds(self) -> tuple[int, int]:
        """The oldest seq kept and the newest written."""
        answer = await self._aws.dynamodb(
            "batch_get_item",
            RequestItems={self._table: {
                "Keys": [self._keys.key("outhead"), self._keys.outseq()], "ConsistentRead": True,
            }},
        )  # fmt: skip
        values = {item["pk"]["S"]: int(item["n"]["N"]) for item in
                  answer.get("Responses", {}).get(self._table, [])}  # fmt: skip
        prefix = self._keys.prefix
        return values.get(f"{prefix}outhead", 1), values.get(f"{prefix}outseq", 0)

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
