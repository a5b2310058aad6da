"""The NATS backend against a real ``nats-server`` (see ``conftest.py``): what the contract
suite does not cover (priority lanes, writes split to fit a batch, the batch limit, ready
notices, the event subjects, the version check, an unreachable server)."""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator
from functools import partial
from typing import Any

import pytest
import trio

from ojs_actors import open_system
from ojs_actors.backends import EventFilter, open_backend
from ojs_actors.backends.nats import NatsBackend
from ojs_actors.backends.nats.connection import BatchTooLarge
from ojs_actors.core import BackendUnavailable, Duplicate, Job, State, lifecycle


@pytest.fixture
async def backend(nats_options: dict[str, Any]) -> AsyncIterator[NatsBackend]:
    async with open_backend("nats", **nats_options, batch_max_messages=10_000) as store:
        assert isinstance(store, NatsBackend)
        yield store


def make(job_id: str, *, priority: int = 0, queue: str = "q", **fields: Any) -> Job:
    fields.setdefault("created_at", 1_000)
    fields.setdefault("enqueued_at", fields["created_at"])
    return Job(id=job_id, type="t", args=[1, 2.5, [], {}], queue=queue, priority=priority, **fields)


async def test_priority_lanes_then_fifo_also_beyond_the_spec_range(backend: NatsBackend) -> None:
    jobs = [make("a"), make("b", priority=5), make("c"), make("d", priority=-3),
            make("e", priority=250), make("f", priority=100), make("g", priority=-400)]  # fmt: skip
    await backend.insert_jobs(jobs)
    claimed, _ = await backend.claim("q", 10, 2_000, "w", None)
    # 250 shares the lane of 100, -400 that of -100: FIFO within them
    assert [job.id for job in claimed] == ["e", "f", "b", "a", "c", "d", "g"]


async def test_writes_larger_than_a_batch_are_split_and_counted(backend: NatsBackend) -> None:
    await backend.insert_jobs([make("taken")])
    jobs = [make(f"j{i}", priority=i % 3) for i in range(2_500)]
    later = make("s", state=State.SCHEDULED, scheduled_at=9_000, enqueued_at=None)
    small = NatsBackend(backend.url, stream=backend.store.stream, prefix=backend.store.subjects.prefix,
                        storage="memory", batch_max_messages=600)  # fmt: skip
    async with open_backend(small):
        results = await small.insert_jobs([*jobs, make("taken"), later])
        assert all(isinstance(result, Job) for result in results[:2_500])
        assert isinstance(results[2_500], Duplicate) and results[2_501] is later
        assert await small.count_jobs("q") == {State.AVAILABLE: 2_501, State.SCHEDULED: 1}
        assert await small.next_due_at() == 9_000
        claimed, _ = await small.claim("q", 3, 2_000, "w", None)
        assert [job.id for job in claimed] == ["j2", "j5", "j8"]
        # 300 acks in one call: split too
        more, _ = await small.claim("q", 300, 2_000, "w", None)
        stored = await small.update_jobs([(lifecycle.ack(job, 2_001), job.version) for job in more])
        assert stored == [True] * 300
        counts = await small.count_jobs("q")
        assert counts[State.COMPLETED] == 300 and counts[State.ACTIVE] == 3


async def test_an_atomic_batch_the_server_cannot_take_is_refused_whole(
    backend: NatsBackend, nats_options: dict[str, Any]
) -> None:
    jobs = [make(f"j{i}") for i in range(400)]
    with pytest.raises(BatchTooLarge) as refused:  # over the configured limit: not sent
        async with open_backend(
            "nats", **{**nats_options, "stream": "BIG1", "prefix": "big1"}
        ) as small:
            await small.insert_jobs(jobs, atomic=True)
    assert refused.value.status == 413
    # configured above what the server takes: the server refuses it, nothing is stored
    huge = [make(f"h{i}") for i in range(4_000)]
    options = {**nats_options, "stream": "BIG2", "prefix": "big2", "batch_max_messages": 100_000}
    async with open_backend("nats", **options) as wrong:
        with pytest.raises(BatchTooLarge):
            await wrong.insert_jobs(huge, atomic=True)
        assert await wrong.count_jobs("q") == {}
        assert await wrong.get_jobs(["h0", "h3999"]) == [None, None]
    assert await backend.insert_jobs(jobs, atomic=True) == jobs  # within the limit: fine


async def test_a_restarted_system_finds_its_jobs(nats_options: dict[str, Any]) -> None:
    async with open_system(NatsBackend(**nats_options)) as system:
        await system.enqueue({"type": "report.build", "args": [42], "options": {"queue": "r"}})
        [job] = await system.fetch(["r"], count=10, worker_id="w1", wait=1.0)
        done = await system.ack(job.id, result={"ok": True})
        assert done.state is State.COMPLETED and done.result == {"ok": True}
    async with open_system(NatsBackend(**nats_options)) as system:
        assert (await system.info(job.id)).state is State.COMPLETED


async def test_events_go_to_their_subjects_once_per_id(backend: NatsBackend) -> None:
    await backend.insert_jobs([make("a"), make("b", queue="other")])
    [claimed], _ = await backend.claim("q", 1, 2_000, "w", None)
    await backend.update_jobs([(lifecycle.ack(claimed, 2_001), claimed.version)])
    events = await backend.read_events(EventFilter())
    assert [event["type"] for event in events] == [
        "job.enqueued", "job.enqueued", "job.started", "job.completed"
    ]  # fmt: skip
    store = backend.store
    async with store.client.subscribe(store.subjects.events("job.>")) as receive:
        await backend.publish_events(events)
        await backend.publish_events(events)  # again, as after a crash: dropped by id
        heard = []
        with trio.fail_after(5):
            while len(heard) < 2 * len(events):
                heard.append(await receive())  # live subscribers see every publish
    assert heard[0].subject == store.subjects.events("job.enqueued")
    kept = await store.js.get_batch(store.events_stream, store.subjects.events_all(), 1, 100)
    assert [json.loads(message.data)["id"] for message in kept] == [e["id"] for e in events]
    assert [message.subject for message in kept] == [
        store.subjects.events(event["type"]) for event in events
    ]


async def test_unreachable_nats_is_backend_unavailable_at_once() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    started = trio.current_time()
    with pytest.raises(BackendUnavailable):
        async with open_backend(NatsBackend(f"nats://127.0.0.1:{port}")):
            pass
    assert trio.current_time() - started < 1.0


async def test_a_server_older_than_2_12_is_refused_with_the_reason() -> None:
    """nats-server 2.9 (Debian's) accepts atomic-batch settings and ignores them; a
    server announcing such a version in its INFO is refused before anything is stored."""
    info = {"server_id": "old", "version": "2.9.10", "proto": 1, "headers": True,
            "jetstream": True, "max_payload": 1048576}  # fmt: skip

    async def old_server(stream: trio.SocketStream) -> None:
        await stream.send_all(b"INFO " + json.dumps(info).encode() + b"\r\n")
        buffer = b""
        async for data in stream:
            buffer += data
            while b"\r\n" in buffer:
                line, buffer = buffer.split(b"\r\n", 1)
                if line == b"PING":
                    await stream.send_all(b"PONG\r\n")

    async with trio.open_nursery() as nursery:
        [listener] = await nursery.start(partial(trio.serve_tcp, old_server, 0, host="127.0.0.1"))
        port = listener.socket.getsockname()[1]
        with pytest.raises(BackendUnavailable, match=r"2\.9\.10 .* too old.*2\.12"):
            async with open_backend(NatsBackend(f"nats://127.0.0.1:{port}")):
                pass
        nursery.cancel_scope.cancel()


async def test_a_system_relays_every_event_to_the_event_subjects(
    nats_options: dict[str, Any],
) -> None:
    backend = NatsBackend(**nats_options)
    async with open_system(backend) as system:
        assert system.event_relay is not None  # the backend is an EventSink
        for n in range(5):
            await system.enqueue({"type": "t", "args": [n], "options": {"queue": "relayed"}})
        for job in await system.fetch(["relayed"], count=5, worker_id="w"):
            await system.ack(job.id)
        expected = [event["id"] for event in await backend.read_events(EventFilter(limit=1_000))]
        assert len(expected) == 15
        store = backend.store
        with trio.fail_after(10):
            while True:
                kept = await store.js.get_batch(
                    store.events_stream, store.subjects.events_all(), 1, 100
                )
                if len(kept) >= len(expected):
                    break
                await trio.sleep(0.05)
    assert [json.loads(message.data)["id"] for message in kept] == expected
