"""A stand-in OpenTelemetry collector for the tests and the bench: it takes OTLP/HTTP
trace exports (protobuf, ``POST <prefix>/v1/traces``) on a free loopback port, in a
thread of its own, and hands each one, decoded, to a callback with its *source*: the
path prefix (``""`` for the plain ``/v1/traces``), so several processes exporting at once
can be told apart (``endpoint(source)``). Needs the ``tracing`` extra."""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

HOST = "127.0.0.1"
TRACES_SUFFIX = "/v1/traces"
PROTOBUF = "application/x-protobuf"
REPLY = ExportTraceServiceResponse().SerializeToString()

Take = Callable[[str, ExportTraceServiceRequest], None]
"""Told of each export: its source and the decoded request (called from the server's
threads, one at a time per connection: guard shared state)."""


class OtlpHttpReceiver:
    def __init__(self, take: Take) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                ok = (
                    self.path.endswith(TRACES_SUFFIX)
                    and self.headers.get("Content-Type") == PROTOBUF
                )
                if ok:
                    source = self.path[: -len(TRACES_SUFFIX)].strip("/")
                    take(source, ExportTraceServiceRequest.FromString(body))
                self.send_response(200 if ok else 404)
                self.send_header("Content-Type", PROTOBUF)
                self.send_header("Content-Length", str(len(REPLY)))
                self.end_headers()
                self.wfile.write(REPLY)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer((HOST, 0), Handler)
        self.url = f"http://{HOST}:{self._server.server_address[1]}"
        """The OTLP endpoint (base URL) of the source ``""``."""
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def endpoint(self, source: str) -> str:
        """The OTLP endpoint (base URL) whose exports count as ``source``'s."""
        return f"{self.url}/{source}"

    def __enter__(self) -> OtlpHttpReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


__all__ = ["OtlpHttpReceiver", "Take"]
