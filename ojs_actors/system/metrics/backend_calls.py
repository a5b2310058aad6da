"""Backend call latency and errors, measured in one place: a thin view of the backend that
the System's parts call instead of the backend itself.

:func:`measured` builds the view for one backend: a class of its own with one method per
protocol method the backend has (so the ``isinstance`` checks on the optional parts,
``EventSink``, ``UpdateAndClaim`` and the others, answer as for the backend), each timing
the call with ``time.perf_counter`` into a histogram child looked up once. Everything
else (attributes, backend-specific methods) is the backend's own, read through.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from time import perf_counter
from typing import Any, cast

from ...backends import Backend
from ...backends.base import (
    DeadLetter,
    EventLog,
    EventSink,
    InsertAndClaim,
    JobDeletion,
    JobListing,
    JobStore,
    Lifecycle,
    OutboxBacklog,
    ReadyNotices,
    ReadyQueue,
    Snapshots,
    Timers,
    UpdateAndClaim,
)
from ...core import BackendUnavailable
from .families import BACKEND_SECONDS_BUCKETS
from .instruments import Instruments

PARTS: tuple[type, ...] = (
    Lifecycle, JobStore, ReadyQueue, Timers, DeadLetter, Snapshots, EventLog, ReadyNotices,
    EventSink, OutboxBacklog, InsertAndClaim, UpdateAndClaim, JobListing, JobDeletion,
)  # fmt: skip
UNMEASURED = frozenset({"start", "close", "watch_ready"})
"""Forwarded untimed: the backend's lifetime (``open_backend``'s), and a watch that runs
until cancelled."""


class BackendCalls:
    def __init__(self, instruments: Instruments) -> None:
        self.duration = instruments.histogram(
            "ojs_backend_call_duration_seconds",
            "Backend protocol calls made by this process, by operation.",
            ["operation"],
            BACKEND_SECONDS_BUCKETS,
        )
        self.errors = instruments.counter(
            "ojs_backend_call_errors",
            "Backend calls that raised: error=unavailable (the store is away, HTTP 503) "
            "or error=other.",
            ["operation", "error"],
        )


class _View:
    """Base of the per-backend view classes :func:`measured` builds."""

    def __init__(self, inner: Backend) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def __repr__(self) -> str:
        return f"<measured {self._inner!r}>"


def measured(backend: Backend, calls: BackendCalls) -> Backend:
    """``backend`` with each protocol call timed into ``calls``."""
    methods, attributes = _protocol_members()
    namespace: dict[str, Any] = {}
    for name in sorted(methods):
        if not callable(getattr(backend, name, None)):
            continue  # an optional part it lacks: the view lacks it too
        namespace[name] = _forward(name) if name in UNMEASURED else _timed(name, calls)
    for name in attributes:
        if hasattr(backend, name):
            namespace[name] = _read_through(name)
    view_class = type(f"Measured{type(backend).__name__}", (_View,), namespace)
    return cast(Backend, view_class(backend))


def _protocol_members() -> tuple[set[str], set[str]]:
    """The protocols' method names and attribute names."""
    methods: set[str] = set()
    attributes: set[str] = set()
    for part in PARTS:
        for name, value in vars(part).items():
            if not name.startswith("_") and inspect.iscoroutinefunction(value):
                methods.add(name)
        attributes.update(inspect.get_annotations(part))
    return methods, attributes - methods


def _read_through(name: str) -> property:
    def read(view: _View) -> Any:
        return getattr(view._inner, name)

    return property(read)


def _forward(name: str) -> Callable[..., Awaitable[Any]]:
    async def call(self: _View, *args: Any, **kwargs: Any) -> Any:
        return await getattr(self._inner, name)(*args, **kwargs)

    call.__name__ = name
    return call


def _timed(name: str, calls: BackendCalls) -> Callable[..., Awaitable[Any]]:
    duration = calls.duration.child(name)
    unavailable = calls.errors.child(name, "unavailable")
    other = calls.errors.child(name, "other")

    async def call(self: _View, *args: Any, **kwargs: Any) -> Any:
        started = perf_counter()
        try:
            # looked up per call: a test may replace a method on the backend meanwhile
            return await getattr(self._inner, name)(*args, **kwargs)
        except BackendUnavailable:
            unavailable.inc()
            raise
        except Exception:
            other.inc()
            raise
        finally:
            duration.observe(perf_counter() - started)

    call.__name__ = name
    return call


__all__ = ["BackendCalls", "measured"]
