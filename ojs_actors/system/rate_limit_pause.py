"""Dynamic rate limiting (ojs-rate-limiting §9, RL-R003): a handler reports that its
downstream rate-limited it by putting ``rate_limit_until`` (an RFC 3339 timestamp) in
the error of its nack (a worker group handler: by raising
:class:`~.worker_outcomes.RateLimitExceeded`). The job goes back unspent, scheduled for
then (:class:`~.transitions.DownstreamLimited`), and, once that is stored, the job's
rate-limit key is paused until then: no job of the key starts before, in any process
sharing the backend. A job without a key pauses its queue instead (the partition of its
queue's own limit, ``@queue:<name>``, :mod:`.queue_rate_limit`).

The pause is part of the key's partition (the snapshot ``ratelimit:<key>``), written by
compare-and-set with its ``rate_limit.dynamic_adjusted`` event (§11.1: ``key``,
``until``, ``reason``); a later report only lengthens it. Admission reads the
partition, so a paused key refuses at once everywhere; a queue's pause is seen by other
processes when they re-read their queue's limit (within ``poll_interval``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..core import Job, OJSError, format_ms
from .queue_rate_limit import QueueLimiter, queue_key
from .rate_limit_partition import Partition, event
from .rate_limits import policy_of
from .transitions import DownstreamLimited, Transition


class DynamicPauses:
    """A QueueActor's pauses: the keys of the jobs it stored as downstream-limited."""

    def __init__(self, limiter: QueueLimiter) -> None:
        self._limiter = limiter

    @staticmethod
    def involved(items: Sequence[tuple[str, Transition]]) -> bool:
        """Whether storing ``items`` may pause a key (a claim must then wait for it)."""
        return any(isinstance(transition, DownstreamLimited) for _, transition in items)

    async def after_applied(
        self, items: Sequence[tuple[str, Transition]], results: Sequence[Job | OJSError]
    ) -> None:
        """Pause the keys of the jobs of ``items`` stored by a :class:`DownstreamLimited`."""
        for (_, transition), result in zip(items, results, strict=True):
            if isinstance(transition, DownstreamLimited) and isinstance(result, Job):
                await self.pause(result, transition.until, _reason(transition.report))

    async def pause(self, job: Job, until: int, reason: str) -> None:
        limiter = self._limiter
        policy = policy_of(job)
        key = policy.key if policy is not None else queue_key(job.queue)
        now = limiter.clock()
        if until <= now:
            return

        def change(part: Partition) -> bool:
            if part.paused_until is not None and part.paused_until >= until:
                return False
            part.paused_until, part.pause_reason = until, reason
            data = {"key": key, "until": format_ms(until), "reason": reason, "job_id": job.id}
            if policy is None:
                data["queue"] = job.queue
            changes[:] = [event("rate_limit.dynamic_adjusted", key, now, data)]
            return True

        changes: list[dict[str, Any]] = []
        part = await limiter.update(key, change, events=changes)
        if key == limiter.key and part is not None:
            limiter.paused(part.paused_until)  # this process sees it at once


def _reason(report: dict[str, Any]) -> str:
    return str(report.get("message") or report.get("type") or report.get("code") or "")


__all__ = ["DynamicPauses"]
