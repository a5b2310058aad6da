"""What the workers of one lifecycle run (``_workload.py``) have done so far, in trio."""

from __future__ import annotations

import time

import trio


class LifecycleProgress:
    """Bulk-phase jobs completed (and when the last one was), and the latency samples."""

    def __init__(self, jobs: int, latency_jobs: int) -> None:
        self.jobs = jobs
        self.latency_jobs = latency_jobs
        self.completed = 0
        self.last_completion = 0.0
        """``perf_counter`` time of the latest completion."""
        self.all_completed = trio.Event()
        self.latencies: list[float] = []
        self.all_latencies = trio.Event()
        if jobs == 0:
            self.all_completed.set()
        if latency_jobs == 0:
            self.all_latencies.set()

    def latency_job_started(self, enqueued_at: float) -> None:
        self.latencies.append(time.time() - enqueued_at)
        if len(self.latencies) >= self.latency_jobs:
            self.all_latencies.set()

    def bulk_jobs_completed(self, count: int = 1) -> None:
        if count:
            self.completed += count
            self.last_completion = time.perf_counter()
            if self.completed >= self.jobs:
                self.all_completed.set()
