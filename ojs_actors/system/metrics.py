"""Prometheus metrics of one System (prometheus-client), as ``GET /metrics`` exposes them.

Each System has its own registry (two systems in one process never mix their figures),
with the standard process, platform and garbage-collector collectors and a collector of
its own that reads the figures gathered by the last :meth:`SystemMetrics.refresh`:
values that need the backend (the outbox backlog) are read there, asynchronously,
before each exposition, so ``collect()`` itself does no I/O.

Exposed now: the event relay's, on backends with an event sink (``sink`` label: the
relay's name):

* ``ojs_outbox_backlog`` (gauge): outbox entries waiting for the sink, written by any
  process sharing the backend (Kafka: with ``ojs_outbox_limit``, the bound at which new
  work is refused);
* ``ojs_event_relay_holding`` (gauge): 1 while this process's relay holds the lease;
* ``ojs_event_relay_published_events_total``, ``ojs_event_relay_failures_total``
  (counters, this process's relay; a restarted relay starts again from 0).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

CONTENT_TYPE = CONTENT_TYPE_LATEST


class SystemMetrics:
    def __init__(self, relay_status: Callable[[], Awaitable[dict[str, Any] | None]]) -> None:
        """``relay_status``: the event relay's figures (``Admin.relay_status``)."""
        self._relay_status = relay_status
        self._relay: dict[str, Any] | None = None
        self.registry = CollectorRegistry()
        for standard in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
            self.registry.register(standard)
        self.registry.register(_RelayCollector(self))

    async def refresh(self) -> None:
        """Read what needs the backend, for the next :meth:`exposition`."""
        self._relay = await self._relay_status()

    async def exposition(self) -> bytes:
        """Every metric, fresh, in Prometheus's text format (:data:`CONTENT_TYPE`)."""
        await self.refresh()
        return generate_latest(self.registry)

    @property
    def relay(self) -> dict[str, Any] | None:
        return self._relay


class _RelayCollector(Collector):
    def __init__(self, metrics: SystemMetrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        relay = self._metrics.relay
        if relay is None:
            return
        sink = [relay["sink"]]
        if "backlog" in relay:
            yield _gauge("ojs_outbox_backlog", "Outbox entries waiting for the event sink.",
                         sink, relay["backlog"])  # fmt: skip
            yield _gauge("ojs_outbox_limit", "Outbox backlog at which new work is refused.",
                         sink, relay["limit"])  # fmt: skip
        holding = 1 if relay["relay"] == "publishing" else 0
        yield _gauge("ojs_event_relay_holding", "1 while this process's relay publishes.",
                     sink, holding)  # fmt: skip
        yield _counter("ojs_event_relay_published_events",
                       "Events this process's relay handed to the sink.",
                       sink, relay.get("published", 0))  # fmt: skip
        yield _counter("ojs_event_relay_failures",
                       "Publications the sink refused (each tried again).",
                       sink, relay.get("failures", 0))  # fmt: skip


def _gauge(name: str, documentation: str, sink: list[str], value: float) -> GaugeMetricFamily:
    gauge = GaugeMetricFamily(name, documentation, labels=["sink"])
    gauge.add_metric(sink, value)
    return gauge


def _counter(name: str, documentation: str, sink: list[str], value: float) -> CounterMetricFamily:
    counter = CounterMetricFamily(name, documentation, labels=["sink"])
    counter.add_metric(sink, value)
    return counter


__all__ = ["CONTENT_TYPE", "SystemMetrics"]
