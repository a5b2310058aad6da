"""The enqueue side of a QueueActor: storing jobs, one backend call per run.

A run of ``Enqueue`` messages is checked against the queue's depth bound
(:mod:`.backpressure`) and stored with one ``insert_jobs``, or, with a worker of this
process waiting on the queue, stored and claimed for it in one round trip
(:class:`~ojs_actors.backends.InsertAndClaim`). A batch spanning queues
(``EnqueueBatch``) is stored atomically by the actor of one of its queues while the
others hold (``Hold``), then each held queue gets the results of its jobs.

The intake owns no state: the queue's record (pause state, rate limit, bound) stays
with the actor, which lends what the intake needs of it as callables.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from ..actors import Envelope
from ..backends import Backend, Deduplicated, InsertAndClaim
from ..core import Job, OJSError, State, lifecycle
from ..core.errors import QueueFull
from .clock import Clock
from .queue_messages import EnqueueBatch, Hold
from .queue_writes import Changes, TransitionWriter
from .rate_limits import KeyedAdmission
from .signals import IdleClaim, Signals

Results = list[Job | Deduplicated | OJSError]


def answer(envelope: Envelope, result: Any) -> None:
    """Reply to ``envelope`` with ``result``, failing it if ``result`` is an error."""
    if envelope.reply is None:
        return
    if isinstance(result, OJSError):
        envelope.reply.fail(result)
    else:
        envelope.reply.set(result)


class QueueIntake:
    def __init__(
        self,
        queue: str,
        backend: Backend,
        clock: Clock,
        signals: Signals,
        writer: TransitionWriter,
        keys: KeyedAdmission,
        *,
        after_store: Callable[[Changes], None],
        over_bound: Callable[
            [Sequence[int], Sequence[str | None], Sequence[Sequence[Job]]],
            Awaitable[list[QueueFull | None] | None],
        ],
        may_hand_over: Callable[[], bool],
        adopt_rate_limit: Callable[[Sequence[Job]], Awaitable[None]],
    ) -> None:
        self.queue = queue
        self.backend = backend
        self.clock = clock
        self.signals = signals
        self._writer = writer
        self._keys = keys
        self._after_store = after_store
        self._over_bound = over_bound
        """The actor's verdicts on enqueue sizes against a fresh bound (see
        :meth:`.DepthGuard.verdicts`)."""
        self._may_hand_over = may_hand_over
        """Whether stored jobs may go straight to a waiting worker: the queue is not
        paused and has no rate limit to count first."""
        self._adopt_rate_limit = adopt_rate_limit
        """The actor takes the queue rate limit of the newest stored job that sets one."""

    async def enqueue(self, run: Sequence[Envelope]) -> None:
        """One backend call for all the enqueues of the run (with the claim of a worker
        of this process waiting on the queue, if there is one)."""
        jobs = [job for envelope in run for job in envelope.message.jobs]
        refused = await self._over_bound(
            [len(envelope.message.jobs) for envelope in run],
            [envelope.message.jobs[0].type if envelope.message.jobs else None for envelope in run],
            [envelope.message.jobs for envelope in run],
        )
        if refused is not None and any(refused):
            for envelope, error in zip(run, refused, strict=True):
                if error is not None:
                    answer(envelope, [error] * len(envelope.message.jobs))
            run = [envelope for envelope, error in zip(run, refused, strict=True) if error is None]
            jobs = [job for envelope in run for job in envelope.message.jobs]
        if jobs:
            idle = self._idle_claim_for(jobs)
            if idle is None:
                results = await self.backend.insert_jobs(jobs)
            else:
                results = await self._insert_and_hand_over(jobs, idle)
            await self._adopt_stored(results)
        else:
            results = []
        position = 0
        for envelope in run:
            size = len(envelope.message.jobs)
            answer(envelope, results[position : position + size])
            position += size

    def _idle_claim_for(self, jobs: Sequence[Job]) -> IdleClaim | None:
        """A worker waiting on this queue to hand ``jobs`` to, if some may be claimable
        now (the queue not paused, no rate limit to count first)."""
        if not self._may_hand_over():
            return None
        tenant = self._keys.tenant
        if tenant is not None and tenant.limited():
            return None  # a tenant's concurrency limit caps its claims first
        if not any(job.state is State.AVAILABLE for job in jobs):
            return None
        return self.signals.take_idle_claim(self.queue)

    async def _insert_and_hand_over(self, jobs: Sequence[Job], idle: IdleClaim) -> Results:
        """Store ``jobs`` and claim for ``idle`` in one round trip where the backend can
        (:class:`InsertAndClaim`), then hand the claimed jobs over; those a worker gone
        meanwhile cannot take go back to the queue, unspent."""
        now = self.clock()
        backend = self.backend
        if isinstance(backend, InsertAndClaim):
            results, claimed, expired = await backend.insert_and_claim(
                jobs, self.queue, idle.count, now, idle.worker_id, idle.visibility_ms
            )
        else:
            results = await backend.insert_jobs(jobs)
            claimed, expired = await backend.claim(
                self.queue, idle.count, now, idle.worker_id, idle.visibility_ms
            )
        self._writer.remember_claimed(claimed)
        self._after_store([(State.AVAILABLE, job) for job in (*claimed, *expired)])
        routes = idle.routes
        claimed, _ = await self._keys.admit(claimed, None if routes is None else routes.accepts)
        if claimed and not idle.deliver(claimed):
            await self._writer.apply([(job.id, lifecycle.requeue) for job in claimed])
        return results

    async def enqueue_batch(self, batch: EnqueueBatch) -> Results | None:
        """Store a batch spanning queues atomically (this queue's actor stores it, the
        others hold); ``None`` if it was withdrawn before this actor took it."""
        if batch.withdrawn:
            return None
        batch.taken = True
        mine: Results = []
        try:
            mine_only = [job for job in batch.jobs if job.queue == self.queue]
            await self._check_bound(mine_only)
            results = await self.backend.insert_jobs(batch.jobs, atomic=True)
            if not any(isinstance(result, OJSError) for result in results):
                mine = self._hand_out(batch, results)
        finally:
            for hold in batch.holds.values():
                hold.released.set()
        await self._adopt_stored(mine)
        return results

    def _hand_out(
        self, batch: EnqueueBatch, results: Sequence[Job | Deduplicated | OJSError]
    ) -> Results:
        """Give each held queue the results of its jobs; this queue's are returned."""
        by_queue: dict[str, Results] = {self.queue: []}
        for job, result in zip(batch.jobs, results, strict=True):
            by_queue.setdefault(job.queue, []).append(result)
        for queue, hold in batch.holds.items():
            hold.results = by_queue.get(queue, [])
        return by_queue[self.queue]

    async def _check_bound(self, jobs: Sequence[Job]) -> None:
        """Raise :class:`QueueFull` if ``jobs`` would pass the queue's bound."""
        verdicts = await self._over_bound([len(jobs)], [jobs[0].type if jobs else None], [jobs])
        if verdicts and verdicts[0] is not None:
            raise verdicts[0]

    async def hold(self, hold: Hold) -> None:
        """This queue's part of a batch another actor stores: wait for it, then adopt it."""
        await self._check_bound(hold.jobs)  # refused before parking: the batch is withdrawn
        hold.parked.set()
        await hold.released.wait()
        if hold.results is not None:
            await self._adopt_stored(hold.results)

    async def _adopt_stored(self, results: Sequence[Job | Deduplicated | OJSError]) -> None:
        """This queue's policies and wake-ups for the jobs just stored."""
        stored = [result for result in results if isinstance(result, Job)]
        await self._adopt_rate_limit(stored)
        await self._keys.register(stored)
        self._after_store([(None, job) for job in stored])


__all__ = ["QueueIntake", "answer"]
