"""The worker side of a System: claiming jobs, storing their outcomes, keeping their leases,
and the record of the workers this process has heard from."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import trio

from ..backends import Backend
from ..core import NO_RESULT, Job, OJSError, State, parse_queue_name
from ..core.version_routes import VersionRoutes
from . import tracing
from .clock import Clock
from .fair_scheduling import FairScheduler
from .queue_messages import Claim
from .routing import QueueRouter
from .settings import Settings
from .settle import Ack, Nack, Outcome, transition_of
from .signals import Signals, wait_any
from .tenancy import ShardDirectory, split_shard
from .tenant_config import TenantConfigs, weight_of
from .tenant_throttle import NoisyNeighbours
from .transitions import Transition, extend_lease_by
from .worker_registry import WorkerRegistry


@dataclass(slots=True)
class Heartbeat:
    state: str
    jobs_extended: list[str] = field(default_factory=list)
    jobs_cancelled: list[str] = field(default_factory=list)


class WorkerSide:
    def __init__(
        self,
        router: QueueRouter,
        backend: Backend,
        clock: Clock,
        signals: Signals,
        settings: Settings,
        tenant_configs: TenantConfigs | None = None,
    ) -> None:
        self.backend = backend
        self._tenant_configs = tenant_configs
        self.clock = clock
        self.signals = signals
        self.settings = settings
        self.registry = WorkerRegistry(
            clock,
            idle_timeout_ms=int(settings.worker_idle_timeout * 1000),
            capacity=settings.max_workers,
        )
        self._router = router
        refresh_ms = int(settings.poll_interval * 1000)
        self.fair_scheduler = FairScheduler(backend, clock, refresh_ms)
        self.shards = ShardDirectory(backend, clock, refresh_ms)
        self.noisy_neighbours = NoisyNeighbours(backend, clock, refresh_ms)
        self.apply_many = router.apply_many
        """Store outcomes given as bound transitions (what a worker group settles with)."""
        self.closing = trio.Event()
        """Set when the server shuts down: fetches stop waiting for work and answer what
        they have (ojs-graceful-shutdown §9.1: in-flight requests finish)."""

    async def fetch(
        self,
        queues: Sequence[str],
        count: int = 1,
        *,
        worker_id: str | None = None,
        visibility_timeout_ms: int | None = None,
        wait: float = 0.0,
        routes: VersionRoutes | None = None,
    ) -> list[Job]:
        """Claim up to ``count`` jobs, trying ``queues`` in order (or their pool's, see
        :mod:`.fair_scheduling`); wait up to ``wait`` seconds for work if there is none now.
        A caller acting for a tenant claims from its queues; one acting for nobody from
        every tenant's too, by their weights (:meth:`_claim_by_weight`). ``routes``: the
        worker's version declarations (default: those it declared under ``worker_id``);
        jobs outside them stay ``available`` for another worker (ojs-job-versioning §8)."""
        queues, shared = await self.shards.fetch_queues(queues)
        fetch = partial(self._fetch, queues, count, worker_id, visibility_timeout_ms, wait)
        if tracing.current is not None:
            with tracing.current.claim(queues, worker_id) as span:
                jobs = await fetch(shared, routes)
                span.claimed(jobs)
                return jobs
        return await fetch(shared, routes)

    async def _fetch(
        self,
        queues: Sequence[str],
        count: int,
        worker_id: str | None,
        visibility_timeout_ms: int | None,
        wait: float,
        shared: bool = False,
        routes: VersionRoutes | None = None,
    ) -> list[Job]:
        for queue in queues:
            parse_queue_name(queue, "queues[]")
        record = None if worker_id is None else self.registry.seen(worker_id)
        if record is not None:
            if record.stopping:
                return []  # it said it is shutting down (ojs-graceful-shutdown §5.1)
            routes = routes or record.handlers
        deadline = trio.current_time() + wait
        while True:
            # Take the wake-up events before claiming: work stored while the claim is in
            # flight sets them, so the wait below cannot miss it.
            ready = [*map(self.signals.ready_event, queues), self.closing] if wait > 0 else []
            claim_of = partial(
                Claim, worker_id=worker_id, visibility_ms=visibility_timeout_ms, routes=routes
            )
            if shared and not await self.fair_scheduler.covered(queues):
                claimed, handed_back = await self._claim_by_weight(queues, count, claim_of)
            else:
                claimed, handed_back = await self._claim(queues, count, claim_of)
            if record is not None and handed_back:
                record.handed_back = True
            if claimed or trio.current_time() >= deadline or self.closing.is_set():
                for job in claimed:
                    self._router.remember(job)
                return claimed
            remaining = deadline - trio.current_time()
            with trio.move_on_after(min(remaining, self.settings.poll_interval)):
                # After a claim that handed jobs back (this worker may not take them), the
                # poll only: their return to the queue may send a wake-up itself (a notice
                # through the backend), which would have it claim them again at once.
                await wait_any([self.closing] if handed_back else ready)

    async def _claim(
        self, queues: Sequence[str], count: int, claim_of: Callable[[int], Claim]
    ) -> tuple[list[Job], bool]:
        """One claim round over ``queues``, in their pool's order or else theirs: the jobs,
        and whether a claim handed jobs back."""
        handed_back = False
        claimed: list[Job] = []
        plan = await self.fair_scheduler.plan(queues, count) if len(queues) > 1 else None
        drained: set[str] = set()  # asked for more than it had: empty, not asked again
        for queue, share in (*(plan or ()), *((queue, count) for queue in queues)):
            if len(claimed) >= count:
                break
            if queue in drained:
                continue
            wanted = min(share, count - len(claimed))
            claim = claim_of(wanted)
            got = await self._router.ask(queue, claim)
            handed_back = handed_back or bool(claim.handed_back)
            if len(got) < wanted:
                drained.add(queue)
            if got:
                self.fair_scheduler.dispatched(queue, len(got))
                claimed.extend(got)
                if plan is not None:
                    self.fair_scheduler.advance(queues, queue)
        return claimed, handed_back

    async def _claim_by_weight(
        self, queues: Sequence[str], count: int, claim_of: Callable[[int], Claim]
    ) -> tuple[list[Job], bool]:
        """One claim round of a shared worker over queues and their tenants' shards that
        no pool covers (ojs-multi-tenancy §7.2): turns by smooth weighted round-robin, each
        queue weighted by its tenant's ``fairness_weight`` (less while the tenant is
        throttled, :mod:`.tenant_throttle`). A queue with fewer jobs ready
        than its turns gives the rest back (to the others, not owed to it) and is left out
        of the rest of this round; each pass fills the fetch or drains a queue."""
        scheduler = self.fair_scheduler
        weights = await self._tenant_weights(queues)
        handed_back = False
        claimed: list[Job] = []
        drained: set[str] = set()
        while len(claimed) < count and len(drained) < len(queues):
            turns, eligible = scheduler.weighted_turns(
                queues, weights, count - len(claimed), drained
            )
            unused: dict[str, int] = {}
            before = len(claimed)
            for queue, wanted in turns:
                claim = claim_of(wanted)
                got = await self._router.ask(queue, claim)
                handed_back = handed_back or bool(claim.handed_back)
                if got:
                    scheduler.dispatched(queue, len(got))
                    claimed.extend(got)
                if len(got) < wanted:
                    unused[queue] = wanted - len(got)
            scheduler.give_back(queues, weights, eligible, unused, len(claimed) - before)
            drained.update(unused)
        return claimed, handed_back

    async def _tenant_weights(self, queues: Sequence[str]) -> dict[str, float]:
        configs = self._tenant_configs
        if configs is None:
            return dict.fromkeys(queues, 1)
        await configs.refresh()
        weights = {queue: weight_of(configs.cached(split_shard(queue)[1])) for queue in queues}
        return dict(await self.noisy_neighbours.weights(queues, weights))

    async def settle_and_claim(
        self,
        queue: str,
        items: Sequence[tuple[str, Transition]],
        count: int,
        *,
        worker_id: str | None = None,
        visibility_timeout_ms: int | None = None,
        routes: VersionRoutes | None = None,
    ) -> tuple[list[Job | OJSError], list[Job] | OJSError]:
        """Store outcomes of jobs of ``queue`` (bound transitions, as :attr:`apply_many`
        takes them) and claim up to ``count`` more of its jobs: the claim goes right behind
        the outcomes, without waiting for their answer, so the QueueActor stores and claims
        in one step (one round trip where the backend has
        :class:`~ojs_actors.backends.UpdateAndClaim`). Per outcome the stored job or the
        error; then the jobs claimed, or the error that kept the claim from being made.
        ``routes``: as :meth:`fetch` takes them."""
        parse_queue_name(queue, "queues[]")
        record = None if worker_id is None else self.registry.seen(worker_id)
        if record is not None:
            routes = routes or record.handlers
        claim = Claim(count, worker_id, visibility_timeout_ms, routes)
        if tracing.current is None:
            answers, claimed = await self._router.apply_and_claim(queue, items, claim)
        else:
            with tracing.current.claim([queue], worker_id) as span:
                answers, claimed = await self._router.apply_and_claim(queue, items, claim)
                span.claimed(claimed if isinstance(claimed, list) else [])
        if record is not None and claim.handed_back:
            record.handed_back = True
        if not isinstance(claimed, OJSError):
            for job in claimed:
                self._router.remember(job)
        return answers, claimed

    async def settle_many(self, outcomes: Sequence[Outcome]) -> list[Job | OJSError]:
        """Ack and nack many claimed jobs in one go: one ask per queue, applied by its
        QueueActor in one backend write. Each outcome succeeds or fails on its own; the
        answer holds, in order, the stored job or the error (nothing is raised for one
        job's failure, e.g. :class:`Conflict` for a job cancelled meanwhile)."""
        items: list[tuple[str, Transition]] = []
        invalid: dict[int, OJSError] = {}
        for position, outcome in enumerate(outcomes):
            try:
                items.append((outcome.job_id, transition_of(outcome)))
            except OJSError as error:
                invalid[position] = error
        if not invalid:
            return await self._router.apply_many(items)
        applied = iter(await self._router.apply_many(items))
        return [invalid.get(position) or next(applied) for position in range(len(outcomes))]

    async def extend_leases(
        self, job_ids: Sequence[str], *, visibility_timeout_ms: int | None = None
    ) -> list[Job | OJSError]:
        """Push out the lease deadlines of active jobs (each by its own visibility
        timeout, or by ``visibility_timeout_ms``), in one ask per queue."""
        extend = extend_lease_by(visibility_timeout_ms)
        return await self._router.apply_many([(job_id, extend) for job_id in job_ids])

    async def ack(self, job_id: str, result: Any = NO_RESULT) -> Job:
        if tracing.current is not None:
            return await self._settle_traced(job_id, Ack(job_id, result), "ack")
        return await self._router.apply(job_id, transition_of(Ack(job_id, result)))

    async def nack(
        self, job_id: str, error: dict[str, Any] | None, *, requeue: bool = False
    ) -> Job:
        """Report a failed attempt; the retry policy decides retryable or discarded.
        ``requeue`` hands the job back at once without spending the attempt."""
        if tracing.current is not None:
            return await self._settle_traced(job_id, Nack(job_id, error, requeue), "nack")
        return await self._router.apply(job_id, transition_of(Nack(job_id, error, requeue)))

    async def _settle_traced(self, job_id: str, outcome: Outcome, verb: str) -> Job:
        assert tracing.current is not None
        with tracing.current.settle(job_id, verb) as span:
            job = await self._router.apply(job_id, transition_of(outcome))
            span.stored(job)
            return job

    async def heartbeat(
        self,
        worker_id: str,
        job_ids: Iterable[str] = (),
        *,
        visibility_timeout_ms: int | None = None,
    ) -> Heartbeat:
        """Extend the leases of the worker's active jobs; the reply carries the state the
        worker should be in (``running``, ``quiet``, ``terminate``)."""
        beat = Heartbeat(state=self.registry.seen(worker_id).directive)
        ids = list(dict.fromkeys(job_ids))
        if not ids:
            return beat
        results = await self.extend_leases(ids, visibility_timeout_ms=visibility_timeout_ms)
        refused = [
            job_id for job_id, job in zip(ids, results, strict=True) if not isinstance(job, Job)
        ]
        gone = (
            dict(zip(refused, await self.backend.get_jobs(refused), strict=True)) if refused else {}
        )
        for job_id, job in zip(ids, results, strict=True):
            if not isinstance(job, Job):
                stored = gone[job_id]
                if stored is not None and stored.state is State.CANCELLED:
                    beat.jobs_cancelled.append(job_id)
                continue
            beat.jobs_extended.append(job_id)
            directive = job.meta.get("test_directive") if self.settings.test_hooks else None
            if directive in ("quiet", "terminate") and beat.state == "running":
                beat.state = directive
        return beat

    def take_handed_back(self, worker_id: str) -> bool:
        """Whether a claim of the worker handed jobs back (outside its version
        declarations) since the last time this was asked."""
        record = self.registry.get(worker_id)
        if record is None or not record.handed_back:
            return False
        record.handed_back = False
        return True

    def set_worker_state(self, worker_id: str, state: str) -> None:
        """Operator directive delivered in the worker's heartbeat replies; forgotten with
        the worker once it has been silent for ``Settings.worker_idle_timeout``."""
        self.registry.direct(worker_id, state)


__all__ = ["Heartbeat", "WorkerSide"]
