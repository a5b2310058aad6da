"""Routing to the QueueActors: every job operation is an ask to the actor of its queue.

The router starts each queue's actor (supervised) on first use, and remembers the
queue of the jobs it has seen (a job's queue never changes), so acks and other job
operations find their actor without reading the job first.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from ..actors import ActorCrashed, ActorRef, ActorStopped, ChildSpec, Reply, Restart
from ..backends import Backend, Deduplicated
from ..core import Job, OJSError, ServiceRestarting
from .backpressure import PressureBoard
from .clock import Clock
from .queue_actor import ChangeHook, QueueActor
from .queue_messages import Apply, Claim, Enqueue
from .rate_limits import KeyedLimiter
from .settings import Settings
from .signals import Signals
from .supervision import SupervisorSlot, one_for_one
from .tenancy import place_by_meta
from .tenant_config import TenantConfigs
from .tenant_limits import SLOTS_PREFIX, TenantSlots
from .transitions import Transition, job_not_found

QUEUE_CACHE_SIZE = 65_536
"""Jobs whose queue is remembered (least recently added forgotten first)."""


class QueueRouter:
    def __init__(
        self,
        backend: Backend,
        clock: Clock,
        signals: Signals,
        settings: Settings,
        *,
        on_change: ChangeHook,
        tenant_configs: TenantConfigs | None = None,
    ) -> None:
        """``on_change`` is told of every job change the QueueActors store;
        ``tenant_configs``: whose ``max_concurrency`` their claims keep to."""
        self.backend = backend
        self.clock = clock
        self.signals = signals
        self.settings = settings
        self.on_change = on_change
        self.supervisors = SupervisorSlot(
            "queues", lambda: one_for_one("queues", settings.queue_restarts)
        )
        self._queue_of: OrderedDict[str, str] = OrderedDict()
        self._tenant_configs = tenant_configs
        self._tenant_slots = KeyedLimiter(backend, clock, prefix=SLOTS_PREFIX)
        self.pressure = PressureBoard()
        """Bounded queues' latest depths, for enqueue responses' warning headers."""

    async def queue_ref(self, queue: str) -> ActorRef:
        """The QueueActor of ``queue``, started (supervised) on first use."""
        child_id = f"queue:{queue}"
        queues = self.supervisors.current
        if child_id in queues:
            return queues.ref(child_id)
        return await queues.start_child(
            ChildSpec(
                child_id,
                lambda: QueueActor(
                    queue,
                    self.backend,
                    self.clock,
                    self.signals,
                    on_change=self.on_change,
                    refresh_interval=self.settings.poll_interval,
                    pressure=self.pressure,
                    tenant_slots=self._slots_of(queue),
                ),
                restart=Restart.PERMANENT,
                mailbox_capacity=self.settings.mailbox_capacity,
            )
        )

    def _slots_of(self, queue: str) -> TenantSlots | None:
        configs = self._tenant_configs
        return None if configs is None else TenantSlots(configs, self._tenant_slots, queue)

    async def ask(self, queue: str, message: Any) -> Any:
        try:
            return await (await self.queue_ref(queue)).ask(message)
        except (ActorCrashed, ActorStopped) as error:
            raise _restarting(queue, error) from error

    async def apply_and_claim(
        self, queue: str, items: Sequence[tuple[str, Transition]], claim: Claim
    ) -> tuple[list[Job | OJSError], list[Job] | OJSError]:
        """``apply_many(items)`` for jobs of ``queue``, then ``ask(queue, claim)``, the
        claim sent right behind the transitions without waiting for their answer, so the
        queue's actor takes the two in one step (one round trip where the backend can).
        Per item the stored job or the error; then the jobs claimed, or the error that kept
        the claim from being made. Each is answered whatever happens to the other."""
        try:
            ref = await self.queue_ref(queue)
            applied = await ref.send(Apply(items))
        except (ActorCrashed, ActorStopped) as error:
            failure = _restarting(queue, error)
            return [failure] * len(items), failure
        claimed: Reply | OJSError
        try:
            claimed = await ref.send(claim)
        except (ActorCrashed, ActorStopped) as error:
            claimed = _restarting(queue, error)
        try:
            answers: list[Job | OJSError] = await self._reply(queue, applied)
        except OJSError as error:  # the actor restarted or the backend is away
            answers = [error] * len(items)
        if isinstance(claimed, OJSError):
            return answers, claimed
        try:
            jobs: list[Job] = await self._reply(queue, claimed)
        except OJSError as error:
            return answers, error
        return answers, jobs

    @staticmethod
    async def _reply(queue: str, reply: Reply) -> Any:
        """The answer to a message sent to ``queue``'s actor (as :meth:`ask` waits for it)."""
        try:
            return await reply.wait()
        except (ActorCrashed, ActorStopped) as error:
            raise _restarting(queue, error) from error

    def remember(self, job: Job) -> None:
        """Cache the job's queue (it never changes), so acks find its actor without a read."""
        queue_of = self._queue_of
        if job.id not in queue_of:
            queue_of[job.id] = job.queue
            if len(queue_of) > QUEUE_CACHE_SIZE:
                queue_of.popitem(last=False)

    def forget(self, job_id: str) -> None:
        self._queue_of.pop(job_id, None)

    def forget_all(self) -> None:
        self._queue_of.clear()

    async def apply(self, job_id: str, transition: Transition) -> Job:
        [result] = await self.apply_many([(job_id, transition)])
        if isinstance(result, OJSError):
            raise result
        return result

    async def apply_many(self, items: Sequence[tuple[str, Transition]]) -> list[Job | OJSError]:
        """Apply transitions to many jobs, each on its own: one ask per queue involved.
        Per item, in order, the stored job or the error that kept it from changing."""
        answers: list[Job | OJSError | None] = [None] * len(items)
        by_queue: dict[str, list[int]] = {}
        unknown: list[int] = []
        queue_of = self._queue_of
        for position, (job_id, _) in enumerate(items):
            queue = queue_of.get(job_id)
            if queue is None:
                unknown.append(position)
            else:
                by_queue.setdefault(queue, []).append(position)
        if unknown:
            found = await self.backend.get_jobs([items[position][0] for position in unknown])
            for position, job in zip(unknown, found, strict=True):
                if job is None:
                    answers[position] = job_not_found(items[position][0])
                else:
                    self.remember(job)
                    by_queue.setdefault(job.queue, []).append(position)
        for queue, positions in by_queue.items():
            message = Apply([items[position] for position in positions])
            try:
                results = await self.ask(queue, message)
            except OJSError as error:  # the actor restarted or the backend is away
                results = [error] * len(positions)
            for position, result in zip(positions, results, strict=True):
                answers[position] = result
        return answers  # type: ignore[return-value]  # every position is filled in

    async def enqueue_each(self, jobs: Sequence[Job]) -> list[Job | Deduplicated | OJSError]:
        """Store jobs, each on its own (not atomically), through their queues' actors;
        the answers in input order."""
        by_queue: dict[str, list[int]] = {}
        jobs = [place_by_meta(job) for job in jobs]  # a tenant's jobs into its queues
        for position, job in enumerate(jobs):
            by_queue.setdefault(job.queue, []).append(position)
        answers: dict[int, Job | Deduplicated | OJSError] = {}
        for queue, positions in by_queue.items():
            results = await self.ask(queue, Enqueue([jobs[i] for i in positions]))
            for position, result in zip(positions, results, strict=True):
                answers[position] = result
                if isinstance(result, Job):
                    self.remember(result)
        return [answers[position] for position in range(len(jobs))]


def _restarting(queue: str, error: ActorCrashed | ActorStopped) -> ServiceRestarting:
    return ServiceRestarting(
        f"The actor of queue '{queue}' restarted while handling the request.",
        details={"queue": queue, "reason": str(error)},
    )


__all__ = ["QUEUE_CACHE_SIZE", "QueueRouter"]
