"""The HTTP span of every request, around the whole middleware stack and both serving
paths (Quart and :mod:`.direct`), so refused and failed requests have theirs too.

In the stack, outermost, only while tracing is on (:func:`http_tracing`); it loads no OpenTelemetry itself
(the spans are :class:`~ojs_actors.system.tracing_spans.JobTracer`'s)."""

from __future__ import annotations

from collections.abc import Callable

from hypercorn.typing import (
    ASGIFramework,
    ASGIReceiveCallable,
    ASGISendCallable,
    ASGISendEvent,
    Scope,
)

from ..system import tracing
from .asgi import REQUEST_ID, scope_items
from .route_templates import RouteTemplates


def http_tracing(routes: RouteTemplates) -> Callable[[ASGIFramework], ASGIFramework]:
    """The layer to put in the middleware stack: :class:`HttpTracing` while tracing is
    on; else none (the app itself)."""
    if tracing.current is None:
        return lambda app: app
    return lambda app: HttpTracing(app, routes)


class HttpTracing:
    """A ``SERVER`` span per request, named ``METHOD /route/<template>``."""

    def __init__(self, app: ASGIFramework, routes: RouteTemplates) -> None:
        self._app = app
        self._routes = routes

    async def __call__(
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        tracer = tracing.current
        if tracer is None or scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        status = 0

        async def send_noting(message: ASGISendEvent) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        method, path = scope["method"], scope["path"]
        with tracer.http_request(method, path, scope["headers"]) as span:
            try:
                await self._app(scope, receive, send_noting)
            finally:
                request_id = scope_items(scope).get(REQUEST_ID)
                span.answered(status, self._routes.of(scope), request_id)


__all__ = ["HttpTracing", "http_tracing"]
