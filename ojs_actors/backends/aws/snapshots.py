"""Snapshots in DynamoDB: :class:`AwsSnapshots` (``Snapshots``).

One item per key in the ``snap`` partition (so a listing by any key prefix is one
``begins_with`` Query): ``val`` (the JSON), ``v`` (the version, moved on by every save:
the compare-and-set revision) and ``o`` (when it was first saved, for the listing's
order). A save with events is a transaction that appends them to the outbox.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

from ..codec import dumps
from .client import AwsClients
from .layout import Keys, n, s
from .writes import CasFailed, Transaction, Writer

_SAVE = "SET val = :val, o = if_not_exists(o, :o), v = if_not_exists(v, :zero) + :one"


class AwsSnapshots:
    def __init__(self, aws: AwsClients, keys: Keys, table: str, writer: Writer) -> None:
        self._aws, self._keys, self._table = aws, keys, table
        self._writer = writer
        self._last_order = 0

    def _order(self) -> int:
        """First-save order: nanoseconds, never twice the same in this process."""
        self._last_order = max(self._last_order + 1, time.time_ns())
        return self._last_order

    def _values(self, state: dict[str, Any]) -> dict[str, Any]:
        return {":val": s(dumps(state)), ":o": n(self._order()), ":zero": n(0), ":one": n(1)}

    async def load_snapshot(self, key: str) -> dict[str, Any] | None:
        found = await self.load_snapshot_versioned(key)
        return found[0] if found is not None else None

    async def load_snapshot_versioned(self, key: str) -> tuple[dict[str, Any], int] | None:
        answer = await self._aws.dynamodb(
            "get_item", TableName=self._table, Key=self._keys.snapshot(key), ConsistentRead=True
        )
        item = answer.get("Item")
        if item is None:
            return None
        return json.loads(item["val"]["S"]), int(item["v"]["N"])

    async def save_snapshot(self, key: str, state: dict[str, Any]) -> None:
        await self._aws.dynamodb(
            "update_item",
            TableName=self._table,
            Key=self._keys.snapshot(key),
            UpdateExpression=_SAVE,
            ExpressionAttributeValues=self._values(state),
        )

    async def save_snapshot_if(
        self,
        key: str,
        state: dict[str, Any],
        expected_version: int | None,
        *,
        events: Sequence[dict[str, Any]] = (),
    ) -> int | None:
        values = self._values(state)
        if expected_version is None:
            condition = "attribute_not_exists(pk)"
        else:
            condition = "v = :expected"
            values[":expected"] = n(expected_version)

        def build(transaction: Transaction) -> None:
            transaction.update(self._keys.snapshot(key), _SAVE, dict(values), condition=condition)
            for event in events:
                transaction.append_entry(event["id"], "*", dumps(event))

        try:
            await self._writer.write(build)
        except CasFailed:
            return None
        return (expected_version or 0) + 1

    async def list_snapshots(self, prefix: str) -> dict[str, dict[str, Any]]:
        condition = "pk = :p"
        values: dict[str, Any] = {":p": s(self._keys.snapshot_partition())}
        if prefix:
            condition += " AND begins_with(sk, :k)"
            values[":k"] = s(prefix)
        request: dict[str, Any] = {"TableName": self._table, "KeyConditionExpression": condition,
                                   "ExpressionAttributeValues": values, "ConsistentRead": True}  # fmt: skip
        items = await self._aws.dynamodb_items("query", **request)
        items.sort(key=lambda item: int(item["o"]["N"]))
        return {item["sk"]["S"]: json.loads(item["val"]["S"]) for item in items}

    async def delete_snapshot(self, key: str) -> bool:
        answer = await self._aws.dynamodb(
            "delete_item", TableName=self._table, Key=self._keys.snapshot(key),
            ReturnValues="ALL_OLD",
        )  # fmt: skip
        return "Attributes" in answer


__all__ = ["AwsSnapshots"]
