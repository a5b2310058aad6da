"""What one scenario hands to the report: its series, ratios, raw runs, notes and duration."""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from ._results import Ratio, Series
from ._workload import LifecycleResult

LIFECYCLE_METRICS = (
    ("enqueue jobs/s", "enqueue_per_s"),
    ("process jobs/s", "process_per_s"),
    ("latency p50 ms", "latency_p50_ms"),
    ("latency p99 ms", "latency_p99_ms"),
)
ROUND_TRIP_METRICS = (
    ("round trips/job", "round_trips_per_job"),
    ("latency round trips/job", "latency_round_trips_per_job"),
)
MESSAGE_METRICS = (
    ("messages/job", "messages_per_job"),
    ("latency messages/job", "latency_messages_per_job"),
)


@dataclass
class Outcome:
    scenario: str  # the --only name, e.g. "http_enqueue"
    title: str
    series: list[Series] = field(default_factory=list)
    ratios: list[Ratio] = field(default_factory=list)
    runs: list[dict[str, Any]] = field(default_factory=list)  # raw records, one per measurement
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    # how the plot groups this scenario's series: "bars" or "growth" (rate by waiting jobs)
    plot: str = "bars"

    def series_of(self, subject: str, metric: str) -> Series:
        """The series of ``subject`` and ``metric``, created empty on first use."""
        for series in self.series:
            if series.subject == subject and series.metric == metric:
                return series
        series = Series(self.scenario, subject, metric)
        self.series.append(series)
        return series

    def record_lifecycle(
        self, run: int, result: LifecycleResult, extra: dict[str, Any] | None = None
    ) -> None:
        """A lifecycle run's four figures; a run that is not ``ok`` counts as NaN so every
        series keeps one value per run, and the reason goes into the notes. ``extra``: more
        of the run's record (e.g. its event relay's figures)."""
        self.runs.append({"run": run, **result.as_dict(), **(extra or {})})
        for metric, attribute in LIFECYCLE_METRICS:
            value = float(getattr(result, attribute)) if result.ok else math.nan
            self.series_of(result.subject, metric).values.append(value)
        if not result.ok:
            self.notes.append(
                f"run {run + 1} of {result.subject} is not a valid measurement: completed "
                f"{result.completed}/{result.jobs}, {result.latency_jobs} latency samples"
                + (
                    f"; {_last_lines(result.settings)}"
                    if result.settings.startswith("failed")
                    else ""
                )
            )

    def record_round_trips(self, result: LifecycleResult, messages: bool = False) -> None:
        """A lifecycle run's client round trips per job (enqueue and process phases) and per
        latency job, as two more series of its subject; with ``messages``, two more: the
        NATS messages per job and per latency job. NaN unless the run is ``ok``."""
        metrics = ROUND_TRIP_METRICS + (MESSAGE_METRICS if messages else ())
        for metric, attribute in metrics:
            value = float(getattr(result, attribute)) if result.ok else math.nan
            self.series_of(result.subject, metric).values.append(value)

    def all_lifecycles_ok(self) -> bool:
        return all(run.get("ok", True) for run in self.runs)


def _last_lines(text: str, count: int = 2) -> str:
    """The end of a failure's traceback: where it failed and why."""
    return " / ".join(line.strip() for line in text.strip().splitlines()[-count:])


class Progress:
    """Progress lines on stderr, each with the seconds since the harness started."""

    def __init__(self) -> None:
        self.started = time.monotonic()

    def __call__(self, message: str) -> None:
        print(f"[{time.monotonic() - self.started:7.1f} s] {message}", file=sys.stderr, flush=True)
