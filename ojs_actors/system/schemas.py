"""The schema registry (ojs-schema-registry, ojs-job-versioning §6): JSON Schemas for
job arguments, per job type and version, and the check of ``args`` at enqueue.

Storage: one snapshot per job type (``schema:<type>``, :class:`~ojs_actors.backends.
Snapshots`), changed only by compare-and-set, so every backend has the registry and
every process sharing a backend sees the same one. The admin calls (register, get,
list, delete) always read the backend.

The enqueue check (:meth:`SchemaRegistry.check`) must not cost a backend round trip per
job, so each process keeps a view of every type's schemas with their compiled
validators, reloaded (one ``list_snapshots``) when it is older than
``Settings.schema_refresh`` seconds and at once after this process's own changes. A
schema registered or deleted through another process is therefore enforced here within
that time (default 1 s). With nothing registered the check is one clock read and two
comparisons.

Which schema applies: a job's own version's (``version``, or ``type@version``); an
unversioned job is checked against its type's latest version (ojs-schema-registry §6.2,
§9.2). A version with no schema registered is not checked (the registry is optional,
ojs-job-versioning §15.2). What a mismatch does is ``Settings.schema_validation``
(§7.2): ``strict`` rejects (422 ``validation_error``), ``warn`` (the default the spec
recommends) accepts with warnings (:func:`collect_warnings`), ``off`` checks nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from contextvars import ContextVar
from typing import Any

import jsonschema_rs
import trio
from jsonschema_rs import Validator

from ..backends import Snapshots
from ..core import Conflict, InvalidRequest, Job, NotFound, ValidationFailed, format_ms
from ..core.errors import ServiceRestarting
from ..core.versions import ParsedVersion, Version, parse_version
from .clock import Clock

log = logging.getLogger("ojs_actors.schemas")

SNAPSHOT_PREFIX = "schema:"
VALIDATION_MODES = ("strict", "warn", "off")
MAX_ERRORS = 20
"""Validation errors reported per job; the rest are counted, not listed."""
_CAS_ATTEMPTS = 32

_warnings: ContextVar[list[str] | None] = ContextVar("ojs_schema_warnings", default=None)


class SchemaMismatch(ValidationFailed):
    """A job's ``args`` do not match its registered schema, in ``strict`` mode (§7.3)."""

    docs = "ojs-schema-registry#73-validation-response"
    default_hint = (
        "Make 'args' match the job type's registered schema "
        "(GET /ojs/v1/admin/schemas/{type}), or send the version whose schema they match."
    )


class collect_warnings:  # noqa: N801 - used as a function: ``with collect_warnings() as w``
    """The ``warn`` mode's warnings for the enqueues made inside the block (this task).

    The enqueue API returns jobs; the warnings are the request's side information, so
    the HTTP route collects them around its call rather than every caller getting them.
    A class, not ``@contextmanager``: it wraps every enqueue request, and this is cheaper."""

    __slots__ = ("_token", "collected")

    def __enter__(self) -> list[str]:
        self.collected: list[str] = []
        self._token = _warnings.set(self.collected)
        return self.collected

    def __exit__(self, *exc_info: object) -> None:
        _warnings.reset(self._token)


def compile_schema(schema: object) -> Validator:
    """A validator for ``schema``, or a 400 if it is no valid JSON Schema (SR-005).

    A ``$schema`` picks its draft; without one the draft is 2020-12 (ojs-schema-registry
    §5.1), or 2019-09 if only that accepts it: the conformance suites register tuple
    ``items`` arrays, which 2020-12 replaced by ``prefixItems``. ``format`` is asserted
    (§13.3 rejects ``'to' does not match format 'email'``). A ``$ref`` to anything outside
    the schema is refused, never fetched: the server makes no requests a client names."""
    if not isinstance(schema, dict | bool):
        raise InvalidRequest(
            "'schema' is required: a JSON Schema (an object).", details={"field": "schema"}
        )
    try:
        return jsonschema_rs.validator_for(schema, validate_formats=True, retriever=_no_remote)
    except _SCHEMA_ERRORS as error:
        if isinstance(schema, dict) and "$schema" not in schema:
            try:
                return jsonschema_rs.Draft201909Validator(
                    schema, validate_formats=True, retriever=_no_remote
                )
            except _SCHEMA_ERRORS:
                pass
        reason = str(error).strip().splitlines()[0]
        raise InvalidRequest(
            f"'schema' is not a valid JSON Schema: {reason}", details={"field": "schema"}
        ) from None


_SCHEMA_ERRORS = (jsonschema_rs.ValidationError, jsonschema_rs.ReferencingError, ValueError)


def _no_remote(uri: str) -> Any:
    raise ValueError(f"remote references are not fetched ({uri})")


def _json_path(path: Sequence[str | int]) -> str:
    return "$" + "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in path)


def _problems(validator: Validator, args: object) -> list[str]:
    """Why ``args`` does not match (empty if it does); checked with ``is_valid`` first,
    which is several times faster than collecting the errors."""
    if validator.is_valid(args):
        return []
    listed: list[str] = []
    for count, error in enumerate(validator.iter_errors(args)):
        if count == MAX_ERRORS:
            listed.append("… and more")
            break
        path = error.instance_path
        listed.append(f"{_json_path(path)}: {error.message}" if path else error.message)
    return listed


class _TypeSchemas:
    """One job type's registered versions, as stored, with validators compiled on use."""

    __slots__ = ("records", "latest", "_compiled")

    def __init__(self, records: dict[str, dict[str, Any]]) -> None:
        self.records = records
        self.latest = max(records, key=lambda key: parse_version(records[key]["version"]))
        self._compiled: dict[str, Validator] = {}

    def validator(self, key: str) -> Validator:
        compiled = self._compiled.get(key)
        if compiled is None:
            compiled = self._compiled[key] = compile_schema(self.records[key]["schema"])
        return compiled

    def keep_compiled(self, older: _TypeSchemas) -> None:
        """Reuse ``older``'s validators for the versions whose record did not change."""
        for key, validator in older._compiled.items():
            if self.records.get(key) == older.records[key]:
                self._compiled[key] = validator


class SchemaRegistry:
    def __init__(
        self, snapshots: Snapshots, clock: Clock, *, mode: str = "warn", refresh: float = 1.0
    ) -> None:
        if mode not in VALIDATION_MODES:
            raise ValueError(f"schema validation mode must be one of {VALIDATION_MODES}")
        self._snapshots = snapshots
        self._clock = clock
        self.mode = mode
        self._refresh_s = refresh
        self._view: dict[str, _TypeSchemas] = {}
        self._fresh_until = float("-inf")
        self._reloading = trio.Lock()

    # -- the enqueue check ------------------------------------------------------------

    async def check(self, jobs: Sequence[Job], *, batch: bool = False) -> None:
        """Check each job's ``args`` against its schema (module docstring); raise
        :class:`ValidationFailed` for the first mismatch in ``strict`` mode."""
        if self.mode == "off":
            return
        if trio.current_time() >= self._fresh_until:
            await self._reload()
        if not self._view:
            return
        for index, job in enumerate(jobs):
            schemas = self._view.get(job.type)
            if schemas is not None:
                self._check_one(schemas, job, index if batch else None)

    def _check_one(self, schemas: _TypeSchemas, job: Job, index: int | None) -> None:
        version = job.extra.get("version")
        key = schemas.latest if version is None else parse_version(version).key
        if key not in schemas.records:
            return
        problems = _problems(schemas.validator(key), job.args)
        if not problems:
            return
        label = f"{job.type}@{schemas.records[key]['version']}"
        if self.mode == "strict":
            prefix = "" if index is None else f"Job at index {index}: "
            details: dict[str, Any] = {"job_type": job.type, "validation_errors": problems}
            if index is not None:
                details["index"] = index
            raise SchemaMismatch(
                f"{prefix}Job arguments do not match schema for {label}.", details=details
            )
        log.warning("job %s (%s) does not match its schema: %s", job.id, label, problems)
        collected = _warnings.get()
        if collected is not None:
            where = "" if index is None else f"job at index {index}: "
            collected.extend(
                f"Schema validation warning ({label}): {where}{problem}" for problem in problems
            )

    async def _reload(self) -> None:
        async with self._reloading:
            if trio.current_time() < self._fresh_until:
                return  # another task reloaded while this one waited
            stored = await self._snapshots.list_snapshots(SNAPSHOT_PREFIX)
            self._install(stored)

    def _install(self, stored: dict[str, dict[str, Any]]) -> None:
        view: dict[str, _TypeSchemas] = {}
        for snapshot_key, state in stored.items():
            records = state.get("versions") or {}
            if records:
                schemas = view[snapshot_key[len(SNAPSHOT_PREFIX) :]] = _TypeSchemas(records)
                older = self._view.get(snapshot_key[len(SNAPSHOT_PREFIX) :])
                if older is not None:
                    schemas.keep_compiled(older)
        self._view = view
        self._fresh_until = trio.current_time() + self._refresh_s

    def _changed(self, job_type: str, records: dict[str, dict[str, Any]]) -> None:
        """This process changed ``job_type``: its view has the change at once."""
        view = dict(self._view)
        if records:
            schemas = view[job_type] = _TypeSchemas(records)
            older = self._view.get(job_type)
            if older is not None:
                schemas.keep_compiled(older)
        else:
            view.pop(job_type, None)
        self._view = view

    def forget(self) -> None:
        """Drop the view (after a reset): the next check reloads it."""
        self._view = {}
        self._fresh_until = float("-inf")

    # -- the registry ------------------------------------------------------------------

    async def register(self, job_type: str, version: Version, schema: object) -> dict[str, Any]:
        """Store ``schema`` for ``job_type`` at ``version``; 409 if that version exists."""
        key = parse_version(version).key
        compile_schema(schema)
        record = {"version": version, "schema": schema, "created_at": self._clock()}

        def add(records: dict[str, dict[str, Any]]) -> None:
            if key in records:
                raise Conflict(
                    f"A schema for {job_type} version {records[key]['version']} already exists.",
                    details={"job_type": job_type, "version": records[key]["version"]},
                )
            records[key] = record

        await self._update(job_type, add)
        return wire(job_type, record)

    async def delete(self, job_type: str, version: Version) -> dict[str, Any]:
        """Remove one version; 404 if it is not registered."""
        key = parse_version(version).key
        removed: dict[str, Any] = {}

        def remove(records: dict[str, dict[str, Any]]) -> None:
            if key not in records:
                raise _not_found(job_type, version)
            removed.update(records.pop(key))

        await self._update(job_type, remove)
        return wire(job_type, removed)

    async def get(self, job_type: str, version: Version | None = None) -> dict[str, Any]:
        """One version's record, or the latest (highest precedence); 404 if none."""
        records = await self._records(job_type)
        if not records:
            raise _not_found(job_type, version)
        if version is None:
            return wire(job_type, max(records.values(), key=_precedence))
        record = records.get(parse_version(version).key)
        if record is None:
            raise _not_found(job_type, version)
        return wire(job_type, record)

    async def versions(self, job_type: str) -> list[dict[str, Any]]:
        """Every version of ``job_type``, newest (highest precedence) first."""
        records = sorted((await self._records(job_type)).values(), key=_precedence, reverse=True)
        return [
            {
                "version": record["version"],
                "created_at": format_ms(record["created_at"]),
                "is_latest": index == 0,
            }
            for index, record in enumerate(records)
        ]

    async def _records(self, job_type: str) -> dict[str, dict[str, Any]]:
        state = await self._snapshots.load_snapshot(SNAPSHOT_PREFIX + job_type)
        records: dict[str, dict[str, Any]] = (state or {}).get("versions") or {}
        return records

    async def _update(self, job_type: str, change: Any) -> None:
        """Apply ``change`` (which may raise) to the type's stored versions by
        compare-and-set, again from a fresh read while another process wins the race."""
        snapshot_key = SNAPSHOT_PREFIX + job_type
        for _ in range(_CAS_ATTEMPTS):
            loaded = await self._snapshots.load_snapshot_versioned(snapshot_key)
            state, expected = loaded if loaded is not None else ({}, None)
            records = dict(state.get("versions") or {})
            change(records)
            saved = await self._snapshots.save_snapshot_if(
                snapshot_key, {"type": job_type, "versions": records}, expected
            )
            if saved is not None:
                self._changed(job_type, records)
                return
        raise ServiceRestarting(
            f"The schemas of {job_type} kept changing; try again.",
            details={"job_type": job_type},
        )


def _precedence(record: dict[str, Any]) -> ParsedVersion:
    return parse_version(record["version"])


def _not_found(job_type: str, version: Version | None) -> NotFound:
    if version is None:
        return NotFound(f"No schema is registered for {job_type}.", details={"job_type": job_type})
    return NotFound(
        f"No schema is registered for {job_type} version {version}.",
        details={"job_type": job_type, "version": version},
    )


def wire(job_type: str, record: dict[str, Any]) -> dict[str, Any]:
    """A stored version as the HTTP binding shows it: ``type`` (the conformance suites)
    and ``job_type`` (ojs-schema-registry §4.1) both name the job type."""
    return {
        "type": job_type,
        "job_type": job_type,
        "version": record["version"],
        "schema": record["schema"],
        "created_at": format_ms(record["created_at"]),
    }


__all__ = [
    "SNAPSHOT_PREFIX",
    "VALIDATION_MODES",
    "SchemaMismatch",
    "SchemaRegistry",
    "collect_warnings",
    "compile_schema",
    "wire",
]
