"""The actor runtime: mailbox depths and running actors, read from the supervision tree at
scrape time, and restarts, counted as the supervisors restart children.

Labels: ``kind`` (``queue``, ``cron``, ``workflow``, ``supervisor``, or the id of a
singleton: ``scheduler``, ``keeper``, ``ready-watcher``, ``event-relay``) and ``name``
(the queue's or cron entry's name, the singleton's or supervisor's id). Workflow actors
come and go with their workflows, so they are aggregated under ``name="*"``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator

from prometheus_client.core import Metric

from ...actors import Supervisor
from .families import gauge
from .instruments import Instruments

AGGREGATED_KINDS = frozenset({"workflow"})
"""Kinds whose actors are per job-ish: one series for them all."""


def actor_labels(child_id: str, supervisor: bool) -> tuple[str, str]:
    """``(kind, name)`` of a supervised child."""
    if supervisor:
        return "supervisor", child_id
    kind, colon, name = child_id.partition(":")
    if not colon:
        return child_id, child_id
    return kind, "*" if kind in AGGREGATED_KINDS else name


class ActorRestarts:
    def __init__(self, instruments: Instruments) -> None:
        self._restarts = instruments.counter(
            "ojs_actor_restarts",
            "Restarts of supervised actors and supervisors by their supervisor.",
            ["kind", "name"],
        )

    def record(self, child_id: str, supervisor: bool) -> None:
        """A supervisor's restart hook (:attr:`~ojs_actors.actors.Supervisor.on_restart`)."""
        self._restarts.child(*actor_labels(child_id, supervisor)).inc()


def actor_families(root: Supervisor | None) -> Iterator[Metric]:
    if root is None:
        return
    depths: dict[tuple[str, str], int] = defaultdict(int)
    running: dict[str, int] = defaultdict(int)
    for supervisor, child_id, alive in _actors(root):
        kind, name = actor_labels(child_id, False)
        depths[kind, name] += supervisor.ref(child_id).queued
        running[kind] += alive
    yield gauge(
        "ojs_actor_mailbox_depth",
        "Messages waiting in actors' mailboxes (workflow actors summed).",
        ["kind", "name"],
        (([kind, name], depth) for (kind, name), depth in sorted(depths.items())),
    )
    yield gauge(
        "ojs_actors_running",
        "Actors running, by kind.",
        ["kind"],
        (([kind], count) for kind, count in sorted(running.items())),
    )


def _actors(supervisor: Supervisor) -> Iterator[tuple[Supervisor, str, bool]]:
    """Every actor under ``supervisor``, ``(its supervisor, its id, running)``: one
    between a crash and its restart still has a mailbox, and messages in it."""
    for child_id, alive, _ in supervisor.which_children():
        instance = supervisor.child(child_id)
        if isinstance(instance, Supervisor):
            if alive:
                yield from _actors(instance)
        elif instance is not None:
            yield supervisor, child_id, alive


__all__ = ["AGGREGATED_KINDS", "ActorRestarts", "actor_families", "actor_labels"]
