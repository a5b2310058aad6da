"""What the Server-Sent Events routes (the event stream, a job's progress stream) share:
who may have a stream, and how its response is sent."""

from __future__ import annotations

import math
from collections.abc import AsyncIterable

from quart import Response, request

from ...core import InvalidRequest
from ..middleware import allow_wait
from ..sse import MEDIA_TYPE
from ..wire import error_response


def refusal(what: str) -> Response | None:
    """A 406 unless the client asks for the stream (``Accept: text/event-stream``): to
    any other (a JSON client, a crawler accepting ``*/*``) an endless body would look like
    a hang. ``what``: what the endpoint streams, for the message."""
    if any(value == MEDIA_TYPE and q > 0 for value, q in request.accept_mimetypes):
        return None
    response = error_response(
        InvalidRequest(
            f"This endpoint streams {what}: send 'Accept: {MEDIA_TYPE}'.",
            details={"accept": request.headers.get("Accept")},
        )
    )
    response.status_code = 406
    return response


def stream_response(body: AsyncIterable[bytes]) -> Response:
    """``body`` sent as it comes, for as long as it lasts (no request deadline)."""
    allow_wait(math.inf)
    response = Response(body, status=200, content_type=MEDIA_TYPE)
    response.headers["Cache-Control"] = "no-cache"
    response.headers["X-Accel-Buffering"] = "no"  # proxies: pass events on as they come
    response.timeout = None
    return response


__all__ = ["refusal", "stream_response"]
