"""A backend's settings: :class:`BackendOption` (one keyword of its factory, one CLI flag,
one environment variable) and the parsers of their texts. The registry
(:mod:`.registry`) collects them per backend; a backend package may declare its own
tuple of options here-from without importing the registry (``aws-setup`` shares the
AWS backend's)."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off", "")


def parse_bool(text: str) -> bool:
    """An environment flag: ``1/true/yes/on`` or ``0/false/no/off`` (any case)."""
    value = text.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"expected true or false, not {text!r}")


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"expected a whole number of at least 1, not {text!r}")
    return value


@dataclass(frozen=True, slots=True)
class BackendOption:
    """One setting of a backend: a keyword of its factory, a CLI flag, an environment
    variable (read as the flag's default) and its own default."""

    name: str
    """The factory's keyword argument."""
    flag: str
    env: str
    default: Any
    help: str
    type: Callable[[str], Any] = str
    """Parses the flag's and the variable's text; ``bool`` makes an on/off flag."""
    choices: tuple[str, ...] = ()

    @property
    def dest(self) -> str:
        """The attribute argparse stores the flag's value in."""
        return self.flag.lstrip("-").replace("-", "_")

    def parse(self, text: str) -> Any:
        return parse_bool(text) if self.type is bool else self.type(text)

    def from_env(self, environ: Mapping[str, str]) -> Any:
        """The variable's value if set, else the default."""
        text = environ.get(self.env)
        if text is None:
            return self.default
        try:
            return self.parse(text)
        except ValueError as error:
            raise ValueError(f"environment variable {self.env}: {error}") from error

    def add_to(self, parser: argparse.ArgumentParser, environ: Mapping[str, str]) -> None:
        shown = f"env {self.env}; default {self.default}"
        if self.type is bool:
            parser.add_argument(
                self.flag,
                dest=self.dest,
                action=argparse.BooleanOptionalAction,
                default=self.from_env(environ),
                help=f"{self.help} ({shown})",
            )
            return
        parser.add_argument(
            self.flag,
            dest=self.dest,
            type=self.parse,
            default=self.from_env(environ),
            choices=self.choices or None,
            help=f"{self.help} ({shown})",
        )

    def same_setting_as(self, other: BackendOption) -> bool:
        """Two backends may share a flag (Kafka's Redis state store and Redis both read
        ``--redis-url``) only if it means the same for both."""
        return (self.env, self.default, self.type, self.choices) == (
            other.env,
            other.default,
            other.type,
            other.choices,
        )


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise ValueError(f"expected a positive number of seconds, not {text!r}")
    return value


def argparse_type(parse: Callable[[str], object]) -> Callable[[str], object]:
    """``parse`` as an argparse ``type``: its ``ValueError`` becomes argparse's own message
    (the text of the error, not "invalid parse value")."""

    def checked(text: str) -> object:
        try:
            return parse(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    return checked


__all__ = ["BackendOption", "argparse_type", "parse_bool", "positive_float", "positive_int"]
