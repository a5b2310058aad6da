"""Run one lifecycle measurement in a fresh process of its own.

Each run starts clean (no jobs, caches or garbage left by the runs before it),
and an HTTP client gets a core of its own beside the server it drives.
``python -m bench._isolated`` reads ``{"kind": ..., "kwargs": {...}}`` on stdin and
prints the :class:`LifecycleResult` as JSON on its last stdout line.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import trio

from ._workload import LifecycleResult

KINDS = ("http", "embedded")
STARTUP_ALLOWANCE_S = 60.0


async def _run(kind: str, kwargs: dict[str, Any]) -> LifecycleResult:
    if kind == "http":
        from .http_workers import http_lifecycle

        return await http_lifecycle(**kwargs)
    if kind == "embedded":
        from .embedded import embedded_lifecycle

        return await embedded_lifecycle(**kwargs)
    raise ValueError(f"unknown lifecycle kind {kind!r}; known: {KINDS}")


def failed(subject: str, jobs: int, why: str) -> LifecycleResult:
    """The record of a run that produced no measurement (``ok`` is false)."""
    return LifecycleResult(
        subject, jobs, 0, math.nan, math.nan, 0, math.nan, math.nan, f"failed: {why}"
    )


def run_isolated(
    kind: str, subject: str, kwargs: dict[str, Any], root: Path | None = None
) -> LifecycleResult:
    """Run ``kind`` with ``kwargs`` (which bound it by ``timeout_s``) in a new process.
    A crash or a hang becomes a failed result, never an exception. ``root``: another
    source tree (an older checkout) whose ``bench`` and ``ojs_actors`` the run uses."""
    env = None if root is None else {**os.environ, "PYTHONPATH": str(root)}
    limit = float(kwargs.get("timeout_s", 120.0)) + STARTUP_ALLOWANCE_S
    jobs = int(kwargs.get("jobs", 0))
    try:
        finished = subprocess.run(
            [sys.executable, "-m", "bench._isolated"],
            input=json.dumps({"kind": kind, "kwargs": kwargs}),
            capture_output=True,
            text=True,
            timeout=limit,
            check=False,
            cwd=root or Path(__file__).resolve().parent.parent,
            env=env,
        )
    except subprocess.TimeoutExpired:
        return failed(subject, jobs, f"no answer within {limit:.0f} s")
    if finished.returncode != 0 or not finished.stdout.strip():
        return failed(subject, jobs, finished.stderr.strip()[-1500:] or "no output")
    fields = json.loads(finished.stdout.strip().splitlines()[-1])
    fields.pop("ok", None)
    fields["subject"] = subject
    return LifecycleResult(**fields)


def main() -> None:
    request = json.loads(sys.stdin.read())
    result = trio.run(_run, request["kind"], request["kwargs"])
    print(json.dumps(result.as_dict()))


if __name__ == "__main__":
    main()
