"""What the kafka backend publishes: topics, keys, values and headers. Pure (no I/O).

Every event the relay hands over becomes one record on the events topic, and the
events that mark a job entering a queue, being scheduled for a retry or going to the
dead letter queue also put the job itself on that queue's topic:

================================  =======================  ===============================
topic (default name)              one record per           value (JSON)
================================  =======================  ===============================
``ojs.events``                    lifecycle event          the event (ojs-events §2)
``ojs.queue.{queue}``             ``job.enqueued`` of a    the job, as ``GET /jobs/{id}``
                                  job's first attempt      shows it at that change
``ojs.queue.{queue}.retry``       ``job.retrying``         the job (state ``retryable``)
``ojs.dead.{queue}``              ``job.discarded`` into   the job (state ``discarded``)
                                  the dead letter queue
================================  =======================  ===============================

Keys: the events topic is keyed by the job id (a cron event by the cron name), so a
job's events are in order in one partition. The job topics are keyed by the job type,
or by the queue name with ``use_queue_key`` (as ojs-backend-kafka's
``OJS_KAFKA_USE_QUEUE_KEY``); a job's records on one topic share its type and queue,
so they too keep their order.

Headers (UTF-8 text): ``ojs-event-id`` (the id to de-duplicate by: a record published
again after a failure or crash carries the same id), ``ojs-event-type``,
``ojs-specversion``, ``ojs-job-id``, ``ojs-type``, ``ojs-queue``; job records add
``ojs-state``, ``ojs-attempt``, ``ojs-priority``, ``ojs-max-attempts``,
``ojs-created-at`` and, when set, ``ojs-scheduled-at`` and ``ojs-expires-at``
(ojs-backend-kafka's header names, plus the event id).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from ...core import SPEC_VERSION, Job, format_ms
from ..codec import dumps

Header = tuple[str, bytes]

_TOPIC_NAME = re.compile(r"^[A-Za-z0-9._-]{1,249}$")
_SPEC_VERSION: Header = ("ojs-specversion", SPEC_VERSION.encode())


@dataclass(frozen=True, slots=True)
class KafkaTopics:
    """The topic names (Kafka allows ``[A-Za-z0-9._-]``, at most 249 characters)."""

    events: str = "ojs.events"
    queue_prefix: str = "ojs.queue."
    dead_prefix: str = "ojs.dead."
    retry_suffix: str = ".retry"

    def __post_init__(self) -> None:
        for name in (self.events, self.queue("q"), self.retry("q"), self.dead("q")):
            if not _TOPIC_NAME.match(name):
                raise ValueError(f"{name!r} is not a valid Kafka topic name")

    def queue(self, queue: str) -> str:
        return f"{self.queue_prefix}{queue}"

    def retry(self, queue: str) -> str:
        return f"{self.queue(queue)}{self.retry_suffix}"

    def dead(self, queue: str) -> str:
        return f"{self.dead_prefix}{queue}"


@dataclass(frozen=True, slots=True)
class Record:
    topic: str
    key: bytes
    value: bytes
    headers: list[Header]


@dataclass(frozen=True, slots=True)
class RecordPlan:
    """How events become records: the topics, the key of job records, and whether
    the events topic is written at all (``OJS_KAFKA_EVENTS_ENABLED``)."""

    topics: KafkaTopics = KafkaTopics()
    use_queue_key: bool = False
    events_enabled: bool = True

    def records(self, event: dict[str, Any]) -> Iterator[Record]:
        """The records of one event as the relay reads it: with the ``"job"`` the
        change stored, if it is a job's (``EventFilter.with_jobs``)."""
        job: Job | None = event.get("job")
        if job is not None:
            event = {name: value for name, value in event.items() if name != "job"}
        event_headers = [
            ("ojs-event-id", event["id"].encode()),
            ("ojs-event-type", event["type"].encode()),
            _SPEC_VERSION,
        ]
        if job is not None:
            event_headers += _job_identity(job)
        if self.events_enabled:
            data = event.get("data") or {}
            key = data.get("job_id") or event.get("subject") or event["id"]
            yield Record(self.topics.events, str(key).encode(), _json(event), event_headers)
        if job is None:
            return
        topic = self._job_topic(event["type"], job)
        if topic is not None:
            wire = job.to_wire()
            key = job.queue if self.use_queue_key else job.type
            headers = event_headers + _job_state(job, wire["created_at"])
            yield Record(topic, key.encode(), _json(wire), headers)

    def _job_topic(self, kind: str, job: Job) -> str | None:
        if kind == "job.enqueued" and job.attempt == 0:
            return self.topics.queue(job.queue)
        if kind == "job.retrying":
            return self.topics.retry(job.queue)
        if kind == "job.discarded" and job.dead_letter:
            return self.topics.dead(job.queue)
        return None


def _json(value: Any) -> bytes:
    """UTF-8 JSON of ``value``: ``orjson``'s bytes as they are (see :func:`..codec.dumps`)."""
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError:
        return dumps(value).encode()


def _job_identity(job: Job) -> list[Header]:
    return [
        ("ojs-job-id", job.id.encode()),
        ("ojs-type", job.type.encode()),
        ("ojs-queue", job.queue.encode()),
    ]


def _job_state(job: Job, created_at: str) -> list[Header]:
    """The job record's own headers; ``created_at`` as the job's wire form has it."""
    headers = [
        ("ojs-state", job.state.value.encode()),
        ("ojs-attempt", str(job.attempt).encode()),
        ("ojs-priority", str(job.priority).encode()),
        ("ojs-max-attempts", str(job.retry.max_attempts).encode()),
        ("ojs-created-at", created_at.encode()),
    ]
    if job.scheduled_at is not None:
        headers.append(("ojs-scheduled-at", format_ms(job.scheduled_at).encode()))
    if job.expires_at is not None:
        headers.append(("ojs-expires-at", format_ms(job.expires_at).encode()))
    return headers


__all__ = ["Header", "KafkaTopics", "Record", "RecordPlan"]
