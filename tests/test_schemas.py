"""The schema registry and job versions (ojs-schema-registry, ojs-job-versioning).

* Versions: every spelling (``2``, ``"2.0"``, ``"2.0.0"``) is one version, ordered by
  SemVer precedence; ``type@version`` is split at enqueue, the ``version`` field winning.
* The registry over HTTP, both bindings, on both serving paths: register, 409 on a
  duplicate, 400 on a body without a schema or with an invalid one, latest by precedence
  (also after a delete), versions newest first, 404s.
* The enqueue check: ``warn`` accepts with warnings (single and batch), ``strict`` answers
  422 ``validation_error`` and stores nothing (a batch names the index), ``off`` checks
  nothing; a versioned job meets its own version's schema, an unversioned one the latest.
* Two systems over one store (replicas): a schema registered through one is enforced by
  the other once its view is older than ``schema_refresh`` (autojump clock), and a reset
  drops the view at once.
"""

from __future__ import annotations

import json as jsonlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio

from ojs_actors import MemoryBackend
from ojs_actors.core import Conflict, InvalidRequest, State, ValidationFailed, parse_enqueue
from ojs_actors.core.versions import parse_version, split_type, version_key
from ojs_actors.http import HttpSettings, create_app
from ojs_actors.system import Settings, System, open_system

DEADLINE = 10
SIGNUP = {"type": "array", "prefixItems": [{"type": "string", "format": "email"}], "minItems": 1}
"""Draft 2020-12: one email address first."""
SIGNUP_V2 = {
    "type": "array",
    "prefixItems": [{"type": "string"}, {"type": "object", "required": ["plan"]}],
    "minItems": 2,
}


async def call(
    client: Any, method: str, path: str, json: Any = None, status: int = 200
) -> dict[str, Any]:
    with trio.fail_after(DEADLINE):
        response = await client.open(path, method=method, json=json)
        raw = await response.get_data()
    assert response.status_code == status, raw
    body: dict[str, Any] = jsonlib.loads(raw)
    if status >= 400:
        assert isinstance(body["error"]["code"], str) and body["error"]["message"]
    return body


def strict_client(system: System, direct: bool = True) -> Any:
    system.schemas.mode = "strict"
    return create_app(system, HttpSettings(direct_routes=direct)).test_client()


# -- versions ----------------------------------------------------------------------------


def test_every_spelling_of_a_version_is_one_version_in_semver_order() -> None:
    assert version_key(2) == version_key("2.0") == version_key("2.0.0") == "2.0.0"
    ordered = ["1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-beta", "1.0.0", "1.1", "2", "10.0"]
    assert sorted(ordered, key=parse_version) == ordered
    assert parse_version("1.0.0+build.7") == parse_version("1")
    for bad in ("", "v1", "1.2.3.4", "01", "-1", -1, True, 1.5, None, "send!"):
        with pytest.raises(InvalidRequest):
            parse_version(bad)


def test_the_version_comes_from_the_type_unless_the_field_gives_it() -> None:
    assert split_type("invoice.generate@2.0") == ("invoice.generate", "2.0")
    assert split_type("invoice.generate") == ("invoice.generate", None)
    typed = parse_enqueue({"type": "invoice.generate@2.0", "args": []}, 0)
    assert (typed.type, typed.extra["version"]) == ("invoice.generate", "2.0")
    both = parse_enqueue({"type": "invoice.generate@2.0", "version": 3, "args": []}, 0)
    assert (both.type, both.extra["version"]) == ("invoice.generate", 3)
    for body in (
        {"type": "email@send!", "args": []},
        {"type": "email.send", "version": "two", "args": []},
        {"type": "email.send@", "args": []},
    ):
        with pytest.raises(InvalidRequest):
            parse_enqueue(body, 0)


# -- the registry over HTTP ----------------------------------------------------------------


async def test_admin_binding_registers_reads_lists_and_deletes(client: Any) -> None:
    base = "/ojs/v1/admin/schemas/user.signup"
    one = await call(client, "PUT", f"{base}/1", {"schema": SIGNUP}, 201)
    assert (one["type"], one["version"], one["schema"]) == ("user.signup", 1, SIGNUP)
    await call(client, "PUT", f"{base}/1.0.0", {"schema": SIGNUP_V2}, 409)  # same version
    await call(client, "PUT", f"{base}/2.0", {"schema": SIGNUP_V2}, 201)

    latest = await call(client, "GET", base)
    assert (latest["version"], latest["schema"]) == ("2.0", SIGNUP_V2)
    assert [v["version"] for v in latest["versions"]] == ["2.0", 1]
    listed = await call(client, "GET", f"{base}/versions")
    assert [(v["version"], v["is_latest"]) for v in listed["versions"]] == [
        ("2.0", True),
        (1, False),
    ]
    assert (await call(client, "GET", f"{base}/1"))["schema"] == SIGNUP

    deleted = await call(client, "DELETE", f"{base}/2")
    assert deleted["deleted"] is True and deleted["version"] == "2.0"
    assert (await call(client, "GET", base))["version"] == 1
    await call(client, "DELETE", f"{base}/2", status=404)
    await call(client, "DELETE", f"{base}/1")
    await call(client, "GET", base, status=404)
    assert (await call(client, "GET", f"{base}/versions"))["versions"] == []


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"schema": {}},
        {"schema": "string"},
        {"schema": {"type": "no-such-type"}},
        {"schema": {"$schema": "https://json-schema.org/draft/2020-12/schema", "items": [{}]}},
        {"schema": {"$ref": "http://127.0.0.1:9/never-fetched.json"}},
        {"schema": {"type": "string", "pattern": "["}},
    ],
    ids=[
        "missing",
        "empty",
        "not-an-object",
        "bad-type",
        "tuple-items-in-2020-12",
        "remote-ref",
        "bad-regex",
    ],
)
async def test_a_registration_without_a_valid_schema_is_a_400(
    client: Any, body: dict[str, Any]
) -> None:
    error = await call(client, "PUT", "/ojs/v1/admin/schemas/bad.schema/1", body, 400)
    assert error["error"]["code"] == "invalid_request"
    await call(client, "GET", "/ojs/v1/admin/schemas/bad.schema", status=404)


async def test_bad_types_and_versions_in_the_path_are_400s(client: Any) -> None:
    await call(client, "PUT", "/ojs/v1/admin/schemas/Bad!/1", {"schema": SIGNUP}, 400)
    await call(client, "PUT", "/ojs/v1/admin/schemas/ok.type/v1", {"schema": SIGNUP}, 400)
    await call(client, "GET", "/ojs/v1/admin/schemas/ok.type/x.y", status=400)


async def test_the_registry_binding_wraps_records_in_schema(client: Any) -> None:
    body = {"job_type": "invoice.generate", "version": "1.0.0", "schema": SIGNUP}
    created = await call(client, "POST", "/ojs/v1/schemas", body, 201)
    assert created["schema"]["job_type"] == "invoice.generate"
    assert created["schema"]["created_at"].endswith("Z")
    await call(client, "POST", "/ojs/v1/schemas", body, 409)
    await call(client, "POST", "/ojs/v1/schemas", {**body, "version": None}, 400)
    await call(client, "POST", "/ojs/v1/schemas", {**body, "version": "1.10.0"}, 201)
    latest = await call(client, "GET", "/ojs/v1/schemas/invoice.generate")
    assert latest["schema"]["version"] == "1.10.0"  # precedence, not text order
    listed = await call(client, "GET", "/ojs/v1/schemas/invoice.generate/versions")
    assert [v["version"] for v in listed["versions"]] == ["1.10.0", "1.0.0"]
    got = await call(client, "GET", "/ojs/v1/schemas/invoice.generate/1.0.0")
    assert got["schema"]["schema"] == SIGNUP
    await call(client, "DELETE", "/ojs/v1/schemas/invoice.generate/1.0.0")
    await call(client, "GET", "/ojs/v1/schemas/invoice.generate/1.0.0", status=404)


# -- the enqueue check ---------------------------------------------------------------------


async def test_warn_mode_accepts_with_warnings(client: Any) -> None:
    await call(client, "PUT", "/ojs/v1/admin/schemas/user.signup/1", {"schema": SIGNUP}, 201)
    good = await call(
        client, "POST", "/ojs/v1/jobs", {"type": "user.signup", "args": ["a@b.c"]}, 201
    )
    assert "warnings" not in good
    bad = {"type": "user.signup", "args": ["not-an-email"]}
    accepted = await call(client, "POST", "/ojs/v1/jobs", bad, 201)
    assert accepted["job"]["state"] == "available"
    [warning] = accepted["warnings"]
    assert "user.signup@1" in warning and "email" in warning
    batch = await call(
        client, "POST", "/ojs/v1/jobs/batch", {"jobs": [{**bad, "args": ["x@y.z"]}, bad]}, 201
    )
    assert batch["count"] == 2
    assert [("index 1" in w) for w in batch["warnings"]] == [True]


@pytest.mark.parametrize("direct", [True, False], ids=["direct", "quart"])
async def test_strict_mode_rejects_and_stores_nothing(system: System, direct: bool) -> None:
    client = strict_client(system, direct)
    base = "/ojs/v1/admin/schemas/user.signup"
    await call(client, "PUT", f"{base}/1", {"schema": SIGNUP}, 201)
    await call(client, "PUT", f"{base}/2", {"schema": SIGNUP_V2}, 201)
    queue = {"options": {"queue": "signups"}}

    # unversioned: the latest (2) applies
    latest_only = {"type": "user.signup", "args": ["a@b.c"], **queue}
    error = (await call(client, "POST", "/ojs/v1/jobs", latest_only, 422))["error"]
    assert error["code"] == "validation_error"
    assert "user.signup@2" in error["message"]
    assert "ojs-schema-registry" in error["docs_url"]
    assert error["details"]["validation_errors"]
    # versioned: its own version's schema, by field or by type@version
    await call(client, "POST", "/ojs/v1/jobs", {**latest_only, "version": 1}, 201)
    await call(client, "POST", "/ojs/v1/jobs", {**latest_only, "type": "user.signup@1.0"}, 201)
    v2 = {"type": "user.signup", "args": ["a@b.c", {"plan": "pro"}], **queue}
    await call(client, "POST", "/ojs/v1/jobs", v2, 201)
    await call(client, "POST", "/ojs/v1/jobs", {**v2, "version": 1}, 201)  # extra items: fine
    # a version with no schema, and a type with none, are not checked
    await call(client, "POST", "/ojs/v1/jobs", {**latest_only, "version": 7}, 201)
    await call(client, "POST", "/ojs/v1/jobs", {**latest_only, "type": "other.type"}, 201)

    batch = {"jobs": [v2, {**v2, "args": ["a@b.c", {}]}]}
    error = (await call(client, "POST", "/ojs/v1/jobs/batch", batch, 422))["error"]
    assert error["details"]["index"] == 1
    assert error["message"].startswith("Job at index 1: ")
    _, counts = await system.queue_stats("signups")
    assert counts[State.AVAILABLE] == 6  # the six accepted; the batch stored nothing


async def test_tuple_items_without_a_draft_are_checked_as_2019_09(system: System) -> None:
    """The conformance suites' form: ``items`` as an array, no ``$schema``."""
    client = strict_client(system)
    schema = {"type": "array", "items": [{"type": "string"}, {"type": "string"}], "minItems": 2}
    await call(client, "PUT", "/ojs/v1/admin/schemas/email.send/1", {"schema": schema}, 201)
    await call(client, "POST", "/ojs/v1/jobs", {"type": "email.send", "args": ["a", "b"]}, 201)
    for args in (["a"], [1, "b"]):
        body = {"type": "email.send", "args": args}
        error = (await call(client, "POST", "/ojs/v1/jobs", body, 422))["error"]
        assert error["details"]["validation_errors"]


async def test_off_mode_checks_nothing(system: System) -> None:
    client = strict_client(system)
    await call(client, "PUT", "/ojs/v1/admin/schemas/user.signup/1", {"schema": SIGNUP}, 201)
    system.schemas.mode = "off"
    body = await call(client, "POST", "/ojs/v1/jobs", {"type": "user.signup", "args": [1]}, 201)
    assert "warnings" not in body


async def test_the_embedded_api_is_checked_too(system: System) -> None:
    system.schemas.mode = "strict"
    await system.schemas.register("user.signup", 1, SIGNUP)
    with pytest.raises(ValidationFailed):
        await system.enqueue({"type": "user.signup", "args": []})
    with pytest.raises(ValidationFailed):
        await system.enqueue_batch([{"type": "user.signup", "args": [1]}])
    job = await system.enqueue({"type": "user.signup", "args": ["a@b.c"]})
    assert job.args == ["a@b.c"]


# -- replicas ------------------------------------------------------------------------------


@pytest.fixture
async def replicas() -> AsyncIterator[tuple[System, System]]:
    shared = MemoryBackend()
    settings = Settings(schema_validation="strict", schema_refresh=2.0)
    async with (
        open_system(shared, settings=settings) as a,
        open_system(shared, settings=settings) as b,
    ):
        yield a, b


async def test_a_schema_registered_through_one_replica_binds_the_other(
    replicas: tuple[System, System], autojump_clock: trio.testing.MockClock
) -> None:
    a, b = replicas
    bad = {"type": "user.signup", "args": [42]}
    await b.enqueue(bad)  # b's view: nothing registered
    await a.schemas.register("user.signup", 1, SIGNUP)
    with pytest.raises(ValidationFailed):
        await a.enqueue(bad)  # a changed it: at once
    await b.enqueue(bad)  # b: its view is not yet stale
    await trio.sleep(2.1)
    with pytest.raises(ValidationFailed):
        await b.enqueue(bad)  # b reloaded
    assert (await b.schemas.get("user.signup"))["version"] == 1  # reads go to the store

    await a.schemas.delete("user.signup", 1)
    await trio.sleep(2.1)
    await b.enqueue(bad)


async def test_a_reset_drops_the_view_at_once(system: System) -> None:
    system.schemas.mode = "strict"
    await system.schemas.register("user.signup", 1, SIGNUP)
    await system.reset()
    job = await system.enqueue({"type": "user.signup", "args": [42]})
    assert job.args == [42]
    assert await system.schemas.versions("user.signup") == []


async def test_registrations_racing_through_both_replicas_all_land(
    replicas: tuple[System, System],
) -> None:
    a, b = replicas
    async with trio.open_nursery() as nursery:
        for version in range(1, 21):
            nursery.start_soon(
                (a if version % 2 else b).schemas.register, "race.type", version, SIGNUP
            )
    listed = await a.schemas.versions("race.type")
    assert [entry["version"] for entry in listed] == list(range(20, 0, -1))
    with pytest.raises(Conflict):
        await b.schemas.register("race.type", "20.0", SIGNUP)
