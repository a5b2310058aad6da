"""The metrics of one System, as ``GET /metrics`` exposes them."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterator
from time import perf_counter
from typing import Any, ParamSpec

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    generate_latest,
)
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from ...actors import Supervisor
from ...backends import Backend
from ...core import Job
from ..backpressure import PressureBoard
from .actors import ActorRestarts, actor_families
from .backend_calls import BackendCalls, measured
from .backpressure import backpressure_families
from .families import FETCH_SECONDS_BUCKETS
from .http_requests import HttpRequests
from .instruments import HistogramVec, Instruments
from .job_flow import JobCounts, JobFlow, count_jobs, job_count_families
from .relay import relay_families

CONTENT_TYPE = CONTENT_TYPE_LATEST
P = ParamSpec("P")
log = logging.getLogger("ojs_actors.metrics")


class SystemMetrics:
    """Off (``enabled=False``), it records nothing: :attr:`jobs` and :attr:`http` are
    ``None``, :meth:`measure_backend` and :meth:`timed_fetch` hand back what they are
    given, and ``GET /metrics`` answers 404."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.registry = CollectorRegistry()
        self.jobs: JobFlow | None = None
        """Told of every job change this process stores (see :mod:`.job_flow`)."""
        self.http: HttpRequests | None = None
        """What the HTTP layer records its requests into."""
        self._backend_calls: BackendCalls | None = None
        self._fetch_wait: HistogramVec | None = None
        self._restarts: ActorRestarts | None = None
        self._relay_status: Callable[[], Awaitable[dict[str, Any] | None]] | None = None
        self._backend: Backend | None = None
        self._root: Supervisor | None = None
        self._workers: Callable[[], int] = lambda: 0
        self._pressure: PressureBoard | None = None
        self._relay: dict[str, Any] | None = None
        self._counts: JobCounts | None = None
        if not enabled:
            return
        for standard in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
            self.registry.register(standard)
        instruments = Instruments(self.registry)
        self.jobs = JobFlow(instruments)
        self.http = HttpRequests(instruments)
        self._backend_calls = BackendCalls(instruments)
        self._fetch_wait = instruments.histogram(
            "ojs_fetch_wait_seconds",
            "Time fetch requests took, a long poll's wait included; result=jobs or empty.",
            ["result"],
            FETCH_SECONDS_BUCKETS,
        )
        self._restarts = ActorRestarts(instruments)
        self.registry.register(_ScrapeCollector(self))

    def measure_backend(self, backend: Backend) -> Backend:
        """The backend as the System's parts should call it: every call timed."""
        if self._backend_calls is None:
            return backend
        return measured(backend, self._backend_calls)

    def timed_fetch(
        self, fetch: Callable[P, Awaitable[list[Job]]]
    ) -> Callable[P, Awaitable[list[Job]]]:
        """``fetch``, each call's time observed in ``ojs_fetch_wait_seconds``."""
        if self._fetch_wait is None:
            return fetch
        with_jobs = self._fetch_wait.child("jobs")
        empty = self._fetch_wait.child("empty")

        async def timed(*args: P.args, **kwargs: P.kwargs) -> list[Job]:
            started = perf_counter()
            jobs = await fetch(*args, **kwargs)
            (with_jobs if jobs else empty).observe(perf_counter() - started)
            return jobs

        return timed

    def watch(
        self,
        *,
        root: Supervisor,
        backend: Backend,
        relay_status: Callable[[], Awaitable[dict[str, Any] | None]],
        workers: Callable[[], int],
        pressure: PressureBoard,
    ) -> None:
        """What is read at scrape time: the supervision tree, the backend's job counts,
        the event relay's figures, the number of workers heard from, the bounded queues'
        figures."""
        if self._restarts is None:
            return
        self._root = root
        self._backend = backend
        self._relay_status = relay_status
        self._workers = workers
        self._pressure = pressure

    def restarted(self, child_id: str, supervisor: bool) -> None:
        """Count a restart (the system's restart hook calls it)."""
        if self._restarts is not None:
            self._restarts.record(child_id, supervisor)

    async def refresh(self) -> None:
        """Read what needs the backend, for the next :meth:`exposition`. A backend that
        fails leaves those figures out of the exposition rather than failing it."""
        if self._backend is None or self._relay_status is None:
            return
        try:
            self._counts = await count_jobs(self._backend)
        except Exception as error:
            log.warning("metrics: job counts not read: %s", error)
            self._counts = None
        try:
            self._relay = await self._relay_status()
        except Exception as error:
            log.warning("metrics: event relay figures not read: %s", error)
            self._relay = None

    async def exposition(self) -> bytes:
        """Every metric, fresh, in Prometheus's text format (:data:`CONTENT_TYPE`)."""
        await self.refresh()
        return generate_latest(self.registry)

    @property
    def relay(self) -> dict[str, Any] | None:
        return self._relay


class _ScrapeCollector(Collector):
    """The figures read at scrape time: from the last :meth:`SystemMetrics.refresh` and,
    with no I/O, from the supervision tree."""

    def __init__(self, metrics: SystemMetrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        metrics = self._metrics
        yield from job_count_families(metrics._counts, metrics._workers)
        yield from actor_families(metrics._root)
        yield from relay_families(metrics._relay)
        yield from backpressure_families(metrics._pressure)


__all__ = ["CONTENT_TYPE", "SystemMetrics"]
