"""``/ojs/openapi.json``: the OpenAPI document of what this server serves.

The document ships with the package; ``tools/generate_openapi.py`` (``make openapi``)
derives it from the Open Job Spec's ``openapi.yaml`` and the routes of this package.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

from quart import Blueprint, Response

from ... import __version__
from ..wire import ojs_response

blueprint = Blueprint("openapi", __name__)

DOCUMENT = "openapi.json"


@cache
def openapi_document() -> dict[str, Any]:
    """The shipped document, with ``info.version`` this package's version."""
    text = resources.files("ojs_actors.http").joinpath(DOCUMENT).read_text(encoding="utf-8")
    document: dict[str, Any] = json.loads(text)
    document["info"]["version"] = __version__
    return document


@blueprint.get("/ojs/openapi.json")
async def get_openapi() -> Response:
    return ojs_response(openapi_document())
