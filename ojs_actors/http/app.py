"""The OJS HTTP binding on Quart-trio: a thin client of :class:`~ojs_actors.System`.

This module wires the app: the middleware stack of :mod:`.middleware` (request id,
standard headers, authentication, body limit, deadline) around both serving paths,
the hot endpoints of :mod:`.direct` and the route blueprints of :mod:`.routes` on
Quart. Every response carries ``Content-Type: application/openjobspec+json``,
``OJS-Version`` and ``X-Request-Id``; every error, ours or the framework's, gets the
spec's body.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import partial

from quart import Response, request
from quart_trio import QuartTrio
from quart_trio.wrappers.response import TrioResponse
from werkzeug.exceptions import HTTPException

from ..core import OJSError
from ..system import System
from ..system.event_stream import StreamSettings
from . import routes
from .asgi import MEDIA_TYPE
from .direct import DirectRoutes
from .metrics import http_metrics
from .middleware import Authentication, Deadline, RequestBody, RequestContext, stack
from .route_templates import RouteTemplates
from .routes.admin_ui import STATIC_PATHS
from .routes.stream import REALTIME, Realtime
from .tenancy import TenantContext
from .tracing import http_tracing
from .wire import error_response, http_error_to_ojs, unexpected_error

log = logging.getLogger("ojs_actors.http")

DEFAULT_MAX_BODY_BYTES = 1024 * 1024
DEFAULT_REQUEST_TIMEOUT = 30.0
DEFAULT_BODY_TIMEOUT = 60.0
OPEN_PATHS = frozenset({"/ojs/v1/health", "/ojs/v1/ready", "/health", "/ready"}) | STATIC_PATHS
"""Served without an API key: what load balancers and orchestrators probe, and the admin
UI's static pages (its calls to the API carry the key)."""


class OjsResponse(TrioResponse):
    default_mimetype = MEDIA_TYPE


class OjsApp(QuartTrio):
    async def make_default_options_response(self) -> Response:
        """``OPTIONS``: 204 with the ``Allow`` header (no body, so no content type)."""
        response = await super().make_default_options_response()
        response.status_code = 204
        del response.headers["Content-Type"]
        return response


@dataclass(frozen=True, slots=True)
class HttpSettings:
    allow_reset: bool = False
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    api_keys: tuple[str, ...] = ()
    """Accepted bearer keys; several at once allow rotation. Empty: no authentication."""
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT
    """Longest time spent answering a request (a waiting fetch adds its ``wait_ms``)."""
    body_timeout: float = DEFAULT_BODY_TIMEOUT
    """Longest time a client may take to send a request's body."""
    direct_routes: bool = True
    """Serve the hot endpoints without Quart's per-request machinery (see :mod:`.direct`);
    off, Quart serves them like every other route, with the same answers."""
    stream: StreamSettings = StreamSettings()
    """The live event streams' buffers and timeouts (SSE and WebSocket)."""


def create_app(system: System, settings: HttpSettings | None = None) -> QuartTrio:
    settings = settings or HttpSettings()
    app = OjsApp("ojs_actors")
    app.config["MAX_CONTENT_LENGTH"] = None  # RequestBody enforces the limit, for both paths
    app.response_class = OjsResponse
    app.extensions["ojs_system"] = system
    app.extensions[REALTIME] = Realtime(settings.stream)
    for blueprint in routes.PUBLIC:
        app.register_blueprint(blueprint)
    app.register_blueprint(routes.UI)
    if settings.allow_reset:
        app.register_blueprint(routes.RESET)

    @app.errorhandler(OJSError)
    async def on_ojs_error(error: OJSError) -> Response:
        return error_response(error)

    @app.errorhandler(HTTPException)
    async def on_http_error(error: HTTPException) -> Response:
        ojs, status = http_error_to_ojs(error, request.method, request.path)
        response = error_response(ojs)
        response.status_code = status
        return response

    @app.errorhandler(Exception)
    async def on_unexpected(error: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(unexpected_error())

    quart_asgi = app.asgi_app
    served = (
        DirectRoutes(quart_asgi, system, routes.DIRECT) if settings.direct_routes else quart_asgi
    )
    templates = RouteTemplates(app.url_map, (route.path for route in routes.DIRECT))
    app.asgi_app = stack(  # type: ignore[method-assign, assignment]
        served,
        [
            http_tracing(templates),
            RequestContext,
            http_metrics(system.metrics, templates),
            partial(Authentication, keys=settings.api_keys, open_paths=OPEN_PATHS),
            partial(RequestBody, max_bytes=settings.max_body_bytes, timeout=settings.body_timeout),
            partial(Deadline, seconds=settings.request_timeout),
            TenantContext,
        ],
    )
    return app
