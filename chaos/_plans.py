"""How long and how hard each backend is run: the full run of ``make chaos`` (about ten
minutes a backend) and the smoke run of ``make test`` (well under a minute)."""

from __future__ import annotations

import random

from ._run import Plan
from ._workload import Pace

FULL_SECONDS = 480.0
SMOKE_SECONDS = 20.0
PACES = {
    "memory": Pace(producers=2, pause_s=0.04, http_workers=6),
    "sqlite": Pace(producers=2, pause_s=0.05, http_workers=6),
    "redis": Pace(producers=2, pause_s=0.04, http_workers=6),
    "nats": Pace(producers=2, pause_s=0.06, http_workers=6),
    "kafka": Pace(producers=2, pause_s=0.08, http_workers=4),
    "sqs": Pace(producers=1, pause_s=0.25, http_workers=1, fetch_wait_ms=2000, poll_s=2.0),
}
"""moto answers 150-200 calls a second here: the sqs run goes slower to stay inside it.
Most of moto's load is polling, not jobs (each server's timers, registries and waiting
fetches read the table every ``poll_s``), so sqs polls less and its worker waits longer."""
SMOKE_PACES = PACES | {"sqs": Pace(producers=1, pause_s=0.5, http_workers=2, poll_s=1.0)}
"""The smoke runs all six backends at once (tests/test_chaos.py): moto gets less."""


def plan_for(
    backend: str, *, smoke: bool, seconds: float | None = None, seed: int | None = None
) -> Plan:
    length = seconds or (SMOKE_SECONDS if smoke else FULL_SECONDS)
    scale = length / FULL_SECONDS
    restartable = backend != "memory"  # memory's jobs die with its process
    proxied = backend not in ("memory", "sqlite")
    return Plan(
        backend=backend,
        seconds=length,
        actor_kills=max(10, round(1000 * scale)),
        sigkills=(max(1, round(20 * scale)) if restartable else 0),
        proxy_faults=(max(3, round(20 * scale)) if proxied else 0),
        servers=2,
        pace=(SMOKE_PACES if smoke else PACES)[backend],
        drain_s=(90.0 if smoke else 180.0) * (2 if backend == "sqs" else 1),
        seed=seed if seed is not None else random.randrange(2**32),
    )
