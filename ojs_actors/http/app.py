"""The OJS HTTP binding on Quart-trio: a thin client of :class:`~ojs_actors.System`.

This module wires the app: standard headers, error rendering, and the route
blueprints of :mod:`.routes`. Every response carries
``Content-Type: application/openjobspec+json``, ``OJS-Version`` and
``X-Request-Id``; every error, ours or the framework's, gets the spec's body.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from quart import Response, g, request
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException

from ..core import SPEC_VERSION, InternalError, OJSError
from ..system import System
from . import routes
from .direct import DirectRoutes
from .wire import MEDIA_TYPE, choose_request_id, error_response, http_error_to_ojs, request_id

log = logging.getLogger("ojs_actors.http")

DEFAULT_MAX_BODY_BYTES = 1024 * 1024


@dataclass(frozen=True, slots=True)
class HttpSettings:
    allow_reset: bool = False
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    direct_routes: bool = True
    """Serve the hot endpoints without Quart's per-request machinery (see :mod:`.direct`);
    off, Quart serves them like every other route, with the same answers."""


def create_app(system: System, settings: HttpSettings | None = None) -> QuartTrio:
    settings = settings or HttpSettings()
    app = QuartTrio("ojs_actors")
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.extensions["ojs_system"] = system
    for blueprint in routes.PUBLIC:
        app.register_blueprint(blueprint)
    if settings.allow_reset:
        app.register_blueprint(routes.RESET)

    @app.before_request
    async def assign_request_id() -> None:
        g.request_id = choose_request_id(request.headers.get("X-Request-Id"))

    @app.after_request
    async def standard_headers(response: Response) -> Response:
        response.headers["OJS-Version"] = SPEC_VERSION
        response.headers["X-Request-Id"] = request_id()
        if response.status_code != 204:
            response.headers["Content-Type"] = MEDIA_TYPE
        return response

    @app.errorhandler(OJSError)
    async def on_ojs_error(error: OJSError) -> Response:
        return error_response(error)

    @app.errorhandler(HTTPException)
    async def on_http_error(error: HTTPException) -> Response:
        ojs, status = http_error_to_ojs(
            error, request.method, request.path, settings.max_body_bytes
        )
        response = error_response(ojs)
        response.status_code = status
        return response

    @app.errorhandler(Exception)
    async def on_unexpected(error: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(
            InternalError("The server hit an unexpected error; it has been logged.")
        )

    if settings.direct_routes:
        app.asgi_app = DirectRoutes(  # type: ignore[method-assign]
            app.asgi_app,
            system,
            routes.DIRECT,
            max_body_bytes=settings.max_body_bytes,
            body_timeout=app.config["BODY_TIMEOUT"],
        )
    return app
