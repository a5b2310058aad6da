"""The run's report: a table on stdout, and ``results.json``, ``table.txt`` and PNG plots in
``<out>/<UTC timestamp>/``, with ``<out>/latest`` pointing at the newest."""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ._config import BenchConfig
from ._outcome import Outcome
from ._results import Ratio, Series

SUBJECT_WIDTH = 46
METRIC_WIDTH = 24


def number(value: float) -> str:
    if math.isnan(value):
        return "n/a"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"


def _spread(low: float, high: float) -> str:
    return f"{number(low)} – {number(high)}"


def _series_line(series: Series) -> str:
    valid = sum(not math.isnan(value) for value in series.values)
    return (
        f"  {series.subject:<{SUBJECT_WIDTH}} {series.metric:<{METRIC_WIDTH}} "
        f"{number(series.median):>10}  {_spread(series.low, series.high):<23} {valid}/{len(series.values)}"
    )


def _ratio_line(ratio: Ratio) -> str:
    summary = ratio.summary()
    if ratio.target is None:
        target, verdict = "", ""
    else:
        target = f"{'≤' if ratio.at_most else '≥'} {number(ratio.target)}"
        verdict = {True: "met", False: "MISSED", None: "n/a"}[ratio.met]
    return (
        f"  {ratio.name:<{SUBJECT_WIDTH + METRIC_WIDTH + 1}} {number(ratio.median):>10}  "
        f"{_spread(summary['min'], summary['max']):<23} {target:<10} {verdict}"
    )


def format_outcome(outcome: Outcome) -> str:
    lines = [
        f"== {outcome.title} ({outcome.seconds:.0f} s) ==",
        f"  {'subject':<{SUBJECT_WIDTH}} {'metric':<{METRIC_WIDTH}} {'median':>10}  "
        f"{'min – max':<23} runs",
    ]
    lines += [_series_line(series) for series in outcome.series]
    if outcome.ratios:
        lines.append(
            f"  {'ratios and targets (per-run values)':<{SUBJECT_WIDTH + METRIC_WIDTH + 1}} "
            f"{'median':>10}  {'min – max':<23} {'target':<10} verdict"
        )
        lines += [_ratio_line(ratio) for ratio in outcome.ratios]
    if outcome.notes:
        lines.append("  notes:")
        lines += [f"    - {note}" for note in outcome.notes]
    return "\n".join(lines)


def format_table(outcomes: list[Outcome], machine: dict[str, Any]) -> str:
    header = (
        f"machine: {machine['cpu']}, {machine['cores']} cores, {machine['ram_gib']} GiB, "
        f"Python {machine['python']}, {machine['os']}, commit {machine['git_commit'][:12]}"
        f"{' (dirty)' if machine['git_dirty'] else ''}"
    )
    return "\n\n".join([header, *(format_outcome(outcome) for outcome in outcomes)]) + "\n"


def _finite(value: Any) -> Any:
    """JSON has no NaN: a missing figure is null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


def outcome_json(outcome: Outcome) -> dict[str, Any]:
    return {
        "scenario": outcome.scenario,
        "title": outcome.title,
        "seconds": outcome.seconds,
        "series": [series.summary() for series in outcome.series],
        "ratios": [ratio.summary() for ratio in outcome.ratios],
        "runs": outcome.runs,
        "notes": outcome.notes,
    }


def write_report(
    out: Path,
    stamp: str,
    outcomes: list[Outcome],
    machine: dict[str, Any],
    config: BenchConfig,
    command: list[str],
    total_seconds: float,
) -> Path:
    """Write everything into ``out/stamp`` and point ``out/latest`` at it; that folder."""
    from ._plots import plot_outcome  # matplotlib is slow to import: only when writing

    folder = out / stamp
    folder.mkdir(parents=True, exist_ok=False)
    document = {
        "started_utc": stamp,
        "command": command,
        "total_seconds": total_seconds,
        "machine": machine,
        "config": asdict(config),
        "scenarios": [outcome_json(outcome) for outcome in outcomes],
    }
    (folder / "results.json").write_text(json.dumps(_finite(document), indent=1) + "\n")
    (folder / "table.txt").write_text(format_table(outcomes, machine))
    for outcome in outcomes:
        plot_outcome(outcome, folder)
    _point_latest(out, folder)
    return folder


def _point_latest(out: Path, folder: Path) -> None:
    latest = out / "latest"
    if latest.is_symlink() or latest.is_file():
        latest.unlink()
    elif latest.is_dir():
        shutil.rmtree(latest)
    try:
        latest.symlink_to(folder.name, target_is_directory=True)
    except OSError:  # no symlinks on this file system: a copy then
        shutil.copytree(folder, latest)
