"""Backends behind one protocol (:class:`Backend`); :func:`create_backend` picks one by name."""

from __future__ import annotations

from typing import Any

from ..core import InvalidRequest
from .base import Backend, Deduplicated, EventFilter, timers_of
from .memory import MemoryBackend
from .sqlite import SqliteBackend

BACKENDS = ("memory", "sqlite", "redis")


def create_backend(name: str, **options: Any) -> Backend:
    """A backend by its ``--backend`` name; options are backend-specific (URLs, paths)."""
    if name == "memory":
        return MemoryBackend()
    if name == "sqlite":
        return SqliteBackend(**options)
    if name == "redis":
        from .redis import RedisBackend  # imported on use: trio-asyncio patches asyncio

        return RedisBackend(**options)
    raise InvalidRequest(
        f"Unknown backend {name!r}; this build has: {', '.join(BACKENDS)}.",
        details={"backend": name, "available": list(BACKENDS)},
    )


__all__ = [
    "BACKENDS",
    "Backend",
    "Deduplicated",
    "EventFilter",
    "MemoryBackend",
    "SqliteBackend",
    "create_backend",
    "timers_of",
]
