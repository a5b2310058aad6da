"""Claims from the ready index: :class:`AwsReadyQueue` (``ReadyQueue``).

A claim queries the head of the queue's ready partition (key order: priority, then the
seq of the change that made the job available), reads those jobs (up to 100: one Query
and one ``BatchGetItem``), and writes each current one's claim (or its expiry) on the
condition that it is still that version and available, in as few transactions as
the 100-item limit allows (19 claims each), in key order, deleting the entries it used
and the stale ones it met (entries of versions that moved on). A claim that loses a
race to another process looks again at what is left. With a rate limit, the queue's
claim times in the window are one item changed by compare-and-set in the same
transaction (one transaction a round, then).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from ...core import Job, State, lifecycle
from ..base import RateLimit
from .client import AwsClients
from .layout import Keys, n
from .records import JobReader
from .writes import MAX_ATTEMPTS, MAX_ITEMS, Before, CasFailed, Transaction, Writer

MAX_READ = 100
"""Ready entries (and their jobs: one ``BatchGetItem``) read per round of a claim."""
MAX_CLAIM = 19
"""Jobs claimed per transaction at most: a claim writes five items per job (the job,
its ready entry deleted, its lease timer, its outbox entry and where that is), plus
the count and the outbox counter: 19 fill the 100 items of a ``TransactWriteItems``.
Jobs with more (an execution timeout's timer, an expiry timer deleted) are packed
into transactions by their real item count (:func:`~.writes.pack`)."""
MAX_STALE = 10
"""Stale entries deleted per round (the rest by the next claims)."""


class AwsReadyQueue:
    def __init__(
        self,
        aws: AwsClients,
        keys: Keys,
        table: str,
        writer: Writer,
        on_claim: Callable[[str], None] = lambda queue: None,
    ) -> None:
        """``on_claim(queue)`` is told of every queue claimed from (the SQS hints'
        long polls follow the queues this process fetches from)."""
        self._aws, self._keys, self._table = aws, keys, table
        self._writer = writer
        self._on_claim = on_claim
        self._reader = JobReader(aws, keys, table)

    async def claim(
        self,
        queue: str,
        count: int,
        now: int,
        worker_id: str | None,
        visibility_ms: int | None,
        *,
        rate: RateLimit | None = None,
    ) -> tuple[list[Job], list[Job]]:
        self._on_claim(queue)
        claimed: list[Job] = []
        expired: list[Job] = []
        for _ in range(MAX_ATTEMPTS + count // MAX_CLAIM):
            wanted = count - len(claimed)
            if wanted <= 0:
                break
            window = await self._rate_window(queue, now, rate) if rate is not None else None
            if window is not None and rate is not None:
                # the rate item is one compare-and-set per transaction: one a round
                wanted = min(wanted, rate.limit - len(window[0]), MAX_CLAIM)
                if wanted <= 0:
                    break
            limit = min(MAX_READ, wanted + min(wanted, MAX_STALE))
            entries = await self._head(queue, limit)
            if not entries:
                break
            jobs = await self._reader.read(entry["id"]["S"] for entry in entries)
            plan = _Plan()
            more = len(entries) == limit  # the partition may hold more
            for entry in entries:
                job = jobs.get(entry["id"]["S"])
                current = (
                    job is not None
                    and job.state is State.AVAILABLE
                    and job.version == int(entry["v"]["N"])
                )
                if not current or job is None:
                    if len(plan.stale) < MAX_STALE:
                        plan.stale.append(entry)
                    else:
                        more = True
                elif len(plan.moves) >= wanted:
                    more = True  # current entries left for the next round
                elif job.expires_at is not None and job.expires_at <= now:
                    plan.moves.append((entry, job, lifecycle.expire(job, now), True))
                else:
                    claim = lifecycle.claim(job, now, worker_id, visibility_ms)
                    plan.moves.append((entry, job, claim, False))
            if not plan.moves and not plan.stale:
                break
            # One read, then as many transactions as the claims fill, in key order.
            lost = False
            for part in plan.split(self._writer, window is not None):
                try:
                    stage = partial(
                        part.stage, keys=self._keys, queue=queue, window=window, now=now
                    )
                    await self._writer.write(stage, crash_at="aws.claim.stored")
                except CasFailed:
                    lost = True  # another process claimed some of them: look again
                    break
                claimed += [nxt for _, nxt in part.claims]
                expired += [nxt for _, nxt in part.expiries]
            if not more and not plan.stale and not lost:
                break  # the queue had no more
        return claimed, expired

    async def _head(self, queue: str, limit: int) -> list[dict[str, Any]]:
        answer = await self._aws.dynamodb(
            "query",
            TableName=self._table,
            KeyConditionExpression="pk = :p",
            ExpressionAttributeValues={":p": {"S": self._keys.ready_partition(queue)}},
            ConsistentRead=True,
            Limit=limit,
        )
        items: list[dict[str, Any]] = answer.get("Items", [])
        return items

    async def _rate_window(
        self, queue: str, now: int, rate: RateLimit
    ) -> tuple[list[int], int | None]:
        """The claim stamps in the window ending at ``now``, and the item's version. A
        stamp is the claim time in ms * 1000 + a count (the times are a number set, so
        claims of one millisecond need stamps of their own)."""
        answer = await self._aws.dynamodb(
            "get_item", TableName=self._table, Key=self._keys.rate(queue), ConsistentRead=True
        )
        item = answer.get("Item")
        if item is None:
            return [], None
        times = [int(t) for t in item.get("t", {}).get("NS", [])]
        return sorted(t for t in times if t // 1000 > now - rate.window_ms), int(item["v"]["N"])


class _Plan:
    def __init__(self) -> None:
        self.claims: list[tuple[Job, Job]] = []
        self.expiries: list[tuple[Job, Job]] = []
        self.used: list[dict[str, Any]] = []
        self.stale: list[dict[str, Any]] = []
        self.moves: list[tuple[dict[str, Any], Job, Job, bool]] = []
        """``(entry, job, next version, is an expiry)`` in key order, before :meth:`split`."""

    def split(self, writer: Writer, rate: bool) -> list[_Plan]:
        """:attr:`moves` in parts that each fit one transaction (at most :data:`MAX_CLAIM`
        jobs), in key order; the stale entries go where there is room left (the last
        part), the others are met and deleted by a later claim."""
        reserve = 1 if rate else 0  # the rate item
        parts: list[_Plan] = []
        part, scratch = _Plan(), writer.scratch()
        for entry, before, nxt, expiry in self.moves:
            _stage_move(scratch, entry, before, nxt)
            full = len(part.used) >= MAX_CLAIM
            if part.used and (full or scratch.size() + reserve > MAX_ITEMS):
                parts.append(part)
                part, scratch = _Plan(), writer.scratch()
                _stage_move(scratch, entry, before, nxt)
            (part.expiries if expiry else part.claims).append((before, nxt))
            part.used.append(entry)
        part.stale = self.stale[: max(0, MAX_ITEMS - scratch.size() - reserve)]
        parts.append(part)
        return parts

    def stage(
        self,
        transaction: Transaction,
        keys: Keys,
        queue: str,
        window: tuple[list[int], int | None] | None,
        now: int,
    ) -> None:
        for before, nxt in [*self.claims, *self.expiries]:
            transaction.put_job(nxt, Before.of(before))
        for entry in [*self.used, *self.stale]:
            transaction.delete({"pk": entry["pk"], "sk": entry["sk"]})
        if window is not None and self.claims:
            times, version = window
            first = max([t + 1 for t in times if t // 1000 == now], default=now * 1000)
            stamps = [*times, *range(first, first + len(self.claims))]
            attributes = {"t": {"NS": [str(t) for t in stamps]},
                          "v": n((version or 0) + 1)}  # fmt: skip
            if version is None:
                transaction.put(keys.rate(queue), attributes, condition="attribute_not_exists(pk)")
            else:
                transaction.put(keys.rate(queue), attributes, condition="v = :v",
                                values={":v": n(version)})  # fmt: skip


def _stage_move(transaction: Transaction, entry: dict[str, Any], before: Job, nxt: Job) -> None:
    transaction.put_job(nxt, Before.of(before))
    transaction.delete({"pk": entry["pk"], "sk": entry["sk"]})


__all__ = ["AwsReadyQueue"]
