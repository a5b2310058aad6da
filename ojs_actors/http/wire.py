"""Request parsing and response rendering shared by every route of the HTTP binding."""

from __future__ import annotations

import json
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, cast

import trio
from hypercorn.typing import ASGIReceiveCallable, HTTPScope
from quart import Blueprint, Response, current_app, request
from werkzeug.exceptions import HTTPException

from ..core import InternalError, InvalidPayload, InvalidRequest, NotFound, OJSError, new_id
from ..system import System
from ..system.backpressure import BLOCK_WAIT, parse_block_timeout
from .asgi import BODY, MEDIA_TYPE, REQUEST_ID, header, scope_items, until_client_leaves

ACCEPTED_MEDIA_TYPES = (MEDIA_TYPE, "application/json")
MAX_JSON_DEPTH = 64
"""Nesting limit of request bodies (ojs-json-format §13.5 recommends enforcing one): far
below the interpreter's recursion limit, which encoding a reply must not run into."""
MAX_REQUEST_ID_LENGTH = 200


@dataclass(frozen=True, slots=True)
class JsonReply:
    """What a JSON endpoint answers, before either serving path renders it."""

    body: dict[str, Any]
    status: int = 200
    headers: dict[str, str] | None = None


JsonHandler = Callable[[System, dict[str, Any]], Awaitable[JsonReply]]


JsonPredicate = Callable[[dict[str, Any]], bool]


@dataclass(frozen=True, slots=True)
class JsonRoute:
    """A ``POST`` endpoint that takes the request's JSON object and answers a :class:`JsonReply`.

    It is a Quart route like any other, and :mod:`.direct` serves it without Quart too.
    """

    path: str
    handle: JsonHandler
    may_wait: JsonPredicate | None = None
    """Whether a request body asks to wait (a long poll). The direct path cancels such a
    request when its client goes away, as Quart does with every request."""


def json_post(
    blueprint: Blueprint, path: str, *, may_wait: JsonPredicate | None = None
) -> Callable[[JsonHandler], JsonRoute]:
    """Register a :data:`JsonHandler` as the Quart route ``POST path``; the route, to list in
    :data:`~ojs_actors.http.routes.DIRECT` so the direct path serves it too."""

    def register(handle: JsonHandler) -> JsonRoute:
        route = JsonRoute(path, handle, may_wait)

        async def view() -> Response:
            scope = cast(HTTPScope, request.scope)
            reply = await answer(route, ojs_system(), json_body(), scope, None)
            if reply is None:  # the client left while the request waited: nobody to tell
                return Response(status=204)
            return reply_response(reply)

        blueprint.add_url_rule(path, handle.__name__, view, methods=["POST"])
        return route

    return register


async def answer(
    route: JsonRoute,
    system: System,
    body: dict[str, Any],
    scope: HTTPScope,
    receive: ASGIReceiveCallable | None,
) -> JsonReply | None:
    """``route``'s reply to ``body``; ``None`` if the request waited and its client left
    meanwhile (the wait is then cancelled). ``receive``: see :func:`until_client_leaves`.
    An ``OJS-Block-Timeout`` header is the wait for room in a full queue (ojs-backpressure
    §5.2) of the enqueues it makes."""
    block = header(scope, b"ojs-block-timeout")
    if block is not None:
        token = BLOCK_WAIT.set(parse_block_timeout(block))
        try:
            return await _answer(route, system, body, scope, receive)
        finally:
            BLOCK_WAIT.reset(token)
    return await _answer(route, system, body, scope, receive)


async def _answer(
    route: JsonRoute,
    system: System,
    body: dict[str, Any],
    scope: HTTPScope,
    receive: ASGIReceiveCallable | None,
) -> JsonReply | None:
    if route.may_wait is None or not route.may_wait(body):
        return await route.handle(system, body)
    reply: JsonReply | None = None
    failure: Exception | None = None

    async def cancel_when_client_leaves() -> None:
        await until_client_leaves(scope, receive)
        nursery.cancel_scope.cancel()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(cancel_when_client_leaves)
        try:
            reply = await route.handle(system, body)
        except Exception as error:  # raised below: not wrapped in the nursery's group
            failure = error
        nursery.cancel_scope.cancel()
    if failure is not None:
        raise failure
    return reply


def ojs_system() -> System:
    """The :class:`System` this app serves (set by :func:`~ojs_actors.http.create_app`)."""
    system: System = current_app.extensions["ojs_system"]
    return system


def ojs_response(
    body: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    response = Response(json.dumps(body), status=status, content_type=MEDIA_TYPE)
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def reply_response(reply: JsonReply) -> Response:
    return ojs_response(reply.body, reply.status, reply.headers)


def error_response(error: OJSError) -> Response:
    return ojs_response(
        error.to_wire(request_id=request_id()), error.status, error.response_headers()
    )


def request_id() -> str:
    """The id the middleware gave the current Quart request."""
    rid: str = scope_items(request.scope)[REQUEST_ID]
    return rid


def choose_request_id(supplied: str | None) -> str:
    """The client's ``X-Request-Id`` if it sent a usable one, else a new one."""
    if supplied and len(supplied) <= MAX_REQUEST_ID_LENGTH:
        return supplied
    return f"req_{new_id()}"


def http_error_to_ojs(error: HTTPException, method: str, path: str) -> tuple[OJSError, int]:
    """The OJS error standing for a framework error, and the status to answer it with."""
    status = error.code or 500
    if status == 404:
        ojs: OJSError = NotFound(f"No such endpoint: {method} {path}.", details={"path": path})
    elif status == 405:
        ojs = InvalidRequest(
            f"Method {method} is not allowed on {path}.",
            details={"path": path, "method": method},
        )
    else:
        ojs = InvalidRequest(error.description or "Bad request.", details={"status": status})
    return ojs, 405 if status == 405 else ojs.status


def unexpected_error() -> InternalError:
    """What a client is told of an exception we did not foresee (the log has the rest)."""
    return InternalError("The server hit an unexpected error; it has been logged.")


def json_body() -> dict[str, Any]:
    """The request body as a JSON object, or the OJS error saying why it is not one (the
    body the middleware read, as the direct path takes it)."""
    check_media_type(request.mimetype)
    return parse_json_object(scope_items(request.scope)[BODY])


def check_media_type(mimetype: str) -> None:
    """Refuse a body whose (lowercased, parameterless) Content-Type is not JSON."""
    if mimetype and mimetype not in ACCEPTED_MEDIA_TYPES:
        raise InvalidRequest(
            f"Unsupported Content-Type '{mimetype}'; send {MEDIA_TYPE}.",
            details={"content_type": mimetype, "supported": list(ACCEPTED_MEDIA_TYPES)},
        )


def parse_json_object(raw: bytes) -> dict[str, Any]:
    """A request body as a JSON object; an empty body is an empty object."""
    if not raw:
        return {}
    try:
        body = _decode_json(raw.decode("utf-8"))
    except (ValueError, RecursionError) as error:
        # ValueError covers bad UTF-8, bad JSON, NaN/Infinity and over-long integer
        # literals; RecursionError, nesting deeper than the parser can follow.
        reason = "it is nested too deeply" if isinstance(error, RecursionError) else error
        raise InvalidPayload(
            f"The request body is not valid UTF-8 JSON: {reason}.",
            details={"position": getattr(error, "pos", None)},
        ) from None
    if not isinstance(body, dict):
        raise InvalidRequest(
            "The request body must be a JSON object.", details={"received": type(body).__name__}
        )
    # Fewer brackets than the limit cannot nest deeper than it: skip the walk.
    if raw.count(b"{") + raw.count(b"[") > MAX_JSON_DEPTH and _nesting_exceeds(
        body, MAX_JSON_DEPTH
    ):
        raise InvalidPayload(
            f"The request body is nested more than {MAX_JSON_DEPTH} levels deep.",
            details={"max_depth": MAX_JSON_DEPTH},
        )
    return body


def render_json(body: dict[str, Any]) -> bytes:
    return json.dumps(body).encode()


def _nesting_exceeds(value: Any, limit: int) -> bool:
    """Whether arrays/objects nest deeper than ``limit`` (level by level: no recursion)."""
    level: list[Any] = [value] if isinstance(value, dict | list) else []
    depth = 0
    while level:
        depth += 1
        if depth > limit:
            return True
        deeper: list[Any] = []
        for item in level:
            children = item.values() if isinstance(item, dict) else item
            deeper.extend(child for child in children if isinstance(child, dict | list))
        level = deeper
    return False


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text} is out of range")
    return value


_DECODER = json.JSONDecoder(parse_constant=_reject_constant, parse_float=_finite_float)


def _decode_json(text: str) -> Any:
    """``json.loads`` with our hooks, without building a decoder per call."""
    if text.startswith("\ufeff"):  # as json.loads words it
        raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", text, 0)
    return _DECODER.decode(text)


def job_id_of(body: dict[str, Any]) -> str:
    job_id = body.get("job_id", body.get("id"))
    if not isinstance(job_id, str) or not job_id:
        raise InvalidRequest(
            "'job_id' is required and must be a string.", details={"field": "job_id"}
        )
    return job_id


def optional_int(
    body: dict[str, Any], name: str, minimum: int, maximum: int | None = None
) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if (
        not isinstance(value, int)
        or isinstance(value, bool)
        or value < minimum
        or (maximum is not None and value > maximum)
    ):
        bound = f" and at most {maximum}" if maximum is not None else ""
        raise InvalidRequest(
            f"'{name}' must be an integer of at least {minimum}{bound}.",
            details={"field": name, "received": value},
        )
    return value


def query_int(name: str, default: int, minimum: int, maximum: int) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InvalidRequest(
            f"Query parameter '{name}' must be an integer.", details={"parameter": name}
        ) from None
    if not minimum <= value <= maximum:
        raise InvalidRequest(
            f"Query parameter '{name}' must be between {minimum} and {maximum}.",
            details={"parameter": name, "received": value},
        )
    return value


def csv_param(name: str) -> frozenset[str]:
    raw = request.args.get(name, "")
    return frozenset(part.strip() for part in raw.split(",") if part.strip())


def pagination(total: int, limit: int, offset: int) -> dict[str, Any]:
    return {"total": total, "limit": limit, "offset": offset, "has_more": offset + limit < total}
