"""Scenario 1: ``POST /ojs/v1/jobs`` beside a hello-world endpoint on the same Hypercorn.

All servers run side by side (hello-world, one ``ojs-actors serve`` per backend,
the static responder for the load generator's ceiling). Each run measures, per
concurrency, the hello-world and then every backend, so each ratio compares
measurements taken moments apart; then the batch endpoint of every backend.
"""

from __future__ import annotations

import json

from ._config import BenchConfig
from ._hello import HELLO_PATH
from ._load import LoadResult, LoadSpec, build_request, run_load
from ._outcome import Outcome, Progress
from ._results import Ratio, ratio_of
from ._servers import HOST, ServerGroup, nats_note
from ._workload import JOB_TYPE, QUEUE

SCENARIO = "http_enqueue"
TARGET_OF_HELLO = 0.9
TARGET_P99_MS_AT_1 = 5.0
TARGET_BATCH_JOBS_PER_S = 20_000.0
CEILING_CONNECTIONS = 64

JOB = {"type": JOB_TYPE, "args": [0], "options": {"queue": QUEUE}}


def _job_body() -> bytes:
    return json.dumps(JOB, separators=(",", ":")).encode()


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
    body = _job_body()

    def load(port: int, request: bytes, connections: int) -> LoadResult:
        return run_load(
            LoadSpec(
                HOST,
                port,
                request,
                connections,
                sizes.load_max_requests,
                sizes.load_seconds,
                sizes.warmup_seconds,
            )  # fmt: skip
        )

    with ServerGroup("enqueue") as group:
        stores = group.stores(config.backends)
        hello = group.hello()
        static = group.static()
        group.wait_ready()
        servers = {backend: group.ojs(backend, stores.url(backend)) for backend in config.backends}
        group.wait_ready()
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
        static_request = build_request("POST", "/", body, host=HOST, port=static.port)

        for run in range(sizes.runs):
            progress(f"{SCENARIO}: run {run + 1}/{sizes.runs}")
            for concurrency in sizes.concurrencies:
                result = load(hello.port, hello_request, concurrency)
                record_load(outcome, f"hello-world c={concurrency}", result, run)
                outcome.series_of(
                    f"load generator, hello-world c={concurrency}", "CPU cores used"
                ).values.append(result.client_cpu)
                for backend, server in servers.items():
                    result = load(server.port, enqueue[backend], concurrency)
                    record_load(outcome, f"{backend} enqueue c={concurrency}", result, run)
            for backend, server in servers.items():
                result = load(server.port, batch[backend], sizes.batch_connections)
                subject = f"{backend} batch x{sizes.batch_size} c={sizes.batch_connections}"
                record_load(outcome, subject, result, run)
                outcome.series_of(subject, "jobs/s").values.append(result.per_s * sizes.batch_size)
            result = load(static.port, static_request, CEILING_CONNECTIONS)
            record_load(outcome, f"load generator ceiling c={CEILING_CONNECTIONS}", result, run)

    _add_ratios(outcome, config)
    if "nats" in config.backends:
        outcome.notes.append(nats_note())
    return outcome


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
        if 1 in sizes.concurrencies:
            p99 = outcome.series_of(f"{backend} enqueue c=1", "p99 ms")
            outcome.ratios.append(
                Ratio(
                    SCENARIO,
                    f"{backend} enqueue p99 ms, c=1",
                    list(p99.values),
                    TARGET_P99_MS_AT_1,
                    at_most=True,
                )  # fmt: skip
            )
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
