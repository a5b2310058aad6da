"""Where the NATS backend keeps what: stream configurations, subject names and the
bodies of its index entries. Pure: no I/O.

Everything the backend stores is a message of one JetStream stream (``OJS`` by default),
so that one atomic batch (nats-server >= 2.12) can write a job version together with
every index entry derived from it and its outbox entry, each job record guarded by a
compare-and-set on its subject's last sequence. Subjects, with ``ojs`` the prefix and
``{q}``, ``{id}``, ``{key}`` subject tokens (:func:`token`)::

    ojs.job.{id}                  the job's record (JSON, Job.to_record()), one message
                                  per subject (every write rolls the older one up); its
                                  stream sequence is the revision compare-and-set checks;
                                  an empty body is a deleted job
    ojs.queue.{q}.jobs.{lane}     ready entries "{id}\\n{version}", one per job version
                                  made available; lane 000 is priority 100, 200 is -100,
                                  so the lanes in name order are the priority order and
                                  the stream order within a lane is FIFO
    ojs.timer.{second}            timer entries "{id}\\n{version}\\n{due ms}" bucketed by
                                  the second they fall due
    ojs.dead.{q}.{id}             "{version}" while the job is dead-lettered (an empty
                                  body once it left: a tombstone, purged when seen)
    ojs.count.{q}                 count deltas {"state": n, ...} of each write; folded
                                  into one message (roll-up) once they pile up
    ojs.unique.{key}              the id of the job that last took the unique key
    ojs.rate.{q}                  the rate-limited queue's recent claim times (ms)
    ojs.snap.{kind}.{rest}        snapshots {"key": ..., "state": ...}; the subject's last
                                  sequence is the snapshot's version
    ojs.outbox.{key}              outbox entries {"events": [...]}: the events of a job
                                  change (key {id}_{version}), rendered when written, or
                                  an event that is no job's (cron's, key its id); stream
                                  order is outbox order

Index entries are written in the same atomic batch as the job version they describe,
and are never changed afterwards: an entry whose job has moved to another version is
stale. Readers check each entry against the job record (the only truth) and purge stale
ones as they pass them, so no sweep scans every key.

Core NATS subjects, not stored: ``ojs.notify.ready`` (ready notices, body the queue name).
Lifecycle events, relayed from the outbox: ``ojs.events.{type}`` in the stream
``OJS_EVENTS``, each with its event id as ``Nats-Msg-Id``.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from typing import Any

from ...core import Job
from ...core.validation import PRIORITY_RANGE
from ..codec import dumps_record, loads_record

STREAM = "OJS"
EVENTS_STREAM = "OJS_EVENTS"
PREFIX = "ojs"

_SAFE_TOKEN = re.compile(r"[A-Za-z0-9_\-]+")
_ESCAPED = "~"

LOWEST, HIGHEST = PRIORITY_RANGE

ROOTS = ("job", "queue", "timer", "dead", "count", "unique", "rate", "snap", "outbox")
"""The subject roots the main stream captures (``{prefix}.{root}.>``)."""


def token(text: str) -> str:
    """``text`` as one subject token: itself if plainly safe, else ``~`` + base64url.
    Reversible (:func:`untoken`) and distinct for distinct texts."""
    if _SAFE_TOKEN.fullmatch(text) and not text.startswith(_ESCAPED):
        return text
    encoded = base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")
    return _ESCAPED + encoded


def untoken(part: str) -> str:
    if not part.startswith(_ESCAPED):
        return part
    body = part[1:]
    return base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).decode()


def lane(priority: int) -> str:
    """The ready lane of a priority: lanes sort by name in priority order (highest first).
    Priorities beyond the spec's range share the extreme lanes."""
    clamped = min(max(priority, LOWEST), HIGHEST)
    return f"{HIGHEST - clamped:03d}"


@dataclass(frozen=True, slots=True)
class Subjects:
    """The subject names under one prefix."""

    prefix: str = PREFIX

    def roots(self) -> list[str]:
        return [f"{self.prefix}.{root}.>" for root in ROOTS]

    def job(self, job_id: str) -> str:
        return f"{self.prefix}.job.{token(job_id)}"

    def job_id_of(self, subject: str) -> str:
        return untoken(subject.rsplit(".", 1)[1])

    def ready(self, queue: str, priority: int) -> str:
        return f"{self.prefix}.queue.{token(queue)}.jobs.{lane(priority)}"

    def ready_lanes(self, queue: str) -> str:
        return f"{self.prefix}.queue.{token(queue)}.jobs.*"

    def timer(self, due: int) -> str:
        return f"{self.prefix}.timer.{due // 1000}"

    def timers(self) -> str:
        return f"{self.prefix}.timer.*"

    def second_of(self, timer_subject: str) -> int:
        return int(timer_subject.rsplit(".", 1)[1])

    def dead(self, queue: str, job_id: str) -> str:
        return f"{self.prefix}.dead.{token(queue)}.{token(job_id)}"

    def dead_of(self, queue: str | None) -> str:
        return (
            f"{self.prefix}.dead.{token(queue)}.*" if queue is not None else f"{self.prefix}.dead.>"
        )

    def count(self, queue: str) -> str:
        return f"{self.prefix}.count.{token(queue)}"

    def unique(self, key: str) -> str:
        return f"{self.prefix}.unique.{token(key)}"

    def rate(self, queue: str) -> str:
        return f"{self.prefix}.rate.{token(queue)}"

    def snapshot(self, key: str) -> str:
        kind, colon, rest = key.partition(":")
        if colon and _SAFE_TOKEN.fullmatch(kind):
            return f"{self.prefix}.snap.{kind}.{token(rest)}"
        return f"{self.prefix}.snap._.{token(key)}"

    def snapshots(self, prefix: str) -> str:
        """A filter holding every snapshot whose key starts with ``prefix`` (and maybe more)."""
        kind, colon, _ = prefix.partition(":")
        if colon and _SAFE_TOKEN.fullmatch(kind):
            return f"{self.prefix}.snap.{kind}.>"
        return f"{self.prefix}.snap.>"

    def outbox(self, key: str) -> str:
        return f"{self.prefix}.outbox.{token(key)}"

    def outbox_all(self) -> str:
        return f"{self.prefix}.outbox.>"

    def ready_notices(self) -> str:
        return f"{self.prefix}.notify.ready"

    def events(self, event_type: str) -> str:
        return f"{self.prefix}.events.{event_type}"

    def events_all(self) -> str:
        return f"{self.prefix}.events.>"


def stream_config(name: str, subjects: Subjects, *, storage: str, replicas: int) -> dict[str, Any]:
    """The main stream: atomic batches, direct reads, roll-ups; kept until deleted."""
    return {
        "name": name,
        "subjects": subjects.roots(),
        "retention": "limits",
        "discard": "old",
        "storage": storage,
        "num_replicas": replicas,
        "max_msgs_per_subject": -1,
        "allow_atomic": True,
        "allow_direct": True,
        "allow_rollup_hdrs": True,
        "duplicate_window": 0,
    }


def events_stream_config(
    name: str, subjects: Subjects, *, storage: str, replicas: int, max_age_s: int
) -> dict[str, Any]:
    """Lifecycle events for subscribers: de-duplicated by ``Nats-Msg-Id`` (the event id)."""
    return {
        "name": name,
        "subjects": [subjects.events_all()],
        "retention": "limits",
        "discard": "old",
        "storage": storage,
        "num_replicas": replicas,
        "max_age": max_age_s * 1_000_000_000,
        "duplicate_window": 120 * 1_000_000_000,
        "allow_direct": True,
        "allow_atomic": True,
    }


# -- entry bodies -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Entry:
    """A ready or timer entry: job ``job_id`` at ``version``, stream sequence ``seq``."""

    seq: int
    job_id: str
    version: int
    due: int = 0


def ready_body(job: Job) -> bytes:
    return f"{job.id}\n{job.version}".encode()


def timer_body(job: Job, due: int) -> bytes:
    return f"{job.id}\n{job.version}\n{due}".encode()


def parse_entry(seq: int, body: bytes) -> Entry:
    parts = body.decode().split("\n")
    due = int(parts[2]) if len(parts) > 2 else 0
    return Entry(seq, parts[0], int(parts[1]), due)


def events_body(events: list[dict[str, Any]]) -> bytes:
    """An outbox entry: the events of one change (rendered when it is written, where the
    job is at hand, rather than decoded from a record each time the outbox is read)."""
    return dumps_record({"events": events}).encode()


def events_of(body: bytes) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = loads_record(body.decode())["events"]
    return events
