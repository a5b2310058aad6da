"""The kafka backend on a real Kafka-protocol broker (Tansu, memory storage) and a real
redis-server: the records it publishes, and Kafka being away (frozen with SIGSTOP, so
the broker keeps its data) costing neither events nor service.

Every test has topics of its own (``kafka_options``); those that freeze a broker start
one of their own."""

from __future__ import annotations

import itertools
import json
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from aiokafka.partitioner import DefaultPartitioner
from conftest import KafkaBroker, kafka_topics
from serving import OjsServer, kafka_env

from ojs_actors import Job, State, open_system
from ojs_actors.backends import EventFilter
from ojs_actors.backends.bridge import open_asyncio_bridge
from ojs_actors.backends.kafka import (
    KafkaBackend,
    KafkaProducer,
    KafkaSettings,
    KafkaTopics,
    Record,
    RecordPlan,
)
from ojs_actors.backends.kafka.producer import BATCH_BYTES
from ojs_actors.core import OutboxFull, parse_enqueue
from ojs_actors.core.cron import parse_cron
from ojs_actors.core.events import cron_event, job_events
from ojs_actors.system import Settings, System
from ojs_actors.testing.kafka import TopicRecord, read_topic

FAST = Settings(poll_interval=0.05)


# -- records (pure) ---------------------------------------------------------------------


def _job(**fields: Any) -> Job:
    job = parse_enqueue({"type": "email.send", "args": ["a@example.com"], "queue": "mail"}, 1000)
    for name, value in fields.items():
        setattr(job, name, value)
    return job


def _records(plan: RecordPlan, before: State | None, job: Job) -> list[Any]:
    return [r for event in job_events(before, job) for r in plan.records({**event, "job": job})]


def test_a_new_job_goes_to_the_events_topic_and_its_queue_topic() -> None:
    job = _job()
    event_record, job_record = _records(RecordPlan(), None, job)
    assert (event_record.topic, event_record.key) == ("ojs.events", job.id.encode())
    headers = dict(event_record.headers)
    assert headers["ojs-event-id"] == f"evt_{job.id}_0_0".encode()
    assert headers["ojs-event-type"] == b"job.enqueued"
    assert b'"type":"job.enqueued"' in event_record.value and b'"job":' not in event_record.value
    assert (job_record.topic, job_record.key) == ("ojs.queue.mail", b"email.send")
    job_headers = dict(job_record.headers)
    assert job_headers["ojs-state"] == b"available" and job_headers["ojs-attempt"] == b"0"
    assert job_headers["ojs-event-id"] == headers["ojs-event-id"]
    assert b'"args":["a@example.com"]' in job_record.value


def test_retries_and_dead_letters_go_to_their_topics_keyed_as_configured() -> None:
    plan = RecordPlan(KafkaTopics(), use_queue_key=True)
    retrying = _job(state=State.RETRYABLE, attempt=1, next_attempt_at=5000, error={"message": "x"})
    topics = [r.topic for r in _records(plan, State.ACTIVE, retrying)]
    assert topics == ["ojs.events", "ojs.events", "ojs.queue.mail.retry"]  # failed, retrying
    assert _records(plan, State.ACTIVE, retrying)[-1].key == b"mail"
    dead = _job(state=State.DISCARDED, attempt=3, dead_letter=True, error={"message": "x"})
    assert [r.topic for r in _records(plan, State.ACTIVE, dead)][-1] == "ojs.dead.mail"
    discarded = _job(state=State.DISCARDED, attempt=3, error={"message": "x"})
    assert "ojs.dead.mail" not in [r.topic for r in _records(plan, State.ACTIVE, discarded)]
    again = _job(state=State.AVAILABLE, attempt=1)  # a retry's promotion: not a new job
    assert [r.topic for r in _records(plan, State.RETRYABLE, again)] == ["ojs.events"]


def test_events_can_be_switched_off_and_cron_events_are_keyed_by_cron() -> None:
    job = _job()
    assert [r.topic for r in _records(RecordPlan(events_enabled=False), None, job)] == [
        "ojs.queue.mail"
    ]
    spec = parse_cron(
        {"name": "nightly", "expression": "0 3 * * *", "job_template": {"type": "t"}}, 0
    )
    [record] = RecordPlan().records(cron_event("cron.triggered", spec, 0, {}))
    assert (record.topic, record.key) == ("ojs.events", b"nightly")


def test_topic_names_are_checked() -> None:
    with pytest.raises(ValueError, match="not a valid Kafka topic name"):
        KafkaTopics(events="ojs events")


# -- on a broker ------------------------------------------------------------------------


@asynccontextmanager
async def kafka_system(options: dict[str, Any], **more: Any) -> AsyncIterator[System]:
    async with open_system(KafkaBackend(**{**options, **more}), settings=FAST) as system:
        yield system


async def failing_every_fifth(job: Job) -> Any:
    if job.args[0] % 5 == 0 and job.attempt < 3:
        raise ValueError(f"attempt {job.attempt}")
    return {"n": job.args[0]}


def job_requests(count: int, start: int = 0) -> list[dict[str, Any]]:
    retry = {"max_attempts": 2, "initial_interval_ms": 10, "on_exhaustion": "dead_letter"}
    return [{"type": "t", "args": [n], "retry": retry} for n in range(start, start + count)]


async def settled(system: System) -> None:
    """Until no job of the default queue waits to run, runs, or waits for a retry (60 s
    at most)."""
    unsettled = (State.AVAILABLE, State.ACTIVE, State.RETRYABLE, State.SCHEDULED)
    with trio.fail_after(60):
        while True:
            _, counts = await system.queue_stats("default")
            if not any(counts.get(state) for state in unsettled):
                return
            await trio.sleep(0.05)


async def relayed(system: System) -> None:
    """Until every event stored is in Kafka (the backlog is 0; 60 s at most)."""
    with trio.fail_after(60):
        while True:
            if not (await system.health())["events"]["backlog"]:
                return
            await trio.sleep(0.05)


async def all_events(system: System) -> list[dict[str, Any]]:
    return await system.events(EventFilter(limit=1_000_000))


async def topic(options: dict[str, Any], name: str) -> list[TopicRecord]:
    return await trio.to_thread.run_sync(lambda: read_topic(options["brokers"], name))


def first_of_each(records: list[TopicRecord]) -> list[TopicRecord]:
    """The records in order without repeats (by event id): what a consumer that drops
    duplicates keeps."""
    seen: set[str] = set()
    kept = []
    for record in records:
        if record.headers["ojs-event-id"] not in seen:
            seen.add(record.headers["ojs-event-id"])
            kept.append(record)
    return kept


def assert_every_event_in_order(stored: list[dict[str, Any]], records: list[TopicRecord]) -> None:
    """Kafka's events topic (one partition) holds every stored event, in the same order
    per job, once duplicates are dropped."""
    kept = first_of_each(records)
    assert [r.value["id"] for r in kept] == [e["id"] for e in stored]
    by_job: dict[str, list[str]] = defaultdict(list)
    for record in kept:
        by_job[record.key or ""].append(record.value["type"])
    for job_id, types in by_job.items():
        assert types[0] == "job.enqueued", (job_id, types)


async def test_every_event_and_job_record_reaches_kafka(kafka_options: dict[str, Any]) -> None:
    async with kafka_system(kafka_options) as system:
        await system.enqueue_batch(job_requests(40))
        async with system.worker_group(["default"], {"t": failing_every_fifth}, concurrency=8):
            await settled(system)
        await relayed(system)
        stored = await all_events(system)
    names = KafkaTopics(kafka_options["events_topic"], kafka_options["queue_prefix"],
                        kafka_options["dead_prefix"])  # fmt: skip
    events = await topic(kafka_options, names.events)
    assert_every_event_in_order(stored, events)
    assert len(events) == len(stored)  # nothing published twice without a failure
    queue_records = await topic(kafka_options, names.queue("default"))
    assert sorted(r.value["args"][0] for r in queue_records) == list(range(40))
    assert {r.key for r in queue_records} == {"t"}
    assert all(r.value["state"] == "available" for r in queue_records)
    retries = await topic(kafka_options, names.retry("default"))
    dead = await topic(kafka_options, names.dead("default"))
    failing = sorted(n for n in range(40) if n % 5 == 0)
    assert sorted(r.value["args"][0] for r in retries) == failing
    assert sorted(r.value["args"][0] for r in dead) == failing  # 2 attempts, both failed
    assert all(r.headers["ojs-state"] == "discarded" for r in dead)


@pytest.fixture
def own_kafka() -> Iterator[KafkaBroker]:
    """A broker of this test alone, to freeze."""
    with KafkaBroker() as broker:
        yield broker


async def test_kafka_away_keeps_every_event_and_refuses_new_work_at_the_limit(
    own_kafka: KafkaBroker, redis_url: str
) -> None:
    options = {**kafka_topics(own_kafka.url), "redis_url": redis_url, "timeout": 0.5}
    # Retention far below the backlog: the hold, not retention, decides what is kept.
    async with kafka_system(options, outbox_limit=60, event_retention=5) as system:
        await system.enqueue_batch(job_requests(10))
        await relayed(system)
        with own_kafka.frozen():
            accepted = 10
            with trio.fail_after(30):
                while True:
                    try:
                        await system.enqueue_batch(job_requests(10, accepted))
                    except OutboxFull as error:
                        refused = error
                        break
                    accepted += 10
                    await trio.sleep(0.3)  # the gate reads the backlog every 250 ms
            assert refused.status == 503 and refused.code == "backend_unavailable"
            assert refused.details["limit"] == 60 and refused.details["backlog"] >= 60
            health = await system.health()
            assert health["status"] == "degraded"
            assert health["events"]["status"] == "full" and health["events"]["last_error"]
            backlog = health["events"]["backlog"]
            metrics = (await system.metrics.exposition()).decode()
            assert f'ojs_outbox_backlog{{sink="kafka-events"}} {backlog:.1f}' in metrics
            assert 'ojs_outbox_limit{sink="kafka-events"} 60.0' in metrics
            assert 'ojs_event_relay_holding{sink="kafka-events"} 1.0' in metrics
            # Accepted jobs still run while Kafka is away (their state is in Redis).
            async with system.worker_group(["default"], {"t": failing_every_fifth}):
                await settled(system)
        await relayed(system)
        await system.enqueue({"type": "t", "args": [-1]})  # admitted again
        await relayed(system)
        health = await system.health()
        assert health["status"] == "ok" and "last_error" not in health["events"]
        metrics = (await system.metrics.exposition()).decode()
        assert 'ojs_outbox_backlog{sink="kafka-events"} 0.0' in metrics
        assert 'ojs_event_relay_failures_total{sink="kafka-events"}' in metrics
        stored_ids = {e["id"] for e in await all_events(system)}
    events = await topic(options, options["events_topic"])
    published = {r.headers["ojs-event-id"] for r in events}
    # Retention trimmed the outbox since, so compare with what every job must have had.
    job_ids = {r.value["data"]["job_id"] for r in events}
    assert {f"evt_{job_id}_0_0" for job_id in job_ids} <= published  # each job's enqueued
    assert len(job_ids) == accepted + 1
    assert stored_ids <= published
    counts = defaultdict(int)
    for record in first_of_each(events):
        counts[record.value["type"]] += 1
    assert counts["job.enqueued"] >= accepted + 1 and counts["job.started"] >= accepted
    assert counts["job.completed"] + counts["job.discarded"] == accepted


async def test_a_ten_second_outage_under_load_loses_no_event(
    own_kafka: KafkaBroker, redis_url: str
) -> None:
    """The issue's check: the broker away for 10 s while jobs are enqueued and run; then
    every lifecycle event of every job is in the events topic, in order per job."""
    options = {**kafka_topics(own_kafka.url), "redis_url": redis_url, "timeout": 1.0}
    batches = itertools.count()
    numbers: dict[str, int] = {}  # job id -> its argument, which decides its lifecycle
    async with kafka_system(options, event_retention=1_000_000) as system:
        async with system.worker_group(["default"], {"t": failing_every_fifth}, concurrency=8):
            async with trio.open_nursery() as load:

                async def enqueue_for(seconds: float) -> None:
                    # Stops between batches, never inside one (an enqueue cut off there
                    # may be stored without its ids being noted).
                    deadline = trio.current_time() + seconds
                    while trio.current_time() < deadline:
                        start = next(batches) * 20
                        jobs = await system.enqueue_batch(job_requests(20, start))
                        numbers.update((job.id, job.args[0]) for job in jobs)
                        await trio.sleep(0.05)

                load.start_soon(enqueue_for, 14.0)
                await trio.sleep(2.0)
                with own_kafka.frozen():
                    await trio.sleep(10.0)
            await settled(system)
        await relayed(system)
        stored = await all_events(system)
        assert system.event_relay is not None and system.event_relay.failures > 0
    records = await topic(options, options["events_topic"])
    assert {e["data"]["job_id"] for e in stored if e["type"] == "job.enqueued"} == set(numbers)
    assert_every_event_in_order(stored, records)
    lifecycles: dict[str, list[str]] = defaultdict(list)
    for record in first_of_each(records):
        lifecycles[record.value["data"]["job_id"]].append(record.value["type"])
    for job_id, n in numbers.items():
        assert lifecycles[job_id] == LIFECYCLE[n % 5 == 0], (job_id, n)


LIFECYCLE = {
    False: ["job.enqueued", "job.started", "job.completed"],
    True: ["job.enqueued", "job.started", "job.failed", "job.retrying", "job.enqueued",
           "job.started", "job.failed", "job.discarded"],
}  # fmt: skip
"""The events of a job of :func:`job_requests` run by :func:`failing_every_fifth`, by whether
it fails (every fifth)."""


async def test_a_publish_batches_by_partition_as_aiokafka_would_in_order_per_key(
    kafka_options: dict[str, Any],
) -> None:
    """Records of a publish land on the partition aiokafka's default partitioner picks for
    their key, in order per key, once each, also when a partition's share of the publish
    fills more than one batch (BATCH_BYTES)."""
    name, partitions = kafka_options["events_topic"], [0, 1, 2]
    producer = KafkaProducer(KafkaSettings(kafka_options["brokers"], partitions=len(partitions)))
    padding = "x" * 8000
    records = [
        Record(name, f"k{n % 20}".encode(), json.dumps([n, padding]).encode(), [("n", b"%d" % n)])
        for n in range(4 * BATCH_BYTES // len(padding))
    ]
    async with open_asyncio_bridge():
        await producer.start([name])
        try:
            await producer.publish(records)
        finally:
            await producer.close()
    found = await topic(kafka_options, name)
    assert sorted(r.value[0] for r in found) == list(range(len(records)))
    by_key: dict[str, list[TopicRecord]] = defaultdict(list)
    for record in found:
        by_key[record.key or ""].append(record)
    for key, kept in by_key.items():
        picked = DefaultPartitioner()(key.encode(), partitions, partitions)
        assert {r.partition for r in kept} == {picked}
        assert [r.value[0] for r in kept] == sorted(r.value[0] for r in kept)


async def test_kafka_unreachable_at_start_is_no_outage(redis_url: str, tmp_path: Path) -> None:
    broker = KafkaBroker(tmp_path)  # its port is chosen, nothing listens yet
    options = {**kafka_topics(broker.url), "redis_url": redis_url, "timeout": 0.5}
    try:
        async with kafka_system(options) as system:
            job = await system.enqueue({"type": "t", "args": [1]})
            assert (await system.health())["events"]["backlog"] == 1
            await trio.to_thread.run_sync(broker.start)
            await relayed(system)
        [record] = await topic(options, options["events_topic"])
        assert record.value["data"]["job_id"] == job.id
    finally:
        broker.close()


def test_two_processes_relay_every_event_once_in_order(
    kafka_options: dict[str, Any], tmp_path: Path
) -> None:
    """Both processes run a relay; the lease lets one publish: every event of jobs
    enqueued, fetched and acked through both is in Kafka once, in outbox order."""
    env = kafka_env(kafka_options)
    servers = [OjsServer(["--backend", "kafka"], tmp_path / f"{n}.log", env=env) for n in "ab"]
    try:
        with httpx.Client(timeout=10) as client:
            for n in range(40):
                url = servers[n % 2].url
                body = {"type": "t", "args": [n]}
                assert client.post(f"{url}/ojs/v1/jobs", json=body).status_code == 201
            done = 0
            while done < 40:
                url = servers[done % 2].url
                fetched = client.post(f"{url}/ojs/v1/workers/fetch",
                                      json={"queues": ["default"], "count": 5}).json()["jobs"]  # fmt: skip
                for job in fetched:
                    other = servers[(done + 1) % 2].url
                    acked = client.post(f"{other}/ojs/v1/workers/ack", json={"job_id": job["id"]})
                    assert acked.status_code == 200, acked.text
                    done += 1
            deadline = time.monotonic() + 30
            while client.get(f"{servers[0].url}/ojs/v1/health").json()["events"]["backlog"]:
                assert time.monotonic() < deadline, "the relay did not catch up"
                time.sleep(0.05)
            relays = [
                client.get(f"{s.url}/ojs/v1/health").json()["events"]["relay"] for s in servers
            ]
            stored = client.get(f"{servers[1].url}/ojs/v1/events", params={"limit": 1000}).json()
    finally:
        for server in servers:
            server.stop()
    assert sorted(relays) == ["publishing", "standby"]
    records = read_topic(kafka_options["brokers"], kafka_options["events_topic"])
    assert len(stored["events"]) == 40 * 3
    assert_every_event_in_order(stored["events"], records)
    assert len(records) == len(stored["events"])  # one publisher: nothing twice
    for server in servers:
        assert "Traceback" not in server.log_path.read_text(errors="replace")


@pytest.mark.parametrize("point", ["kafka.published", "kafka.held"])
def test_a_crash_between_publishing_and_the_cursor_loses_no_event(
    kafka_options: dict[str, Any], tmp_path: Path, point: str
) -> None:
    """The crash windows of the relay (README, "Kafka backend"): the process dies after
    Kafka acknowledged a batch but before the outbox's hold moved past it
    (``kafka.published``), or after that but before the cursor did (``kafka.held``).
    Restarted, it publishes that batch again: every event is in Kafka, in order, and
    the repeats carry the ids to drop them by."""
    env = kafka_env(kafka_options)
    crashing = {**env, "OJS_CRASH_AT": point, "OJS_CRASH_AFTER": "2"}
    server = OjsServer(["--backend", "kafka"], tmp_path / "a.log", env=crashing)
    job_ids: list[str] = []
    with httpx.Client(timeout=10) as client:
        for n in range(60):
            if server.process.poll() is not None:
                break
            try:
                answer = client.post(f"{server.url}/ojs/v1/jobs", json={"type": "t", "args": [n]})
            except httpx.TransportError:
                break
            job_ids.append(answer.json()["job"]["id"])
            time.sleep(0.05)  # one relay batch or so per enqueue
        assert server.process.wait(timeout=30) == -9, "the crash point was not reached"
        server.stop()
        server = OjsServer(["--backend", "kafka"], tmp_path / "b.log", env=env)
        try:
            # Caught up: nothing waits (the backlog counts from the hold), and this
            # process's relay has published again what came after the committed cursor
            # (after the dead process's lease ran out).
            deadline = time.monotonic() + 30
            while True:
                events = client.get(f"{server.url}/ojs/v1/health").json()["events"]
                if not events["backlog"] and events.get("published"):
                    break
                assert time.monotonic() < deadline, "the relay did not catch up"
                time.sleep(0.05)
            stored = client.get(f"{server.url}/ojs/v1/events", params={"limit": 1000}).json()
        finally:
            server.stop()
    records = read_topic(kafka_options["brokers"], kafka_options["events_topic"])
    # (a job whose enqueue was in flight at the crash may be stored, unanswered)
    assert [e["data"]["job_id"] for e in stored["events"]][: len(job_ids)] == job_ids
    assert_every_event_in_order(stored["events"], records)
    assert len(records) > len(stored["events"])  # the batch published again
