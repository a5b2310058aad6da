"""Scenarios 2 and 3: the no-op lifecycle on every backend, over HTTP and embedded
(on redis and nats, embedded, also the client's round trips per job; on nats also the
messages the nats-server received per job; on kafka, both ways, what its event relay
did: ``_relay.py``).

Every lifecycle run happens in a fresh process (:mod:`bench._isolated`). Runs are
interleaved: run 1 of every subject, then run 2 of every subject, and so on.
"""

from __future__ import annotations

from typing import Any

from ._config import BenchConfig
from ._isolated import run_isolated
from ._outcome import Outcome, Progress
from ._results import Ratio, ratio_of
from ._servers import ServerGroup, Stores, kafka_note, nats_note
from ._workload import LifecycleResult

TARGET_EMBEDDED_MEMORY_JOBS_PER_S = 50_000.0
TARGET_OF_REDIS = {"nats": 0.5, "kafka": None}
"""Embedded process jobs/s over embedded redis's, run by run: nats's target; kafka has none
(its state is redis's, plus the relay)."""
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


def relay_brokers(backend: str, stores: Stores) -> str | None:
    """The Kafka a backend's event relay publishes to (kafka's broker); else None."""
    return stores.kafka.url if backend == "kafka" and stores.kafka is not None else None


def run_lifecycle(
    outcome: Outcome,
    run: int,
    kind: str,
    subject: str,
    kwargs: dict[str, Any],
    brokers: str | None = None,
) -> LifecycleResult:
    """One lifecycle run in a fresh process, recorded; with ``brokers`` (kafka: see
    :func:`relay_brokers`) also what its event relay did."""
    if brokers is None:
        result = run_isolated(kind, subject, kwargs)
        outcome.record_lifecycle(run, result)
        return result
    from ._relay import record_relay, run_relayed

    result, relayed = run_relayed(kind, subject, kwargs, brokers)
    outcome.record_lifecycle(run, result, {"relay": relayed})
    record_relay(outcome, result, relayed)
    return result


def lifecycle_notes(outcome: Outcome, backends: tuple[str, ...]) -> None:
    """The notes on the stores the backends ran on."""
    if "nats" in backends:
        outcome.notes.append(nats_note())
    if "kafka" in backends:
        from ._relay import RELAY_NOTE

        outcome.notes += [RELAY_NOTE, kafka_note()]


def run_http_lifecycle(config: BenchConfig, progress: Progress) -> Outcome:
    sizes = config.sizes
    outcome = Outcome("http_lifecycle", "2. HTTP worker lifecycle")
    with ServerGroup("http-lifecycle") as group:
        stores = group.stores(config.backends)
        group.wait_ready()
        servers = {backend: group.ojs(backend, stores) for backend in config.backends}
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
                    brokers = relay_brokers(backend, stores)
                    run_lifecycle(outcome, run, "http", subject, kwargs, brokers)
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
    if {"kafka", "redis"} <= set(config.backends):
        for fetch_count in sizes.fetch_counts:
            outcome.ratios.append(
                ratio_of(
                    outcome.series_of(http_subject("kafka", fetch_count), "process jobs/s"),
                    outcome.series_of(http_subject("redis", fetch_count), "process jobs/s"),
                    f"HTTP kafka / HTTP redis, process jobs/s, fetch count {fetch_count}",
                )
            )
    lifecycle_notes(outcome, config.backends)
    return outcome


def embedded_options(backend: str, group: ServerGroup, stores: Stores, run: int) -> dict[str, Any]:
    """The backend's options for a fresh, empty store."""
    if backend == "sqlite":
        return {"path": str(group.directory / f"embedded-{run}.db")}
    stores.empty(backend)
    return stores.options(backend)


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
                subject = embedded_subject(backend)
                brokers = relay_brokers(backend, stores)
                result = run_lifecycle(outcome, run, "embedded", subject, kwargs, brokers)
                if backend in COUNTED:
                    outcome.record_round_trips(result, messages=backend == "nats")
    if "redis" in config.backends:
        outcome.notes.append(ROUND_TRIPS_NOTE)
    if "nats" in config.backends:
        outcome.notes.append(NATS_COUNTS_NOTE)
    lifecycle_notes(outcome, config.backends)
    for other, target in TARGET_OF_REDIS.items():
        if other not in config.backends or "redis" not in config.backends:
            continue
        for metric, metric_target in (("process jobs/s", target), ("enqueue jobs/s", None)):
            outcome.ratios.append(
                ratio_of(
                    outcome.series_of(embedded_subject(other), metric),
                    outcome.series_of(embedded_subject("redis"), metric),
                    f"embedded {other} / embedded redis, {metric}",
                    metric_target,
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
