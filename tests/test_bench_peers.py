"""The peers of the benchmark (scenario 4), each run for real against a real redis-server.

The first test of the session builds ``.venv-bench/<peer>/`` for every peer (from PyPI,
once; later sessions reuse them while the pins are unchanged), so these are marked
``bench``; they are never skipped.
"""

from __future__ import annotations

import math
import subprocess
from pathlib import Path

import pytest
from serving import free_port

from bench.peers import PEERS, PeerRunError, ensure_peer_envs, run_peer

pytestmark = pytest.mark.bench

JOBS = 50
LATENCY_JOBS = 5
TIMEOUT_S = 30.0
# A lifecycle of 50 no-op jobs on loopback takes well under a second for every peer; a
# figure beyond these would mean a stall, not a slow library.
LATENCY_CEILING_MS = 1000.0


@pytest.fixture(scope="session")
def peer_envs() -> dict[str, Path]:
    return dict(ensure_peer_envs())


def test_each_peer_has_its_own_environment(peer_envs: dict[str, Path]) -> None:
    redis_versions = {}
    for name, python in peer_envs.items():
        probe = subprocess.run(
            [str(python), "-c", f"import {name}, redis; print(redis.__version__)"],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert probe.returncode == 0, f"{name}: {probe.stderr}"
        redis_versions[name] = probe.stdout.strip()
    # The reason each peer has its own environment: their redis-py pins clash.
    assert redis_versions["arq"].startswith("5.")
    assert int(redis_versions["saq"].split(".")[0]) < 8
    assert int(redis_versions["taskiq"].split(".")[0]) >= 8


@pytest.mark.parametrize("name", PEERS)
def test_peer_runs_every_job_of_the_workload(
    name: str, redis_url: str, peer_envs: dict[str, Path]
) -> None:
    result = run_peer(name, redis_url, JOBS, LATENCY_JOBS, TIMEOUT_S)

    assert result.subject == name
    assert result.completed == result.jobs == JOBS
    assert result.latency_jobs == LATENCY_JOBS
    assert result.ok
    for rate in (result.enqueue_per_s, result.process_per_s):
        assert math.isfinite(rate) and rate > 0
    assert 0 < result.latency_p50_ms <= result.latency_p99_ms < LATENCY_CEILING_MS
    assert result.settings.startswith(f"{name} ")  # the library's version comes first


def test_a_phase_over_its_timeout_is_reported_not_valid(
    redis_url: str, peer_envs: dict[str, Path]
) -> None:
    # Far more jobs than 50 ms allows: the enqueue phase stops at its deadline.
    result = run_peer("huey", redis_url, jobs=200_000, latency_jobs=5, timeout_s=0.05)

    assert not result.ok
    assert result.completed < result.jobs
    assert result.settings.startswith("TIMED OUT in the enqueue phase")


def test_an_unreachable_redis_raises_with_the_peers_stderr(peer_envs: dict[str, Path]) -> None:
    nothing_listens = f"redis://127.0.0.1:{free_port()}/0"

    with pytest.raises(PeerRunError, match="(?s)runner exited 1.*ConnectionError"):
        run_peer("huey", nothing_listens, JOBS, LATENCY_JOBS, TIMEOUT_S)
