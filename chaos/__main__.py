"""``python -m chaos [--backend B ...] [--smoke] [--seconds S] [--json FILE]``: one run per
backend; prints each run's figures and exits 1 if any run lost a job, ran an acknowledged
job again, or failed another check."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
from pathlib import Path

import trio

from ._plans import plan_for
from ._report import table
from ._run import Report, run
from ._stores import BACKENDS


def _log_to(path: Path) -> None:
    """The embedded worker group's log (it reports every fault it meets) to a file."""
    root = logging.getLogger()
    for handler in root.handlers[:]:
        root.removeHandler(handler)
        handler.close()
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(logging.WARNING)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chaos", description=__doc__)
    parser.add_argument("--backend", nargs="+", choices=BACKENDS, default=list(BACKENDS))
    parser.add_argument("--smoke", action="store_true", help="the short run of make test")
    parser.add_argument("--seconds", type=float, help="the fault phase (default: the plan's)")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--json", type=Path, help="write the reports here as JSON")
    parser.add_argument("--directory", type=Path, help="keep logs and stores here")
    args = parser.parse_args(argv)
    reports: list[Report] = []
    for backend in args.backend:
        plan = plan_for(backend, smoke=args.smoke, seconds=args.seconds, seed=args.seed)
        directory = args.directory / backend if args.directory else None
        with tempfile.TemporaryDirectory(prefix=f"ojs-chaos-{backend}-") as scratch:
            where = directory or Path(scratch)
            where.mkdir(parents=True, exist_ok=True)
            _log_to(where / "harness.log")
            print(f"== chaos on {backend}: {plan.seconds:g} s of faults (logs: {where})",
                  flush=True)  # fmt: skip
            report = trio.run(run, plan, where)
        reports.append(report)
        print(table([report]), flush=True)
    if args.json:
        args.json.write_text(json.dumps([r.as_dict() for r in reports], indent=2) + "\n")
    if len(reports) > 1:
        print(table(reports))
    return 0 if all(report.ok for report in reports) else 1


if __name__ == "__main__":
    sys.exit(main())
