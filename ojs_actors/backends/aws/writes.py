"""One write: a ``TransactWriteItems`` built by :class:`Transaction`, run by :class:`Writer`.

A transaction holds every item of one change: each job's item with the condition on
its stored version, the index entries its new version needs, the count deltas, and
its outbox entries. Outbox entries are numbered from ``outseq``: the transaction moves
the counter from the value this process last saw to that plus the entries it
appends, on the condition that it still holds that value. If another process moved it
meanwhile the whole transaction is refused; the writer reads the counter and builds
the transaction again (:meth:`Writer.write` takes a builder, called with the first
free sequence number). A refused job condition is reported as :class:`CasFailed`
with the ids whose condition failed.

The outbox sequence also orders the ready index: a job made available is keyed by the
seq of its outbox entry, so FIFO within a priority is the order the changes were
stored, across every process.
"""

from __future__ import annotations

import time
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from ...core import BackendUnavailable, Job, PayloadTooLarge, State
from ...core.events import change_key
from ..base import timers_of
from ..codec import dumps_record
from ..faults import crash_point
from .client import AwsClients, error_code
from .layout import Item, Keys, n, s

MAX_ITEMS = 100
"""DynamoDB's limit of items per transaction."""
MAX_RECORD_BYTES = 180_000
"""A job record (stored twice: the job item and its outbox entry) must leave each item
under DynamoDB's 400 KB."""
MAX_ATTEMPTS = 20
EVENT_TTL = 86_400
"""Seconds an outbox entry is kept at most: DynamoDB's TTL deletes it (free of charge,
usually within a few days of its ``exp``) once it has passed, whether or not newer
entries have pushed it out of the retention already (:mod:`.events`)."""
KNOWN = 100_000
"""Job versions the writer remembers (the newest it wrote): an update of one of them
needs no read first."""


class CasFailed(Exception):
    """The stored version of some jobs (or a unique key's holder) was not the expected one."""

    def __init__(self, job_ids: set[str], other: bool = False) -> None:
        super().__init__(f"changed meanwhile: {sorted(job_ids)}")
        self.job_ids = job_ids
        self.other = other
        """A condition that is no job's (a unique key, a snapshot) failed too."""


@dataclass(frozen=True, slots=True)
class Before:
    """What a job update replaces: the stored version and state."""

    version: int
    state: State
    timers: tuple[int, ...] = ()
    """The due times of that version's timer entries: the write that replaces it deletes
    them in the same transaction (a lease's timer goes with the ack), instead of leaving
    them for the scheduler to read, find stale and delete later (three requests more)."""

    @classmethod
    def of(cls, job: Job) -> Before:
        return cls(job.version, job.state, tuple(sorted(set(timers_of(job)))))


@dataclass
class Transaction:
    keys: Keys
    table: str
    first_seq: int
    """The first outbox sequence number this transaction may use."""
    event_ttl: int = 0
    """Seconds an outbox entry is kept at most (its ``exp``, DynamoDB's TTL); 0: no ``exp``."""
    items: list[dict[str, Any]] = field(default_factory=list)
    owners: list[str | None] = field(default_factory=list)
    """Per item, the job id whose condition it carries (``None``: no job's)."""
    counts: dict[str, Counter[str]] = field(default_factory=dict)
    entries: int = 0
    markers: set[tuple[str, str]] = field(default_factory=set)
    ready: list[tuple[str, str, int]] = field(default_factory=list)
    """``(queue, job id, version)`` of the jobs this transaction makes available."""
    timers_due: list[int] = field(default_factory=list)
    """The due times of the timer entries this transaction writes."""
    timers_gone: list[int] = field(default_factory=list)
    """The due times of the timer entries this transaction deletes."""
    written: list[Job] = field(default_factory=list)
    """The job versions this transaction stores (the writer remembers them)."""

    @property
    def next_seq(self) -> int:
        return self.first_seq + self.entries

    def size(self) -> int:
        """Items once the counts and the outbox counter are added."""
        return len(self.items) + len(self.counts) + (1 if self.entries else 0)

    def add(self, item: dict[str, Any], owner: str | None = None) -> None:
        self.items.append(item)
        self.owners.append(owner)

    def put(self, key: Item, attributes: dict[str, Any], *, condition: str | None = None,
            values: dict[str, Any] | None = None, owner: str | None = None) -> None:  # fmt: skip
        put: dict[str, Any] = {"TableName": self.table, "Item": {**key, **attributes}}
        if condition is not None:
            put["ConditionExpression"] = condition
        if values:
            put["ExpressionAttributeValues"] = values
        self.add({"Put": put}, owner)

    def check(self, key: Item, condition: str, values: dict[str, Any] | None = None,
              owner: str | None = None) -> None:  # fmt: skip
        check: dict[str, Any] = {"TableName": self.table, "Key": key,
                                 "ConditionExpression": condition}  # fmt: skip
        if values:
            check["ExpressionAttributeValues"] = values
        self.add({"ConditionCheck": check}, owner)

    def delete(self, key: Item, *, condition: str | None = None,
               values: dict[str, Any] | None = None, owner: str | None = None) -> None:  # fmt: skip
        delete: dict[str, Any] = {"TableName": self.table, "Key": key}
        if condition is not None:
            delete["ConditionExpression"] = condition
        if values:
            delete["ExpressionAttributeValues"] = values
        self.add({"Delete": delete}, owner)

    def update(self, key: Item, expression: str, values: dict[str, Any], *,
               condition: str | None = None, owner: str | None = None) -> None:  # fmt: skip
        update: dict[str, Any] = {"TableName": self.table, "Key": key,
                                  "UpdateExpression": expression,
                                  "ExpressionAttributeValues": values}  # fmt: skip
        if condition is not None:
            update["ConditionExpression"] = condition
        self.add({"Update": update}, owner)

    def marker(self, key: Item) -> None:
        """Put an item that only says something exists, once per transaction (a
        transaction may not touch one item twice)."""
        identity = (key["pk"]["S"], key["sk"]["S"])
        if identity not in self.markers:
            self.markers.add(identity)
            self.put(key, {})

    def count(self, queue: str, state: State, delta: int) -> None:
        self.counts.setdefault(queue, Counter())[state.value] += delta

    def put_job(self, job: Job, before: Before | None) -> Job:
        """Store ``job`` over ``before`` (``None``: a new job; its id must be free), with
        its index entries and outbox entry (the caller's job is not changed: the seq of
        its ready entry is the outbox entry's, kept in the entry's key)."""
        record = dumps_record(job.to_record())
        if len(record) > MAX_RECORD_BYTES:
            raise PayloadTooLarge(
                f"Job {job.id} is {len(record)} bytes stored; the AWS backend stores at most "
                f"{MAX_RECORD_BYTES} (DynamoDB items are at most 400 KB).",
                details={"job_id": job.id, "size": len(record), "limit": MAX_RECORD_BYTES},
            )
        attributes = {"rec": s(record), "v": n(job.version), "st": s(job.state.value),
                      "q": s(job.queue)}  # fmt: skip
        if before is None:
            self.put(self.keys.job(job.id), attributes, condition="attribute_not_exists(pk)",
                     owner=job.id)  # fmt: skip
        else:
            self.put(self.keys.job(job.id), attributes, condition="v = :v AND st = :st",
                     values={":v": n(before.version), ":st": s(before.state.value)},
                     owner=job.id)  # fmt: skip
        if before is not None and before.version != job.version:
            for due in before.timers:  # that version's timers, stale from now on
                self.delete(self.keys.timer(job.id, before.version, due))
                self.timers_gone.append(due)
        self._index(job, before, self.next_seq)
        self.append_entry(change_key(job), "" if before is None else before.state.value, record)
        self.written.append(job)
        return job

    def _index(self, job: Job, before: Before | None, seq: int) -> None:
        keys, version = self.keys, {"v": n(job.version), "id": s(job.id)}
        if job.state is State.AVAILABLE:
            self.put(keys.ready(job.queue, job.priority, seq, job.id), version)
            if before is None or before.state is not State.AVAILABLE:
                self.ready.append((job.queue, job.id, job.version))
        for due in sorted(set(timers_of(job))):
            self.put(keys.timer(job.id, job.version, due), version)
            self.timers_due.append(due)
        if (
            job.state is State.DISCARDED
            and job.dead_letter
            and (before is None or before.state is not State.DISCARDED)
        ):
            at = job.discarded_at or job.changed_at or job.created_at
            self.put(keys.dead(job.queue, at, job.id), version)
            self.marker(keys.dead_queues(job.queue))
        self.count(job.queue, job.state, 1)
        if before is not None:
            self.count(job.queue, before.state, -1)

    def append_entry(self, key: str, before: str, body: str) -> None:
        """An outbox entry: ``before`` is the state before (``""``: a new job) or ``*``
        for an event stored whole (``body`` its JSON)."""
        seq = self.next_seq
        expiry = {"exp": n(int(time.time()) + self.event_ttl)} if self.event_ttl else {}
        self.put(self.keys.outbox(seq), {"k": s(key), "b": s(before), "r": s(body), **expiry})
        self.put(self.keys.outkey(key), {"seq": n(seq), **expiry})
        self.entries += 1

    def finish(self) -> list[dict[str, Any]]:
        """The transaction's items: those added, the count deltas, the outbox counter."""
        for queue, deltas in self.counts.items():
            changed = {state: delta for state, delta in deltas.items() if delta}
            if changed:
                names = {f"#s{i}": state for i, state in enumerate(changed)}
                values = {f":d{i}": n(delta) for i, delta in enumerate(changed.values())}
                adds = "ADD " + ", ".join(f"#s{i} :d{i}" for i in range(len(changed)))
                self.add({"Update": {"TableName": self.table, "Key": self.keys.count(queue),
                                     "UpdateExpression": adds,
                                     "ExpressionAttributeNames": names,
                                     "ExpressionAttributeValues": values}})  # fmt: skip
        self.counts = {}
        if self.entries:
            seen = self.first_seq - 1
            values = {":last": n(seen + self.entries)}
            if seen:
                values[":seen"] = n(seen)
            self.update(self.keys.outseq(), "SET n = :last", values,
                        condition="n = :seen" if seen else "attribute_not_exists(n)",
                        owner=OUTSEQ)  # fmt: skip
        if len(self.items) > MAX_ITEMS:
            raise TooManyItems(len(self.items))
        return self.items


OUTSEQ = "\0outseq"
"""The owner mark of the outbox counter's item."""


class TooManyItems(Exception):
    """A transaction of more than :data:`MAX_ITEMS` items: split the change."""


class Writer:
    """Runs transactions; keeps the outbox counter's value this process last saw, and
    the versions it wrote last (:attr:`known`)."""

    def __init__(
        self,
        aws: AwsClients,
        keys: Keys,
        table: str,
        on_ready: Callable[[list[tuple[str, str, int]]], Awaitable[None]] | None = None,
        event_ttl: int = EVENT_TTL,
    ) -> None:
        """``on_ready(jobs)`` is awaited after each write that made jobs available
        (``Transaction.ready``: the SQS hints)."""
        self._aws = aws
        self._keys = keys
        self._table = table
        self._event_ttl = event_ttl
        self._outseq: int | None = None
        self.on_ready = on_ready
        self.on_timers: Callable[[list[int], list[int]], None] | None = None
        """Told the due times of the timer entries each write stored and deleted."""
        self.known: OrderedDict[str, Before] = OrderedDict()
        """Job id -> the version this process stored last (at most :data:`KNOWN`, the
        newest): a hint, never the truth (every write is still conditional on it)."""

    def forget(self) -> None:
        self._outseq = None
        self.known.clear()

    def scratch(self) -> Transaction:
        """A transaction to stage into only to see how many items a change takes."""
        return Transaction(self._keys, self._table, 1)

    def _remember(self, jobs: list[Job]) -> None:
        known = self.known
        for job in jobs:
            known.pop(job.id, None)
            known[job.id] = Before.of(job)
        while len(known) > KNOWN:
            known.popitem(last=False)

    async def write(
        self, build: Callable[[Transaction], Any], crash_at: str | None = None
    ) -> Transaction:
        """Build (``build(transaction)`` adds the items) and run one transaction; again with
        the counter read afresh while another process moved it. :class:`CasFailed` if a
        job's or another condition failed. ``crash_at`` names the crash point between the
        stored transaction and what follows it (the hints, the reply)."""
        for _ in range(MAX_ATTEMPTS):
            if self._outseq is None:
                self._outseq = await self._read_outseq()
            transaction = Transaction(
                self._keys, self._table, self._outseq + 1, event_ttl=self._event_ttl
            )
            build(transaction)
            items = transaction.finish()
            if not items:
                return transaction
            try:
                await self._aws.dynamodb("transact_write_items", TransactItems=items)
            except ClientError as error:
                if error_code(error) != "TransactionCanceledException":
                    raise
                failed = _failed_owners(error, transaction.owners)
                if OUTSEQ in failed:
                    self._outseq = None
                jobs = {owner for owner in failed if owner not in (None, OUTSEQ)}
                if jobs or None in failed:
                    raise CasFailed(jobs, other=None in failed) from error
                continue
            if crash_at is not None:
                crash_point(crash_at)
            if transaction.entries:
                self._outseq = transaction.first_seq + transaction.entries - 1
            self._remember(transaction.written)
            if (transaction.timers_due or transaction.timers_gone) and self.on_timers:
                self.on_timers(transaction.timers_due, transaction.timers_gone)
            if transaction.ready and self.on_ready is not None:
                await self.on_ready(transaction.ready)
            return transaction
        raise BackendUnavailable("The outbox counter kept moving concurrently; try again.")

    async def _read_outseq(self) -> int:
        found = await self._aws.dynamodb(
            "get_item", TableName=self._table, Key=self._keys.outseq(), ConsistentRead=True
        )
        item = found.get("Item")
        return int(item["n"]["N"]) if item and "n" in item else 0


def _failed_owners(error: ClientError, owners: list[str | None]) -> set[str | None]:
    """The owners of the items whose condition failed (``CancellationReasons`` come in
    item order). Reasons other than a condition (a conflict with another transaction in
    flight) count as the counter's: the writer builds the transaction again."""
    reasons = error.response.get("CancellationReasons") or []
    failed: set[str | None] = set()
    for owner, reason in zip(owners, reasons, strict=False):
        code = reason.get("Code", "None")
        if code == "ConditionalCheckFailed":
            failed.add(owner)
        elif code not in ("None", ""):
            failed.add(OUTSEQ)
    if not failed:
        failed.add(OUTSEQ)
    return failed


async def write_each(
    writer: Writer,
    indexes: list[int],
    stage: Callable[[Transaction, int], object],
    job_id_of: Callable[[int], str],
    results: list[bool],
    *,
    crash_at: str,
) -> None:
    """Write each of ``indexes`` (staged by ``stage``; ``job_id_of`` names the job whose
    condition it carries) in as few transactions as fit, each on its own: ``results[i]``
    is ``True`` where it was stored, ``False`` where its condition failed (the job changed
    meanwhile, or its id was taken)."""
    parts = pack(writer, indexes, stage)
    while parts:
        part = parts.pop(0)

        def build(transaction: Transaction, part: list[int] = part) -> None:
            for index in part:
                stage(transaction, index)

        try:
            await writer.write(build, crash_at=crash_at)
        except TooManyItems:
            half = len(part) // 2
            if half == 0:
                raise
            parts[:0] = [part[:half], part[half:]]
            continue
        except CasFailed as failed:
            rest = [index for index in part if job_id_of(index) not in failed.job_ids]
            if len(rest) == len(part):  # not a job's condition: nothing of it is known
                raise BackendUnavailable("A write kept failing its conditions.") from failed
            if rest:
                parts.insert(0, rest)
            continue
        for index in part:
            results[index] = True


def pack(
    writer: Writer, indexes: list[int], stage: Callable[[Transaction, int], object]
) -> list[list[int]]:
    """``indexes`` in order, cut into the fewest runs that each fit one transaction
    (staged into scratch transactions to count their items): a batch of 100 jobs is 5
    transactions, not the 8 that halving until it fits makes."""
    parts: list[list[int]] = []
    part: list[int] = []
    scratch = writer.scratch()
    for index in indexes:
        stage(scratch, index)
        if part and scratch.size() > MAX_ITEMS:
            parts.append(part)
            part, scratch = [], writer.scratch()
            stage(scratch, index)
        part.append(index)
    if part:
        parts.append(part)
    return parts


__all__ = [
    "EVENT_TTL", "KNOWN", "MAX_ATTEMPTS", "MAX_ITEMS", "MAX_RECORD_BYTES", "OUTSEQ", "Before", "CasFailed",
    "TooManyItems", "Transaction", "Writer", "pack", "write_each",
]  # fmt: skip
