"""Job versions (ojs-job-versioning §5, ojs-schema-registry §6): parsing and ordering.

A version is what a producer stamps on a job (``"version": 2`` or ``"2.0"``, or
``"type@2.0"``) and what a schema is registered under (``/admin/schemas/{type}/1``,
``"2.0.0"``). The documents disagree on the form (``major.minor`` in job versioning,
``major.minor.patch`` SemVer in the schema registry) and the conformance suites use bare
integers, so every form is accepted: one to three dot-separated numbers, with an optional
SemVer pre-release and build suffix. Missing parts count as ``0``, so ``2``, ``"2.0"`` and
``"2.0.0"`` are the same version (:func:`version_key`); order is SemVer precedence.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import total_ordering

from .errors import InvalidRequest

_VERSION = re.compile(
    r"^(0|[1-9]\d*)(?:\.(0|[1-9]\d*))?(?:\.(0|[1-9]\d*))?"
    r"(?:-([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?$"
)
MAX_VERSION_LENGTH = 64

Version = int | str
"""A version as the client wrote it: a non-negative integer or a version string."""


@total_ordering
@dataclass(frozen=True, slots=True)
class ParsedVersion:
    """A version's precedence: numbers first, then pre-release (a release outranks its
    pre-releases); build metadata is ignored (SemVer 2.0.0 §10, §11)."""

    numbers: tuple[int, int, int]
    prerelease: tuple[int | str, ...] = ()

    @property
    def key(self) -> str:
        """The canonical text, the same for every spelling of this version."""
        text = ".".join(map(str, self.numbers))
        if self.prerelease:
            text += "-" + ".".join(map(str, self.prerelease))
        return text

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, ParsedVersion):
            return NotImplemented
        if self.numbers != other.numbers:
            return self.numbers < other.numbers
        if not self.prerelease or not other.prerelease:
            return bool(self.prerelease)  # the pre-release comes first
        for mine, theirs in zip(self.prerelease, other.prerelease, strict=False):
            if mine == theirs:
                continue
            if isinstance(mine, int) and isinstance(theirs, int):
                return mine < theirs
            if isinstance(mine, int) != isinstance(theirs, int):
                return isinstance(mine, int)  # numeric identifiers rank lower
            return str(mine) < str(theirs)
        return len(self.prerelease) < len(other.prerelease)


def parse_version(value: object, field: str = "version") -> ParsedVersion:
    """``value`` as a version, or a 400 naming ``field``."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return ParsedVersion((value, 0, 0))
    match = (
        _VERSION.fullmatch(value)
        if isinstance(value, str) and len(value) <= MAX_VERSION_LENGTH
        else None
    )
    if match is None:
        raise InvalidRequest(
            f"'{field}' must be a non-negative integer or a version such as '2.0' or '2.0.0'.",
            details={"field": field, "received": value if isinstance(value, str | int) else None},
        )
    major, minor, patch, pre = match.groups()
    prerelease: tuple[int | str, ...] = ()
    if pre:
        prerelease = tuple(int(part) if part.isdigit() else part for part in pre.split("."))
    return ParsedVersion((int(major), int(minor or 0), int(patch or 0)), prerelease)


def version_from_path(text: str) -> Version:
    """A version from a URL path segment: a bare number becomes an integer, as the
    conformance suites expect it back (``PUT …/schemas/email.send/1`` -> ``"version": 1``)."""
    parse_version(text)
    return int(text) if text.isdigit() else text


def version_key(value: object, field: str = "version") -> str:
    """The canonical text of the version ``value`` (400 if it is none)."""
    return parse_version(value, field).key


def split_type(job_type: str) -> tuple[str, str | None]:
    """``"invoice.generate@2.0"`` -> ``("invoice.generate", "2.0")`` (ojs-job-versioning
    §5.3); a type without ``@`` comes back whole, with ``None``."""
    name, at, version = job_type.partition("@")
    return (name, version) if at else (job_type, None)


__all__ = [
    "ParsedVersion",
    "Version",
    "parse_version",
    "split_type",
    "version_from_path",
    "version_key",
]
