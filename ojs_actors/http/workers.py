"""``ojs-actors serve --workers N``: one port served by N server processes.

The parent binds the listening socket once and starts N children, each a whole
``ojs-actors serve`` (its own actor system over the shared backend) serving that socket,
inherited by file descriptor (``--listen-fd``). The kernel hands each new connection to
whichever child accepts it first, so an idle child takes the next connection and a
child that dies loses only the connections it had accepted: the ones still queued on
the socket are served by the others, and a restarted child serves the same socket.

The parent only supervises:

* a child that exits while the parent is not stopping is started again, at most
  ``max_restarts`` times in ``restart_window`` seconds (all children together); one
  more exit, and the parent stops every child and fails. A child that exits with
  code 2 refused its configuration: the parent stops every child at once and exits 2.
* SIGTERM or SIGINT to the parent stops the children: SIGTERM to each (each shuts
  down as a single server does), up to ``stop_timeout`` seconds for all of them, then
  SIGKILL to any left; the parent then exits 0.
* Each child also holds the read end of a pipe whose only write end is the parent's
  (``--parent-fd``): if the parent dies without stopping them (SIGKILL), every child
  reads end-of-file and shuts down, so no child is left serving on its own.

Children run in process groups of their own, so a Ctrl-C in a terminal reaches only
the parent, which stops them in order. POSIX only (file descriptor inheritance).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
from collections import deque
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass

import trio

log = logging.getLogger("ojs_actors.workers")

MAX_RESTARTS = 5
RESTART_WINDOW = 30.0
STOP_TIMEOUT = 15.0
"""Seconds the children get to stop after SIGTERM unless told (``ojs-actors serve`` gives
their ``--shutdown-timeout`` plus :data:`STOP_MARGIN`)."""
STOP_MARGIN = 10.0
"""Seconds a child gets to stop its actors and close its backend after its HTTP grace
period (``--shutdown-timeout``): ``serve --workers N`` waits that much longer."""
REFUSED = 2
"""The exit code of a refused configuration (as ``ojs-actors serve`` uses it)."""


@dataclass(frozen=True, slots=True)
class WorkerPlan:
    """What the parent runs: ``workers`` children of ``arguments`` on ``host:port``."""

    arguments: Sequence[str]
    """The parent's ``ojs-actors`` arguments (``serve ...``); each child gets them with
    ``--workers 1 --listen-fd F --parent-fd P`` after them (the last occurrence wins)."""
    workers: int
    host: str
    port: int
    max_restarts: int = MAX_RESTARTS
    restart_window: float = RESTART_WINDOW
    stop_timeout: float = STOP_TIMEOUT


class WorkersFailed(RuntimeError):
    """The children could not be kept running; ``code`` is the parent's exit code."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def listen_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (bound as Hypercorn binds ``host:port``),
    inheritable by the children."""
    host = host.replace("[", "").replace("]", "")
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((host, port))
        sock.listen(1024)
    except BaseException:
        sock.close()
        raise
    return sock


def child_command(arguments: Sequence[str], listen_fd: int, parent_fd: int) -> list[str]:
    """``python -m ojs_actors <arguments> --workers 1 --listen-fd F --parent-fd P``."""
    return [sys.executable, "-m", "ojs_actors", *arguments, "--workers", "1",
            "--listen-fd", str(listen_fd), "--parent-fd", str(parent_fd)]  # fmt: skip


async def wait_for_parent_exit(fd: int) -> None:
    """Return once every write end of the pipe ``fd`` reads from is closed: the parent,
    which alone holds it, has exited (or was killed)."""
    while True:
        await trio.lowlevel.wait_readable(fd)
        if not os.read(fd, 512):
            return


def describe_exit(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"was killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"was killed by signal {-returncode}"
    return f"exited with code {returncode}"


def run_workers(plan: WorkerPlan) -> int:
    """Serve with ``plan.workers`` children until SIGTERM/SIGINT (exit code 0), or until
    they cannot be kept running (a message on stderr, a non-zero exit code)."""
    try:
        trio.run(_supervise, plan)
    except WorkersFailed as failure:
        print(f"ojs-actors: {failure}", file=sys.stderr)
        return failure.code
    return 0


async def _supervise(plan: WorkerPlan) -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals, ExitStack() as fds:
        try:
            sock = fds.enter_context(listen_socket(plan.host, plan.port))
        except OSError as error:
            raise WorkersFailed(f"cannot listen on {plan.host}:{plan.port}: {error}") from error
        read_end, write_end = os.pipe()  # not inheritable: children get read_end (pass_fds)
        fds.callback(os.close, read_end)
        fds.callback(os.close, write_end)  # closed first: a child left running sees EOF
        supervisor = _Supervisor(plan, sock.fileno(), read_end)
        host, port = sock.getsockname()[:2]
        log.info(
            "serving http://%s:%d with %d worker processes (parent pid %d)",
            f"[{host}]" if sock.family == socket.AF_INET6 else host,
            port,
            plan.workers,
            os.getpid(),
        )
        async with trio.open_nursery() as nursery:
            for slot in range(plan.workers):
                nursery.start_soon(supervisor.keep_running, slot)
            nursery.start_soon(supervisor.kill_stragglers)

            async def stop_on_signal() -> None:
                async for signum in signals:
                    name = signal.Signals(signum).name
                    if supervisor.stopping:
                        log.warning("received %s again, killing the worker processes", name)
                        supervisor.kill()
                    else:
                        log.info("received %s, stopping the worker processes", name)
                        supervisor.stop()

            nursery.start_soon(stop_on_signal)
            await supervisor.stopped.wait()
            nursery.cancel_scope.cancel()  # the signal and straggler tasks are left
    if supervisor.failure is not None:
        raise supervisor.failure
    log.info("all worker processes stopped")


class _Supervisor:
    """The children, one per slot: started, restarted, stopped."""

    def __init__(self, plan: WorkerPlan, listen_fd: int, parent_fd: int) -> None:
        self.plan = plan
        self.command = child_command(plan.arguments, listen_fd, parent_fd)
        self.pass_fds = (listen_fd, parent_fd)
        self.processes: dict[int, trio.Process] = {}
        self.restarts: deque[float] = deque()
        """When each restart within the last ``restart_window`` happened."""
        self.failure: WorkersFailed | None = None
        self.stop_requested = trio.Event()
        self.slots_left = plan.workers
        self.stopped = trio.Event()
        """Set once every slot has ended, its last child reaped."""

    @property
    def stopping(self) -> bool:
        return self.stop_requested.is_set()

    def stop(self, failure: WorkersFailed | None = None) -> None:
        """Stop every child: SIGTERM now (SIGKILL to those left after ``stop_timeout``)."""
        if self.stopping:
            return
        self.failure = failure
        self.stop_requested.set()
        for process in self.processes.values():
            _signal(process, signal.SIGTERM)

    def kill(self) -> None:
        for process in self.processes.values():
            _signal(process, signal.SIGKILL)

    async def kill_stragglers(self) -> None:
        """Once stopping: SIGKILL the children still running after ``stop_timeout``."""
        await self.stop_requested.wait()
        with trio.move_on_after(self.plan.stop_timeout):
            await self.stopped.wait()
            return
        for process in self.processes.values():
            log.warning("worker pid %d did not stop in time: SIGKILL", process.pid)
        self.kill()

    async def keep_running(self, slot: int) -> None:
        try:
            while not self.stopping:
                process = await trio.lowlevel.open_process(
                    self.command, pass_fds=self.pass_fds, process_group=0
                )
                self.processes[slot] = process
                log.info("worker %d started (pid %d)", slot, process.pid)
                if self.stopping:  # stop() ran while this one was starting
                    _signal(process, signal.SIGTERM)
                try:
                    await process.wait()
                finally:
                    if process.returncode is None:  # cancelled: never leave it running
                        with trio.CancelScope(shield=True):
                            await _terminate(process, self.plan.stop_timeout)
                    del self.processes[slot]
                if not self.stopping:
                    self._restart_or_fail(slot, process)
        finally:
            self.slots_left -= 1
            if self.slots_left == 0:
                self.stopped.set()

    def _restart_or_fail(self, slot: int, process: trio.Process) -> None:
        assert process.returncode is not None
        how = describe_exit(process.returncode)
        if process.returncode == REFUSED:
            self.stop(
                WorkersFailed(
                    f"worker {slot} (pid {process.pid}) {how}: it refused its configuration "
                    "(see its message above); stopped all worker processes",
                    REFUSED,
                )
            )
            return
        now = trio.current_time()
        window = self.plan.restart_window
        while self.restarts and self.restarts[0] <= now - window:
            self.restarts.popleft()
        if len(self.restarts) >= self.plan.max_restarts:
            self.stop(
                WorkersFailed(
                    f"worker {slot} (pid {process.pid}) {how}, after {len(self.restarts)} "
                    f"restarts in the last {window:g} s (at most {self.plan.max_restarts}): "
                    "giving up; stopped all worker processes"
                )
            )
            return
        self.restarts.append(now)
        log.warning(
            "worker %d (pid %d) %s; restarting it (restart %d of at most %d in %g s)",
            slot, process.pid, how, len(self.restarts), self.plan.max_restarts, window,
        )  # fmt: skip


async def _terminate(process: trio.Process, grace: float) -> None:
    _signal(process, signal.SIGTERM)
    with trio.move_on_after(grace):
        await process.wait()
        return
    _signal(process, signal.SIGKILL)
    await process.wait()


def _signal(process: trio.Process, signum: signal.Signals) -> None:
    if process.returncode is None:
        try:
            process.send_signal(signum)
        except ProcessLookupError:  # exited, not reaped yet
            pass
