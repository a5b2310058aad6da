"""Request parsing and response rendering shared by every route of the HTTP binding."""

from __future__ import annotations

import json
import math
from typing import Any

from quart import Response, current_app, g, request

from ..core import InvalidPayload, InvalidRequest, OJSError, new_id
from ..system import System

MEDIA_TYPE = "application/openjobspec+json"
ACCEPTED_MEDIA_TYPES = (MEDIA_TYPE, "application/json")
MAX_JSON_DEPTH = 64
"""Nesting limit of request bodies (ojs-json-format §13.5 recommends enforcing one): far
below the interpreter's recursion limit, which encoding a reply must not run into."""


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


def error_response(error: OJSError) -> Response:
    return ojs_response(error.to_wire(request_id=request_id()), error.status)


def request_id() -> str:
    rid: str = getattr(g, "request_id", None) or f"req_{new_id()}"
    return rid


async def json_body() -> dict[str, Any]:
    """The request body as a JSON object, or the OJS error saying why it is not one."""
    content_type = (request.mimetype or "").lower()
    if content_type and content_type not in ACCEPTED_MEDIA_TYPES:
        raise InvalidRequest(
            f"Unsupported Content-Type '{content_type}'; send {MEDIA_TYPE}.",
            details={"content_type": content_type, "supported": list(ACCEPTED_MEDIA_TYPES)},
        )
    raw: bytes = await request.get_data(as_text=False)  # type: ignore[assignment]
    if not raw:
        return {}
    try:
        body = json.loads(
            raw.decode("utf-8"), parse_constant=_reject_constant, parse_float=_finite_float
        )
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
    if _nesting_exceeds(body, MAX_JSON_DEPTH):
        raise InvalidPayload(
            f"The request body is nested more than {MAX_JSON_DEPTH} levels deep.",
            details={"max_depth": MAX_JSON_DEPTH},
        )
    return body


def _nesting_exceeds(value: Any, limit: int) -> bool:
    """Whether arrays/objects nest deeper than ``limit`` (iteratively: no recursion)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text} is out of range")
    return value


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
