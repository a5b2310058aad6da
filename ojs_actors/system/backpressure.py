"""Queue bounds (ojs-backpressure): a queue's ``max_depth`` and what enqueue does at it.

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
from collections.abc import Awaitable, Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, TypeVar

import trio

from ..backends import Backend
from ..core import InvalidRequest, Job, State, Unsupported, lifecycle
from ..core.errors import QueueFull
from ..core.events import envelope, new_event_id
from .clock import Clock
from .queue_writes import TransitionWriter

STRATEGIES = ("reject", "block", "drop_oldest")
DEFAULT_WARNING_THRESHOLD = 0.8
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


@dataclass(frozen=True, slots=True)
class Bound:
    max_depth: int
    strategy: str = "reject"
    warning_threshold: float = DEFAULT_WARNING_THRESHOLD

    def to_record(self) -> dict[str, Any]:
        return {
            "max_depth": self.max_depth,
            "strategy": self.strategy,
            "warning_threshold": self.warning_threshold,
        }

    @classmethod
    def from_record(cls, record: dict[str, Any] | None) -> Bound | None:
        if not record:
            return None
        return cls(
            int(record["max_depth"]),
            str(record.get("strategy", "reject")),
            float(record.get("warning_threshold", DEFAULT_WARNING_THRESHOLD)),
        )


def parse_bound(body: object) -> Bound | None:
    """The ``backpressure`` object of ``PUT /ojs/v1/admin/queues/{name}/config``
    (ojs-backpressure §6.2); ``None`` for unbounded (``max_depth`` 0 or absent)."""
    if not isinstance(body, dict):
        raise InvalidRequest("'backpressure' must be an object.", details={"field": "backpressure"})
    max_depth = body.get("max_depth", 0)
    if not isinstance(max_depth, int) or isinstance(max_depth, bool) or max_depth < 0:
        raise InvalidRequest(
            "'backpressure.max_depth' must be an integer of at least 0 (0: unbounded).",
            details={"field": "backpressure.max_depth", "received": str(max_depth)},
        )
    strategy = body.get("strategy", "reject")
    if strategy not in ("reject", "block", "drop_oldest"):
        raise InvalidRequest(
            "'backpressure.strategy' must be one of reject, block, drop_oldest.",
            details={"field": "backpressure.strategy", "received": str(strategy)},
        )
    if body.get("max_size_bytes") not in (None, 0):
        raise Unsupported(
            "'backpressure.max_size_bytes' is not supported by this server; bound the depth.",
            details={"field": "backpressure.max_size_bytes"},
        )
    threshold = body.get("warning_threshold", DEFAULT_WARNING_THRESHOLD)
    if (
        not isinstance(threshold, int | float)
        or isinstance(threshold, bool)
        or not 0 <= threshold <= 1
    ):
        raise InvalidRequest(
            "'backpressure.warning_threshold' must be a number from 0.0 to 1.0.",
            details={"field": "backpressure.warning_threshold"},
        )
    if max_depth == 0:
        return None
    return Bound(max_depth, strategy, float(threshold))


def depth_of(counts: dict[State, int]) -> int:
    """Non-terminal jobs of a queue, from its counts by state."""
    return sum(count for state, count in counts.items() if not state.terminal)


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
    the warning headers of enqueue responses (§7.3) without another backend call, and
    news of room made in a queue for the enqueues blocked on it (§5.2)."""

    def __init__(self) -> None:
        self._seen: dict[str, tuple[int, Bound]] = {}
        self._room: dict[str, trio.Event] = {}

    def note(self, queue: str, depth: int, bound: Bound | None) -> None:
        if bound is None:
            self._seen.pop(queue, None)
        else:
            self._seen[queue] = (depth, bound)

    def headers(self, queue: str) -> dict[str, str]:
        """``X-OJS-Queue-*`` warning headers if ``queue`` is past its warning threshold."""
        seen = self._seen.get(queue)
        if seen is None:
            return {}
        depth, bound = seen
        pressure = min(depth / bound.max_depth, 1.0)
        if pressure < bound.warning_threshold:
            return {}
        return {
            "X-OJS-Queue-Depth": str(depth),
            "X-OJS-Queue-Bound": str(bound.max_depth),
            "X-OJS-Queue-Pressure": f"{pressure:.2f}",
        }

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

    async def pressure(self, queue: str, depth: int, bound: Bound) -> None:
        """``backpressure.warning`` when the depth reaches the warning threshold,
        ``backpressure.cleared`` when it is below it again (each crossing once)."""
        past = depth >= bound.warning_threshold * bound.max_depth
        if self._pressured.get(queue) is past:
            return
        kind = "backpressure.warning" if past else "backpressure.cleared"
        events = [_event(kind, queue, self._clock(), {"depth": depth, "bound": bound.max_depth})]

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
    ) -> None:
        self.queue = queue
        self.bound: Bound | None = None
        """The queue's depth bound (ojs-backpressure), ``None``: unbounded."""
        self._backend = backend
        self._pressure = pressure
        self._log = log
        self._writer = writer

    async def verdicts(
        self, sizes: Sequence[int], job_types: Sequence[str | None] | None = None
    ) -> list[QueueFull | None] | None:
        """Per enqueue of a run (its number of jobs, its first job's type), the error
        refusing it if it would pass the queue's depth bound, taken in order; ``None`` if
        the queue is unbounded. Each enqueue is taken whole or refused whole (a batch
        too, §9.3); under ``drop_oldest``, ready jobs are dropped to make it fit."""
        bound = self.bound
        if bound is None:
            self.forget_pressure()
            return None
        depth = depth_of(await self._backend.count_jobs(self.queue))
        verdicts: list[QueueFull | None] = []
        refused: list[str | None] = []
        for index, size in enumerate(sizes):
            excess = depth + size - bound.max_depth
            if excess > 0 and bound.strategy == "drop_oldest" and size <= bound.max_depth:
                depth -= await self._make_room(excess)
                excess = depth + size - bound.max_depth
            if excess > 0:
                full = QueueFull(
                    self.queue,
                    depth,
                    bound.max_depth,
                    retry_after=RETRY_AFTER_SECONDS,
                    strategy=bound.strategy,
                )
                full.job_type = job_types[index] if job_types else None
                verdicts.append(full)
                if bound.strategy != "block":  # a blocked enqueue may wait: told if it fails
                    refused.append(full.job_type)
            else:
                depth += size
                verdicts.append(None)
        if self._pressure is not None:
            self._pressure.note(self.queue, depth, bound)
        if refused:
            await self._log.rejected(self.queue, depth, bound.max_depth, refused)
        await self._log.pressure(self.queue, depth, bound)
        return verdicts

    async def _make_room(self, count: int) -> int:
        """Drop up to ``count`` of the queue's next ready jobs: claimed, so no worker takes
        them meanwhile, then discarded unrun, attempt unspent. How many were dropped."""
        writer = self._writer
        claimed, expired = await self._backend.claim(
            self.queue, count, writer.clock(), DROPPING_WORKER, None
        )
        writer.remember_claimed(claimed)
        writer.after_store([(State.AVAILABLE, job) for job in (*claimed, *expired)])
        results = await writer.apply([(job.id, _drop_for_room) for job in claimed])
        return sum(1 for result in results if isinstance(result, Job))

    def forget_pressure(self) -> None:
        """No warning headers for the queue any more (it is unbounded)."""
        if self._pressure is not None:
            self._pressure.note(self.queue, 0, None)


__all__ = [
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
