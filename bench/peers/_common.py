"""What every peer's run shares: in-process counting, the three phases, the result.

A peer module supplies its enqueue and worker operations; the drivers here run the
workload's phases around them (see ``bench._workload``) with every wait bounded by the
run's ``timeout_s`` per phase. Counting and latency recording stay in this process, so
they add no Redis round trip to a peer's per-job path. Stdlib only, plus redis-py (which
every peer environment has) for FLUSHDB.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib import metadata

from bench._workload import LATENCY_GAP_S, LifecycleResult

# Phase 1 enqueues in chunks of this many jobs, checking the deadline between chunks.
ENQUEUE_CHUNK = 1000
# Async peers have no bulk enqueue: this many enqueue calls are kept in flight at once.
ASYNC_ENQUEUE_CONCURRENCY = 64
WAIT_POLL_S = 0.005


class PhaseTimeout(Exception):
    """A phase did not finish within the run's ``timeout_s``."""


class Recorder:
    """Counts completed jobs and records enqueue-to-start latencies, in-process, thread-safe.

    The count is cumulative over phases 2 and 3; :meth:`expect` sets the count a phase
    waits for and :attr:`reached_at` is the ``perf_counter`` time of the completion that
    reached it (the phase's last completion).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._reached = threading.Event()
        self._target = 0
        self.completed = 0
        self.reached_at = 0.0
        self.latencies_s: list[float] = []

    def expect(self, target: int) -> None:
        with self._lock:
            self._target = target
            self._reached.clear()
            if self.completed >= target:
                self.reached_at = time.perf_counter()
                self._reached.set()

    def job_started(self, enqueued_at: float) -> None:
        """Called first thing by the handler; phase 1–2 jobs carry ``enqueued_at == 0``."""
        if enqueued_at:
            started = time.time()
            with self._lock:
                self.latencies_s.append(started - enqueued_at)

    def job_completed(self) -> None:
        with self._lock:
            self.completed += 1
            if self.completed == self._target:
                self.reached_at = time.perf_counter()
                self._reached.set()

    def wait(self, deadline: float) -> bool:
        """Block until the expected count is reached or ``deadline`` (monotonic) passes."""
        return self._reached.wait(max(0.0, deadline - time.monotonic()))

    async def wait_async(self, deadline: float) -> bool:
        while not self._reached.is_set():
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(WAIT_POLL_S)
        return True


@dataclass
class SyncPeer:
    """A peer driven from a thread: blocking enqueue and worker control."""

    enqueue_chunk: Callable[[int], None]  # enqueue n phase-1 jobs (enqueued_at == 0)
    enqueue_one: Callable[[float], None]  # enqueue one latency job stamped with enqueued_at
    start_worker: Callable[[], None]  # returns once the worker runs (in threads of its own)
    stop_worker: Callable[[], None]


@dataclass
class AsyncPeer:
    """A peer driven from an asyncio event loop, its worker a task in the same loop."""

    enqueue_one: Callable[[float], Awaitable[None]]  # one job; enqueued_at == 0 in phase 1
    start_worker: Callable[[], Awaitable[None]]  # starts the worker's task(s) and returns
    stop_worker: Callable[[], Awaitable[None]]


@dataclass
class Figures:
    """What the phases measured; turned into a ``LifecycleResult`` by :func:`result`."""

    enqueue_per_s: float = float("nan")
    process_per_s: float = float("nan")
    completed: int = 0
    latency_samples_s: tuple[float, ...] = ()
    timed_out: str = ""  # which phase timed out, if one did


def run_sync_phases(
    peer: SyncPeer, recorder: Recorder, jobs: int, latency_jobs: int, timeout_s: float
) -> Figures:
    figures = Figures()
    worker_running = False
    try:
        deadline = time.monotonic() + timeout_s
        started = time.perf_counter()
        remaining = jobs
        while remaining > 0:
            if time.monotonic() > deadline:
                raise PhaseTimeout("enqueue")
            chunk = min(ENQUEUE_CHUNK, remaining)
            peer.enqueue_chunk(chunk)
            remaining -= chunk
        figures.enqueue_per_s = jobs / (time.perf_counter() - started)

        recorder.expect(jobs)
        worker_started = time.perf_counter()
        worker_running = True
        peer.start_worker()
        if not recorder.wait(time.monotonic() + timeout_s):
            raise PhaseTimeout("process")
        figures.process_per_s = jobs / (recorder.reached_at - worker_started)
        figures.completed = jobs

        recorder.expect(jobs + latency_jobs)
        deadline = time.monotonic() + timeout_s
        for _ in range(latency_jobs):
            if time.monotonic() > deadline:
                raise PhaseTimeout("latency")
            peer.enqueue_one(time.time())
            time.sleep(LATENCY_GAP_S)
        if not recorder.wait(deadline):
            raise PhaseTimeout("latency")
        figures.latency_samples_s = tuple(recorder.latencies_s)
    except PhaseTimeout as exc:
        figures.timed_out = str(exc)
        figures.completed = min(recorder.completed, jobs)
    finally:
        if worker_running:
            peer.stop_worker()
    return figures


async def run_async_phases(
    peer: AsyncPeer, recorder: Recorder, jobs: int, latency_jobs: int, timeout_s: float
) -> Figures:
    figures = Figures()
    worker_running = False
    try:
        deadline = time.monotonic() + timeout_s
        started = time.perf_counter()
        await _enqueue_concurrently(peer.enqueue_one, jobs, deadline)
        figures.enqueue_per_s = jobs / (time.perf_counter() - started)

        recorder.expect(jobs)
        worker_started = time.perf_counter()
        worker_running = True
        await peer.start_worker()
        if not await recorder.wait_async(time.monotonic() + timeout_s):
            raise PhaseTimeout("process")
        figures.process_per_s = jobs / (recorder.reached_at - worker_started)
        figures.completed = jobs

        recorder.expect(jobs + latency_jobs)
        deadline = time.monotonic() + timeout_s
        for _ in range(latency_jobs):
            if time.monotonic() > deadline:
                raise PhaseTimeout("latency")
            await peer.enqueue_one(time.time())
            await asyncio.sleep(LATENCY_GAP_S)
        if not await recorder.wait_async(deadline):
            raise PhaseTimeout("latency")
        figures.latency_samples_s = tuple(recorder.latencies_s)
    except PhaseTimeout as exc:
        figures.timed_out = str(exc)
        figures.completed = min(recorder.completed, jobs)
    finally:
        if worker_running:
            await peer.stop_worker()
    return figures


async def _enqueue_concurrently(
    enqueue_one: Callable[[float], Awaitable[None]], jobs: int, deadline: float
) -> None:
    """``jobs`` enqueues, ``ASYNC_ENQUEUE_CONCURRENCY`` in flight, stopping at ``deadline``."""
    left = jobs

    async def sender() -> None:
        nonlocal left
        while left > 0 and time.monotonic() < deadline:
            left -= 1
            await enqueue_one(0.0)

    await asyncio.gather(*(sender() for _ in range(min(ASYNC_ENQUEUE_CONCURRENCY, jobs))))
    if left > 0:
        raise PhaseTimeout("enqueue")


def result(
    subject: str, settings: str, figures: Figures, jobs: int, latency_jobs: int
) -> LifecycleResult:
    """The run's result; a timed-out phase leaves ``ok`` false and says so in ``settings``."""
    if figures.timed_out:
        settings = f"TIMED OUT in the {figures.timed_out} phase; {settings}"
    return LifecycleResult.measured(
        subject,
        jobs=jobs,
        completed=figures.completed,
        enqueue_per_s=figures.enqueue_per_s,
        process_per_s=figures.process_per_s,
        latencies_s=figures.latency_samples_s,
        latency_jobs=latency_jobs,
        settings=settings,
    )


def flush_db(redis_url: str) -> None:
    """Every run starts from an empty database."""
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        client.flushdb()
    finally:
        client.close()


def versions(*distributions: str) -> str:
    """``"huey 3.5.4, redis 8.1.0, hiredis 3.5.0"``: what this environment runs."""
    found = []
    for name in (*distributions, "redis", "hiredis"):
        try:
            found.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            found.append(f"{name} (not installed)")
    return ", ".join(found)
