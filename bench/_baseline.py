"""``python -m bench._baseline --base DIR``: this checkout against an older source tree,
with metrics and tracing off here (the observability issue's "no worse than before").

The older tree is extracted read-only beforehand, e.g.
``git archive c9ea246 | tar -x -C /tmp/base``, and runs with this virtualenv's Python and
``PYTHONPATH=DIR``: its own ``bench`` (the embedded workload) and its own ``ojs_actors``
(the embedded system, and ``ojs-actors serve``). Its defaults are whatever it had (before
the observability issue, an always-on metrics collector of its own). Here: embedded with
``Settings(metrics=False)``, ``serve --no-metrics``, no OTLP endpoint.

Per run, interleaved (the order of the two trees alternating from run to run): the
embedded lifecycle on memory, ``POST /ojs/v1/jobs`` at 16 connections (the hello-world
first), the HTTP lifecycle at each fetch count. The report goes to ``--out`` like a
scenario's (``baseline``), with the ratios new / old run by run.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from .__main__ import DEFAULT_OUT
from ._config import FULL, QUICK, BenchConfig
from ._hello import HELLO_PATH
from ._isolated import run_isolated
from ._load import LoadSpec, build_request, run_load
from ._outcome import Outcome, Progress
from ._results import ratio_of
from ._servers import HOST, ServerGroup
from ._workload import JOB_TYPE

SCENARIO = "baseline"
CONCURRENCY = 16
QUEUE = "bench-baseline-enqueue"
JOB = {"type": JOB_TYPE, "args": [0], "options": {"queue": QUEUE}}
TREES = ("old", "new")


def _order(run: int) -> tuple[str, ...]:
    return TREES if run % 2 == 0 else TREES[::-1]


def compare(base: Path, config: BenchConfig, progress: Progress) -> Outcome:
    sizes = config.sizes
    outcome = Outcome(SCENARIO, f"Baseline: this checkout (metrics, tracing off) / {base}")
    body = json.dumps(JOB, separators=(",", ":")).encode()
    roots: dict[str, Path | None] = {"old": base, "new": None}
    with ServerGroup(SCENARIO) as group:
        hello = group.hello()
        servers = {
            "old": group.ojs("memory", extra_env={"PYTHONPATH": str(base)}, label="old"),
            "new": group.ojs("memory", extra=("--no-metrics",), label="new"),
        }
        group.wait_ready()

        def load(run: int, name: str, port: int, request: bytes) -> None:
            spec = LoadSpec(HOST, port, request, CONCURRENCY, sizes.load_max_requests,
                            sizes.load_seconds, sizes.warmup_seconds)  # fmt: skip
            result = run_load(spec)
            subject = f"HTTP enqueue c={CONCURRENCY}, {name}"
            outcome.runs.append({"run": run, "subject": subject, **result.as_dict()})
            outcome.series_of(subject, "req/s").values.append(result.per_s)
            outcome.series_of(subject, "p50 ms").values.append(result.p50_ms)

        for run in range(sizes.runs):
            progress(f"{SCENARIO}: run {run + 1}/{sizes.runs}")
            for tree in _order(run):
                kwargs = {"backend": "memory", "options": {}, "jobs": sizes.embedded_jobs,
                          "latency_jobs": sizes.embedded_latency_jobs,
                          "timeout_s": sizes.timeout_s}  # fmt: skip
                if tree == "new":
                    kwargs["metrics"] = False
                result = run_isolated("embedded", f"embedded, {tree}", kwargs, roots[tree])
                outcome.record_lifecycle(run, result)
            load(run, "hello-world", hello.port,
                 build_request("POST", HELLO_PATH, body, host=HOST, port=hello.port))  # fmt: skip
            for tree in _order(run):
                port = servers[tree].port
                load(run, tree, port, build_request("POST", "/ojs/v1/jobs", body, host=HOST,
                                                    port=port))  # fmt: skip
            for fetch_count in sizes.fetch_counts:
                for tree in _order(run):
                    kwargs = {"base_url": servers[tree].url, "jobs": sizes.http_jobs,
                              "latency_jobs": sizes.http_latency_jobs,
                              "workers": sizes.http_workers, "fetch_count": fetch_count,
                              "timeout_s": sizes.timeout_s}  # fmt: skip
                    subject = f"HTTP lifecycle fetch count {fetch_count}, {tree}"
                    outcome.record_lifecycle(run, run_isolated("http", subject, kwargs))
    rates = [("embedded", "enqueue jobs/s"), ("embedded", "process jobs/s"),
             (f"HTTP enqueue c={CONCURRENCY}", "req/s")]  # fmt: skip
    rates += [(f"HTTP lifecycle fetch count {count}", "process jobs/s")
              for count in sizes.fetch_counts]  # fmt: skip
    for part, metric in rates:
        outcome.ratios.append(
            ratio_of(
                outcome.series_of(f"{part}, new", metric),
                outcome.series_of(f"{part}, old", metric),
                f"{part}: new (off) / old, {metric}",
            )
        )
    for tree in TREES:
        outcome.ratios.append(
            ratio_of(
                outcome.series_of(f"HTTP enqueue c={CONCURRENCY}, {tree}", "req/s"),
                outcome.series_of(f"HTTP enqueue c={CONCURRENCY}, hello-world", "req/s"),
                f"enqueue, {tree} / hello-world req/s, c={CONCURRENCY}",
            )
        )
    outcome.notes.append(
        f"old: {base} on PYTHONPATH (its own defaults); new: this checkout, "
        "Settings(metrics=False) / --no-metrics, tracing off; memory backend; the order of "
        "old and new alternates from run to run"
    )
    return outcome


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench._baseline", description=__doc__)
    parser.add_argument("--base", type=Path, required=True, help="the older source tree")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    from ._machine import machine_info
    from ._report import format_table, write_report

    config = BenchConfig(QUICK if args.quick else FULL, (SCENARIO,), ("memory",), args.quick)
    config = config.with_runs(args.runs)
    machine = machine_info()
    progress = Progress()
    started = time.monotonic()
    outcome = compare(args.base.resolve(), config, progress)
    outcome.seconds = time.monotonic() - started
    print(format_table([outcome], machine))
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    command = ["python", "-m", "bench._baseline", *(sys.argv[1:] if argv is None else argv)]
    print(
        f"results: {write_report(args.out, stamp, [outcome], machine, config, command, outcome.seconds)}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
