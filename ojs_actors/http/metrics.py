"""HTTP metrics: an ASGI wrapper counting requests by method, route template and status,
and timing them (``ojs_http_requests_total``, ``ojs_http_request_duration_seconds``).

It sits in the middleware stack right inside :class:`~.middleware.RequestContext`, so it
sees both serving paths (:mod:`.direct` and Quart) and the requests the middleware
refuses (401, 413, 503). The route label is the request's route template
(:mod:`.route_templates`), and ``other`` for what no route serves (404, 405). A request that ends with no answer sent (the client left
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

from ..system.metrics import SystemMetrics
from ..system.metrics.http_requests import HttpRequests
from .route_templates import RouteTemplates

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
"""Methods labelled as themselves; any other is ``other`` (a client picks the method)."""
OTHER = "other"
NO_ANSWER = 499


def http_metrics(
    metrics: SystemMetrics, routes: RouteTemplates
) -> Callable[[ASGIFramework], ASGIFramework]:
    """The layer to put in the middleware stack: :class:`HttpMetrics`, or, with metrics
    off, none (the app itself)."""
    requests = metrics.http
    if requests is None:
        return lambda app: app
    return lambda app: HttpMetrics(app, requests, routes)


class HttpMetrics:
    def __init__(self, app: ASGIFramework, requests: HttpRequests, routes: RouteTemplates) -> None:
        self._app = app
        self._requests = requests
        self._routes = routes

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
            route = self._routes.of(scope) or OTHER
            self._requests.record(
                method if method in METHODS else OTHER, route, status, perf_counter() - started
            )


__all__ = ["HttpMetrics", "http_metrics"]
