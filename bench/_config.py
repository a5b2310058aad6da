"""How big each scenario is: the full defaults (sized for ``make bench`` on 2 cores in under
15 minutes) and ``--quick`` (a smoke run of a few seconds per scenario)."""

from __future__ import annotations

from dataclasses import dataclass, replace

SCENARIOS = ("http_enqueue", "http_lifecycle", "embedded", "peers", "growth")
SCENARIO_NUMBERS = {str(number): name for number, name in enumerate(SCENARIOS, start=1)}


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
