"""The EventRelay: the event outbox handed to an external sink (``EventSink``), at least
once, in order, by one process of those sharing a store (a lease), on the memory and
SQLite backends with trio's autojump clock.

The sinks are the backends themselves with a ``publish_events`` that keeps what it is
given in a list (an in-process sink), as the NATS and Kafka backends publish theirs."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from trio.testing import MockClock

from ojs_actors.backends import Backend, EventFilter, EventSink, MemoryBackend, SqliteBackend
from ojs_actors.core import BackendUnavailable
from ojs_actors.system import Settings, System, open_system
from ojs_actors.system.clock import Clock
from ojs_actors.system.event_cursor import CURSOR_PREFIX
from ojs_actors.system.event_relay import LEASE_PREFIX, LEASE_SECONDS, LINGER_SECONDS, EventRelay

POLL = 1.0
START = 1_767_225_600_000  # 2026-01-01T00:00:00Z
RELAY = "test-events"


class CollectingSink:
    """``publish_events`` keeping the events in :attr:`published`. While :attr:`down`
    (a number of calls), each call takes the first :attr:`takes` events of its batch,
    then raises :class:`BackendUnavailable`, as a broker lost halfway through would;
    while :attr:`gate` is set, calls wait for it to be set."""

    relay_name = RELAY

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.published: list[dict[str, Any]] = []
        self.calls = 0
        self.down = 0
        self.takes = 0
        self.taken_while_failing: set[str] = set()
        self.gate: trio.Event | None = None

    async def publish_events(self, events: Sequence[dict[str, Any]]) -> None:
        self.calls += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.down:
            self.down -= 1
            taken = list(events[: self.takes])
            self.published.extend(taken)
            self.taken_while_failing.update(e["id"] for e in taken)
            raise BackendUnavailable("sink: connection lost")
        self.published.extend(events)


class ListSink(CollectingSink):
    """A sink of its own, beside the store."""


class SinkMemory(CollectingSink, MemoryBackend):
    pass


class SinkSqlite(CollectingSink, SqliteBackend):
    pass


Sink = SinkMemory | SinkSqlite


def ids(events: Sequence[dict[str, Any]]) -> list[str]:
    return [event["id"] for event in events]


def clock_at(start_ms: int) -> Clock:
    """Epoch ms that reads ``start_ms`` at trio time 0 (one clock for every system)."""
    return lambda: start_ms + int(trio.current_time() * 1000)


@pytest.fixture(params=["memory", "sqlite"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def clock(kind: str) -> MockClock:
    """trio's autojump clock. SQLite answers from a thread, idle for a moment in real time
    while it works; jumping then would run the clock ahead of it."""
    return MockClock(autojump_threshold=0 if kind == "memory" else 0.01)


@pytest.fixture
def new_sink(kind: str, tmp_path: Path) -> Callable[[], Sink]:
    """Makes a sink backend over the test's one store (as processes sharing it do)."""
    if kind == "memory":
        shared = SinkMemory()
        return lambda: shared
    return lambda: SinkSqlite(tmp_path / "ojs.db", synchronous="normal")


@asynccontextmanager
async def running(backend: Backend, poll: float = POLL) -> AsyncIterator[System]:
    async with open_system(
        backend, clock=clock_at(START), settings=Settings(poll_interval=poll)
    ) as system:
        yield system


async def run_jobs(system: System, count: int, queue: str = "q") -> list[str]:
    """Enqueue ``count`` jobs, then fetch and ack them: three events per job."""
    made = []
    for n in range(count):
        job = await system.enqueue({"type": "t", "args": [n], "options": {"queue": queue}})
        made.append(job.id)
    fetched = []
    while len(fetched) < count:
        fetched += await system.fetch([queue], count=count, worker_id="w", wait=POLL)
    for job in fetched:
        await system.ack(job.id)
    return made


async def outbox(system: System) -> list[str]:
    return ids(await system.events(EventFilter(limit=100_000)))


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 30.0) -> None:
    """Wait until ``check()`` holds, looking every (simulated) tenth of a second."""
    deadline = trio.current_time() + within
    while not await check():
        assert trio.current_time() < deadline, f"not within {within} s"
        await trio.sleep(POLL / 10)


async def relayed(system: System, *sinks: Sink) -> None:
    """Until the sinks together hold every event of the outbox."""

    async def done() -> bool:
        expected = set(await outbox(system))
        return expected <= {e["id"] for sink in sinks for e in sink.published}

    await eventually(done)


def relay_of(system: System) -> EventRelay:
    relay = system.event_relay
    assert relay is not None
    return relay


# -- one process ---------------------------------------------------------------------------


async def test_every_event_is_published_once_in_outbox_order(
    kind: str, clock: MockClock, new_sink: Callable[[], Sink]
) -> None:
    sink = new_sink()
    async with running(sink) as system:
        jobs = await run_jobs(system, 5)
        await relayed(system, sink)
        expected = await outbox(system)
        assert len(expected) == 3 * len(jobs)  # enqueued, started, completed
        assert ids(sink.published) == expected
        assert [e["data"]["job_id"] for e in sink.published if e["type"] == "job.completed"] == (
            jobs
        )
        relay = relay_of(system)
        assert relay.holding and relay.published == len(expected) and relay.lag == 0
        lease = await system.backend.load_snapshot(f"{LEASE_PREFIX}{RELAY}")
        assert lease is not None and lease["holder"] == relay.holder
        assert lease["until"] > system.clock()
        cursor = await system.backend.load_snapshot(f"{CURSOR_PREFIX}{RELAY}")
        assert cursor == {"after": expected[-1]}
        # Nothing new: nothing published again, however long it waits.
        await trio.sleep(5 * LEASE_SECONDS)
        assert ids(sink.published) == expected
    calls = sink.calls
    await trio.sleep(5 * POLL)  # the system is closed: its relay is gone with it
    assert sink.calls == calls


async def test_a_change_through_this_process_wakes_the_relay_at_once(
    autojump_clock: MockClock,
) -> None:
    """Woken by the change, it lingers a moment (LINGER_SECONDS) for the changes that
    follow, then relays them together: long before its next poll (a minute here)."""
    sink = SinkMemory()
    async with running(sink, poll=60.0) as system:
        await trio.sleep(1.0)  # the relay took its lease and waits
        started = trio.current_time()
        job = await system.enqueue({"type": "t", "args": []})
        await trio.sleep(LINGER_SECONDS / 2)
        other = await system.enqueue({"type": "t", "args": []})
        await trio.testing.wait_all_tasks_blocked()
        assert sink.published == []  # still lingering
        await trio.sleep(LINGER_SECONDS)
        await trio.testing.wait_all_tasks_blocked()
        assert [e["data"]["job_id"] for e in sink.published] == [job.id, other.id]
        assert trio.current_time() - started < 2 * LINGER_SECONDS


async def test_without_a_sink_no_relay_runs() -> None:
    async with open_system(MemoryBackend()) as system:
        assert not isinstance(system.backend, EventSink)
        assert system.event_relay is None
        assert "event-relay" not in system.root
    assert isinstance(SinkMemory(), EventSink)


async def test_a_sink_that_fails_for_a_while_gets_every_event_after(
    kind: str, clock: MockClock, new_sink: Callable[[], Sink]
) -> None:
    sink = new_sink()
    async with running(sink) as system:
        first = await run_jobs(system, 2)
        await relayed(system, sink)
        published_before = len(sink.published)
        sink.down, sink.takes = 4, 2  # four calls fail, each after taking two events
        await run_jobs(system, 3)
        await eventually(lambda: _true(sink.down == 0))
        relay = relay_of(system)
        assert relay.failures == 4 and relay.lag  # what the last failed read found
        await relayed(system, sink)
        expected = await outbox(system)
        got = ids(sink.published)
        assert list(dict.fromkeys(got)) == expected  # every event, in order
        assert len(expected) == 3 * (len(first) + 3)
        repeated = [event_id for event_id in set(got) if got.count(event_id) > 1]
        assert repeated and set(repeated) <= sink.taken_while_failing  # the failed batch only
        assert ids(sink.published[:published_before]) == expected[:published_before]


async def _true(value: bool) -> bool:
    return value


async def test_the_relay_restarts_after_a_crash_and_resumes_at_the_cursor(
    autojump_clock: MockClock,
) -> None:
    sink = SinkMemory()
    async with running(sink) as system:
        await run_jobs(system, 1)
        await relayed(system, sink)
        before = relay_of(system)
        calls, published = sink.calls, len(sink.published)
        sink.gate = trio.Event()  # the next publication hangs...
        await run_jobs(system, 1)
        await eventually(lambda: _true(sink.calls == calls + 1))
        system.root.kill_child("event-relay")  # ...and the relay is killed in it
        await trio.testing.wait_all_tasks_blocked()
        assert ("event-relay", True, 1) in system.root.which_children()
        after = relay_of(system)
        assert after is not before and after.holder == before.holder
        sink.gate.set()
        started = trio.current_time()
        await relayed(system, sink)
        assert trio.current_time() - started < LEASE_SECONDS / 2  # its own lease: no wait
        assert ids(sink.published) == await outbox(system)  # the first job's not again
        assert after.published == len(sink.published) - published == 3


# -- the lease: one relay per cluster ---------------------------------------------------------


@pytest.fixture
def sqlite_clock() -> MockClock:
    """The autojump clock for SQLite (see :func:`clock`)."""
    return MockClock(autojump_threshold=0.01)


async def test_two_systems_on_one_sqlite_file_relay_each_event_once(
    tmp_path: Path, sqlite_clock: MockClock
) -> None:
    """Two processes on one SQLite file: only the holder publishes; when it stops, the
    other takes over once the lease has run out, where the cursor was."""
    sinks = [SinkSqlite(tmp_path / "ojs.db", synchronous="normal") for _ in range(2)]
    stops = [trio.Event() for _ in sinks]

    async def serve(n: int, *, task_status: trio.TaskStatus[System]) -> None:
        async with running(sinks[n]) as system:
            task_status.started(system)
            await stops[n].wait()

    async with trio.open_nursery() as nursery:
        systems = [await nursery.start(serve, n) for n in range(len(sinks))]
        for n in range(3):
            await run_jobs(systems[n % 2], 2)
        await relayed(systems[0], *sinks)
        [held] = [n for n, system in enumerate(systems) if relay_of(system).holding]
        other = 1 - held
        assert ids(sinks[held].published) == await outbox(systems[0])
        assert sinks[other].published == [] and sinks[other].calls == 0
        # While both are up, more work through either is still relayed once, by the holder.
        await trio.sleep(3 * LEASE_SECONDS)  # renewed all along
        await run_jobs(systems[other], 2)
        await relayed(systems[0], *sinks)
        assert sinks[other].published == []
        relayed_by_holder = ids(sinks[held].published)
        # The holder's process stops (without giving the lease back).
        stops[held].set()
        await trio.testing.wait_all_tasks_blocked()
        closed_at = trio.current_time()
        survivor = systems[other]
        await run_jobs(survivor, 2)
        await trio.sleep(LEASE_SECONDS / 2)
        assert sinks[other].published == []  # the lease has not run out yet
        await relayed(survivor, *sinks)
        assert trio.current_time() - closed_at >= LEASE_SECONDS * 2 / 3
        assert trio.current_time() - closed_at <= LEASE_SECONDS + 2 * POLL
        expected = await outbox(survivor)
        assert relayed_by_holder + ids(sinks[other].published) == expected  # each once
        assert relay_of(survivor).holding
        stops[other].set()


async def test_a_holder_that_lost_its_lease_stops_publishing() -> None:
    """Two relays driven by hand over one store, on a clock of the test's own: a holder
    that could not renew in time finds the lease taken and publishes nothing more."""
    now = [START]
    store = MemoryBackend()  # no sink itself: the system runs no relay of its own
    sink = ListSink()
    a = EventRelay(store, sink, lambda: now[0], holder="a", lease=10.0)
    b = EventRelay(store, sink, lambda: now[0], holder="b", lease=10.0)
    async with open_system(store, clock=lambda: now[0]) as system:
        await system.enqueue({"type": "t", "args": []})
        assert await a.relay_once() == 1 and a.holding
        assert await b.relay_once() == 0 and not b.holding  # a holds it
        now[0] += 11_000  # a was away past its lease
        assert not a.holding
        await system.enqueue({"type": "t", "args": []})
        assert await b.relay_once() == 1 and b.holding  # taken over, after a's commit
        await system.enqueue({"type": "t", "args": []})
        assert await a.relay_once() == 0 and not a.holding  # its renewal fails: nothing sent
        assert await b.relay_once() == 1
        assert ids(sink.published) == ids(await system.events(EventFilter()))  # each once
        assert (a.published, b.published) == (1, 2)
        now[0] += 11_000  # b away too: a takes it back, at b's cursor
        assert await a.relay_once() == 0 and a.holding and not b.holding
        await system.enqueue({"type": "t", "args": []})
        assert await a.relay_once() == 1
        assert ids(sink.published) == ids(await system.events(EventFilter()))


# -- batches ----------------------------------------------------------------------------------


class CountingMemory(MemoryBackend):
    """A memory backend counting its outbox reads."""

    reads = 0

    async def read_events(self, query: EventFilter) -> list[dict[str, Any]]:
        self.reads += 1
        return await super().read_events(query)


class BatchedSink(ListSink):
    relay_batch = 4


async def test_the_sinks_batch_size_and_the_next_batch_read_while_one_is_published() -> None:
    store = CountingMemory()
    sink = BatchedSink()
    relay = EventRelay(store, sink, lambda: START, holder="a")
    assert relay.batch_size == 4
    async with open_system(store, clock=lambda: START) as system:
        for n in range(10):
            await system.enqueue({"type": "t", "args": [n]})
        expected = ids(await system.events(EventFilter()))
        store.reads = 0
        sink.gate = trio.Event()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(relay.relay_once)
            await trio.testing.wait_all_tasks_blocked()
            assert sink.calls == 1 and store.reads == 2  # the next batch, read meanwhile
            sink.gate.set()
        sink.gate = None
        assert await relay.relay_once() == 4 and store.reads == 3  # read ahead of the third
        assert await relay.relay_once() == 2  # the tail, read when its turn came
        assert await relay.relay_once() == 0
        assert ids(sink.published) == expected
        cursor = await store.load_snapshot(f"{CURSOR_PREFIX}{RELAY}")
        assert cursor == {"after": expected[-1]}


async def test_a_batch_read_ahead_of_a_failed_publication_waits_its_turn() -> None:
    store = MemoryBackend()
    sink = ListSink()
    relay = EventRelay(store, sink, lambda: START, holder="a", batch_size=3)
    async with open_system(store, clock=lambda: START) as system:
        for n in range(7):
            await system.enqueue({"type": "t", "args": [n]})
        expected = ids(await system.events(EventFilter()))
        assert await relay.relay_once() == 3
        sink.down, sink.takes = 1, 1  # the second batch fails after taking one event
        assert await relay.relay_once() is None
        assert [await relay.relay_once() for _ in range(3)] == [3, 1, 0]
        assert ids(sink.published) == expected[:4] + expected[3:]  # the failed batch again
        assert relay.published == 7 and relay.failures == 1
