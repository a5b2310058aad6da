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
from ojs_actors.core import OJSError, State
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
    ("/ojs/v1/admin/jobs", "get"): {
        "description": "Every job (any state), filtered, sorted and paged (ojs-admin-api §7.1). "
        "Ties of the sort go by `created_at`, then id, in the same order; a job without "
        "`scheduled_at` sorts as the earliest (first ascending, last descending). Served "
        "where the backend can list "
        "its jobs (memory, SQLite, Redis, Kafka); on NATS and SQS the answer is 422 "
        "`unsupported`.",
        "parameters": [
            *(param for param in _FILTER_PARAMETERS if param["name"] != "state"),
            {
                "name": "state",
                "in": "query",
                "schema": {"type": "string", "enum": [state.value for state in State]},
            },
            *_PAGE_PARAMETERS,
            {
                "name": "sort",
                "in": "query",
                "schema": {
                    "type": "string",
                    "enum": ["created_at", "scheduled_at", "priority"],
                    "default": "created_at",
                },
            },
            {
                "name": "order",
                "in": "query",
                "schema": {"type": "string", "enum": ["asc", "desc"], "default": "desc"},
            },
        ],
        "responses": {
            "200": _json_reply("A page of jobs", _page_of(_JOB)),
            "400": _ERROR,
            "422": _json_reply(
                "`unsupported`: this backend cannot list its jobs",
                {"$ref": "#/components/schemas/ErrorResponse"},
            ),
        },
    },
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
        "format (ojs-observability); needs the API key when keys are configured. 404 when "
        "the server runs with metrics off (--no-metrics, OJS_METRICS_ENABLED=false).",
        "tags": ["System"],
        "responses": {
            "200": {
                "description": "Metrics",
                "content": {"text/plain": {"schema": {"type": "string"}}},
            },
            "404": _NOT_FOUND,
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
    ("/ojs/v1/admin/queues/{name}/jobs", "delete"): {
        "operationId": "adminPurgeQueue",
        "summary": "Purge a queue's finished jobs",
        "description": "Deletes for good the queue's jobs in `states` (finished states only: "
        "`completed`, `cancelled`, `discarded`), those finished before `older_than` if given "
        '(ojs-admin-api §6.5); needs `"confirm": true` (400 otherwise, and for any other '
        "field). A job changed meanwhile is kept. On NATS and SQS the answer is 422 "
        "`unsupported`.",
        "tags": ["Admin"],
        "parameters": [_NAME],
        "requestBody": {
            "required": True,
            "content": {
                "application/openjobspec+json": {
                    "schema": {
                        "type": "object",
                        "required": ["states", "confirm"],
                        "additionalProperties": False,
                        "properties": {
                            "states": {
                                "type": "array",
                                "minItems": 1,
                                "items": {
                                    "type": "string",
                                    "enum": [state.value for state in State if state.terminal],
                                },
                            },
                            "older_than": _STAMP,
                            "confirm": {"const": True},
                        },
                    }
                }
            },
        },
        "responses": {
            "200": _json_reply(
                "How many jobs were deleted",
                {
                    "type": "object",
                    "required": ["purged_count", "states"],
                    "properties": {
                        "purged_count": _INT,
                        "states": {"type": "array", "items": {"type": "string"}},
                    },
                },
            ),
            "400": _ERROR,
            "422": _json_reply(
                "`unsupported`: this backend cannot delete its jobs",
                {"$ref": "#/components/schemas/ErrorResponse"},
            ),
        },
    },
}
"""Operations the server routes beyond the spec's ``openapi.yaml``."""

# -- multi-tenancy, fair scheduling (ojs-multi-tenancy §10, ojs-fair-scheduling §10)
_TENANT_ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
_TENANT = {
    "type": "object",
    "required": ["tenant_id", "total_jobs", "jobs", "queues"],
    "properties": {
        "tenant_id": {"type": "string"},
        "total_jobs": _INT,
        "jobs": _COUNTS,
        "queues": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"name": {"type": "string"}, "jobs": _COUNTS, "total_jobs": _INT},
            },
        },
        "throughput": {
            "type": "object",
            "properties": {"processed_per_minute": _INT, "enqueued_per_minute": _INT},
        },
        "fairness": {
            "type": "object",
            "properties": {
                "weight": {"type": "number"},
                "effective_share": {"type": "number", "minimum": 0, "maximum": 1},
                "actual_share": {"type": "number", "minimum": 0, "maximum": 1},
                "throttled": {
                    "type": "object",
                    "properties": {
                        "reason": {"type": "string"},
                        "effective_weight": {"type": "number"},
                        "until": _STAMP,
                    },
                },
            },
        },
        "computed_at": _STAMP,
    },
}
_TENANT_LIMITS = {
    "type": "object",
    "properties": {
        "max_concurrency": {"type": ["integer", "null"], "minimum": 0},
        "max_queue_depth": {"type": ["integer", "null"], "minimum": 0},
        "max_scheduled": {"type": ["integer", "null"], "minimum": 0},
        "max_enqueue_rate": {
            "type": ["object", "null"],
            "required": ["limit"],
            "properties": {
                "limit": {"type": "integer", "minimum": 1},
                "period": {"type": "string"},
            },
        },
        "reason": {"type": "string"},
    },
}
_TENANT_CONFIG_FIELDS: dict[str, Any] = {
    "tenant_id": {"type": "string"},
    "limits": _TENANT_LIMITS,
    "fairness_weight": {"type": "number", "exclusiveMinimum": 0},
    "priority_boost": {"type": "integer"},
}
_TENANT_CONFIG = {"type": "object", "properties": _TENANT_CONFIG_FIELDS}
_TENANT_CONFIG_REPLY = {
    "type": "object",
    "required": ["tenant"],
    "properties": {
        "tenant": {
            "type": "object",
            "properties": {
                **_TENANT_CONFIG_FIELDS,
                "last_change_reason": {"type": "string"},
                "created_at": _STAMP,
                "updated_at": _STAMP,
            },
        }
    },
}
_POOL = {
    "type": "object",
    "required": ["name", "strategy", "queues"],
    "properties": {
        "name": {"type": "string"},
        "strategy": {"type": "string", "enum": ["strict", "round-robin", "weighted"]},
        "queues": {"type": "array", "items": {"type": "string"}},
        "weights": {"type": "object", "additionalProperties": {"type": "integer", "minimum": 1}},
        "concurrency": {"type": "integer", "minimum": 1},
        "created_at": _STAMP,
        "updated_at": _STAMP,
    },
}
_POOL_REPLY = {"type": "object", "required": ["pool"], "properties": {"pool": _POOL}}
ADDED.update(
    {
        ("/ojs/v1/queues/{name}", "get"): {
            "operationId": "getQueue",
            "summary": "A queue's record and job counts",
            "description": "As `GET /ojs/v1/queues/{name}/stats`. With `X-OJS-Tenant`, the "
            "counts are of that tenant's jobs only (ojs-multi-tenancy §6.1).",
            "tags": ["Queues"],
            "parameters": [_NAME],
            "responses": {"200": _json_reply("The queue", {"type": "object"}), "400": _ERROR},
        },
        ("/ojs/v1/jobs/{id}/nack", "post"): {
            "operationId": "nackJobByPath",
            "summary": "Fail a job (nack), its id in the path",
            "description": "`POST /ojs/v1/workers/nack` with the id in the URL; the job "
            "comes back under `job`.",
            "tags": ["Workers"],
            "parameters": [_TENANT_ID],
            "responses": {
                "200": _json_reply("The job", _JOB_REPLY),
                "400": _ERROR,
                "404": _NOT_FOUND,
                "409": _CONFLICT,
            },
        },
        ("/ojs/v1/admin/tenants", "get"): {
            "operationId": "adminListTenants",
            "summary": "Tenants with their job counts",
            "description": "Every tenant holding jobs (`_default`: the jobs naming none), "
            "found in the queue registry (ojs-multi-tenancy §10.1).",
            "tags": ["Admin"],
            "responses": {
                "200": _json_reply(
                    "The tenants",
                    {
                        "type": "object",
                        "required": ["tenants", "count"],
                        "properties": {
                            "tenants": {"type": "array", "items": _TENANT},
                            "count": _INT,
                        },
                    },
                )
            },
        },
        ("/ojs/v1/admin/tenants/{id}", "get"): {
            "operationId": "adminGetTenant",
            "summary": "A tenant's job counts",
            "tags": ["Admin"],
            "parameters": [_TENANT_ID],
            "responses": {
                "200": _json_reply("The tenant", _TENANT),
                "400": _ERROR,
                "404": _NOT_FOUND,
            },
        },
        ("/ojs/v1/admin/tenants/{id}/stats", "get"): {
            "operationId": "adminTenantStats",
            "summary": "A tenant's statistics",
            "description": "Its jobs in total, by state and by queue (ojs-multi-tenancy §10.2); "
            "a configured tenant's `limits` with their current values; `throughput` "
            "(`processed_per_minute`: jobs completed or discarded, `enqueued_per_minute`) and "
            "`fairness` (`weight`; `effective_share`: its weight over the sum of the weights "
            "of the tenants with waiting work; `actual_share`: its part of the claims), all "
            "counted by the answering process over the last minute; `fairness.throttled` "
            "while the tenant is throttled as a noisy neighbour (§9.2). With `X-OJS-Tenant` "
            "naming another tenant, 404.",
            "tags": ["Admin"],
            "parameters": [_TENANT_ID],
            "responses": {
                "200": _json_reply("The tenant", _TENANT),
                "400": _ERROR,
                "404": _NOT_FOUND,
            },
        },
        ("/ojs/v1/admin/tenants/{id}/jobs", "get"): {
            "operationId": "adminListTenantJobs",
            "summary": "A tenant's jobs",
            "description": "The tenant's jobs over all its queues (ojs-multi-tenancy §10.3), "
            "filtered, sorted and paged as `GET /ojs/v1/admin/jobs` lists them (`queue` as "
            "the tenant names it; `_default`: the jobs naming no tenant); on NATS and SQS "
            "the answer is 422 `unsupported`. 404 for a tenant neither configured nor "
            "holding jobs, or with `X-OJS-Tenant` naming another tenant.",
            "tags": ["Admin"],
            "parameters": [_TENANT_ID, *REPLACED[("/ojs/v1/admin/jobs", "get")]["parameters"]],
            "responses": {
                "200": _json_reply("A page of the tenant's jobs", _page_of(_JOB)),
                "400": _ERROR,
                "404": _NOT_FOUND,
                "422": _json_reply(
                    "`unsupported`: this backend cannot list its jobs",
                    {"$ref": "#/components/schemas/ErrorResponse"},
                ),
            },
        },
        ("/ojs/v1/admin/tenants/{id}", "put"): {
            "operationId": "adminPutTenant",
            "summary": "Create or replace a tenant's configuration",
            "description": "ojs-multi-tenancy §8.1, §10.1: `limits` (`max_concurrency`, "
            "`max_queue_depth`, `max_scheduled`, `max_enqueue_rate` `{limit, period}`), "
            "`fairness_weight`, `priority_boost`. 201 (and `tenant.created`) the first time. "
            "Enqueues past a limit are 429 `TENANT_LIMIT_EXCEEDED`.",
            "tags": ["Admin"],
            "parameters": [_TENANT_ID],
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": _TENANT_CONFIG}},
            },
            "responses": {
                "200": _json_reply("The configuration", _TENANT_CONFIG_REPLY),
                "201": _json_reply("The configuration, created", _TENANT_CONFIG_REPLY),
                "400": _ERROR,
            },
        },
        ("/ojs/v1/admin/tenants/{id}/limits", "put"): {
            "operationId": "adminPutTenantLimits",
            "summary": "Change some of a tenant's limits",
            "description": "ojs-multi-tenancy §9.3: the limits given change (`null` removes "
            "one), the others stay; an optional `reason` is kept.",
            "tags": ["Admin"],
            "parameters": [_TENANT_ID],
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": _TENANT_LIMITS}},
            },
            "responses": {
                "200": _json_reply("The configuration", _TENANT_CONFIG_REPLY),
                "201": _json_reply("The configuration, created", _TENANT_CONFIG_REPLY),
                "400": _ERROR,
            },
        },
        ("/ojs/v1/admin/tenants/{id}", "delete"): {
            "operationId": "adminDeleteTenant",
            "summary": "Deregister a tenant",
            "description": "Its configuration and limits go; its jobs stay.",
            "tags": ["Admin"],
            "parameters": [_TENANT_ID],
            "responses": {
                "200": _json_reply(
                    "Deleted",
                    {
                        "type": "object",
                        "properties": {
                            "deleted": {"type": "boolean"},
                            "tenant_id": {"type": "string"},
                        },
                    },
                ),
                "400": _ERROR,
                "404": _NOT_FOUND,
            },
        },
        ("/ojs/v1/admin/pools", "get"): {
            "operationId": "adminListPools",
            "summary": "Worker pools",
            "tags": ["Admin"],
            "responses": {
                "200": _json_reply(
                    "The pools",
                    {
                        "type": "object",
                        "required": ["items", "count"],
                        "properties": {"items": {"type": "array", "items": _POOL}, "count": _INT},
                    },
                )
            },
        },
        ("/ojs/v1/admin/pools/{name}", "put"): {
            "operationId": "adminPutPool",
            "summary": "Create or replace a worker pool",
            "description": "A fetch over queues that all belong to the pool claims in its "
            "strategy (ojs-fair-scheduling §7). `queues`: an array of names (weights under "
            '`weights`) or an object `{"queue": {"weight": n}}`. 201 if new, 200 if replaced.',
            "tags": ["Admin"],
            "parameters": [_NAME],
            "requestBody": {
                "required": True,
                "content": {"application/openjobspec+json": {"schema": {"type": "object"}}},
            },
            "responses": {
                "200": _json_reply("The pool, replaced", _POOL_REPLY),
                "201": _json_reply("The pool, created", _POOL_REPLY),
                "400": _ERROR,
            },
        },
        ("/ojs/v1/admin/pools/{name}", "get"): {
            "operationId": "adminGetPool",
            "summary": "A worker pool",
            "tags": ["Admin"],
            "parameters": [_NAME],
            "responses": {"200": _json_reply("The pool", _POOL_REPLY), "404": _NOT_FOUND},
        },
        ("/ojs/v1/admin/pools/{name}", "delete"): {
            "operationId": "adminDeletePool",
            "summary": "Delete a worker pool",
            "tags": ["Admin"],
            "parameters": [_NAME],
            "responses": {"200": _json_reply("Deleted", {"type": "object"}), "404": _NOT_FOUND},
        },
        ("/ojs/v1/admin/scheduling/stats", "get"): {
            "operationId": "adminSchedulingStats",
            "summary": "Dispatches per queue over the last minute",
            "description": "This process's claims per queue (`dispatch_count_1m`, "
            "`dispatch_ratio_1m`), each queue's active jobs, and their sums under `stats` "
            "(ojs-fair-scheduling §10.2).",
            "tags": ["Admin"],
            "responses": {
                "200": _json_reply(
                    "The statistics",
                    {
                        "type": "object",
                        "required": ["stats", "queues", "window"],
                        "properties": {
                            "stats": {"type": "object"},
                            "queues": {"type": "array", "items": {"type": "object"}},
                            "window": {"type": "string"},
                        },
                    },
                )
            },
        },
    }
)


# -- schema registry, job versions (ojs-schema-registry §10, ojs-job-versioning §11)
_SCHEMA_TYPE = {"name": "type", "in": "path", "required": True, "schema": {"type": "string"}}
_SCHEMA_VERSION = {
    "name": "version",
    "in": "path",
    "required": True,
    "schema": {"type": "string"},
    "description": "1 to 3 dot-separated numbers (`1`, `2.0`, `2.0.0`), SemVer suffixes allowed; "
    "all spellings of one version are the same version.",
}
_VERSION_VALUE = {"type": ["integer", "string"]}
_SCHEMA_RECORD = {
    "type": "object",
    "required": ["type", "job_type", "version", "schema", "created_at"],
    "properties": {
        "type": {"type": "string"},
        "job_type": {"type": "string"},
        "version": _VERSION_VALUE,
        "schema": {"type": "object", "description": "The JSON Schema of the job's `args`"},
        "created_at": _STAMP,
    },
}
_SCHEMA_VERSIONS = {
    "type": "array",
    "description": "Newest (highest SemVer precedence) first.",
    "items": {
        "type": "object",
        "required": ["version", "created_at", "is_latest"],
        "properties": {
            "version": _VERSION_VALUE,
            "created_at": _STAMP,
            "is_latest": {"type": "boolean"},
        },
    },
}
_WRAPPED = {"type": "object", "required": ["schema"], "properties": {"schema": _SCHEMA_RECORD}}
_SCHEMA_BODY = {
    "required": True,
    "content": {
        "application/openjobspec+json": {
            "schema": {
                "type": "object",
                "required": ["schema"],
                "properties": {"schema": {"type": "object", "minProperties": 1}},
            }
        }
    },
}
_SCHEMA_NOTE = (
    " Enqueues are checked against the registered schemas (`--schema-validation`: `warn`, "
    "the default, accepts with `warnings`; `strict` answers 422 `validation_error`)."
)
ADDED.update(
    {
        ("/ojs/v1/jobs/{id}/ack", "post"): {
            "operationId": "ackJobByPath",
            "summary": "Complete a job (ack), its id in the path",
            "description": "`POST /ojs/v1/workers/ack` with the id in the URL (ojs-results "
            "§10.1); the job comes back under `job`.",
            "tags": ["Workers"],
            "parameters": [_TENANT_ID],
            "responses": {
                "200": _json_reply("The job", _JOB_REPLY),
                "400": _ERROR,
                "404": _NOT_FOUND,
                "409": _CONFLICT,
            },
        },
        ("/ojs/v1/admin/schemas/{type}/{version}", "put"): {
            "operationId": "adminRegisterSchema",
            "summary": "Register a JSON Schema for a job type's version",
            "description": "ojs-job-versioning §11.1; 409 if the version exists. Without "
            "`$schema` the draft is 2020-12, or 2019-09 if only that accepts it." + _SCHEMA_NOTE,
            "tags": ["Admin"],
            "parameters": [_SCHEMA_TYPE, _SCHEMA_VERSION],
            "requestBody": _SCHEMA_BODY,
            "responses": {
                "201": _json_reply("Registered", _SCHEMA_RECORD),
                "400": _ERROR,
                "409": _CONFLICT,
            },
        },
        ("/ojs/v1/admin/schemas/{type}/{version}", "get"): {
            "operationId": "adminGetSchemaVersion",
            "summary": "A job type's schema at one version",
            "tags": ["Admin"],
            "parameters": [_SCHEMA_TYPE, _SCHEMA_VERSION],
            "responses": {
                "200": _json_reply("The schema", _SCHEMA_RECORD),
                "400": _ERROR,
                "404": _NOT_FOUND,
            },
        },
        ("/ojs/v1/admin/schemas/{type}/{version}", "delete"): {
            "operationId": "adminDeleteSchemaVersion",
            "summary": "Delete a job type's schema version",
            "tags": ["Admin"],
            "parameters": [_SCHEMA_TYPE, _SCHEMA_VERSION],
            "responses": {
                "200": _json_reply("The deleted schema", _SCHEMA_RECORD),
                "400": _ERROR,
                "404": _NOT_FOUND,
            },
        },
        ("/ojs/v1/admin/schemas/{type}", "get"): {
            "operationId": "adminGetLatestSchema",
            "summary": "A job type's latest schema, with its versions",
            "tags": ["Admin"],
            "parameters": [_SCHEMA_TYPE],
            "responses": {
                "200": _json_reply(
                    "The latest schema",
                    {
                        **_SCHEMA_RECORD,
                        "properties": {
                            **_SCHEMA_RECORD["properties"],  # type: ignore[dict-item]
                            "versions": _SCHEMA_VERSIONS,
                        },
                    },
                ),
                "400": _ERROR,
                "404": _NOT_FOUND,
            },
        },
        ("/ojs/v1/admin/schemas/{type}/versions", "get"): {
            "operationId": "adminListSchemaVersions",
            "summary": "A job type's schema versions",
            "tags": ["Admin"],
            "parameters": [_SCHEMA_TYPE],
            "responses": {
                "200": _json_reply(
                    "The versions (empty if none)",
                    {
                        "type": "object",
                        "properties": {"type": {"type": "string"}, "versions": _SCHEMA_VERSIONS},
                    },
                ),
                "400": _ERROR,
            },
        },
        ("/ojs/v1/schemas", "post"): {
            "operationId": "registerSchema",
            "summary": "Register a JSON Schema (schema registry binding)",
            "description": "ojs-schema-registry §4.1: `job_type`, `version`, `schema`; 409 if "
            "the version exists." + _SCHEMA_NOTE,
            "tags": ["Admin"],
            "requestBody": {
                "required": True,
                "content": {
                    "application/openjobspec+json": {
                        "schema": {
                            "type": "object",
                            "required": ["job_type", "version", "schema"],
                            "properties": {
                                "job_type": {"type": "string"},
                                "version": _VERSION_VALUE,
                                "schema": {"type": "object", "minProperties": 1},
                            },
                        }
                    }
                },
            },
            "responses": {
                "201": _json_reply("Registered", _WRAPPED),
                "400": _ERROR,
                "409": _CONFLICT,
            },
        },
        ("/ojs/v1/schemas/{type}", "get"): {
            "operationId": "getLatestSchema",
            "summary": "A job type's latest schema (highest SemVer precedence)",
            "tags": ["Admin"],
            "parameters": [_SCHEMA_TYPE],
            "responses": {
                "200": _json_reply("The schema", _WRAPPED),
                "400": _ERROR,
                "404": _NOT_FOUND,
            },
        },
        ("/ojs/v1/schemas/{type}/versions", "get"): {
            "operationId": "listSchemaVersions",
            "summary": "A job type's schema versions, newest first",
            "tags": ["Admin"],
            "parameters": [_SCHEMA_TYPE],
            "responses": {
                "200": _json_reply(
                    "The versions", {"type": "object", "properties": {"versions": _SCHEMA_VERSIONS}}
                ),
                "400": _ERROR,
            },
        },
        ("/ojs/v1/schemas/{type}/{version}", "get"): {
            "operationId": "getSchemaVersion",
            "summary": "A job type's schema at one version",
            "tags": ["Admin"],
            "parameters": [_SCHEMA_TYPE, _SCHEMA_VERSION],
            "responses": {
                "200": _json_reply("The schema", _WRAPPED),
                "400": _ERROR,
                "404": _NOT_FOUND,
            },
        },
        ("/ojs/v1/schemas/{type}/{version}", "delete"): {
            "operationId": "deleteSchemaVersion",
            "summary": "Delete a job type's schema version",
            "tags": ["Admin"],
            "parameters": [_SCHEMA_TYPE, _SCHEMA_VERSION],
            "responses": {
                "200": _json_reply("The deleted schema", _WRAPPED),
                "400": _ERROR,
                "404": _NOT_FOUND,
            },
        },
    }
)
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

# -- progress (ojs-progress §10) and durable execution checkpoints (ojs-durable-execution §7)
_JOB_ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
_PROGRESS = {
    "type": "object",
    "required": ["job_id", "state", "progress", "message", "data", "updated_at"],
    "properties": {
        "job_id": {"type": "string"},
        "state": {"type": "string"},
        "progress": {"type": ["number", "null"], "minimum": 0, "maximum": 1},
        "message": {"type": ["string", "null"]},
        "data": {"type": ["object", "null"]},
        "updated_at": {"type": ["string", "null"], "format": "date-time"},
        "recorded": {
            "type": "boolean",
            "description": "On a report: false if the job was not active, so it was ignored",
        },
    },
}
_PROGRESS_REPORT = {
    "required": True,
    "content": {
        "application/openjobspec+json": {
            "schema": {
                "type": "object",
                "properties": {
                    "progress": {"type": "number", "description": "0.0-1.0; clamped"},
                    "message": {"type": "string", "maxLength": 1024},
                    "data": {"type": "object", "description": "At most 16 KB as JSON"},
                },
            }
        }
    },
}
_TOO_LARGE = _json_reply("Over the size limit", {"$ref": "#/components/schemas/ErrorResponse"})
_PROGRESS_REPORTED = {
    "200": _json_reply("The job's progress after the report", _PROGRESS),
    "400": _ERROR,
    "404": _NOT_FOUND,
    "413": _TOO_LARGE,
}
_PROGRESS_NOTE = (
    "Workers report a running job's progress (ojs-progress §6.1): `progress` (0.0-1.0, "
    "clamped; lower than the last value keeps the last within an attempt), `message`, "
    "`data`; at least one. The report renews the job's lease like a heartbeat, and emits "
    "a `job.progress` event (at most one a second per job). A report for a job that is "
    "not active is ignored, not refused (`recorded: false`)."
)
_CHECKPOINT = {
    "type": "object",
    "required": ["job_id", "state", "sequence", "created_at", "checkpoint"],
    "properties": {
        "job_id": {"type": "string"},
        "state": {"description": "Any JSON value"},
        "sequence": {"type": "integer", "minimum": 1},
        "created_at": _STAMP,
        "checkpoint": {
            "type": "object",
            "description": "The same fields (ojs-durable-execution §4)",
        },
    },
}
_CHECKPOINT_SAVE = {
    "operationId": "saveCheckpoint",
    "summary": "Save a job's checkpoint",
    "description": "Replaces the job's checkpoint; its `sequence` is one more than the "
    "last one's (1 after a delete). Refused with 409 for a terminal job, or when "
    "`worker_id` is given and the active job is leased to another worker; 413 over 1 MB. "
    "A `job.checkpointed` event is emitted. A later attempt of the job is fetched with "
    "`checkpoint: {state, sequence}` in its envelope.",
    "tags": ["Jobs"],
    "parameters": [_JOB_ID],
    "requestBody": {
        "required": True,
        "content": {
            "application/openjobspec+json": {
                "schema": {
                    "type": "object",
                    "required": ["state"],
                    "properties": {
                        "state": {"description": "Any JSON value, at most 1 MB"},
                        "worker_id": {"type": "string"},
                    },
                }
            }
        },
    },
    "responses": {
        "200": _json_reply("The checkpoint saved", _CHECKPOINT),
        "400": _ERROR,
        "404": _NOT_FOUND,
        "409": _CONFLICT,
        "413": _TOO_LARGE,
    },
}
ADDED.update(
    {
        ("/ojs/v1/jobs/{id}/progress", "put"): {
            "operationId": "reportProgress",
            "summary": "Report a job's progress",
            "description": _PROGRESS_NOTE,
            "tags": ["Jobs"],
            "parameters": [_JOB_ID],
            "requestBody": _PROGRESS_REPORT,
            "responses": _PROGRESS_REPORTED,
        },
        ("/ojs/v1/jobs/{id}/progress", "post"): {
            "operationId": "reportProgressPost",
            "summary": "Report a job's progress (as PUT)",
            "description": _PROGRESS_NOTE,
            "tags": ["Jobs"],
            "parameters": [_JOB_ID],
            "requestBody": _PROGRESS_REPORT,
            "responses": _PROGRESS_REPORTED,
        },
        ("/ojs/v1/jobs/{id}/progress", "get"): {
            "operationId": "getProgress",
            "summary": "A job's progress",
            "description": "Null fields if no progress was reported in the current attempt "
            "(ojs-progress §7.1); a completed job reads 1.0, a failed one keeps its last value. "
            "Headers `X-OJS-Progress`, `Last-Modified`, `Cache-Control: no-cache`.",
            "tags": ["Jobs"],
            "parameters": [_JOB_ID],
            "responses": {"200": _json_reply("The job's progress", _PROGRESS), "404": _NOT_FOUND},
        },
        ("/ojs/v1/jobs/{id}/progress/stream", "get"): {
            "operationId": "streamProgress",
            "summary": "Follow a job's progress (Server-Sent Events)",
            "description": "An `event: progress` frame (data: the body of `GET "
            "/ojs/v1/jobs/{id}/progress`) for each report seen, a `: heartbeat` comment when "
            "quiet, and, once the job is terminal, one `completed`, `failed` (discarded) or "
            "`cancelled` frame, then the end of the stream (ojs-progress §7.2). Needs "
            "`Accept: text/event-stream` (406 otherwise).",
            "tags": ["Jobs"],
            "parameters": [_JOB_ID],
            "responses": {
                "200": {
                    "description": "The progress stream",
                    "content": {"text/event-stream": {"schema": {"type": "string"}}},
                },
                "404": _NOT_FOUND,
                "406": _ERROR,
            },
        },
        ("/ojs/v1/workflows/{id}/progress", "get"): {
            "operationId": "getWorkflowProgress",
            "summary": "A workflow's aggregate progress",
            "description": "ojs-progress §9: each step's progress (1.0 once completed, its "
            "job's latest report while it runs, else null) and the aggregate: a batch's share "
            "of completed jobs; for a chain, a group and a DAG the mean of the steps' progress "
            "(unreported ones count 0). A request acting for another tenant gets 404.",
            "tags": ["Workflows"],
            "parameters": [{"$ref": "#/components/parameters/WorkflowId"}],
            "responses": {
                "200": _json_reply(
                    "The workflow's progress",
                    {
                        "type": "object",
                        "required": ["workflow_id", "type", "state", "progress", "steps"],
                        "properties": {
                            "workflow_id": {"type": "string"},
                            "type": {"type": "string", "enum": ["chain", "group", "batch", "dag"]},
                            "state": {"type": "string"},
                            "progress": {"type": "number", "minimum": 0, "maximum": 1},
                            "steps": {
                                "type": "array",
                                "items": {
                                    "type": "object",
                                    "required": ["job_id", "type", "state", "progress"],
                                    "properties": {
                                        "index": {"type": "integer"},
                                        "id": {"type": "string", "description": "DAG steps"},
                                        "name": {"type": "string"},
                                        "job_id": {"type": ["string", "null"]},
                                        "type": {"type": "string"},
                                        "state": {"type": "string"},
                                        "progress": {
                                            "type": ["number", "null"],
                                            "minimum": 0,
                                            "maximum": 1,
                                        },
                                        "message": {"type": "string"},
                                        "data": {"type": "object"},
                                    },
                                },
                            },
                        },
                    },
                ),
                "404": _NOT_FOUND,
            },
        },
        ("/ojs/v1/jobs/{id}/checkpoint", "post"): _CHECKPOINT_SAVE,
        ("/ojs/v1/jobs/{id}/checkpoint", "put"): {
            **_CHECKPOINT_SAVE,
            "operationId": "saveCheckpointPut",
            "summary": "Save a job's checkpoint (as POST)",
        },
        ("/ojs/v1/jobs/{id}/checkpoint", "get"): {
            "operationId": "getCheckpoint",
            "summary": "A job's checkpoint",
            "description": "404 if the job has none. Kept, read-only, after the job ends.",
            "tags": ["Jobs"],
            "parameters": [_JOB_ID],
            "responses": {"200": _json_reply("The checkpoint", _CHECKPOINT), "404": _NOT_FOUND},
        },
        ("/ojs/v1/jobs/{id}/checkpoint", "delete"): {
            "operationId": "deleteCheckpoint",
            "summary": "Delete a job's checkpoint",
            "description": "Idempotent: `deleted: false` if it had none.",
            "tags": ["Jobs"],
            "parameters": [_JOB_ID],
            "responses": {
                "200": _json_reply(
                    "Deleted",
                    {
                        "type": "object",
                        "required": ["deleted", "job_id"],
                        "properties": {
                            "deleted": {"type": "boolean"},
                            "job_id": {"type": "string"},
                        },
                    },
                ),
                "404": _NOT_FOUND,
            },
        },
    }
)


_SUBSCRIPTION_ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
_LIMIT_OFFSET = [
    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 1000,
                                                 "default": 50}},
    {"name": "offset", "in": "query", "schema": {"type": "integer", "minimum": 0, "default": 0}},
]  # fmt: skip
_LIMIT_PAGINATION = {
    "type": "object",
    "required": ["total", "limit", "offset", "has_more"],
    "properties": {"total": _INT, "limit": _INT, "offset": _INT, "has_more": {"type": "boolean"}},
}
_DELIVERY_ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
_EVENT_TYPES = {
    "type": "array",
    "minItems": 1,
    "maxItems": 100,
    "items": {"type": "string"},
    "description": "Event types: exact (`job.completed`), `prefix.*` or `*`.",
}
_WEBHOOK_FILTER = {
    "type": "object",
    "properties": {
        "queues": {"type": "array", "items": {"type": "string"}},
        "job_types": {"type": "array", "items": {"type": "string"}},
    },
    "additionalProperties": False,
}
_SUBSCRIPTION = {
    "type": "object",
    "required": ["id", "url", "events", "active"],
    "properties": {
        "id": {"type": "string"},
        "url": {"type": "string", "format": "uri"},
        "events": _EVENT_TYPES,
        "filter": _WEBHOOK_FILTER,
        "active": {"type": "boolean"},
        "metadata": {"type": "object"},
        "tenant_id": {
            "type": "string",
            "description": "The tenant it was created for (X-OJS-Tenant): it gets only that "
            "tenant's events, and only requests acting for it see it. Absent: an operator's.",
        },
        "secret": {
            "type": "string",
            "description": "The signing secret: only in the answers of create and rotate-secret.",
        },
        "created_at": _STAMP,
        "updated_at": _STAMP,
    },
}
_SUBSCRIPTION_REPLY: dict[str, Any] = {
    "type": "object",
    "required": ["subscription"],
    "properties": {"subscription": _SUBSCRIPTION},
}
_SUBSCRIPTION_BODY: dict[str, Any] = {
    "type": "object",
    "properties": {
        "url": {"type": "string", "format": "uri", "description": "An http or https URL."},
        "events": _EVENT_TYPES,
        "filter": _WEBHOOK_FILTER,
        "active": {"type": "boolean"},
        "metadata": {"type": "object"},
    },
}
_DELIVERY = {
    "type": "object",
    "required": ["id", "subscription_id", "event_id", "state", "attempts"],
    "properties": {
        "id": {"type": "string", "description": "`X-OJS-Delivery-ID`, the same on retries"},
        "subscription_id": {"type": "string"},
        "event_id": {"type": "string"},
        "event_type": {"type": "string"},
        "state": {"type": "string", "enum": ["pending", "delivered", "dead"]},
        "attempts": _INT,
        "next_attempt_at": {"type": ["string", "null"], "format": "date-time"},
        "last_status_code": {"type": ["integer", "null"]},
        "last_error": {"type": ["string", "null"]},
        "created_at": _STAMP,
        "updated_at": _STAMP,
        "history": {
            "type": "array",
            "description": "The newest attempts (status code, error, duration)",
            "items": {"type": "object"},
        },
        "event": {"type": "object", "description": "The event envelope delivered"},
    },
}
_DELIVERY_REPLY = {
    "type": "object",
    "required": ["delivery"],
    "properties": {"delivery": _DELIVERY},
}
_WEBHOOK_NOTE = (
    " Subscriptions and deliveries are kept by the backend (every backend), shared by the "
    "processes over it; the server POSTs to the URLs clients register (see the README on "
    "`OJS_WEBHOOK_ALLOWED_HOSTS`)."
)


def _json_body(schema: dict[str, Any], required: bool = True) -> dict[str, Any]:
    return {"required": required, "content": {"application/openjobspec+json": {"schema": schema}}}


ADDED.update(
    {
        ("/ojs/v1/webhooks/subscriptions", "post"): {
            "operationId": "createWebhookSubscription",
            "summary": "Create a webhook subscription",
            "description": "ojs-webhooks §6.1. The answer is the only one showing the signing "
            "`secret` (one given in the body is kept; else one is made)." + _WEBHOOK_NOTE,
            "tags": ["Webhooks"],
            "requestBody": _json_body(
                {
                    **_SUBSCRIPTION_BODY,
                    "required": ["url", "events"],
                    "properties": {
                        **_SUBSCRIPTION_BODY["properties"],
                        "secret": {"type": "string"},
                    },
                }
            ),
            "responses": {
                "201": _json_reply("The subscription, with its secret", _SUBSCRIPTION_REPLY),
                "400": _ERROR,
            },
        },
        ("/ojs/v1/webhooks/subscriptions", "get"): {
            "operationId": "listWebhookSubscriptions",
            "summary": "List webhook subscriptions",
            "tags": ["Webhooks"],
            "parameters": _LIMIT_OFFSET,
            "responses": {
                "200": _json_reply(
                    "Subscriptions, oldest first",
                    {
                        "type": "object",
                        "required": ["subscriptions"],
                        "properties": {
                            "subscriptions": {"type": "array", "items": _SUBSCRIPTION},
                            "pagination": _LIMIT_PAGINATION,
                        },
                    },
                ),
                "400": _ERROR,
            },
        },
        ("/ojs/v1/webhooks/subscriptions/{id}", "get"): {
            "operationId": "getWebhookSubscription",
            "summary": "Get a webhook subscription (without its secret)",
            "tags": ["Webhooks"],
            "parameters": [_SUBSCRIPTION_ID],
            "responses": {
                "200": _json_reply("The subscription", _SUBSCRIPTION_REPLY),
                "404": _NOT_FOUND,
            },
        },
        ("/ojs/v1/webhooks/subscriptions/{id}", "patch"): {
            "operationId": "updateWebhookSubscription",
            "summary": "Update a webhook subscription",
            "description": "ojs-webhooks §6.4: only the fields given change. Switched back on "
            "(`active`), it gets the events from then on.",
            "tags": ["Webhooks"],
            "parameters": [_SUBSCRIPTION_ID],
            "requestBody": _json_body(_SUBSCRIPTION_BODY),
            "responses": {
                "200": _json_reply("The subscription", _SUBSCRIPTION_REPLY),
                "400": _ERROR,
                "404": _NOT_FOUND,
            },
        },
        ("/ojs/v1/webhooks/subscriptions/{id}", "delete"): {
            "operationId": "deleteWebhookSubscription",
            "summary": "Delete a webhook subscription",
            "description": "Its pending deliveries are cancelled and its log forgotten.",
            "tags": ["Webhooks"],
            "parameters": [_SUBSCRIPTION_ID],
            "responses": {
                "200": _json_reply(
                    "The subscription deleted",
                    {
                        **_SUBSCRIPTION_REPLY,
                        "properties": {
                            **_SUBSCRIPTION_REPLY["properties"],
                            "deleted": {"type": "boolean"},
                        },
                    },
                ),
                "404": _NOT_FOUND,
            },
        },
        ("/ojs/v1/webhooks/subscriptions/{id}/test", "post"): {
            "operationId": "testWebhookSubscription",
            "summary": "Send a `webhook.test` event now",
            "description": "ojs-webhooks §6.6: sent at once by the process asked, signed like "
            "any delivery; the answer says how the endpoint responded (not retried).",
            "tags": ["Webhooks"],
            "parameters": [_SUBSCRIPTION_ID],
            "responses": {
                "200": _json_reply(
                    "How the endpoint answered",
                    {
                        "type": "object",
                        "required": ["success", "status_code", "response_time_ms"],
                        "properties": {
                            "success": {"type": "boolean"},
                            "status_code": {"type": ["integer", "null"]},
                            "response_time_ms": _INT,
                            "response_body": {"type": "string"},
                            "error": {"type": ["string", "null"]},
                            "delivery_id": {"type": "string"},
                        },
                    },
                ),
                "404": _NOT_FOUND,
            },
        },
        ("/ojs/v1/webhooks/subscriptions/{id}/rotate-secret", "post"): {
            "operationId": "rotateWebhookSecret",
            "summary": "Rotate a subscription's signing secret",
            "description": "ojs-webhooks §8.3: the answer shows the new secret; for 24 hours "
            "deliveries carry the old secret's signature too (`X-OJS-Signature: "
            "sha256=<new>,sha256=<old>`).",
            "tags": ["Webhooks"],
            "parameters": [_SUBSCRIPTION_ID],
            "responses": {
                "200": _json_reply("The subscription, with its new secret", _SUBSCRIPTION_REPLY),
                "404": _NOT_FOUND,
            },
        },
        ("/ojs/v1/webhooks/deliveries", "get"): {
            "operationId": "listWebhookDeliveries",
            "summary": "The delivery log, newest first",
            "description": "Pending deliveries and the newest finished ones of each "
            "subscription (`OJS_WEBHOOK_LOG_LIMIT`).",
            "tags": ["Webhooks"],
            "parameters": [
                {"name": "subscription_id", "in": "query", "schema": {"type": "string"}},
                {
                    "name": "state",
                    "in": "query",
                    "schema": {"type": "string", "enum": ["pending", "delivered", "dead"]},
                },
                *_LIMIT_OFFSET,
            ],
            "responses": {
                "200": _json_reply(
                    "Deliveries",
                    {
                        "type": "object",
                        "required": ["deliveries"],
                        "properties": {
                            "deliveries": {"type": "array", "items": _DELIVERY},
                            "pagination": _LIMIT_PAGINATION,
                        },
                    },
                ),
                "400": _ERROR,
                "404": _NOT_FOUND,
            },
        },
        ("/ojs/v1/webhooks/deliveries/{id}", "get"): {
            "operationId": "getWebhookDelivery",
            "summary": "A delivery, with its attempts",
            "tags": ["Webhooks"],
            "parameters": [_DELIVERY_ID],
            "responses": {
                "200": _json_reply("The delivery", _DELIVERY_REPLY),
                "404": _NOT_FOUND,
            },
        },
        ("/ojs/v1/webhooks/deliveries/{id}/retry", "post"): {
            "operationId": "retryWebhookDelivery",
            "summary": "Send a delivered or dead delivery again",
            "description": "Pending again, with the whole retry schedule ahead (a pending one "
            "is left as it is).",
            "tags": ["Webhooks"],
            "parameters": [_DELIVERY_ID],
            "responses": {
                "200": _json_reply("The delivery", _DELIVERY_REPLY),
                "404": _NOT_FOUND,
            },
        },
    }
)


# -- backpressure (ojs-backpressure §6-7), rate limits (ojs-rate-limiting §10), worker drain
_BACKPRESSURE = {
    "type": "object",
    "properties": {
        "max_depth": {"type": "integer", "minimum": 0, "description": "0: unbounded"},
        "max_size_bytes": {
            "type": "integer",
            "minimum": 0,
            "description": "Total size of the queue's jobs (their JSON); 0: unbounded",
        },
        "strategy": {"type": "string", "enum": ["reject", "block", "drop_oldest"]},
        "warning_threshold": {"type": "number", "minimum": 0, "maximum": 1},
    },
}
_QUEUE_CONFIG = {
    "type": "object",
    "required": ["queue", "backpressure"],
    "properties": {"queue": {"type": "string"}, "backpressure": _BACKPRESSURE},
}
_RATE_KEY = {"name": "key", "in": "path", "required": True, "schema": {"type": "string"}}
_QUEUE_RATE_LIMIT = {
    "type": "object",
    "required": ["queue", "rate_limit"],
    "properties": {
        "queue": {"type": "string"},
        "rate_limit": {"type": ["object", "null"], "description": "`null`: none set"},
        "state": {"type": "object", "description": "As a key's (`GET /ojs/v1/rate-limits/{key}`)"},
    },
}
_RATE_STATE = {
    "type": "object",
    "required": ["key"],
    "properties": {
        "key": {"type": "string"},
        "policy": {
            "type": "object",
            "description": "The newest `rate_limit` enqueued with the key",
        },
        "concurrency": {
            "type": "object",
            "properties": {
                "limit": {"type": ["integer", "null"]},
                "active": _INT,
                "available": {"type": ["integer", "null"]},
            },
        },
        "rate": {
            "type": "object",
            "properties": {
                "limit": _INT,
                "period_ms": _INT,
                "current_count": _INT,
                "window_resets_at": _STAMP,
            },
        },
        "throttle": {
            "type": "object",
            "properties": {"limit": _INT, "period_ms": _INT, "next_allowed_at": _STAMP},
        },
        "paused_until": {
            **_STAMP,
            "description": "A handler's `rate_limit_until` (§9): no job of the key starts before",
        },
        "pause_reason": {"type": "string"},
    },
}
_WORKER_ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
_REPORTED_STATE = {"type": "string", "enum": ["running", "quiet", "drain", "terminate"]}
_WORKER_HEALTH = {
    "type": "object",
    "required": ["worker_id", "state", "status"],
    "properties": {
        "worker_id": {"type": "string"},
        "state": _REPORTED_STATE,
        "status": {"type": "string", "enum": ["healthy", "draining"]},
        "active_jobs": _INT,
        "directive": {"type": "string"},
        "last_seen": _STAMP,
    },
}
ADDED.update(
    {
        ("/ojs/v1/admin/queues/{name}/config", "put"): {
            "operationId": "setQueueConfig",
            "summary": "Bound a queue's depth and size",
            "description": "ojs-backpressure §6.2. Past `max_depth` non-terminal jobs (or "
            "`max_size_bytes` of them), an enqueue is refused with 429 `QUEUE_FULL` and "
            "`Retry-After`, `X-OJS-Queue-Depth`, `X-OJS-Queue-Bound` (and "
            "`X-OJS-Queue-Size-Bytes`, `X-OJS-Queue-Size-Bound` for the size; a batch is "
            "refused whole), or waited out (`block`, `OJS-Block-Timeout`), or room made "
            "(`drop_oldest`); past `warning_threshold`, successful enqueues carry "
            "`X-OJS-Queue-Pressure`. Kept in the queue's record in the backend, so every "
            "process sharing it applies it (within `--poll-interval`). `max_size_bytes` on "
            "a backend without the job listing is 422.",
            "tags": ["Queues"],
            "parameters": [_NAME],
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["backpressure"],
                            "properties": {"backpressure": _BACKPRESSURE},
                        }
                    }
                },
            },
            "responses": {
                "200": _json_reply("The queue's bound", _QUEUE_CONFIG),
                "400": _ERROR,
            },
        },
        ("/ojs/v1/admin/queues/{name}/config", "get"): {
            "operationId": "getQueueConfig",
            "summary": "A queue's depth bound",
            "tags": ["Queues"],
            "parameters": [_NAME],
            "responses": {"200": _json_reply("The queue's bound", _QUEUE_CONFIG), "400": _ERROR},
        },
        ("/ojs/v1/rate-limits", "get"): {
            "operationId": "listRateLimits",
            "summary": "Rate-limit keys and their state",
            "description": "ojs-rate-limiting §10.3: every key a job's `rate_limit` named.",
            "tags": ["Queues"],
            "parameters": _LIMIT_OFFSET,
            "responses": {
                "200": _json_reply(
                    "Keys by name",
                    {
                        "type": "object",
                        "required": ["items", "pagination"],
                        "properties": {
                            "items": {"type": "array", "items": _RATE_STATE},
                            "pagination": _LIMIT_PAGINATION,
                        },
                    },
                ),
                "400": _ERROR,
            },
        },
        ("/ojs/v1/rate-limits/{key}", "get"): {
            "operationId": "getRateLimit",
            "summary": "A rate-limit key's state",
            "description": "ojs-rate-limiting §10.1: its policy, active jobs against its "
            "concurrency, starts in its window, the next start its throttle allows. Shared "
            "by every process over the backend.",
            "tags": ["Queues"],
            "parameters": [_RATE_KEY],
            "responses": {"200": _json_reply("The key's state", _RATE_STATE), "404": _NOT_FOUND},
        },
        ("/ojs/v1/rate-limits/{key}", "put"): {
            "operationId": "overrideRateLimit",
            "summary": "Override a rate-limit key's limits",
            "description": "ojs-rate-limiting §10.2: any of `concurrency`, `rate`, `throttle` "
            "(`null` lifts that kind meanwhile) and an optional `expires_at` replace the jobs' "
            "own limits for the key, in every process sharing the backend.",
            "tags": ["Queues"],
            "parameters": [_RATE_KEY],
            "requestBody": _json_body({"type": "object"}),
            "responses": {"200": _json_reply("The key's state", _RATE_STATE), "400": _ERROR},
        },
        ("/ojs/v1/rate-limits/{key}", "delete"): {
            "operationId": "clearRateLimitOverride",
            "summary": "Lift a rate-limit key's override",
            "description": "Our addition: the key's jobs' own limits apply again.",
            "tags": ["Queues"],
            "parameters": [_RATE_KEY],
            "responses": {"200": _json_reply("The key's state", _RATE_STATE), "404": _NOT_FOUND},
        },
        ("/ojs/v1/admin/queues/{name}/rate-limit", "put"): {
            "operationId": "setQueueRateLimit",
            "summary": "Limit every job of a queue",
            "description": "ojs-rate-limiting §7.2: `concurrency`, `rate`, `throttle` for the "
            "queue as a whole (the key `@queue:<name>`), on top of each job's own limits.",
            "tags": ["Queues"],
            "parameters": [_NAME],
            "requestBody": _json_body({"type": "object"}),
            "responses": {
                "200": _json_reply("The queue's limit", _QUEUE_RATE_LIMIT),
                "400": _ERROR,
            },
        },
        ("/ojs/v1/admin/queues/{name}/rate-limit", "get"): {
            "operationId": "getQueueRateLimit",
            "summary": "A queue's rate limit and its state",
            "tags": ["Queues"],
            "parameters": [_NAME],
            "responses": {
                "200": _json_reply("The queue's limit", _QUEUE_RATE_LIMIT),
                "404": _NOT_FOUND,
            },
        },
        ("/ojs/v1/admin/queues/{name}/rate-limit", "delete"): {
            "operationId": "clearQueueRateLimit",
            "summary": "Lift a queue's rate limit",
            "tags": ["Queues"],
            "parameters": [_NAME],
            "responses": {
                "200": _json_reply("The queue's limit", _QUEUE_RATE_LIMIT),
                "404": _NOT_FOUND,
            },
        },
        ("/ojs/v1/workers/beat", "post"): {
            "operationId": "workerBeat",
            "summary": "A worker's report of its shutdown phase",
            "description": "ext-graceful-shutdown: `state` `quiet`, `drain` (or `shutdown: "
            "true`) or `terminate` stops new jobs for the worker's fetches; `running` resumes "
            "them. Extends the leases of `active_job_ids` (or `active_jobs` given as ids) as a "
            "heartbeat does.",
            "tags": ["Workers"],
            "requestBody": _json_body(
                {
                    "type": "object",
                    "required": ["worker_id"],
                    "properties": {
                        "worker_id": {"type": "string"},
                        "state": _REPORTED_STATE,
                        "shutdown": {"type": "boolean"},
                        "active_jobs": {
                            "oneOf": [_INT, {"type": "array", "items": {"type": "string"}}]
                        },
                        "active_job_ids": {"type": "array", "items": {"type": "string"}},
                    },
                }
            ),
            "responses": {
                "200": _json_reply(
                    "Acknowledged",
                    {
                        "type": "object",
                        "required": ["acknowledged", "state"],
                        "properties": {
                            "acknowledged": {"type": "boolean", "const": True},
                            "worker_id": {"type": "string"},
                            "state": _REPORTED_STATE,
                            "directive": {"type": "string"},
                            "jobs_extended": {"type": "array", "items": {"type": "string"}},
                            "jobs_cancelled": {"type": "array", "items": {"type": "string"}},
                            "server_time": _STAMP,
                        },
                    },
                ),
                "400": _ERROR,
            },
        },
        ("/ojs/v1/workers/{id}/health", "get"): {
            "operationId": "getWorkerHealth",
            "summary": "A worker's health as it reported it",
            "description": "503 while the worker is shutting down (`quiet`, `drain`, "
            "`terminate`), 200 while `running`; 404 for a worker this process has not heard "
            "from within `--worker-idle-timeout`.",
            "tags": ["Workers"],
            "parameters": [_WORKER_ID],
            "responses": {
                "200": _json_reply("Running", _WORKER_HEALTH),
                "503": _json_reply("Shutting down", _WORKER_HEALTH),
                "404": _NOT_FOUND,
            },
        },
    }
)


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
