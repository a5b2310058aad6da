"""A stand-in OpenTelemetry collector for the ``observability`` scenario: it accepts
OTLP/HTTP trace exports on a free loopback port and only counts them.

Each traced subject gets its own path prefix (``/<source>/v1/traces``: what
``traces_url`` makes of ``<sink.url>/<source>``), so the spans of several processes
exporting at once are counted apart. Parsing each export (to count its spans) is about
what a real collector's receiver does before anything else, and it runs here, in the
harness's process, on the same cores as the subjects.
"""

from __future__ import annotations

import threading
from collections import Counter

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from ojs_actors.testing.otlp import OtlpHttpReceiver


class OtlpSink:
    """Counts OTLP/HTTP export requests and the spans in them, by source (path prefix)."""

    def __init__(self) -> None:
        self.requests: Counter[str] = Counter()
        self.spans: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._receiver = OtlpHttpReceiver(self._take)
        self.url = self._receiver.url
        self.endpoint = self._receiver.endpoint

    def _take(self, source: str, request: ExportTraceServiceRequest) -> None:
        count = sum(
            len(scope.spans)
            for resource in request.resource_spans
            for scope in resource.scope_spans
        )
        with self._lock:
            self.requests[source] += 1
            self.spans[source] += count

    def counts(self, source: str) -> tuple[int, int]:
        """Export requests and spans received from ``source`` so far."""
        with self._lock:
            return self.requests[source], self.spans[source]

    def __enter__(self) -> OtlpSink:
        self._receiver.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._receiver.__exit__(*exc)
