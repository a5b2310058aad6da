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

from ..core import (
    SPEC_VERSION,
    InternalError,
    InvalidRequest,
    NotFound,
    OJSError,
    PayloadTooLarge,
    new_id,
)
from ..system import System
from . import routes
from .wire import MEDIA_TYPE, error_response, request_id

log = logging.getLogger("ojs_actors.http")

DEFAULT_MAX_BODY_BYTES = 1024 * 1024


@dataclass(frozen=True, slots=True)
class HttpSettings:
    allow_reset: bool = False
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES


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
        supplied = request.headers.get("X-Request-Id")
        g.request_id = supplied if supplied and len(supplied) <= 200 else f"req_{new_id()}"

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
        status = error.code or 500
        if status == 413:
            ojs: OJSError = PayloadTooLarge(
                f"The request body exceeds the maximum of {settings.max_body_bytes} bytes.",
                details={"max_bytes": settings.max_body_bytes},
            )
        elif status == 404:
            ojs = NotFound(
                f"No such endpoint: {request.method} {request.path}.",
                details={"path": request.path},
            )
        elif status == 405:
            ojs = InvalidRequest(
                f"Method {request.method} is not allowed on {request.path}.",
                details={"path": request.path, "method": request.method},
            )
        else:
            ojs = InvalidRequest(error.description or "Bad request.", details={"status": status})
        response = error_response(ojs)
        if status == 405:
            response.status_code = 405
        return response

    @app.errorhandler(Exception)
    async def on_unexpected(error: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(
            InternalError("The server hit an unexpected error; it has been logged.")
        )

    return app
