"""The protocol every backend implements, by part.

:class:`Backend` is the union of small protocols, one per responsibility, each
stating its own guarantees: :class:`Lifecycle` (start, close, ping, reset),
:class:`JobStore` (records, compare-and-set), :class:`ReadyQueue` (claims),
:class:`Timers`, :class:`DeadLetter`, :class:`Snapshots` (versioned put-if) and
:class:`EventLog`; :class:`Capabilities` says what the backend supports.

The backend is the authority: several server processes may share one
(networked) backend, each running its own actors over it, so every method is
atomic on its own and safe against concurrent callers in other processes.
Actors keep caches, batch calls and keep timers; they never hold the truth.

Conventions every implementation follows:

* Operations take and return batches (``Sequence``) so an actor that drained
  many mailbox messages makes one call; each element is atomic on its own.
* Jobs change only by compare-and-set: :meth:`Backend.update_jobs` stores a
  job only if the stored version is the ``expected_version`` given with it.
* The backend derives its indexes (per-queue ready order, timers, dead
  letter) from each stored job's state; callers never maintain them.
* Ready order within a queue: higher ``priority`` first, then first made
  ``available`` first (an order the backend keeps, e.g. by a ``seq`` of its own).
* The caller's objects are never changed: a backend keeps its own copies.
* Timers: for every stored job version the backend can report when it next
  needs attention (``scheduled_at``, ``next_attempt_at``, the lease deadline,
  the execution timeout, ``expires_at``); :meth:`Backend.due_jobs` returns jobs
  whose current version has such a time ``<= now``.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from operator import attrgetter
from typing import Any, Literal, Protocol, TypeVar, runtime_checkable

from ..core import Duplicate, Job, OJSError, State, lifecycle, unique


@dataclass(frozen=True, slots=True)
class EventFilter:
    types: frozenset[str] = frozenset()
    queues: frozenset[str] = frozenset()
    job_types: frozenset[str] = frozenset()
    after: str | None = None
    limit: int = 100
    resume: bool = False
    """If ``after`` is no longer kept (retention), start at the oldest event kept
    instead of returning nothing: for a consumer that fell behind."""
    with_jobs: bool = False
    """Give each event of a job change the :class:`~ojs_actors.core.Job` that change
    stored, under the key ``"job"`` (an object, not JSON): for a relay whose sink
    publishes jobs as well as events (Kafka's queue topics). Outboxes that keep the
    record (those read through :func:`ojs_actors.backends.outbox.collect`) attach it."""


@dataclass(frozen=True, slots=True)
class RateLimit:
    """At most ``limit`` claims of a queue in any ``window_ms``, counted by the backend, so
    every process sharing it counts the same claims."""

    limit: int
    window_ms: int = 1000


@dataclass(frozen=True, slots=True)
class Deduplicated:
    """Insert result under ``on_conflict: ignore``: the job already there."""

    existing: Job


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a server over this backend can do; ``GET /ojs/manifest`` reports the
    manifest's flags (:meth:`manifest`). A backend declares only what it supports:
    every flag defaults to ``False``."""

    batch_enqueue: bool = False
    cron_jobs: bool = False
    dead_letter: bool = False
    delayed_jobs: bool = False
    job_ttl: bool = False
    priority_queues: bool = False
    rate_limiting: bool = False
    schema_validation: bool = False
    unique_jobs: bool = False
    workflows: bool = False
    pause_resume: bool = False
    events: bool = False
    exact_counts: bool = False
    """``count_jobs`` is exact at every moment (not an estimate); not a manifest flag."""
    extensions: frozenset[str] = frozenset()
    """The official OJS extensions a server over this backend implements, by name
    (``"admin-api"``: ``urn:ojs:ext:admin-api``); the manifest lists exactly these."""

    def manifest(self) -> dict[str, bool]:
        """The manifest's ``capabilities`` object."""
        flags = asdict(self)
        for backend_only in _NOT_IN_MANIFEST:
            del flags[backend_only]
        return flags

    def manifest_extensions(self) -> dict[str, list[dict[str, str]]]:
        """The manifest's ``extensions`` object (ojs-conformance §4.2.1)."""
        listed: dict[str, list[dict[str, str]]] = {
            "official": [
                {"name": name, "uri": f"urn:ojs:ext:{name}", "version": EXTENSION_VERSION}
                for name in sorted(self.extensions - EXPERIMENTAL_EXTENSIONS.keys())
            ]
        }
        experimental = sorted(self.extensions & EXPERIMENTAL_EXTENSIONS.keys())
        if experimental:
            listed["experimental"] = [
                {
                    "name": name,
                    "uri": f"urn:ojs:ext:experimental:{name}",
                    "version": EXPERIMENTAL_EXTENSIONS[name],
                }
                for name in experimental
            ]
        return listed


_NOT_IN_MANIFEST = ("exact_counts", "extensions")
EXTENSION_VERSION = "1.0.0"
EXPERIMENTAL_EXTENSIONS = {"job-versioning": "0.1.0"}
"""Extensions of the experimental tier, listed apart with their ``urn:ojs:ext:experimental:``
URI (ojs-conformance §4.2.1), by name with their document's version."""

EVERY_EXTENSION = frozenset(
    {
        "admin-api",
        "dead-letter",
        "observability",
        "webhooks",
        "progress",
        "durable-execution",
        "multi-tenancy",
        "encryption",
        "fair-scheduling",
        "schema-registry",
        "job-versioning",
        "backpressure",
        "rate-limiting",
        "graceful-shutdown",
    }
)
"""The extensions implemented above the backend protocol (through its parts), so every
backend that has the parts has them too. One line per extension."""

EVERY_CAPABILITY = Capabilities(
    batch_enqueue=True,
    cron_jobs=True,
    dead_letter=True,
    delayed_jobs=True,
    job_ttl=True,
    priority_queues=True,
    rate_limiting=True,
    unique_jobs=True,
    workflows=True,
    pause_resume=True,
    events=True,
    exact_counts=True,
    schema_validation=True,
    extensions=EVERY_EXTENSION,
)
"""What the memory, SQLite and Redis backends support."""


class Lifecycle(Protocol):
    """Opening and closing the store. Not a data part: every backend has one."""

    name: str
    capabilities: Capabilities
    needs_asyncio: bool
    """``True`` if it runs asyncio clients: :func:`~ojs_actors.backends.open_backend`
    then opens the shared asyncio bridge, which ``start()`` takes
    (:func:`~ojs_actors.backends.bridge.current_asyncio_bridge`)."""

    async def start(self) -> None:
        """Connect; raise :class:`~ojs_actors.core.BackendUnavailable` if impossible.
        Called by :func:`~ojs_actors.backends.open_backend`, which calls :meth:`close`
        (shielded from cancellation) when its block exits."""

    async def close(self) -> None: ...

    async def ping(self) -> float:
        """Round-trip latency in milliseconds; raises if the backend is unreachable."""

    async def reset(self) -> None:
        """Delete everything (the conformance runner's reset between tests)."""


class JobStore(Protocol):
    """Job records. Each call is one atomic step (all of a batch with ``atomic=True``);
    a job changes only by compare-and-set on its ``version``; results come in the order
    of the request. The store derives the other parts' indexes (ready order, timers,
    dead letter, counts) from each stored version, in the same atomic step."""

    async def insert_jobs(
        self, jobs: Sequence[Job], *, atomic: bool = False
    ) -> list[Job | Deduplicated | OJSError]:
        """Store new jobs, in order. Per job, the stored job, or:

        * :class:`~ojs_actors.core.Duplicate` if the id exists, or if the job's unique
          policy (``job.unique``, key ``job.unique_key``) finds a conflicting job and
          says ``reject`` (or ``replace`` while that job is active);
        * :class:`Deduplicated` holding the existing job, if the policy says ``ignore``;
        * with ``replace``/``replace_except_schedule`` the existing job is cancelled in
          the same atomic step and the new job stored.

        Conflicts are decided with :func:`ojs_actors.core.unique.is_conflict`, at the new
        job's ``created_at``. With ``atomic=True`` either every job is stored or none:
        if any would fail, nothing is written and the failures are returned (the
        others as their unsaved jobs). The caller's jobs are never changed."""

    async def get_jobs(self, job_ids: Sequence[str]) -> list[Job | None]: ...

    async def update_jobs(self, updates: Sequence[tuple[Job, int]]) -> list[bool]:
        """Compare-and-set: store each job if the stored version equals the paired
        expected version; ``False`` where it did not (changed meanwhile, or gone)."""

    async def count_jobs(self, queue: str) -> dict[State, int]:
        """Jobs of ``queue`` by state (exact if ``capabilities.exact_counts``)."""


class ReadyQueue(Protocol):
    """Claims in ready order: higher ``priority`` first, then first made available first.
    A claim is one atomic step per call, so across every process sharing the store
    each ready job is claimed once."""

    async def claim(
        self,
        queue: str,
        count: int,
        now: int,
        worker_id: str | None,
        visibility_ms: int | None,
        *,
        rate: RateLimit | None = None,
    ) -> tuple[list[Job], list[Job]]:
        """Atomically move up to ``count`` ready jobs of ``queue`` to ``active``, in ready
        order. Jobs found past ``expires_at`` are discarded instead, never delivered.
        With ``rate``, fewer if the queue's claims in the window ending at ``now`` (this
        call's included, through any process) would pass its limit. Returns
        ``(claimed, expired)``."""


class Timers(Protocol):
    """When stored job versions next need attention (:func:`timers_of`): a version's
    timers are dropped as soon as it is replaced, so a due job is always current."""

    async def due_jobs(self, now: int, limit: int) -> list[Job]:
        """Jobs whose current version has a timer due at or before ``now``, earliest first."""

    async def next_due_at(self) -> int | None:
        """The earliest pending timer, if any."""


class DeadLetter(Protocol):
    """Discarded jobs kept for inspection and retry, oldest first."""

    async def list_dead_letter(
        self, queue: str | None, limit: int, offset: int
    ) -> tuple[list[Job], int]:
        """A page of dead-lettered jobs (oldest first) and the total count."""

    async def delete_dead_letter(self, job_id: str) -> bool:
        """Remove a dead-lettered job for good; ``False`` if it is not in the dead letter queue."""


class Snapshots(Protocol):
    """Actors' persisted state by key (``queue:<name>`` also serves as the queue
    registry). Listing is by plain string prefix. Versioned reads and compare-and-set
    writes let actors in several processes share one key without overwriting each other."""

    async def load_snapshot(self, key: str) -> dict[str, Any] | None: ...

    async def save_snapshot(self, key: str, state: dict[str, Any]) -> None: ...

    async def list_snapshots(self, prefix: str) -> dict[str, dict[str, Any]]: ...

    async def load_snapshot_versioned(self, key: str) -> tuple[dict[str, Any], int] | None:
        """The snapshot and its version, ``None`` if there is none. Every save of the key,
        conditional or not, gives it a new (greater) version; a deleted key starts over."""

    async def save_snapshot_if(
        self,
        key: str,
        state: dict[str, Any],
        expected_version: int | None,
        *,
        events: Sequence[dict[str, Any]] = (),
    ) -> int | None:
        """Compare-and-set: store ``state`` only if the stored version is
        ``expected_version`` (``None``: only if the key does not exist). Returns the
        new version, or ``None`` (nothing written) when the stored version differs.
        ``events`` (whole envelopes, e.g. cron's) go into the event outbox in the same
        atomic step, only if the save lands."""

    async def delete_snapshot(self, key: str) -> bool:
        """Forget a snapshot (an unregistered cron entry, a finished workflow)."""


class EventLog(Protocol):
    """The event outbox, read. Writes happen inside the other parts' atomic steps: every
    stored job version appends ``(state before, job)`` (:mod:`ojs_actors.backends.outbox`),
    and :meth:`Snapshots.save_snapshot_if` appends the events it is given. Entries
    are kept in write order, the newest ``event_retention`` of them."""

    async def read_events(self, query: EventFilter) -> list[dict[str, Any]]:
        """Events in outbox order after the event ``query.after`` (from the oldest kept if
        ``None``), filtered, at most ``query.limit``; rendered by
        :func:`ojs_actors.backends.outbox.collect`, so the same change always gives the
        same events with the same ids."""


@runtime_checkable
class ReadyNotices(Protocol):
    """Optional part: news of jobs becoming available, from every process sharing the
    store, so fetches waiting in this process look at once rather than at their next poll
    (``Settings.poll_interval``). A backend has it if it implements this method."""

    async def watch_ready(self, notify: Callable[[str], None]) -> None:
        """Call ``notify(queue)`` whenever jobs of ``queue`` become available, through any
        process, until cancelled; raise :class:`~ojs_actors.core.BackendUnavailable` if the
        store goes away (call again later). Notices are hints, not records: one missed
        across a reconnect is made up for by the waiters' polling."""


@runtime_checkable
class EventSink(Protocol):
    """Optional part: where the outbox's events are relayed to (NATS subjects, a Kafka
    topic). A backend has it if it implements this method and names its relay; the
    :class:`~ojs_actors.system.event_relay.EventRelay` of one process of those sharing
    the store (a lease) then reads the outbox through the durable cursor ``relay_name``
    and hands every event over, at least once, in outbox order. Downstream de-duplicates
    by event id (stable: :mod:`ojs_actors.core.events`).

    A sink that also publishes the jobs themselves sets ``wants_jobs = True`` (an
    optional attribute): its events of job changes then come with the job stored
    (``EventFilter.with_jobs``). A sink whose publishing costs mostly per call, not per
    event, sets ``relay_batch`` (an optional attribute, an ``int``) to the events it
    takes per call: the relay then reads and hands over that many at once instead of
    :data:`~ojs_actors.system.event_relay.RELAY_BATCH` (500); a failed call publishes
    them all again."""

    relay_name: str
    """Names the relay's durable cursor and its lease, e.g. ``"nats-events"``."""

    async def publish_events(self, events: Sequence[dict[str, Any]]) -> None:
        """Publish these events, in order, before returning; raise
        :class:`~ojs_actors.core.BackendUnavailable` (or the sink's own error) if not all
        were taken. Called again with the same events after a failure or a crash (at
        least once)."""


@runtime_checkable
class OutboxBacklog(Protocol):
    """Optional part of an :class:`EventSink` backend whose sink can be away for long
    (Kafka): the outbox keeps every event not yet relayed, and new work is refused
    (:class:`~ojs_actors.core.OutboxFull`, HTTP 503) while ``outbox_backlog()`` is at
    ``outbox_limit`` or above, so the backlog stays bounded and nothing is lost."""

    outbox_limit: int
    """Outbox entries waiting for the sink at which new work is refused."""

    async def outbox_backlog(self) -> int:
        """Outbox entries not yet handed to the sink (written by any process)."""


@runtime_checkable
class InsertAndClaim(Protocol):
    """Optional part: store jobs and claim from a queue in one round trip, for a worker
    already waiting on the queue (each step atomic on its own, not the two together).
    Without it, the caller inserts, then claims."""

    async def insert_and_claim(
        self,
        jobs: Sequence[Job],
        queue: str,
        count: int,
        now: int,
        worker_id: str | None,
        visibility_ms: int | None,
        *,
        rate: RateLimit | None = None,
    ) -> tuple[list[Job | Deduplicated | OJSError], list[Job], list[Job]]:
        """``insert_jobs(jobs)``'s results, then ``claim(...)``'s claimed and expired."""


@runtime_checkable
class UpdateAndClaim(Protocol):
    """Optional part: store job changes by compare-and-set and claim from a queue in one
    round trip, for a worker group settling one batch and fetching the next (each step
    atomic on its own, not the two together; the claim comes second, so it sees the
    changes stored). Without it, the caller updates, then claims."""

    async def update_and_claim(
        self,
        updates: Sequence[tuple[Job, int]],
        queue: str,
        count: int,
        now: int,
        worker_id: str | None,
        visibility_ms: int | None,
        *,
        rate: RateLimit | None = None,
    ) -> tuple[list[bool], list[Job], list[Job]]:
        """``update_jobs(updates)``'s results, then ``claim(...)``'s claimed and expired."""


JobSort = Literal["created_at", "scheduled_at", "priority"]
JOB_SORTS: tuple[JobSort, ...] = ("created_at", "scheduled_at", "priority")
SortKey = tuple[int, int, str]
_T = TypeVar("_T")


def type_matches(pattern: str, job_type: str) -> bool:
    """A job type filter: exact, or a prefix when it ends in ``*`` (``email.*``)."""
    if pattern.endswith("*"):
        return job_type.startswith(pattern[:-1])
    return job_type == pattern


@dataclass(frozen=True, slots=True)
class JobQuery:
    """One page of a job listing (:class:`JobListing`; ojs-admin-api §7.1).

    Order: by ``sort``, then ``created_at``, then id, all ascending or all descending
    (``descending``), so the order is total and pages never overlap. A job without
    ``scheduled_at`` sorts as the smallest one (first ascending, last descending: SQL's
    order of ``NULL``)."""

    queue: str | None = None
    queues: frozenset[str] | None = None
    """Any of these queues (a tenant's, ojs-multi-tenancy §10.3), with ``queue`` if given."""
    state: State | None = None
    type: str | None = None
    """An exact job type, or a prefix ending in ``*`` (:func:`type_matches`)."""
    since: int | None = None
    """Created at or after (epoch ms)."""
    until: int | None = None
    """Created before (epoch ms)."""
    sort: JobSort = "created_at"
    descending: bool = True
    offset: int = 0
    limit: int = 20

    @property
    def filtered(self) -> bool:
        """Whether it takes fewer than every job."""
        return not (
            self.queue is None
            and self.queues is None
            and self.state is None
            and self.type is None
            and self.since is None
            and self.until is None
        )

    def matches(self, job: Job) -> bool:
        return self.matches_fields(job.queue, job.state.value, job.type, job.created_at)

    def matches_fields(self, queue: str, state: str, job_type: str, created_at: int) -> bool:
        """:meth:`matches` on the fields it reads (for a backend that reads them without
        building the job)."""
        if self.queue is not None and queue != self.queue:
            return False
        if self.queues is not None and queue not in self.queues:
            return False
        if self.state is not None and state != self.state.value:
            return False
        if self.type is not None and not type_matches(self.type, job_type):
            return False
        return self.created_within(created_at)

    def created_within(self, created_at: int) -> bool:
        """Whether ``created_at`` is within ``since`` (inclusive) and ``until`` (exclusive)."""
        if self.since is not None and created_at < self.since:
            return False
        return self.until is None or created_at < self.until

    def sort_key(self) -> Callable[[Job], SortKey]:
        """The ascending sort key of a job (a C-level getter where the sort allows)."""
        if self.sort == "scheduled_at":
            return lambda job: self.key_of(job.id, job.created_at, job.scheduled_at, 0)
        getter: Callable[[Job], SortKey] = attrgetter(self.sort, "created_at", "id")
        return getter

    def key_of(
        self, job_id: str, created_at: int, scheduled_at: int | None, priority: int
    ) -> SortKey:
        """The ascending sort key of a job with these fields."""
        if self.sort == "created_at":
            first = created_at
        elif self.sort == "scheduled_at":
            first = -1 if scheduled_at is None else scheduled_at
        else:
            first = priority
        return (first, created_at, job_id)

    def page(self, items: Iterable[_T], key: Callable[[_T], SortKey]) -> list[_T]:
        """The page of ``items`` (those the query takes) in its order, by their ``key``
        (:meth:`sort_key`, or :meth:`key_of` of their fields), for a backend that sorts in
        Python: O(n log(offset + limit))."""
        pick = heapq.nlargest if self.descending else heapq.nsmallest
        return pick(self.offset + self.limit, items, key=key)[self.offset :]


@runtime_checkable
class JobListing(Protocol):
    """Optional part: every job (not only the ready or dead-lettered ones), filtered, sorted
    and paged, for ``GET /ojs/v1/admin/jobs``. A read for operators, not a snapshot: a job
    changing meanwhile may be seen in its old or its new place. Without it, the listing
    answers ``unsupported``."""

    async def list_jobs(self, query: JobQuery) -> tuple[list[Job], int]:
        """The page of jobs ``query`` takes, in its order, and how many it takes in all."""


@runtime_checkable
class JobDeletion(Protocol):
    """Optional part: finished jobs deleted for good (a queue purge, ojs-admin-api §6.5), by
    compare-and-set like every change, with every index entry of theirs. Without it, a
    purge answers ``unsupported``."""

    async def delete_jobs(self, jobs: Sequence[tuple[str, int]]) -> list[bool]:
        """Delete each job ``(id, version)`` whose stored version is that one and whose
        state is terminal; ``False`` where not (changed meanwhile, gone, not finished)."""


@runtime_checkable
class Backend(Lifecycle, JobStore, ReadyQueue, Timers, DeadLetter, Snapshots, EventLog, Protocol):
    """A whole backend: its lifecycle and every data part. Code that needs only some parts
    types its dependency as those parts (e.g. ``Snapshots``), so a part can later come
    from another store than the rest."""


def timers_of(job: Job) -> list[int]:
    """When the given job version next needs the scheduler's attention."""
    due: list[int] = []
    state = job.state
    if state is State.SCHEDULED and job.scheduled_at is not None:
        due.append(job.scheduled_at)
    elif state is State.RETRYABLE and job.next_attempt_at is not None:
        due.append(job.next_attempt_at)
    elif state is State.ACTIVE:
        if job.lease_expires_at is not None:
            due.append(job.lease_expires_at)
        if job.timeout_at is not None:
            due.append(job.timeout_at)
    if job.expires_at is not None and state in (
        State.SCHEDULED,
        State.RETRYABLE,
        State.AVAILABLE,
        State.PENDING,
    ):
        due.append(job.expires_at)
    return due


# -- insert planning, shared by every backend that runs Python inside its transaction ----


def conflicting_holder(job: Job, holder: Job | None) -> Job | None:
    """``holder`` (the job owning ``job``'s unique key) if it blocks ``job`` under ``job``'s policy."""
    policy = unique.policy_of(job)
    if policy is None or holder is None:
        return None
    if not unique.is_conflict(policy, holder.state, holder.created_at, job.created_at):
        return None
    return holder


def duplicate_id(job: Job) -> Duplicate:
    return Duplicate(f"A job with id {job.id} already exists.", details={"job_id": job.id})


def plan_insert(
    job: Job,
    job_exists: Callable[[str], bool],
    key_holder: Callable[[str], Job | None],
) -> Job | Deduplicated | OJSError:
    """What inserting ``job`` would do, without writing anything.

    ``job_exists(id)`` and ``key_holder(unique_key)`` read the backend's current
    state. A job to store comes back as itself, or as a copy moved to its holder's
    ``scheduled_at`` (``replace_except_schedule``): store the job returned, never
    ``job``, which is left as it was.
    """
    if job_exists(job.id):
        return duplicate_id(job)
    if job.unique_key is None:  # only the id can conflict
        return job
    return _unique_decision(job, key_holder(job.unique_key))


def update_rounds(updates: Sequence[tuple[Job, int]]) -> Iterator[list[int]]:
    """The indexes of ``updates`` in rounds, in order, each job at most once a round: an
    ``update_jobs`` that names a job twice applies the second compare-and-set after the
    first, so it sees that one's version."""
    pending = list(range(len(updates)))
    while pending:
        this_round: list[int] = []
        later: list[int] = []
        seen: set[str] = set()
        for index in pending:
            job_id = updates[index][0].id
            (later if job_id in seen else this_round).append(index)
            seen.add(job_id)
        yield this_round
        pending = later


def plan_inserts(
    jobs: Sequence[Job],
    job_exists: Callable[[str], bool],
    key_holder: Callable[[str], Job | None],
) -> list[Job | Deduplicated | OJSError]:
    """:func:`plan_insert` for each job in order, as if the earlier ones were stored:
    ids and unique keys taken earlier in the same batch count too."""
    seen: set[str] = set()
    batch_keys: dict[str, Job] = {}
    planned: list[Job | Deduplicated | OJSError] = []
    for job in jobs:
        if job.id in seen or job_exists(job.id):
            planned.append(duplicate_id(job))
            continue
        seen.add(job.id)
        key = job.unique_key
        if key is None:
            planned.append(job)
            continue
        held = batch_keys.get(key) or key_holder(key)
        batch_keys[key] = job
        planned.append(_unique_decision(job, held))
    return planned


def _unique_decision(job: Job, held: Job | None) -> Job | Deduplicated | OJSError:
    """What ``job``'s unique policy makes of ``held``, the job holding its key now."""
    holder = conflicting_holder(job, held)
    if holder is None:
        return job
    policy = unique.policy_of(job)
    assert policy is not None
    if policy.on_conflict is unique.OnConflict.IGNORE:
        return Deduplicated(holder)
    if policy.on_conflict is unique.OnConflict.REJECT or holder.state is State.ACTIVE:
        return unique.conflict_error(holder, job)
    if (
        policy.on_conflict is unique.OnConflict.REPLACE_EXCEPT_SCHEDULE
        and holder.state is State.SCHEDULED
    ):
        moved = job.evolve()
        moved.scheduled_at = holder.scheduled_at
        moved.state, moved.enqueued_at = State.SCHEDULED, None
        return moved
    return job


def replaced_by(job: Job, holder: Job | None) -> Job | None:
    """The cancelled version of the holder ``job`` replaces, if there is one to cancel.
    A holder already terminal (its policy may count terminal states) just loses the key."""
    victim = conflicting_holder(job, holder)
    if victim is None or victim.state.terminal:
        return None
    return lifecycle.cancel(victim, job.created_at)
