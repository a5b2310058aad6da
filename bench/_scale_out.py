"""Scenario 8: ``ojs-actors serve --workers N --backend redis`` for N = 1, 2, 4.

One server per N, all running at once, each over a redis-server of its own (nothing is
shared between subjects; an idle server costs next to no CPU). ``--workers 1`` is the
plain single-process server of scenarios 1 and 2. Each run measures, per N (the order of
the Ns rotating from run to run):

* the HTTP worker lifecycle of scenario 2 (``http_workers.py``, in a fresh process):
  ``scale_jobs`` jobs, ``http_workers`` HTTP workers with fetch count
  ``scale_fetch_count``, then the latency jobs;
* single-job ``POST /ojs/v1/jobs`` at ``scale_concurrency`` connections, as scenario 1
  (``_load.py``: warm-up, then a bounded load). These jobs go to a queue of their own
  (:data:`ENQUEUE_QUEUE`), which no worker fetches, so they never mix with the
  lifecycle's.

Enqueue-to-start latency with N > 1 depends on where the connections land: an enqueue
wakes only the fetches waiting in the process that took it; the other processes see the
job at their next poll (``Settings.poll_interval``, 1 s by default).

Ratios are run by run against N = 1. The kernel hands each new connection to whichever
worker process accepts it first; the notes show the CPU seconds each process used over
the runs, i.e. how the load spread. On a 2-core machine, the load generator (or the
HTTP workers' client), redis-server and the N server processes share two cores: expect
little gain there; the figure is meant for bigger machines.
"""

from __future__ import annotations

import json
import os

import psutil

from ._config import BenchConfig
from ._http_enqueue import record_load
from ._isolated import run_isolated
from ._load import LoadSpec, build_request, run_load
from ._outcome import Outcome, Progress
from ._results import ratio_of
from ._servers import HOST, HttpProcess, ServerGroup, Stores
from ._workload import JOB_TYPE

SCENARIO = "scale_out"
ENQUEUE_QUEUE = "bench-scale-enqueue"
JOB = {"type": JOB_TYPE, "args": [0], "options": {"queue": ENQUEUE_QUEUE}}


def lifecycle_subject(workers: int, fetch_count: int) -> str:
    return f"redis --workers {workers}, lifecycle fetch count {fetch_count}"


def enqueue_subject(workers: int, concurrency: int) -> str:
    return f"redis --workers {workers}, enqueue c={concurrency}"


def _server_processes(server: HttpProcess) -> list[psutil.Process]:
    """The processes that serve: the children of a ``--workers N`` parent, else itself."""
    process = psutil.Process(server.pid)
    return process.children() or [process]


def _cpu_seconds(server: HttpProcess) -> dict[int, float]:
    """CPU seconds (user + system) used so far by each serving process, by pid."""
    used = {}
    for process in _server_processes(server):
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            continue
        used[process.pid] = times.user + times.system
    return used


def run_scale_out(config: BenchConfig, progress: Progress) -> Outcome:
    sizes = config.sizes
    outcome = Outcome(SCENARIO, "8. Scale-out: ojs-actors serve --workers N on redis")
    counts = sizes.scale_workers
    body = json.dumps(JOB, separators=(",", ":")).encode()
    with ServerGroup("scale-out") as group:
        redis = {workers: group.redis() for workers in counts}
        group.wait_ready()
        servers = {
            workers: group.ojs("redis", Stores(redis=redis[workers]), workers=workers)
            for workers in counts
        }
        group.wait_ready()
        enqueue = {
            workers: build_request("POST", "/ojs/v1/jobs", body, host=HOST, port=server.port)
            for workers, server in servers.items()
        }
        cpu_before = {workers: _cpu_seconds(server) for workers, server in servers.items()}
        for run in range(sizes.runs):
            progress(f"{SCENARIO}: run {run + 1}/{sizes.runs}")
            shift = run % len(counts)
            for workers in counts[shift:] + counts[:shift]:
                server = servers[workers]
                kwargs = {
                    "base_url": server.url,
                    "jobs": sizes.scale_jobs,
                    "latency_jobs": sizes.http_latency_jobs,
                    "workers": sizes.http_workers,
                    "fetch_count": sizes.scale_fetch_count,
                    "timeout_s": sizes.timeout_s,
                }
                subject = lifecycle_subject(workers, sizes.scale_fetch_count)
                outcome.record_lifecycle(run, run_isolated("http", subject, kwargs))
                result = run_load(
                    LoadSpec(
                        HOST,
                        server.port,
                        enqueue[workers],
                        sizes.scale_concurrency,
                        sizes.load_max_requests,
                        sizes.load_seconds,
                        sizes.warmup_seconds,
                    )  # fmt: skip
                )
                record_load(outcome, enqueue_subject(workers, sizes.scale_concurrency), result, run)
        for workers, server in servers.items():
            after = _cpu_seconds(server)
            used = [after[pid] - cpu_before[workers].get(pid, 0.0) for pid in sorted(after)]
            if len(after) != workers:
                outcome.notes.append(
                    f"--workers {workers}: {len(after)} serving processes at the end, "
                    f"not {workers} (a worker restarted or died?)"
                )
            outcome.notes.append(
                f"--workers {workers}: CPU seconds per serving process over the runs: "
                + ", ".join(f"{seconds:.1f}" for seconds in used)
            )
    _add_ratios(outcome, config)
    outcome.notes.append(
        f"{os.cpu_count()} cores here: the HTTP workers' client or the load generator, "
        "redis-server and the N server processes share them; on 2 cores expect little "
        "gain from N > 1 (the figure is meant for bigger machines). Enqueued jobs go to "
        f"queue {ENQUEUE_QUEUE!r}, apart from the lifecycle's"
    )
    outcome.notes.append(
        "latency with N > 1: an enqueue wakes only the fetches waiting in the process that "
        "took it; the other processes' waiting fetches see the job at their next poll "
        "(Settings.poll_interval, 1 s by default). A latency p50 near 1000 ms means no HTTP "
        "worker's connection landed on the producer's process (the kernel places each "
        "connection)"
    )
    return outcome


def _add_ratios(outcome: Outcome, config: BenchConfig) -> None:
    sizes = config.sizes
    base = min(sizes.scale_workers)
    for workers in sizes.scale_workers:
        if workers == base:
            continue
        outcome.ratios.append(
            ratio_of(
                outcome.series_of(
                    lifecycle_subject(workers, sizes.scale_fetch_count), "process jobs/s"
                ),
                outcome.series_of(
                    lifecycle_subject(base, sizes.scale_fetch_count), "process jobs/s"
                ),
                f"--workers {workers} / --workers {base}: HTTP lifecycle process jobs/s",
            )  # fmt: skip
        )
        outcome.ratios.append(
            ratio_of(
                outcome.series_of(enqueue_subject(workers, sizes.scale_concurrency), "req/s"),
                outcome.series_of(enqueue_subject(base, sizes.scale_concurrency), "req/s"),
                f"--workers {workers} / --workers {base}: enqueue req/s, "
                f"c={sizes.scale_concurrency}",
            )
        )
