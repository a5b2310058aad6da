"""OpenTelemetry tracing, end to end: spans posted over OTLP/HTTP to a real receiver on
loopback (decoded with ``opentelemetry.proto``), the trace context carried in job ``meta``
from the enqueue to whichever worker runs the job, and nothing at all while it is off."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from serving import REPO, OjsServer

from ojs_actors import Job, open_system
from ojs_actors.http import HttpSettings, create_app
from ojs_actors.system import tracing
from ojs_actors.system.tracing import TracingSettings, open_tracing, traces_url
from ojs_actors.testing.otlp import OtlpHttpReceiver

CLIENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"
CLIENT_TRACEPARENT = f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"
WAIT_S = 30.0

# opentelemetry.proto's Span.SpanKind
SERVER, CLIENT, PRODUCER, CONSUMER = 2, 3, 4, 5
STATUS_OK, STATUS_ERROR = 1, 2


# -- an OTLP/HTTP receiver ---------------------------------------------------------------


@dataclass
class ReceivedSpan:
    name: str
    trace_id: str
    span_id: str
    parent_span_id: str
    kind: int
    attributes: dict[str, Any]
    links: list[tuple[str, str]]
    status: int
    resource: dict[str, Any]
    events: list[str] = field(default_factory=list)


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_value(item) for item in value.array_value.values]
    return getattr(value, kind) if kind else None


def _attributes(pairs: Any) -> dict[str, Any]:
    return {pair.key: _value(pair.value) for pair in pairs}


class OtlpReceiver:
    """Keeps every span exported to ``/v1/traces`` (:class:`OtlpHttpReceiver`), decoded."""

    def __init__(self) -> None:
        self.spans: list[ReceivedSpan] = []
        self.requests = 0
        self._lock = threading.Lock()
        self._receiver = OtlpHttpReceiver(self._take)
        self.endpoint = self._receiver.url

    def _take(self, source: str, request: ExportTraceServiceRequest) -> None:
        if source:  # exported elsewhere than this receiver's own endpoint
            return
        spans = []
        for resource_spans in request.resource_spans:
            resource = _attributes(resource_spans.resource.attributes)
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    spans.append(
                        ReceivedSpan(
                            name=span.name,
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent_span_id=span.parent_span_id.hex(),
                            kind=span.kind,
                            attributes=_attributes(span.attributes),
                            links=[
                                (link.trace_id.hex(), link.span_id.hex()) for link in span.links
                            ],
                            status=span.status.code,
                            resource=resource,
                            events=[event.name for event in span.events],
                        )
                    )
        with self._lock:
            self.requests += 1
            self.spans.extend(spans)

    def named(self, name: str) -> list[ReceivedSpan]:
        with self._lock:
            return [span for span in self.spans if span.name == name]

    def one(self, name: str) -> ReceivedSpan:
        found = self.named(name)
        assert len(found) == 1, (name, sorted(span.name for span in self.spans))
        return found[0]

    def __enter__(self) -> OtlpReceiver:
        self._receiver.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._receiver.__exit__(*exc)


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as running:
        yield running


def _traceparent(span: ReceivedSpan) -> str:
    """``span``'s context as a ``traceparent`` holds it, less the flags (sampled, and
    random trace id where the SDK sets that)."""
    return f"00-{span.trace_id}-{span.span_id}"


def _without_otel(env: dict[str, str]) -> dict[str, str]:
    return {key: value for key, value in env.items() if not key.startswith(("OTEL_", "OJS_OTEL"))}


# -- settings ------------------------------------------------------------------------------


def test_tracing_is_off_unless_an_endpoint_or_the_switch_says_on() -> None:
    assert not TracingSettings.from_env({}).enabled
    on = TracingSettings.from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"})
    assert on.endpoint == "http://collector:4318/v1/traces"
    signal = {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/custom"}
    assert TracingSettings.from_env(signal).endpoint == "http://collector:4318/custom"
    assert TracingSettings.from_env({"OJS_OTEL_ENABLED": "true"}).endpoint == (
        "http://localhost:4318/v1/traces"
    )
    seed = {"OJS_OTEL_ENABLED": "1", "OJS_OTEL_ENDPOINT": "collector:4318"}
    assert TracingSettings.from_env(seed).endpoint == "http://collector:4318/v1/traces"
    assert TracingSettings.from_env({}, endpoint="http://x:1/").endpoint == "http://x:1/v1/traces"
    for off in ({"OJS_OTEL_ENABLED": "false"}, {"OTEL_SDK_DISABLED": "true"}):
        assert not TracingSettings.from_env(
            {**off, "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c"}
        ).enabled
    named = TracingSettings.from_env(
        {"OJS_OTEL_ENABLED": "on", "OTEL_SERVICE_NAME": "jobs"}, backend="redis"
    )
    assert named.service_name == "jobs" and named.resource == {"ojs.backend.type": "redis"}
    assert traces_url("http://c:4318/v1/traces") == "http://c:4318/v1/traces"


# -- a server process, its HTTP workers ------------------------------------------------------


def test_a_served_job_s_spans_carry_one_trace_from_the_client_to_the_ack(
    receiver: OtlpReceiver, tmp_path: Path
) -> None:
    env = _without_otel(dict(os.environ)) | {
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "50",
    }
    server = OjsServer(["--backend", "memory"], tmp_path / "server.log", env=env)
    try:
        with httpx.Client(base_url=server.url, timeout=10) as http:
            enqueued = http.post(
                "/ojs/v1/jobs",
                json={"type": "email.send", "args": ["a@example.com"], "meta": {"user": 7}},
                headers={"traceparent": CLIENT_TRACEPARENT, "tracestate": "ojs=p:8"},
            )
            assert enqueued.status_code == 201, enqueued.text
            job = enqueued.json()["job"]
            fetched = http.post("/ojs/v1/workers/fetch", json={"queues": ["default"]})
            [claimed] = fetched.json()["jobs"]
            acked = http.post("/ojs/v1/workers/ack", json={"job_id": job["id"], "result": 1})
            assert acked.status_code == 200, acked.text
            assert http.get(f"/ojs/v1/jobs/{job['id']}").json()["job"]["state"] == "completed"
            assert http.get("/ojs/v1/no-such-thing").status_code == 404
    finally:
        server.stop()  # flushes what is buffered

    request = receiver.one("POST /ojs/v1/jobs")
    assert request.kind == SERVER
    assert (request.trace_id, request.parent_span_id) == (CLIENT_TRACE, CLIENT_SPAN)
    assert request.attributes["http.route"] == "/ojs/v1/jobs"
    assert request.attributes["http.response.status_code"] == 201
    assert request.attributes["ojs.request_id"]
    assert request.resource["service.name"] == "ojs-actors"
    assert request.resource["ojs.backend.type"] == "memory"

    enqueue = receiver.one("default enqueue")
    assert enqueue.kind == PRODUCER
    assert (enqueue.trace_id, enqueue.parent_span_id) == (CLIENT_TRACE, request.span_id)
    assert enqueue.attributes["ojs.job.id"] == job["id"]
    assert enqueue.attributes["ojs.job.type"] == "email.send"
    assert enqueue.attributes["messaging.system"] == "ojs"
    # the job carries the enqueue's context (and the client's tracestate), meta kept
    assert job["meta"]["traceparent"][:-3] == _traceparent(enqueue)
    assert job["meta"]["tracestate"] == "ojs=p:8"
    assert job["meta"]["user"] == 7
    assert claimed["meta"]["traceparent"][:-3] == _traceparent(enqueue)

    fetch = receiver.one("default fetch")
    assert fetch.kind == CONSUMER
    assert fetch.attributes["ojs.job.id"] == job["id"]
    assert fetch.links == [(CLIENT_TRACE, enqueue.span_id)]
    assert receiver.one("POST /ojs/v1/workers/fetch").span_id == fetch.parent_span_id

    ack = receiver.one("ojs.ack")
    assert ack.attributes["ojs.job.state"] == "completed"
    assert ack.links == [(CLIENT_TRACE, enqueue.span_id)]
    assert receiver.one("POST /ojs/v1/workers/ack").span_id == ack.parent_span_id

    info = receiver.one("GET /ojs/v1/jobs/<job_id>")
    assert info.attributes["url.path"] == f"/ojs/v1/jobs/{job['id']}"
    assert receiver.one("GET").attributes["http.response.status_code"] == 404


# -- in process, an embedded worker group -----------------------------------------------------


@pytest.mark.parametrize("direct_routes", [True, False], ids=["direct", "quart"])
async def test_a_worker_group_s_run_links_to_the_http_enqueue(
    receiver: OtlpReceiver, direct_routes: bool
) -> None:
    from opentelemetry import trace

    ran: list[tuple[Job, str]] = []
    done = trio.Event()

    async def send(job: Job) -> None:
        context = trace.get_current_span().get_span_context()
        ran.append((job, format(context.span_id, "016x")))
        done.set()

    bounced = trio.Event()

    async def explode(job: Job) -> None:
        bounced.set()
        raise ValueError("no such mailbox")

    settings = TracingSettings(endpoint=traces_url(receiver.endpoint))
    async with open_tracing(settings), open_system() as system:
        assert tracing.current is not None
        client = create_app(system, HttpSettings(direct_routes=direct_routes)).test_client()
        handlers = {"email.send": send, "email.bounce": explode}
        async with system.worker_group(["default"], handlers, worker_id="w-1"):
            answer = await client.post(
                "/ojs/v1/jobs",
                json={"type": "email.send", "args": []},
                headers={"traceparent": CLIENT_TRACEPARENT},
            )
            assert answer.status_code == 201
            job = (await answer.get_json())["job"]
            failing = await system.enqueue(
                {"type": "email.bounce", "args": [], "options": {"retry": {"max_attempts": 1}}}
            )
            with trio.fail_after(WAIT_S):
                await done.wait()
                await bounced.wait()
        assert (await system.info(job["id"])).state.value == "completed"  # stored on leaving
        assert (await system.info(failing.id)).state.value == "discarded"
    assert tracing.current is None

    request = receiver.one("POST /ojs/v1/jobs")
    assert request.trace_id == CLIENT_TRACE
    enqueue = receiver.named("default enqueue")
    http_enqueue = next(span for span in enqueue if span.parent_span_id == request.span_id)
    assert job["meta"]["traceparent"][:-3] == _traceparent(http_enqueue)

    [(run_job, current_span)] = ran
    assert run_job.meta["traceparent"][:-3] == _traceparent(http_enqueue)
    process = next(
        span
        for span in receiver.named("default process")
        if span.attributes["ojs.job.id"] == job["id"]
    )
    # ojs-distributed-tracing §6.1: linked to the enqueue, not its child
    assert process.kind == CONSUMER
    assert process.links == [(CLIENT_TRACE, http_enqueue.span_id)]
    assert process.parent_span_id == ""
    assert process.span_id == current_span  # current while the handler ran
    assert process.attributes["ojs.worker.id"] == "w-1"
    assert process.attributes["ojs.job.attempt"] == 1
    assert process.status == STATUS_OK

    acks = [span for span in receiver.named("ojs.ack") if span.parent_span_id == process.span_id]
    assert [span.attributes["ojs.job.state"] for span in acks] == ["completed"]
    assert acks[0].trace_id == process.trace_id and acks[0].kind == CLIENT

    claims = receiver.named("default fetch")
    assert any((CLIENT_TRACE, http_enqueue.span_id) in span.links for span in claims)

    failed = next(
        span
        for span in receiver.named("default process")
        if span.attributes["ojs.job.id"] == failing.id
    )
    assert failed.status == STATUS_ERROR
    assert failed.attributes["error.type"] == "ValueError"
    assert failed.attributes["error.message"] == "no such mailbox"
    assert "exception" in failed.events
    nack = next(
        span for span in receiver.named("ojs.nack") if span.parent_span_id == failed.span_id
    )
    assert nack.attributes["ojs.job.state"] == "discarded"


async def test_an_embedded_enqueue_keeps_a_traceparent_of_its_own(receiver: OtlpReceiver) -> None:
    own = f"00-{'a' * 32}-{'b' * 16}-01"
    async with open_tracing(TracingSettings(endpoint=traces_url(receiver.endpoint))):
        async with open_system() as system:
            kept = await system.enqueue({"type": "t", "args": [], "meta": {"traceparent": own}})
            [batch_job, other] = await system.enqueue_batch(
                [{"type": "t", "args": []}, {"type": "t", "args": [], "options": {"queue": "q2"}}]
            )
    assert kept.meta == {"traceparent": own}  # ojs-distributed-tracing §6.2: passed through
    assert receiver.one("default enqueue").links == [("a" * 32, "b" * 16)]
    batch = receiver.one("ojs.enqueue_batch")
    assert batch.kind == PRODUCER and batch.attributes["messaging.batch.message_count"] == 2
    assert batch_job.meta["traceparent"] == other.meta["traceparent"]
    assert batch_job.meta["traceparent"][:-3] == _traceparent(batch)


# -- off ---------------------------------------------------------------------------------------


def test_off_a_server_exports_nothing_and_leaves_meta_as_it_was(
    receiver: OtlpReceiver, tmp_path: Path
) -> None:
    env = _without_otel(dict(os.environ)) | {
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OJS_OTEL_ENABLED": "false",  # wins over the endpoint
    }
    server = OjsServer(["--backend", "memory"], tmp_path / "server.log", env=env)
    try:
        with httpx.Client(base_url=server.url, timeout=10) as http:
            answer = http.post(
                "/ojs/v1/jobs",
                json={"type": "t", "args": [], "meta": {"a": 1}},
                headers={"traceparent": CLIENT_TRACEPARENT},
            )
            assert answer.json()["job"]["meta"] == {"a": 1}
    finally:
        server.stop()
    assert receiver.requests == 0 and receiver.spans == []


async def test_off_an_embedded_system_exports_nothing_and_leaves_meta_as_it_was(
    receiver: OtlpReceiver,
) -> None:
    async with open_tracing(TracingSettings()), open_system() as system:
        assert tracing.current is None
        ran = trio.Event()

        async def handler(job: Job) -> None:
            ran.set()

        async with system.worker_group(["default"], {"t": handler}):
            client = create_app(system).test_client()
            response = await client.post(
                "/ojs/v1/jobs",
                json={"type": "t", "args": []},
                headers={"traceparent": CLIENT_TRACEPARENT},
            )
            assert (await response.get_json())["job"]["meta"] == {}
            with trio.fail_after(WAIT_S):
                await ran.wait()
    assert receiver.requests == 0 and receiver.spans == []


def test_off_the_sdk_is_never_imported() -> None:
    script = (
        "import sys, trio\n"
        "from ojs_actors import open_system\n"
        "from ojs_actors.http import create_app\n"
        "async def main():\n"
        "    async with open_system() as system:\n"
        "        create_app(system)\n"
        "        job = await system.enqueue({'type': 't', 'args': []})\n"
        "        [claimed] = await system.fetch(['default'])\n"
        "        await system.ack(claimed.id)\n"
        "trio.run(main)\n"
        "print(sorted(name for name in sys.modules if name.startswith('opentelemetry')))\n"
    )
    env = _without_otel(dict(os.environ))
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
