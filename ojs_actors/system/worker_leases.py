"""A worker group's lease keeper: it renews the lease of every job the group has in hand
once half of its visibility timeout has passed, so long handlers keep their jobs."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import trio

from ..core import Job, OJSError
from .worker_side import WorkerSide

log = logging.getLogger("ojs_actors.worker_group")


class LeaseKeeper:
    def __init__(
        self,
        worker_side: WorkerSide,
        worker_id: str,
        *,
        visibility_timeout_ms: int | None,
        heartbeat_interval: float,
    ) -> None:
        """``visibility_timeout_ms``: what a renewal grants (default: each job's own);
        ``heartbeat_interval``: the longest the keeper sleeps."""
        self.worker_side = worker_side
        self.worker_id = worker_id
        self.visibility_timeout_ms = visibility_timeout_ms
        self.heartbeat_interval = heartbeat_interval
        self.leases: dict[str, tuple[float, int]] = {}
        """Every job in hand (claimed, outcome not stored yet): its lease deadline (ms;
        infinite once renewing failed) and the visibility timeout a renewal grants.
        Whoever stores a job's outcome removes it."""
        self._wake = trio.Event()
        self._wakes_at = math.inf

    def track(self, jobs: Sequence[Job]) -> None:
        """Jobs just claimed: renew each of their leases when it is half spent."""
        leases = self.leases
        override = self.visibility_timeout_ms
        first_renewal = math.inf
        for job in jobs:
            deadline = job.lease_expires_at or 0
            visibility = override or job.visibility_timeout_ms
            leases[job.id] = (deadline, visibility)
            first_renewal = min(first_renewal, deadline - visibility / 2)
        if first_renewal < self._wakes_at:
            self._wake.set()

    async def run(self) -> None:
        """Renew each lease in hand once half its visibility timeout has passed."""
        clock = self.worker_side.clock
        while True:
            now = clock()
            due: list[str] = []
            wake_at = now + self.heartbeat_interval * 1000
            for job_id, (deadline, visibility) in self.leases.items():
                renew_at = deadline - visibility / 2
                if renew_at <= now:
                    due.append(job_id)
                elif renew_at < wake_at:
                    wake_at = renew_at
            if due:
                try:
                    await self._renew(due)
                    continue
                except OJSError as error:
                    log.warning("worker group %s: lease renewal failed: %s", self.worker_id, error)
                    wake_at = now + self.worker_side.settings.poll_interval * 1000
            self._wakes_at = wake_at
            with trio.move_on_after((wake_at - now) / 1000):
                await self._wake.wait()
            self._wake = trio.Event()
            self._wakes_at = math.inf

    async def _renew(self, job_ids: list[str]) -> None:
        answers = await self.worker_side.extend_leases(
            job_ids, visibility_timeout_ms=self.visibility_timeout_ms
        )
        leases = self.leases
        for job_id, answer in zip(job_ids, answers, strict=True):
            lease = leases.get(job_id)
            if lease is None:
                continue  # settled while the renewal was in flight
            if isinstance(answer, Job) and answer.lease_expires_at is not None:
                leases[job_id] = (answer.lease_expires_at, lease[1])
            else:  # no longer ours (cancelled, or its lease ran out): stop renewing it
                log.info(
                    "worker group %s: lease of job %s lost: %s", self.worker_id, job_id, answer
                )
                leases[job_id] = (math.inf, lease[1])


__all__ = ["LeaseKeeper"]
