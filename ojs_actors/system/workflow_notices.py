"""What the workflow actors are told: job notices, and the keeper's own messages.

Job changes reach the workflows as hints (:class:`JobChanged`), posted without waiting by
the QueueActors and the Scheduler after they stored the change. A crash of one of those
actors (or of the keeper) between storing a change and its notice reaching the workflow's
actor loses the notice; :class:`ReconcileAll`, posted on every such restart, makes each
running workflow actor catch up with the backend (:class:`Reconcile`) as it does when it
starts.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ..core import Job, State
from ..core.workflow import WORKFLOW_ID_FIELD


@dataclass(frozen=True, slots=True)
class JobChanged:
    """A job of the workflow ended, or left ``active`` without ending (retry, lease lost)."""

    workflow_id: str
    job: Job


@dataclass(frozen=True, slots=True)
class Wake:
    """Make sure the workflow's actor runs (it reconciles when it starts)."""

    workflow_id: str


@dataclass(frozen=True, slots=True)
class Retire:
    """The workflow is settled: stop its actor."""

    workflow_id: str


@dataclass(frozen=True, slots=True)
class CancelWorkflow:
    pass


@dataclass(frozen=True, slots=True)
class ReconcileAll:
    """Notices may have been lost: every running workflow actor catches up."""


@dataclass(frozen=True, slots=True)
class Reconcile:
    """Catch up with the backend: the jobs of released nodes may have ended unheard."""


Notice = JobChanged | Wake | Retire | ReconcileAll


def notices_for(changes: Iterable[tuple[State | None, Job]]) -> list[JobChanged]:
    """The stored job changes a workflow must hear of."""
    notices = []
    for before, job in changes:
        workflow_id = job.extra.get(WORKFLOW_ID_FIELD)
        if not isinstance(workflow_id, str):
            continue
        if job.state.terminal or (before is State.ACTIVE and job.state is not State.ACTIVE):
            notices.append(JobChanged(workflow_id, job))
    return notices
