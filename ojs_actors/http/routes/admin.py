"""The admin API (ojs-admin-api) under ``/ojs/v1/admin/``: statistics, queues, jobs,
bulk retry and workers (the dead letter queue's are in :mod:`.dead_letter`); and
``/ojs/v1/admin/reset``, which wipes all state (conformance runs) and exists only with
``--allow-reset``."""

from __future__ import annotations

from typing import Any

from quart import Blueprint, Response

from ...core import NotFound, State, format_ms
from ...system.admin import BulkOutcome
from ...system.worker_registry import WorkerRecord
from ..admin_params import (
    confirmed_filter,
    paged,
    query_job_listing,
    query_page,
    queue_purge,
)
from ..wire import json_body, ojs_response, ojs_system

api = Blueprint("admin_api", __name__)
blueprint = Blueprint("admin", __name__)
"""The reset hook alone (see :data:`~ojs_actors.http.routes.RESET`)."""

STALE_AFTER_MS = 60_000
"""A worker silent this long (two heartbeats at the default 30 s) is reported stale."""


@blueprint.post("/ojs/v1/admin/reset")
async def reset() -> Response:
    await ojs_system().reset()
    return ojs_response({"reset": True})


# -- statistics --------------------------------------------------------------------------


@api.get("/ojs/v1/admin/stats")
async def stats() -> Response:
    figures = await ojs_system().admin_stats()
    return ojs_response(
        {
            "queues": figures.queues,
            "workers": figures.workers,
            "jobs": counts_wire(figures.jobs),
            "throughput": {
                "processed_per_minute": figures.processed_per_minute,
                "failed_per_minute": figures.failed_per_minute,
            },
            "uptime_seconds": figures.uptime_seconds,
        }
    )


# -- queues ------------------------------------------------------------------------------


@api.get("/ojs/v1/admin/queues")
async def list_queues() -> Response:
    page = query_page()
    queues = [
        admin_queue_wire(record, counts) for record, counts in await ojs_system().all_queue_stats()
    ]
    return ojs_response({"items": paged(queues, page), "pagination": page.wire(len(queues))})


@api.get("/ojs/v1/admin/queues/<name>")
async def queue_detail(name: str) -> Response:
    record, counts = await ojs_system().known_queue_stats(name)
    return ojs_response(admin_queue_wire(record, counts))


@api.post("/ojs/v1/admin/queues/<name>/pause")
async def pause_queue(name: str) -> Response:
    return ojs_response(pause_wire(await ojs_system().set_paused(name, True)))


@api.post("/ojs/v1/admin/queues/<name>/resume")
async def resume_queue(name: str) -> Response:
    return ojs_response(pause_wire(await ojs_system().set_paused(name, False)))


@api.delete("/ojs/v1/admin/queues/<name>/jobs")
async def purge_queue(name: str) -> Response:
    """Delete the queue's finished jobs in ``states`` (ojs-admin-api §6.5); only with
    ``"confirm": true``."""
    states, older_than = queue_purge(json_body())
    purged = await ojs_system().purge_queue(name, states, older_than)
    return ojs_response({"purged_count": purged, "states": [state.value for state in states]})


# -- jobs --------------------------------------------------------------------------------


@api.get("/ojs/v1/admin/jobs")
async def list_jobs() -> Response:
    """Every job, filtered, sorted and paged (ojs-admin-api §7.1); ``unsupported`` on a
    backend that cannot list its jobs."""
    page = query_page()
    jobs, total = await ojs_system().list_jobs(query_job_listing(page))
    return ojs_response({"items": [job.to_wire() for job in jobs], "pagination": page.wire(total)})


@api.get("/ojs/v1/admin/jobs/<job_id>")
async def job_detail(job_id: str) -> Response:
    return ojs_response((await ojs_system().info(job_id)).to_wire())


@api.post("/ojs/v1/admin/jobs/<job_id>/cancel")
async def cancel_job(job_id: str) -> Response:
    return ojs_response({"job": (await ojs_system().cancel(job_id)).to_wire()})


@api.post("/ojs/v1/admin/jobs/<job_id>/retry")
async def retry_job(job_id: str) -> Response:
    return ojs_response({"job": (await ojs_system().retry_job(job_id)).to_wire()})


@api.post("/ojs/v1/admin/jobs/bulk/retry")
async def bulk_retry() -> Response:
    """Retry the dead letter jobs the filter takes; only with ``"confirm": true``."""
    query = confirmed_filter(json_body())
    return ojs_response(bulk_wire("retry", await ojs_system().retry_dead_letter_matching(query)))


# -- workers -----------------------------------------------------------------------------


@api.get("/ojs/v1/admin/workers")
async def list_workers() -> Response:
    system = ojs_system()
    page = query_page()
    now = system.clock()
    workers = [worker_wire(worker_id, record, now) for worker_id, record in system.admin_workers()]
    summary = {"total": len(workers), "running": 0, "quiet": 0, "terminate": 0, "stale": 0}
    for worker in workers:
        summary[worker["state"]] += 1
    return ojs_response(
        {"items": paged(workers, page), "summary": summary, "pagination": page.wire(len(workers))}
    )


@api.post("/ojs/v1/admin/workers/<worker_id>/quiet")
async def quiet_worker(worker_id: str) -> Response:
    """Ask the worker to stop fetching; its next heartbeat reply says so."""
    system = ojs_system()
    if worker_id not in dict(system.admin_workers()):
        raise NotFound(
            f"Worker '{worker_id}' not found.",
            details={"resource_type": "worker", "resource_id": worker_id},
        )
    system.set_worker_state(worker_id, "quiet")
    return ojs_response({"id": worker_id, "state": "quiet"})


# -- rendering ---------------------------------------------------------------------------


def counts_wire(counts: dict[State, int]) -> dict[str, int]:
    return {state.value: counts.get(state, 0) for state in State}


def admin_queue_wire(record: dict[str, Any], counts: dict[State, int]) -> dict[str, Any]:
    wire = pause_wire(record)
    wire["counts"] = counts_wire(counts)
    if record.get("created_at"):
        wire["created_at"] = format_ms(record["created_at"])
    return wire


def pause_wire(record: dict[str, Any]) -> dict[str, Any]:
    paused = bool(record.get("paused_at"))
    wire: dict[str, Any] = {
        "name": record["name"],
        "state": "paused" if paused else "active",
        "paused": paused,
    }
    if paused:
        wire["paused_at"] = format_ms(record["paused_at"])
    return wire


def worker_wire(worker_id: str, record: WorkerRecord, now: int) -> dict[str, Any]:
    stale = now - record.last_seen > STALE_AFTER_MS
    return {
        "id": worker_id,
        "state": "stale" if stale else record.directive,
        "directive": record.directive,
        "last_heartbeat_at": format_ms(record.last_seen),
    }


def bulk_wire(action: str, outcome: BulkOutcome) -> dict[str, Any]:
    return {
        "action": action,
        "matched": outcome.matched,
        "succeeded": outcome.succeeded,
        "failed": len(outcome.errors),
        "retried" if action == "retry" else "deleted": outcome.succeeded,
        "errors": [{"job_id": job_id, "error": why} for job_id, why in outcome.errors],
    }
