"""What every scenario returns: per-run values, summarised as median and min–max.

A scenario runs its subjects interleaved (run 1 of A, run 1 of B, run 2 of A, …)
and records one value per run in a :class:`Series`. A comparison is a
:class:`Ratio` whose values are computed *per run* (A's run k over B's run k),
so both sides of every ratio saw the same machine at the same moment.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Series:
    scenario: str  # e.g. "http_enqueue"
    subject: str  # e.g. "ojs-actors memory c=16", "hello-world c=16", "huey"
    metric: str  # e.g. "req/s", "p50 ms", "jobs/s", "bytes/job"
    values: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return _median(self.values)

    @property
    def low(self) -> float:
        return min(_valid(self.values), default=float("nan"))

    @property
    def high(self) -> float:
        return max(_valid(self.values), default=float("nan"))

    def summary(self) -> dict[str, Any]:
        return {**asdict(self), "median": self.median, "min": self.low, "max": self.high}


@dataclass
class Ratio:
    scenario: str
    name: str  # e.g. "enqueue / hello-world c=1"
    values: list[float] = field(default_factory=list)  # one per run, same-run pairs
    target: float | None = None  # the target, if any (ratio must be >= target)
    at_most: bool = False  # the target is a ceiling instead (ratio must be <= target)

    @property
    def median(self) -> float:
        return _median(self.values)

    @property
    def met(self) -> bool | None:
        if self.target is None or math.isnan(self.median):
            return None
        return self.median <= self.target if self.at_most else self.median >= self.target

    def summary(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "median": self.median,
            "min": min(_valid(self.values), default=float("nan")),
            "max": max(_valid(self.values), default=float("nan")),
            "met": self.met,
        }


def ratio_of(
    numerator: Series,
    denominator: Series,
    name: str,
    target: float | None = None,
    *,
    at_most: bool = False,
) -> Ratio:
    """Per-run ratios of two series measured in the same runs (same length)."""
    if len(numerator.values) != len(denominator.values):
        raise ValueError(f"{name}: series of different lengths cannot be paired run by run")
    return Ratio(
        numerator.scenario,
        name,
        [
            a / b if b else float("nan")
            for a, b in zip(numerator.values, denominator.values, strict=True)
        ],
        target,
        at_most,
    )


def _valid(values: list[float]) -> list[float]:
    """A failed run is recorded as NaN so runs stay paired; summaries skip it."""
    return [value for value in values if not math.isnan(value)]


def _median(values: list[float]) -> float:
    valid = _valid(values)
    return statistics.median(valid) if valid else float("nan")


def percentile(sorted_values: list[float], q: float) -> float:
    """The q-th percentile (0–100) of already sorted values, nearest-rank."""
    if not sorted_values:
        return float("nan")
    rank = max(1, min(len(sorted_values), math.ceil(q / 100.0 * len(sorted_values))))
    return sorted_values[rank - 1]
