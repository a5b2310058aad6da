"""Counters and histograms for the hot paths, lighter than prometheus-client's own.

prometheus-client's children take a lock on every ``inc`` and ``observe`` (they are made
for threads), which made them a third of what metrics cost per job. A System runs in one
trio thread, and the scrape reads these in that thread too, so plain attributes do:
an ``inc`` is one addition, an ``observe`` a bisection and two. :class:`Instruments` is
the registry's collector of every vector made through it; a child exists once used, so
no series is exposed for what never happened.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator, Sequence

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector


class CounterChild:
    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        self.value += amount


class HistogramChild:
    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        """Per bucket, not cumulative; the last is ``+Inf``'s own."""
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value


class CounterVec:
    def __init__(self, name: str, documentation: str, labels: Sequence[str]) -> None:
        self.name = name
        self.documentation = documentation
        self.labels = list(labels)
        self._children: dict[tuple[str, ...], CounterChild] = {}

    def child(self, *labels: str) -> CounterChild:
        child = self._children.get(labels)
        if child is None:
            child = self._children[labels] = CounterChild()
        return child

    def family(self) -> CounterMetricFamily:
        family = CounterMetricFamily(self.name, self.documentation, labels=self.labels)
        for labels, child in self._children.items():
            family.add_metric(labels, child.value)
        return family


class HistogramVec:
    def __init__(
        self, name: str, documentation: str, labels: Sequence[str], buckets: Sequence[float]
    ) -> None:
        self.name = name
        self.documentation = documentation
        self.labels = list(labels)
        self.bounds = tuple(sorted(buckets))
        self._edges = [repr(float(bound)) for bound in self.bounds] + ["+Inf"]
        self._children: dict[tuple[str, ...], HistogramChild] = {}

    def child(self, *labels: str) -> HistogramChild:
        child = self._children.get(labels)
        if child is None:
            child = self._children[labels] = HistogramChild(self.bounds)
        return child

    def family(self) -> HistogramMetricFamily:
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labels)
        for labels, child in self._children.items():
            cumulative = 0
            buckets: list[tuple[str, float]] = []
            for edge, count in zip(self._edges, child.counts, strict=True):
                cumulative += count
                buckets.append((edge, cumulative))
            family.add_metric(list(labels), buckets, child.sum)
        return family


class Instruments(Collector):
    """Makes the vectors and exposes them: registered in ``registry`` once made."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._vectors: list[CounterVec | HistogramVec] = []
        registry.register(self)

    def counter(self, name: str, documentation: str, labels: Sequence[str]) -> CounterVec:
        vector = CounterVec(name, documentation, labels)
        self._vectors.append(vector)
        return vector

    def histogram(
        self, name: str, documentation: str, labels: Sequence[str], buckets: Sequence[float]
    ) -> HistogramVec:
        vector = HistogramVec(name, documentation, labels, buckets)
        self._vectors.append(vector)
        return vector

    def collect(self) -> Iterator[Metric]:
        for vector in self._vectors:
            yield vector.family()

    def describe(self) -> Iterator[Metric]:
        return iter(())  # no names claimed up front: the families are read at scrape


__all__ = [
    "CounterChild", "CounterVec", "HistogramChild", "HistogramVec", "Instruments",
]  # fmt: skip
