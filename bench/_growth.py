"""Scenario 5: enqueue and fetch rates with 1k, 100k and 1M jobs already waiting.

One server per (backend, level), all running at once (each redis backend server on
a redis-server of its own, each nats backend server on a nats-server of its own), so
the rates at every level are measured in the same run, moments apart. Filling uses the
batch endpoint over several connections, the backends side by side.
Each run measures, per server, ``growth_requests`` single enqueues and then as
many single-job fetches (no acks: fetched jobs stay active), so the number of
waiting jobs ends each run where it began. Resident memory per waiting job is the
server's RSS growth while filling (redis-server's for redis, nats-server's for nats),
divided by the jobs filled in; for nats also the growth of its JetStream store on disk.

kafka is left out: its waiting jobs are the redis backend's (the same keys and scripts in
Redis, whose growth the redis rows show), and filling 1,000,000 would put as many events
through its relay (minutes on 2 cores) and into its outbox limit (100,000 events waiting
for Kafka: new jobs refused with 503).
"""

from __future__ import annotations

import json
import math
from concurrent.futures import ThreadPoolExecutor

import psutil

from ._config import BenchConfig
from ._load import LoadSpec, build_request, run_load
from ._outcome import Outcome, Progress
from ._results import Ratio, ratio_of
from ._servers import HOST, HttpProcess, Process, ServerGroup, Stores, nats_note, waiting_jobs
from ._workload import JOB_TYPE, QUEUE

SCENARIO = "growth"
BACKENDS = ("memory", "redis", "nats")
RSS_OWNER = {"memory": "server", "redis": "redis-server", "nats": "nats-server"}
"""Whose resident memory holds a backend's waiting jobs."""
OPERATIONS = ("enqueue", "fetch")
TARGET_RATE_KEPT = 0.8
TARGET_BYTES_PER_JOB = 1024.0
RATE_TIME_LIMIT_S = 60.0

JOB = {"type": JOB_TYPE, "args": [0], "options": {"queue": QUEUE}}
FETCH = {"queues": [QUEUE], "count": 1, "worker_id": "bench-growth"}


def rate_metric(level: int) -> str:
    return f"req/s at {level:,} waiting"


def operation_subject(backend: str, operation: str) -> str:
    return f"{backend} {operation}"


def _json(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _fill(server: HttpProcess, level: int, config: BenchConfig) -> float:
    """Enqueue ``level`` jobs with batches over several connections; jobs per second."""
    sizes = config.sizes
    chunk = min(sizes.fill_chunk, level)
    plan = [(chunk, level // chunk, sizes.fill_connections)]
    if level % chunk:
        plan.append((level % chunk, 1, 1))
    seconds = 0.0
    for size, requests, connections in plan:
        body = _json({"jobs": [JOB] * size})
        request = build_request("POST", "/ojs/v1/jobs/batch", body, host=HOST, port=server.port)
        result = run_load(
            LoadSpec(
                HOST,
                server.port,
                request,
                min(connections, requests),
                requests,
                sizes.fill_timeout_s,
            )  # fmt: skip
        )
        if result.requests != requests or result.failures:
            raise RuntimeError(
                f"filling {server.name} to {level}: {result.requests}/{requests} batches, "
                f"statuses {result.statuses}"
            )
        seconds += result.elapsed_s
    return level / seconds


def _fill_levels(
    backend: str,
    servers: dict[tuple[str, int], HttpProcess],
    stores: dict[int, Stores],
    config: BenchConfig,
) -> list[tuple[float, float, float]]:
    """Fill each of the backend's servers to its level: (jobs/s, resident bytes per job,
    bytes on disk per job) each. The resident memory watched is the server's (memory), its
    redis-server's (redis) or its nats-server's (nats); the disk, the nats-server's
    JetStream store (NaN for the others)."""
    figures = []
    for level in config.sizes.growth_levels:
        server = servers[(backend, level)]
        nats = stores[level].nats
        watched: Process = {"redis": stores[level].redis, "nats": nats}.get(backend) or server
        before = _rss(watched.pid)
        disk_before = nats.store_bytes() if backend == "nats" and nats else 0
        rate = _fill(server, level, config)
        rss = (_rss(watched.pid) - before) / level
        disk = (
            (nats.store_bytes() - disk_before) / level if backend == "nats" and nats else math.nan
        )
        figures.append((rate, rss, disk))
    return figures


def _rss(pid: int) -> int:
    return int(psutil.Process(pid).memory_info().rss)


def run_growth(config: BenchConfig, progress: Progress) -> Outcome:
    sizes = config.sizes
    outcome = Outcome(SCENARIO, "5. Cost growth with jobs already waiting", plot="growth")
    backends = [backend for backend in config.backends if backend in BACKENDS]
    levels = sizes.growth_levels
    with ServerGroup("growth") as group:
        stores = {level: group.stores(backends) for level in levels}
        group.wait_ready()
        servers = {
            (backend, level): group.ojs(backend, stores[level])
            for backend in backends
            for level in levels
        }
        group.wait_ready()

        # Backends fill side by side (one thread each, waiting on its load generator):
        # a server and its store server each use about a core, so this saves minutes.
        progress(f"{SCENARIO}: filling {', '.join(backends)} to {', '.join(map(str, levels))}")
        with ThreadPoolExecutor(max_workers=len(backends) or 1) as pool:
            filled = [
                pool.submit(_fill_levels, backend, servers, stores, config) for backend in backends
            ]
            for backend, future in zip(backends, filled, strict=True):
                for level, (rate, rss, disk) in zip(levels, future.result(), strict=True):
                    outcome.series_of(f"{backend} fill", f"jobs/s to {level:,}").values.append(rate)
                    outcome.series_of(
                        f"{backend} {RSS_OWNER[backend]} RSS", f"bytes/job at {level:,}"
                    ).values.append(rss)
                    if backend == "nats":
                        outcome.series_of(
                            "nats JetStream store", f"disk bytes/job at {level:,}"
                        ).values.append(disk)
                progress(f"{SCENARIO}: {backend} filled")

        enqueue = _json(JOB)
        fetch = _json(FETCH)
        for run in range(sizes.runs):
            progress(f"{SCENARIO}: run {run + 1}/{sizes.runs}")
            for operation, body in (("enqueue", enqueue), ("fetch", fetch)):
                path = "/ojs/v1/jobs" if operation == "enqueue" else "/ojs/v1/workers/fetch"
                for (backend, level), server in servers.items():
                    request = build_request("POST", path, body, host=HOST, port=server.port)
                    result = run_load(
                        LoadSpec(
                            HOST,
                            server.port,
                            request,
                            sizes.growth_connections,
                            sizes.growth_requests,
                            RATE_TIME_LIMIT_S,
                        )  # fmt: skip
                    )
                    outcome.runs.append(
                        {"run": run, "backend": backend, "level": level,
                         "operation": operation, **result.as_dict()}
                    )  # fmt: skip
                    if result.failures or result.requests < sizes.growth_requests:
                        outcome.notes.append(
                            f"run {run + 1}, {backend} {operation} at {level:,}: "
                            f"{result.requests} requests, statuses {result.statuses}"
                        )
                    outcome.series_of(
                        operation_subject(backend, operation), rate_metric(level)
                    ).values.append(result.per_s)

        for (backend, level), server in servers.items():
            waiting = waiting_jobs(server.port, QUEUE)
            outcome.notes.append(f"{backend} at {level:,}: {waiting:,} jobs waiting at the end")
            if not math.isclose(waiting, level, rel_tol=0.05):
                outcome.notes.append(f"{backend} at {level:,}: the waiting count drifted")

    _add_ratios(outcome, backends, levels)
    if "nats" in backends:
        outcome.notes.append(nats_note())
    return outcome


def _add_ratios(outcome: Outcome, backends: list[str], levels: tuple[int, ...]) -> None:
    low, high = min(levels), max(levels)
    for backend in backends:
        for operation in OPERATIONS:
            subject = operation_subject(backend, operation)
            outcome.ratios.append(
                ratio_of(
                    outcome.series_of(subject, rate_metric(high)),
                    outcome.series_of(subject, rate_metric(low)),
                    f"{subject} rate at {high:,} / at {low:,} waiting",
                    TARGET_RATE_KEPT,
                )
            )
    if "memory" in backends:
        per_job = outcome.series_of("memory server RSS", f"bytes/job at {high:,}")
        outcome.ratios.append(
            Ratio(
                SCENARIO,
                f"memory: resident bytes per waiting job at {high:,}",
                list(per_job.values),
                TARGET_BYTES_PER_JOB,
                at_most=True,
            )  # fmt: skip
        )
