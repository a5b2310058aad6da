"""What each tenant did lately, for its statistics (ojs-multi-tenancy §10.2): its jobs
enqueued and finished, and its share of the claims, all this process's, over the last
minute (as :class:`~.fair_scheduling.FairScheduler`'s dispatch counts), next to the
share its ``fairness_weight`` gives it among the tenants with waiting work (§7.2)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ..core import State
from .clock import Clock
from .fair_scheduling import MinuteCounts
from .queue_writes import Changes
from .tenancy import split_shard
from .tenant_config import weight_of

PROCESSED = (State.COMPLETED, State.DISCARDED)


def processed(before: State | None, state: State) -> bool:
    """Whether a change from ``before`` to ``state`` is a job processed: an active job
    completed or discarded by its failure (as the tenant metrics count them)."""
    return before is State.ACTIVE and state in PROCESSED


class TenantActivity:
    """The tenants' enqueues and processed jobs stored through this process, counted by
    the change hook every stored job change goes through."""

    def __init__(self, clock: Clock) -> None:
        self._enqueued = MinuteCounts(clock)
        self._processed = MinuteCounts(clock)

    def record(self, changes: Changes) -> None:
        for before, job in changes:
            if before is None:
                self._enqueued.add(split_shard(job.queue)[1])
            elif processed(before, job.state):
                self._processed.add(split_shard(job.queue)[1])

    def throughput(self, tenant: str) -> dict[str, int]:
        """``processed_per_minute`` and ``enqueued_per_minute`` of this process."""
        return {
            "processed_per_minute": self._processed.counts().get(tenant, 0),
            "enqueued_per_minute": self._enqueued.counts().get(tenant, 0),
        }


def fairness(
    tenant: str,
    waiting: Iterable[str],
    configs: Mapping[str, Mapping[str, Any]],
    dispatched: Mapping[str, int],
) -> dict[str, float]:
    """``weight``; ``effective_share``, the tenant's weight over the sum of the weights of
    the tenants with waiting work (itself counted as one); ``actual_share``, its part of
    this process's claims over the last minute (``dispatched``: per physical queue)."""
    weight = weight_of(configs.get(tenant))
    competing = {*waiting} - {tenant}
    total = weight + sum(weight_of(configs.get(other)) for other in competing)
    claims: dict[str, int] = {}
    for queue, count in dispatched.items():
        owner = split_shard(queue)[1]
        claims[owner] = claims.get(owner, 0) + count
    all_claims = sum(claims.values())
    return {
        "weight": weight,
        "effective_share": round(weight / total, 4),
        "actual_share": round(claims.get(tenant, 0) / all_claims, 4) if all_claims else 0.0,
    }


__all__ = ["TenantActivity", "fairness", "processed"]
