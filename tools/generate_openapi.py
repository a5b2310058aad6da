"""Generate ``ojs_actors/http/openapi.json``, the document ``GET /ojs/openapi.json`` serves.

It is the Open Job Spec's ``openapi.yaml`` cut to what this server routes: every spec
operation the app does not route is dropped, the operations it adds are described
here (:data:`ADDED`), and the error codes are the ones the server answers. Run it
(``make openapi``) when the spec or the routes change; ``tests/test_openapi_document.py``
fails while the shipped document is stale.

Usage: ``python tools/generate_openapi.py [SPEC_YAML] [OUTPUT_JSON]``; the spec defaults
to ``$OJS_SPEC_DIR/openapi.yaml``, else ``../shared/ojs-spec/openapi.yaml`` beside the
checkout.
"""

from __future__ import annotations

import copy
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

import yaml
from quart_trio import QuartTrio

from ojs_actors import __version__
from ojs_actors.core import OJSError
from ojs_actors.http import routes
from ojs_actors.http.app import OPEN_PATHS

REPO = Path(__file__).resolve().parent.parent
SPEC_DIR = Path(os.environ.get("OJS_SPEC_DIR", REPO.parent / "shared" / "ojs-spec"))
DEFAULT_SPEC = SPEC_DIR / "openapi.yaml"
DEFAULT_OUTPUT = REPO / "ojs_actors" / "http" / "openapi.json"
HTTP_METHODS = ("get", "put", "post", "delete", "patch")
BEARER = {
    "type": "http",
    "scheme": "bearer",
    "description": "A key of the server's OJS_API_KEY (comma-separated keys: any of them). "
    "Needed only when the server runs with OJS_API_KEY set.",
}

Operation = tuple[str, str]  # (path template, lowercase method)

_ERROR = {"$ref": "#/components/responses/BadRequest"}
_NOT_FOUND = {"$ref": "#/components/responses/NotFound"}
_CONFLICT = {"$ref": "#/components/responses/Conflict"}


def _json_reply(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/openjobspec+json": {"schema": schema}},
    }


_CRON_NAME = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
_CSV = {"type": "string", "description": "Comma-separated values; any of them matches."}

ADDED: dict[Operation, dict[str, Any]] = {
    ("/ojs/openapi.json", "get"): {
        "operationId": "getOpenApiDocument",
        "summary": "This OpenAPI document",
        "description": "What this server serves: the Open Job Spec HTTP API as implemented.",
        "tags": ["System"],
        "responses": {"200": _json_reply("OpenAPI 3.1 document", {"type": "object"})},
    },
    ("/metrics", "get"): {
        "operationId": "getMetrics",
        "summary": "Prometheus metrics",
        "description": "The process's and the event relay's metrics in Prometheus's text "
        "format (ojs-observability); needs the API key when keys are configured.",
        "tags": ["System"],
        "responses": {
            "200": {
                "description": "Metrics",
                "content": {"text/plain": {"schema": {"type": "string"}}},
            }
        },
    },
    ("/ojs/v1/ready", "get"): {
        "operationId": "getReadiness",
        "summary": "Readiness probe",
        "description": "200 while the backend answers, 503 otherwise; open without an API key.",
        "tags": ["System"],
        "responses": {
            status: _json_reply(
                description,
                {
                    "type": "object",
                    "required": ["status"],
                    "properties": {
                        "status": {"type": "string", "enum": ["ready", "not_ready"]},
                        "backend": {
                            "$ref": "#/components/schemas/HealthResponse/properties/backend"
                        },
                    },
                },
            )
            for status, description in (("200", "Ready"), ("503", "Not ready"))
        },
    },
    ("/ojs/v1/jobs/{id}/activate", "post"): {
        "operationId": "activateJob",
        "summary": "Activate a pending job",
        "description": "Moves a job from `pending` to `available` (ojs-core, pending state).",
        "tags": ["Jobs"],
        "parameters": [{"$ref": "#/components/parameters/JobId"}],
        "responses": {
            "200": _json_reply("Job activated", {"$ref": "#/components/schemas/JobResponse"}),
            "404": _NOT_FOUND,
            "409": _CONFLICT,
        },
    },
    ("/ojs/v1/events", "get"): {
        "operationId": "listEvents",
        "summary": "Poll lifecycle events",
        "description": "Lifecycle events after a cursor, oldest first (ojs-events §6.4).",
        "tags": ["Events"],
        "parameters": [
            {
                "name": "limit",
                "in": "query",
                "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100},
            },
            {"name": "after", "in": "query", "schema": {"type": "string"}},
            {"name": "types", "in": "query", "schema": _CSV},
            {"name": "queues", "in": "query", "schema": _CSV},
            {"name": "job_types", "in": "query", "schema": _CSV},
        ],
        "responses": {
            "200": _json_reply(
                "A page of events",
                {
                    "type": "object",
                    "properties": {
                        "events": {"type": "array", "items": {"type": "object"}},
                        "cursor": {"type": ["string", "null"]},
                        "has_more": {"type": "boolean"},
                    },
                },
            ),
            "400": _ERROR,
        },
    },
    ("/ojs/v1/cron/{name}", "get"): {
        "operationId": "getCronJob",
        "summary": "Get a cron job",
        "tags": ["Cron"],
        "parameters": [_CRON_NAME],
        "responses": {
            "200": _json_reply("Cron job", {"$ref": "#/components/schemas/CronJobResponse"}),
            "404": _NOT_FOUND,
        },
    },
    ("/ojs/v1/cron/{name}", "patch"): {
        "operationId": "setCronJobEnabled",
        "summary": "Enable or disable a cron job",
        "tags": ["Cron"],
        "parameters": [_CRON_NAME],
        "requestBody": {
            "required": True,
            "content": {
                "application/openjobspec+json": {
                    "schema": {
                        "type": "object",
                        "required": ["enabled"],
                        "properties": {"enabled": {"type": "boolean"}},
                    }
                }
            },
        },
        "responses": {
            "200": _json_reply("Cron job", {"$ref": "#/components/schemas/CronJobResponse"}),
            "400": _ERROR,
            "404": _NOT_FOUND,
        },
    },
}
"""Operations the server routes beyond the spec's ``openapi.yaml``."""


def _shape(path: str) -> str:
    """A path template with its parameters unnamed: ``/jobs/<job_id>`` ~ ``/jobs/{id}``."""
    return re.sub(r"<[^>]+>|\{[^}]+\}", "{}", path)


def routed_operations() -> set[tuple[str, str]]:
    """(path shape, method) of every public route of the app."""
    app = QuartTrio("ojs_actors_openapi")
    for blueprint in routes.PUBLIC:
        app.register_blueprint(blueprint)
    return {
        (_shape(rule.rule), method.lower())
        for rule in app.url_map.iter_rules()
        if rule.endpoint != "static"
        for method in rule.methods or ()
        if method.lower() in HTTP_METHODS
    }


def error_codes() -> list[str]:
    """Every ``error.code`` the server can answer (one :class:`OJSError` subclass each)."""
    found: set[str] = set()
    pending: list[type[OJSError]] = [OJSError]
    while pending:
        kind = pending.pop()
        found.add(kind.code)
        pending.extend(kind.__subclasses__())
    return sorted(found)


def build(spec: dict[str, Any]) -> dict[str, Any]:
    routed = routed_operations()
    paths: dict[str, dict[str, Any]] = {}
    dropped: list[str] = []
    for path, item in spec["paths"].items():
        for method in HTTP_METHODS:
            if method not in item:
                continue
            if (_shape(path), method) in routed:
                paths.setdefault(path, {})[method] = dict(item[method])
            else:
                dropped.append(f"{method.upper()} {path}")
    for (path, method), operation in ADDED.items():
        if (_shape(path), method) not in routed:
            raise SystemExit(f"ADDED describes {method.upper()} {path}, which no route serves")
        paths.setdefault(path, {})[method] = {**operation, "x-ojs-actors-extension": True}
    described = {(_shape(path), method) for path, item in paths.items() for method in item}
    undescribed = routed - described
    if undescribed:
        raise SystemExit(f"routes without a description (add them to ADDED): {sorted(undescribed)}")
    for path in OPEN_PATHS & paths.keys():
        for operation in paths[path].values():
            operation["security"] = []  # open even when the server requires a key
    return {
        "openapi": spec["openapi"],
        "info": _info(spec["info"], dropped),
        "tags": _used_tags(spec.get("tags", []), paths),
        "security": [{"bearerAuth": []}, {}],
        "paths": paths,
        "components": _components(spec["components"]),
    }


def _info(spec_info: dict[str, Any], dropped: list[str]) -> dict[str, Any]:
    added = ", ".join(f"{method.upper()} {path}" for path, method in ADDED)
    return {
        "title": "ojs-actors",
        "version": __version__,
        "summary": "The Open Job Spec HTTP API as ojs-actors serves it.",
        "description": (
            f"Derived from the {spec_info['title']} {spec_info['version']} "
            "(`openapi.yaml` of the Open Job Spec) by `tools/generate_openapi.py`.\n\n"
            f"Operations ojs-actors adds (marked `x-ojs-actors-extension`): {added}.\n\n"
            "Spec operations it does not serve: "
            f"{', '.join(dropped) if dropped else 'none'}.\n\n"
            "`POST /ojs/v1/admin/reset` exists only on a server started with `--allow-reset`."
        ),
        "license": spec_info.get("license"),
        "x-ojs-spec-version": spec_info["version"],
    }


def _used_tags(tags: list[dict[str, Any]], paths: dict[str, dict[str, Any]]) -> list[Any]:
    used = {tag for item in paths.values() for op in item.values() for tag in op.get("tags", [])}
    known = [tag for tag in tags if tag["name"] in used]
    missing = sorted(used - {tag["name"] for tag in known})
    return known + [{"name": name} for name in missing]


def _components(components: dict[str, Any]) -> dict[str, Any]:
    """The spec's components, with the error codes this server really answers, its
    authentication, and the request forms it accepts beyond the schema's."""
    result: dict[str, Any] = copy.deepcopy(components)
    schemas = result["schemas"]
    schemas["OJSError"]["properties"]["code"]["enum"] = error_codes()
    result.setdefault("securitySchemes", {})["bearerAuth"] = BEARER
    _accept_dag_workflows(schemas)
    _accept_both_heartbeat_forms(schemas)
    return result


def _accept_dag_workflows(schemas: dict[str, Any]) -> None:
    """ojs-http-binding §14.1: without ``type``, ``name`` and ``steps`` with ``id`` and
    ``depends_on`` form a DAG."""
    schemas["DagStep"] = {
        "type": "object",
        "description": "A step of a DAG workflow (ojs-http-binding §14.1).",
        "required": ["id", "type", "args"],
        "properties": {
            "id": {"type": "string", "minLength": 1, "description": "Unique within the workflow"},
            "type": {"type": "string"},
            "args": {"type": "array"},
            "depends_on": {
                "type": "array",
                "items": {"type": "string"},
                "description": "Ids of the steps that must complete first (none: a root)",
            },
            "options": {"type": "object"},
        },
    }
    request = schemas["WorkflowRequest"]
    request["required"] = []
    request["description"] += (
        "- Without `type`: a DAG (ojs-http-binding §14.1): `name` and `steps` with `id` and "
        "`depends_on`.\n"
    )
    request["properties"]["steps"]["items"] = {
        "oneOf": [
            {"$ref": "#/components/schemas/WorkflowJobRequest"},
            {"$ref": "#/components/schemas/DagStep"},
        ]
    }


def _accept_both_heartbeat_forms(schemas: dict[str, Any]) -> None:
    """ojs-worker-protocol §4.2: ``active_jobs`` a count beside ``active_job_ids``."""
    properties = schemas["HeartbeatRequest"]["properties"]
    ids = properties["active_jobs"]
    properties["active_jobs"] = {
        "oneOf": [ids, {"type": "integer", "minimum": 0}],
        "description": "The active job ids (ojs-http-binding §10.4), or their count "
        "(ojs-worker-protocol §4.2, with the ids in `active_job_ids`)",
    }
    properties["active_job_ids"] = {
        **ids,
        "description": "The active job ids (ojs-worker-protocol §4.2)",
    }


def render(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def load_spec(path: Path) -> dict[str, Any]:
    spec: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    return spec


def main(argv: list[str]) -> int:
    spec_path = Path(argv[0]) if argv else DEFAULT_SPEC
    output = Path(argv[1]) if len(argv) > 1 else DEFAULT_OUTPUT
    output.write_text(render(build(load_spec(spec_path))), encoding="utf-8")
    print(f"wrote {output} from {spec_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
