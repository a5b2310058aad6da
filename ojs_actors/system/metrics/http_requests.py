"""HTTP requests by method, route template and status, and their durations: the
instruments the ASGI wrapper :class:`ojs_actors.http.metrics.HttpMetrics` records into."""

from __future__ import annotations

from .families import HTTP_SECONDS_BUCKETS
from .instruments import Instruments


class HttpRequests:
    def __init__(self, instruments: Instruments) -> None:
        self._requests = instruments.counter(
            "ojs_http_requests",
            "HTTP requests answered, by method, route template and status code.",
            ["method", "route", "status"],
        )
        self._duration = instruments.histogram(
            "ojs_http_request_duration_seconds",
            "Time from a request's arrival to its answer's end (a long-poll fetch included).",
            ["method", "route"],
            HTTP_SECONDS_BUCKETS,
        )

    def record(self, method: str, route: str, status: int, seconds: float) -> None:
        """``method`` and ``route`` must come from bounded sets (the caller's job)."""
        self._requests.child(method, route, str(status)).inc()
        self._duration.child(method, route).observe(seconds)


__all__ = ["HttpRequests"]
