"""Job records in NATS JetStream and the indexes derived from them: :class:`NatsJobs`.

Every write is one atomic batch (:class:`~.writes.Batch`): the job records, each guarded
by a compare-and-set on its subject's last sequence, with their index and outbox entries.
A batch whose compare-and-set fails stores nothing; the jobs are read again and the write
decided again, so concurrent writers in other processes never overwrite each other.

Index entries are hints checked against the records when read (:mod:`.layout`): a claim
reads the queue's best lane, takes the entries whose job is still available at the
entry's version, and purges the lane's head up to the first entry it leaves; timers and
the dead letter are read and purged the same way. Nothing scans every job.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import orjson

from ...core import BackendUnavailable, Job, OJSError, State, lifecycle
from ..base import Deduplicated, RateLimit, plan_inserts, replaced_by, timers_of
from ..codec import loads_record
from ..faults import crash_point
from .client import Request
from .connection import CasFailed, NatsStore
from .events import NatsEventLog
from .jetstream import (
    JetStreamError,
    PubAck,
    direct_get_request,
    parse_api,
    parse_direct,
    parse_stream_subjects,
    purge_request,
    stream_subjects_request,
)
from .layout import Entry, parse_entry
from .writes import Batch, Before, Stored, guarded, is_dead

log = logging.getLogger("ojs_actors.backends.nats")

MAX_ATTEMPTS = 20
"""Rounds of read-decide-write before a write that keeps losing gives up (503)."""
REVISIONS_KEPT = 100_000
"""Stored versions remembered (:class:`~.writes.Before`: version, record sequence, queue,
state), so the ack after a claim writes without reading first."""
NEXT_DUE_LOOKS = 64
"""Timer entries ``next_due_at`` reads at a time."""
COUNTS_FOLD_AT = 64
"""Count delta messages of a queue beyond which reading them folds them into one."""
MESSAGES_PER_JOB = 6
"""Messages a claimed or updated job version writes at most (record, ready or timer,
dead letter, outbox, its queue's count delta, and one to spare), to split such writes
into batches that fit. Inserts, which may also cancel a replaced holder and take a unique
key, measure their batch instead."""


@dataclass
class _Peek:
    """What an insert reads before deciding, when it has unique keys or lost a race."""

    existing: set[str] = field(default_factory=set)
    revisions: dict[str, int] = field(default_factory=dict)
    """Record sequence per job id read (deleted jobs' too)."""
    key_revisions: dict[str, int] = field(default_factory=dict)
    holders: dict[str, Stored] = field(default_factory=dict)


class NatsJobs:
    """The :class:`~ojs_actors.backends.base.JobStore`, ``ReadyQueue``, ``Timers`` and
    ``DeadLetter`` parts on a :class:`~.connection.NatsStore`, and the optional
    ``ReadyNotices``."""

    def __init__(self, store: NatsStore, events: NatsEventLog) -> None:
        """``events``: the outbox's reader, told of every entry appended (it trims)."""
        self._store = store
        self._subjects = store.subjects
        self._events = events
        self._count_writes: dict[str, int] = {}
        self._revisions: dict[str, Before] = {}
        self._pending_purges: dict[str, int] = {}
        """Lane heads consumed by claims: lane subject -> purge below this sequence."""
        self._consumed: dict[str, int] = {}
        """Per lane, the sequence below which this process's claims consumed every entry:
        reads start there (the purge may not have run yet)."""
        self._lane_guess: dict[str, str] = {}
        """Per queue, the lane the last claim took jobs from."""

    def forget(self) -> None:
        """Drop what this process remembers (after a reset)."""
        self._revisions.clear()
        self._count_writes.clear()
        self._pending_purges.clear()
        self._consumed.clear()
        self._lane_guess.clear()

    # -- reads ----------------------------------------------------------------------------

    async def _read(
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

    def _remember(self, job: Job, seq: int) -> None:
        revisions = self._revisions
        revisions.pop(job.id, None)
        revisions[job.id] = Before.of(job, seq)
        if len(revisions) > REVISIONS_KEPT:
            del revisions[next(iter(revisions))]

    # -- writes ---------------------------------------------------------------------------

    async def _write(self, batch: Batch, point: str) -> list[Stored]:
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
                await self.count_jobs(queue)
            self._count_writes[queue] = writes

    def _jobs_per_batch(self) -> int:
        """Job versions one atomic batch surely holds (writes that need not be all or
        nothing are split to fit)."""
        return max(1, (self._store.batch_max_messages - 8) // MESSAGES_PER_JOB)

    # -- JobStore -------------------------------------------------------------------------

    async def insert_jobs(
        self, jobs: Sequence[Job], *, atomic: bool = False
    ) -> list[Job | Deduplicated | OJSError]:
        if not jobs:
            return []
        keys = [job.unique_key for job in jobs if job.unique_key is not None]
        peek: _Peek | None = None
        if len(set(keys)) < len(keys):
            # A key taken twice in one call: each insert must see the one before it, so
            # they are written one by one (all or nothing only as far as planning goes).
            if atomic:
                peek = await self._peek(jobs, keys)
                results = plan_inserts(jobs, peek.existing.__contains__, _holder_job(peek))
                if any(isinstance(result, OJSError) for result in results):
                    return results
            return [result for job in jobs for result in await self.insert_jobs([job])]
        for _ in range(MAX_ATTEMPTS):
            if peek is None and keys:
                peek = await self._peek(jobs, keys)
            known = peek or _Peek()
            results = plan_inserts(jobs, known.existing.__contains__, _holder_job(known))
            if atomic and any(isinstance(result, OJSError) for result in results):
                return results
            stored = [result for result in results if isinstance(result, Job)]
            if not stored:
                return results
            batch = Batch(self._subjects)
            for job in stored:
                self._stage_insert(batch, job, known)
            if not atomic and len(jobs) > 1 and batch.size() > self._store.batch_max_messages:
                half = len(jobs) // 2  # not all or nothing: in parts that fit a batch
                return [*await self.insert_jobs(jobs[:half]), *await self.insert_jobs(jobs[half:])]
            try:
                await self._write(batch, "nats.insert.stored")
            except CasFailed:
                peek = await self._peek(jobs, keys)  # an id or a key was taken meanwhile
                continue
            return results
        raise BackendUnavailable(
            "Jobs or unique keys kept changing concurrently while inserting; try again.",
            details={"backend": "nats"},
        )

    def _stage_insert(self, batch: Batch, job: Job, peek: _Peek) -> None:
        key = job.unique_key
        if key is not None:
            holder = peek.holders.get(key)
            cancelled = replaced_by(job, holder.job if holder is not None else None)
            if cancelled is not None and holder is not None:
                batch.put_job(cancelled, Before.of(holder.job, holder.seq))
            batch.put(
                self._subjects.unique(key), job.id.encode(), guarded(peek.key_revisions.get(key, 0))
            )
        batch.put_job(job, None, peek.revisions.get(job.id, 0))  # a deleted job's subject

    async def _peek(self, jobs: Sequence[Job], keys: Sequence[str]) -> _Peek:
        subjects = self._subjects
        found = await self._store.last(
            [subjects.job(job.id) for job in jobs] + [subjects.unique(key) for key in keys]
        )
        peek = _Peek()
        for job in jobs:
            message = found.get(subjects.job(job.id))
            if message is not None:
                peek.revisions[job.id] = message.seq
                if message.data:
                    peek.existing.add(job.id)
        holder_ids: dict[str, str] = {}
        for key in keys:
            message = found.get(subjects.unique(key))
            if message is not None:
                peek.key_revisions[key] = message.seq
                if message.data:
                    holder_ids[key] = message.data.decode()
        holders = await self._read(holder_ids.values()) if holder_ids else {}
        for key, holder_id in holder_ids.items():
            if holder_id in holders:
                peek.holders[key] = holders[holder_id]
        return peek

    async def get_jobs(self, job_ids: Sequence[str]) -> list[Job | None]:
        if not job_ids:
            return []
        stored = await self._read(job_ids)
        return [stored[job_id].job if job_id in stored else None for job_id in job_ids]

    async def update_jobs(self, updates: Sequence[tuple[Job, int]]) -> list[bool]:
        results = [False] * len(updates)
        pending = list(range(len(updates)))
        while pending:
            # The same job twice: each compare-and-set must see the one before it.
            this_round: list[int] = []
            later: list[int] = []
            seen: set[str] = set()
            for index in pending:
                job_id = updates[index][0].id
                (later if job_id in seen else this_round).append(index)
                seen.add(job_id)
            size = self._jobs_per_batch()
            for start in range(0, len(this_round), size):
                await self._update_round(updates, this_round[start : start + size], results)
            pending = later
        return results

    async def _update_round(
        self, updates: Sequence[tuple[Job, int]], indexes: list[int], results: list[bool]
    ) -> None:
        trust_cache = True
        for _ in range(MAX_ATTEMPTS):
            current = await self._current(
                {updates[index][0].id: updates[index][1] for index in indexes},
                trust_cache=trust_cache,
            )
            live = [
                index
                for index in indexes
                if (before := current.get(updates[index][0].id)) is not None
                and before.version == updates[index][1]
            ]
            if not live:
                return
            batch = Batch(self._subjects)
            for index in live:
                job = updates[index][0]
                batch.put_job(job, current[job.id])
            try:
                await self._write(batch, "nats.update.stored")
            except CasFailed:
                for index in live:
                    self._revisions.pop(updates[index][0].id, None)
                trust_cache = False
                indexes = live
                continue
            for index in live:
                results[index] = True
            return
        raise BackendUnavailable(
            "Jobs kept changing concurrently while updating; try again.",
            details={"backend": "nats"},
        )

    async def _current(self, expected: dict[str, int], *, trust_cache: bool) -> dict[str, Before]:
        """The stored versions of the jobs (ids to the versions expected); with
        ``trust_cache``, a version this process wrote or read last comes from memory if it
        is the one expected (the compare-and-set still decides: if it changed elsewhere
        meanwhile, the write fails and the next round reads)."""
        current: dict[str, Before] = {}
        if trust_cache:
            revisions = self._revisions
            for job_id, version in expected.items():
                before = revisions.get(job_id)
                if before is not None and before.version == version:
                    current[job_id] = before
        unknown = [job_id for job_id in expected if job_id not in current]
        if unknown:
            for job_id, stored in (await self._read(unknown)).items():
                current[job_id] = Before.of(stored.job, stored.seq)
        return current

    async def count_jobs(self, queue: str) -> dict[State, int]:
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

    # -- ReadyQueue -----------------------------------------------------------------------

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
        claimed: list[Job] = []
        expired: list[Job] = []
        if count <= 0:
            return claimed, expired
        asked = _asked(min(count, self._jobs_per_batch()))
        lanes, guess, head = await self._survey(queue, asked)
        for lane_subject in lanes:
            start = self._consumed.get(lane_subject, 1)
            entries = head if lane_subject == guess else None
            for _ in range(MAX_ATTEMPTS):
                wanted = count - len(claimed)
                window = None
                if rate is not None:
                    window = await self._rate_window(queue, rate, now)
                    wanted = min(wanted, rate.limit - len(window[0]))
                if wanted <= 0:
                    return claimed, expired
                wanted = min(wanted, self._jobs_per_batch())
                if entries is None:
                    asked = _asked(wanted)
                    read = await self._store.read(lane_subject, start, asked)
                    entries = [parse_entry(message.seq, message.data) for message in read]
                try:
                    more, gone, rest = await self._claim_entries(
                        lane_subject, queue, entries, wanted, now, worker_id, visibility_ms, window
                    )
                except CasFailed:
                    entries = None  # another process claimed some meanwhile: read again
                    continue
                claimed.extend(more)
                expired.extend(gone)
                if more or gone:
                    self._lane_guess[queue] = lane_subject
                if rest is None and len(entries) < asked:
                    break  # the lane has no more
                start, entries = rest or entries[-1].seq + 1, None
        return claimed, expired

    async def _survey(
        self, queue: str, asked: int
    ) -> tuple[list[str], str | None, list[Entry] | None]:
        """One round trip: the purges of lane heads earlier claims consumed, the queue's
        lanes that hold entries (best first), and the head of the lane that served the
        last claim (most queues use one lane), read ahead."""
        store = self._store
        purges, self._pending_purges = self._pending_purges, {}
        calls = [
            purge_request(store.stream, filter=subject, seq=before)
            for subject, before in purges.items()
        ]
        calls.append(stream_subjects_request(store.stream, self._subjects.ready_lanes(queue)))
        guess = self._lane_guess.get(queue)
        if guess is not None:
            start = self._consumed.get(guess, 1)
            calls.append(
                direct_get_request(store.stream, seq=start, next_by_subj=guess, batch=asked)
            )
        replies = await store.client.requests(calls)
        if purges:
            for reply in replies[: len(purges)]:
                try:
                    parse_api(reply)
                except JetStreamError as error:  # the entries stay, stale: purged later
                    log.warning("nats: purging a lane's head: %s", error.description)
            crash_point("nats.claim.purged")
        try:
            lanes, _ = parse_stream_subjects(replies[len(purges)])
            head = None
            if guess is not None:
                head = [parse_entry(m.seq, m.data) for m in parse_direct(replies[-1])]
        except JetStreamError as error:
            raise store.unavailable(error) from error
        return sorted(lanes), guess, head

    async def _claim_entries(
        self,
        lane_subject: str,
        queue: str,
        entries: list[Entry],
        wanted: int,
        now: int,
        worker_id: str | None,
        visibility_ms: int | None,
        window: tuple[list[int], int] | None,
    ) -> tuple[list[Job], list[Job], int | None]:
        """Claim up to ``wanted`` of a lane's ``entries`` (its head, in order), counting them
        in the rate ``window`` (its claim times and record sequence). Returns the claimed,
        the expired, and the first live entry left (``None`` if none was: every entry was
        consumed). Those before it are purged with the next claim."""
        if not entries:
            return [], [], None
        records = await self._read(entry.job_id for entry in entries)
        batch = Batch(self._subjects)
        claimed: list[Job] = []
        expired: list[Job] = []
        first_left: int | None = None  # the first live entry not taken stays in the lane
        seen: set[str] = set()
        for entry in entries:
            stored = records.get(entry.job_id)
            if stored is not None and stored.job.version < entry.version:
                first_left = entry.seq  # the record read is older than the entry: keep it
                break
            if (
                stored is None
                or entry.job_id in seen
                or stored.job.version != entry.version
                or stored.job.state is not State.AVAILABLE
                or stored.job.queue != queue
            ):
                continue  # stale: purged with the head
            if len(claimed) >= wanted:
                first_left = entry.seq
                break
            seen.add(entry.job_id)
            job = stored.job
            if job.expires_at is not None and job.expires_at <= now:
                nxt = lifecycle.expire(job, now)
                expired.append(nxt)
            else:
                nxt = lifecycle.claim(job, now, worker_id, visibility_ms)
                claimed.append(nxt)
            batch.put_job(nxt, Before.of(job, stored.seq))
        if window is not None and claimed:
            recent, rate_seq = window
            times = recent + [now] * len(claimed)
            batch.put(self._subjects.rate(queue), orjson.dumps(times), guarded(rate_seq))
        if seen:
            await self._write(batch, "nats.claim.stored")
        head_end = first_left if first_left is not None else entries[-1].seq + 1
        if head_end > entries[0].seq:
            purges = self._pending_purges
            purges[lane_subject] = max(purges.get(lane_subject, 0), head_end)
            self._consumed[lane_subject] = max(self._consumed.get(lane_subject, 0), head_end)
        return claimed, expired, first_left

    async def _rate_window(self, queue: str, rate: RateLimit, now: int) -> tuple[list[int], int]:
        """The queue's claim times within the rate limit's window ending at ``now``, and
        the sequence of the record holding them (0: none yet)."""
        subject = self._subjects.rate(queue)
        message = (await self._store.last([subject])).get(subject)
        if message is None:
            return [], 0
        recent = [t for t in orjson.loads(message.data) if t > now - rate.window_ms]
        return recent, message.seq

    async def watch_ready(self, notify: Callable[[str], None]) -> None:
        """:class:`~ojs_actors.backends.base.ReadyNotices`: every write that makes jobs
        available publishes their queue on ``ojs.notify.ready``, after it is stored."""
        async with self._store.client.subscribe(self._subjects.ready_notices()) as receive:
            while True:
                message = await receive()
                notify(message.data.decode())

    # -- Timers ---------------------------------------------------------------------------

    async def _timer_buckets(self) -> list[int]:
        subjects = self._subjects
        found = await self._store.subjects_of(subjects.timers())
        return sorted(subjects.second_of(subject) for subject in found)

    async def _live_timers(
        self, second: int, limit: int
    ) -> tuple[list[Entry], list[tuple[Entry, Stored]]]:
        """The first ``limit`` entries of a timer bucket, and those of them that match their
        job's current version; the stale ones before the first live one are purged."""
        subject = self._subjects.timer(second * 1000)
        entries = [parse_entry(m.seq, m.data) for m in await self._store.read(subject, 1, limit)]
        if not entries:
            return entries, []
        # A job this process wrote at a later version than the entry's is past it for
        # sure (versions only grow): stale without reading its record.
        known = self._revisions
        versions = {
            entry.job_id: entry.version
            for entry in entries
            if (before := known.get(entry.job_id)) is None or before.version <= entry.version
        }
        newer: set[str] = set()  # the record read is older than the entry: keep the entry

        def wanted(job_id: str, version: int) -> bool:
            if version < versions[job_id]:
                newer.add(job_id)
            return version == versions[job_id]

        records = await self._read(versions, wanted)
        live: list[tuple[Entry, Stored]] = []
        first_live: int | None = None
        for entry in entries:
            if entry.job_id in newer and first_live is None:
                first_live = entry.seq
            stored = records.get(entry.job_id)
            if stored is None or stored.job.version != entry.version:
                continue  # stale (or past for sure: not read)
            if first_live is None:
                first_live = entry.seq
            live.append((entry, stored))
        head_end = first_live if first_live is not None else entries[-1].seq + 1
        if head_end > entries[0].seq:
            await self._store.purge(subject, before_seq=head_end)
        return entries, live

    async def due_jobs(self, now: int, limit: int) -> list[Job]:
        found: dict[str, tuple[int, Job]] = {}
        for second in await self._timer_buckets():
            if second > now // 1000 or len(found) >= limit:
                break
            _, live = await self._live_timers(second, limit * 2)
            for _, stored in live:
                due = min(timers_of(stored.job), default=None)
                if due is not None and due <= now and stored.job.id not in found:
                    found[stored.job.id] = (due, stored.job)
        ordered = sorted(found.values(), key=lambda pair: pair[0])
        return [job for _, job in ordered[:limit]]

    async def next_due_at(self) -> int | None:
        """The earliest timer among the first live entries of the earliest bucket holding
        any (exact to the bucket's second: entries within it are in write order, and the
        scheduler polls anyway); stale entries met on the way are purged."""
        for second in await self._timer_buckets():
            while True:
                entries, live = await self._live_timers(second, NEXT_DUE_LOOKS)
                dues = [min(timers_of(stored.job)) for _, stored in live if timers_of(stored.job)]
                if dues:
                    return min(dues)
                if len(entries) < NEXT_DUE_LOOKS:
                    break  # this bucket held only stale entries, purged now
        return None

    # -- DeadLetter -----------------------------------------------------------------------

    async def list_dead_letter(
        self, queue: str | None, limit: int, offset: int
    ) -> tuple[list[Job], int]:
        subjects, store = self._subjects, self._store
        messages = await store.read(subjects.dead_of(queue))
        live = [message for message in messages if message.data]
        for tombstone in [message for message in messages if not message.data][:32]:
            await store.purge(tombstone.subject, before_seq=tombstone.seq + 1)
        page = [subjects.job_id_of(message.subject) for message in live[offset : offset + limit]]
        records = await self._read(page) if page and limit > 0 else {}
        jobs = [records[job_id].job for job_id in page if job_id in records]
        return [job for job in jobs if is_dead(job)], len(live)

    async def delete_dead_letter(self, job_id: str) -> bool:
        subjects = self._subjects
        for _ in range(MAX_ATTEMPTS):
            stored = (await self._read([job_id])).get(job_id)
            if stored is None or not is_dead(stored.job):
                return False
            job = stored.job
            batch = Batch(self._subjects)
            batch.delete_job(job, stored.seq)
            if job.unique_key is not None:
                key_subject = subjects.unique(job.unique_key)
                holder = (await self._store.last([key_subject])).get(key_subject)
                if holder is not None and holder.data.decode() == job_id:
                    batch.put(key_subject, b"", guarded(holder.seq))
            try:
                await self._store.write(batch.finish())
            except CasFailed:
                continue
            crash_point("nats.dead.deleted")
            self._revisions.pop(job_id, None)
            for subject in (subjects.job(job_id), subjects.dead(job.queue, job_id)):
                await self._store.purge(subject)
            return True
        raise BackendUnavailable(
            f"Job {job_id} kept changing while deleting it; try again.",
            details={"backend": "nats"},
        )


def _asked(wanted: int) -> int:
    """Entries read from a lane to claim ``wanted`` jobs: more, for the stale ones."""
    return wanted * 2 + 8


def _holder_job(peek: _Peek) -> Callable[[str], Job | None]:
    def holder(key: str) -> Job | None:
        stored = peek.holders.get(key)
        return stored.job if stored is not None else None

    return holder
