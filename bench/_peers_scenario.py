"""Scenario 4: the same no-op workload on every peer and on ojs-actors, one redis-server.

Each peer runs in its own ``.venv-bench`` environment (:mod:`bench.peers`), created
here on first use. Every subject starts from an empty Redis; the order of subjects
rotates from run to run so no one always runs first. Comparisons are per run: ours
over the fastest peer of that same run.
"""

from __future__ import annotations

import math
import time

from ._config import BenchConfig
from ._isolated import failed, run_isolated
from ._outcome import Outcome, Progress
from ._results import Series, ratio_of
from ._servers import RedisProcess, ServerGroup, Stores
from ._workload import LifecycleResult

SCENARIO = "peers"
EMBEDDED = "ojs-actors embedded (redis)"
HTTP = "ojs-actors HTTP (redis)"
HTTP_FETCH_COUNT = 50
TARGET_PROCESS_OVER_FASTEST = 2.0
TARGET_P50_OVER_BEST = 1.0


def _prepare_peers(outcome: Outcome, progress: Progress) -> list[str]:
    """Every peer whose environment exists or could be built now."""
    from .peers import PEERS, ensure_peer_env

    ready = []
    started = time.monotonic()
    for name in PEERS:
        progress(f"{SCENARIO}: environment of {name}")
        try:
            ensure_peer_env(name)
        except Exception as error:  # one broken peer must not stop the others
            outcome.notes.append(f"{name}: no environment, left out: {str(error)[:500]}")
            continue
        ready.append(name)
    outcome.notes.append(f"peer environments ready in {time.monotonic() - started:.0f} s")
    return ready


def _run_subject(
    subject: str, config: BenchConfig, group: ServerGroup, redis: RedisProcess
) -> LifecycleResult:
    sizes = config.sizes
    if subject == EMBEDDED:
        redis.flush()
        kwargs = {"backend": "redis", "options": {"url": redis.url}, "jobs": sizes.peer_jobs,
                  "latency_jobs": sizes.peer_latency_jobs, "timeout_s": sizes.timeout_s}  # fmt: skip
        return run_isolated("embedded", subject, kwargs)
    if subject == HTTP:
        redis.flush()
        server = group.ojs("redis", Stores(redis=redis))
        try:
            group.wait_ready()
            kwargs = {"base_url": server.url, "jobs": sizes.peer_jobs,
                      "latency_jobs": sizes.peer_latency_jobs, "workers": sizes.http_workers,
                      "fetch_count": HTTP_FETCH_COUNT, "timeout_s": sizes.timeout_s}  # fmt: skip
            return run_isolated("http", subject, kwargs)
        finally:
            group.stop(server)
    from .peers import run_peer

    try:
        return run_peer(
            subject, redis.url, sizes.peer_jobs, sizes.peer_latency_jobs, sizes.timeout_s
        )
    except Exception as error:  # recorded as a failed run; the other subjects go on
        return failed(subject, sizes.peer_jobs, str(error)[-1500:])


def run_peers(config: BenchConfig, progress: Progress) -> Outcome:
    sizes = config.sizes
    outcome = Outcome(SCENARIO, "4. Peers on the same redis-server (no-op jobs)")
    peers = _prepare_peers(outcome, progress)
    subjects = [*peers, EMBEDDED, HTTP]
    with ServerGroup("peers") as group:
        redis = group.redis()
        group.wait_ready()
        for run in range(sizes.runs):
            shift = run % len(subjects)
            for subject in subjects[shift:] + subjects[:shift]:
                progress(f"{SCENARIO}: run {run + 1}/{sizes.runs}, {subject}")
                result = _run_subject(subject, config, group, redis)
                outcome.record_lifecycle(run, result)
                settings = f"{subject}: {result.settings}"
                if not result.settings.startswith("failed") and settings not in outcome.notes:
                    outcome.notes.append(settings)
    _add_ratios(outcome, peers, sizes.runs)
    return outcome


def _per_run_best(outcome: Outcome, peers: list[str], metric: str, pick: str, runs: int) -> Series:
    """For every run, the best value any peer reached in that run (``pick``: max or min)."""
    best = Series(SCENARIO, f"best peer ({pick})", metric)
    for run in range(runs):
        values = [outcome.series_of(peer, metric).values[run] for peer in peers]
        valid = [value for value in values if not math.isnan(value)]
        best.values.append((max if pick == "max" else min)(valid) if valid else math.nan)
    return best


def _add_ratios(outcome: Outcome, peers: list[str], runs: int) -> None:
    if not peers:
        return
    fastest = _per_run_best(outcome, peers, "process jobs/s", "max", runs)
    fastest_enqueue = _per_run_best(outcome, peers, "enqueue jobs/s", "max", runs)
    quickest = _per_run_best(outcome, peers, "latency p50 ms", "min", runs)
    outcome.ratios += [
        ratio_of(outcome.series_of(EMBEDDED, "process jobs/s"), fastest,
                 f"{EMBEDDED} / fastest peer, process jobs/s", TARGET_PROCESS_OVER_FASTEST),
        ratio_of(outcome.series_of(EMBEDDED, "latency p50 ms"), quickest,
                 f"{EMBEDDED} / best peer, latency p50", TARGET_P50_OVER_BEST, at_most=True),
        ratio_of(outcome.series_of(EMBEDDED, "enqueue jobs/s"), fastest_enqueue,
                 f"{EMBEDDED} / fastest peer, enqueue jobs/s"),
        ratio_of(outcome.series_of(HTTP, "process jobs/s"), fastest,
                 f"{HTTP} / fastest peer, process jobs/s"),
    ]  # fmt: skip
    for run in range(runs):
        by_rate = {peer: outcome.series_of(peer, "process jobs/s").values[run] for peer in peers}
        valid = {peer: rate for peer, rate in by_rate.items() if not math.isnan(rate)}
        if valid:
            leader = max(valid, key=lambda peer: valid[peer])
            outcome.notes.append(
                f"run {run + 1}: fastest peer {leader} ({valid[leader]:,.0f} jobs/s)"
            )
