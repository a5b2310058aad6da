"""The admin UI: its static pages under ``/ojs/admin/`` and the one endpoint only it
needs, ``GET /ojs/v1/admin/system/tree`` (the live supervision tree).

The pages are served without an API key (they hold no data: :data:`STATIC_PATHS` are
open paths); every call they make to the API carries the key the operator enters.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from quart import Blueprint, Response

from ...actors import supervision_tree
from ...core import NotFound
from ..wire import ojs_response, ojs_system, query_int

UI_PATH = "/ojs/admin/"
ASSET_DIR = Path(__file__).resolve().parent.parent / "admin_ui"
_MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
}
ASSETS: dict[str, tuple[bytes, str]] = {
    path.name: (path.read_bytes(), _MEDIA_TYPES[path.suffix])
    for path in sorted(ASSET_DIR.iterdir())
    if path.suffix in _MEDIA_TYPES
}
"""Read once at import: a handful of small files, and no blocking read in a request."""
STATIC_PATHS = frozenset({UI_PATH.rstrip("/"), UI_PATH, *(UI_PATH + name for name in ASSETS)})

_HEADERS = {
    # the pages load nothing from elsewhere and run no inline script or style
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
TREE_LIMIT = 200
"""Children listed per supervisor by default (``?limit=``): a poll every second stays cheap."""

blueprint = Blueprint("admin_ui", __name__)
"""The tree endpoint (one of the API's routes)."""
pages = Blueprint("admin_ui_pages", __name__)
"""The static pages (no API operation: kept out of the OpenAPI document)."""


@blueprint.get("/ojs/v1/admin/system/tree")
async def tree() -> Response:
    limit = query_int("limit", TREE_LIMIT, 1, 100_000)
    return ojs_response({"tree": asdict(supervision_tree(ojs_system().root, limit))})


@pages.get(UI_PATH.rstrip("/"))
async def ui_root() -> Response:
    return Response(b"", status=308, headers={"Location": UI_PATH})


@pages.get(UI_PATH, defaults={"name": "index.html"})
@pages.get(UI_PATH + "<name>")
async def asset(name: str) -> Response:
    found = ASSETS.get(name)
    if found is None:
        raise NotFound(f"No such page: {UI_PATH}{name}.", details={"path": UI_PATH + name})
    body, media_type = found
    return Response(body, status=200, content_type=media_type, headers=_HEADERS)
