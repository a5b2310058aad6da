"""OpenTelemetry tracing: when it is on, and switching it on and off for the process.

Off by default. Nothing here imports OpenTelemetry: the job path asks only
``tracing.current is not None``, so a process that never turns tracing on never loads
the SDK and pays one attribute lookup per step. Once :func:`start` has run,
:data:`current` is the :class:`~.tracing_spans.JobTracer` that opens the spans
(see there for what they are and how the trace context travels in a job's ``meta``).

The settings come from the environment (:meth:`TracingSettings.from_env`):

* ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) set: on;
* ``OJS_OTEL_ENDPOINT`` set, or ``OJS_OTEL_ENABLED`` true: on (``OJS_OTEL_ENABLED``
  false turns it off whatever else is set, as does ``OTEL_SDK_DISABLED`` true).

The rest of the standard ``OTEL_*`` variables (``OTEL_SERVICE_NAME``,
``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_TRACES_SAMPLER``, ``OTEL_BSP_*``,
``OTEL_EXPORTER_OTLP_HEADERS`` and ``_TIMEOUT``, ``OTEL_PROPAGATORS``) are read by the
SDK itself.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import trio

from ..backends import MissingExtra

if TYPE_CHECKING:
    from .tracing_spans import JobTracer

DEFAULT_ENDPOINT = "http://localhost:4318"
"""Where an OTLP/HTTP collector listens by default."""
TRACES_PATH = "/v1/traces"
DEFAULT_SERVICE_NAME = "ojs-actors"

current: JobTracer | None = None
"""The process's tracer while tracing is on; ``None`` (the default) while it is off."""

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


@dataclass(frozen=True, slots=True)
class TracingSettings:
    endpoint: str | None = None
    """The OTLP/HTTP traces URL spans are posted to; ``None``: tracing off."""
    service_name: str = DEFAULT_SERVICE_NAME
    resource: Mapping[str, str] = field(default_factory=dict)
    """Further resource attributes (``ojs.backend.type``, set by ``serve``)."""

    @property
    def enabled(self) -> bool:
        return self.endpoint is not None

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str] | None = None,
        *,
        endpoint: str | None = None,
        backend: str | None = None,
    ) -> TracingSettings:
        """The settings the environment asks for; ``endpoint`` (a command-line option)
        stands in for ``OJS_OTEL_ENDPOINT``; ``backend``: the ``ojs.backend.type``."""
        env = os.environ if environ is None else environ
        service = env.get("OTEL_SERVICE_NAME", "").strip() or DEFAULT_SERVICE_NAME
        resource = {} if backend is None else {"ojs.backend.type": backend}
        enabled = _flag(env.get("OJS_OTEL_ENABLED"))
        if enabled is False or _flag(env.get("OTEL_SDK_DISABLED")):
            return cls(service_name=service)
        ours = (endpoint or env.get("OJS_OTEL_ENDPOINT", "")).strip()
        traces = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
        base = env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
        if ours:
            url = traces_url(ours)
        elif traces:
            url = traces  # the signal's own variable is the whole URL, as the SDK reads it
        elif base:
            url = traces_url(base)
        elif enabled:
            url = traces_url(DEFAULT_ENDPOINT)
        else:
            return cls(service_name=service)
        return cls(endpoint=url, service_name=service, resource=resource)


def traces_url(endpoint: str) -> str:
    """An OTLP/HTTP base endpoint (``http://collector:4318``, or ``collector:4318`` as the
    seed servers take it) as its traces URL; one ending in ``/v1/traces`` as it is."""
    url = endpoint if "://" in endpoint else f"http://{endpoint}"
    url = url.rstrip("/")
    return url if url.endswith(TRACES_PATH) else url + TRACES_PATH


def _flag(text: str | None) -> bool | None:
    value = (text or "").strip().lower()
    return True if value in _TRUE else False if value in _FALSE else None


def start(settings: TracingSettings) -> bool:
    """Turn tracing on for this process as ``settings`` say (a batch span processor
    posting to the OTLP/HTTP endpoint from its own thread). ``False`` if there was
    nothing to do: the settings say off, or tracing is on already. :class:`MissingExtra`
    if the ``tracing`` extra is not installed."""
    global current
    if not settings.enabled or current is not None:
        return False
    try:
        from .tracing_spans import JobTracer  # the SDK loads here, and only here
    except ModuleNotFoundError as error:
        if not (error.name or "").startswith("opentelemetry"):
            raise
        raise MissingExtra(
            f"Tracing is on (an OTLP endpoint is set) but {error.name} is not installed: "
            "pip install 'ojs-actors[tracing]', or unset the endpoint."
        ) from None
    assert settings.endpoint is not None
    resource = {"service.name": settings.service_name, **settings.resource}
    current = JobTracer.create(settings.endpoint, resource)
    return True


def stop() -> None:
    """Turn tracing off: export the spans still buffered (blocking, within the exporter's
    timeout), then shut the exporter down."""
    global current
    tracer, current = current, None
    if tracer is not None:
        tracer.shutdown()


@contextmanager
def tracing(settings: TracingSettings) -> Iterator[None]:
    """Tracing on for the block, if ``settings`` say so (for synchronous callers, around
    ``trio.run``)."""
    started = start(settings)
    try:
        yield
    finally:
        if started:
            stop()


@asynccontextmanager
async def open_tracing(settings: TracingSettings) -> AsyncIterator[None]:
    """Tracing on for the block, if ``settings`` say so; the final flush runs in a
    thread, so the event loop keeps serving meanwhile. Open it before the system, so
    its spans cover the whole of the system's life."""
    started = start(settings)
    try:
        yield
    finally:
        if started:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(stop)


__all__ = [
    "DEFAULT_ENDPOINT", "TracingSettings", "current", "open_tracing", "start", "stop",
    "traces_url", "tracing",
]  # fmt: skip
