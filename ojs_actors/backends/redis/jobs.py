"""Job records in Redis and the indexes derived from them: :class:`RedisJobs`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ...core import BackendUnavailable, Event, Job, OJSError, State, check_transition, lifecycle
from ..base import (
    Deduplicated,
    JobQuery,
    RateLimit,
    SortKey,
    duplicate_id,
    plan_insert,
    replaced_by,
)
from ..codec import dumps
from ..outbox import EVENT_RETENTION
from .connection import RedisConnection
from .records import _job_of, _Listing, _op, _take_records

MAX_INSERT_ATTEMPTS = 20
LIST_SCAN = 1000
"""Records per ``HSCAN`` step of a job listing: bounds the work of each Redis call."""
MAX_LIST_STEPS = 10_000_000
"""A bound on a listing's ``HSCAN`` steps (far past any real hash: a scan ends after one
pass), so a misbehaving server cannot keep it going for ever."""


def _claim_plan() -> str:
    """What the claim script applies, as :mod:`ojs_actors.core.lifecycle` decides it: a
    claim moves an ``available`` job on ``Event.FETCH`` (``lifecycle.claim``), or on
    ``Event.EXPIRE`` with ``EXPIRED_ERROR`` if it is past ``expires_at``
    (``lifecycle.expire``). The contract suite checks the stored result equals theirs."""
    source = State.AVAILABLE
    claimed = check_transition(source, Event.FETCH)
    expired = check_transition(source, Event.EXPIRE)
    return dumps(
        {
            "from": dumps(source.value),
            "claimed": dumps(claimed.value),
            "expired": dumps(expired.value),
            "error": dumps(lifecycle.EXPIRED_ERROR),
            "from_state": source.value,
            "claimed_state": claimed.value,
            "expired_state": expired.value,
        }
    )


_CLAIM_PLAN = _claim_plan()


class RedisJobs:
    """The :class:`~ojs_actors.backends.base.JobStore`,
    :class:`~ojs_actors.backends.base.ReadyQueue`, :class:`~ojs_actors.backends.base.Timers`
    and :class:`~ojs_actors.backends.base.DeadLetter` parts on ``connection``: one part,
    because the scripts that write a job keep its ready, timer, dead-letter, count and
    unique-key entries in the same step (the prelude of
    :mod:`~ojs_actors.backends.redis.lua_jobs`); and the optional
    :class:`~ojs_actors.backends.base.JobListing` (a scan) and
    :class:`~ojs_actors.backends.base.JobDeletion`.

    Owns the keys ``jobs``, ``ready:{q}``, ``seq``, ``timers``, ``dead``, ``deadq:{q}``,
    ``dead_seq``, ``counts:{q}`` and ``unique`` under the connection's prefix."""

    def __init__(self, connection: RedisConnection, event_retention: int = EVENT_RETENTION) -> None:
        """``event_retention``: outbox entries kept (the scripts that write jobs append them)."""
        self._connection = connection
        self._keep = event_retention

    # -- JobStore -------------------------------------------------------------------

    async def insert_jobs(
        self, jobs: Sequence[Job], *, atomic: bool = False
    ) -> list[Job | Deduplicated | OJSError]:
        if not jobs:
            return []
        script = self._connection.script
        keys = _unique_keys(jobs)
        for _ in range(MAX_INSERT_ATTEMPTS):
            if keys:
                exists, holders = await script(
                    "peek", dumps({"ids": [job.id for job in jobs], "keys": keys})
                )
                existing = {job.id for job, found in zip(jobs, exists, strict=True) if found}
                stored_holders = {
                    key: (holder_id, _job_of(raw))
                    for key, (holder_id, raw) in zip(keys, holders, strict=True)
                }
            else:
                existing, stored_holders = set(), {}
            results, ops, slots = self._plan(jobs, existing, stored_holders)
            if atomic and any(isinstance(result, OJSError) for result in results):
                return results
            guards = [
                [key, holder_id, holder.version if holder is not None else -1]
                for key, (holder_id, holder) in stored_holders.items()
            ]
            spec = {"atomic": atomic, "strict": bool(keys), "guards": guards, "ops": ops}
            records = _take_records(ops)
            reply = await script("insert", dumps(spec), *records, self._keep)
            if reply[0] == "retry":
                continue
            return _inserted(jobs, results, slots, reply[1])
        raise BackendUnavailable(
            "Unique keys kept changing concurrently while inserting; try again.",
            details={"backend": "redis"},
        )

    def _plan(
        self,
        jobs: Sequence[Job],
        existing: set[str],
        stored_holders: dict[str, tuple[str, Job | None]],
    ) -> tuple[list[Job | Deduplicated | OJSError], list[dict[str, Any]], list[int]]:
        """Decide each insert as MemoryBackend does, in order, against the holders read.

        Returns the results, the write operations and, per operation, the index of
        the job it stores (``-1`` for a replaced holder being cancelled)."""
        holders: dict[str, Job | None] = {key: job for key, (_, job) in stored_holders.items()}
        taken = set(existing)
        results: list[Job | Deduplicated | OJSError] = []
        ops: list[dict[str, Any]] = []
        slots: list[int] = []
        for index, planned in enumerate(jobs):
            decision = plan_insert(planned, taken.__contains__, holders.get)
            results.append(decision)
            if not isinstance(decision, Job):
                continue
            job = decision
            holder = holders.get(job.unique_key) if job.unique_key is not None else None
            cancelled = replaced_by(job, holder)  # a terminal holder just loses the key
            if cancelled is not None and holder is not None:
                ops.append(_op(cancelled, holder.version))
                slots.append(-1)
            taken.add(job.id)
            ops.append(_op(job))
            slots.append(index)
            if job.unique_key is not None:
                holders[job.unique_key] = job
        return results, ops, slots

    async def get_jobs(self, job_ids: Sequence[str]) -> list[Job | None]:
        if not job_ids:
            return []
        found = await self._connection.script("get", *job_ids)
        return [_job_of(raw) for raw in found]

    async def update_jobs(self, updates: Sequence[tuple[Job, int]]) -> list[bool]:
        if not updates:
            return []
        return _updated(await self._connection.script("update", *self._update_args(updates)))

    def _update_args(self, updates: Sequence[tuple[Job, int]]) -> tuple[Any, ...]:
        ops = [_op(job, expected) for job, expected in updates]
        records = _take_records(ops)
        return (dumps(ops), *records, self._keep)

    async def count_jobs(self, queue: str) -> dict[State, int]:
        connection = self._connection
        counts = await connection.hgetall(f"{connection.prefix}counts:{queue}")
        return {State(state): int(n) for state, n in counts.items() if int(n) > 0}

    # -- ReadyQueue -------------------------------------------------------------------

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
        reply = await self._connection.script(
            "claim", *self._claim_args(queue, count, now, worker_id, visibility_ms, rate)
        )
        return _claimed(reply)

    async def insert_and_claim(
        self,
        jobs: Sequence[Job],
        queue: str,
        count: int,
        now: int,
        worker_id: str | None,
        visibility_ms: int | None,
        *,
        rate: RateLimit | None = None,
    ) -> tuple[list[Job | Deduplicated | OJSError], list[Job], list[Job]]:
        """:class:`~ojs_actors.backends.base.InsertAndClaim`: the insert and claim scripts
        pipelined in one round trip (jobs with unique keys take the two calls, as the
        insert then reads the keys' holders first)."""
        if not jobs or count <= 0 or _unique_keys(jobs):
            results = await self.insert_jobs(jobs)
            return (
                results,
                *await self.claim(queue, count, now, worker_id, visibility_ms, rate=rate),
            )
        results, ops, slots = self._plan(jobs, set(), {})
        spec = {"atomic": False, "strict": False, "guards": [], "ops": ops}
        records = _take_records(ops)
        inserted, taken = await self._connection.scripts(
            ("insert", (dumps(spec), *records, self._keep)),
            ("claim", self._claim_args(queue, count, now, worker_id, visibility_ms, rate)),
        )
        return (_inserted(jobs, results, slots, inserted[1]), *_claimed(taken))

    async def update_and_claim(
        self,
        updates: Sequence[tuple[Job, int]],
        queue: str,
        count: int,
        now: int,
        worker_id: str | None,
        visibility_ms: int | None,
        *,
        rate: RateLimit | None = None,
    ) -> tuple[list[bool], list[Job], list[Job]]:
        """:class:`~ojs_actors.backends.base.UpdateAndClaim`: the update and claim scripts
        pipelined in one round trip."""
        if not updates or count <= 0:
            stored = await self.update_jobs(updates)
            return (
                stored,
                *await self.claim(queue, count, now, worker_id, visibility_ms, rate=rate),
            )
        updated, taken = await self._connection.scripts(
            ("update", self._update_args(updates)),
            ("claim", self._claim_args(queue, count, now, worker_id, visibility_ms, rate)),
        )
        return (_updated(updated), *_claimed(taken))

    def _claim_args(
        self,
        queue: str,
        count: int,
        now: int,
        worker_id: str | None,
        visibility_ms: int | None,
        rate: RateLimit | None,
    ) -> tuple[Any, ...]:
        return (
            queue,
            count,
            now,
            dumps(worker_id) if worker_id is not None else "",
            visibility_ms or 0,
            _CLAIM_PLAN,
            "" if rate is None else rate.limit,
            "" if rate is None else rate.window_ms,
            self._keep,
        )

    async def watch_ready(self, notify: Callable[[str], None]) -> None:
        """:class:`~ojs_actors.backends.base.ReadyNotices`: the insert and update scripts
        publish each queue that got available jobs on the channel ``ready``."""
        connection = self._connection
        async with connection.client.subscribe(connection.prefix + "ready") as receive:
            while True:
                notify(await receive())

    # -- Timers -----------------------------------------------------------------------

    async def due_jobs(self, now: int, limit: int) -> list[Job]:
        found = await self._connection.script("due", now, limit)
        return [job for job in map(_job_of, found) if job is not None]

    async def next_due_at(self) -> int | None:
        connection = self._connection
        first = await connection.zrange_withscores(connection.prefix + "timers", 0, 0)
        return int(first[0][1]) if first else None

    # -- JobListing -------------------------------------------------------------------

    async def list_jobs(self, query: JobQuery) -> tuple[list[Job], int]:
        """:class:`~ojs_actors.backends.base.JobListing` by a scan: no index covers every
        job by state, type and time (one kept by the job scripts would slow every write), so
        the listing walks the ``jobs`` hash with ``HSCAN`` in steps of :data:`LIST_SCAN`
        records, each a short call that never holds Redis up, and filters here, keeping the
        sort key of each match; the page's jobs are then read by id (``get``).

        Cost of every page: O(n) records sent and examined (n: every stored job, in n /
        LIST_SCAN round trips) and O(matches) memory for their keys; a queue with no jobs
        answers at once from its counts. Not a snapshot: a job changing during the scan may
        be counted in its old or its new state, and a page job gone by the end is left out.
        """
        connection = self._connection
        if query.queue is not None and not await self.count_jobs(query.queue):
            return [], 0
        listing = _Listing(query)
        matched: dict[str, SortKey] = {}  # by id: HSCAN may return a field twice
        cursor = "0"
        for _ in range(MAX_LIST_STEPS):  # HSCAN ends (cursor "0") after one pass of the hash
            cursor, chunk = await connection.hscan(connection.prefix + "jobs", cursor, LIST_SCAN)
            for job_id, raw in chunk.items():
                key = listing.key(job_id, raw)
                if key is not None:
                    matched[job_id] = key
            if cursor == "0":
                break
        else:
            raise BackendUnavailable(
                "The job listing's scan of Redis did not end.", details={"backend": "redis"}
            )
        ids = query.page(matched, matched.__getitem__)
        jobs = await self.get_jobs(ids)
        return [job for job in jobs if job is not None], len(matched)

    async def delete_jobs(self, jobs: Sequence[tuple[str, int]]) -> list[bool]:
        """:class:`~ojs_actors.backends.base.JobDeletion`: one script call."""
        if not jobs:
            return []
        terminal = dumps([state.value for state in State if state.terminal])
        flat = [str(part) for job_id, version in jobs for part in (job_id, version)]
        return [
            bool(done) for done in await self._connection.script("delete_jobs", terminal, *flat)
        ]

    # -- DeadLetter -------------------------------------------------------------------

    async def list_dead_letter(
        self, queue: str | None, limit: int, offset: int
    ) -> tuple[list[Job], int]:
        total, found = await self._connection.script("dead_page", queue or "", offset, limit)
        return [job for job in map(_job_of, found) if job is not None], int(total)

    async def delete_dead_letter(self, job_id: str) -> bool:
        return bool(await self._connection.script("delete_dead", job_id))


def _unique_keys(jobs: Sequence[Job]) -> list[str]:
    """The unique keys the jobs claim, each once, in order."""
    return list(
        dict.fromkeys(job.unique_key for job in jobs if job.unique_key is not None and job.unique)
    )


def _inserted(
    jobs: Sequence[Job],
    results: list[Job | Deduplicated | OJSError],
    slots: list[int],
    outcomes: list[int],
) -> list[Job | Deduplicated | OJSError]:
    """The planned ``results`` with what the insert script found taken made duplicates."""
    for index, outcome in enumerate(outcomes):
        slot = slots[index]
        if slot >= 0 and outcome == -2:
            results[slot] = duplicate_id(jobs[slot])
    return results


def _updated(outcomes: list[int]) -> list[bool]:
    """The update script's reply: ``-2`` where the compare-and-set found another version."""
    return [outcome != -2 for outcome in outcomes]


def _claimed(reply: list[list[str]]) -> tuple[list[Job], list[Job]]:
    claimed, expired = reply
    return (
        [job for job in map(_job_of, claimed) if job is not None],
        [job for job in map(_job_of, expired) if job is not None],
    )
