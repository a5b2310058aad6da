"""A queue's bound (ojs-backpressure §6): ``max_depth`` (non-terminal jobs) and
``max_size_bytes`` (their total size, :mod:`.queue_size`), the strategy at the bound and
the warning threshold, as configured and as kept in the queue's record. Pure."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..core import InvalidRequest, State

STRATEGIES = ("reject", "block", "drop_oldest")
DEFAULT_WARNING_THRESHOLD = 0.8


@dataclass(frozen=True, slots=True)
class Bound:
    max_depth: int
    """0: the depth is not bounded (``max_size_bytes`` is)."""
    strategy: str = "reject"
    warning_threshold: float = DEFAULT_WARNING_THRESHOLD
    max_size_bytes: int = 0
    """The queue's total job size (:mod:`.queue_size`); 0: not bounded."""

    def to_record(self) -> dict[str, Any]:
        record: dict[str, Any] = {
            "max_depth": self.max_depth,
            "strategy": self.strategy,
            "warning_threshold": self.warning_threshold,
        }
        if self.max_size_bytes:
            record["max_size_bytes"] = self.max_size_bytes
        return record

    @classmethod
    def from_record(cls, record: dict[str, Any] | None) -> Bound | None:
        if not record:
            return None
        return cls(
            int(record.get("max_depth", 0)),
            str(record.get("strategy", "reject")),
            float(record.get("warning_threshold", DEFAULT_WARNING_THRESHOLD)),
            int(record.get("max_size_bytes", 0)),
        )

    @property
    def drops(self) -> bool:
        return self.strategy == "drop_oldest"

    def over(self, depth: int, size_bytes: int) -> bool:
        """Whether a queue of ``depth`` jobs and ``size_bytes`` passes the bound."""
        if self.max_depth and depth > self.max_depth:
            return True
        return bool(self.max_size_bytes) and size_bytes > self.max_size_bytes

    def fill(self, depth: int, size_bytes: int) -> float:
        """How full the queue is: of the bounds it has, the fuller one (0.0 to 1.0)."""
        parts = [depth / self.max_depth if self.max_depth else 0.0]
        parts.append(size_bytes / self.max_size_bytes if self.max_size_bytes else 0.0)
        return min(max(parts), 1.0)


def parse_bound(body: object) -> Bound | None:
    """The ``backpressure`` object of ``PUT /ojs/v1/admin/queues/{name}/config``
    (ojs-backpressure §6.2); ``None`` for unbounded (``max_depth`` and ``max_size_bytes``
    0 or absent)."""
    if not isinstance(body, dict):
        raise InvalidRequest("'backpressure' must be an object.", details={"field": "backpressure"})
    max_depth, max_size = (_count_field(body, name) for name in ("max_depth", "max_size_bytes"))
    strategy = body.get("strategy", "reject")
    if strategy not in ("reject", "block", "drop_oldest"):
        raise InvalidRequest(
            "'backpressure.strategy' must be one of reject, block, drop_oldest.",
            details={"field": "backpressure.strategy", "received": str(strategy)},
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
    if max_depth == 0 and max_size == 0:
        return None
    return Bound(max_depth, strategy, float(threshold), max_size)


def _count_field(body: dict[str, Any], name: str) -> int:
    value = body.get(name, 0)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise InvalidRequest(
            f"'backpressure.{name}' must be an integer of at least 0 (0: unbounded).",
            details={"field": f"backpressure.{name}", "received": str(value)},
        )
    return value


def depth_of(counts: dict[State, int]) -> int:
    """Non-terminal jobs of a queue, from its counts by state."""
    return sum(count for state, count in counts.items() if not state.terminal)


__all__ = ["DEFAULT_WARNING_THRESHOLD", "STRATEGIES", "Bound", "depth_of", "parse_bound"]
