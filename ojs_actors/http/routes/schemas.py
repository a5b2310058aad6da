"""The schema registry's two HTTP bindings, over one :class:`~ojs_actors.system.schemas.
SchemaRegistry`:

* ``/ojs/v1/admin/schemas/{type}[/{version}]`` (ojs-job-versioning §11, and the shape
  the ext-schema-registry and ext-job-versioning conformance suites use): ``PUT`` with
  ``{"schema": …}`` registers, answers are the version's record at the top level;
* ``/ojs/v1/schemas`` (ojs-schema-registry §10): ``POST`` with ``job_type``, ``version``
  and ``schema``; answers wrap the record in ``{"schema": …}`` as §4 shows.
"""

from __future__ import annotations

from typing import Any

from quart import Blueprint, Response

from ...core import InvalidRequest
from ...core.validation import MAX_TYPE_LENGTH, TYPE_PATTERN
from ...core.versions import Version, parse_version, version_from_path
from ..wire import json_body, ojs_response, ojs_system

blueprint = Blueprint("schemas", __name__)


def _job_type(value: object, field: str = "type") -> str:
    if not isinstance(value, str) or not value:
        raise InvalidRequest(f"'{field}' is required: a job type.", details={"field": field})
    if len(value) > MAX_TYPE_LENGTH or not TYPE_PATTERN.fullmatch(value):
        raise InvalidRequest(
            f"'{field}' must be a job type: dot-separated lowercase segments (e.g. email.send).",
            details={"field": field, "received": value[:MAX_TYPE_LENGTH]},
        )
    return value


def _schema_of(body: dict[str, Any]) -> Any:
    schema = body.get("schema")
    if not isinstance(schema, dict) or not schema:
        raise InvalidRequest(
            "'schema' is required: a non-empty JSON Schema object.", details={"field": "schema"}
        )
    return schema


# -- /ojs/v1/admin/schemas (ojs-job-versioning §11) ---------------------------------------


@blueprint.put("/ojs/v1/admin/schemas/<job_type>/<version>")
async def admin_register(job_type: str, version: str) -> Response:
    body = json_body()
    record = await ojs_system().schemas.register(
        _job_type(job_type), version_from_path(version), _schema_of(body)
    )
    return ojs_response(record, 201)


@blueprint.get("/ojs/v1/admin/schemas/<job_type>")
async def admin_latest(job_type: str) -> Response:
    """The latest version's record, with every version listed (ojs-job-versioning §11.2
    lists versions here; the conformance suites read the latest's fields)."""
    schemas = ojs_system().schemas
    record = await schemas.get(_job_type(job_type))
    return ojs_response({**record, "versions": await schemas.versions(job_type)})


@blueprint.get("/ojs/v1/admin/schemas/<job_type>/versions")
async def admin_versions(job_type: str) -> Response:
    versions = await ojs_system().schemas.versions(_job_type(job_type))
    return ojs_response({"type": job_type, "versions": versions})


@blueprint.get("/ojs/v1/admin/schemas/<job_type>/<version>")
async def admin_get(job_type: str, version: str) -> Response:
    record = await ojs_system().schemas.get(_job_type(job_type), version_from_path(version))
    return ojs_response(record)


@blueprint.delete("/ojs/v1/admin/schemas/<job_type>/<version>")
async def admin_delete(job_type: str, version: str) -> Response:
    record = await ojs_system().schemas.delete(_job_type(job_type), version_from_path(version))
    return ojs_response({**record, "deleted": True})


# -- /ojs/v1/schemas (ojs-schema-registry §10) --------------------------------------------


@blueprint.post("/ojs/v1/schemas")
async def register() -> Response:
    body = json_body()
    job_type = _job_type(body.get("job_type", body.get("type")), "job_type")
    version: Version = body.get("version")  # type: ignore[assignment]
    if version is None:
        raise InvalidRequest("'version' is required.", details={"field": "version"})
    parse_version(version)
    record = await ojs_system().schemas.register(job_type, version, _schema_of(body))
    return ojs_response(
        {"schema": record}, 201, {"Location": f"/ojs/v1/schemas/{job_type}/{version}"}
    )


@blueprint.get("/ojs/v1/schemas/<job_type>")
async def latest(job_type: str) -> Response:
    return ojs_response({"schema": await ojs_system().schemas.get(_job_type(job_type))})


@blueprint.get("/ojs/v1/schemas/<job_type>/versions")
async def versions(job_type: str) -> Response:
    return ojs_response({"versions": await ojs_system().schemas.versions(_job_type(job_type))})


@blueprint.get("/ojs/v1/schemas/<job_type>/<version>")
async def get_version(job_type: str, version: str) -> Response:
    record = await ojs_system().schemas.get(_job_type(job_type), version_from_path(version))
    return ojs_response({"schema": record})


@blueprint.delete("/ojs/v1/schemas/<job_type>/<version>")
async def delete(job_type: str, version: str) -> Response:
    record = await ojs_system().schemas.delete(_job_type(job_type), version_from_path(version))
    return ojs_response({"schema": record, "deleted": True})
