"""Worker version declarations (ojs-job-versioning §8): version ranges and the handlers a
worker declares with them. Pure.

A worker declares ``handlers: [{"type": "invoice.generate", "versions": ">=1.0 <3.0"}]``;
a range is ``"*"`` (any version), an exact version (``"2.0"``), or comparators joined by
spaces, all of which must hold (``">=1.0 <3.0"``, ``">=2.0"``; ``>``, ``>=``, ``<``,
``<=``, ``=``). Versions compare as :mod:`.versions` orders them, so ``"2"``, ``"2.0"``
and ``"2.0.0"`` are one version. An unversioned job is in every range (§8.2: routable to
any worker for its type), and a type the worker did not declare is routed as ``"*"``.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .errors import InvalidRequest
from .job import Job
from .versions import ParsedVersion, parse_version, split_type

MAX_RANGE_LENGTH = 200
MAX_HANDLERS = 1000
_COMPARATOR = re.compile(r"^(>=|<=|>|<|=)?(.+)$")
_OPERATORS: dict[str, Callable[[ParsedVersion, ParsedVersion], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    ">": operator.gt,
    "<": operator.lt,
    "=": operator.eq,
}


@dataclass(frozen=True, slots=True)
class VersionRange:
    """A parsed range: ``text`` as declared, ``bounds`` the comparators that must all hold
    (none: ``"*"``, every version)."""

    text: str
    bounds: tuple[tuple[str, ParsedVersion], ...] = ()

    def includes(self, version: object) -> bool:
        """Whether a job of ``version`` (``None``: unversioned, always in) is in range."""
        if version is None or not self.bounds:
            return True
        try:
            parsed = parse_version(version)
        except InvalidRequest:
            return True  # checked at enqueue; an unreadable version is routed as unversioned
        return all(_OPERATORS[op](parsed, bound) for op, bound in self.bounds)


ANY = VersionRange("*")


def parse_version_range(value: object, field: str = "versions") -> VersionRange:
    """``value`` as a version range, or a 400 naming ``field``."""
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_RANGE_LENGTH:
        raise _bad_range(field, value)
    text = value.strip()
    if text == "*":
        return ANY
    bounds: list[tuple[str, ParsedVersion]] = []
    for part in text.split():
        match = _COMPARATOR.fullmatch(part)
        if match is None:
            raise _bad_range(field, value)
        op, version = match.groups()
        try:
            bounds.append((op or "=", parse_version(version, field)))
        except InvalidRequest:
            raise _bad_range(field, value) from None
    return VersionRange(text, tuple(bounds))


def _bad_range(field: str, value: object) -> InvalidRequest:
    return InvalidRequest(
        f"'{field}' must be a version range: '*', an exact version such as '2.0', or "
        "comparators (>=, >, <=, <, =) joined by spaces such as '>=1.0 <3.0'.",
        details={"field": field, "received": value if isinstance(value, str) else None},
    )


@dataclass(frozen=True, slots=True)
class VersionRoutes:
    """The job types a worker declared, each with the ranges it accepts (a type declared
    twice accepts the union); the rest are routed as ``"*"``."""

    ranges: Mapping[str, tuple[VersionRange, ...]]

    def accepts(self, job: Job) -> bool:
        """Whether this worker may be handed ``job`` (ojs-job-versioning §8.2)."""
        declared = self.ranges.get(job.type)
        if declared is None:
            return True
        version = job.extra.get("version")
        return any(declared_range.includes(version) for declared_range in declared)

    def to_wire(self) -> list[dict[str, str]]:
        return [
            {"type": job_type, "versions": declared.text}
            for job_type, ranges in self.ranges.items()
            for declared in ranges
        ]


def version_routes(declared: Iterable[tuple[str, VersionRange]]) -> VersionRoutes | None:
    """The routes of ``(type, range)`` pairs; ``None`` if none narrows any type (every
    job may go to the worker: no check at claim)."""
    ranges: dict[str, tuple[VersionRange, ...]] = {}
    for job_type, declared_range in declared:
        ranges[job_type] = (*ranges.get(job_type, ()), declared_range)
    if all(ANY in each for each in ranges.values()):
        return None
    return VersionRoutes(ranges)


def routes_of(versions: Mapping[str, str] | None) -> VersionRoutes | None:
    """Routes from ``{type: range}`` (an embedded worker group's, its job definitions'),
    each range checked (400 with the type in the field name)."""
    if not versions:
        return None
    return version_routes(
        (job_type, parse_version_range(text, f"versions[{job_type}]"))
        for job_type, text in versions.items()
    )


def parse_handlers(value: object, field: str = "handlers") -> VersionRoutes | None:
    """A worker's ``handlers`` declaration (ojs-job-versioning §8.1): an array of
    ``{"type": ..., "versions": ...}`` (``versions`` defaults to ``"*"``); a 400 naming
    the item at fault otherwise. ``None`` if it narrows no type."""
    if not isinstance(value, list) or len(value) > MAX_HANDLERS:
        raise InvalidRequest(
            f"'{field}' must be an array of at most {MAX_HANDLERS} objects "
            '{"type": ..., "versions": ...}.',
            details={"field": field},
        )
    declared: list[tuple[str, VersionRange]] = []
    for index, item in enumerate(value):
        where = f"{field}[{index}]"
        if not isinstance(item, dict):
            raise InvalidRequest(
                f'\'{where}\' must be an object {{"type": ..., "versions": ...}}.',
                details={"field": where},
            )
        declared.append(_handler(item, where))
    return version_routes(declared)


def _handler(item: dict[str, Any], where: str) -> tuple[str, VersionRange]:
    job_type = item.get("type")
    if not isinstance(job_type, str) or not job_type:
        raise InvalidRequest(
            f"'{where}.type' is required: the job type.", details={"field": f"{where}.type"}
        )
    name, typed_version = split_type(job_type)
    if typed_version is not None:
        raise InvalidRequest(
            f"'{where}.type' must be a job type without '@version': declare the versions "
            "in 'versions'.",
            details={"field": f"{where}.type", "received": job_type},
        )
    versions = item.get("versions", "*")
    return name, parse_version_range(versions, f"{where}.versions")


__all__ = [
    "ANY",
    "VersionRange",
    "VersionRoutes",
    "parse_handlers",
    "parse_version_range",
    "routes_of",
    "version_routes",
]
