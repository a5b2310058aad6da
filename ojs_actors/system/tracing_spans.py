"""The spans of a traced process (ojs-distributed-tracing), with the OpenTelemetry SDK.

Imported only once tracing is on (:func:`.tracing.start`). The spans:

* ``POST /ojs/v1/jobs`` (``SERVER``): one per HTTP request, named by method and route
  template, child of the request's ``traceparent`` header if it has one;
* ``{queue} enqueue`` / ``{queue} enqueue_batch`` (``PRODUCER``): storing jobs; its
  context is injected into each job's ``meta`` (``traceparent``, ``tracestate``,
  ``baggage``) unless the job came with a ``meta.traceparent`` of its own, which is kept
  as it is (§6.2) and linked instead;
* ``{queue} fetch`` (``CONSUMER``): a claim, with a link to each claimed job's context;
* ``{queue} process`` (``CONSUMER``): a worker group's run of one job, current while
  the handler runs (so the handler's own spans are its children), with a *link* to the
  context in the job's ``meta``, not a parent (§6.1: enqueue and run may be hours apart);
* ``ojs.ack`` / ``ojs.nack`` (``CLIENT``): storing an outcome; in a worker group a child
  of the process span, from the handler's end until the batch holding it is stored.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from opentelemetry import context, propagate, trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from ..core import Job, OJSError

SCOPE = "ojs_actors"
_CONTEXT_KEYS = ("traceparent", "tracestate", "baggage")
_TRACE_CONTEXT = TraceContextTextMapPropagator()
_HEADERS = frozenset(key.encode() for key in _CONTEXT_KEYS)


class JobTracer:
    def __init__(self, provider: TracerProvider) -> None:
        self.provider = provider
        self._tracer = provider.get_tracer(SCOPE)
        self._settling: dict[int, Span] = {}
        """A worker group's ack/nack spans, by ``id()`` of the job whose outcome waits
        in its settler (the same object until the outcome is stored)."""

    @classmethod
    def create(cls, endpoint: str, resource: Mapping[str, str]) -> JobTracer:
        """Spans batched to the OTLP/HTTP traces URL ``endpoint`` (the exporter's blocking
        posts run in the batch processor's own thread)."""
        provider = TracerProvider(resource=Resource.create(dict(resource)))
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint)))
        return cls(provider)

    def shutdown(self) -> None:
        for span in self._settling.values():
            span.end()
        self._settling.clear()
        self.provider.shutdown()

    # -- HTTP -------------------------------------------------------------------------

    @contextmanager
    def http_request(
        self, method: str, path: str, headers: Iterable[tuple[bytes, bytes]]
    ) -> Iterator[HttpSpan]:
        """A ``SERVER`` span, current for the block, continuing the caller's trace."""
        carrier = {
            name.decode("latin1"): value.decode("latin1")
            for name, value in headers
            if name.lower() in _HEADERS
        }
        span = self._tracer.start_span(
            method,
            context=propagate.extract(carrier) if carrier else None,
            kind=SpanKind.SERVER,
            attributes={"http.request.method": method, "url.path": path},
        )
        token = context.attach(trace.set_span_in_context(span))
        try:
            yield HttpSpan(span, method)
        except BaseException as error:
            _fail(span, error)
            raise
        finally:
            context.detach(token)
            span.end()

    # -- producers --------------------------------------------------------------------

    @contextmanager
    def enqueue(self, jobs: Sequence[Job], *, batch: bool = False) -> Iterator[None]:
        """A ``PRODUCER`` span around storing ``jobs``; their ``meta`` carries its context."""
        operation = "enqueue_batch" if batch else "enqueue"
        if len(jobs) == 1:
            name = f"{jobs[0].queue} {operation}"
            attributes = _job_attributes(jobs[0], "send")
        else:
            queues = {job.queue for job in jobs}
            name = f"{next(iter(queues))} {operation}" if len(queues) == 1 else f"ojs.{operation}"
            attributes = _batch(jobs, "send")
        links = [link for job in jobs if "traceparent" in job.meta and (link := _link_to(job.meta))]
        span = self._tracer.start_span(
            name, kind=SpanKind.PRODUCER, attributes=attributes, links=links
        )
        carrier: dict[str, str] = {}
        propagate.inject(carrier, context=trace.set_span_in_context(span))
        for job in jobs:
            if "traceparent" not in job.meta:
                job.meta = {**job.meta, **carrier}  # a new dict: the caller's stays as it was
        try:
            yield
        except BaseException as error:
            _fail(span, error)
            raise
        finally:
            span.end()

    # -- workers ----------------------------------------------------------------------

    @contextmanager
    def claim(self, queues: Sequence[str], worker_id: str | None) -> Iterator[ClaimSpan]:
        """A ``CONSUMER`` span around a claim from ``queues``."""
        attributes: dict[str, Any] = {
            "messaging.system": "ojs",
            "messaging.operation.type": "receive",
            "ojs.job.queue": queues[0] if queues else "",
        }
        if len(queues) > 1:
            attributes["ojs.fetch.queues"] = list(queues)
        if worker_id is not None:
            attributes["ojs.worker.id"] = worker_id
        name = f"{queues[0]} fetch" if len(queues) == 1 else "ojs.fetch"
        span = self._tracer.start_span(name, kind=SpanKind.CONSUMER, attributes=attributes)
        with _ending(span):
            yield ClaimSpan(span)

    def handed(self, jobs: Sequence[Job], worker_id: str) -> None:
        """Jobs a QueueActor claimed for an idle worker group as it stored them."""
        with self.claim([jobs[0].queue], worker_id) as span:
            span.claimed(jobs)

    @contextmanager
    def settle(self, job_id: str, verb: str) -> Iterator[SettleSpan]:
        """An ``ojs.ack`` / ``ojs.nack`` span around storing one outcome."""
        attributes = {"messaging.system": "ojs", "ojs.job.id": job_id}
        span = self._tracer.start_span(f"ojs.{verb}", kind=SpanKind.CLIENT, attributes=attributes)
        with _ending(span):
            yield SettleSpan(span)

    def process(self, job: Job, worker_id: str) -> ProcessSpan:
        """A ``CONSUMER`` span for a worker group's run of ``job``, linked to its enqueue."""
        attributes = _job_attributes(job, "process")
        attributes["ojs.job.attempt"] = job.attempt
        attributes["ojs.worker.id"] = worker_id
        link = _link_to(job.meta)
        span = self._tracer.start_span(
            f"{job.queue} process",
            context=context.Context(),  # a root: the enqueue is linked, not a parent
            kind=SpanKind.CONSUMER,
            attributes=attributes,
            links=[link] if link is not None else None,
        )
        return ProcessSpan(self, span, job)

    def settled(
        self,
        batch: Sequence[tuple[Job, object]],
        answers: Sequence[Job | OJSError],
        again: Sequence[tuple[Job, object]],
    ) -> None:
        """A worker group's settler stored ``batch`` (``again``: to be tried once more)."""
        settling = self._settling
        if not settling:
            return
        retried = {id(job) for job, _ in again}
        for (job, _), answer in zip(batch, answers, strict=True):
            if id(job) in retried or (span := settling.pop(id(job), None)) is None:
                continue
            if isinstance(answer, OJSError):
                _fail(span, answer)
            else:
                span.set_attribute("ojs.job.state", answer.state.value)
            span.end()

    def _settling_span(self, parent: Span, job: Job, failed: bool) -> None:
        span = self._tracer.start_span(
            "ojs.nack" if failed else "ojs.ack",
            context=trace.set_span_in_context(parent),
            kind=SpanKind.CLIENT,
            attributes=_job_attributes(job, "settle"),
        )
        previous = self._settling.pop(id(job), None)
        if previous is not None:
            previous.end()
        self._settling[id(job)] = span


class HttpSpan:
    __slots__ = ("_method", "_span")

    def __init__(self, span: Span, method: str) -> None:
        self._span = span
        self._method = method

    def answered(self, status: int, route: str | None, request_id: str | None) -> None:
        span = self._span
        if route is not None:
            span.update_name(f"{self._method} {route}")
            span.set_attribute("http.route", route)
        if status:
            span.set_attribute("http.response.status_code", status)
            if status >= 500:
                span.set_status(Status(StatusCode.ERROR))
                span.set_attribute("error.type", str(status))
        if request_id is not None:
            span.set_attribute("ojs.request_id", request_id)


class ClaimSpan:
    __slots__ = ("_span",)

    def __init__(self, span: Span) -> None:
        self._span = span

    def claimed(self, jobs: Sequence[Job]) -> None:
        span = self._span
        span.set_attribute("messaging.batch.message_count", len(jobs))
        if len(jobs) == 1:
            span.set_attributes(_job_attributes(jobs[0], "receive"))
        for job in jobs:
            link = _link_to(job.meta)
            if link is not None:
                span.add_link(link.context, {"ojs.job.id": job.id})


class SettleSpan:
    __slots__ = ("_span",)

    def __init__(self, span: Span) -> None:
        self._span = span

    def stored(self, job: Job) -> None:
        span = self._span
        span.set_attributes(_job_attributes(job, "settle"))
        span.set_attribute("ojs.job.state", job.state.value)
        link = _link_to(job.meta)
        if link is not None:
            span.add_link(link.context)


class ProcessSpan:
    __slots__ = ("_failed", "_job", "_span", "_tracer")

    def __init__(self, tracer: JobTracer, span: Span, job: Job) -> None:
        self._tracer = tracer
        self._span = span
        self._job = job
        self._failed = False

    async def run(self, handler: Callable[[Job], Awaitable[Any]]) -> Any:
        """``handler(job)`` with this span current; its exception recorded and raised."""
        span = self._span
        try:
            with trace.use_span(span, record_exception=False, set_status_on_exception=False):
                return await handler(self._job)
        except Exception as error:
            self._failed = True
            _fail(span, error, self._job.attempt)
            raise
        except BaseException as error:  # cancelled: the run ends here, without an outcome
            _fail(span, error, self._job.attempt)
            span.end()
            raise

    def finished(self) -> None:
        """The handler's outcome is handed to the settler: an ack/nack span begins."""
        self._tracer._settling_span(self._span, self._job, self._failed)
        if not self._failed:
            self._span.set_status(Status(StatusCode.OK))
        self._span.end()


@contextmanager
def _ending(span: Span) -> Iterator[None]:
    """End ``span`` after the block; an exception out of it is recorded on it."""
    try:
        yield
    except BaseException as error:
        _fail(span, error)
        raise
    finally:
        span.end()


def _fail(span: Span, error: BaseException, attempt: int | None = None) -> None:
    span.record_exception(error)
    kind = type(error).__name__
    message = str(error)
    span.set_status(Status(StatusCode.ERROR, message or kind))
    span.set_attribute("error.type", error.code if isinstance(error, OJSError) else kind)
    span.set_attribute("error.message", message)
    if attempt is not None:
        span.set_attribute("ojs.job.error.attempt", attempt)


def _job_attributes(job: Job, operation: str) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "messaging.system": "ojs",
        "messaging.operation.type": operation,
        "ojs.job.id": job.id,
        "ojs.job.type": job.type,
        "ojs.job.queue": job.queue,
        "ojs.job.priority": job.priority,
    }
    workflow = job.extra.get("workflow_id")
    if isinstance(workflow, str):
        attributes["ojs.workflow.id"] = workflow
    return attributes


def _batch(jobs: Sequence[Job], operation: str) -> dict[str, Any]:
    queues = sorted({job.queue for job in jobs})
    return {
        "messaging.system": "ojs",
        "messaging.operation.type": operation,
        "messaging.batch.message_count": len(jobs),
        "ojs.job.queue": queues[0] if len(queues) == 1 else ",".join(queues),
    }


def _link_to(meta: dict[str, Any]) -> Link | None:
    """A link to the trace context in a job's ``meta``, if it holds a valid one."""
    traceparent = meta.get("traceparent")
    if not isinstance(traceparent, str):
        return None
    carrier = {"traceparent": traceparent}
    if isinstance(state := meta.get("tracestate"), str):
        carrier["tracestate"] = state
    linked = trace.get_current_span(_TRACE_CONTEXT.extract(carrier)).get_span_context()
    return Link(linked) if linked.is_valid else None


__all__ = ["ClaimSpan", "HttpSpan", "JobTracer", "ProcessSpan", "SettleSpan"]
