"""The hot endpoints (enqueue, fetch, ack, …) served straight on ASGI, beside Quart.

For a small JSON request Quart's per-request machinery (a werkzeug request and
response, the app and request contexts, hooks and signals, a two-task nursery)
costs more than our work itself. :class:`DirectRoutes` answers the ``POST``
endpoints of :data:`~ojs_actors.http.routes.DIRECT` without it: the same
handlers, the same checks (media type, JSON) and error bodies. Every other request
goes to the Quart app unchanged, so routing answers (404, 405, ``OPTIONS``) stay
Quart's. Both sit inside the one middleware stack (:mod:`.middleware`), which has
read the body and adds the standard headers.

As on the Quart path, only a request that may wait (a long-poll fetch) is cancelled
when its client disconnects; any other runs to its end, so an enqueue or ack that
arrived whole is carried out whole (:func:`~.wire.answer`)."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping

from hypercorn.typing import (
    ASGIFramework,
    ASGIReceiveCallable,
    ASGISendCallable,
    Scope,
)
from werkzeug.http import parse_options_header

from ..core import OJSError
from ..system import System
from .asgi import BODY, header, scope_items, send_error, send_json
from .wire import JsonRoute, answer, check_media_type, parse_json_object, render_json

log = logging.getLogger("ojs_actors.http")


class DirectRoutes:
    """ASGI app: ``routes`` served here, anything else handed to ``fallback`` (the Quart app)."""

    def __init__(
        self, fallback: ASGIFramework, system: System, routes: Iterable[JsonRoute]
    ) -> None:
        self._fallback = fallback
        self._system = system
        self._routes: Mapping[str, JsonRoute] = {route.path: route for route in routes}

    async def __call__(
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] != "POST"
            or scope.get("root_path")
            or (route := self._routes.get(scope["path"])) is None
        ):
            await self._fallback(scope, receive, send)
            return
        try:
            check_media_type(parse_options_header(header(scope, b"content-type") or "")[0].lower())
            body = parse_json_object(scope_items(scope)[BODY])
            reply = await answer(route, self._system, body, scope, receive)
        except OJSError as error:
            await send_error(send, scope, error)
            return
        if reply is None:  # the client left while the request waited: nobody to tell
            return
        headers = [
            (name.lower().encode(), value.encode()) for name, value in (reply.headers or {}).items()
        ]
        await send_json(send, reply.status, render_json(reply.body), headers)
