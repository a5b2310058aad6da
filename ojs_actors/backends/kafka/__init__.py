"""The kafka backend: job state in Redis, every change published to Kafka.

Kafka is a log, not a queue: it has no per-job acknowledgement or lifecycle. So the
state stays where claims, leases and compare-and-set live, in Redis, through the
Redis backend's parts as they are (:class:`~ojs_actors.backends.redis.RedisBackend`),
and Kafka gets the record of every change: :class:`KafkaBackend` adds an
:class:`~ojs_actors.backends.base.EventSink` to them.

Flow. Each job change appends its outbox entry in the same Lua script that stores it
(:mod:`ojs_actors.backends.redis.lua_outbox`). The event relay of one process (a
lease) reads the outbox in order through its durable cursor, 2000 events at a time
(``relay_batch``), with each change's job (``wants_jobs``), turns each event into
records (:mod:`.records`: the events topic, and the job itself on ``ojs.queue.{q}``,
``ojs.queue.{q}.retry`` or ``ojs.dead.{q}``) and publishes them (:mod:`.producer`,
``acks=all``); once Kafka acknowledged them it moves the outbox's hold past them
(``outhold``), and commits its cursor.

No record lost, none out of order per job: a failure or crash before the cursor
commit publishes the same records again, with the same ``ojs-event-id`` header
(consumers drop repeats); retention never trims an entry after the hold, so nothing
waits for Kafka that can be lost.

Kafka away is no outage: jobs are still accepted and run (the state is in Redis);
their events wait in the outbox. When ``outbox_limit`` entries wait, new jobs and
workflows are refused with 503 (:class:`~ojs_actors.core.OutboxFull`) until Kafka
takes them: the backlog stays bounded. Health shows the backlog (``events``).
"""

from .backend import OUTBOX_LIMIT, KafkaBackend
from .producer import KafkaProducer, KafkaSettings
from .records import KafkaTopics, Record, RecordPlan

__all__ = [
    "OUTBOX_LIMIT",
    "KafkaBackend",
    "KafkaProducer",
    "KafkaSettings",
    "KafkaTopics",
    "Record",
    "RecordPlan",
]
