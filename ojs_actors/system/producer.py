"""The producer side of a System: enqueueing jobs, one at a time or as an atomic batch."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import trio

from ..backends import Deduplicated
from ..core import InvalidRequest, Job, OJSError, parse_enqueue
from . import tenancy, tracing
from .clock import Clock
from .outbox_gate import OutboxGate
from .queue_messages import Enqueue, EnqueueBatch, Hold
from .routing import QueueRouter
from .schemas import SchemaRegistry
from .tenant_limits import TenantGuard

if TYPE_CHECKING:
    from .tracing_spans import JobTracer

log = logging.getLogger("ojs_actors.system")


class Producer:
    def __init__(
        self,
        router: QueueRouter,
        clock: Clock,
        gate: OutboxGate,
        schemas: SchemaRegistry,
        tenants: TenantGuard,
    ) -> None:
        self._router = router
        self._clock = clock
        self._gate = gate
        self._schemas = schemas
        self._tenants = tenants

    async def enqueue(self, request: dict[str, Any] | Job) -> Job:
        """Validate, store durably, and return the job with its system-managed fields.

        Under a unique policy with ``on_conflict: "ignore"``, a duplicate is not stored
        and the existing job is returned instead: its ``id`` differs from the one submitted.
        """
        job = request if isinstance(request, Job) else parse_enqueue(request, self._clock())
        job = tenancy.place(job)
        await self._schemas.check((job,))
        limited = await self._tenants.settle((job,))
        if limited:  # checked and stored in the tenant's turn (ojs-multi-tenancy §8.2)
            async with self._tenants.admitting(limited, (job,)):
                return await self._enqueue_one(job)
        return await self._enqueue_one(job)

    async def _enqueue_one(self, job: Job) -> Job:
        if tracing.current is not None:
            return await self._enqueue_traced(job, tracing.current)
        await self._gate.admit()
        [result] = await self._router.ask(job.queue, Enqueue([job]))
        return self._stored(result)

    async def _enqueue_traced(self, job: Job, tracer: JobTracer) -> Job:
        # enqueue's steps again rather than a shared coroutine: no extra frame when off
        with tracer.enqueue([job]):
            await self._gate.admit()
            [result] = await self._router.ask(job.queue, Enqueue([job]))
            return self._stored(result)

    async def enqueue_batch(self, requests: Sequence[dict[str, Any] | Job]) -> list[Job]:
        """Enqueue several jobs atomically: every one is stored, or none is."""
        if not requests:
            raise InvalidRequest("'jobs' must contain at least one job.", details={"field": "jobs"})
        now = self._clock()
        jobs: list[Job] = []
        for index, request in enumerate(requests):
            try:
                job = request if isinstance(request, Job) else parse_enqueue(request, now)
                jobs.append(tenancy.place(job))
            except OJSError as error:
                error.message = f"Job at index {index}: {error.message}"
                error.args = (error.message,)
                error.details = {"index": index, **error.details}
                raise
        await self._schemas.check(jobs, batch=True)
        limited = await self._tenants.settle(jobs)
        if limited:  # the whole batch or none of it (ojs-multi-tenancy §8.2)
            async with self._tenants.admitting(limited, jobs):
                return await self._traced_batch(jobs)
        return await self._traced_batch(jobs)

    async def _traced_batch(self, jobs: Sequence[Job]) -> list[Job]:
        if tracing.current is not None:
            with tracing.current.enqueue(jobs, batch=True):
                return await self._enqueue_batch(jobs)
        return await self._enqueue_batch(jobs)

    async def _enqueue_batch(self, jobs: Sequence[Job]) -> list[Job]:
        await self._gate.admit()
        results = await self._insert_atomically(jobs)
        for index, result in enumerate(results):
            if isinstance(result, OJSError):
                result.details = {"index": index, **result.details}
                raise result
        return [self._stored(result) for result in results]

    async def _insert_atomically(
        self, jobs: Sequence[Job]
    ) -> Sequence[Job | Deduplicated | OJSError]:
        """Store ``jobs`` in one atomic backend call, made by the actor of the last of their
        queues (by name) while the actors of the others are held; each actor then applies
        its queue's policies (rate limit, events, wake-ups) to its own jobs before it
        handles anything else. Actors are taken in queue-name order, so batches over
        the same queues cannot deadlock."""
        *held, last = sorted({job.queue for job in jobs})
        batch = EnqueueBatch(
            jobs, {queue: Hold(jobs=[job for job in jobs if job.queue == queue]) for queue in held}
        )
        failures: list[OJSError] = []
        results: Sequence[Job | Deduplicated | OJSError] | None = None
        try:
            async with trio.open_nursery() as nursery:
                for queue, hold in batch.holds.items():
                    nursery.start_soon(self._hold_queue, queue, hold, failures)
                    await hold.parked.wait()
                    if failures:
                        break
                else:
                    try:
                        results = await self._router.ask(last, batch)
                    except OJSError as error:
                        failures.append(error)
        finally:
            if not batch.taken:  # else the storing actor releases the holds, come what may
                batch.withdrawn = True
                for hold in batch.holds.values():
                    hold.released.set()
        if results is None:
            raise failures[0]
        return results

    async def _hold_queue(self, queue: str, hold: Hold, failures: list[OJSError]) -> None:
        try:
            await self._router.ask(queue, hold)
        except OJSError as error:
            if hold.results is None:
                failures.append(error)
            else:  # stored: only the queue's follow-up (events, wake-ups) is missing
                log.warning("queue %r missed the follow-up of a stored batch: %s", queue, error)
        finally:
            hold.parked.set()

    def _stored(self, result: Job | Deduplicated | OJSError) -> Job:
        if isinstance(result, OJSError):
            raise result
        job = result.existing if isinstance(result, Deduplicated) else result
        self._router.remember(job)
        return job


__all__ = ["Producer"]
