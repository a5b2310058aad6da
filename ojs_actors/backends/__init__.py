"""Backends behind one protocol (:class:`Backend`), registered by name in
:mod:`~ojs_actors.backends.registry`: :func:`create_backend` makes one,
:func:`open_backend` also starts it for a block (opening the asyncio bridge if it
needs one) and closes it after."""

from __future__ import annotations

from .base import (
    EVERY_CAPABILITY,
    EVERY_EXTENSION,
    EXPERIMENTAL_EXTENSIONS,
    Backend,
    Capabilities,
    DeadLetter,
    Deduplicated,
    EventFilter,
    EventLog,
    EventSink,
    InsertAndClaim,
    JobDeletion,
    JobListing,
    JobQuery,
    JobStore,
    Lifecycle,
    OutboxBacklog,
    RateLimit,
    ReadyNotices,
    ReadyQueue,
    Snapshots,
    Timers,
    UpdateAndClaim,
    timers_of,
)
from .memory import MemoryBackend
from .registry import BUILTIN, REGISTRY, MissingExtra, create_backend, open_backend
from .sqlite import SqliteBackend

BACKENDS = tuple(entry.name for entry in BUILTIN)
"""The backends of this package (``REGISTRY.names()`` adds third-party ones)."""


__all__ = [
    "BACKENDS",
    "EVERY_CAPABILITY",
    "EVERY_EXTENSION",
    "EXPERIMENTAL_EXTENSIONS",
    "REGISTRY",
    "Backend",
    "Capabilities",
    "DeadLetter",
    "Deduplicated",
    "EventFilter",
    "EventLog",
    "EventSink",
    "InsertAndClaim",
    "JobDeletion",
    "JobListing",
    "JobQuery",
    "JobStore",
    "Lifecycle",
    "OutboxBacklog",
    "RateLimit",
    "ReadyNotices",
    "ReadyQueue",
    "Snapshots",
    "Timers",
    "UpdateAndClaim",
    "MemoryBackend",
    "MissingExtra",
    "SqliteBackend",
    "create_backend",
    "open_backend",
    "timers_of",
]
