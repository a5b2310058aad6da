"""Scenarios 2 and 3: the no-op lifecycle on every backend, over HTTP and embedded
(on redis, embedded, also the Redis round trips per job).

Every lifecycle run happens in a fresh process (:mod:`bench._isolated`). Runs are
interleaved: run 1 of every subject, then run 2 of every subject, and so on.
"""

from __future__ import annotations

from typing import Any

from ._config import BenchConfig
from ._isolated import run_isolated
from ._outcome import Outcome, Progress
from ._results import Ratio, ratio_of
from ._servers import RedisProcess, ServerGroup

TARGET_EMBEDDED_MEMORY_JOBS_PER_S = 50_000.0
ROUND_TRIPS_NOTE = (
    "embedded redis, round trips/job: requests the backend's RedisClient sent to Redis "
    "(its round_trips counter; a pipeline, or one EVALSHA of a Lua script however many "
    "keys it touches, counts as one; the NOSCRIPT reload makes two), by every part of the "
    "system, background tasks included, from the first enqueue to the moment the last "
    "job's ack is stored, divided by the jobs; latency round trips/job: the same over the "
    "latency phase (first latency enqueue to the last latency job's stored ack, the idle "
    "worker group's fetches between jobs included) divided by the latency jobs; memory and "
    "sqlite have no such count"
)


def http_subject(backend: str, fetch_count: int) -> str:
    return f"HTTP {backend}, fetch count {fetch_count}"


def embedded_subject(backend: str) -> str:
    return f"embedded {backend}"


def run_http_lifecycle(config: BenchConfig, progress: Progress) -> Outcome:
    sizes = config.sizes
    outcome = Outcome("http_lifecycle", "2. HTTP worker lifecycle")
    with ServerGroup("http-lifecycle") as group:
        redis = group.redis() if "redis" in config.backends else None
        group.wait_ready()
        servers = {
            backend: group.ojs(backend, redis.url if redis else None) for backend in config.backends
        }
        group.wait_ready()
        for run in range(sizes.runs):
            progress(f"http_lifecycle: run {run + 1}/{sizes.runs}")
            for backend, server in servers.items():
                for fetch_count in sizes.fetch_counts:
                    subject = http_subject(backend, fetch_count)
                    kwargs = {
                        "base_url": server.url,
                        "jobs": sizes.http_jobs,
                        "latency_jobs": sizes.http_latency_jobs,
                        "workers": sizes.http_workers,
                        "fetch_count": fetch_count,
                        "timeout_s": sizes.timeout_s,
                    }
                    outcome.record_lifecycle(run, run_isolated("http", subject, kwargs))
    few, many = min(sizes.fetch_counts), max(sizes.fetch_counts)
    if few != many:
        for backend in config.backends:
            outcome.ratios.append(
                ratio_of(
                    outcome.series_of(http_subject(backend, many), "process jobs/s"),
                    outcome.series_of(http_subject(backend, few), "process jobs/s"),
                    f"HTTP {backend}: fetch count {many} / fetch count {few}, process jobs/s",
                )
            )
    return outcome


def embedded_options(
    backend: str, group: ServerGroup, redis: RedisProcess | None, run: int
) -> dict[str, Any]:
    """The backend's options for a fresh, empty store."""
    if backend == "sqlite":
        return {"path": str(group.directory / f"embedded-{run}.db")}
    if backend == "redis":
        assert redis is not None
        redis.flush()
        return {"url": redis.url}
    return {}


def run_embedded_lifecycle(config: BenchConfig, progress: Progress) -> Outcome:
    sizes = config.sizes
    outcome = Outcome("embedded", "3. Embedded lifecycle (no HTTP)")
    with ServerGroup("embedded") as group:
        redis = group.redis() if "redis" in config.backends else None
        group.wait_ready()
        for run in range(sizes.runs):
            progress(f"embedded: run {run + 1}/{sizes.runs}")
            for backend in config.backends:
                kwargs = {
                    "backend": backend,
                    "options": embedded_options(backend, group, redis, run),
                    "jobs": sizes.embedded_jobs,
                    "latency_jobs": sizes.embedded_latency_jobs,
                    "timeout_s": sizes.timeout_s,
                }
                result = run_isolated("embedded", embedded_subject(backend), kwargs)
                outcome.record_lifecycle(run, result)
                if backend == "redis":
                    outcome.record_round_trips(result)
    if "redis" in config.backends:
        outcome.notes.append(ROUND_TRIPS_NOTE)
    if "memory" in config.backends:
        process = outcome.series_of(embedded_subject("memory"), "process jobs/s")
        outcome.ratios.append(
            Ratio(
                outcome.scenario,
                "embedded memory process jobs/s",
                list(process.values),
                TARGET_EMBEDDED_MEMORY_JOBS_PER_S,
            )  # fmt: skip
        )
    return outcome
