"""The embedded API: open the actor system inside a trio program.

    async with open_system() as system:
        job = await system.enqueue({"type": "email.send", "args": ["a@example.com"]})
        [claimed] = await system.fetch(["default"], worker_id="w1")
        await system.ack(claimed.id, result={"sent": True})

The HTTP layer is a thin client of exactly this class.

:class:`System` is a facade over the parts it is made of, each in its own module:

* :mod:`.supervision`: the supervision tree (root, scheduler, the supervisors below);
* :mod:`.routing`: the QueueActors' supervisor, asks to them, the job -> queue cache;
* :mod:`.producer`: enqueue, atomic batches;
* :mod:`.worker_side`: fetch, ack/nack, settle_many, leases, heartbeats, the workers seen;
* :mod:`.admin`: job operations and queries, queues, dead letter, events, health, reset;
* :mod:`.metrics`: the Prometheus metrics of ``GET /metrics``;
* :mod:`.workflows` and :mod:`.crons`: their actors' supervisors and their APIs.

Its methods are the parts' own, bound in ``__init__``, so the facade adds no call
of its own to any path.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import trio

from ..actors import Supervisor
from ..backends import Backend, EventSink, ReadyNotices, open_backend
from ..core import Job
from ..core.ids import new_id
from .admin import Admin
from .checkpoints import Checkpoints
from .clock import Clock, trio_wall_clock
from .cron_supervisor import CronSupervisor
from .crons import Crons
from .event_relay import EventRelay
from .job_context import JobServices
from .limits import Limits
from .metrics import SystemMetrics
from .outbox_gate import OutboxGate
from .producer import Producer
from .progress import Progress
from .queue_writes import Changes
from .ready_watcher import ReadyWatcher
from .routing import QueueRouter
from .scheduler import Scheduler
from .schemas import SchemaRegistry
from .settings import Settings
from .signals import Signals
from .supervision import root_supervisor
from .tenant_activity import TenantActivity
from .tenant_config import TenantConfigs
from .tenant_limits import TenantGuard
from .webhooks import Webhooks
from .worker_group import Handler, WorkerGroup, run_worker_group
from .worker_side import Heartbeat, WorkerSide
from .workflows import WorkflowInbox, Workflows


class System:
    def __init__(
        self, backend: Backend, *, clock: Clock | None = None, settings: Settings | None = None
    ) -> None:
        self.backend = backend
        self.settings = settings = settings or Settings()
        self.metrics = metrics = SystemMetrics(settings.metrics)
        self._calls = calls = metrics.measure_backend(backend)
        """The backend as the parts call it (timed, unless metrics are off)."""
        self._job_flow = metrics.jobs
        self.clock = clock = clock or trio_wall_clock()
        self.signals = signals = Signals()
        self._inbox = inbox = WorkflowInbox()
        refresh_ms = int(settings.poll_interval * 1000)
        self.tenant_configs = tenant_configs = TenantConfigs(calls, clock, refresh_ms)
        """Configured tenants and their limits (ojs-multi-tenancy §8)."""
        self.tenant_guard = tenant_guard = TenantGuard(calls, clock, tenant_configs)
        self.tenant_activity = TenantActivity(clock)
        """Tenants' enqueues and processed jobs over the last minute (§10.2)."""
        self._router = router = QueueRouter(
            calls, clock, signals, settings, on_change=self._jobs_changed,
            tenant_configs=tenant_configs,
        )  # fmt: skip
        gate = OutboxGate(calls, clock)
        self._workflows = workflows = Workflows(calls, clock, settings, router, inbox, gate)
        self._crons = crons = Crons(calls, clock, settings, jobs=self)
        self._relay_holder = new_id()  # this process in the event relay's lease
        self._webhooks = hooks = Webhooks(calls, clock, settings, signals, self._relay_holder)
        self.root = root_supervisor(
            self._new_scheduler,
            router.supervisors,
            crons.supervisors,
            workflows.supervisors,
            hooks.supervisors,
            watcher=self._new_ready_watcher if isinstance(backend, ReadyNotices) else None,
            relay=self._new_event_relay if isinstance(backend, EventSink) else None,
        )
        self._worker_side = worker_side = WorkerSide(
            router, calls, clock, signals, settings, tenant_configs
        )
        self.workers = worker_side.registry
        self.fair_scheduler = worker_side.fair_scheduler
        admin = Admin(
            calls,
            clock,
            router,
            workflows=workflows,
            crons=crons,
            workers=self.workers,
            gate=gate,
            relay=lambda: self.event_relay,
        )
        self.started_at = admin.started_at

        # -- producers
        self.schemas = SchemaRegistry(
            calls, clock, mode=settings.schema_validation, refresh=settings.schema_refresh
        )
        producer = Producer(router, clock, gate, self.schemas, tenant_guard)
        self.enqueue = producer.enqueue
        self.enqueue_batch = producer.enqueue_batch
        # -- workers
        self.fetch = metrics.timed_fetch(worker_side.fetch)
        self.settle_many = worker_side.settle_many
        self.extend_leases = worker_side.extend_leases
        self.ack = worker_side.ack
        self.nack = worker_side.nack
        self.heartbeat = worker_side.heartbeat
        self.close_fetches = worker_side.closing.set  # shutting down: long polls answer now
        self.set_worker_state = worker_side.set_worker_state
        # -- progress and checkpoints (ojs-progress, ojs-durable-execution)
        progress = Progress(router, calls, signals)
        checkpoints = Checkpoints(calls, clock)
        self._job_services = JobServices(progress, checkpoints)
        self.report_progress = progress.report
        self.job_progress = progress.read
        self.follow_progress = progress.follow
        self.save_checkpoint = checkpoints.save
        self.checkpoint = checkpoints.get
        self.delete_checkpoint = checkpoints.delete
        self.resume_checkpoints = checkpoints.for_jobs
        # -- jobs, queues, dead letter, events, health
        self.info = admin.info
        self.cancel = admin.cancel
        self.activate = admin.activate
        self.list_queues = admin.list_queues
        self.queue_info = admin.queue_info
        self.set_paused = admin.set_paused
        self.queue_stats = admin.queue_stats
        self.queue_ref = router.queue_ref
        self.limits = Limits(router, calls, clock)  # queue bounds, rate-limit keys
        self.dead_letter = admin.dead_letter
        self.retry_dead_letter = admin.retry_dead_letter
        self.delete_dead_letter = admin.delete_dead_letter
        # -- the admin API's queries and bulk operations
        self.admin_stats = admin.stats
        self.admin_workers = admin.workers
        self.all_queue_stats = admin.all_queue_stats
        self.known_queue_stats = admin.known_queue_stats
        self.retry_job = admin.retry_job
        self.list_jobs = admin.list_jobs
        self.purge_queue = admin.purge_queue
        self.dead_letter_matching = admin.dead_letter_matching
        self.dead_letter_stats = admin.dead_letter_stats
        self.retry_dead_letter_matching = admin.retry_dead_letter_matching
        self.purge_dead_letter = admin.purge_dead_letter
        self.events = admin.events
        self.health = admin.health
        self.root.on_restart = self._restarted
        metrics.watch(
            root=self.root,
            backend=calls,
            relay_status=admin.relay_status,
            workers=worker_side.registry.__len__,
            pressure=router.pressure,
        )
        self._reset_store = admin.reset
        # -- workflows
        self.create_workflow = workflows.create_workflow
        self.workflow_info = workflows.workflow_info
        self.workflow_progress = workflows.workflow_progress
        self.cancel_workflow = workflows.cancel_workflow
        self.workflow_ref = workflows.workflow_ref
        # -- cron
        self.register_cron = crons.register_cron
        self.list_crons = crons.list_crons
        self.cron_info = crons.cron_info
        self.set_cron_enabled = crons.set_cron_enabled
        self.delete_cron = crons.delete_cron
        # -- webhooks
        self.create_webhook_subscription = hooks.create_subscription
        self.list_webhook_subscriptions = hooks.list_subscriptions
        self.webhook_subscription_info = hooks.subscription_info
        self.update_webhook_subscription = hooks.update_subscription
        self.delete_webhook_subscription = hooks.delete_subscription
        self.test_webhook_subscription = hooks.test_subscription
        self.rotate_webhook_secret = hooks.rotate_secret
        self.webhook_deliveries = hooks.list_deliveries
        self.webhook_delivery_info = hooks.delivery_info
        self.retry_webhook_delivery = hooks.retry_delivery

    async def reset(self) -> None:
        """Drop every job, queue, event and schema (the conformance runner's reset), and
        this process's cached view of the schema registry with them."""
        await self._reset_store()
        self.schemas.forget()
        self.tenant_configs.forget()

    def _new_scheduler(self) -> Scheduler:
        return Scheduler(
            self._calls,
            self.clock,
            self.signals,
            poll_interval=self.settings.poll_interval,
            on_change=self._jobs_changed,
        )

    def _new_ready_watcher(self) -> ReadyWatcher:
        assert isinstance(self.backend, ReadyNotices)
        return ReadyWatcher(self.backend, self.signals, poll_interval=self.settings.poll_interval)

    def _new_event_relay(self) -> EventRelay:
        calls = self._calls
        assert isinstance(calls, EventSink)
        return EventRelay(
            calls,
            calls,
            self.clock,
            self.signals,
            holder=self._relay_holder,
            poll_interval=self.settings.poll_interval,
        )

    def _restarted(self, child_id: str, supervisor: bool) -> None:
        """Every restart in the tree (the root's hook, which its supervisors take)."""
        self.metrics.restarted(child_id, supervisor)
        self._inbox.restarted(child_id)

    def _jobs_changed(self, changes: Changes) -> None:
        """The hook of every job change stored through this process (QueueActors, the
        Scheduler): tell the workflows, wake the event relay, count them (metrics)."""
        self._inbox.jobs_changed(changes)
        self.signals.events_appended()
        self.tenant_activity.record(changes)
        if self._job_flow is not None:
            self._job_flow.record(changes)

    @property
    def event_relay(self) -> EventRelay | None:
        """The running event relay (a new one after each restart); ``None`` if the
        backend is no :class:`~ojs_actors.backends.EventSink`."""
        relay = self.root.child("event-relay")
        return relay if isinstance(relay, EventRelay) else None

    @property
    def queues(self) -> Supervisor:
        """The supervisor of the QueueActors (a new one after each restart)."""
        return self._router.supervisors.current

    @property
    def crons(self) -> CronSupervisor:
        """The supervisor of the CronActors (a new one after each restart)."""
        return self._crons.supervisors.current

    @property
    def workflows(self) -> Supervisor:
        """The supervisor of the workflows' keeper and actors (a new one after each restart)."""
        return self._workflows.supervisors.current

    def worker_group(
        self,
        queues: Sequence[str],
        handlers: Mapping[str, Handler],
        *,
        concurrency: int = 16,
        batch_size: int = 100,
        worker_id: str | None = None,
        visibility_timeout_ms: int | None = None,
        grace_period: float = 30.0,
        heartbeat_interval: float = 30.0,
        on_settled: Callable[[Sequence[Job]], None] | None = None,
        tenant: str | None = None,
        versions: Mapping[str, str] | None = None,
    ) -> AbstractAsyncContextManager[WorkerGroup]:
        """Run ``handlers`` (job type -> ``async def handler(job)``) on jobs of ``queues``
        in this process while the returned context is open; leaving it stops the group
        gracefully. The options are explained at
        :class:`~ojs_actors.system.worker_group.WorkerGroup`."""
        return run_worker_group(
            WorkerGroup(
                self._worker_side,
                queues,
                handlers,
                concurrency=concurrency,
                batch_size=batch_size,
                worker_id=worker_id,
                visibility_timeout_ms=visibility_timeout_ms,
                grace_period=grace_period,
                heartbeat_interval=heartbeat_interval,
                on_settled=on_settled,
                services=self._job_services,
                tenant=tenant,
                versions=versions,
            )
        )


@asynccontextmanager
async def open_system(
    backend: Backend | str = "memory",
    *,
    clock: Clock | None = None,
    settings: Settings | None = None,
) -> AsyncIterator[System]:
    """Start the actor system over ``backend``; stop it, in order, on exit."""
    async with open_backend(backend) as store:  # closed after the actors, then its bridge
        system = System(store, clock=clock, settings=settings)
        async with trio.open_nursery() as nursery:
            await nursery.start(system.root.run)
            try:
                await system.tenant_configs.apply_static(system.settings.tenants)
                yield system
            finally:
                system.root.request_stop()


__all__ = ["Heartbeat", "Settings", "System", "open_system"]
