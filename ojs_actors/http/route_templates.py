"""The route template serving a request (``/ojs/v1/jobs/<job_id>``): what the HTTP
metrics label a request with and the HTTP span is named by, never a raw path (a bounded
set of values). Resolved once per request, by whichever layer asks first, and kept in
the request's scope: the hot endpoints' fixed paths from a dict, any other path by
matching the app's Quart rules; ``None`` when no route serves it (404, 405)."""

from __future__ import annotations

from collections.abc import Iterable

from hypercorn.typing import HTTPScope
from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map, MapAdapter
from werkzeug.routing.exceptions import RoutingException

from .asgi import ROUTE, scope_items


class RouteTemplates:
    def __init__(self, url_map: Map, fixed_posts: Iterable[str]) -> None:
        """``fixed_posts``: paths without parameters served for ``POST`` (the direct
        routes), answered without matching."""
        self._url_map = url_map
        self._adapter: MapAdapter | None = None
        self._fixed = {("POST", path): path for path in fixed_posts}

    def of(self, scope: HTTPScope) -> str | None:
        items = scope_items(scope)
        if ROUTE not in items:
            method, path = scope["method"], scope["path"]
            items[ROUTE] = self._fixed.get((method, path)) or self._match(method, path)
        route: str | None = items[ROUTE]
        return route

    def _match(self, method: str, path: str) -> str | None:
        adapter = self._adapter
        if adapter is None:  # bound on first use: every blueprint is registered by then
            adapter = self._adapter = self._url_map.bind("localhost")
        try:
            rule, _ = adapter.match(path, method, return_rule=True)
        except (HTTPException, RoutingException):  # 404, 405, a redirect: no route of ours
            return None
        return str(rule.rule)


__all__ = ["RouteTemplates"]
