"""The kafka backend, assembled: :class:`KafkaBackend` (see the package docstring)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from ..faults import crash_point
from ..outbox import EVENT_RETENTION
from ..redis import RedisBackend
from ..redis.connection import DEFAULT_PREFIX
from ..redis.events import RedisEventLog
from .producer import KafkaProducer, KafkaSettings
from .records import KafkaTopics, RecordPlan

OUTBOX_LIMIT = 100_000
"""Events waiting for Kafka at which new work is refused (``OJS_KAFKA_OUTBOX_LIMIT``)."""
RELAY_BATCH = 2000
"""Events per publish: a publish costs a few Redis and Kafka round trips whatever its
size (up to about 1.6 MB of records for 2000 events, a produce request or two), so large ones
keep up with a busy process; four times the relay's default."""


class KafkaBackend(RedisBackend):
    """The Redis backend's parts as they are (state, claims, timers, the outbox), plus
    the outbox relayed to Kafka (:class:`~ojs_actors.backends.base.EventSink`) with a
    bounded backlog (:class:`~ojs_actors.backends.base.OutboxBacklog`)."""

    name = "kafka"
    needs_asyncio = True
    relay_name = "kafka-events"
    """The relay's durable cursor and lease (``EventSink``)."""
    wants_jobs = True
    """The relay hands each event over with the job its change stored (the job topics)."""
    relay_batch = RELAY_BATCH
    """Events the relay hands over per publish (``EventSink``)."""

    def __init__(
        self,
        brokers: str = "localhost:9092",
        *,
        redis_url: str | None = None,
        prefix: str = DEFAULT_PREFIX,
        topics: KafkaTopics | None = None,
        use_queue_key: bool = False,
        events_enabled: bool = True,
        partitions: int = 3,
        replication_factor: int = 1,
        timeout: float = 10.0,
        outbox_limit: int = OUTBOX_LIMIT,
        event_retention: int = EVENT_RETENTION,
        security_protocol: str = "PLAINTEXT",
        sasl_mechanism: str = "PLAIN",
        sasl_username: str | None = None,
        sasl_password: str | None = None,
        tls_ca: str | None = None,
        events_topic: str | None = None,
        queue_prefix: str | None = None,
        dead_prefix: str | None = None,
    ) -> None:
        """``topics`` names every topic; ``events_topic``, ``queue_prefix`` and
        ``dead_prefix`` override one name each (the CLI's flags)."""
        super().__init__(redis_url, prefix=prefix, event_retention=event_retention)
        self.needs_asyncio = True
        if outbox_limit < 1:
            raise ValueError("outbox_limit must be at least 1")
        self.outbox_limit = outbox_limit
        renamed = {"events": events_topic, "queue_prefix": queue_prefix, "dead_prefix": dead_prefix}
        topics = dataclasses.replace(
            topics or KafkaTopics(), **{k: v for k, v in renamed.items() if v is not None}
        )
        self.plan = RecordPlan(topics, use_queue_key=use_queue_key, events_enabled=events_enabled)
        self.producer = KafkaProducer(
            KafkaSettings(
                brokers=brokers,
                timeout=timeout,
                partitions=partitions,
                replication_factor=replication_factor,
                security_protocol=security_protocol,
                sasl_mechanism=sasl_mechanism,
                sasl_username=sasl_username,
                sasl_password=sasl_password,
                tls_ca=tls_ca,
            )
        )
        self._outbox = RedisEventLog(self.connection)

    @property
    def brokers(self) -> str:
        return self.producer.settings.brokers

    async def start(self) -> None:
        await super().start()
        await self._outbox.hold_outbox(None, start=True)
        events = [self.plan.topics.events] if self.plan.events_enabled else []
        await self.producer.start(events)

    async def close(self) -> None:
        try:
            await self.producer.close()
        finally:
            await super().close()

    async def reset(self) -> None:
        await super().reset()
        await self._outbox.hold_outbox(None, start=True)

    async def publish_events(self, events: Sequence[dict[str, Any]]) -> None:
        """``EventSink``: publish the records of ``events``, then move the outbox's hold
        past them (only then may retention trim them)."""
        await self.producer.publish([r for event in events for r in self.plan.records(event)])
        crash_point("kafka.published")  # published, not held: published again on restart
        if events:
            await self._outbox.hold_outbox(events[-1]["id"])
        crash_point("kafka.held")  # held, cursor not moved: published again on restart

    async def outbox_backlog(self) -> int:
        """``OutboxBacklog``: entries of the outbox not yet published to Kafka."""
        return await self._outbox.hold_outbox(None)


__all__ = ["OUTBOX_LIMIT", "RELAY_BATCH", "KafkaBackend"]
