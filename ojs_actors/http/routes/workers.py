"""``/ojs/v1/workers/*``: fetch, ack, nack, heartbeat."""

from __future__ import annotations

from typing import Any

from quart import Blueprint, Response

from ...core import NO_RESULT, InvalidRequest, Job, format_ms, parse_queue_name
from ...core.timefmt import MAX_DURATION_MS
from ...core.version_routes import VersionRoutes, parse_handlers
from ...system import System
from ...system.worker_registry import WORKER_STATES
from ..middleware import allow_wait
from ..wire import (
    JsonReply,
    job_id_of,
    json_body,
    json_post,
    ojs_response,
    ojs_system,
    optional_int,
)

blueprint = Blueprint("workers", __name__)

MAX_FETCH_COUNT = 1000
MAX_FETCH_WAIT_MS = 30_000


def _waits(body: dict[str, Any]) -> bool:
    return body.get("wait_ms") not in (None, 0)


@json_post(blueprint, "/ojs/v1/workers/fetch", may_wait=_waits)
async def fetch(system: System, body: dict[str, Any]) -> JsonReply:
    queues = body.get("queues")
    if queues is None and isinstance(body.get("queue"), str):
        queues = [body["queue"]]
    if not isinstance(queues, list) or not queues or not all(isinstance(q, str) for q in queues):
        raise InvalidRequest(
            "'queues' is required: a non-empty array of queue names.",
            details={"field": "queues"},
        )
    worker_id = body.get("worker_id")
    if worker_id is not None and not isinstance(worker_id, str):
        raise InvalidRequest("'worker_id' must be a string.", details={"field": "worker_id"})
    count = optional_int(body, "count", 1, MAX_FETCH_COUNT) or 1
    visibility = optional_int(body, "visibility_timeout_ms", 1, MAX_DURATION_MS)
    wait_ms = optional_int(body, "wait_ms", 0, MAX_FETCH_WAIT_MS) or 0
    routes = declared_handlers(system, body, worker_id)
    allow_wait(wait_ms / 1000)
    jobs = await system.fetch(
        [parse_queue_name(q, "queues[]") for q in queues],
        count,
        worker_id=worker_id,
        visibility_timeout_ms=visibility,
        wait=wait_ms / 1000,
        routes=routes,
    )
    wire = [job.to_wire() for job in jobs]
    resumed = await system.resume_checkpoints(jobs)  # ojs-durable-execution §6.1
    for envelope in wire if resumed else ():
        if envelope["id"] in resumed:
            envelope["checkpoint"] = resumed[envelope["id"]].resume_wire()
    response: dict[str, Any] = {"jobs": wire}
    if wire:
        response["job"] = wire[0]
    return JsonReply(response)


@json_post(blueprint, "/ojs/v1/workers/ack")
async def ack(system: System, body: dict[str, Any]) -> JsonReply:
    job = await system.ack(job_id_of(body), body["result"] if "result" in body else NO_RESULT)
    return JsonReply(_outcome(job, acknowledged=True))


@json_post(blueprint, "/ojs/v1/workers/nack")
async def nack(system: System, body: dict[str, Any]) -> JsonReply:
    requeue = body.get("requeue", False)
    if not isinstance(requeue, bool):
        raise InvalidRequest("'requeue' must be a boolean.", details={"field": "requeue"})
    if "error" not in body and not requeue:
        raise InvalidRequest(
            "'error' is required: an object with at least a 'message'.",
            details={"field": "error"},
        )
    job = await system.nack(job_id_of(body), body.get("error"), requeue=requeue)
    return JsonReply(_outcome(job))


@blueprint.post("/ojs/v1/workers/heartbeat")
async def heartbeat() -> Response:
    """Both documented forms: ojs-http-binding §10.4 (``active_jobs``: the ids) and
    ojs-worker-protocol §4.2 (``active_jobs``: a count, ``active_job_ids``: the ids,
    and the worker's own report beside them); the OpenAPI document's ``job_id`` too."""
    body = json_body()
    worker_id = body.get("worker_id")
    if not isinstance(worker_id, str) or not worker_id:
        raise InvalidRequest(
            "'worker_id' is required and must be a string.", details={"field": "worker_id"}
        )
    job_ids = _active_job_ids(body)
    _check_worker_report(body)
    system = ojs_system()
    declared_handlers(system, body, worker_id)
    if body.get("state") is not None:  # quiet/terminate: no new jobs (ojs-graceful-shutdown §5.1)
        system.workers.report(worker_id, body["state"], len(job_ids))
    beat = await system.heartbeat(
        worker_id,
        job_ids,
        visibility_timeout_ms=optional_int(body, "visibility_timeout_ms", 1, MAX_DURATION_MS),
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


def declared_handlers(
    system: System, body: dict[str, Any], worker_id: str | None
) -> VersionRoutes | None:
    """The job versions the worker declares in ``handlers`` (ojs-job-versioning §8.1),
    remembered for its next fetches if it gave its id; ``None`` if it declares none."""
    if body.get("handlers") is None:
        return None
    routes = parse_handlers(body["handlers"])
    if worker_id is not None:
        system.workers.declare(worker_id, routes)
    return routes


def _active_job_ids(body: dict[str, Any]) -> list[str]:
    """The ids of the jobs a heartbeat reports: ``active_job_ids`` when present, else
    ``active_jobs`` unless that is a count; plus ``job_id``."""
    active_jobs = body.get("active_jobs")
    if isinstance(active_jobs, int) and not isinstance(active_jobs, bool):
        if active_jobs < 0:
            raise InvalidRequest(
                "'active_jobs' must be an array of job ids or a count of at least 0.",
                details={"field": "active_jobs", "received": active_jobs},
            )
        job_ids: list[str] = []
    else:
        job_ids = _strings(body, "active_jobs", "an array of job ids or a count")
    if body.get("active_job_ids") is not None:
        job_ids = _strings(body, "active_job_ids", "an array of job ids")
    job_id = body.get("job_id")
    if job_id is not None:
        if not isinstance(job_id, str):
            raise InvalidRequest("'job_id' must be a string.", details={"field": "job_id"})
        job_ids.append(job_id)
    return job_ids


def _check_worker_report(body: dict[str, Any]) -> None:
    """The worker's description of itself (ojs-worker-protocol §4.2): optional here, and
    not used, but a field that is sent must have the type the spec gives it."""
    state = body.get("state")
    if state is not None and state not in WORKER_STATES:
        raise InvalidRequest(
            f"'state' must be one of {', '.join(WORKER_STATES)}.",
            details={"field": "state", "received": state},
        )
    for name in ("hostname", "started_at"):
        if body.get(name) is not None and not isinstance(body[name], str):
            raise InvalidRequest(f"'{name}' must be a string.", details={"field": name})
    for name in ("pid", "concurrency"):
        optional_int(body, name, 0)
    for name in ("queues", "labels"):
        _strings(body, name, "an array of strings")


def _strings(body: dict[str, Any], name: str, expected: str) -> list[str]:
    """``body[name]`` as a list of strings (empty if absent), or a 400 naming the field."""
    value = body.get(name)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise InvalidRequest(f"'{name}' must be {expected}.", details={"field": name})
    return list(value)


def _outcome(job: Job, *, acknowledged: bool = False) -> dict[str, Any]:
    """Ack/nack answer: the job's fields at the top level, as the HTTP binding shows them."""
    body = job.to_wire()
    body["job_id"] = job.id
    if acknowledged:
        body["acknowledged"] = True
    return body
