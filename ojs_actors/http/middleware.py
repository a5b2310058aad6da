"""The one ASGI middleware stack in front of both HTTP paths (Quart and :mod:`.direct`).

Every cross-cutting concern of a request lives here, once, as a small ASGI wrapper;
route code sees none of them. From the outside in:

1. :class:`RequestContext`: the request id (the client's ``X-Request-Id`` or a new one),
   the standard headers on every response (``OJS-Version``, ``X-Request-Id``, the OJS
   media type), the answer of last resort when something below raises, and the
   keep-alive guard: a response sent before the request's body was read whole
   carries ``Connection: close``, so the connection ends cleanly instead of waiting
   for a body nobody reads (Hypercorn's HTTP/1.1 connection would otherwise wedge).
2. :class:`Authentication`: ``Authorization: Bearer <key>`` against the configured keys.
3. :class:`RequestBody`: reads the whole body up front, within the size limit and the
   body timeout, and replays it below. Every route sees a body already read, so no
   route can answer while the client is still sending, and the size limit exists once.
   It also keeps the client's disconnect from the app (see there).
4. :class:`Deadline`: bounds the time spent answering (a waiting fetch extends it by
   its own wait through :func:`allow_wait`).

Metrics and tracing hook in as further wrappers around :class:`Authentication`, so
they see every request, refused ones included.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Callable, Iterable, Sequence
from contextvars import ContextVar
from typing import cast

import trio
from hypercorn.typing import (
    ASGIFramework,
    ASGIReceiveCallable,
    ASGIReceiveEvent,
    ASGISendCallable,
    ASGISendEvent,
    HTTPScope,
    Scope,
    WebsocketScope,
)
from werkzeug.sansio.utils import get_content_length

from ..core import (
    SPEC_VERSION,
    BodyTimedOut,
    OJSError,
    PayloadTooLarge,
    RequestTimedOut,
    Unauthenticated,
)
from .asgi import (
    BODY,
    CLIENT_GONE,
    EXCHANGE,
    MEDIA_TYPE,
    REQUEST_ID,
    Exchange,
    Headers,
    header,
    scope_items,
    send_error,
)
from .wire import choose_request_id, unexpected_error

log = logging.getLogger("ojs_actors.http")

_MEDIA_TYPE = MEDIA_TYPE.encode()
_SPEC_VERSION = SPEC_VERSION.encode()
_CLOSE = (b"connection", b"close")


_TRANSPORT_ERRORS = (trio.BrokenResourceError, trio.ClosedResourceError, trio.BusyResourceError)
"""What Hypercorn's transport raises into a send when the connection is going away (it
closes the socket outside its send lock after answering a request whose body it will not
read, so a send can meet its ``send_eof``)."""


class ConnectionLost(Exception):
    """The connection failed under a send of the answer: nobody left to answer."""


class RequestContext:
    """Request id, standard headers, the keep-alive guard and the answer of last resort."""

    def __init__(self, app: ASGIFramework) -> None:
        self._app = app

    async def __call__(
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        request_id = choose_request_id(header(scope, b"x-request-id"))
        scope_items(scope)[REQUEST_ID] = request_id
        body_read = not _has_body(scope)
        exchange = scope_items(scope)[EXCHANGE] = Exchange()

        async def receive_tracked() -> ASGIReceiveEvent:
            nonlocal body_read
            message = await receive()
            if message["type"] == "http.request" and not message.get("more_body", False):
                body_read = True
            return message

        async def send_stamped(message: ASGISendEvent) -> None:
            if message["type"] == "http.response.start":
                exchange.response_started = True
                headers = list(message.get("headers", ()))
                if message["status"] != 204 and not any(
                    name.lower() == b"content-type" for name, _ in headers
                ):
                    headers.append((b"content-type", _MEDIA_TYPE))
                headers.append((b"ojs-version", _SPEC_VERSION))
                headers.append((b"x-request-id", request_id.encode()))
                if not body_read and _CLOSE not in headers:
                    headers.append(_CLOSE)
                message = {**message, "headers": headers}
            try:
                await send(message)
            except _TRANSPORT_ERRORS as error:
                raise ConnectionLost from error

        try:
            await self._app(scope, receive_tracked, send_stamped)
        except ConnectionLost as lost:
            log.debug("connection lost while answering %s: %r", scope["path"], lost.__cause__)
        except Exception:
            log.exception("unhandled error on %s %s", scope["method"], scope["path"])
            if not exchange.response_started:
                await send_error(send_stamped, scope, unexpected_error())


class Authentication:
    """With keys configured, every path but ``open_paths`` needs ``Authorization: Bearer <key>``.

    Each presented key is compared with every configured key in constant time, so
    neither which key matched nor how much of one did shows in the answer's timing.
    """

    def __init__(self, app: ASGIFramework, keys: Iterable[str], open_paths: Iterable[str]) -> None:
        self._app = app
        self._keys = tuple(key.encode() for key in keys)
        self._open_paths = frozenset(open_paths)

    async def __call__(
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        if (
            not self._keys
            or scope["type"] not in ("http", "websocket")
            or scope["path"] in self._open_paths
            or self._accepts(header(cast(HTTPScope, scope), b"authorization"))
        ):
            await self._app(scope, receive, send)
            return
        error = Unauthenticated(
            "Authentication required: send 'Authorization: Bearer <key>' with a valid API key."
        )
        challenge = [(b"www-authenticate", b'Bearer realm="ojs"')]
        if scope["type"] == "websocket":
            await _refuse_handshake(send, scope, error, challenge)
        else:
            await send_error(send, scope, error, challenge)

    def _accepts(self, authorization: str | None) -> bool:
        if authorization is None:
            return False
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() != "bearer":
            return False
        presented = token.strip().encode("latin1")
        matched = False
        for key in self._keys:
            matched |= hmac.compare_digest(presented, key)
        return matched


async def _refuse_handshake(
    send: ASGISendCallable, scope: WebsocketScope, error: OJSError, headers: Headers
) -> None:
    """Refuse a WebSocket handshake with the error's status and body (the ASGI
    ``websocket.http.response`` extension, which Hypercorn has), else with a bare 403."""
    if "websocket.http.response" not in (scope.get("extensions") or {}):
        await send({"type": "websocket.close", "code": 1008, "reason": error.message})
        return
    body = json.dumps(error.to_wire()).encode()
    await send(
        {
            "type": "websocket.http.response.start",
            "status": error.status,
            "headers": [
                (b"content-type", _MEDIA_TYPE),
                (b"content-length", b"%d" % len(body)),
                *headers,
            ],
        }
    )
    await send({"type": "websocket.http.response.body", "body": body, "more_body": False})


class RequestBody:
    """Reads the whole body before the app runs (at most ``max_bytes``, within ``timeout``)
    and replays it: ``scope[BODY]`` holds it, and the app's first ``receive`` returns it.

    A body over the limit is read on and thrown away up to ``DRAIN_FACTOR`` times the
    limit, so the 413 keeps the connection; a larger one is answered unread, and the
    connection closes. The client's disconnect is kept from the app: it sets
    ``scope[CLIENT_GONE]`` instead, which only requests that wait watch
    (:func:`~.asgi.until_client_leaves`). So on both paths a request that arrived whole
    is carried out whole, and a client that half-closes its connection after its request
    still gets the answer."""

    DRAIN_FACTOR = 4

    def __init__(self, app: ASGIFramework, *, max_bytes: int, timeout: float) -> None:
        self._app = app
        self._max_bytes = max_bytes
        self._drain_bytes = max_bytes * self.DRAIN_FACTOR
        self._timeout = timeout

    async def __call__(
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        declared = get_content_length(
            header(scope, b"content-length"), header(scope, b"transfer-encoding")
        )
        if declared is not None and declared > self._drain_bytes:
            await send_error(send, scope, self._too_large())
            return
        chunks: list[bytes] = []
        size = 0
        complete = False
        # CancelScope(deadline=...) rather than move_on_after: the same, without the cost of
        # a generator-based context manager on every request
        with trio.CancelScope(deadline=trio.current_time() + self._timeout):
            while not complete and size <= self._drain_bytes:
                message = await receive()
                if message["type"] != "http.request":
                    return  # the client went away: nobody to answer
                chunk = bytes(message.get("body", b""))
                size += len(chunk)
                complete = not message.get("more_body", False)
                if size <= self._max_bytes:
                    chunks.append(chunk)
        if size > self._max_bytes or (declared is not None and declared > self._max_bytes):
            await send_error(send, scope, self._too_large())
        elif not complete:
            timed_out = BodyTimedOut(
                f"The request body did not arrive within {self._timeout:g} s.",
                details={"body_timeout_seconds": self._timeout},
            )
            await send_error(send, scope, timed_out)
        else:
            body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
            gone = trio.Event()
            items = scope_items(scope)
            items[BODY] = body
            items[CLIENT_GONE] = gone
            await self._app(scope, _replaying(body, receive, gone), send)

    def _too_large(self) -> PayloadTooLarge:
        return PayloadTooLarge(
            f"The request body exceeds the maximum of {self._max_bytes} bytes.",
            details={"max_bytes": self._max_bytes},
        )


def _replaying(body: bytes, receive: ASGIReceiveCallable, gone: trio.Event) -> ASGIReceiveCallable:
    """``receive`` that returns the body already read, then never returns: the client's
    disconnect sets ``gone`` instead of reaching the app."""
    pending = True

    async def replay() -> ASGIReceiveEvent:
        nonlocal pending
        if pending:
            pending = False
            return {"type": "http.request", "body": body, "more_body": False}
        while (await receive())["type"] != "http.disconnect":
            pass  # nothing else follows a whole body
        gone.set()
        await trio.sleep_forever()
        raise AssertionError("unreachable")

    return replay


_DEADLINE: ContextVar[trio.CancelScope] = ContextVar("ojs_request_deadline")


def allow_wait(seconds: float) -> None:
    """Extend the current request's deadline by a wait the request asked for (a long-poll
    fetch's ``wait_ms``). Outside a request, nothing to do."""
    deadline = _DEADLINE.get(None)
    if deadline is not None and seconds > 0:
        deadline.deadline += seconds


class Deadline:
    """No request waits forever on an actor or a backend: past ``seconds`` (plus any wait
    the request asked for), the answer is a retryable 503, unless the answer had started
    (it sits inside :class:`RequestContext`, whose :class:`~.asgi.Exchange` says so)."""

    def __init__(self, app: ASGIFramework, seconds: float) -> None:
        self._app = app
        self._seconds = seconds

    async def __call__(
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        with trio.CancelScope(deadline=trio.current_time() + self._seconds) as deadline:
            token = _DEADLINE.set(deadline)
            try:
                await self._app(scope, receive, send)
            finally:
                _DEADLINE.reset(token)
        if deadline.cancelled_caught and not scope_items(scope)[EXCHANGE].response_started:
            log.warning(
                "%s %s missed its deadline of %g s", scope["method"], scope["path"], self._seconds
            )
            error = RequestTimedOut(
                "The server could not answer in time; the request may or may not have taken "
                "effect. Retry it (with the same job id, an enqueue is not repeated).",
                details={"deadline_seconds": self._seconds},
            )
            await send_error(send, scope, error, [(b"retry-after", b"1")])


def _has_body(scope: HTTPScope) -> bool:
    length = header(scope, b"content-length")
    return header(scope, b"transfer-encoding") is not None or (
        length is not None and length.strip() not in ("", "0")
    )


Middleware = Callable[[ASGIFramework], ASGIFramework]


def stack(app: ASGIFramework, layers: Sequence[Middleware]) -> ASGIFramework:
    """``app`` wrapped in ``layers``, the first outermost."""
    for layer in reversed(layers):
        app = layer(app)
    return app


__all__ = [
    "Authentication", "Deadline", "RequestBody", "RequestContext",
    "allow_wait", "stack",
]  # fmt: skip
