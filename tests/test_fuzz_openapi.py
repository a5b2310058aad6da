"""Schemathesis fuzzing of real ``ojs-actors serve`` processes, driven by the spec's OpenAPI.

Every operation of the spec's ``openapi.yaml`` that this server serves (the operations of
its own document, ``ojs_actors/http/openapi.json``) gets schema-valid and schema-violating
requests, on both HTTP paths (the hot routes served directly, and everything through
Quart). Nothing may answer 5xx, no request may hang, and every 4xx carries the spec's
error body. The operations of the server's own document (``GET /ojs/openapi.json``, its
extensions included) get the same, and their answers must match what it documents. The
run is bounded and reproducible: a fixed number of examples per operation
(``OJS_FUZZ_EXAMPLES`` for a deeper run), a fixed seed, a per-request timeout.

The spec lives outside this repository: by default in ``../shared/ojs-spec`` next to
the checkout, or wherever ``OJS_SPEC_DIR`` points. Without it the spec's test is
skipped, and says so. Schemas load at import, as ``@schema.parametrize()`` needs
(``schemathesis.pytest.from_fixture`` does not run under pytest 9.2).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from schemathesis import Case, CheckContext, Response
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance
from schemathesis.specs.openapi.schemas import OpenApiSchema
from serving import REPO, OjsServer

from ojs_actors.http.routes.openapi import openapi_document

SPEC_DIR = Path(os.environ.get("OJS_SPEC_DIR", REPO.parent / "shared" / "ojs-spec"))
SPEC = SPEC_DIR / "openapi.yaml"
MEDIA_TYPE = "application/openjobspec+json"
EXAMPLES_PER_OPERATION = int(os.environ.get("OJS_FUZZ_EXAMPLES", "25"))
SEED = 20240917
REQUEST_TIMEOUT = 10.0  # seconds; a request still unanswered then fails the test: a hang


def ojs_error_body(ctx: CheckContext, response: Response, case: Case) -> bool | None:
    """A 4xx answers ``{"error": {"code": str, "message": str, "retryable": bool, …}}`` as
    the OJS media type (ojs-http-binding §16.1)."""
    if not 400 <= response.status_code < 500:
        return None
    content_type = response.headers.get("content-type", [""])[0]
    assert content_type == MEDIA_TYPE, f"{response.status_code} as {content_type!r}"
    body = json.loads(response.content)
    assert isinstance(body, dict) and isinstance(body.get("error"), dict), body
    error = body["error"]
    assert isinstance(error.get("code"), str) and error["code"], error
    assert isinstance(error.get("message"), str) and error["message"], error
    assert isinstance(error.get("retryable"), bool), error
    return True


CHECKS = [not_a_server_error, ojs_error_body]


def served_operations() -> set[tuple[str, str]]:
    """(METHOD, path) of every operation this server's own document lists."""
    return {
        (method.upper(), path)
        for path, item in openapi_document()["paths"].items()
        for method in item
    }


def load(source: Path | dict[str, Any]) -> OpenApiSchema:
    config = schemathesis.Config.from_dict(
        {
            "seed": SEED,
            "generation": {
                "mode": "all",
                "max-examples": EXAMPLES_PER_OPERATION,
                "deterministic": True,
                "database": "none",
            },
            "phases": {"stateful": {"enabled": False}},
        }
    )
    if isinstance(source, Path):
        return schemathesis.openapi.from_path(source, config=config)
    return schemathesis.openapi.from_dict(source, config=config)


def spec_schema() -> OpenApiSchema:
    """The spec's operations that this server serves (the others answer 404 by design)."""
    served = served_operations()
    return load(SPEC).include(
        lambda ctx: (ctx.operation.method.upper(), ctx.operation.path) in served
    )


if SPEC.exists():
    spec = spec_schema()

    @spec.parametrize()
    def test_spec_operations_never_fail_the_server(case: Case, memory_server: OjsServer) -> None:
        case.call_and_validate(base_url=memory_server.url, checks=CHECKS, timeout=REQUEST_TIMEOUT)

else:

    def test_spec_operations_never_fail_the_server() -> None:
        pytest.skip(f"no OJS spec at {SPEC}")


own = load(openapi_document())


@own.parametrize()
@pytest.mark.parametrize("memory_server", ["direct"], indirect=True)
def test_own_document_describes_the_answers(case: Case, memory_server: OjsServer) -> None:
    """The operations of ``GET /ojs/openapi.json``, the ones this server adds included: the
    same checks, and every answer with a documented status has the documented media type
    and schema."""
    case.call_and_validate(
        base_url=memory_server.url,
        checks=[*CHECKS, response_schema_conformance, content_type_conformance],
        timeout=REQUEST_TIMEOUT,
    )
