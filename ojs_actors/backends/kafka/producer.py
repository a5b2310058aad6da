"""Kafka, written to: :class:`KafkaProducer` creates topics and publishes records.

aiokafka runs on the process's asyncio bridge (:mod:`ojs_actors.backends.bridge`):
each call crosses it once per batch of records, not once per record (a crossing
costs a few hundred microseconds here).

A publish builds the record batches itself (aiokafka's ``create_batch``/``send_batch``):
one batch per partition (another once one holds :data:`BATCH_BYTES`), partitioned as
aiokafka's default partitioner does (murmur2 of the key, as the Java client), so a
relay batch of thousands of records goes out in a produce request or two and waits
for one future per partition batch. Through ``send`` each record cost a future, a
callback through the bridge's loop and a partitioner call, and 16 KB batches made a
produce request, one after another, for every few dozen records.

Records are published with ``acks=all`` (every in-sync replica has them before the
call returns) and without the idempotent producer (not every Kafka-protocol broker
has it, and the relay's at-least-once with event ids covers duplicates anyway).

Kafka being away is no outage of the server: if the brokers cannot be reached at
start, :meth:`KafkaProducer.start` logs it and the first :meth:`publish` tries again;
a publish that does not get its acknowledgements within the timeout raises
:class:`~ojs_actors.core.BackendUnavailable`, and the relay tries the same records
again later.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import trio
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError
from aiokafka.partitioner import murmur2

from ...core import BackendUnavailable
from ..bridge import AsyncioBridge, current_asyncio_bridge
from .records import Record

log = logging.getLogger("ojs_actors.backends.kafka")

TOPIC_ALREADY_EXISTS = 36
BATCH_BYTES = 512 * 1024
"""Most bytes of one record batch (a partition's share of a publish): half of Kafka's
default ``message.max.bytes`` (1 MB), which some brokers keep as their limit."""
LINGER_MS = 5


@dataclass(frozen=True, slots=True)
class KafkaSettings:
    brokers: str = "localhost:9092"
    """Bootstrap servers, comma-separated ``host:port`` (``KAFKA_BROKERS``)."""
    timeout: float = 10.0
    """Seconds a request (a produce, a metadata look-up) may take before it fails."""
    partitions: int = 3
    """Partitions of each topic this backend creates."""
    replication_factor: int = 1
    """Replicas of each topic this backend creates."""
    security_protocol: str = "PLAINTEXT"
    """``PLAINTEXT``, ``SSL``, ``SASL_PLAINTEXT`` or ``SASL_SSL``."""
    sasl_mechanism: str = "PLAIN"
    """``PLAIN``, ``SCRAM-SHA-256`` or ``SCRAM-SHA-512`` (with ``SASL_*``)."""
    sasl_username: str | None = None
    sasl_password: str | None = None
    tls_ca: str | None = None
    """CA file to verify the brokers with (``SSL``/``SASL_SSL``; default: the system's)."""
    client_id: str = "ojs-actors"

    def client_options(self) -> dict[str, Any]:
        """The keywords aiokafka's producer and admin client share."""
        options: dict[str, Any] = {
            "bootstrap_servers": [b.strip() for b in self.brokers.split(",") if b.strip()],
            "client_id": self.client_id,
            "request_timeout_ms": max(1, int(self.timeout * 1000)),
            "security_protocol": self.security_protocol,
        }
        if self.security_protocol in ("SSL", "SASL_SSL"):
            options["ssl_context"] = ssl.create_default_context(cafile=self.tls_ca)
        if self.security_protocol.startswith("SASL_"):
            options["sasl_mechanism"] = self.sasl_mechanism
            options["sasl_plain_username"] = self.sasl_username
            options["sasl_plain_password"] = self.sasl_password
        return options


class KafkaProducer:
    def __init__(self, settings: KafkaSettings) -> None:
        self.settings = settings
        self._bridge: AsyncioBridge | None = None
        self._producer: Any = None
        self._admin: Any = None
        self._topics: set[str] = set()  # created (or found) by this process
        self._connecting = trio.Lock()

    @property
    def connected(self) -> bool:
        return self._producer is not None

    async def start(self, topics: Sequence[str] = ()) -> None:
        """Connect and create ``topics``; if Kafka is away, log it and return (the next
        :meth:`publish` tries again)."""
        self._bridge = current_asyncio_bridge()
        try:
            await self._connect()
            await self.ensure_topics(topics)
        except BackendUnavailable as error:
            log.warning("Kafka: %s; events wait in the outbox until it answers", error)

    async def publish(self, records: Sequence[Record]) -> None:
        """Publish ``records`` in order (per partition) and return once Kafka acknowledged
        every one; :class:`BackendUnavailable` if it did not within the timeout."""
        if not records:
            return
        await self._connect()
        await self.ensure_topics(sorted({record.topic for record in records}))
        with trio.move_on_after(self.settings.timeout * 2) as waited:
            await self._run(_send_all(self._producer, records), "publishing")
        if waited.cancelled_caught:
            raise BackendUnavailable(
                f"Kafka did not acknowledge {len(records)} records within "
                f"{self.settings.timeout * 2:g}s."
            )

    async def ensure_topics(self, topics: Sequence[str]) -> None:
        """Create those of ``topics`` this process has not seen yet (already there: fine)."""
        missing = [topic for topic in topics if topic not in self._topics]
        if not missing:
            return
        await self._connect()
        settings = self.settings
        wanted = [NewTopic(t, settings.partitions, settings.replication_factor) for t in missing]
        response = await self._run(
            self._admin.create_topics(wanted, timeout_ms=int(settings.timeout * 1000)),
            "creating topics",
        )
        for topic, code, message in (error[:3] for error in response.topic_errors):
            if code not in (0, TOPIC_ALREADY_EXISTS):
                raise BackendUnavailable(
                    f"Kafka refused to create topic {topic}: {message} ({code})"
                )
            self._topics.add(topic)

    async def close(self) -> None:
        producer, admin, self._producer, self._admin = self._producer, self._admin, None, None
        if self._bridge is None or self._bridge.closed:
            return
        with trio.move_on_after(self.settings.timeout):
            if producer is not None:
                await self._bridge.run(producer.stop())
            if admin is not None:
                await self._bridge.run(admin.close())

    async def _connect(self) -> None:
        if self._producer is not None:
            return
        async with self._connecting:
            if self._producer is not None:
                return
            options = self.settings.client_options()
            producer = AIOKafkaProducer(
                acks="all", linger_ms=LINGER_MS, max_batch_size=BATCH_BYTES, **options
            )
            admin = AIOKafkaAdminClient(**options)
            try:
                with trio.move_on_after(self.settings.timeout * 2) as waited:
                    await self._run(producer.start(), "connecting")
                    await self._run(admin.start(), "connecting")
                if waited.cancelled_caught:
                    raise BackendUnavailable(f"no broker of {self.settings.brokers} answered")
            except BaseException:
                with trio.CancelScope(shield=True), trio.move_on_after(self.settings.timeout):
                    for stop in (producer.stop, admin.close):
                        with contextlib.suppress(Exception):
                            await self._bridge_or_fail().run(stop())
                raise
            self._producer, self._admin = producer, admin
            log.info("Kafka: connected to %s", self.settings.brokers)

    async def _run(self, coroutine: Any, doing: str) -> Any:
        """Run an aiokafka coroutine on the bridge; its errors become BackendUnavailable."""
        try:
            return await self._bridge_or_fail().run(coroutine)
        except (TimeoutError, KafkaError, OSError) as error:
            raise BackendUnavailable(f"Kafka ({doing}): {error!r}") from error

    def _bridge_or_fail(self) -> AsyncioBridge:
        if self._bridge is None:
            self._bridge = current_asyncio_bridge()
        return self._bridge


async def _send_all(producer: Any, records: Sequence[Record]) -> None:
    """On the asyncio loop: batch the records by partition, queue every batch, then wait
    for all acknowledgements. A partition's batches go in order, so its records do."""
    partitions = {
        topic: sorted(await producer.partitions_for(topic))
        for topic in {record.topic for record in records}
    }
    pending: list[asyncio.Future[Any]] = []
    try:
        for (topic, partition), batch in _batches(producer, records, partitions):
            pending.append(await producer.send_batch(batch, topic, partition=partition))
        outcomes = await asyncio.gather(*pending, return_exceptions=True)
    finally:
        for future in pending:  # abandoned (cancelled): their failures are known already
            future.add_done_callback(_look_at)
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome


def _batches(
    producer: Any, records: Sequence[Record], partitions: dict[str, list[int]]
) -> list[tuple[tuple[str, int], Any]]:
    """The records in aiokafka batch builders, by (topic, partition), in the order each
    partition's batches were started (a builder takes at least its first record)."""
    batches: list[tuple[tuple[str, int], Any]] = []
    filling: dict[tuple[str, int], Any] = {}
    for record in records:
        choices = partitions[record.topic]
        where = (record.topic, choices[_key_hash(record.key) % len(choices)])
        batch = filling.get(where)
        if batch is None or not _append(batch, record):
            batch = filling[where] = producer.create_batch()
            _append(batch, record)
            batches.append((where, batch))
    return batches


def _append(batch: Any, record: Record) -> bool:
    added = batch.append(timestamp=None, key=record.key, value=record.value, headers=record.headers)
    return added is not None


@functools.lru_cache(maxsize=16384)
def _key_hash(key: bytes) -> int:
    """What aiokafka's default partitioner (the Java client's) takes modulo the partitions:
    murmur2 of the key, positive (aiokafka's own function). Kept for the keys seen last:
    job types, and the ids of jobs whose events are near."""
    hashed: int = murmur2(key)
    return hashed & 0x7FFFFFFF


def _look_at(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


__all__ = ["BATCH_BYTES", "KafkaProducer", "KafkaSettings"]
