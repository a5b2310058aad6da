"""Queue bounds (ojs-backpressure): a queue's ``max_depth`` and what enqueue does at it.

The bound is part of the queue's record (the snapshot ``queue:<name>``, beside its pause
state), so every process sharing the backend applies the same one: a QueueActor re-reads
its record as it does for the pause state (at most ``poll_interval`` stale). Depth is
the queue's non-terminal jobs, counted by the backend when a bounded queue takes jobs.
Within one process the QueueActor admits enqueues one run at a time, so the bound is
exact there; processes enqueueing into one bounded queue at the same instant may pass
it by the jobs of their concurrent runs.

Only the ``reject`` strategy is implemented: a job past the bound is not stored and the
enqueue answers 429 ``QUEUE_FULL`` (a batch is refused whole, §9.3).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..backends import Backend
from ..core import InvalidRequest, State, Unsupported
from ..core.errors import QueueFull

STRATEGIES = ("reject",)
DEFAULT_WARNING_THRESHOLD = 0.8
RETRY_AFTER_SECONDS = 1


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
    if strategy not in STRATEGIES:
        raise Unsupported(
            f"Backpressure strategy '{strategy}' is not supported by this server; use 'reject'.",
            details={"field": "backpressure.strategy", "received": strategy},
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


class PressureBoard:
    """The latest depth of each bounded queue as its QueueActor saw it, for the warning
    headers of enqueue responses (§7.3) without another backend call."""

    def __init__(self) -> None:
        self._seen: dict[str, tuple[int, Bound]] = {}

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


class DepthGuard:
    """A queue's depth bound as its QueueActor applies it: the verdicts for the enqueues
    of a run, from one count of the queue, with the depth seen noted on the board. The
    actor keeps the bound fresh (it is part of the queue's record) and persists it."""

    def __init__(self, queue: str, backend: Backend, pressure: PressureBoard | None) -> None:
        self.queue = queue
        self.bound: Bound | None = None
        """The queue's depth bound (ojs-backpressure), ``None``: unbounded."""
        self._backend = backend
        self._pressure = pressure

    async def verdicts(self, sizes: Sequence[int]) -> list[QueueFull | None] | None:
        """Per enqueue of a run (its number of jobs), the error refusing it if it would
        pass the queue's depth bound, taken in order; ``None`` if the queue is unbounded.
        Each enqueue is taken whole or refused whole (a batch too, §9.3)."""
        bound = self.bound
        if bound is None:
            self.forget_pressure()
            return None
        depth = depth_of(await self._backend.count_jobs(self.queue))
        verdicts: list[QueueFull | None] = []
        for size in sizes:
            if depth + size > bound.max_depth:
                verdicts.append(
                    QueueFull(self.queue, depth, bound.max_depth, retry_after=RETRY_AFTER_SECONDS)
                )
            else:
                depth += size
                verdicts.append(None)
        if self._pressure is not None:
            self._pressure.note(self.queue, depth, bound)
        return verdicts

    def forget_pressure(self) -> None:
        """No warning headers for the queue any more (it is unbounded)."""
        if self._pressure is not None:
            self._pressure.note(self.queue, 0, None)


__all__ = ["Bound", "DepthGuard", "PressureBoard", "depth_of", "parse_bound"]
