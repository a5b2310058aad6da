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
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

HOST = "127.0.0.1"
TRACES_SUFFIX = "/v1/traces"
REPLY = ExportTraceServiceResponse().SerializeToString()


class OtlpSink:
    """Counts OTLP/HTTP export requests and the spans in them, by source (path prefix)."""

    def __init__(self) -> None:
        self.requests: Counter[str] = Counter()
        self.spans: Counter[str] = Counter()
        self._lock = threading.Lock()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                ok = self.path.endswith(TRACES_SUFFIX)
                if ok:
                    source = self.path[: -len(TRACES_SUFFIX)].strip("/")
                    sink._take(source, ExportTraceServiceRequest.FromString(body))
                self.send_response(200 if ok else 404)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(REPLY)))
                self.end_headers()
                self.wfile.write(REPLY)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer((HOST, 0), Handler)
        self.url = f"http://{HOST}:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def endpoint(self, source: str) -> str:
        """The OTLP endpoint (base URL) whose exports count as ``source``'s."""
        return f"{self.url}/{source}"

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
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
