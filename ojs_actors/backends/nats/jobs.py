"""The NATS job store: :class:`NatsJobs`, on the shared :class:`~.records.JobRecords`.

An insert writes the new jobs' records guarded by "the subject holds nothing" (or
nothing after the deleted job's record), with the unique keys they take, in one batch;
with unique keys, or after losing a race, it reads the records and keys first
(:class:`_Peek`). An update writes over the version this process remembers when it is
the one expected (the compare-and-set still decides), else over the one it reads.
Counts per state are summed from each queue's count deltas.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ...core import BackendUnavailable, Job, OJSError, State
from ..base import Deduplicated, plan_inserts, replaced_by, update_rounds
from .connection import CasFailed
from .records import MAX_ATTEMPTS, OnRecords
from .writes import Batch, Before, Stored, guarded


@dataclass
class _Peek:
    """What an insert reads before deciding, when it has unique keys or lost a race."""

    existing: set[str] = field(default_factory=set)
    revisions: dict[str, int] = field(default_factory=dict)
    """Record sequence per job id read (deleted jobs' too)."""
    key_revisions: dict[str, int] = field(default_factory=dict)
    holders: dict[str, Stored] = field(default_factory=dict)


class NatsJobs(OnRecords):
    """The :class:`~ojs_actors.backends.base.JobStore` part."""

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
                await self._records.write(batch, "nats.insert.stored")
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
        holders = await self._records.read(holder_ids.values()) if holder_ids else {}
        for key, holder_id in holder_ids.items():
            if holder_id in holders:
                peek.holders[key] = holders[holder_id]
        return peek

    async def get_jobs(self, job_ids: Sequence[str]) -> list[Job | None]:
        if not job_ids:
            return []
        stored = await self._records.read(job_ids)
        return [stored[job_id].job if job_id in stored else None for job_id in job_ids]

    async def update_jobs(self, updates: Sequence[tuple[Job, int]]) -> list[bool]:
        results = [False] * len(updates)
        for this_round in update_rounds(updates):
            size = self._records.jobs_per_batch()
            for start in range(0, len(this_round), size):
                await self._update_round(updates, this_round[start : start + size], results)
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
                await self._records.write(batch, "nats.update.stored")
            except CasFailed:
                for index in live:
                    self._records.drop(updates[index][0].id)
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
            remembered = self._records.remembered
            for job_id, version in expected.items():
                before = remembered(job_id)
                if before is not None and before.version == version:
                    current[job_id] = before
        unknown = [job_id for job_id in expected if job_id not in current]
        if unknown:
            for job_id, stored in (await self._records.read(unknown)).items():
                current[job_id] = Before.of(stored.job, stored.seq)
        return current

    async def count_jobs(self, queue: str) -> dict[State, int]:
        return await self._records.counts(queue)


def _holder_job(peek: _Peek) -> Callable[[str], Job | None]:
    def holder(key: str) -> Job | None:
        stored = peek.holders.get(key)
        return stored.job if stored is not None else None

    return holder
