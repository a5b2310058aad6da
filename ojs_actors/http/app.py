"""The OJS HTTP binding on Quart-trio: a thin client of :class:`~ojs_actors.System`.

Every response carries ``Content-Type: application/openjobspec+json``,
``OJS-Version`` and ``X-Request-Id``; every error, ours or the framework's,
is rendered as the spec's error body.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from typing import Any

from quart import Response, g, request
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException

from .. import __version__
from ..backends import EventFilter
from ..core import (
    NO_RESULT,
    SPEC_VERSION,
    InternalError,
    InvalidPayload,
    InvalidRequest,
    Job,
    NotFound,
    OJSError,
    PayloadTooLarge,
    format_ms,
    new_id,
    parse_queue_name,
)
from ..core.timefmt import MAX_DURATION_MS
from ..system import System

log = logging.getLogger("ojs_actors.http")

MEDIA_TYPE = "application/openjobspec+json"
ACCEPTED_MEDIA_TYPES = (MEDIA_TYPE, "application/json")
DEFAULT_MAX_BODY_BYTES = 1024 * 1024
MAX_FETCH_COUNT = 1000
MAX_FETCH_WAIT_MS = 30_000
MAX_JSON_DEPTH = 64
"""Nesting limit of request bodies (ojs-json-format §13.5 recommends enforcing one): far
below the interpreter's recursion limit, which encoding a reply must not run into."""


@dataclass(frozen=True, slots=True)
class HttpSettings:
    allow_reset: bool = False
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES


def ojs_response(
    body: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    response = Response(json.dumps(body), status=status, content_type=MEDIA_TYPE)
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def error_response(error: OJSError) -> Response:
    return ojs_response(error.to_wire(request_id=_request_id()), error.status)


def _request_id() -> str:
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


def _job_id(body: dict[str, Any]) -> str:
    job_id = body.get("job_id", body.get("id"))
    if not isinstance(job_id, str) or not job_id:
        raise InvalidRequest(
            "'job_id' is required and must be a string.", details={"field": "job_id"}
        )
    return job_id


def _optional_int(
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


def _query_int(name: str, default: int, minimum: int, maximum: int) -> int:
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


def _csv(name: str) -> frozenset[str]:
    raw = request.args.get(name, "")
    return frozenset(part.strip() for part in raw.split(",") if part.strip())


def _pagination(total: int, limit: int, offset: int) -> dict[str, Any]:
    return {"total": total, "limit": limit, "offset": offset, "has_more": offset + limit < total}


def _queue_wire(record: dict[str, Any]) -> dict[str, Any]:
    wire: dict[str, Any] = {
        "name": record["name"],
        "status": "paused" if record.get("paused_at") else "active",
        "paused": bool(record.get("paused_at")),
    }
    if record.get("created_at"):
        wire["created_at"] = format_ms(record["created_at"])
    if record.get("paused_at"):
        wire["paused_at"] = format_ms(record["paused_at"])
    return wire


def manifest(system: System) -> dict[str, Any]:
    return {
        "specversion": SPEC_VERSION,
        "implementation": {
            "name": "ojs-actors",
            "version": __version__,
            "language": "python",
            "backend": system.backend.name,
        },
        "conformance_level": 1,
        "protocols": ["http"],
        "backend": system.backend.name,
        "capabilities": {
            "batch_enqueue": False,
            "cron_jobs": False,
            "dead_letter": True,
            "delayed_jobs": True,
            "job_ttl": True,
            "priority_queues": True,
            "rate_limiting": False,
            "schema_validation": False,
            "unique_jobs": False,
            "workflows": False,
            "pause_resume": True,
            "events": True,
        },
        "extensions": {"official": []},
    }


def create_app(system: System, settings: HttpSettings | None = None) -> QuartTrio:
    settings = settings or HttpSettings()
    app = QuartTrio("ojs_actors")
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.config["JSON_SORT_KEYS"] = False

    @app.before_request
    async def assign_request_id() -> None:
        supplied = request.headers.get("X-Request-Id")
        g.request_id = supplied if supplied and len(supplied) <= 200 else f"req_{new_id()}"

    @app.after_request
    async def standard_headers(response: Response) -> Response:
        response.headers["OJS-Version"] = SPEC_VERSION
        response.headers["X-Request-Id"] = _request_id()
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

    # -- system ------------------------------------------------------------------

    @app.get("/ojs/manifest")
    async def get_manifest() -> Response:
        return ojs_response(manifest(system))

    @app.get("/ojs/v1/health")
    async def get_health() -> Response:
        report = await system.health()
        report["version"] = SPEC_VERSION
        return ojs_response(report, 200 if report["status"] == "ok" else 503)

    # -- jobs ----------------------------------------------------------------------

    @app.post("/ojs/v1/jobs")
    async def enqueue() -> Response:
        job = await system.enqueue(await json_body())
        return ojs_response({"job": job.to_wire()}, 201, {"Location": f"/ojs/v1/jobs/{job.id}"})

    @app.get("/ojs/v1/jobs/<job_id>")
    async def info(job_id: str) -> Response:
        return ojs_response({"job": (await system.info(job_id)).to_wire()})

    @app.delete("/ojs/v1/jobs/<job_id>")
    async def cancel(job_id: str) -> Response:
        before = await system.info(job_id)
        job = await system.cancel(job_id)
        return ojs_response({"job": {**job.to_wire(), "previous_state": before.state.value}})

    @app.post("/ojs/v1/jobs/<job_id>/activate")
    async def activate(job_id: str) -> Response:
        job = await system.activate(job_id)
        return ojs_response({"job": {**job.to_wire(), "previous_state": "pending"}})

    # -- workers -------------------------------------------------------------------------

    @app.post("/ojs/v1/workers/fetch")
    async def fetch() -> Response:
        body = await json_body()
        queues = body.get("queues")
        if queues is None and isinstance(body.get("queue"), str):
            queues = [body["queue"]]
        if (
            not isinstance(queues, list)
            or not queues
            or not all(isinstance(q, str) for q in queues)
        ):
            raise InvalidRequest(
                "'queues' is required: a non-empty array of queue names.",
                details={"field": "queues"},
            )
        worker_id = body.get("worker_id")
        if worker_id is not None and not isinstance(worker_id, str):
            raise InvalidRequest("'worker_id' must be a string.", details={"field": "worker_id"})
        count = _optional_int(body, "count", 1, MAX_FETCH_COUNT) or 1
        visibility = _optional_int(body, "visibility_timeout_ms", 1, MAX_DURATION_MS)
        wait_ms = _optional_int(body, "wait_ms", 0, MAX_FETCH_WAIT_MS) or 0
        jobs = await system.fetch(
            [parse_queue_name(q, "queues[]") for q in queues],
            count,
            worker_id=worker_id,
            visibility_timeout_ms=visibility,
            wait=wait_ms / 1000,
        )
        wire = [job.to_wire() for job in jobs]
        response: dict[str, Any] = {"jobs": wire}
        if wire:
            response["job"] = wire[0]
        return ojs_response(response)

    @app.post("/ojs/v1/workers/ack")
    async def ack() -> Response:
        body = await json_body()
        job = await system.ack(_job_id(body), body["result"] if "result" in body else NO_RESULT)
        return ojs_response(_outcome(job, acknowledged=True))

    @app.post("/ojs/v1/workers/nack")
    async def nack() -> Response:
        body = await json_body()
        requeue = body.get("requeue", False)
        if not isinstance(requeue, bool):
            raise InvalidRequest("'requeue' must be a boolean.", details={"field": "requeue"})
        if "error" not in body and not requeue:
            raise InvalidRequest(
                "'error' is required: an object with at least a 'message'.",
                details={"field": "error"},
            )
        job = await system.nack(_job_id(body), body.get("error"), requeue=requeue)
        return ojs_response(_outcome(job))

    @app.post("/ojs/v1/workers/heartbeat")
    async def heartbeat() -> Response:
        body = await json_body()
        worker_id = body.get("worker_id")
        if not isinstance(worker_id, str) or not worker_id:
            raise InvalidRequest(
                "'worker_id' is required and must be a string.", details={"field": "worker_id"}
            )
        job_ids = body.get("active_jobs", [])
        if isinstance(body.get("job_id"), str):
            job_ids = [*job_ids, body["job_id"]] if isinstance(job_ids, list) else job_ids
        if not isinstance(job_ids, list) or not all(isinstance(j, str) for j in job_ids):
            raise InvalidRequest(
                "'active_jobs' must be an array of job ids.", details={"field": "active_jobs"}
            )
        beat = await system.heartbeat(
            worker_id,
            job_ids,
            visibility_timeout_ms=_optional_int(body, "visibility_timeout_ms", 1, MAX_DURATION_MS),
        )
        return ojs_response(
            {
                "state": beat.state,
                "directive": "" if beat.state == "running" else beat.state,
                "jobs_extended": beat.jobs_extended,
                "jobs_cancelled": beat.jobs_cancelled,
                "server_time": format_ms(system.clock()),
            }
        )

    # -- queues ------------------------------------------------------------------------------

    @app.get("/ojs/v1/queues")
    async def list_queues() -> Response:
        records = [_queue_wire(record) for record in await system.list_queues()]
        limit = _query_int("limit", 50, 1, 1000)
        offset = _query_int("offset", 0, 0, 10**9)
        return ojs_response(
            {
                "queues": records[offset : offset + limit],
                "pagination": _pagination(len(records), limit, offset),
            }
        )

    # -- dead letter ------------------------------------------------------------------------

    @app.get("/ojs/v1/dead-letter")
    async def dead_letter() -> Response:
        queue = request.args.get("queue")
        limit = _query_int("limit", 50, 1, 100)
        offset = _query_int("offset", 0, 0, 10**9)
        jobs, total = await system.dead_letter(
            parse_queue_name(queue, "queue") if queue else None, limit, offset
        )
        return ojs_response(
            {"jobs": [j.to_wire() for j in jobs], "pagination": _pagination(total, limit, offset)}
        )

    @app.post("/ojs/v1/dead-letter/<job_id>/retry")
    async def retry_dead_letter(job_id: str) -> Response:
        job = await system.retry_dead_letter(job_id)
        return ojs_response(
            {"job": {**job.to_wire(), "re_enqueued_at": format_ms(job.enqueued_at or 0)}}
        )

    @app.delete("/ojs/v1/dead-letter/<job_id>")
    async def delete_dead_letter(job_id: str) -> Response:
        await system.delete_dead_letter(job_id)
        return ojs_response({"deleted": True, "job_id": job_id})

    # -- events -------------------------------------------------------------------------

    @app.get("/ojs/v1/events")
    async def events() -> Response:
        limit = _query_int("limit", 100, 1, 1000)
        found = await system.events(
            EventFilter(
                types=_csv("types"),
                queues=_csv("queues"),
                job_types=_csv("job_types"),
                after=request.args.get("after") or None,
                limit=limit + 1,
            )
        )
        page = found[:limit]
        return ojs_response(
            {
                "events": page,
                "cursor": page[-1]["id"] if page else None,
                "has_more": len(found) > limit,
            }
        )

    # -- administration -----------------------------------------------------------------

    if settings.allow_reset:

        @app.post("/ojs/v1/admin/reset")
        async def reset() -> Response:
            await system.reset()
            return ojs_response({"reset": True})

    return app


def _outcome(job: Job, *, acknowledged: bool = False) -> dict[str, Any]:
    """Ack/nack answer: the job's fields at the top level, as the HTTP binding shows them."""
    body = job.to_wire()
    body["job_id"] = job.id
    if acknowledged:
        body["acknowledged"] = True
    return body
