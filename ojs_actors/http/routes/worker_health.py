"""``/ojs/v1/workers/beat`` and ``/ojs/v1/workers/{id}/health``: a worker's own account of
its shutdown (ojs-graceful-shutdown §5, as the ext-graceful-shutdown suite drives it).

A beat says which phase the worker is in (``running``, ``quiet``, ``drain``,
``terminate``) and how many jobs it still runs; a worker in any phase but ``running``
gets no new jobs from its fetches (§5.1), and its health reads 503 (GS-R004). Like
operator directives, the report lives in the process the worker talks to (the
:class:`~ojs_actors.system.worker_registry.WorkerRegistry`), and is forgotten with the
worker after ``--worker-idle-timeout``.
"""

from __future__ import annotations

from typing import Any

from quart import Blueprint, Response

from ...core import InvalidRequest, NotFound, format_ms
from ...system.worker_registry import REPORTED_STATES
from ..wire import json_body, ojs_response, ojs_system
from .workers import declared_handlers

blueprint = Blueprint("worker_health", __name__)


@blueprint.post("/ojs/v1/workers/beat")
async def beat() -> Response:
    body = json_body()
    worker_id = body.get("worker_id")
    if not isinstance(worker_id, str) or not worker_id:
        raise InvalidRequest(
            "'worker_id' is required and must be a string.", details={"field": "worker_id"}
        )
    state = body.get("state", "running")
    if state not in REPORTED_STATES:
        raise InvalidRequest(
            f"'state' must be one of {', '.join(REPORTED_STATES)}.",
            details={"field": "state", "received": str(state)},
        )
    shutdown = body.get("shutdown", False)
    if not isinstance(shutdown, bool):
        raise InvalidRequest("'shutdown' must be a boolean.", details={"field": "shutdown"})
    if shutdown and state == "running":
        state = "drain"
    job_ids, active = _active(body)
    system = ojs_system()
    declared_handlers(system, body, worker_id)
    record = system.workers.report(worker_id, state, active)
    beat = await system.heartbeat(worker_id, job_ids)
    return ojs_response(
        {
            "acknowledged": True,
            "worker_id": worker_id,
            "state": record.reported,
            "directive": beat.state,
            "jobs_extended": beat.jobs_extended,
            "jobs_cancelled": beat.jobs_cancelled,
            "server_time": format_ms(system.clock()),
        }
    )


@blueprint.get("/ojs/v1/workers/<worker_id>/health")
async def health(worker_id: str) -> Response:
    system = ojs_system()
    record = system.workers.get(worker_id)
    if record is None:
        raise NotFound(
            f"Worker '{worker_id}' not found (never seen, or silent past the idle timeout).",
            details={"resource_type": "worker", "resource_id": worker_id},
        )
    wire: dict[str, Any] = {
        "worker_id": worker_id,
        "state": record.reported,
        "status": "draining" if record.stopping else "healthy",
        "active_jobs": record.active_jobs,
        "directive": record.directive,
        "last_seen": format_ms(record.last_seen),
    }
    return ojs_response(wire, 503 if record.stopping else 200)


def _active(body: dict[str, Any]) -> tuple[list[str], int]:
    """The job ids a beat reports (whose leases it extends) and its count of active jobs:
    ``active_jobs`` is a count or the ids; ``active_job_ids`` the ids."""
    value = body.get("active_jobs", 0)
    ids_value = body.get("active_job_ids")
    job_ids: list[str] = []
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        count = value
    elif isinstance(value, list) and all(isinstance(item, str) for item in value):
        job_ids, count = list(value), len(value)
    else:
        raise InvalidRequest(
            "'active_jobs' must be a count of at least 0 or an array of job ids.",
            details={"field": "active_jobs"},
        )
    if ids_value is not None:
        if not isinstance(ids_value, list) or not all(isinstance(i, str) for i in ids_value):
            raise InvalidRequest(
                "'active_job_ids' must be an array of job ids.",
                details={"field": "active_job_ids"},
            )
        job_ids = list(ids_value)
    return job_ids, count
