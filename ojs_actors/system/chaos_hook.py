"""A fault-injection hook for chaos runs (``python -m chaos``): kill one actor on demand.

``ojs-actors serve`` started with ``OJS_CHAOS_ACTOR_KILLS=1`` kills one running actor each
time it receives ``SIGUSR1``: a supervisor kind (queues, crons or workflows) with actors
running is picked at random, then one of its running actors, which its supervisor then
kills as OTP's ``exit(Pid, kill)`` does (:meth:`~ojs_actors.actors.Supervisor.kill_child`): cancelled
wherever it is awaiting, its in-flight asks failed, restarted by its supervisor's policy.
Each kill is logged (``chaos hook: killed actor <id>``), which is how the harness counts
them (signals that arrive together are delivered once). Without the variable the hook is
never installed.
"""

from __future__ import annotations

import logging
import os
import random
import signal

import trio

from ..actors import Supervisor
from .system import System

ENV = "OJS_CHAOS_ACTOR_KILLS"
KILL_SIGNAL = signal.SIGUSR1
log = logging.getLogger("ojs_actors.chaos")


def enabled() -> bool:
    return os.environ.get(ENV) == "1"


def kill_one_actor(system: System, rng: random.Random) -> str | None:
    """Kill one running actor of a randomly picked kind (of those with one running); its
    id, or ``None`` if no actor runs."""
    supervisors: list[Supervisor] = [system.queues, system.crons, system.workflows]
    running = [
        (supervisor, ids)
        for supervisor in supervisors
        if (ids := [child_id for child_id, alive, _ in supervisor.which_children() if alive])
    ]
    if not running:
        return None
    supervisor, ids = rng.choice(running)
    child_id = rng.choice(ids)
    supervisor.kill_child(child_id)
    return child_id


async def kill_on_signal(
    system: System, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    """Until cancelled: one kill per ``SIGUSR1`` received."""
    rng = random.Random()
    with trio.open_signal_receiver(KILL_SIGNAL) as signals:
        task_status.started()
        async for _ in signals:
            killed = kill_one_actor(system, rng)
            if killed is not None:
                log.warning("chaos hook: killed actor %s", killed)
