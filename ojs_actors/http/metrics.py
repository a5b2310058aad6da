"""HTTP metrics: an ASGI wrapper counting requests by method, route template and status,
and timing them (``ojs_http_requests_total``, ``ojs_http_request_duration_seconds``).

It sits in the middleware stack right inside :class:`~.middleware.RequestContext`, so it
sees both serving paths (:mod:`.direct` and Quart) and the requests the middleware
refuses (401, 413, 503). The route label is a bounded template, never a raw path: the
hot endpoints' fixed paths, looked up in a dict; for every other request the template of
the Quart rule its path and method match (``/ojs/v1/jobs/<job_id>``), and ``other`` for
what matches none (404, 405). A request that ends with no answer sent (the client left
during a long poll, the server stopped) counts with status ``499``.
"""

from __future__ import annotations

from collections.abc import Callable
from time import perf_counter

from hypercorn.typing import (
    ASGIFramework,
    ASGIReceiveCallable,
    ASGISendCallable,
    ASGISendEvent,
    Scope,
)
from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map, MapAdapter
from werkzeug.routing.exceptions import RoutingException

from ..system.metrics import SystemMetrics
from ..system.metrics.http_requests import HttpRequests
from .routes import DIRECT

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
"""Methods labelled as themselves; any other is ``other`` (a client picks the method)."""
OTHER = "other"
NO_ANSWER = 499


def http_metrics(metrics: SystemMetrics, url_map: Map) -> Callable[[ASGIFramework], ASGIFramework]:
    """The layer to put in the middleware stack: :class:`HttpMetrics`, or, with metrics
    off, none (the app itself)."""
    requests = metrics.http
    if requests is None:
        return lambda app: app
    return lambda app: HttpMetrics(app, requests, url_map)


class HttpMetrics:
    def __init__(self, app: ASGIFramework, requests: HttpRequests, url_map: Map) -> None:
        self._app = app
        self._requests = requests
        self._url_map = url_map
        self._adapter: MapAdapter | None = None
        self._fixed = {("POST", route.path): route.path for route in DIRECT}

    async def __call__(
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        started = perf_counter()
        status = NO_ANSWER

        async def send_observed(message: ASGISendEvent) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self._app(scope, receive, send_observed)
        except Exception:
            if status == NO_ANSWER:
                status = 500  # RequestContext, outside, answers it so
            raise
        finally:
            method = scope["method"]
            route = self._fixed.get((method, scope["path"])) or self._route(method, scope["path"])
            self._requests.record(
                method if method in METHODS else OTHER, route, status, perf_counter() - started
            )

    def _route(self, method: str, path: str) -> str:
        adapter = self._adapter
        if adapter is None:  # bound on first use: every blueprint is registered by then
            adapter = self._adapter = self._url_map.bind("localhost")
        try:
            rule, _ = adapter.match(path, method, return_rule=True)
        except (HTTPException, RoutingException):
            return OTHER
        return str(rule.rule)


__all__ = ["HttpMetrics", "http_metrics"]
