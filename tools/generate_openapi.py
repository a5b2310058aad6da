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

# -- the admin API (ojs-admin-api): what this server answers, in place of the spec's
# loose `openapi.yaml` entries (arrays where it answers objects, `application/json`).
_INT = {"type": "integer", "minimum": 0}
_STAMP = {"type": "string", "format": "date-time"}
_PAGINATION = {
    "type": "object",
    "required": ["total", "page", "per_page"],
    "properties": {"total": _INT, "page": _INT, "per_page": _INT, "has_more": {"type": "boolean"}},
}
_PAGE_PARAMETERS = [
    {"name": "page", "in": "query", "schema": {"type": "integer", "minimum": 1, "default": 1}},
    {
        "name": "per_page",
        "in": "query",
        "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 20},
    },
]
_FILTER_PARAMETERS = [
    {"name": "queue", "in": "query", "schema": {"type": "string"}},
    {"name": "type", "in": "query", "schema": {"type": "string"},
     "description": "Exact job type, or a prefix ending in `*`"},
    {"name": "state", "in": "query", "schema": {"type": "string", "enum": ["discarded"]}},
    {"name": "since", "in": "query", "schema": _STAMP, "description": "Created at or after"},
    {"name": "until", "in": "query", "schema": _STAMP, "description": "Created before"},
]  # fmt: skip
_COUNTS = {"type": "object", "additionalProperties": _INT, "description": "Jobs by state"}
_ADMIN_QUEUE = {
    "type": "object",
    "required": ["name", "state", "paused"],
    "properties": {
        "name": {"type": "string"},
        "state": {"type": "string", "enum": ["active", "paused"]},
        "paused": {"type": "boolean"},
        "paused_at": _STAMP,
        "counts": _COUNTS,
        "created_at": _STAMP,
    },
}
_JOB = {"$ref": "#/components/schemas/Job"}
_JOB_REPLY = {"type": "object", "required": ["job"], "properties": {"job": _JOB}}
_FILTER = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "queue": {"type": "string"},
        "state": {"type": "string", "enum": ["discarded"]},
        "type": {"type": "string"},
        "since": _STAMP,
        "until": _STAMP,
    },
}
_CONFIRMED = {
    "required": True,
    "content": {
        "application/openjobspec+json": {
            "schema": {
                "type": "object",
                "required": ["confirm"],
                "properties": {"filter": _FILTER, "confirm": {"const": True}},
            }
        }
    },
}
_BULK = {
    "type": "object",
    "required": ["action", "matched", "succeeded", "failed", "errors"],
    "properties": {
        "action": {"type": "string", "enum": ["retry", "delete"]},
        "matched": _INT,
        "succeeded": _INT,
        "failed": _INT,
        "retried": _INT,
        "deleted": _INT,
        "purged_count": _INT,
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"job_id": {"type": "string"}, "error": {"type": "string"}},
            },
        },
    },
}
_BULK_NOTE = (
    " Takes the dead letter queue's jobs (discarded with `on_exhaustion: dead_letter`) "
    'that the filter matches; needs `"confirm": true` (400 otherwise), and refuses '
    "filter fields it does not know."
)
_NAME = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
_PAUSED = {
    "200": _json_reply("The queue", _ADMIN_QUEUE),
    "400": _ERROR,
}


def _page_of(item: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["items", "pagination"],
        "properties": {
            "items": {"type": "array", "items": item},
            "pagination": _PAGINATION,
            **extra,
        },
    }


REPLACED: dict[Operation, dict[str, Any]] = {
    ("/ojs/v1/admin/stats", "get"): {
        "responses": {
            "200": _json_reply(
                "Deployment-wide statistics",
                {
                    "type": "object",
                    "required": ["queues", "workers", "jobs", "throughput"],
                    "properties": {
                        "queues": _INT,
                        "workers": _INT,
                        "jobs": _COUNTS,
                        "throughput": {
                            "type": "object",
                            "properties": {
                                "processed_per_minute": {"type": "number"},
                                "failed_per_minute": {"type": "number"},
                            },
                        },
                        "uptime_seconds": _INT,
                    },
                },
            )
        }
    },
    ("/ojs/v1/admin/queues", "get"): {
        "parameters": _PAGE_PARAMETERS,
        "responses": {
            "200": _json_reply("A page of queues", _page_of(_ADMIN_QUEUE)),
            "400": _ERROR,
        },
    },
    ("/ojs/v1/admin/queues/{name}", "get"): {
        "responses": {
            "200": _json_reply("The queue", _ADMIN_QUEUE),
            "400": _ERROR,
            "404": _NOT_FOUND,
        }
    },
    ("/ojs/v1/admin/queues/{name}/pause", "post"): {"responses": _PAUSED},
    ("/ojs/v1/admin/queues/{name}/resume", "post"): {"responses": _PAUSED},
    ("/ojs/v1/admin/jobs/{id}", "get"): {
        "responses": {"200": _json_reply("The job's envelope", _JOB), "404": _NOT_FOUND}
    },
    ("/ojs/v1/admin/jobs/{id}/retry", "post"): {
        "description": "Re-enqueues a discarded job (dead-lettered or not) with fresh attempts; "
        "409 for a job in any other state.",
        "responses": {
            "200": _json_reply("Job re-enqueued", _JOB_REPLY),
            "404": _NOT_FOUND,
            "409": _CONFLICT,
        },
    },
    ("/ojs/v1/admin/jobs/{id}/cancel", "post"): {
        "responses": {
            "200": _json_reply("Job cancelled", _JOB_REPLY),
            "404": _NOT_FOUND,
            "409": _CONFLICT,
        }
    },
    ("/ojs/v1/admin/jobs/bulk/retry", "post"): {
        "description": "Re-enqueues the jobs a filter matches." + _BULK_NOTE,
        "requestBody": _CONFIRMED,
        "responses": {"200": _json_reply("What was retried", _BULK), "400": _ERROR},
    },
    ("/ojs/v1/admin/workers", "get"): {
        "description": "The workers the answering process has heard from (fetch or "
        "heartbeat) within the idle timeout; `stale`: silent for over 60 s.",
        "parameters": _PAGE_PARAMETERS,
        "responses": {
            "200": _json_reply(
                "A page of workers",
                _page_of(
                    {
                        "type": "object",
                        "required": ["id", "state"],
                        "properties": {
                            "id": {"type": "string"},
                            "state": {
                                "type": "string",
                                "enum": ["running", "quiet", "terminate", "stale"],
                            },
                            "directive": {"type": "string"},
                            "last_heartbeat_at": _STAMP,
                        },
                    },
                    summary={"type": "object", "additionalProperties": _INT},
                ),
            ),
            "400": _ERROR,
        },
    },
    ("/ojs/v1/admin/workers/{id}/quiet", "post"): {
        "responses": {
            "200": _json_reply(
                "Directive recorded; the worker's next heartbeat reply carries it",
                {
                    "type": "object",
                    "properties": {"id": {"type": "string"}, "state": {"type": "string"}},
                },
            ),
            "404": _NOT_FOUND,
        }
    },
    ("/ojs/v1/admin/dead-letter", "get"): {
        "parameters": _FILTER_PARAMETERS + _PAGE_PARAMETERS,
        "responses": {
            "200": _json_reply("A page of dead letter jobs", _page_of(_JOB)),
            "400": _ERROR,
        },
    },
    ("/ojs/v1/admin/dead-letter/stats", "get"): {
        "responses": {
            "200": _json_reply(
                "Dead letter statistics",
                {
                    "type": "object",
                    "required": ["total"],
                    "properties": {
                        "total": _INT,
                        "by_queue": {"type": "object", "additionalProperties": _INT},
                        "oldest_at": {"type": ["string", "null"]},
                        "newest_at": {"type": ["string", "null"]},
                    },
                },
            )
        }
    },
    ("/ojs/v1/admin/dead-letter/{id}/retry", "post"): {
        "responses": {"200": _json_reply("Job re-enqueued", _JOB_REPLY), "404": _NOT_FOUND}
    },
    ("/ojs/v1/admin/dead-letter/{id}", "delete"): {
        "responses": {"204": {"description": "Job deleted"}, "404": _NOT_FOUND}
    },
    ("/ojs/v1/admin/dead-letter/retry", "post"): {
        "description": "Re-enqueues the dead letter jobs a filter matches." + _BULK_NOTE,
        "requestBody": _CONFIRMED,
        "responses": {"200": _json_reply("What was retried", _BULK), "400": _ERROR},
    },
}
"""Spec operations whose answers (and inputs) this server documents its own way."""
ALIASES = {"/health": "/ojs/v1/health", "/ready": "/ojs/v1/ready"}
"""Probe paths at the root (where ext-observability looks), answering as their originals."""

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
    ("/ojs/v1/events/stream", "get"): {
        "operationId": "streamEvents",
        "summary": "Stream lifecycle events (Server-Sent Events)",
        "description": "The events of `GET /ojs/v1/events` as they are appended "
        "(ojs-realtime §2): `id`, `event` (the type) and `data` (the event) per event, a "
        "`:heartbeat` comment when idle, `retry: 3000`. Starts at the outbox's end, or after "
        "`Last-Event-ID` (or `after`): nothing missed, nothing twice; a `system.gap` notice if "
        "that event is no longer kept. Needs `Accept: text/event-stream` (406 otherwise). A "
        "client whose buffer stays full is dropped: a `system.stream_dropped` notice, then "
        "the end of the stream. The WebSocket `/ojs/v1/ws` (ojs-realtime §3, subprotocol "
        "`ojs.v1`; not an OpenAPI operation) streams the same events by channel.",
        "tags": ["Events"],
        "parameters": [
            {"name": "Last-Event-ID", "in": "header", "schema": {"type": "string"}},
            {"name": "after", "in": "query", "schema": {"type": "string"}},
            {"name": "types", "in": "query", "schema": _CSV},
            {"name": "queues", "in": "query", "schema": _CSV},
            {"name": "job_types", "in": "query", "schema": _CSV},
        ],
        "responses": {
            "200": {
                "description": "The event stream",
                "content": {"text/event-stream": {"schema": {"type": "string"}}},
            },
            "406": _ERROR,
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
    ("/ojs/v1/admin/system/tree", "get"): {
        "operationId": "adminSupervisionTree",
        "summary": "The live supervision tree",
        "description": "Every supervisor and actor of the answering process: name, kind, "
        "class, state (running, restarting, stopped), restarts, mailbox depth and capacity "
        "(actors), strategy and children (supervisors). What the admin UI (`/ojs/admin/`) "
        "draws, polled every second.",
        "tags": ["Admin"],
        "parameters": [
            {
                "name": "limit",
                "in": "query",
                "description": "Children listed per supervisor (`children_total` counts all)",
                "schema": {"type": "integer", "minimum": 1, "maximum": 100000, "default": 200},
            }
        ],
        "responses": {
            "200": _json_reply(
                "The tree, from the root supervisor",
                {
                    "type": "object",
                    "required": ["tree"],
                    "properties": {"tree": {"$ref": "#/components/schemas/SupervisionNode"}},
                },
            ),
            "400": _ERROR,
        },
    },
    ("/ojs/v1/admin/dead-letter", "delete"): {
        "operationId": "adminPurgeDeadLetter",
        "summary": "Purge dead letter jobs",
        "description": "Deletes for good the dead letter jobs that `older_than` (created "
        "before) and the filter fields (`queue`, `type`, `since`) match (ojs-admin-api §11.3); "
        'needs `"confirm": true` (400 otherwise).',
        "tags": ["Admin"],
        "requestBody": {
            "required": True,
            "content": {
                "application/openjobspec+json": {
                    "schema": {
                        "type": "object",
                        "required": ["confirm"],
                        "properties": {
                            "older_than": _STAMP,
                            "queue": {"type": "string"},
                            "type": {"type": "string"},
                            "since": _STAMP,
                            "confirm": {"const": True},
                        },
                    }
                }
            },
        },
        "responses": {"200": _json_reply("What was deleted", _BULK), "400": _ERROR},
    },
}
"""Operations the server routes beyond the spec's ``openapi.yaml``."""


_COUNT = {"type": ["integer", "null"], "minimum": 0}
SUPERVISION_NODE: dict[str, Any] = {
    "type": "object",
    "description": "A supervisor or actor of the supervision tree (GET /ojs/v1/admin/system/tree).",
    "required": ["name", "kind", "type", "state", "restarts", "children", "children_total"],
    "properties": {
        "name": {"type": "string", "description": "Its child id, e.g. `queue:default`"},
        "kind": {"type": "string", "enum": ["supervisor", "actor"]},
        "type": {"type": "string", "description": "Class of the running instance"},
        "state": {"type": "string", "enum": ["running", "restarting", "stopped"]},
        "restarts": {"type": "integer", "minimum": 0},
        "restart": {
            "type": ["string", "null"],
            "enum": ["permanent", "transient", "temporary", None],
        },
        "mailbox_depth": _COUNT,
        "mailbox_capacity": _COUNT,
        "strategy": {"type": ["string", "null"]},
        "children": {"type": "array", "items": {"$ref": "#/components/schemas/SupervisionNode"}},
        "children_total": {"type": "integer", "minimum": 0},
    },
}


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
        if rule.endpoint != "static" and not rule.websocket  # /ojs/v1/ws: no HTTP operation
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
                paths.setdefault(path, {})[method] = {
                    **item[method],
                    **REPLACED.get((path, method), {}),
                }
            else:
                dropped.append(f"{method.upper()} {path}")
    for (path, method), operation in ADDED.items():
        if (_shape(path), method) not in routed:
            raise SystemExit(f"ADDED describes {method.upper()} {path}, which no route serves")
        paths.setdefault(path, {})[method] = {**operation, "x-ojs-actors-extension": True}
    for alias, path in ALIASES.items():
        if (alias, "get") in routed and "get" in paths.get(path, {}):
            paths[alias] = {"get": {**paths[path]["get"], "operationId": f"{alias[1:]}Alias",
                                    "summary": f"`GET {path}`, at the root",
                                    "x-ojs-actors-extension": True}}  # fmt: skip
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
    added = ", ".join(
        [f"{method.upper()} {path}" for path, method in ADDED] + [f"GET {p}" for p in ALIASES]
    )
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
    # ext-observability (EXT-OBS-002) checks these values, not the spec's connected/disconnected.
    schemas["HealthResponse"]["properties"]["backend"]["properties"]["status"]["enum"] = [
        "ok",
        "unhealthy",
    ]
    result.setdefault("securitySchemes", {})["bearerAuth"] = BEARER
    _accept_dag_workflows(schemas)
    _accept_both_heartbeat_forms(schemas)
    schemas["SupervisionNode"] = SUPERVISION_NODE
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
