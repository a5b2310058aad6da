"""``/ojs/manifest``, ``/ojs/v1/health``, ``/ojs/v1/ready`` and ``/metrics``."""

from __future__ import annotations

from typing import Any

from quart import Blueprint, Response

from ... import __version__
from ...core import SPEC_VERSION
from ...system import System
from ...system.metrics import CONTENT_TYPE
from ..wire import ojs_response, ojs_system

blueprint = Blueprint("system", __name__)

CONFORMANCE_LEVEL = 4


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
        "extensions": {"official": []},
    }


@blueprint.get("/ojs/manifest")
async def get_manifest() -> Response:
    return ojs_response(manifest(ojs_system()))


@blueprint.get("/ojs/v1/health")
async def get_health() -> Response:
    report = await ojs_system().health()
    report["version"] = SPEC_VERSION
    return ojs_response(report, 200 if report["status"] == "ok" else 503)


@blueprint.get("/ojs/v1/ready")
async def get_ready() -> Response:
    """Readiness probe: 200 while the backend answers, 503 otherwise; open without a key.
    An event sink that is behind (health ``degraded``) keeps a server ready: its workers
    still fetch and acknowledge."""
    report = await ojs_system().health()
    ready = report["backend"]["status"] == "connected"
    return ojs_response(
        {"status": "ready" if ready else "not_ready", "backend": report["backend"]},
        200 if ready else 503,
    )


@blueprint.get("/metrics")
async def get_metrics() -> Response:
    """Prometheus metrics (ojs-observability; :mod:`ojs_actors.system.metrics`)."""
    body = await ojs_system().metrics.exposition()
    return Response(body, status=200, content_type=CONTENT_TYPE)
