"""The HTTP span of every request, around the whole middleware stack and both serving
paths (Quart and :mod:`.direct`), so refused and failed requests have theirs too.

In the stack only while tracing is on (:func:`traced`); it loads no OpenTelemetry itself
(the spans are :class:`~ojs_actors.system.tracing_spans.JobTracer`'s)."""

from __future__ import annotations

from hypercorn.typing import (
    ASGIFramework,
    ASGIReceiveCallable,
    ASGISendCallable,
    ASGISendEvent,
    Scope,
)
from werkzeug.routing import Map, MapAdapter

from ..system import tracing
from .asgi import REQUEST_ID, scope_items


def traced(app: ASGIFramework, url_map: Map) -> ASGIFramework:
    """``app`` in :class:`HttpTracing` while tracing is on; else ``app`` itself."""
    return HttpTracing(app, url_map) if tracing.current is not None else app


class HttpTracing:
    """A ``SERVER`` span per request, named ``METHOD /route/<template>``."""

    def __init__(self, app: ASGIFramework, url_map: Map) -> None:
        self._app = app
        self._url_map = url_map
        self._routes: MapAdapter | None = None

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
                span.answered(status, self._route(method, path), request_id)

    def _route(self, method: str, path: str) -> str | None:
        """The template of the route serving ``path`` (``/ojs/v1/jobs/<job_id>``);
        ``None`` if none does."""
        if self._routes is None:
            self._routes = self._url_map.bind("localhost")
        try:
            rule, _ = self._routes.match(path, method, return_rule=True)
        except Exception:  # 404, 405, a redirect: no route of ours
            return None
        return rule.rule


__all__ = ["HttpTracing", "traced"]
