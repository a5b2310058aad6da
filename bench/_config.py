"""How big each scenario is: the full defaults (sized for ``make bench`` on 2 cores in under
15 minutes) and ``--quick`` (a smoke run of a few seconds per scenario)."""

from __future__ import annotations

from dataclasses import dataclass, replace

SCENARIOS = (
    "http_enqueue", "http_lifecycle", "embedded", "peers", "growth", "redis_client", "scale_out",
    "aws_cost", "observability",
)  # fmt: skip
# The numbers: 6 is not a scenario of its own (it is 1-3 on every backend, an alias
# in __main__), so the scenarios after growth are 7 and 8.
SCENARIO_NUMBERS = {
    "1": "http_enqueue", "2": "http_lifecycle", "3": "embedded", "4": "peers", "5": "growth",
    "7": "redis_client", "8": "scale_out",
}  # fmt: skip


@dataclass(frozen=True)
class Sizes:
    runs: int = 3
    # 1. HTTP enqueue: each measurement is a warm-up, then a bounded load
    concurrencies: tuple[int, ...] = (1, 16, 64)
    load_seconds: float = 1.5
    warmup_seconds: float = 0.3
    load_max_requests: int = 200_000
    batch_size: int = 1000  # jobs per POST /ojs/v1/jobs/batch
    batch_connections: int = 4
    # 2. HTTP worker lifecycle
    http_jobs: int = 1000
    http_latency_jobs: int = 100
    http_workers: int = 8
    fetch_counts: tuple[int, ...] = (1, 50)
    # 3. embedded lifecycle
    embedded_jobs: int = 20_000
    embedded_latency_jobs: int = 200
    # 4. peers on one Redis
    peer_jobs: int = 5000
    peer_latency_jobs: int = 100
    # 5. cost growth
    growth_levels: tuple[int, ...] = (1_000, 100_000, 1_000_000)
    growth_requests: int = 1000  # per rate measurement: enqueues, then as many fetches
    growth_connections: int = 16
    fill_chunk: int = 5000  # jobs per batch request while filling
    fill_connections: int = 4
    # 7. Redis client beside raw RESP: per run, calls per subject and block, blocks, warm-up
    rtt_calls: int = 2000
    rtt_blocks: int = 3
    rtt_warmup: int = 200
    # 8. scale-out: ojs-actors serve --workers N on redis
    scale_workers: tuple[int, ...] = (1, 2, 4)
    scale_jobs: int = 2000  # HTTP lifecycle jobs (latency jobs: http_latency_jobs)
    scale_fetch_count: int = 50
    scale_concurrency: int = 64  # single enqueue connections
    # aws_cost: the sqs backend on moto (counts, not timings: one run; --runs leaves it)
    aws_runs: int = 1
    aws_jobs: int = 2000  # embedded window, after the warm-up
    aws_warmup_jobs: int = 1100  # past the outbox retention the scenario sets (3000 events)
    aws_http_jobs: int = 1000
    aws_http_warmup_jobs: int = 1100
    aws_idle_s: float = 60.0
    aws_timeout_s: float = 600.0  # per measurement (warm-up, window, idle)
    # every lifecycle run, every fill: the most it may take
    timeout_s: float = 120.0
    fill_timeout_s: float = 400.0


FULL = Sizes()

QUICK = Sizes(
    runs=1,
    concurrencies=(1, 16),
    load_seconds=0.3,
    warmup_seconds=0.05,
    load_max_requests=2000,
    batch_size=200,
    batch_connections=2,
    http_jobs=100,
    http_latency_jobs=10,
    http_workers=4,
    embedded_jobs=300,
    embedded_latency_jobs=10,
    peer_jobs=100,
    peer_latency_jobs=10,
    growth_levels=(100, 1000, 5000),
    growth_requests=100,
    growth_connections=4,
    fill_chunk=1000,
    fill_connections=2,
    rtt_calls=200,
    rtt_blocks=2,
    rtt_warmup=20,
    scale_workers=(1, 2),
    scale_jobs=100,
    scale_concurrency=16,
    aws_jobs=200,
    aws_warmup_jobs=100,
    aws_http_jobs=100,
    aws_http_warmup_jobs=100,
    aws_idle_s=5.0,
    aws_timeout_s=120.0,
    timeout_s=30.0,
    fill_timeout_s=60.0,
)


@dataclass(frozen=True)
class BenchConfig:
    sizes: Sizes
    scenarios: tuple[str, ...]
    backends: tuple[str, ...]
    quick: bool

    def with_runs(self, runs: int | None) -> BenchConfig:
        return self if runs is None else replace(self, sizes=replace(self.sizes, runs=runs))
