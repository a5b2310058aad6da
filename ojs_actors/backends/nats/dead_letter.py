"""The NATS dead letter: :class:`NatsDeadLetter`, on the shared
:class:`~.records.JobRecords`.

A dead-lettered job has a subject ``ojs.dead.{q}.{id}`` (:mod:`.layout`), emptied (a
tombstone) once the job leaves the dead letter; listing reads them and purges the
tombstones it meets. A delete empties the job's record and its dead-letter subject (and
frees its unique key if the job still holds it) in one batch, then purges both subjects.
"""

from __future__ import annotations

from ...core import BackendUnavailable, Job
from ..faults import crash_point
from .connection import CasFailed
from .records import MAX_ATTEMPTS, OnRecords
from .writes import Batch, guarded, is_dead


class NatsDeadLetter(OnRecords):
    """The :class:`~ojs_actors.backends.base.DeadLetter` part."""

    async def list_dead_letter(
        self, queue: str | None, limit: int, offset: int
    ) -> tuple[list[Job], int]:
        subjects, store = self._subjects, self._store
        messages = await store.read(subjects.dead_of(queue))
        live = [message for message in messages if message.data]
        for tombstone in [message for message in messages if not message.data][:32]:
            await store.purge(tombstone.subject, before_seq=tombstone.seq + 1)
        page = [subjects.job_id_of(message.subject) for message in live[offset : offset + limit]]
        records = await self._records.read(page) if page and limit > 0 else {}
        jobs = [records[job_id].job for job_id in page if job_id in records]
        return [job for job in jobs if is_dead(job)], len(live)

    async def delete_dead_letter(self, job_id: str) -> bool:
        subjects = self._subjects
        for _ in range(MAX_ATTEMPTS):
            stored = (await self._records.read([job_id])).get(job_id)
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
            self._records.drop(job_id)
            for subject in (subjects.job(job_id), subjects.dead(job.queue, job_id)):
                await self._store.purge(subject)
            return True
        raise BackendUnavailable(
            f"Job {job_id} kept changing while deleting it; try again.",
            details={"backend": "nats"},
        )
