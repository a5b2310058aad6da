"""``GET /ojs/openapi.json``: the OpenAPI document of what this server serves.

It is served on both HTTP paths, names ojs-actors and its version, lists the core
endpoints, lists nothing the app does not route, and is what ``make openapi`` builds
from the spec and the routes today (when the spec is at hand).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
from quart_trio import QuartTrio
from serving import REPO
from werkzeug.exceptions import MethodNotAllowed, NotFound

from ojs_actors import __version__
from ojs_actors.http import MEDIA_TYPE, HttpSettings, create_app
from ojs_actors.http.routes.openapi import openapi_document
from ojs_actors.system import System

SPEC = Path(os.environ.get("OJS_SPEC_DIR", REPO.parent / "shared" / "ojs-spec")) / "openapi.yaml"
CORE_OPERATIONS = {
    ("get", "/ojs/manifest"),
    ("get", "/ojs/v1/health"),
    ("post", "/ojs/v1/jobs"),
    ("get", "/ojs/v1/jobs/{id}"),
    ("delete", "/ojs/v1/jobs/{id}"),
    ("post", "/ojs/v1/jobs/batch"),
    ("post", "/ojs/v1/workers/fetch"),
    ("post", "/ojs/v1/workers/ack"),
    ("post", "/ojs/v1/workers/nack"),
    ("post", "/ojs/v1/workers/heartbeat"),
    ("get", "/ojs/v1/queues"),
    ("post", "/ojs/v1/workflows"),
    ("get", "/ojs/openapi.json"),
}


def listed_operations(document: dict[str, Any]) -> set[tuple[str, str]]:
    return {(method, path) for path, item in document["paths"].items() for method in item}


@pytest.mark.parametrize("direct_routes", [True, False], ids=["direct", "quart"])
async def test_served_document_names_this_server(system: System, direct_routes: bool) -> None:
    client = create_app(system, HttpSettings(direct_routes=direct_routes)).test_client()
    response = await client.get("/ojs/openapi.json")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == MEDIA_TYPE
    document = json.loads(await response.get_data())
    assert document["openapi"].startswith("3.")
    assert document["info"]["title"] == "ojs-actors"
    assert document["info"]["version"] == __version__
    assert CORE_OPERATIONS <= listed_operations(document)


async def test_every_listed_operation_is_routed(system: System) -> None:
    """No listed path answers 404 or 405 from routing (the reset hook is not listed: it
    exists only with --allow-reset)."""
    app: QuartTrio = create_app(system)
    routing = app.url_map.bind("localhost")
    unrouted = []
    for method, path in sorted(listed_operations(openapi_document())):
        concrete = re.sub(r"\{[^}]+\}", "x", path)
        try:
            routing.match(concrete, method.upper())
        except (NotFound, MethodNotAllowed):
            unrouted.append(f"{method.upper()} {path}")
    assert not unrouted


def test_extensions_are_marked_and_noted() -> None:
    document = openapi_document()
    added = [
        f"{method.upper()} {path}"
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if operation.get("x-ojs-actors-extension")
    ]
    assert "GET /ojs/openapi.json" in added
    assert all(operation in document["info"]["description"] for operation in added)


@pytest.mark.skipif(not SPEC.exists(), reason=f"no OJS spec at {SPEC}")
def test_shipped_document_is_what_make_openapi_builds() -> None:
    from tools.generate_openapi import build, load_spec, render

    shipped = (REPO / "ojs_actors" / "http" / "openapi.json").read_text(encoding="utf-8")
    assert shipped == render(build(load_spec(SPEC))), "stale: run `make openapi`"
