"""Where each item lives in the table, and how values are written: pure (no I/O).

Keys follow the table in the package docstring; :class:`Keys` builds them under the
backend's prefix, as DynamoDB's typed key maps (``{"pk": {"S": ...}, "sk": {"S": ...}}``).
Sort keys that order items are zero-padded numbers, so string order is numeric order.
"""

from __future__ import annotations

import zlib
from typing import Any

Item = dict[str, dict[str, Any]]
"""A DynamoDB item (or key) in the low-level typed form."""

TIMER_SHARDS = 4
"""Partitions the timers are spread over (by job id), read merged: timer writes (one per
claim: the lease) are not all on one partition."""
LANE_BASE = 2**31
OUTBOX_BUCKET = 1024
"""Outbox entries per partition."""
NO_SORT = "#"


def pad(number: int, width: int = 15) -> str:
    if number < 0:
        raise ValueError(f"cannot order a negative number: {number}")
    return f"{number:0{width}d}"


def lane(priority: int) -> str:
    """Higher priority first in key order (priorities are 32-bit integers)."""
    return pad(LANE_BASE - priority, 10)


def timer_shard(job_id: str) -> int:
    return zlib.crc32(job_id.encode()) % TIMER_SHARDS


def s(value: str) -> dict[str, str]:
    return {"S": value}


def n(value: int) -> dict[str, str]:
    return {"N": str(value)}


class Keys:
    def __init__(self, prefix: str = "") -> None:
        self.prefix = prefix

    def key(self, pk: str, sk: str = NO_SORT) -> Item:
        return {"pk": s(self.prefix + pk), "sk": s(sk)}

    def job(self, job_id: str) -> Item:
        return self.key(f"job#{job_id}")

    def ready_partition(self, queue: str) -> str:
        return f"{self.prefix}ready#{queue}"

    def ready(self, queue: str, priority: int, seq: int, job_id: str) -> Item:
        return self.key(f"ready#{queue}", f"{lane(priority)}#{pad(seq)}#{job_id}")

    def timer_partition(self, shard: int) -> str:
        return f"{self.prefix}timer#{shard}"

    def timer(self, job_id: str, version: int, due: int) -> Item:
        return self.key(f"timer#{timer_shard(job_id)}", f"{pad(due)}#{job_id}#{version}")

    def dead_partition(self, queue: str) -> str:
        return f"{self.prefix}dead#{queue}"

    def dead(self, queue: str, seq: int, job_id: str) -> Item:
        return self.key(f"dead#{queue}", f"{pad(seq)}#{job_id}")

    def dead_queues(self, queue: str) -> Item:
        return self.key("deadqueues", queue)

    def count(self, queue: str) -> Item:
        return self.key(f"count#{queue}")

    def unique(self, unique_key: str) -> Item:
        return self.key(f"unique#{unique_key}")

    def rate(self, queue: str) -> Item:
        return self.key(f"rate#{queue}")

    def snapshot(self, key: str) -> Item:
        return self.key("snap", key)

    def snapshot_partition(self) -> str:
        """Every snapshot, by key: a listing by key prefix is one ``begins_with`` Query."""
        return f"{self.prefix}snap"

    def outseq(self) -> Item:
        return self.key("outseq")

    def outkey(self, entry_key: str) -> Item:
        """Where the outbox entry of ``entry_key`` is (``seq``): a read after an event id."""
        return self.key(f"outkey#{entry_key}")

    def outbox_partition(self, bucket: int) -> str:
        return f"{self.prefix}outbox#{bucket}"

    def outbox(self, seq: int) -> Item:
        return self.key(f"outbox#{seq // OUTBOX_BUCKET}", pad(seq))


def sort_of(item: Item) -> str:
    return str(item["sk"]["S"])


__all__ = [
    "LANE_BASE", "NO_SORT", "OUTBOX_BUCKET", "TIMER_SHARDS", "Item", "Keys", "lane", "n", "pad",
    "s", "sort_of", "timer_shard",
]  # fmt: skip
