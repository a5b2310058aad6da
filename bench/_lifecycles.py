"""Scenarios 2 and 3: the no-op lifecycle on every backend, over HTTP and embedded
(on redis and nats, embedded, also the client's round trips per job; on nats also the
messages the nats-server received per job).

Every lifecycle run happens in a fresh process (:mod:`bench._isolated`). Runs are
interleaved: run 1 of every subject, then run 2 of every subject, and so on.
"""

from __future__ import annotations

from typing import Any

from ._config import BenchConfig
from ._isolated import run_isolated
from ._outcome import Outcome, Progress
from ._results import Ratio, ratio_of
from ._servers import NATS_BATCH_MAX, ServerGroup, Stores, nats_note

TARGET_EMBEDDED_MEMORY_JOBS_PER_S = 50_000.0
TARGET_NATS_OF_REDIS = 0.5
COUNTED = ("redis", "nats")
"""The backends whose embedded runs count their client's round trips."""
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
NATS_COUNTS_NOTE = (
    "embedded nats, round trips/job: calls of the backend's NatsClient that waited for the "
    "server (its round_trips counter; a pipeline of requests counts as one), counted as "
    "for redis; messages/job: messages the nats-server received from clients (its /varz "
    "in_msgs: every PUB and HPUB, each message of an atomic batch, each JetStream API "
    "request, each core ready notice) over the same phases, divided by the jobs; latency "
    "messages/job: over the latency phase, divided by the latency jobs. The client's own "
    "count (messages_out) is in results.json (client_messages) beside the server's"
)


def http_subject(backend: str, fetch_count: int) -> str:
    return f"HTTP {backend}, fetch count {fetch_count}"


def embedded_subject(backend: str) -> str:
    return f"embedded {backend}"


def run_http_lifecycle(config: BenchConfig, progress: Progress) -> Outcome:
    sizes = config.sizes
    outcome = Outcome("http_lifecycle", "2. HTTP worker lifecycle")
    with ServerGroup("http-lifecycle") as group:
        stores = group.stores(config.backends)
        group.wait_ready()
        servers = {backend: group.ojs(backend, stores.url(backend)) for backend in config.backends}
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
    if "nats" in config.backends:
        outcome.notes.append(nats_note())
    return outcome


def embedded_options(backend: str, group: ServerGroup, stores: Stores, run: int) -> dict[str, Any]:
    """The backend's options for a fresh, empty store."""
    if backend == "sqlite":
        return {"path": str(group.directory / f"embedded-{run}.db")}
    if backend == "redis":
        assert stores.redis is not None
        stores.redis.flush()
        return {"url": stores.redis.url}
    if backend == "nats":
        assert stores.nats is not None
        stores.nats.reset()
        return {"url": stores.nats.url, "batch_max_messages": NATS_BATCH_MAX}
    return {}


def run_embedded_lifecycle(config: BenchConfig, progress: Progress) -> Outcome:
    sizes = config.sizes
    outcome = Outcome("embedded", "3. Embedded lifecycle (no HTTP)")
    with ServerGroup("embedded") as group:
        stores = group.stores(config.backends)
        group.wait_ready()
        for run in range(sizes.runs):
            progress(f"embedded: run {run + 1}/{sizes.runs}")
            for backend in config.backends:
                kwargs: dict[str, Any] = {
                    "backend": backend,
                    "options": embedded_options(backend, group, stores, run),
                    "jobs": sizes.embedded_jobs,
                    "latency_jobs": sizes.embedded_latency_jobs,
                    "timeout_s": sizes.timeout_s,
                }
                if backend == "nats" and stores.nats is not None:
                    kwargs["nats_monitor_port"] = stores.nats.monitor_port
                result = run_isolated("embedded", embedded_subject(backend), kwargs)
                outcome.record_lifecycle(run, result)
                if backend in COUNTED:
                    outcome.record_round_trips(result, messages=backend == "nats")
    if "redis" in config.backends:
        outcome.notes.append(ROUND_TRIPS_NOTE)
    if "nats" in config.backends:
        outcome.notes.append(NATS_COUNTS_NOTE)
        outcome.notes.append(nats_note())
    if "nats" in config.backends and "redis" in config.backends:
        for metric, target in (("process jobs/s", TARGET_NATS_OF_REDIS), ("enqueue jobs/s", None)):
            outcome.ratios.append(
                ratio_of(
                    outcome.series_of(embedded_subject("nats"), metric),
                    outcome.series_of(embedded_subject("redis"), metric),
                    f"embedded nats / embedded redis, {metric}",
                    target,
                )
            )
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
