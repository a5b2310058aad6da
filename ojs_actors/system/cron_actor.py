"""One CronActor per cron entry, under the ``crons`` supervisor.

The actor's snapshot ``cron:<name>`` is the entry: its definition and its
bookkeeping (:mod:`.cron_book`). ``handled_through`` is the instant up to which every slot has been
dealt with (fired or skipped); a slot is fired by writing its intent (slot and
job id) into the snapshot, enqueuing the job with that id through the queue's
actor, then recording it. A restarted actor, or server, finds an intent whose
job exists and records it instead of firing again; one whose job is not there
is enqueued again with the same job id while it is fresh (the first enqueue may
still land: the first insert wins, the other is a duplicate), and an older one
is dropped and the slot decided afresh. After downtime only the latest missed
slot fires (ojs-cron §7.3).

Several server processes sharing a backend each run an actor for every entry
(the supervisor re-reads the ``cron:`` snapshots every poll interval, starting
actors for new entries and stopping those whose snapshot is gone). They agree
through the snapshot's version: every step starts from the stored snapshot and
every write is a compare-and-set on its version, so of two actors deciding the
same slot only the one whose intent lands fires it; the other's write fails
(:class:`SnapshotConflict`), it re-reads, and finds the slot claimed; a fresh
intent it finds is finished with its job id, as its owner would.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import trio

from ..actors import Actor
from ..backends import Backend
from ..core import Job, OJSError, QueuePaused, State, format_ms, new_id
from ..core.cron import CronSpec, Decision, decide_overlap, job_request
from ..core.events import cron_event
from .clock import Clock
from .cron_book import Book, Intent

log = logging.getLogger("ojs_actors.cron")

SNAPSHOT_PREFIX = "cron:"
MAX_SLEEP = 60.0
"""Look at the schedule at least once a minute (ojs-cron §7.3's recommended bound)."""
INTENT_GRACE_MS = 30_000
"""An intent younger than this is finished with its job id, not dropped (it may be mid-enqueue)."""


class JobPort(Protocol):
    """What a CronActor needs of the system: the normal job operations."""

    async def enqueue(self, request: dict[str, Any] | Job) -> Job: ...

    async def cancel(self, job_id: str) -> Job: ...

    async def activate(self, job_id: str) -> Job: ...


@dataclass(slots=True)
class RegisterCron:
    spec: CronSpec


@dataclass(slots=True)
class SetCronEnabled:
    enabled: bool


@dataclass(slots=True)
class DescribeCron:
    pass


@dataclass(slots=True)
class RefreshCron:
    """The stored entry may have changed through another process: look again now."""


class SnapshotConflict(Exception):
    """The entry's snapshot changed since this actor read it (another process wrote it)."""


class CronActor(Actor):
    reply_errors = (OJSError,)

    def __init__(
        self,
        name: str,
        backend: Backend,
        jobs: JobPort,
        clock: Clock,
        *,
        poll_interval: float = 1.0,
    ) -> None:
        self.name = name
        self.backend = backend
        self.jobs = jobs
        self.clock = clock
        self.poll_interval = poll_interval
        self.snapshot_key: str = f"{SNAPSHOT_PREFIX}{name}"
        self.snapshot_store = backend
        self.spec: CronSpec | None = None
        self.book: Book | None = None
        self.version: int | None = None
        """The stored snapshot's version this actor's state is based on."""
        self.instance = new_id()
        self._lock = trio.Lock()
        self._wake = trio.Event()

    # -- snapshot -----------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        assert self.spec is not None and self.book is not None
        return {**self.spec.to_record(), **self.book.to_record()}

    def restore(self, state: dict[str, Any]) -> None:
        self.spec = CronSpec.from_record(state)
        self.book = Book.from_record(state)

    async def on_start(self) -> None:
        try:
            await self._reload()
        except OJSError as error:
            if error.retryable:  # the backend away: the first step reads it again
                log.warning("cron %s: not read yet: %s", self.name, error)
            else:
                log.exception("cron %s: unreadable snapshot, entry inactive", self.name)
            self.spec = self.book = None
        self.nursery.start_soon(self._run)

    async def _reload(self) -> None:
        """Adopt the stored entry (``None`` if it is gone) and its version."""
        found = await self.backend.load_snapshot_versioned(self.snapshot_key)
        if found is None:
            self.spec = self.book = None
            self.version = None
            return
        state, self.version = found
        try:
            self.restore(state)
        except (OJSError, KeyError, TypeError, ValueError):
            # A snapshot this version cannot read: stay dormant rather than crash-loop;
            # registering the name again replaces it.
            log.exception("cron %s: unreadable snapshot, entry inactive", self.name)
            self.spec = self.book = None

    async def persist(self, events: Sequence[dict[str, Any]] = ()) -> None:
        """Compare-and-set on the version read: :class:`SnapshotConflict` if another
        process wrote (or deleted) the entry since. ``events`` go into the outbox with
        the save (only if it lands)."""
        version = await self.backend.save_snapshot_if(
            self.snapshot_key, self.snapshot(), self.version, events=events
        )
        if version is None:
            raise SnapshotConflict(self.snapshot_key)
        self.version = version

    # -- messages -------------------------------------------------------------------

    async def receive(self, message: Any) -> Any:
        if isinstance(message, RegisterCron):
            new = message.spec
            found = await self._register(lambda _: new)
            assert found is not None
            return found
        if isinstance(message, SetCronEnabled):
            enabled = message.enabled
            found = await self._register(
                lambda spec: dataclasses.replace(spec, enabled=enabled) if spec else None
            )
            return found[0] if found is not None else None
        if isinstance(message, RefreshCron):
            self._wake.set()
            return None
        if isinstance(message, DescribeCron):
            return self.snapshot() if self.spec is not None else None
        return await super().receive(message)

    async def _register(
        self, change: Callable[[CronSpec | None], CronSpec | None]
    ) -> tuple[dict[str, Any], bool] | None:
        """Upsert (ojs-cron §8.1) ``change(stored spec)``, read afresh; ``None`` if that
        is ``None``. A new schedule, or one enabled again, starts from now: slots before
        the change are not missed occurrences to catch up on."""
        async with self._lock:
            while True:
                await self._reload()
                spec = change(self.spec)
                if spec is None:
                    return None
                try:
                    return await self._upsert(spec)
                except SnapshotConflict:
                    continue  # changed through another process meanwhile: apply to that

    async def _upsert(self, spec: CronSpec) -> tuple[dict[str, Any], bool]:
        now = self.clock()
        old, book = self.spec, self.book
        created = old is None or book is None
        if old is None or book is None:
            book = Book.new(now)
        else:
            book.reregistered(old, spec, now)
        self.spec, self.book = spec, book
        book.plan(spec)
        await self.persist()
        self._wake.set()
        return self.snapshot(), created

    # -- the schedule loop ------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            self._wake = trio.Event()
            delay = await self._step()
            with trio.move_on_after(delay):
                await self._wake.wait()

    async def _step(self) -> float:
        """Deal with what is due now; returns how long to sleep before looking again."""
        async with self._lock:
            try:
                await self._reload()
                return await self._step_locked()
            except SnapshotConflict:
                # Another process moved the entry on (fired the slot, changed it): look again.
                log.info("cron %s: changed elsewhere meanwhile; re-reading", self.name)
                return 0
            except OJSError as error:
                if not error.retryable:
                    raise
                log.warning("cron %s: %s; retrying in %.1fs", self.name, error, self.poll_interval)
                return self.poll_interval

    async def _step_locked(self) -> float:
        spec, book = self.spec, self.book
        if spec is None or book is None:
            return math.inf
        try:
            if book.intent is not None:
                await self._resolve_intent(spec, book)
            waiting = await self._release_held(book) if book.held else False
            if spec.enabled:
                now = self.clock()
                slot = spec.schedule.latest_due(now, book.handled_through, book.anchor_at)
                if slot is not None:
                    await self._trigger(spec, book, slot, now)
        except OJSError as error:
            if not error.retryable:
                raise
            log.warning("cron %s: %s; retrying in %.1fs", self.name, error, self.poll_interval)
            return self.poll_interval
        before = book.next_run_at
        book.plan(spec)
        if book.next_run_at != before:
            await self.persist()
        delay = MAX_SLEEP
        if book.next_run_at is not None:
            # +1 ms: the clock truncates to milliseconds; wake when the slot has come.
            delay = min(delay, max(0, book.next_run_at - self.clock() + 1) / 1000)
        if waiting:
            delay = min(delay, self.poll_interval)
        return delay

    async def _trigger(self, spec: CronSpec, book: Book, slot: int, now: int) -> None:
        events = [
            cron_event("cron.skipped", spec, now, {"reason": "dst_skip", "scheduled_time": wall})
            for wall in spec.schedule.skipped_between(book.handled_through, slot)
        ]
        previous = await self._state_of(book.current_job_id)
        decision = decide_overlap(spec.overlap_policy, previous, len(book.held))
        if decision is Decision.SKIP:
            book.skipped(slot)
            book.plan(spec)
            events.append(cron_event("cron.skipped", spec, now, {
                "reason": "overlap_skip",
                "active_job_id": book.current_job_id,
                "scheduled_time": format_ms(slot),
            }))  # fmt: skip
            await self.persist(events)
            return
        if decision is Decision.CANCEL_AND_FIRE and book.current_job_id is not None:
            try:
                await self.jobs.cancel(book.current_job_id)
            except OJSError as error:  # it ended meanwhile: nothing to cancel
                log.info("cron %s: previous job not cancelled: %s", self.name, error)
        book.intent = Intent(
            slot, new_id(), hold=decision is Decision.HOLD, owner=self.instance, at=now
        )
        # The intent is durable before the job exists, and claims the slot: of several
        # processes only the one whose compare-and-set lands gets past this line (so
        # only it reports the skipped wall-clock times).
        await self.persist(events)
        await self._enqueue(spec, book, book.intent)

    async def _enqueue(self, spec: CronSpec, book: Book, intent: Intent) -> None:
        request = job_request(
            spec.name, spec.job_template, intent.slot, intent.job_id, hold=intent.hold
        )
        try:
            job = await self.jobs.enqueue(request)
        except OJSError as error:
            [landed] = await self.backend.get_jobs([intent.job_id])
            if landed is not None:  # the error came after the job was stored
                await self._record(spec, book, intent, landed)
                return
            if error.retryable and not isinstance(error, QueuePaused):
                raise  # the intent stays; the next step resolves it
            book.dropped(intent)
            reason = "queue_paused" if isinstance(error, QueuePaused) else "enqueue_failed"
            log.warning("cron %s: slot %s not enqueued: %s", self.name, intent.slot, error)
            await self.persist([cron_event("cron.skipped", spec, self.clock(), {
                "reason": reason, "error": error.code, "scheduled_time": format_ms(intent.slot),
            })])  # fmt: skip
            return
        await self._record(spec, book, intent, job)

    async def _record(self, spec: CronSpec, book: Book, intent: Intent, job: Job) -> None:
        now = self.clock()
        book.fired(intent, job.id, now)
        book.plan(spec)
        await self.persist([cron_event("cron.triggered", spec, now, {
            "job_id": job.id,
            "queue": job.queue,
            "run_count": book.run_count,
            "scheduled_time": format_ms(intent.slot),
            "actual_time": format_ms(now),
        })])  # fmt: skip

    async def _resolve_intent(self, spec: CronSpec, book: Book) -> None:
        """A fire interrupted by a crash or an error: record it if its job exists."""
        intent = book.intent
        assert intent is not None
        [job] = await self.backend.get_jobs([intent.job_id])
        if job is not None:
            await self._record(spec, book, intent, job)
        elif intent.at is not None and self.clock() - intent.at < INTENT_GRACE_MS:
            # A fire in progress, this instance's or another's: its first enqueue may still
            # land (a write whose answer was lost, an ask still in the queue's mailbox), so
            # finish it with the same job id (the first insert wins); deciding the slot
            # afresh, with a new id, could fire it twice (seen in the chaos suite).
            await self._enqueue(spec, book, intent)
        else:
            book.intent = None  # never stored: the slot is still due and is decided afresh
            await self.persist()

    async def _release_held(self, book: Book) -> bool:
        """Policy ``enqueue``: activate held jobs one at a time, each once the previous run
        is over. Returns whether jobs are still waiting."""
        while book.held:
            current = await self._state_of(book.current_job_id)
            if current is not None and not current.terminal:
                return True
            head = book.held[0]
            try:
                await self.jobs.activate(head)
            except OJSError as error:
                if await self._state_of(head) is State.PENDING:
                    log.warning("cron %s: held job %s not released yet: %s", self.name, head, error)
                    return True  # still held (a transient failure): try again later
                log.info("cron %s: held job %s not activated: %s", self.name, head, error)
            book.held.pop(0)
            book.current_job_id = head
            await self.persist()
        return False

    async def _state_of(self, job_id: str | None) -> State | None:
        if job_id is None:
            return None
        [job] = await self.backend.get_jobs([job_id])
        return job.state if job is not None else None
