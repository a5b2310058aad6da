"""The supervision tree of a System, and the one way its supervisors are built::

    root (one_for_one, 3 restarts / 5 s)
    ├── scheduler                              the Scheduler actor: every job timer
    ├── ready-watcher                          other processes' new work (ReadyNotices
    │                                          backends only: Redis)
    ├── queues     (Settings.queue_restarts)   a QueueActor per queue   (routing.QueueRouter)
    ├── crons      (cron_supervisor)           a CronActor per entry    (crons.Crons)
    ├── workflows  (Settings.workflow_restarts) the keeper and a WorkflowActor per
    │                                          workflow                 (workflows.Workflows)
    ├── webhooks   (10 restarts / 5 s)         the WebhookDispatcher: the outbox to webhook
    │                                          receivers, one process of a cluster at a
    │                                          time                     (webhooks.Webhooks)
    └── event-relay                            the outbox to an external sink, one process
                                               of a cluster at a time (EventSink backends
                                               only: NATS, Kafka)

Each part owns the :class:`SupervisorSlot` of its supervisor and starts its actors in it.
Every supervisor of the tree waits out a store outage (:data:`STORE_OUTAGE`): a child
that exits with :class:`BackendUnavailable` (its start-up read failed, a write found the
store away) is restarted after a growing pause, not counted as a crash, so an outage
never exhausts a restart intensity and takes the server down.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

from ..actors import Actor, Backoff, ChildSpec, Strategy, Supervisor
from ..core import BackendUnavailable

ROOT_RESTARTS = (3, 5.0)
"""Restart intensity of the root: N restarts of its children within T seconds."""

STORE_OUTAGE = Backoff(on=(BackendUnavailable,), initial=0.1, maximum=5.0)
"""How every supervisor of the tree restarts a child the store's outage stopped."""

S = TypeVar("S", bound=Supervisor)


def one_for_one(
    name: str, restarts: tuple[int, float], children: Sequence[ChildSpec] = ()
) -> Supervisor:
    """A supervisor restarting only the child that exits: ``restarts`` = (N, T seconds)."""
    max_restarts, within = restarts
    return Supervisor(
        name,
        strategy=Strategy.ONE_FOR_ONE,
        max_restarts=max_restarts,
        within=within,
        children=children,
        backoff=STORE_OUTAGE,
    )


class SupervisorSlot(Generic[S]):
    """A supervisor under the root, as the root starts and restarts it: :attr:`current`
    is the one running now. It is built up front, so its parts can name it before the
    tree runs; the root's first start takes that one, and each restart a new one."""

    def __init__(self, name: str, build: Callable[[], S]) -> None:
        self.name = name
        self._build = build
        self.current: S = build()

    def child_spec(self) -> ChildSpec:
        return ChildSpec(self.name, self._start)

    async def stop_children(self, prefix: str = "") -> None:
        """Stop the current supervisor's children whose ids start with ``prefix``."""
        for child_id, _, _ in self.current.which_children():
            if child_id.startswith(prefix):
                await self.current.stop_child(child_id)

    def _start(self) -> S:
        if self.current.started:
            self.current = self._build()
        return self.current


def root_supervisor(
    scheduler: Callable[[], Actor],
    *slots: SupervisorSlot[Any],
    watcher: Callable[[], Actor] | None = None,
    relay: Callable[[], Actor] | None = None,
) -> Supervisor:
    """The root: the scheduler, the ready watcher if the backend has one, then the
    supervisors of ``slots`` in order, then the event relay if the backend has a sink
    (last: it stops first)."""
    watchers = [ChildSpec("ready-watcher", watcher)] if watcher is not None else []
    relays = [ChildSpec("event-relay", relay)] if relay is not None else []
    return one_for_one(
        "root",
        ROOT_RESTARTS,
        [
            ChildSpec("scheduler", scheduler),
            *watchers,
            *(s.child_spec() for s in slots),
            *relays,
        ],
    )


__all__ = ["ROOT_RESTARTS", "STORE_OUTAGE", "SupervisorSlot", "one_for_one", "root_supervisor"]
