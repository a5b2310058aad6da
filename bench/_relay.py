"""The kafka backend's event relay, seen from Kafka: how fast the events of a lifecycle run
reach the events topic, and how far behind the relay was meanwhile.

While a lifecycle run on ``kafka`` goes on (scenarios 2 and 3), :class:`TopicWatch` reads
the size of the events topic (the sum of its partitions' end offsets) every
:data:`WATCH_EVERY_S`, from an aiokafka consumer on an asyncio loop in a thread of its own
(the partitions assigned and paused: no consumer group, nothing fetched). The run returns
once its outbox backlog is 0 (``_backlog.py``); the watch then reads until the size
stays the same for :data:`SETTLE_S`. Figures of the run:

* ``events relayed/job``: what the run added to the topic, over its jobs (bulk and
  latency jobs);
* ``relay events/s``: those events over the time from the run's first enqueue
  (``LifecycleResult.started_at``) until the size first reached its final value: the
  relay's throughput, bounded by how fast the run makes events;
* ``outbox backlog median`` / ``max``: the backlog sampled during the run (every
  ``BACKLOG_EVERY_S`` of ``_backlog.py``, first enqueue to last latency job).

Tansu answers ListOffsets with the first offset of a partition's last record batch plus
one, not the offset after its last record, so end offsets alone miss the rest of that
batch. The counts before and after the run (:meth:`TopicWatch.count`) therefore add what
can be read past the end offsets; a broker that answers right has nothing there. The
time the size reaches its final value is unaffected: the last batch moves it.
"""

from __future__ import annotations

import asyncio
import math
import statistics
import threading
import time
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from ojs_actors.backends.kafka import KafkaTopics

from ._isolated import run_isolated
from ._outcome import Outcome
from ._workload import LifecycleResult

EVENTS_TOPIC = KafkaTopics().events
WATCH_EVERY_S = 0.05
SETTLE_S = 0.5
SETTLE_LIMIT_S = 30.0
START_LIMIT_S = 30.0
PAST_END_WAIT_MS = 300
"""How long a read past the end offsets waits for records that are not there."""
RELAY_NOTE = (
    "kafka relay: events relayed/job = records the run added to the events topic "
    f"({EVENTS_TOPIC}; end offsets read by an aiokafka consumer by assignment, no consumer "
    "group) over its jobs, latency jobs included; relay events/s = those events over the "
    "time from the run's first enqueue until the topic held them all (the run waits for "
    "its outbox backlog to reach 0 before it ends): bounded by how fast the run makes "
    "events as much as by the relay; outbox backlog median / max = the backlog (GET "
    "/ojs/v1/health events.backlog over HTTP, outbox_backlog() embedded) sampled every "
    "0.1 s from the first enqueue to the last latency job"
)


class TopicWatch:
    """The size of ``topic`` from :meth:`start` to :meth:`finish`, then until it settles."""

    def __init__(self, brokers: str, topic: str = EVENTS_TOPIC) -> None:
        self.brokers = brokers
        self.topic = topic
        self.readings: list[tuple[float, int]] = []
        """``(time.time(), sum of end offsets)``, oldest first."""
        self.before = 0
        self.after = 0
        """Records in the topic at :meth:`start`, and once settled after :meth:`finish`."""
        self.error: str | None = None
        self._partitions: list[TopicPartition] = []
        self._ready = threading.Event()
        self._finish = threading.Event()
        self._thread = threading.Thread(target=self._run, name="topic-watch", daemon=True)

    def start(self) -> None:
        """Count the records there now, then read the size until :meth:`finish`."""
        self._thread.start()
        self._ready.wait(START_LIMIT_S)

    def finish(self) -> None:
        """Read until the size settles, count the records, and stop."""
        self._finish.set()
        self._thread.join(SETTLE_LIMIT_S + 2 * START_LIMIT_S)
        if self._thread.is_alive():
            self.error = self.error or "the watch did not settle in time"

    def relayed(self, started_at: float | None) -> dict[str, Any]:
        """What the run added to the topic (``events``), and how long from ``started_at``
        (its first enqueue) until the topic held it all (``seconds``, ``events_per_s``)."""
        figures: dict[str, Any] = {
            "events": self.after - self.before,
            "seconds": math.nan,
            "events_per_s": math.nan,
            "error": self.error,
        }
        if self.error or not self.readings or started_at is None:
            return figures
        final = self.readings[-1][1]
        reached = next(at for at, size in self.readings if size >= final)
        if reached > started_at and figures["events"] > 0:
            figures["seconds"] = reached - started_at
            figures["events_per_s"] = figures["events"] / figures["seconds"]
        return figures

    def _run(self) -> None:
        try:
            asyncio.run(self._watch())
        except Exception as error:  # a figure lost, not the scenario
            self.error = repr(error)
        finally:
            self._ready.set()

    async def _watch(self) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.brokers, enable_auto_commit=False, client_id="ojs-bench"
        )
        await consumer.start()
        try:
            self.before = await self.count(consumer)
            self._ready.set()
            while not self._finish.is_set():
                await self._read(consumer)
                await asyncio.sleep(WATCH_EVERY_S)
            await self._settle(consumer)
            self.after = await self.count(consumer)
        finally:
            await consumer.stop()

    async def _settle(self, consumer: AIOKafkaConsumer) -> None:
        """Read until the size stays the same for :data:`SETTLE_S`."""
        give_up = time.monotonic() + SETTLE_LIMIT_S
        last, since = None, time.monotonic()
        while time.monotonic() < give_up:
            size = await self._read(consumer)
            if size != last:
                last, since = size, time.monotonic()
            elif time.monotonic() - since >= SETTLE_S:
                return
            await asyncio.sleep(WATCH_EVERY_S)
        raise TimeoutError(f"{self.topic} still growing after {SETTLE_LIMIT_S} s")

    async def _assigned(self, consumer: AIOKafkaConsumer) -> list[TopicPartition]:
        """The topic's partitions, assigned and paused, once it exists (the backend
        creates it when it starts)."""
        if not self._partitions and self.topic in await consumer.topics():
            numbers = sorted(consumer.partitions_for_topic(self.topic) or ())
            self._partitions = [TopicPartition(self.topic, n) for n in numbers]
            consumer.assign(self._partitions)
            consumer.pause(*self._partitions)
        return self._partitions

    async def _ends(self, consumer: AIOKafkaConsumer) -> dict[TopicPartition, int]:
        partitions = await self._assigned(consumer)
        return dict(await consumer.end_offsets(partitions)) if partitions else {}

    async def _read(self, consumer: AIOKafkaConsumer) -> int:
        size = sum((await self._ends(consumer)).values())
        self.readings.append((time.time(), size))
        return size

    async def count(self, consumer: AIOKafkaConsumer) -> int:
        """Records in the topic: its end offsets, plus the records readable past them."""
        ends = await self._ends(consumer)
        if not ends:
            return 0
        past = 0
        consumer.resume(*ends)
        try:
            for partition, end in ends.items():
                consumer.seek(partition, end)
            while batches := await consumer.getmany(timeout_ms=PAST_END_WAIT_MS):
                past += sum(len(records) for records in batches.values())
        finally:
            consumer.pause(*ends)
        return sum(ends.values()) + past


def run_relayed(
    kind: str, subject: str, kwargs: dict[str, Any], brokers: str
) -> tuple[LifecycleResult, dict[str, Any]]:
    """One lifecycle run on kafka (``run_isolated``) and what its relay did."""
    watch = TopicWatch(brokers)
    watch.start()
    try:
        result = run_isolated(kind, subject, kwargs)
    finally:
        watch.finish()
    return result, watch.relayed(result.started_at)


def record_relay(outcome: Outcome, result: LifecycleResult, relayed: dict[str, Any]) -> None:
    """The run's relay figures, as four more series of its subject (NaN unless ``ok``)."""
    jobs = result.jobs + result.latency_jobs
    valid = result.ok and relayed["error"] is None
    figures = {
        "relay events/s": relayed["events_per_s"],
        "events relayed/job": relayed["events"] / jobs if jobs else math.nan,
        "outbox backlog median": statistics.median(result.backlog) if result.backlog else 0,
        "outbox backlog max": max(result.backlog, default=0),
    }
    for metric, value in figures.items():
        outcome.series_of(result.subject, metric).values.append(float(value) if valid else math.nan)
    if relayed["error"] is not None:
        outcome.notes.append(f"{result.subject}: the events topic watch failed: {relayed['error']}")
