"""Queue bounds (ojs-backpressure): a queue's ``max_depth`` and ``max_size_bytes``
(:mod:`.queue_bound`; the size is approximated, :mod:`.queue_size`) and what enqueue
does at them.

The bound is part of the queue's record (the snapshot ``queue:<name>``, beside its pause
state), so every process sharing the backend applies the same one: a QueueActor re-reads
its record as it does for the pause state (at most ``poll_interval`` stale). Depth is
the queue's non-terminal jobs, counted by the backend when a bounded queue takes jobs.
Within one process the QueueActor admits enqueues one run at a time, so the bound is
exact there; processes enqueueing into one bounded queue at the same instant may pass
it by the jobs of their concurrent runs.

Strategies (§5): ``reject``: a job past the bound is not stored, the enqueue answers
429 ``QUEUE_FULL`` (a batch is refused whole, §9.3). ``block``: the same refusal, which
the enqueue's caller may wait out (:meth:`PressureBoard.blocking`, the
``OJS-Block-Timeout`` header). ``drop_oldest``: the queue's next ready jobs are
discarded to make room (``backpressure.dropped``, rendered from the discard itself).

The ``backpressure.*`` events that are no job's change (``rejected``, ``warning``,
``cleared``) are written with the snapshot ``backpressure:<queue>`` (whether the queue
is past its warning threshold, and its refusal count), by compare-and-set, so processes
sharing the backend tell each crossing once.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from contextvars import ContextVar
from typing import Any, TypeVar

import trio

from ..backends import Backend
from ..core import InvalidRequest, Job, State, lifecycle
from ..core.errors import QueueFull
from ..core.events import envelope, new_event_id
from .clock import Clock
from .queue_bound import STRATEGIES, Bound, depth_of, parse_bound
from .queue_size import SizeGauge, batch_size
from .queue_writes import TransitionWriter

RETRY_AFTER_SECONDS = 1
BLOCK_TIMEOUT_HEADER = "OJS-Block-Timeout"
MAX_BLOCK_TIMEOUT_S = 60.0
"""The longest an enqueue may wait for room (``OJS-Block-Timeout``)."""
ROOM_RECHECK_S = 1.0
"""How often a blocked enqueue tries again without news of room in this process (room
made through another process sharing the backend is not announced here)."""
DROPPING_WORKER = "ojs:backpressure"
"""The worker id of the claim that takes jobs to drop (``drop_oldest``)."""
LOG_PREFIX = "backpressure:"
MAX_CAS_ATTEMPTS = 5
T = TypeVar("T")
BLOCK_WAIT: ContextVar[float] = ContextVar("block_wait", default=0.0)
"""Seconds the enqueues of the current request may wait for room (``OJS-Block-Timeout``)."""


def parse_block_timeout(value: str | None) -> float:
    """Seconds of the ``OJS-Block-Timeout`` request header (§5.2; absent: 0, no wait)."""
    if value is None:
        return 0.0
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not math.isfinite(seconds) or not 0 <= seconds <= MAX_BLOCK_TIMEOUT_S:
        raise InvalidRequest(
            f"'{BLOCK_TIMEOUT_HEADER}' must be a number of seconds from 0 to "
            f"{MAX_BLOCK_TIMEOUT_S:g}.",
            details={"header": BLOCK_TIMEOUT_HEADER, "received": value},
        )
    return seconds


class PressureBoard:
    """Per process: the latest depth of each bounded queue as its QueueActor saw it, for
    the warning headers of enqueue responses (§7.3) without another backend call, news
    of room made in a queue for the enqueues blocked on it (§5.2), and the enqueues this
    process refused and the jobs it dropped, per queue (the §10.2 metrics)."""

    def __init__(self) -> None:
        self._seen: dict[str, tuple[int, int, Bound]] = {}
        self._room: dict[str, trio.Event] = {}
        self.rejected: Counter[str] = Counter()
        self.dropped: Counter[str] = Counter()

    def pressures(self) -> dict[str, float]:
        """Each bounded queue's fill (depth or size over its bound, at most 1.0)."""
        return {
            queue: min(bound.fill(depth, size_bytes), 1.0)
            for queue, (depth, size_bytes, bound) in self._seen.items()
        }

    def note(self, queue: str, depth: int, bound: Bound | None, size_bytes: int = 0) -> None:
        if bound is None:
            self._seen.pop(queue, None)
        else:
            self._seen[queue] = (depth, size_bytes, bound)

    def headers(self, queue: str) -> dict[str, str]:
        """``X-OJS-Queue-*`` warning headers if ``queue`` is past its warning threshold."""
        seen = self._seen.get(queue)
        if seen is None:
            return {}
        depth, size_bytes, bound = seen
        pressure = bound.fill(depth, size_bytes)
        if pressure < bound.warning_threshold:
            return {}
        headers = QueueFull(
            queue, depth, bound.max_depth, size=_size_of(bound, size_bytes)
        ).response_headers()
        del headers["Retry-After"]
        return headers | {"X-OJS-Queue-Pressure": f"{pressure:.2f}"}

    def freed(self, queue: str) -> None:
        """Jobs of ``queue`` finished: enqueues blocked on it try again."""
        event = self._room.pop(queue, None)
        if event is not None:
            event.set()

    async def blocking(
        self, attempt: Callable[[], Awaitable[T]], wait_s: float, log: PressureLog
    ) -> T:
        """``attempt()`` (an enqueue), tried again while it is refused by a ``block`` queue
        at its bound, for up to ``wait_s`` seconds (§5.2); the last refusal is raised,
        told as ``backpressure.rejected``."""
        deadline = trio.current_time() + wait_s
        while True:
            try:
                return await attempt()  # never cancelled midway: the job could be stored
            except QueueFull as full:
                if full.strategy != "block":
                    raise
                if trio.current_time() >= deadline:
                    self.rejected[full.queue] += 1
                    await log.rejected(full.queue, full.depth, full.bound, [full.job_type])
                    raise
                queue = full.queue
            room = self._room.setdefault(queue, trio.Event())
            with trio.move_on_at(min(deadline, trio.current_time() + ROOM_RECHECK_S)):
                await room.wait()


class PressureLog:
    """The ``backpressure.*`` events of a process's bounded queues that are no job's
    change, written with the snapshot ``backpressure:<queue>`` by compare-and-set."""

    def __init__(self, backend: Backend, clock: Clock) -> None:
        self._backend = backend
        self._clock = clock
        self._pressured: dict[str, bool] = {}
        """Whether each queue was past its warning threshold, as last written or read."""

    async def rejected(
        self, queue: str, depth: int, bound: int, job_types: Sequence[str | None]
    ) -> None:
        """``backpressure.rejected`` (§10.1, BP-004), one per enqueue refused."""
        now = self._clock()
        events = [
            _event("backpressure.rejected", queue, now, {"depth": depth, "bound": bound, "job_type": kind})
            for kind in job_types
        ]  # fmt: skip

        def change(state: dict[str, Any]) -> bool:
            state["rejected_total"] = int(state.get("rejected_total", 0)) + len(events)
            return True

        await self._update(queue, change, events)

    async def pressure(self, queue: str, depth: int, bound: Bound, size_bytes: int = 0) -> None:
        """``backpressure.warning`` when the depth (or size) reaches the warning threshold,
        ``backpressure.cleared`` when it is below it again (each crossing once)."""
        past = bound.fill(depth, size_bytes) >= bound.warning_threshold
        if self._pressured.get(queue) is past:
            return
        kind = "backpressure.warning" if past else "backpressure.cleared"
        data = {"depth": depth, "bound": bound.max_depth}
        if bound.max_size_bytes:
            data |= {"size_bytes": size_bytes, "max_size_bytes": bound.max_size_bytes}
        events = [_event(kind, queue, self._clock(), data)]

        def change(state: dict[str, Any]) -> bool:
            if bool(state.get("pressured")) is past:
                return False
            state["pressured"] = past
            return True

        await self._update(queue, change, events)
        self._pressured[queue] = past

    async def _update(
        self,
        queue: str,
        change: Callable[[dict[str, Any]], bool],
        events: Sequence[dict[str, Any]],
    ) -> None:
        key = LOG_PREFIX + queue
        for _ in range(MAX_CAS_ATTEMPTS):
            loaded = await self._backend.load_snapshot_versioned(key)
            state, version = loaded if loaded is not None else ({"queue": queue}, None)
            if not change(state):
                return
            if await self._backend.save_snapshot_if(key, state, version, events=events):
                return


def _size_of(bound: Bound, size_bytes: int) -> tuple[int, int] | None:
    return (size_bytes, bound.max_size_bytes) if bound.max_size_bytes else None


def _drop_for_room(job: Job, now: int) -> Job:
    return lifecycle.dropped(job, now, lifecycle.BACKPRESSURE_DROPPED_ERROR)


def _event(kind: str, queue: str, now: int, data: dict[str, Any]) -> dict[str, Any]:
    return envelope(kind, queue, now, {"queue": queue, **data}, new_event_id())


class DepthGuard:
    """A queue's depth bound as its QueueActor applies it: the verdicts for the enqueues
    of a run, from one count of the queue, with the depth seen noted on the board and
    told as events. The actor keeps the bound fresh (it is part of the queue's record)
    and persists it; its ``writer`` drops jobs to make room (``drop_oldest``)."""

    def __init__(
        self,
        queue: str,
        backend: Backend,
        pressure: PressureBoard | None,
        log: PressureLog,
        writer: TransitionWriter,
        refresh_ms: int = 1_000,
    ) -> None:
        self.queue = queue
        self.bound: Bound | None = None
        """The queue's depth bound (ojs-backpressure), ``None``: unbounded."""
        self._backend = backend
        self._pressure = pressure
        self._log = log
        self._writer = writer
        self._size = SizeGauge(queue, backend, writer.clock, refresh_ms)

    async def verdicts(
        self,
        sizes: Sequence[int],
        job_types: Sequence[str | None] | None = None,
        batches: Sequence[Sequence[Job]] | None = None,
    ) -> list[QueueFull | None] | None:
        """Per enqueue of a run (its number of jobs, its first job's type, its jobs), the
        error refusing it if it would pass the queue's depth or size bound, taken in
        order; ``None`` if the queue is unbounded. Each enqueue is taken whole or refused
        whole (a batch too, §9.3); under ``drop_oldest``, ready jobs are dropped to make
        it fit."""
        bound = self.bound
        if bound is None:
            self.forget_pressure()
            return None
        depth = depth_of(await self._backend.count_jobs(self.queue))
        sized = bool(bound.max_size_bytes)
        size_bytes = await self._size.total() if sized else 0
        verdicts: list[QueueFull | None] = []
        refused: list[str | None] = []
        for index, size in enumerate(sizes):
            adding = batch_size(batches[index]) if sized and batches else 0
            fits = not bound.over(size, adding)  # in an empty queue
            while bound.over(depth + size, size_bytes + adding) and fits and bound.drops:
                excess = depth + size - bound.max_depth if bound.max_depth else 0
                dropped = await self._make_room(max(excess, 1))
                if not dropped:
                    break
                if self._pressure is not None:
                    self._pressure.dropped[self.queue] += len(dropped)
                depth, freed = depth - len(dropped), batch_size(dropped)
                size_bytes -= freed
                self._size.changed(-freed)
            if bound.over(depth + size, size_bytes + adding):
                full = QueueFull(
                    self.queue,
                    depth,
                    bound.max_depth,
                    retry_after=RETRY_AFTER_SECONDS,
                    strategy=bound.strategy,
                    size=(size_bytes, bound.max_size_bytes) if sized else None,
                )
                full.job_type = job_types[index] if job_types else None
                verdicts.append(full)
                if bound.strategy != "block":  # a blocked enqueue may wait: told if it fails
                    refused.append(full.job_type)
            else:
                depth += size
                size_bytes += adding
                self._size.changed(adding)
                verdicts.append(None)
        if self._pressure is not None:
            self._pressure.note(self.queue, depth, bound, size_bytes)
            self._pressure.rejected[self.queue] += len(refused)
        if refused:
            await self._log.rejected(self.queue, depth, bound.max_depth, refused)
        await self._log.pressure(self.queue, depth, bound, size_bytes)
        return verdicts

    async def _make_room(self, count: int) -> list[Job]:
        """Drop up to ``count`` of the queue's next ready jobs: claimed, so no worker takes
        them meanwhile, then discarded unrun, attempt unspent. The jobs dropped."""
        writer = self._writer
        claimed, expired = await self._backend.claim(
            self.queue, count, writer.clock(), DROPPING_WORKER, None
        )
        writer.remember_claimed(claimed)
        writer.after_store([(State.AVAILABLE, job) for job in (*claimed, *expired)])
        results = await writer.apply([(job.id, _drop_for_room) for job in claimed])
        return [result for result in results if isinstance(result, Job)]

    def forget_pressure(self) -> None:
        """No warning headers for the queue any more (it is unbounded)."""
        self._size.forget()
        if self._pressure is not None:
            self._pressure.note(self.queue, 0, None)


__all__ = [
    "STRATEGIES",
    "BLOCK_TIMEOUT_HEADER",
    "BLOCK_WAIT",
    "Bound",
    "DepthGuard",
    "PressureBoard",
    "PressureLog",
    "depth_of",
    "parse_block_timeout",
    "parse_bound",
]
