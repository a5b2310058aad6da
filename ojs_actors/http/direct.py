"""The hot endpoints (enqueue, fetch, ack, …) served straight on ASGI, in front of Quart.

For a small JSON request Quart's per-request machinery (a werkzeug request and
response, the app and request contexts, hooks and signals, a two-task nursery)
costs more than our work itself. :class:`DirectRoutes` answers the ``POST``
endpoints of :data:`~ojs_actors.http.routes.DIRECT` without it: the same
handlers, the same checks (media type, body size, JSON), the same headers and
error bodies. Every other request goes to the Quart app unchanged, so routing
answers (404, 405, ``OPTIONS``) stay Quart's.

One difference: Quart cancels a handler whose client disconnects; here only a
request that may wait (a long-poll fetch) is watched for that. Any other runs to
its end, so an enqueue or ack that arrived whole is carried out whole."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping

import trio
from hypercorn.typing import ASGIFramework, ASGIReceiveCallable, ASGISendCallable, Scope
from werkzeug.exceptions import RequestEntityTooLarge, RequestTimeout
from werkzeug.http import parse_options_header
from werkzeug.sansio.utils import get_content_length

from ..core import SPEC_VERSION, InternalError, OJSError
from ..system import System
from .wire import (
    MEDIA_TYPE,
    JsonReply,
    JsonRoute,
    check_media_type,
    choose_request_id,
    http_error_to_ojs,
    parse_json_object,
    render_json,
)

log = logging.getLogger("ojs_actors.http")

_MEDIA_TYPE = MEDIA_TYPE.encode()
_SPEC_VERSION = SPEC_VERSION.encode()


class ClientGone(Exception):
    """The client disconnected before the whole request arrived: nobody to answer."""


class DirectRoutes:
    """ASGI app: ``routes`` served here, anything else handed to ``fallback`` (the Quart app)."""

    def __init__(
        self,
        fallback: ASGIFramework,
        system: System,
        routes: Iterable[JsonRoute],
        *,
        max_body_bytes: int,
        body_timeout: float | None,
    ) -> None:
        self._fallback = fallback
        self._system = system
        self._routes: Mapping[str, JsonRoute] = {route.path: route for route in routes}
        self._max_body_bytes = max_body_bytes
        self._body_timeout = float("inf") if body_timeout is None else body_timeout

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
        headers = _first_values(scope["headers"])
        request_id = choose_request_id(headers.get(b"x-request-id"))
        try:
            reply = await self._answer(route, headers, receive)
            payload = render_json(reply.body)
        except ClientGone:
            return
        except Exception as error:
            if not isinstance(error, OJSError):
                log.exception("unhandled error on POST %s", route.path)
                error = InternalError("The server hit an unexpected error; it has been logged.")
            reply = JsonReply(error.to_wire(request_id=request_id), error.status)
            payload = render_json(reply.body)
        await _send_reply(send, reply, payload, request_id)

    async def _answer(
        self, route: JsonRoute, headers: Mapping[bytes, str], receive: ASGIReceiveCallable
    ) -> JsonReply:
        check_media_type(parse_options_header(headers.get(b"content-type", ""))[0].lower())
        body = parse_json_object(await self._read_body(headers, receive, route.path))
        if route.may_wait is None or not route.may_wait(body):
            return await route.handle(self._system, body)
        reply: JsonReply | None = None
        failure: Exception | None = None
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_cancel_on_disconnect, receive, nursery.cancel_scope)
            try:
                reply = await route.handle(self._system, body)
            except Exception as error:  # raised below: not wrapped in the nursery's group
                failure = error
            nursery.cancel_scope.cancel()
        if failure is not None:
            raise failure
        if reply is None:  # cancelled: the client went away
            raise ClientGone
        return reply

    async def _read_body(
        self, headers: Mapping[bytes, str], receive: ASGIReceiveCallable, path: str
    ) -> bytes:
        declared = get_content_length(
            headers.get(b"content-length"), headers.get(b"transfer-encoding")
        )
        if declared is not None and declared > self._max_body_bytes:
            raise self._framework_error(RequestEntityTooLarge(), path)
        chunks: list[bytes] = []
        size = 0
        with trio.move_on_after(self._body_timeout):
            while True:
                message = await receive()
                if message["type"] != "http.request":
                    raise ClientGone
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > self._max_body_bytes:
                    raise self._framework_error(RequestEntityTooLarge(), path)
                chunks.append(chunk)
                if not message.get("more_body", False):
                    return chunks[0] if len(chunks) == 1 else b"".join(chunks)
        raise self._framework_error(RequestTimeout(), path)

    def _framework_error(
        self, error: RequestEntityTooLarge | RequestTimeout, path: str
    ) -> OJSError:
        ojs, _ = http_error_to_ojs(error, "POST", path, self._max_body_bytes)
        return ojs


def _first_values(raw: Iterable[tuple[bytes, bytes]]) -> dict[bytes, str]:
    """Header values by lowercased name, the first of repeated ones (as werkzeug's ``get``)."""
    headers: dict[bytes, str] = {}
    for name, value in raw:
        headers.setdefault(name.lower(), value.decode("latin1"))
    return headers


async def _cancel_on_disconnect(receive: ASGIReceiveCallable, scope: trio.CancelScope) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    scope.cancel()


async def _send_reply(
    send: ASGISendCallable, reply: JsonReply, payload: bytes, request_id: str
) -> None:
    """The response Quart would send: same headers, in the same order."""
    headers = [(b"content-type", _MEDIA_TYPE), (b"content-length", b"%d" % len(payload))]
    if reply.headers:
        headers.extend(
            (name.lower().encode(), value.encode()) for name, value in reply.headers.items()
        )
    headers.append((b"ojs-version", _SPEC_VERSION))
    headers.append((b"x-request-id", request_id.encode()))
    await send({"type": "http.response.start", "status": reply.status, "headers": headers})
    await send({"type": "http.response.body", "body": payload, "more_body": False})
