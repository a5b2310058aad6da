"""The NATS ready queue: :class:`NatsReadyQueue`, on the shared
:class:`~.records.JobRecords`, and the ready notices (``ReadyNotices``).

Ready entries are hints checked against the records when read (:mod:`.layout`): a claim
lists the queue's lanes that hold entries, reads the best lane's head, takes the entries
whose job is still available at the entry's version, and purges the lane's head up to the
first entry it leaves, with the next claim's first round trip. Nothing scans every job.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import orjson

from ...core import Job, State, lifecycle
from ..base import RateLimit
from ..faults import crash_point
from .connection import CasFailed, NatsStore
from .jetstream import (
    JetStreamError,
    direct_get_request,
    parse_api,
    parse_direct,
    parse_stream_subjects,
    purge_request,
    stream_subjects_request,
)
from .layout import Entry, parse_entry
from .records import MAX_ATTEMPTS, JobRecords, OnRecords
from .writes import Batch, Before, guarded

log = logging.getLogger("ojs_actors.backends.nats")


class NatsReadyQueue(OnRecords):
    """The :class:`~ojs_actors.backends.base.ReadyQueue` part, and the optional
    ``ReadyNotices``."""

    def __init__(self, store: NatsStore, records: JobRecords) -> None:
        super().__init__(store, records)
        self._pending_purges: dict[str, int] = {}
        """Lane heads consumed by claims: lane subject -> purge below this sequence."""
        self._consumed: dict[str, int] = {}
        """Per lane, the sequence below which this process's claims consumed every entry:
        reads start there (the purge may not have run yet)."""
        self._lane_guess: dict[str, str] = {}
        """Per queue, the lane the last claim took jobs from."""

    def forget(self) -> None:
        """Drop what this process remembers (after a reset)."""
        self._pending_purges.clear()
        self._consumed.clear()
        self._lane_guess.clear()

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
        asked = _asked(min(count, self._records.jobs_per_batch()))
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
                wanted = min(wanted, self._records.jobs_per_batch())
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
        records = await self._records.read(entry.job_id for entry in entries)
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
            await self._records.write(batch, "nats.claim.stored")
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
        available publishes their queue on ``ojs.notify.ready``, after it is stored
        (:meth:`.records.JobRecords.write`)."""
        async with self._store.client.subscribe(self._subjects.ready_notices()) as receive:
            while True:
                message = await receive()
                notify(message.data.decode())


def _asked(wanted: int) -> int:
    """Entries read from a lane to claim ``wanted`` jobs: more, for the stale ones."""
    return wanted * 2 + 8
