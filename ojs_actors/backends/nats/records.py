"""What the NATS job parts share: :class:`JobRecords`, reading and writing job records,
and :class:`OnRecords`, the base of the parts built on it.

Every write is one atomic batch (:class:`~.writes.Batch`): the job records, each guarded
by a compare-and-set on its subject's last sequence, with their index and outbox entries.
A batch whose compare-and-set fails stores nothing; the jobs are read again and the write
decided again, so concurrent writers in other processes never overwrite each other.

Each version read or written is remembered (:class:`~.writes.Before`), so a write over it
needs no read first. After a write: a ready notice per queue that got available jobs, the
outbox reader told of the entries appended, and a queue's count deltas folded into one
message once they pile up.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import orjson

from ...core import Job, State
from ..codec import loads_record
from ..faults import crash_point
from .client import Request
from .connection import CasFailed, NatsStore
from .events import NatsEventLog
from .jetstream import PubAck
from .writes import Batch, Before, Stored, guarded

MAX_ATTEMPTS = 20
"""Rounds of read-decide-write before a write that keeps losing gives up (503)."""
REVISIONS_KEPT = 100_000
"""Stored versions remembered (:class:`~.writes.Before`: version, record sequence, queue,
state), so the ack after a claim writes without reading first."""
COUNTS_FOLD_AT = 64
"""Count delta messages of a queue beyond which reading them folds them into one."""
MESSAGES_PER_JOB = 6
"""Messages a claimed or updated job version writes at most (record, ready or timer,
dead letter, outbox, its queue's count delta, and one to spare), to split such writes
into batches that fit. Inserts, which may also cancel a replaced holder and take a unique
key, measure their batch instead."""


class JobRecords:
    """Job records on a :class:`~.connection.NatsStore`: read, remembered and written in
    atomic batches, for the job store, ready queue, timers and dead letter parts."""

    def __init__(self, store: NatsStore, events: NatsEventLog) -> None:
        """``events``: the outbox's reader, told of every entry appended (it trims)."""
        self._store = store
        self._subjects = store.subjects
        self._events = events
        self._count_writes: dict[str, int] = {}
        self._revisions: dict[str, Before] = {}

    def forget(self) -> None:
        """Drop what this process remembers (after a reset)."""
        self._revisions.clear()
        self._count_writes.clear()

    # -- reads ----------------------------------------------------------------------------

    async def read(
        self, job_ids: Iterable[str], wanted: Callable[[str, int], bool] | None = None
    ) -> dict[str, Stored]:
        """The stored jobs of ``job_ids`` (missing and deleted ones left out); with
        ``wanted(id, version)``, only those it wants are decoded into jobs (a record's
        version is read without building the job, the costly part)."""
        subjects = self._subjects
        ids = list(dict.fromkeys(job_ids))
        found = await self._store.last(subjects.job(job_id) for job_id in ids)
        stored: dict[str, Stored] = {}
        for job_id in ids:
            message = found.get(subjects.job(job_id))
            if message is None or not message.data:
                continue
            record = loads_record(message.data.decode())
            if wanted is not None and not wanted(job_id, record["version"]):
                continue
            job = Job.from_record(record)
            stored[job_id] = Stored(job, message.seq)
            self._remember(job, message.seq)
        return stored

    def remembered(self, job_id: str) -> Before | None:
        """The version of the job this process read or wrote last, if it remembers one."""
        return self._revisions.get(job_id)

    def drop(self, job_id: str) -> None:
        """Forget the job's remembered version (it changed elsewhere, or is deleted)."""
        self._revisions.pop(job_id, None)

    def _remember(self, job: Job, seq: int) -> None:
        revisions = self._revisions
        revisions.pop(job.id, None)
        revisions[job.id] = Before.of(job, seq)
        if len(revisions) > REVISIONS_KEPT:
            del revisions[next(iter(revisions))]

    async def counts(self, queue: str) -> dict[State, int]:
        """The queue's jobs per state, summed from its count deltas (folded into one
        message when there are many)."""
        subject = self._subjects.count(queue)
        messages = await self._store.read(subject)
        totals: dict[str, int] = {}
        for message in messages:
            for state, delta in orjson.loads(message.data).items():
                totals[state] = totals.get(state, 0) + delta
        if len(messages) > COUNTS_FOLD_AT // 2:
            folded = {state: n for state, n in totals.items() if n}
            try:
                await self._store.write(
                    [(subject, orjson.dumps(folded), guarded(messages[-1].seq))]
                )
            except CasFailed:
                pass  # written meanwhile: fold next time
        return {State(state): n for state, n in totals.items() if n > 0}

    # -- writes ---------------------------------------------------------------------------

    async def write(self, batch: Batch, point: str) -> list[Stored]:
        """Store ``batch``; :class:`CasFailed` if a compare-and-set in it did not hold.
        ``point`` names the crash point right after the store (:mod:`..faults`)."""
        ack: PubAck = await self._store.write(batch.finish())
        crash_point(point)
        stored = batch.stored(ack)
        for item in stored:
            self._remember(item.job, item.seq)
        await self._after_write(batch, len(stored))
        return stored

    async def _after_write(self, batch: Batch, entries: int) -> None:
        if batch.woken:  # hints, sent without waiting: a lost one costs a poll interval
            notice = self._subjects.ready_notices()
            await self._store.client.requests(
                [Request(notice, queue.encode(), replies="fire") for queue in batch.woken]
            )
        await self._events.appended(entries)
        for queue in batch.counts:
            writes = self._count_writes.get(queue, 0) + 1
            if writes >= COUNTS_FOLD_AT:
                writes = 0
                await self.counts(queue)
            self._count_writes[queue] = writes

    def jobs_per_batch(self) -> int:
        """Job versions one atomic batch surely holds (writes that need not be all or
        nothing are split to fit)."""
        return max(1, (self._store.batch_max_messages - 8) // MESSAGES_PER_JOB)


class OnRecords:
    """A job part on the shared :class:`JobRecords` (and the store under them)."""

    def __init__(self, store: NatsStore, records: JobRecords) -> None:
        self._store = store
        self._subjects = store.subjects
        self._records = records
