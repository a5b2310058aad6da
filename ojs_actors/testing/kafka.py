"""Reading Kafka topics back in tests: what an external consumer of the kafka backend sees.

    records = await trio.to_thread.run_sync(read_topic, brokers, "ojs.events")

:func:`read_topic` is synchronous (it runs aiokafka on an asyncio loop of its own), so
call it from a thread in trio code. It reads every partition by assignment from the
beginning (no consumer group: nothing to join, no offsets committed) until ``idle``
seconds pass without a new record, and at least up to the end offsets the broker
reports (Tansu's can lag behind what it already serves, so they are not the only
bound). Needs ``pip install 'ojs-actors[kafka]'``.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition


@dataclass(frozen=True, slots=True)
class TopicRecord:
    partition: int
    offset: int
    key: str | None
    value: Any
    """The value decoded as JSON."""
    headers: dict[str, str]


def read_topic(
    brokers: str, topic: str, *, idle: float = 1.0, timeout: float = 30.0
) -> list[TopicRecord]:
    """Every record of ``topic``, by partition, then offset; ``[]`` if it does not exist."""
    return asyncio.run(asyncio.wait_for(_read(brokers, topic, idle), timeout))


async def _read(brokers: str, topic: str, idle: float) -> list[TopicRecord]:
    consumer = AIOKafkaConsumer(bootstrap_servers=brokers, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = await _partitions(consumer, topic)
        if not partitions:
            return []
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        found: list[TopicRecord] = []
        while True:
            batches = await consumer.getmany(timeout_ms=int(idle * 1000))
            behind = [p for p in partitions if await consumer.position(p) < ends[p]]
            if not batches and not behind:
                break
            for part, messages in batches.items():
                found += (
                    TopicRecord(
                        part.partition,
                        message.offset,
                        None if message.key is None else message.key.decode(),
                        json.loads(message.value),
                        {name: value.decode() for name, value in message.headers},
                    )
                    for message in messages
                )
        found.sort(key=lambda record: (record.partition, record.offset))
        return found
    finally:
        await consumer.stop()


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
    if topic not in await consumer.topics():
        return []
    return [TopicPartition(topic, n) for n in sorted(consumer.partitions_for_topic(topic) or ())]


__all__ = ["TopicRecord", "read_topic"]
