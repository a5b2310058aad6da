"""ASGI plumbing shared by the middleware and both serving paths: the scope keys the
middleware sets, header lookup, sending a JSON answer, and noticing a client leave."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import trio
from hypercorn.typing import ASGIReceiveCallable, ASGISendCallable, HTTPScope

from ..core import OJSError

MEDIA_TYPE = "application/openjobspec+json"
_MEDIA_TYPE = MEDIA_TYPE.encode()

REQUEST_ID = "ojs.request_id"
"""Scope key: the request's id (set by :class:`~.middleware.RequestContext`)."""
BODY = "ojs.body"
"""Scope key: the whole request body (set by :class:`~.middleware.RequestBody`)."""
EXCHANGE = "ojs.exchange"
"""Scope key: the request's :class:`Exchange` (set by :class:`~.middleware.RequestContext`)."""
ROUTE = "ojs.route"
"""Scope key: the template of the route serving the request, or ``None`` (set by
:class:`~.route_templates.RouteTemplates` when first asked)."""
CLIENT_GONE = "ojs.client_gone"
"""Scope key: a :class:`trio.Event` set once the client has disconnected (set up by
:class:`~.middleware.RequestBody`, which keeps the disconnect from the app)."""

Headers = Sequence[tuple[bytes, bytes]]


@dataclass(slots=True)
class Exchange:
    """How far a request's answer has got, for the layers that must not answer twice."""

    response_started: bool = False


def scope_items(scope: Any) -> dict[str, Any]:
    """An ASGI scope as the plain dict it is, for the keys above (its TypedDict has none)."""
    items: dict[str, Any] = scope
    return items


def header(scope: HTTPScope, name: bytes) -> str | None:
    """The first value of a request header (``name`` lowercased), as werkzeug's ``get``."""
    for key, value in scope["headers"]:
        if key.lower() == name:
            return bytes(value).decode("latin1")
    return None


async def send_json(
    send: ASGISendCallable, status: int, payload: bytes, headers: Headers = ()
) -> None:
    """A complete JSON response; :class:`~.middleware.RequestContext` adds the other
    standard headers."""
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", _MEDIA_TYPE),
                (b"content-length", b"%d" % len(payload)),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload, "more_body": False})


async def send_error(
    send: ASGISendCallable, scope: HTTPScope, error: OJSError, headers: Headers = ()
) -> None:
    """``error`` in the spec's error body (ojs-http-binding §16.1)."""
    body = error.to_wire(request_id=scope_items(scope).get(REQUEST_ID))
    extra = [
        (name.lower().encode(), value.encode()) for name, value in error.response_headers().items()
    ]
    await send_json(send, error.status, json.dumps(body).encode(), [*headers, *extra])


async def until_client_leaves(scope: HTTPScope, receive: ASGIReceiveCallable | None) -> None:
    """Return once the client has disconnected. ``receive``: the connection's, if nobody
    else is reading it (on the Quart path, Quart is)."""
    gone: trio.Event = scope_items(scope)[CLIENT_GONE]
    if receive is None:
        await gone.wait()
        return

    async def read_on() -> None:  # the middleware's receive sets `gone` on the disconnect
        while True:
            await receive()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(read_on)
        await gone.wait()
        nursery.cancel_scope.cancel()
