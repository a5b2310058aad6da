"""OTP-style supervisors on trio nurseries.

A supervisor owns its children (actors or other supervisors) in a nursery,
starts them in order and stops them in reverse order, each within its
``shutdown_timeout``. When a child exits abnormally it applies its
:class:`Strategy` and the child's :class:`Restart` type; more than
``max_restarts`` restarts within ``within`` seconds and it gives up: it stops
every child and raises :class:`SupervisorEscalation`, which its own parent sees
as the crash of a child. A supervisor given a :class:`Backoff` restarts a child
whose exit says that something it depends on is away (a store outage) after a
growing pause instead, without counting it: waiting out an outage is no crash loop.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

import trio

from ._actor import Actor, ActorCell, ActorRef
from ._errors import ActorError, ActorStopped, SupervisorEscalation, single_error
from ._mailbox import Mailbox

log = logging.getLogger("ojs_actors.supervisor")


class Strategy(StrEnum):
    ONE_FOR_ONE = "one_for_one"
    ONE_FOR_ALL = "one_for_all"
    REST_FOR_ONE = "rest_for_one"


class Restart(StrEnum):
    PERMANENT = "permanent"  # always restarted
    TRANSIENT = "transient"  # restarted only after an abnormal exit
    TEMPORARY = "temporary"  # never restarted


class ActorKilled(ActorError):
    """Exit reason of a child stopped with :meth:`Supervisor.kill_child`."""


@dataclass(frozen=True)
class Backoff:
    """Restart policy for exits that say the world is away, not the child broken (as
    Akka's backoff supervision): an exit raised as one of ``on`` restarts the child
    after ``initial`` seconds, doubling with each such exit in a row up to ``maximum``,
    and does not count toward the restart intensity. Another exit, or a run longer than
    ``maximum`` before the next one, starts the pause over at ``initial``."""

    on: tuple[type[BaseException], ...]
    initial: float = 0.1
    maximum: float = 5.0

    def applies(self, error: BaseException | None) -> bool:
        if isinstance(error, BaseExceptionGroup):
            return error.split(self.on)[1] is None
        return isinstance(error, self.on)

    def pause_after(self, previous: float, ran_for: float) -> float:
        if previous <= 0 or ran_for > self.maximum:
            return self.initial
        return min(previous * 2, self.maximum)


@dataclass(frozen=True)
class ChildSpec:
    id: str
    start: Callable[[], Actor | Supervisor]
    restart: Restart = Restart.PERMANENT
    shutdown_timeout: float = 5.0
    mailbox_capacity: int = 1024


@dataclass(eq=False)
class _Child:
    spec: ChildSpec
    mailbox: Mailbox
    ref: ActorRef
    runner: ActorCell | Supervisor | None = None
    scope: trio.CancelScope | None = None
    done: trio.Event = field(default_factory=trio.Event)
    running: bool = False
    stopping: bool = False
    killed: bool = False
    restarts: int = 0
    started_at: float = 0.0
    pause: float = 0.0
    """The last :class:`Backoff` pause before a restart (0: the last exit was another)."""


class Supervisor:
    def __init__(
        self,
        name: str,
        *,
        strategy: Strategy = Strategy.ONE_FOR_ONE,
        max_restarts: int = 3,
        within: float = 5.0,
        children: Sequence[ChildSpec] = (),
        backoff: Backoff | None = None,
    ) -> None:
        self.name = name
        self.strategy = strategy
        self.max_restarts = max_restarts
        self.within = within
        self.backoff = backoff
        self._initial = list(children)
        self._children: dict[str, _Child] = {}
        self._restart_times: deque[float] = deque()
        self._events_send, self._events = trio.open_memory_channel[
            tuple[str, _Child | None, ActorCell | Supervisor | None, BaseException | None]
        ](math.inf)
        self._nursery: trio.Nursery | None = None
        self._closed = False
        self.started = False
        """Whether :meth:`run` was ever entered (a supervisor instance runs once)."""
        self.on_restart: Callable[[str, bool], None] | None = None
        """Told ``(child id, whether the child is a supervisor)`` of each restart; a
        supervisor started as a child without one of its own takes its parent's."""

    # -- public API ---------------------------------------------------------

    def ref(self, child_id: str) -> ActorRef:
        return self._children[child_id].ref

    def child(self, child_id: str) -> Actor | Supervisor | None:
        """The running instance (for inspection in tests and admin tools)."""
        child = self._children.get(child_id)
        if child is None or child.runner is None:
            return None
        return child.runner.actor if isinstance(child.runner, ActorCell) else child.runner

    def __contains__(self, child_id: str) -> bool:
        return child_id in self._children

    def which_children(self) -> list[tuple[str, bool, int]]:
        """``(id, running, restarts)`` for each child, in start order."""
        return [(c.spec.id, c.running, c.restarts) for c in self._children.values()]

    async def start_child(self, spec: ChildSpec) -> ActorRef:
        """Add and start a child; if one with this id exists, return its ref."""
        existing = self._children.get(spec.id)
        if existing is not None:
            return existing.ref
        if self._nursery is None or self._closed:
            raise ActorStopped(f"supervisor {self.name!r} is not running")
        child = self._new_child(spec)
        try:
            await self._nursery.start(self._run_child, child)
        except BaseException:
            self._forget(child)
            raise
        return child.ref

    async def stop_child(self, child_id: str) -> None:
        child = self._children.get(child_id)
        if child is not None:
            await self._stop(child)
            self._forget(child)

    def kill_child(self, child_id: str) -> None:
        """Abnormal exit, as OTP's ``exit(Pid, kill)``: the child is restarted by policy."""
        child = self._children[child_id]
        if child.scope is not None and child.running:
            child.killed = True
            child.scope.cancel()

    def request_stop(self) -> None:
        self._events_send.send_nowait(("stop", None, None, None))

    # -- running --------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        self.started = True
        try:
            with single_error():
                async with trio.open_nursery() as nursery:
                    self._nursery = nursery
                    try:
                        for spec in self._initial:
                            await self.start_child(spec)
                        task_status.started()
                        await self._supervise()
                    finally:
                        self._closed = True
                        with trio.CancelScope(shield=True):
                            await self._stop_all()
                    nursery.cancel_scope.cancel()
        finally:
            for child in list(self._children.values()):
                self._forget(child)

    async def _supervise(self) -> None:
        async for kind, child, runner, error in self._events:
            if kind == "stop":
                return
            assert child is not None
            if self._children.get(child.spec.id) is not child or child.runner is not runner:
                continue  # stopped and forgotten, or already restarted since: a stale exit
            await self._on_exit(child, error)

    async def _on_exit(self, child: _Child, error: BaseException | None) -> None:
        restart = child.spec.restart
        if error is not None:
            log.warning("%s: child %s exited: %r", self.name, child.spec.id, error)
        if restart is Restart.TEMPORARY or (restart is Restart.TRANSIENT and error is None):
            self._forget(child)
            return
        pause = 0.0
        if self.backoff is not None and self.backoff.applies(error):
            ran_for = trio.current_time() - child.started_at
            pause = self.backoff.pause_after(child.pause, ran_for)
        else:
            self._count_restart(child, error)
        child.pause = pause
        order = list(self._children.values())
        if self.strategy is Strategy.ONE_FOR_ONE:
            affected = [child]
        elif self.strategy is Strategy.ONE_FOR_ALL:
            affected = order
        else:
            affected = order[order.index(child) :]
        for other in reversed(affected):
            if other is not child:
                await self._stop(other)
        assert self._nursery is not None
        if pause:
            log.warning("%s: restarting %s in %.2fs", self.name, child.spec.id, pause)
            self._nursery.start_soon(self._restart_after, pause, affected)
        else:
            await self._restart(affected)

    async def _restart_after(self, pause: float, members: list[_Child]) -> None:
        await trio.sleep(pause)
        if not self._closed:  # members stopped meanwhile are skipped by _restart
            await self._restart(members)

    async def _restart(self, members: list[_Child]) -> None:
        for member in members:  # one after another, in start order
            if self._children.get(member.spec.id) is not member or member.running:
                continue
            member.restarts += 1
            if self.on_restart is not None:
                self.on_restart(member.spec.id, isinstance(member.runner, Supervisor))
            member.done = trio.Event()
            assert self._nursery is not None
            await self._nursery.start(self._run_child, member, True)

    def _count_restart(self, child: _Child, error: BaseException | None) -> None:
        now = trio.current_time()
        while self._restart_times and self._restart_times[0] <= now - self.within:
            self._restart_times.popleft()
        self._restart_times.append(now)
        if len(self._restart_times) > self.max_restarts:
            raise SupervisorEscalation(
                f"supervisor {self.name!r}: more than {self.max_restarts} restarts within "
                f"{self.within}s (last: child {child.spec.id!r})"
            ) from error

    async def _run_child(
        self,
        child: _Child,
        restarting: bool = False,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        started = False

        def mark_started(value: None = None) -> None:
            nonlocal started
            started = True
            task_status.started()

        instance = child.spec.start()
        runner: ActorCell | Supervisor
        if isinstance(instance, Supervisor):
            runner = instance
            if runner.on_restart is None:
                runner.on_restart = self.on_restart
        else:
            runner = ActorCell(child.spec.id, instance, child.mailbox)
        child.runner = runner
        child.stopping = False
        child.killed = False
        child.running = True
        child.started_at = trio.current_time()
        error: BaseException | None = None
        with trio.CancelScope() as scope:
            child.scope = scope
            try:
                await runner.run(task_status=_Status(mark_started))
            except Exception as exc:
                if not started and not restarting:
                    raise
                error = exc
            finally:  # also when cancelled from outside: _stop() waits for this
                child.running = False
                child.done.set()
        if not started:
            task_status.started()  # a restart that failed to start: reported as its exit
        if scope.cancelled_caught and child.killed:
            error = ActorKilled(f"child {child.spec.id!r} was killed")
        if not child.stopping and not self._closed:
            self._events_send.send_nowait(("exit", child, runner, error))

    async def _stop(self, child: _Child) -> None:
        if not child.running or child.runner is None:
            return
        child.stopping = True
        child.runner.request_stop()
        with trio.move_on_after(child.spec.shutdown_timeout):
            await child.done.wait()
        if not child.done.is_set() and child.scope is not None:
            log.warning("%s: child %s ignored stop, cancelling", self.name, child.spec.id)
            child.scope.cancel()
            await child.done.wait()

    async def _stop_all(self) -> None:
        for child in reversed(list(self._children.values())):
            await self._stop(child)

    def _new_child(self, spec: ChildSpec) -> _Child:
        mailbox = Mailbox(spec.id, spec.mailbox_capacity)
        child = _Child(spec=spec, mailbox=mailbox, ref=ActorRef(spec.id, mailbox))
        self._children[spec.id] = child
        return child

    def _forget(self, child: _Child) -> None:
        if self._children.get(child.spec.id) is child:
            del self._children[child.spec.id]
        child.mailbox.close()


class _Status:
    """A task-status object that also tells the supervisor the child has started."""

    def __init__(self, on_started: Callable[[None], None]) -> None:
        self._on_started = on_started

    def started(self, value: None = None) -> None:
        self._on_started(value)
