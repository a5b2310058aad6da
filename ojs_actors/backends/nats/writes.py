"""Job records and the atomic batches that write them. Pure: no I/O.

:class:`Batch` collects what one atomic write stores: for each job version its record
(guarded by a compare-and-set on the subject's last sequence), its ready, timer and
dead-letter entries, its outbox entry, and the count deltas of the whole batch (one
message per queue). The layout is in :mod:`.layout`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ...core import Job, State
from ...core.events import change_key, job_events
from ..base import timers_of
from ..codec import dumps, dumps_record
from .jetstream import Message, PubAck
from .layout import Subjects, events_body, ready_body, timer_body

EXPECT = "Nats-Expected-Last-Subject-Sequence"
ROLLUP = {"Nats-Rollup": "sub"}


def encode_job(job: Job) -> bytes:
    record = job.to_record()
    record.pop("seq", None)
    return dumps_record(record).encode()


@dataclass(frozen=True, slots=True)
class Stored:
    """A job as stored and its record's stream sequence (the compare-and-set revision)."""

    job: Job
    seq: int


@dataclass(frozen=True, slots=True)
class Before:
    """What writing over a stored job version needs to know of it."""

    version: int
    seq: int
    queue: str
    state: State
    dead: bool

    @classmethod
    def of(cls, job: Job, seq: int) -> Before:
        return cls(job.version, seq, job.queue, job.state, is_dead(job))


def guarded(expected_seq: int) -> dict[str, str]:
    """Headers of a rolled-up message stored only if its subject's last sequence is
    ``expected_seq`` (0: only if the subject holds nothing)."""
    return {EXPECT: str(expected_seq), **ROLLUP}


def is_dead(job: Job | None) -> bool:
    return job is not None and job.state is State.DISCARDED and job.dead_letter


@dataclass
class Batch:
    """The messages of one atomic write."""

    subjects: Subjects
    messages: list[Message] = field(default_factory=list)
    jobs: list[tuple[Job, int]] = field(default_factory=list)
    """Each job version written and the index of its record among the messages."""
    woken: set[str] = field(default_factory=set)
    """Queues that got available jobs."""
    counts: dict[str, dict[str, int]] = field(default_factory=dict)

    def put_job(self, job: Job, before: Before | None, expected_seq: int | None = None) -> None:
        """Write ``job`` over the stored version ``before`` (``None``: a new job, stored
        only if its subject holds nothing, or nothing after ``expected_seq``)."""
        if expected_seq is None:
            expected_seq = before.seq if before is not None else 0
        subjects, add = self.subjects, self.messages.append
        record = encode_job(job)
        self.jobs.append((job, len(self.messages)))
        add((subjects.job(job.id), record, guarded(expected_seq)))
        if job.state is State.AVAILABLE:
            add((subjects.ready(job.queue, job.priority), ready_body(job), {}))
            self.woken.add(job.queue)
        due = timers_of(job)
        if due:
            first = min(due)
            add((subjects.timer(first), timer_body(job, first), {}))
        if is_dead(job):
            add((subjects.dead(job.queue, job.id), str(job.version).encode(), ROLLUP))
        elif before is not None and before.dead:
            add((subjects.dead(before.queue, job.id), b"", ROLLUP))
        if before is not None:
            self._count(before.queue, before.state, -1)
        self._count(job.queue, job.state, 1)
        events = job_events(before.state if before is not None else None, job)
        if events:  # (a lease extended has none)
            add((subjects.outbox(change_key(job)), events_body(events), {}))

    def delete_job(self, job: Job, seq: int) -> None:
        """Forget ``job``, stored at ``seq`` (a dead-letter delete): an empty record, no
        outbox entry."""
        subjects, add = self.subjects, self.messages.append
        add((subjects.job(job.id), b"", guarded(seq)))
        if is_dead(job):
            add((subjects.dead(job.queue, job.id), b"", ROLLUP))
        self._count(job.queue, job.state, -1)

    def put_event(self, event: dict[str, Any]) -> None:
        """An event that is no job's change (cron's), for the outbox."""
        self.messages.append((self.subjects.outbox(event["id"]), events_body([event]), {}))

    def put(self, subject: str, body: bytes, headers: Mapping[str, str]) -> int:
        """Any other message; returns its index."""
        self.messages.append((subject, body, headers))
        return len(self.messages) - 1

    def size(self) -> int:
        """Messages :meth:`finish` gives."""
        return len(self.messages) + sum(
            1 for deltas in self.counts.values() if any(deltas.values())
        )

    def finish(self) -> list[Message]:
        """Every message, with the count deltas last."""
        messages = list(self.messages)
        for queue, deltas in self.counts.items():
            changed = {state: n for state, n in deltas.items() if n}
            if changed:
                messages.append((self.subjects.count(queue), dumps(changed).encode(), {}))
        return messages

    def stored(self, ack: PubAck) -> list[Stored]:
        """The jobs written, each with its record's sequence (an atomic batch's messages
        take consecutive sequences ending at the acknowledgement's)."""
        first = ack.seq - ack.count + 1
        return [Stored(job, first + index) for job, index in self.jobs]

    def seq_of(self, ack: PubAck, index: int) -> int:
        return ack.seq - ack.count + 1 + index

    def _count(self, queue: str, state: State, delta: int) -> None:
        deltas = self.counts.setdefault(queue, {})
        deltas[state.value] = deltas.get(state.value, 0) + delta
