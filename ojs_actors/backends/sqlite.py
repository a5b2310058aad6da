"""The durable embedded backend: one SQLite file (stdlib ``sqlite3``) in WAL mode.

Threads. SQLite calls block, so none runs on the trio thread. One dedicated
*writer* thread owns the only writing connection; a *reader* thread owns a
second, ``query_only`` connection for the read-only methods (WAL lets readers
run alongside the writer, each seeing the last committed state). A trio
caller hands its operation to a thread through a queue and waits, without
blocking the event loop, for the thread to report back through the run's
``TrioToken``. The wait is shielded: like a memory-backend call, a backend
call that has started always completes and returns its result, even if the
caller is being cancelled (a claim must not vanish between the database and
the caller).

Group commit. The writer drains every call queued while it was busy (up to
``max_group``) into one ``BEGIN IMMEDIATE`` … ``COMMIT``: many callers, one
commit and one WAL sync. Each call runs inside its own ``SAVEPOINT``, so it is
atomic on its own (a call that raises is rolled back to its savepoint without
undoing the others), and every caller gets its own result, only after the
COMMIT that made it durable. ``BEGIN IMMEDIATE`` takes the write lock before
anything is read, so read-modify-write operations (``claim``, compare-and-set
``update_jobs``, unique checks) stay correct even with two processes on one
file.

Durability. ``synchronous=FULL`` by default: each group COMMIT syncs the WAL
before any caller is answered, so every 2xx survives a SIGKILL of the server
*and* an OS crash or power loss. ``synchronous="normal"`` (``--db-sync
normal``) skips that sync: a committed transaction is in the OS page cache,
which survives the death of the process (SIGKILL included) but not of the OS;
the last transactions before a power loss may be lost. Group commit is what
makes FULL affordable: the sync is paid once per batch, not per caller.

Schema. ``jobs`` keeps each job as its lossless record (``Job.to_record()``
as JSON) plus the columns its indexes need: the ready order per queue
(``queue, priority DESC, seq`` over available jobs), the earliest timer
(``due_at = min(timers_of(job))``), dead-letter order (``dead_seq``). Unique
keys map to the job that last took them (``unique_keys``), per-queue counts
per state are maintained in ``counts`` (plus a ``dead_letter`` pseudo-state),
``counters`` hands out ``seq`` and ``dead_seq``. Snapshots have their own table.

Outbox. Every job write appends a row to ``outbox`` in the same savepoint (the
change's key, the state before and the record just written; see
:mod:`ojs_actors.backends.outbox`), as does a snapshot save given events; so a
change and its events commit together. The writer trims the outbox to the newest
``event_retention`` rows once per transaction. Behaviour matches
:class:`~ojs_actors.backends.memory.MemoryBackend` method for method.
"""

from __future__ import annotations

import json
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import trio

from ..core import (
    BackendUnavailable,
    InvalidRequest,
    Job,
    OJSError,
    State,
    lifecycle,
)
from ..core.events import change_key
from .base import (
    EVERY_CAPABILITY,
    Deduplicated,
    EventFilter,
    JobQuery,
    RateLimit,
    plan_insert,
    plan_inserts,
    replaced_by,
    timers_of,
)
from .codec import dumps, dumps_record, loads_record
from .outbox import EVENT_RETENTION, OutboxEntry, collect, cursor

T = TypeVar("T")

SCHEMA_VERSION = 2
"""1 → 2: the ``events`` table became the ``outbox`` (migrated at start-up, old events dropped)."""
DEFAULT_PATH = "ojs.db"
MAX_GROUP = 256
SYNCHRONOUS = ("full", "normal")
_DEAD = "dead_letter"
"""Pseudo-state under which ``counts`` keeps each queue's dead-letter size."""
_CHUNK = 500
"""Ids per ``IN (…)`` query, well below SQLite's variable limit."""

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL)
       WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS jobs (
        id TEXT PRIMARY KEY,
        queue TEXT NOT NULL,
        state TEXT NOT NULL,
        priority INTEGER NOT NULL,
        seq INTEGER NOT NULL,
        version INTEGER NOT NULL,
        created_at INTEGER NOT NULL,
        due_at INTEGER,
        dead_seq INTEGER,
        record TEXT NOT NULL
    )""",
    """CREATE INDEX IF NOT EXISTS jobs_ready ON jobs (queue, priority DESC, seq)
       WHERE state = 'available'""",
    """CREATE INDEX IF NOT EXISTS jobs_due ON jobs (due_at, id) WHERE due_at IS NOT NULL""",
    """CREATE INDEX IF NOT EXISTS jobs_dead ON jobs (dead_seq) WHERE dead_seq IS NOT NULL""",
    """CREATE INDEX IF NOT EXISTS jobs_dead_by_queue ON jobs (queue, dead_seq)
       WHERE dead_seq IS NOT NULL""",
    # the job listing's default order (created_at, newest first): a page reads its rows
    # only; added by IF NOT EXISTS to older files at start-up (no schema version change)
    """CREATE INDEX IF NOT EXISTS jobs_created ON jobs (created_at, id)""",
    """CREATE TABLE IF NOT EXISTS unique_keys (key TEXT PRIMARY KEY, job_id TEXT NOT NULL)
       WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS counts (
        queue TEXT NOT NULL, state TEXT NOT NULL, n INTEGER NOT NULL,
        PRIMARY KEY (queue, state)
    ) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS snapshots (
        pos INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE, value TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS snapshot_versions (
        key TEXT PRIMARY KEY, version INTEGER NOT NULL
    ) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS outbox (
        pos INTEGER PRIMARY KEY, key TEXT NOT NULL, queue TEXT, job_type TEXT,
        before TEXT, record TEXT, event TEXT
    )""",
    """CREATE INDEX IF NOT EXISTS outbox_key ON outbox (key)""",
    """CREATE TABLE IF NOT EXISTS claim_times (queue TEXT NOT NULL, at INTEGER NOT NULL)""",
    """CREATE INDEX IF NOT EXISTS claim_times_by_queue ON claim_times (queue, at)""",
)
_OUTBOX_PAGE = 500
_COUNTERS = ("seq", "dead_seq")


def _load(record: str) -> Job:
    return Job.from_record(loads_record(record))


def _unavailable(error: sqlite3.Error) -> BackendUnavailable:
    return BackendUnavailable(
        f"SQLite backend error: {error}",
        details={"backend": "sqlite", "error": type(error).__name__},
    )


# -- threads ------------------------------------------------------------------------


@dataclass(slots=True)
class _Call:
    """One backend call for a worker thread; ``deliver(value, error)`` answers it."""

    fn: Callable[[sqlite3.Connection], Any]
    deliver: Callable[[Any, BaseException | None], None]


class _Worker:
    """A thread owning one connection, running the calls queued for it.

    ``group=True`` (the writer): all calls queued at once run in one write
    transaction, one savepoint each, one COMMIT. Otherwise (the reader): each
    call in its own read transaction, so its queries see one consistent state.
    """

    def __init__(
        self,
        name: str,
        connect: Callable[[], sqlite3.Connection],
        *,
        group: bool,
        max_group: int = MAX_GROUP,
        before_commit: Callable[[sqlite3.Connection], None] | None = None,
    ) -> None:
        """``before_commit`` runs once per group transaction, after its calls."""
        self._connect = connect
        self._group = group
        self._max_group = max_group
        self._before_commit = before_commit
        self._calls: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.transactions = 0
        """Transactions committed (with ``calls``: how well group commit batches)."""
        self.calls = 0

    def start(self) -> None:
        self._thread.start()

    def alive(self) -> bool:
        return self._thread.is_alive()

    def submit(self, call: _Call) -> None:
        self._calls.put(call)

    def stop(self) -> None:
        """Run what is queued, then close the connection and end the thread."""
        self._calls.put(None)

    def join(self) -> None:
        self._thread.join()

    def _run(self) -> None:
        connection: sqlite3.Connection | None = None
        failure: BaseException | None = None
        try:
            connection = self._connect()
        except Exception as error:
            failure = _unavailable(error) if isinstance(error, sqlite3.Error) else error
        try:
            stopping = False
            while not stopping:
                first = self._calls.get()
                if first is None:
                    break
                batch = [first]
                while len(batch) < self._max_group:
                    try:
                        item = self._calls.get_nowait()
                    except queue.Empty:
                        break
                    if item is None:
                        stopping = True
                        break
                    batch.append(item)
                if connection is None:
                    for call in batch:
                        call.deliver(None, failure)
                elif self._group:
                    self._run_group(connection, batch)
                else:
                    for call in batch:
                        self._run_read(connection, call)
        finally:
            # Nothing queued may wait forever: answer leftovers (only after a crash).
            while True:
                try:
                    item = self._calls.get_nowait()
                except queue.Empty:
                    break
                if item is not None:
                    item.deliver(None, BackendUnavailable("The SQLite backend is closed."))
            if connection is not None:
                connection.close()

    def _run_read(self, connection: sqlite3.Connection, call: _Call) -> None:
        try:
            connection.execute("BEGIN")
            try:
                value = call.fn(connection)
            finally:
                if connection.in_transaction:  # read-only: ending it is all there is to do
                    connection.execute("ROLLBACK")
        except sqlite3.Error as error:
            call.deliver(None, _unavailable(error))
        except Exception as error:
            call.deliver(None, error)
        else:
            call.deliver(value, None)
        self.calls += 1

    def _run_group(self, connection: sqlite3.Connection, batch: list[_Call]) -> None:
        outcomes: list[tuple[Any, BaseException | None]] = []
        try:
            connection.execute("BEGIN IMMEDIATE")
            for call in batch:
                connection.execute("SAVEPOINT call")
                try:
                    value = call.fn(connection)
                except Exception as error:
                    connection.execute("ROLLBACK TO call")
                    connection.execute("RELEASE call")
                    failure = _unavailable(error) if isinstance(error, sqlite3.Error) else error
                    outcomes.append((None, failure))
                else:
                    connection.execute("RELEASE call")
                    outcomes.append((value, None))
            if self._before_commit is not None:
                self._before_commit(connection)
            connection.execute("COMMIT")
        except sqlite3.Error as error:
            # The transaction itself failed (lock timeout, I/O, disk full): nothing of
            # the group was committed, and every caller is told so.
            if connection.in_transaction:
                try:
                    connection.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
            outcomes = [(None, _unavailable(error))] * len(batch)
        else:
            self.transactions += 1
        self.calls += len(batch)
        for call, (value, raised) in zip(batch, outcomes, strict=True):
            call.deliver(value, raised)


def _connect(
    path: str, *, write: bool, synchronous: str, busy_timeout_ms: int
) -> sqlite3.Connection:
    connection = sqlite3.connect(path, timeout=busy_timeout_ms / 1000, isolation_level=None)
    try:
        if write:
            mode = _when_unlocked(
                lambda: connection.execute("PRAGMA journal_mode=WAL").fetchone()[0],
                busy_timeout_ms,
            )
            if mode != "wal" and path != ":memory:":
                raise sqlite3.OperationalError(f"cannot switch {path} to WAL mode (got {mode})")
            connection.execute(f"PRAGMA synchronous={synchronous.upper()}")
        else:
            connection.execute("PRAGMA query_only=ON")
    except BaseException:
        connection.close()
        raise
    return connection


def _when_unlocked(step: Callable[[], T], busy_timeout_ms: int) -> T:
    """Run ``step``, again while SQLite answers "database is locked" without waiting, for
    up to ``busy_timeout_ms``. Switching a file to WAL takes an exclusive lock and does not
    wait for it: two processes opening a new file at once (``serve --workers N``) collide."""
    deadline = time.monotonic() + busy_timeout_ms / 1000
    while True:
        try:
            return step()
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() >= deadline:
                raise
            time.sleep(0.01)


# -- storage helpers (run on the writer or reader thread) -----------------------------


def _next_counter(connection: sqlite3.Connection, name: str, count: int = 1) -> int:
    """Take ``count`` numbers of the counter ``name``; returns the last (``count`` = 1: the one)."""
    row = connection.execute(
        "UPDATE counters SET value = value + ? WHERE name = ? RETURNING value", (count, name)
    ).fetchone()
    return int(row[0])


class _Seqs:
    """Ready-order numbers for one call's writes, taken from ``counters`` in one statement
    per block (numbers left over are gaps, which the order does not mind)."""

    __slots__ = ("_block", "_connection", "_left", "_next")

    def __init__(self, connection: sqlite3.Connection, block: int = 1) -> None:
        self._connection = connection
        self._block = max(block, 1)
        self._next = self._left = 0

    def take(self) -> int:
        if not self._left:
            last = _next_counter(self._connection, "seq", self._block)
            self._next, self._left = last - self._block + 1, self._block
        self._left -= 1
        self._next += 1
        return self._next - 1


def _buckets(queue_name: str, state: str, dead: bool) -> set[tuple[str, str]]:
    buckets = {(queue_name, state)}
    if dead:
        buckets.add((queue_name, _DEAD))
    return buckets


def _count(connection: sqlite3.Connection, buckets: Iterable[tuple[str, str]], delta: int) -> None:
    for queue_name, state in buckets:
        connection.execute(
            "INSERT INTO counts (queue, state, n) VALUES (?, ?, ?) "
            "ON CONFLICT (queue, state) DO UPDATE SET n = n + excluded.n",
            (queue_name, state, delta),
        )


@dataclass(frozen=True, slots=True)
class _Stored:
    """What indexing needs to know of the version being replaced."""

    queue: str
    state: str
    dead: bool

    @classmethod
    def of(cls, job: Job) -> _Stored:
        return cls(job.queue, job.state.value, job.state is State.DISCARDED and job.dead_letter)


def _store(
    connection: sqlite3.Connection, job: Job, previous: _Stored | None, seqs: _Seqs | None = None
) -> None:
    """Write one job version, derive its indexes and append its outbox entry (the memory
    backend's ``_store``)."""
    if job.state is State.AVAILABLE:
        seq = seqs.take() if seqs is not None else _next_counter(connection, "seq")
    else:
        seq = job.seq
    dead = job.state is State.DISCARDED and job.dead_letter
    dead_seq = _next_counter(connection, "dead_seq") if dead else None
    timers = timers_of(job)
    record = dumps_record(job.to_record())
    row = (
        job.queue,
        job.state.value,
        job.priority,
        seq,
        job.version,
        job.created_at,
        min(timers) if timers else None,
        dead_seq,
        record,
        job.id,
    )
    connection.execute(
        "INSERT INTO outbox (key, queue, job_type, before, record) VALUES (?, ?, ?, ?, ?)",
        (change_key(job), job.queue, job.type, previous.state if previous else None, record),
    )
    if previous is None:
        connection.execute(
            "INSERT INTO jobs (queue, state, priority, seq, version, created_at, due_at,"
            " dead_seq, record, id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            row,
        )
        _count(connection, _buckets(job.queue, job.state.value, dead), +1)
        return
    connection.execute(
        "UPDATE jobs SET queue = ?, state = ?, priority = ?, seq = ?, version = ?,"
        " created_at = ?, due_at = ?, dead_seq = ?, record = ? WHERE id = ?",
        row,
    )
    before = _buckets(previous.queue, previous.state, previous.dead)
    after = _buckets(job.queue, job.state.value, dead)
    _count(connection, before - after, -1)
    _count(connection, after - before, +1)


def _get_job(connection: sqlite3.Connection, job_id: str) -> Job | None:
    row = connection.execute("SELECT record FROM jobs WHERE id = ?", (job_id,)).fetchone()
    return _load(row[0]) if row else None


def _job_exists(connection: sqlite3.Connection, job_id: str) -> bool:
    return connection.execute("SELECT 1 FROM jobs WHERE id = ?", (job_id,)).fetchone() is not None


def _key_holder(connection: sqlite3.Connection, key: str) -> Job | None:
    row = connection.execute(
        "SELECT j.record FROM unique_keys AS u JOIN jobs AS j ON j.id = u.job_id WHERE u.key = ?",
        (key,),
    ).fetchone()
    return _load(row[0]) if row else None


def _insert_jobs(
    connection: sqlite3.Connection, jobs: Sequence[Job], atomic: bool
) -> list[Job | Deduplicated | OJSError]:
    def exists(job_id: str) -> bool:
        return _job_exists(connection, job_id)

    def holder_of(key: str) -> Job | None:
        return _key_holder(connection, key)

    if atomic:
        planned = plan_inserts(jobs, exists, holder_of)
        if any(isinstance(result, OJSError) for result in planned):
            return planned
    results: list[Job | Deduplicated | OJSError] = []
    seqs = _Seqs(connection, block=len(jobs))
    for planned_job in jobs:
        decision = plan_insert(planned_job, exists, holder_of)
        if isinstance(decision, Job):
            job = decision
            holder = holder_of(job.unique_key) if job.unique_key is not None else None
            cancelled = replaced_by(job, holder)
            if cancelled is not None and holder is not None:
                _store(connection, cancelled, _Stored.of(holder))
            _store(connection, job, None, seqs)
            if job.unique_key is not None:
                connection.execute(
                    "INSERT INTO unique_keys (key, job_id) VALUES (?, ?)"
                    " ON CONFLICT (key) DO UPDATE SET job_id = excluded.job_id",
                    (job.unique_key, job.id),
                )
        results.append(decision)
    return results


def _update_jobs(connection: sqlite3.Connection, updates: Sequence[tuple[Job, int]]) -> list[bool]:
    results = []
    for job, expected_version in updates:
        row = connection.execute(
            "SELECT version, queue, state, dead_seq FROM jobs WHERE id = ?", (job.id,)
        ).fetchone()
        if row is None or row[0] != expected_version:
            results.append(False)
            continue
        _store(connection, job, _Stored(row[1], row[2], row[3] is not None))
        results.append(True)
    return results


def _claim(
    connection: sqlite3.Connection,
    queue_name: str,
    count: int,
    now: int,
    worker_id: str | None,
    visibility_ms: int | None,
    rate: RateLimit | None,
) -> tuple[list[Job], list[Job]]:
    claimed: list[Job] = []
    expired: list[Job] = []
    if rate is not None:
        connection.execute(
            "DELETE FROM claim_times WHERE queue = ? AND at <= ?",
            (queue_name, now - rate.window_ms),
        )
        (recent,) = connection.execute(
            "SELECT COUNT(*) FROM claim_times WHERE queue = ?", (queue_name,)
        ).fetchone()
        count = min(count, rate.limit - recent)
    while len(claimed) < count:
        rows = connection.execute(
            "SELECT record FROM jobs WHERE queue = ? AND state = 'available'"
            " ORDER BY priority DESC, seq LIMIT ?",
            (queue_name, count - len(claimed)),
        ).fetchall()
        if not rows:
            break
        for (record,) in rows:
            job = _load(record)
            if job.expires_at is not None and job.expires_at <= now:
                gone = lifecycle.expire(job, now)
                _store(connection, gone, _Stored.of(job))
                expired.append(gone)
                continue
            active = lifecycle.claim(job, now, worker_id, visibility_ms)
            _store(connection, active, _Stored.of(job))
            claimed.append(active)
    if rate is not None and claimed:
        connection.executemany(
            "INSERT INTO claim_times (queue, at) VALUES (?, ?)", [(queue_name, now)] * len(claimed)
        )
    return claimed, expired


def _get_jobs(connection: sqlite3.Connection, job_ids: Sequence[str]) -> list[Job | None]:
    found: dict[str, Job] = {}
    unique_ids = list(dict.fromkeys(job_ids))
    for start in range(0, len(unique_ids), _CHUNK):
        chunk = unique_ids[start : start + _CHUNK]
        marks = ", ".join("?" * len(chunk))
        for job_id, record in connection.execute(
            f"SELECT id, record FROM jobs WHERE id IN ({marks})", chunk
        ):
            found[job_id] = _load(record)
    return [found.get(job_id) for job_id in job_ids]


def _read_events(connection: sqlite3.Connection, query: EventFilter) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    start, skip = 0, 0  # read rows after pos `start`, the cursor's row on its own first
    after = cursor(query)
    if after is not None:
        key, skip = after
        row = connection.execute(
            "SELECT pos, before, record, event FROM outbox WHERE key = ? ORDER BY pos LIMIT 1",
            (key,),
        ).fetchone()
        if row is not None:
            start = row[0]
            if collect([_entry(*row[1:])], query, skip, found):
                return found
        elif not query.resume:
            return []  # as the memory backend: an unknown cursor matches nothing
    sql = ["SELECT pos, before, record, event FROM outbox WHERE pos > ?"]
    filters: list[Any] = []
    for column, values in (("queue", query.queues), ("job_type", query.job_types)):
        if values:
            sql.append(f"AND {column} IN ({', '.join('?' * len(values))})")
            filters.extend(sorted(values))
    sql.append("ORDER BY pos LIMIT ?")
    text = " ".join(sql)
    while True:
        rows = connection.execute(text, [start, *filters, _OUTBOX_PAGE]).fetchall()
        if not rows:
            return found
        if collect((_entry(*row[1:]) for row in rows), query, 0, found):
            return found
        start = rows[-1][0]


def _entry(before: str | None, record: str | None, event: str | None) -> OutboxEntry:
    if event is not None:
        return None, None, (json.loads(event),)
    assert record is not None
    return (State(before) if before else None), _load(record), None


def _append_events(connection: sqlite3.Connection, events: Sequence[dict[str, Any]]) -> None:
    """Events stored whole (cron's), one outbox row each, keyed by their ids."""
    rows = []
    for event in events:
        data = event.get("data")
        data = data if isinstance(data, dict) else {}
        rows.append((event["id"], data.get("queue"), data.get("job_type"), dumps(event)))
    connection.executemany(
        "INSERT INTO outbox (key, queue, job_type, event) VALUES (?, ?, ?, ?)", rows
    )


def _trim_outbox(connection: sqlite3.Connection, keep: int) -> None:
    connection.execute("DELETE FROM outbox WHERE pos <= (SELECT MAX(pos) FROM outbox) - ?", (keep,))


def _list_snapshots(connection: sqlite3.Connection, prefix: str) -> dict[str, dict[str, Any]]:
    # Keys sharing a prefix are contiguous in SQLite's binary order: seek, scan while they
    # match, then return them in first-saved order like the memory backend's dict.
    found: list[tuple[int, str, dict[str, Any]]] = []
    for pos, key, value in connection.execute(
        "SELECT pos, key, value FROM snapshots WHERE key >= ? ORDER BY key", (prefix,)
    ):
        if not key.startswith(prefix):
            break
        found.append((pos, key, json.loads(value)))
    found.sort(key=lambda item: item[0])
    return {key: value for _, key, value in found}


def _store_snapshot(connection: sqlite3.Connection, key: str, value: str) -> int:
    """Write a snapshot and give it the next version (returned)."""
    connection.execute(
        "INSERT INTO snapshots (key, value) VALUES (?, ?)"
        " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (key, value),
    )
    row = connection.execute(
        "INSERT INTO snapshot_versions (key, version) VALUES (?, 1)"
        " ON CONFLICT (key) DO UPDATE SET version = version + 1 RETURNING version",
        (key,),
    ).fetchone()
    return int(row[0])


_LISTING_ORDER = {
    "created_at": "created_at {0}, id {0}",
    "scheduled_at": "COALESCE(json_extract(record, '$.scheduled_at'), -1) {0}, created_at {0}, id {0}",
    "priority": "priority {0}, created_at {0}, id {0}",
}
"""``ORDER BY`` of each :data:`~ojs_actors.backends.base.JOB_SORTS` sort, as
:meth:`JobQuery.key_of <ojs_actors.backends.base.JobQuery.key_of>` orders (a missing
``scheduled_at`` as -1; SQLite compares ids bytewise in UTF-8, which is code point order)."""


def _list_jobs(connection: sqlite3.Connection, query: JobQuery) -> tuple[list[Job], int]:
    """One SQL query with every filter in its ``WHERE``; the total from ``counts`` when the
    filters are queue and state only, else a ``COUNT(*)`` of the same ``WHERE``."""
    where: list[str] = []
    params: list[Any] = []
    if query.queue is not None:
        where.append("queue = ?")
        params.append(query.queue)
    if query.queues is not None:
        where.append(f"queue IN ({', '.join('?' * len(query.queues))})")
        params.extend(sorted(query.queues))
    if query.state is not None:
        where.append("state = ?")
        params.append(query.state.value)
    if query.type is not None:
        if query.type.endswith("*"):
            prefix = query.type[:-1]
            where.append("substr(json_extract(record, '$.type'), 1, ?) = ?")
            params.extend((len(prefix), prefix))
        else:
            where.append("json_extract(record, '$.type') = ?")
            params.append(query.type)
    if query.since is not None:
        where.append("created_at >= ?")
        params.append(query.since)
    if query.until is not None:
        where.append("created_at < ?")
        params.append(query.until)
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    order = _LISTING_ORDER[query.sort].format("DESC" if query.descending else "ASC")
    rows = connection.execute(
        f"SELECT record FROM jobs{clause} ORDER BY {order} LIMIT ? OFFSET ?",
        (*params, query.limit, query.offset),
    )
    jobs = [_load(record) for (record,) in rows]
    if query.type is None and query.since is None and query.until is None:
        total = _counted(connection, query)
    else:
        total = connection.execute(f"SELECT COUNT(*) FROM jobs{clause}", params).fetchone()[0]
    return jobs, int(total)


def _counted(connection: sqlite3.Connection, query: JobQuery) -> int:
    """The jobs of a queue and/or state, from ``counts`` (kept with every write)."""
    where, params = ["state != ?"], [_DEAD]
    if query.queue is not None:
        where.append("queue = ?")
        params.append(query.queue)
    if query.queues is not None:
        where.append(f"queue IN ({', '.join('?' * len(query.queues))})")
        params.extend(sorted(query.queues))
    if query.state is not None:
        where.append("state = ?")
        params.append(query.state.value)
    row = connection.execute(
        f"SELECT COALESCE(SUM(n), 0) FROM counts WHERE {' AND '.join(where)}", params
    ).fetchone()
    return int(row[0])


def _create_schema(connection: sqlite3.Connection) -> None:
    for statement in _SCHEMA:
        connection.execute(statement)
    row = connection.execute("SELECT value FROM meta WHERE name = 'schema_version'").fetchone()
    if row is not None and row[0] == 1:  # the event log became the outbox
        connection.execute("DROP TABLE IF EXISTS events")
        connection.execute("UPDATE meta SET value = ? WHERE name = 'schema_version'", (2,))
        row = (2,)
    if row is None:
        connection.execute(
            "INSERT INTO meta (name, value) VALUES ('schema_version', ?)", (SCHEMA_VERSION,)
        )
    elif row[0] != SCHEMA_VERSION:
        raise BackendUnavailable(
            f"The SQLite file has schema version {row[0]}; this build reads version {SCHEMA_VERSION}.",
            details={"backend": "sqlite", "schema_version": row[0]},
        )
    for name in _COUNTERS:
        connection.execute(
            "INSERT INTO counters (name, value) VALUES (?, 0) ON CONFLICT (name) DO NOTHING",
            (name,),
        )


def _reset(connection: sqlite3.Connection) -> None:
    for table in (
        "jobs", "unique_keys", "counts", "snapshots", "snapshot_versions", "outbox", "claim_times",
    ):  # fmt: skip
        connection.execute(f"DELETE FROM {table}")
    connection.execute("UPDATE counters SET value = 0")


# -- the backend ----------------------------------------------------------------------


class SqliteBackend:
    """Jobs, queues, snapshots and events in one SQLite file; see the module docstring."""

    name = "sqlite"
    capabilities = EVERY_CAPABILITY
    needs_asyncio = False

    def __init__(
        self,
        path: str | os.PathLike[str] = DEFAULT_PATH,
        *,
        synchronous: str = "full",
        event_retention: int = EVENT_RETENTION,
        busy_timeout_ms: int = 5_000,
        max_group: int = MAX_GROUP,
    ) -> None:
        if synchronous.lower() not in SYNCHRONOUS:
            raise InvalidRequest(
                f"SQLite synchronous mode must be one of {', '.join(SYNCHRONOUS)}, not {synchronous!r}.",
                details={"synchronous": synchronous},
            )
        self.path = os.fspath(path)
        self.synchronous = synchronous.lower()
        self._event_retention = event_retention
        self._busy_timeout_ms = busy_timeout_ms
        self._max_group = max_group
        self._writer: _Worker | None = None
        self._reader: _Worker | None = None

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        if self._writer is not None:
            return
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._writer = self._new_worker(write=True)
        self._writer.start()
        try:
            await self._write(_create_schema)
            if self.path != ":memory:":  # one in-memory database cannot have two connections
                self._reader = self._new_worker(write=False)
                self._reader.start()
                await self._read(lambda connection: connection.execute("SELECT 1").fetchone())
        except BaseException:
            with trio.CancelScope(shield=True):
                await self.close()
            raise

    def _new_worker(self, *, write: bool) -> _Worker:
        """The writer (group commit) or the reader thread, each with its own connection."""
        return _Worker(
            f"ojs-sqlite-{'writer' if write else 'reader'}:{self.path}",
            partial(
                _connect,
                self.path,
                write=write,
                synchronous=self.synchronous,
                busy_timeout_ms=self._busy_timeout_ms,
            ),
            group=write,
            max_group=self._max_group,
            before_commit=partial(_trim_outbox, keep=self._event_retention) if write else None,
        )

    async def close(self) -> None:
        workers = [worker for worker in (self._reader, self._writer) if worker is not None]
        self._reader = self._writer = None
        for worker in workers:  # the reader first: the writer's close may checkpoint the WAL
            worker.stop()
            await trio.to_thread.run_sync(worker.join)

    async def ping(self) -> float:
        """Round trip through the writer (the path every 2xx takes)."""
        started = time.perf_counter()
        await self._write(lambda connection: connection.execute("SELECT 1").fetchone())
        return (time.perf_counter() - started) * 1000

    @property
    def stats(self) -> dict[str, int]:
        """Writer calls and transactions so far: ``calls / transactions`` is the group size."""
        writer = self._writer
        return {
            "calls": writer.calls if writer else 0,
            "transactions": writer.transactions if writer else 0,
        }

    async def _call(self, worker: _Worker | None, fn: Callable[[sqlite3.Connection], T]) -> T:
        if worker is None or not worker.alive():
            raise BackendUnavailable(
                "The SQLite backend is not running.",
                details={"backend": "sqlite", "path": self.path},
            )
        token = trio.lowlevel.current_trio_token()
        done = trio.Event()
        outcome: list[tuple[Any, BaseException | None]] = []

        def deliver(value: Any, error: BaseException | None) -> None:  # on the worker thread
            outcome.append((value, error))
            try:
                token.run_sync_soon(done.set)
            except trio.RunFinishedError:
                pass

        worker.submit(_Call(fn, deliver))
        with trio.CancelScope(shield=True):  # once submitted, the call completes: see above
            await done.wait()
        value, error = outcome[0]
        if error is not None:
            raise error
        result: T = value
        return result

    async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await self._call(self._writer, fn)

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await self._call(self._reader or self._writer, fn)

    # -- jobs ----------------------------------------------------------------------------

    async def insert_jobs(
        self, jobs: Sequence[Job], *, atomic: bool = False
    ) -> list[Job | Deduplicated | OJSError]:
        if not jobs:
            return []
        return await self._write(lambda connection: _insert_jobs(connection, jobs, atomic))

    async def get_jobs(self, job_ids: Sequence[str]) -> list[Job | None]:
        if not job_ids:
            return []
        return await self._read(lambda connection: _get_jobs(connection, job_ids))

    async def update_jobs(self, updates: Sequence[tuple[Job, int]]) -> list[bool]:
        if not updates:
            return []
        return await self._write(lambda connection: _update_jobs(connection, updates))

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
        if count <= 0:
            return [], []
        return await self._write(
            lambda connection: _claim(connection, queue, count, now, worker_id, visibility_ms, rate)
        )

    async def due_jobs(self, now: int, limit: int) -> list[Job]:
        if limit <= 0:
            return []

        def due(connection: sqlite3.Connection) -> list[Job]:
            rows = connection.execute(
                "SELECT record FROM jobs WHERE due_at IS NOT NULL AND due_at <= ?"
                " ORDER BY due_at, id LIMIT ?",
                (now, limit),
            )
            return [_load(record) for (record,) in rows]

        return await self._read(due)

    async def next_due_at(self) -> int | None:
        def earliest(connection: sqlite3.Connection) -> int | None:
            row = connection.execute(
                "SELECT due_at FROM jobs WHERE due_at IS NOT NULL ORDER BY due_at LIMIT 1"
            ).fetchone()
            return int(row[0]) if row else None

        return await self._read(earliest)

    async def count_jobs(self, queue: str) -> dict[State, int]:
        def counts(connection: sqlite3.Connection) -> dict[State, int]:
            rows = connection.execute(
                "SELECT state, n FROM counts WHERE queue = ? AND state != ? AND n > 0",
                (queue, _DEAD),
            )
            return {State(state): n for state, n in rows}

        return await self._read(counts)

    async def list_jobs(self, query: JobQuery) -> tuple[list[Job], int]:
        """:class:`~ojs_actors.backends.base.JobListing`, one read (:func:`_list_jobs`).
        Cost: sorted by ``created_at`` (the default), a page walks the ``jobs_created``
        index from its end and stops once it has ``offset + limit`` matching rows (O(page)
        unfiltered; a narrow filter walks further); sorted by ``priority`` or
        ``scheduled_at`` it is a scan of the table with SQLite's top-N sort (O(n
        log(offset + limit))). Type filters and the ``scheduled_at`` sort read the record's
        JSON (``json_extract``). The total comes from ``counts`` when only queue and state
        filter, else from a ``COUNT(*)`` of the same ``WHERE`` (a scan)."""
        return await self._read(partial(_list_jobs, query=query))

    async def delete_jobs(self, jobs: Sequence[tuple[str, int]]) -> list[bool]:
        """:class:`~ojs_actors.backends.base.JobDeletion`, in one transaction."""
        terminal = [state.value for state in State if state.terminal]
        marks = ", ".join("?" * len(terminal))

        def delete(connection: sqlite3.Connection) -> list[bool]:
            results = []
            for job_id, version in jobs:
                row = connection.execute(
                    "DELETE FROM jobs WHERE id = ? AND version = ?"
                    f" AND state IN ({marks}) RETURNING queue, state, dead_seq",
                    (job_id, version, *terminal),
                ).fetchone()
                if row is not None:
                    _count(connection, _buckets(row[0], row[1], row[2] is not None), -1)
                results.append(row is not None)
            return results

        return await self._write(delete)

    # -- dead letter ---------------------------------------------------------------------

    async def list_dead_letter(
        self, queue: str | None, limit: int, offset: int
    ) -> tuple[list[Job], int]:
        def page(connection: sqlite3.Connection) -> tuple[list[Job], int]:
            where, params = ("", ()) if queue is None else (" AND queue = ?", (queue,))
            total = connection.execute(
                f"SELECT COALESCE(SUM(n), 0) FROM counts WHERE state = ?{where}", (_DEAD, *params)
            ).fetchone()[0]
            rows = connection.execute(
                f"SELECT record FROM jobs WHERE dead_seq IS NOT NULL{where}"
                " ORDER BY dead_seq LIMIT ? OFFSET ?",
                (*params, max(limit, 0), max(offset, 0)),
            )
            return [_load(record) for (record,) in rows], int(total)

        return await self._read(page)

    async def delete_dead_letter(self, job_id: str) -> bool:
        def delete(connection: sqlite3.Connection) -> bool:
            row = connection.execute(
                "SELECT queue, state FROM jobs WHERE id = ? AND dead_seq IS NOT NULL", (job_id,)
            ).fetchone()
            if row is None:
                return False
            connection.execute("DELETE FROM jobs WHERE id = ?", (job_id,))
            _count(connection, _buckets(row[0], row[1], True), -1)
            return True

        return await self._write(delete)

    # -- snapshots -----------------------------------------------------------------------

    async def load_snapshot(self, key: str) -> dict[str, Any] | None:
        def load(connection: sqlite3.Connection) -> dict[str, Any] | None:
            row = connection.execute("SELECT value FROM snapshots WHERE key = ?", (key,)).fetchone()
            return dict(json.loads(row[0])) if row else None

        return await self._read(load)

    async def save_snapshot(self, key: str, state: dict[str, Any]) -> None:
        value = dumps(state)  # serialised now: the caller may change its dict afterwards
        await self._write(lambda connection: _store_snapshot(connection, key, value))

    async def load_snapshot_versioned(self, key: str) -> tuple[dict[str, Any], int] | None:
        def load(connection: sqlite3.Connection) -> tuple[dict[str, Any], int] | None:
            row = connection.execute(
                "SELECT s.value, v.version FROM snapshots s"
                " LEFT JOIN snapshot_versions v ON v.key = s.key WHERE s.key = ?",
                (key,),
            ).fetchone()
            return (dict(json.loads(row[0])), int(row[1] or 0)) if row else None

        return await self._read(load)

    async def save_snapshot_if(
        self,
        key: str,
        state: dict[str, Any],
        expected_version: int | None,
        *,
        events: Sequence[dict[str, Any]] = (),
    ) -> int | None:
        value = dumps(state)

        def save(connection: sqlite3.Connection) -> int | None:
            # One write-thread call, so nothing interleaves between the check and the write.
            row = connection.execute(
                "SELECT v.version FROM snapshots s"
                " LEFT JOIN snapshot_versions v ON v.key = s.key WHERE s.key = ?",
                (key,),
            ).fetchone()
            current = None if row is None else int(row[0] or 0)
            if current != expected_version:
                return None
            _append_events(connection, events)
            return _store_snapshot(connection, key, value)

        return await self._write(save)

    async def list_snapshots(self, prefix: str) -> dict[str, dict[str, Any]]:
        return await self._read(lambda connection: _list_snapshots(connection, prefix))

    async def delete_snapshot(self, key: str) -> bool:
        def delete(connection: sqlite3.Connection) -> bool:
            connection.execute("DELETE FROM snapshot_versions WHERE key = ?", (key,))
            return connection.execute("DELETE FROM snapshots WHERE key = ?", (key,)).rowcount > 0

        return await self._write(delete)

    # -- events --------------------------------------------------------------------------

    async def read_events(self, query: EventFilter) -> list[dict[str, Any]]:
        return await self._read(lambda connection: _read_events(connection, query))

    # -- administration ------------------------------------------------------------------

    async def reset(self) -> None:
        await self._write(_reset)
