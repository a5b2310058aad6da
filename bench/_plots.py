"""PNG plots of a run: per scenario, one panel per metric, medians with min–max whiskers."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, never a display

import matplotlib.pyplot as plt  # noqa: E402

from ._growth import OPERATIONS, operation_subject, rate_metric  # noqa: E402
from ._outcome import Outcome  # noqa: E402
from ._report import number  # noqa: E402
from ._results import Series  # noqa: E402

PANEL_WIDTH = 7.0
BAR_HEIGHT = 0.3
COLUMNS = 2


def _metrics(outcome: Outcome) -> list[str]:
    seen: list[str] = []
    for series in outcome.series:
        if series.metric not in seen:
            seen.append(series.metric)
    return seen


def _whiskers(series: list[Series]) -> list[list[float]]:
    low = [max(0.0, s.median - s.low) if not math.isnan(s.median) else 0.0 for s in series]
    high = [max(0.0, s.high - s.median) if not math.isnan(s.median) else 0.0 for s in series]
    return [low, high]


def _bars(outcome: Outcome, path: Path) -> None:
    metrics = _metrics(outcome)
    panels = [[s for s in outcome.series if s.metric == metric] for metric in metrics]
    columns = min(COLUMNS, len(panels))
    rows = math.ceil(len(panels) / columns)
    bars = max(len(panel) for panel in panels)
    figure, axes = plt.subplots(
        rows, columns, squeeze=False,
        figsize=(PANEL_WIDTH * columns, rows * (1.0 + BAR_HEIGHT * bars)),
    )  # fmt: skip
    for axis in axes.flat[len(panels) :]:
        axis.set_visible(False)
    for axis, metric, panel in zip(axes.flat, metrics, panels, strict=False):
        medians = [0.0 if math.isnan(s.median) else s.median for s in panel]
        positions = list(range(len(panel)))
        axis.barh(positions, medians, xerr=_whiskers(panel), color="tab:blue", capsize=3)
        axis.set_yticks(positions, [s.subject for s in panel], fontsize=8)
        axis.invert_yaxis()
        axis.set_title(metric, fontsize=10)
        axis.grid(axis="x", alpha=0.3)
        for position, series in zip(positions, panel, strict=True):
            right = max(series.median, series.high)  # past the whisker
            value = 0.0 if math.isnan(right) else right
            axis.annotate(f" {number(series.median)}", (value, position), va="center", fontsize=7)
    figure.suptitle(outcome.title + " (median, min–max)", fontsize=11)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _growth(outcome: Outcome, path: Path) -> None:
    levels = sorted(
        {run["level"] for run in outcome.runs if "level" in run},
    )
    backends = sorted({run["backend"] for run in outcome.runs if "backend" in run})
    memory = [s for s in outcome.series if s.metric.startswith("bytes/job")]
    figure, (rates, sizes) = plt.subplots(1, 2, figsize=(2 * PANEL_WIDTH, 4.5))
    for backend in backends:
        for operation in OPERATIONS:
            subject = operation_subject(backend, operation)
            by_level = [outcome.series_of(subject, rate_metric(level)) for level in levels]
            rates.errorbar(
                levels, [s.median for s in by_level], yerr=_whiskers(by_level), marker="o",
                capsize=3, label=subject,
            )  # fmt: skip
    rates.set_xscale("log")
    rates.set_xlabel("jobs already waiting")
    rates.set_ylabel("requests/s (single enqueue / single-job fetch)")
    rates.set_ylim(bottom=0)
    rates.grid(alpha=0.3)
    rates.legend(fontsize=8)
    rates.set_title("rate by queue depth", fontsize=10)
    positions = list(range(len(memory)))
    sizes.barh(positions, [s.median for s in memory], color="tab:orange")
    sizes.set_yticks(positions, [f"{s.subject}, {s.metric}" for s in memory], fontsize=8)
    sizes.invert_yaxis()
    for position, series in zip(positions, memory, strict=True):
        sizes.annotate(
            f" {number(series.median)}", (series.median, position), va="center", fontsize=7
        )
    sizes.set_title("resident bytes per waiting job", fontsize=10)
    sizes.grid(axis="x", alpha=0.3)
    figure.suptitle(outcome.title + " (median, min–max)", fontsize=11)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def plot_outcome(outcome: Outcome, directory: Path) -> Path | None:
    """Write the scenario's PNG into ``directory``; None when it has nothing to plot."""
    if not outcome.series:
        return None
    path = directory / f"{outcome.scenario}.png"
    if outcome.plot == "growth":
        _growth(outcome, path)
    else:
        _bars(outcome, path)
    return path
