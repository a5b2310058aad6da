"""Scenario 1: ``POST /ojs/v1/jobs`` beside a hello-world endpoint on the same Hypercorn.

All servers run side by side (hello-world, one ``ojs-actors serve`` per backend,
the static responder for the load generator's ceiling). Each run measures, per
concurrency, the hello-world and then every backend, so each ratio compares
measurements taken moments apart; then the batch endpoint of every backend; then
single-job ``POST /ojs/v1/workers/fetch`` at c=1 on every backend, from the jobs the
enqueues left waiting (at most half of them, so the warm-up never empties the queue;
fetched jobs are not acked).

A backend whose event relay can fall behind (kafka: its health reports the outbox
backlog) gets, after each of its loads, the time to catch up (``wait_outbox_drained``),
so its relay does not take CPU from the measurement that follows.
"""

from __future__ import annotations

import json

from ._config import BenchConfig
from ._hello import HELLO_PATH
from ._load import LoadResult, LoadSpec, build_request, run_load
from ._outcome import Outcome, Progress
from ._results import Ratio, ratio_of
from ._servers import (
    HOST,
    ServerGroup,
    kafka_note,
    nats_note,
    outbox_backlog,
    wait_outbox_drained,
    waiting_jobs,
)
from ._workload import JOB_TYPE, QUEUE

SCENARIO = "http_enqueue"
TARGET_OF_HELLO = 0.9
TARGET_P99_MS_AT_1 = 5.0
TARGET_BATCH_JOBS_PER_S = 20_000.0
CEILING_CONNECTIONS = 64
FETCH_CONCURRENCY = 1
SEED_P99_MS = {"enqueue": 10.0, "fetch": 100.0}
"""Issue 13's seed targets for the kafka backend, at c=1: enqueue p99 < 10 ms, dequeue
(single-job fetch) p99 < 100 ms."""
SEED_BACKENDS = ("kafka",)

JOB = {"type": JOB_TYPE, "args": [0], "options": {"queue": QUEUE}}
FETCH = {"queues": [QUEUE], "count": 1, "worker_id": "bench-enqueue"}


def _json(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def fetch_subject(backend: str) -> str:
    return f"{backend} fetch c={FETCH_CONCURRENCY}"


def record_load(outcome: Outcome, subject: str, result: LoadResult, run: int) -> None:
    outcome.runs.append({"run": run, "subject": subject, **result.as_dict()})
    if result.failures:
        outcome.notes.append(f"run {run + 1}, {subject}: {result.failures} failed requests")
    outcome.series_of(subject, "req/s").values.append(result.per_s)
    outcome.series_of(subject, "p50 ms").values.append(result.p50_ms)
    outcome.series_of(subject, "p99 ms").values.append(result.p99_ms)


def run_http_enqueue(config: BenchConfig, progress: Progress) -> Outcome:
    sizes = config.sizes
    outcome = Outcome(SCENARIO, "1. HTTP enqueue beside a hello-world Quart-trio endpoint")
    body = _json(JOB)

    def load(
        port: int, request: bytes, connections: int, max_requests: int = sizes.load_max_requests
    ) -> LoadResult:
        return run_load(
            LoadSpec(
                HOST,
                port,
                request,
                connections,
                max_requests,
                sizes.load_seconds,
                sizes.warmup_seconds,
            )  # fmt: skip
        )

    with ServerGroup("enqueue") as group:
        stores = group.stores(config.backends)
        hello = group.hello()
        static = group.static()
        group.wait_ready()
        servers = {backend: group.ojs(backend, stores) for backend in config.backends}
        group.wait_ready()
        relaying = {b for b, server in servers.items() if outbox_backlog(server.port) is not None}

        def load_backend(
            backend: str,
            request: bytes,
            connections: int,
            max_requests: int = sizes.load_max_requests,
        ) -> LoadResult:
            """A load on the backend's server, then (kafka) its relay's time to catch up."""
            port = servers[backend].port
            result = load(port, request, connections, max_requests)
            if backend in relaying and not wait_outbox_drained(port):
                outcome.notes.append(f"{backend}: the outbox backlog did not drain in time")
            return result

        hello_request = build_request("POST", HELLO_PATH, body, host=HOST, port=hello.port)
        enqueue = {
            backend: build_request("POST", "/ojs/v1/jobs", body, host=HOST, port=server.port)
            for backend, server in servers.items()
        }
        batch_body = json.dumps({"jobs": [JOB] * sizes.batch_size}, separators=(",", ":"))
        batch = {
            backend: build_request(
                "POST", "/ojs/v1/jobs/batch", batch_body.encode(), host=HOST, port=server.port
            )
            for backend, server in servers.items()
        }
        fetch = {
            backend: build_request("POST", "/ojs/v1/workers/fetch", _json(FETCH), host=HOST,
                                   port=server.port)
            for backend, server in servers.items()
        }  # fmt: skip
        static_request = build_request("POST", "/", body, host=HOST, port=static.port)

        for run in range(sizes.runs):
            progress(f"{SCENARIO}: run {run + 1}/{sizes.runs}")
            for concurrency in sizes.concurrencies:
                result = load(hello.port, hello_request, concurrency)
                record_load(outcome, f"hello-world c={concurrency}", result, run)
                outcome.series_of(
                    f"load generator, hello-world c={concurrency}", "CPU cores used"
                ).values.append(result.client_cpu)
                for backend in servers:
                    result = load_backend(backend, enqueue[backend], concurrency)
                    record_load(outcome, f"{backend} enqueue c={concurrency}", result, run)
            for backend in servers:
                result = load_backend(backend, batch[backend], sizes.batch_connections)
                subject = f"{backend} batch x{sizes.batch_size} c={sizes.batch_connections}"
                record_load(outcome, subject, result, run)
                outcome.series_of(subject, "jobs/s").values.append(result.per_s * sizes.batch_size)
            for backend, server in servers.items():
                budget = min(sizes.load_max_requests, waiting_jobs(server.port, QUEUE) // 2)
                result = load_backend(backend, fetch[backend], FETCH_CONCURRENCY, budget)
                record_load(outcome, fetch_subject(backend), result, run)
            result = load(static.port, static_request, CEILING_CONNECTIONS)
            record_load(outcome, f"load generator ceiling c={CEILING_CONNECTIONS}", result, run)

    _add_ratios(outcome, config)
    if "nats" in config.backends:
        outcome.notes.append(nats_note())
    if "kafka" in config.backends:
        outcome.notes.append(kafka_note())
    return outcome


def _p99_row(outcome: Outcome, subject: str, name: str, target: float) -> Ratio:
    """A target on the median p99 of ``subject``'s runs (a ceiling, in ms)."""
    p99 = outcome.series_of(subject, "p99 ms")
    return Ratio(SCENARIO, name, list(p99.values), target, at_most=True)


def _add_ratios(outcome: Outcome, config: BenchConfig) -> None:
    sizes = config.sizes
    for backend in config.backends:
        for concurrency in sizes.concurrencies:
            outcome.ratios.append(
                ratio_of(
                    outcome.series_of(f"{backend} enqueue c={concurrency}", "req/s"),
                    outcome.series_of(f"hello-world c={concurrency}", "req/s"),
                    f"{backend} enqueue / hello-world req/s, c={concurrency}",
                    TARGET_OF_HELLO,
                )
            )
        seeded = backend in SEED_BACKENDS
        if 1 in sizes.concurrencies:
            subject, name = f"{backend} enqueue c=1", f"{backend} enqueue p99 ms, c=1"
            outcome.ratios.append(_p99_row(outcome, subject, name, TARGET_P99_MS_AT_1))
            if seeded:
                target = SEED_P99_MS["enqueue"]
                outcome.ratios.append(_p99_row(outcome, subject, f"{name} (seed target)", target))
        if seeded:
            name = f"{backend} fetch p99 ms, c={FETCH_CONCURRENCY} (seed target)"
            target = SEED_P99_MS["fetch"]
            outcome.ratios.append(_p99_row(outcome, fetch_subject(backend), name, target))
        subject = f"{backend} batch x{sizes.batch_size} c={sizes.batch_connections}"
        outcome.ratios.append(
            Ratio(
                SCENARIO,
                f"{backend} batch enqueue jobs/s",
                list(outcome.series_of(subject, "jobs/s").values),
                TARGET_BATCH_JOBS_PER_S,
            )  # fmt: skip
        )
    top = max(sizes.concurrencies)
    outcome.ratios.append(
        ratio_of(
            outcome.series_of(f"load generator ceiling c={CEILING_CONNECTIONS}", "req/s"),
            outcome.series_of(f"hello-world c={top}", "req/s"),
            f"load generator ceiling / hello-world req/s, c={top}",
        )
    )
