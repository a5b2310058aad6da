"""``/ojs/manifest``, ``/ojs/v1/health``, ``/ojs/v1/ready`` (also at ``/health`` and
``/ready``) and ``/metrics``."""

from __future__ import annotations

from typing import Any

from quart import Blueprint, Response

from ... import __version__
from ...core import SPEC_VERSION, NotFound
from ...system import System
from ..wire import ojs_response, ojs_system

blueprint = Blueprint("system", __name__)

CONFORMANCE_LEVEL = 4
METRICS_MEDIA_TYPE = "text/plain"
"""Bare, as ext-observability (EXT-OBS-003) checks it: Prometheus reads ``text/plain``
without a version as its classic text format, which is what the exposition is for the
metric names served (prometheus-client's own type adds ``version=1.0.0``)."""


def manifest(system: System) -> dict[str, Any]:
    return {
        "specversion": SPEC_VERSION,
        "implementation": {
            "name": "ojs-actors",
            "version": __version__,
            "language": "python",
            "backend": system.backend.name,
        },
        "conformance_level": CONFORMANCE_LEVEL,
        "protocols": ["http"],
        "backend": system.backend.name,
        "capabilities": system.backend.capabilities.manifest(),
        "extensions": system.backend.capabilities.manifest_extensions(),
    }


@blueprint.get("/ojs/manifest")
async def get_manifest() -> Response:
    return ojs_response(manifest(ojs_system()))


@blueprint.get("/ojs/v1/health")
@blueprint.get("/health", endpoint="get_health_alias")
async def get_health() -> Response:
    """Also at ``/health``, where probes and ext-observability look."""
    report = await ojs_system().health()
    report["version"] = SPEC_VERSION
    return ojs_response(report, 200 if report["status"] == "ok" else 503)


@blueprint.get("/ojs/v1/ready")
@blueprint.get("/ready", endpoint="get_ready_alias")
async def get_ready() -> Response:
    """Readiness probe: 200 while the backend answers, 503 otherwise; open without a key.
    An event sink that is behind (health ``degraded``) keeps a server ready: its workers
    still fetch and acknowledge."""
    report = await ojs_system().health()
    ready = report["backend"]["status"] == "ok"
    return ojs_response(
        {"status": "ready" if ready else "not_ready", "backend": report["backend"]},
        200 if ready else 503,
    )


@blueprint.get("/metrics")
async def get_metrics() -> Response:
    """Prometheus metrics (ojs-observability; :mod:`ojs_actors.system.metrics`); 404 with
    metrics off (``OJS_METRICS_ENABLED=false``)."""
    metrics = ojs_system().metrics
    if not metrics.enabled:
        raise NotFound(
            "Metrics are off on this server (OJS_METRICS_ENABLED=false).",
            details={"resource_type": "metrics"},
        )
    body = await metrics.exposition()
    return Response(body, status=200, content_type=METRICS_MEDIA_TYPE)
