"""The messages a QueueActor answers (see :mod:`.queue_actor`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import trio

from ..backends import Deduplicated
from ..core import Job, OJSError
from ..core.version_routes import VersionRoutes
from .backpressure import Bound
from .transitions import Transition


@dataclass(slots=True)
class Enqueue:
    """Store new jobs of this queue, each on its own."""

    jobs: Sequence[Job]


@dataclass(slots=True)
class Hold:
    """Park this queue's actor while another queue's actor stores a batch that holds jobs
    of this queue too (see :class:`EnqueueBatch`).

    The actor sets ``parked`` and handles nothing else until ``released``. Then, given
    ``results`` (the backend's answers for this queue's jobs; left ``None`` if the batch
    was not stored), it applies this queue's policies to the jobs stored, before any
    claim can reach them."""

    parked: trio.Event = field(default_factory=trio.Event)
    released: trio.Event = field(default_factory=trio.Event)
    results: list[Job | Deduplicated | OJSError] | None = None
    jobs: Sequence[Job] = ()
    """This queue's jobs in the batch: the actor refuses to park (``QueueFull``) if they
    would pass its bound."""


@dataclass(slots=True)
class EnqueueBatch:
    """Store ``jobs`` atomically (all or none) in one backend call. Those of other queues
    are handed to the :class:`Hold` of their queue in ``holds``, whose actor is parked
    meanwhile; every hold is released whatever happens.

    Until the actor has ``taken`` it, the sender may withdraw it (and release the holds
    itself): a ``withdrawn`` batch is not stored."""

    jobs: Sequence[Job]
    holds: Mapping[str, Hold]
    taken: bool = False
    withdrawn: bool = False


@dataclass(slots=True)
class Claim:
    count: int
    worker_id: str | None
    visibility_ms: int | None
    routes: VersionRoutes | None = None
    """The worker's version declarations (ojs-job-versioning §8): jobs it may not take
    are handed back at once, as jobs refused by their rate-limit keys are."""
    handed_back: set[str] = field(default_factory=set)
    """Filled by the actor: the jobs this claim took and handed back as outside
    ``routes`` (the claimer then waits for its next poll, not for the wake-up their
    return to the queue may send)."""

    def admission(self) -> Callable[[Job], bool] | None:
        """Whether the claiming worker may take a job (``routes``), noting in
        :attr:`handed_back` those it may not; ``None``: it may take any."""
        routes = self.routes
        if routes is None:
            return None

        def accepts(job: Job) -> bool:
            if routes.accepts(job):
                return True
            self.handed_back.add(job.id)
            return False

        return accepts


@dataclass(slots=True)
class Apply:
    """Apply pure lifecycle transitions to jobs of this queue, each on its own; answered
    with one ``Job`` (stored) or ``OJSError`` per item, in order."""

    items: Sequence[tuple[str, Transition]]


@dataclass(slots=True)
class SetPaused:
    paused: bool


@dataclass(slots=True)
class SetBound:
    """Set the queue's depth bound (ojs-backpressure §6.2); ``None``: unbounded."""

    bound: Bound | None


@dataclass(slots=True)
class Describe:
    pass


__all__ = [
    "Apply", "Claim", "Describe", "Enqueue", "EnqueueBatch", "Hold", "SetBound", "SetPaused",
]  # fmt: skip
