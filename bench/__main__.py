"""``python -m bench``: run the benchmark scenarios and write the report (see bench/README.md)."""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

from ._config import FULL, QUICK, SCENARIO_NUMBERS, SCENARIOS, BenchConfig
from ._outcome import Outcome, Progress

DEFAULT_OUT = Path(__file__).resolve().parent / "results"
# Scenario 6 of the issue is scenarios 1-3 on every backend.
ALIASES = {**SCENARIO_NUMBERS, "6": "http_enqueue,http_lifecycle,embedded"}

Runner = Callable[[BenchConfig, Progress], Outcome]


def _runner(scenario: str) -> Runner:
    """Imported on demand: a scenario's dependencies load only when it runs."""
    if scenario == "http_enqueue":
        from ._http_enqueue import run_http_enqueue

        return run_http_enqueue
    if scenario == "http_lifecycle":
        from ._lifecycles import run_http_lifecycle

        return run_http_lifecycle
    if scenario == "embedded":
        from ._lifecycles import run_embedded_lifecycle

        return run_embedded_lifecycle
    if scenario == "peers":
        from ._peers_scenario import run_peers

        return run_peers
    if scenario == "growth":
        from ._growth import run_growth

        return run_growth
    if scenario == "redis_client":
        from ._redis_client import run_redis_client

        return run_redis_client
    if scenario == "scale_out":
        from ._scale_out import run_scale_out

        return run_scale_out
    if scenario == "aws_cost":
        from ._aws_cost import run_aws_cost

        return run_aws_cost
    if scenario == "observability":
        from ._observability import run_observability

        return run_observability
    raise ValueError(scenario)


def _scenarios(chosen: Sequence[str] | None) -> tuple[str, ...]:
    if not chosen:
        return SCENARIOS
    names: list[str] = []
    for word in chosen:
        for name in ALIASES.get(word, word).split(","):
            if name not in SCENARIOS:
                raise SystemExit(
                    f"unknown scenario {word!r}; choose from {', '.join(SCENARIOS)} "
                    "or 1-5, 6 (= 1-3), 7, 8 (aws_cost and observability have no number)"
                )
            if name not in names:
                names.append(name)
    return tuple(name for name in SCENARIOS if name in names)


def parse_args(argv: Sequence[str] | None) -> tuple[BenchConfig, Path]:
    from ojs_actors.backends import BACKENDS as ALL_BACKENDS

    # sqs has its own scenario (aws_cost, on moto): the lifecycle scenarios would reach
    # real AWS, since their stores do not start an emulator for it.
    BACKENDS = tuple(backend for backend in ALL_BACKENDS if backend != "sqs")

    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--quick", action="store_true", help="a tiny smoke run (seconds, not minutes)"
    )
    parser.add_argument("--runs", type=int, help="runs per figure (default 3; 1 with --quick)")
    parser.add_argument(
        "--only", nargs="+", metavar="SCENARIO",
        help=f"scenarios to run: {', '.join(SCENARIOS)} (or 1-5, 7, 8; 6 = 1-3); default all",
    )  # fmt: skip
    parser.add_argument(
        "--backends", nargs="+", choices=BACKENDS, default=list(BACKENDS),
        help="backends for scenarios 1-3 and 5 (default: every backend); 4, 7, 8 are redis",
    )  # fmt: skip
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results folder")
    args = parser.parse_args(argv)
    if args.runs is not None and args.runs < 1:
        parser.error("--runs must be at least 1")
    config = BenchConfig(
        sizes=QUICK if args.quick else FULL,
        scenarios=_scenarios(args.only),
        backends=tuple(backend for backend in BACKENDS if backend in args.backends),
        quick=args.quick,
    ).with_runs(args.runs)
    return config, args.out


def main(argv: Sequence[str] | None = None) -> int:
    config, out = parse_args(argv)
    from ._machine import machine_info
    from ._report import format_outcome, format_table, write_report

    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    machine = machine_info()
    progress = Progress()
    progress(f"scenarios {', '.join(config.scenarios)}; backends {', '.join(config.backends)}; "
             f"{config.sizes.runs} run(s) each{' (quick)' if config.quick else ''}")  # fmt: skip
    outcomes: list[Outcome] = []
    crashed: list[str] = []
    started = time.monotonic()
    for scenario in config.scenarios:
        begun = time.monotonic()
        try:
            outcome = _runner(scenario)(config, progress)
        except Exception:
            crashed.append(scenario)
            outcome = Outcome(scenario, f"{scenario} (crashed)")
            outcome.notes.append(traceback.format_exc()[-3000:])
        outcome.seconds = time.monotonic() - begun
        outcomes.append(outcome)
        progress(f"{scenario} done in {outcome.seconds:.0f} s")
        print(format_outcome(outcome) + "\n", file=sys.stderr, flush=True)
    total = time.monotonic() - started
    print(format_table(outcomes, machine))
    for outcome in outcomes:
        print(f"{outcome.scenario:<16} {outcome.seconds:6.0f} s")
    print(f"{'total':<16} {total:6.0f} s")
    folder = write_report(out, stamp, outcomes, machine, config, ["python", "-m", "bench",
                          *(sys.argv[1:] if argv is None else argv)], total)  # fmt: skip
    print(f"results: {folder}")
    if crashed:
        print(f"crashed: {', '.join(crashed)} (see the notes above)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
