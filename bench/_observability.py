"""Scenario ``observability``: what Prometheus metrics and OpenTelemetry tracing cost.

Four modes, on the memory backend: ``off`` (``Settings(metrics=False)`` /
``--no-metrics``, no OTLP endpoint), ``metrics`` (the default), ``tracing`` (metrics off,
an OTLP endpoint set) and ``both``. Traced subjects export to :class:`~._otlp_sink.OtlpSink`,
a loopback receiver in this process that only counts requests and spans, each subject
under a path of its own.

Per run, the modes in an order rotating from run to run:

* the embedded lifecycle (``embedded.py``'s ``embedded_lifecycle``, in a fresh process);
* ``POST /ojs/v1/jobs`` at :data:`CONCURRENCY` connections (after the hello-world at the
  same concurrency) against one ``ojs-actors serve --backend memory`` per mode, into a
  queue no worker fetches (:data:`ENQUEUE_QUEUE`);
* the HTTP lifecycle (``http_workers.py``) on the same servers, each fetch count.

Each mode's figures get ``µs/job`` (1e6 over the rate), ``extra µs/job`` (that less
``off``'s, run by run) and a ratio to ``off`` (rate over rate, run by run).
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from ._config import BenchConfig
from ._hello import HELLO_PATH
from ._isolated import run_isolated
from ._load import LoadSpec, build_request, run_load
from ._otlp_sink import OtlpSink
from ._outcome import Outcome, Progress
from ._results import Series, ratio_of
from ._servers import HOST, HttpProcess, ServerGroup
from ._workload import JOB_TYPE

SCENARIO = "observability"
MODES: dict[str, tuple[bool, bool]] = {
    "off": (False, False),
    "metrics": (True, False),
    "tracing": (False, True),
    "both": (True, True),
}
"""Mode name: (metrics on, tracing on)."""
BASE_MODE = "off"
CONCURRENCY = 16
ENQUEUE_QUEUE = "bench-observability-enqueue"
JOB = {"type": JOB_TYPE, "args": [0], "options": {"queue": ENQUEUE_QUEUE}}
RATES = (
    ("embedded", "enqueue jobs/s"),
    ("embedded", "process jobs/s"),
    (f"HTTP enqueue c={CONCURRENCY}", "req/s"),
)


def _order(run: int) -> list[str]:
    """The modes, rotated by one per run, so none is always first (or last)."""
    names = list(MODES)
    shift = run % len(names)
    return names[shift:] + names[:shift]


def _subject(part: str, mode: str) -> str:
    return f"{part}, {mode}"


def _lifecycle_part(fetch_count: int) -> str:
    return f"HTTP lifecycle fetch count {fetch_count}"


def _servers(group: ServerGroup, sink: OtlpSink) -> dict[str, HttpProcess]:
    servers = {}
    for mode, (metrics, tracing) in MODES.items():
        env = {"OJS_OTEL_ENDPOINT": sink.endpoint(f"http-{mode}")} if tracing else {}
        extra = () if metrics else ("--no-metrics",)
        servers[mode] = group.ojs("memory", extra=extra, extra_env=env, label=mode)
    return servers


def run_observability(config: BenchConfig, progress: Progress) -> Outcome:
    sizes = config.sizes
    outcome = Outcome(SCENARIO, "Observability: metrics and tracing, off and on (memory)")
    body = json.dumps(JOB, separators=(",", ":")).encode()
    with OtlpSink() as sink:
        with ServerGroup(SCENARIO) as group:
            hello = group.hello()
            servers = _servers(group, sink)
            group.wait_ready()
            hello_request = build_request("POST", HELLO_PATH, body, host=HOST, port=hello.port)

            def load(port: int, request: bytes) -> None:
                spec = LoadSpec(HOST, port, request, CONCURRENCY, sizes.load_max_requests,
                                sizes.load_seconds, sizes.warmup_seconds)  # fmt: skip
                result = run_load(spec)
                subject = f"HTTP enqueue c={CONCURRENCY}"
                name = "hello-world" if port == hello.port else _mode_of(servers, port)
                outcome.runs.append({"run": run, "subject": f"{subject}, {name}",
                                     **result.as_dict()})  # fmt: skip
                if result.failures:
                    outcome.notes.append(f"run {run + 1}, {subject}, {name}: "
                                         f"{result.failures} failed requests")  # fmt: skip
                outcome.series_of(_subject(subject, name), "req/s").values.append(result.per_s)
                outcome.series_of(_subject(subject, name), "p50 ms").values.append(result.p50_ms)

            for run in range(sizes.runs):
                progress(f"{SCENARIO}: run {run + 1}/{sizes.runs}")
                order = _order(run)
                for mode in order:
                    _embedded(outcome, sink, config, run, mode)
                load(hello.port, hello_request)
                for mode in order:
                    server = servers[mode]
                    load(server.port, build_request("POST", "/ojs/v1/jobs", body, host=HOST,
                                                    port=server.port))  # fmt: skip
                for fetch_count in sizes.fetch_counts:
                    for mode in order:
                        kwargs = {
                            "base_url": servers[mode].url,
                            "jobs": sizes.http_jobs,
                            "latency_jobs": sizes.http_latency_jobs,
                            "workers": sizes.http_workers,
                            "fetch_count": fetch_count,
                            "timeout_s": sizes.timeout_s,
                        }
                        subject = _subject(_lifecycle_part(fetch_count), mode)
                        outcome.record_lifecycle(run, run_isolated("http", subject, kwargs))
        # the servers are stopped: their tracers have flushed what they buffered
    _add_costs(outcome, [_lifecycle_part(count) for count in sizes.fetch_counts])
    _add_notes(outcome, sink, config)
    return outcome


def _mode_of(servers: dict[str, HttpProcess], port: int) -> str:
    return next(mode for mode, server in servers.items() if server.port == port)


def _embedded(outcome: Outcome, sink: OtlpSink, config: BenchConfig, run: int, mode: str) -> None:
    """One embedded lifecycle run of ``mode``; traced, its spans per job too."""
    sizes = config.sizes
    metrics, tracing = MODES[mode]
    source = f"embedded-{mode}"
    kwargs = {
        "backend": "memory",
        "options": {},
        "jobs": sizes.embedded_jobs,
        "latency_jobs": sizes.embedded_latency_jobs,
        "timeout_s": sizes.timeout_s,
        "metrics": metrics,
        "otel_endpoint": sink.endpoint(source) if tracing else None,
    }
    before = sink.counts(source)[1]
    result = run_isolated("embedded", _subject("embedded", mode), kwargs)
    outcome.record_lifecycle(run, result)
    if tracing:
        jobs = sizes.embedded_jobs + sizes.embedded_latency_jobs
        spans = sink.counts(source)[1] - before
        outcome.series_of(_subject("embedded", mode), "spans/job").values.append(spans / jobs)


def _per_job_us(rate: Series, into: Series) -> None:
    into.values[:] = [1e6 / value if value else float("nan") for value in rate.values]


def _add_costs(outcome: Outcome, lifecycle_parts: Sequence[str]) -> None:
    """µs/job, extra µs/job over ``off`` and the ratio to ``off``, run by run, for every
    rate; and the enqueue over the hello-world, per mode."""
    rates = [*RATES, *((part, "process jobs/s") for part in lifecycle_parts)]
    for part, metric in rates:
        base = outcome.series_of(_subject(part, BASE_MODE), metric)
        base_us = outcome.series_of(_subject(part, BASE_MODE), f"µs/job ({metric})")
        _per_job_us(base, base_us)
        for mode in MODES:
            if mode == BASE_MODE:
                continue
            rate = outcome.series_of(_subject(part, mode), metric)
            us = outcome.series_of(_subject(part, mode), f"µs/job ({metric})")
            _per_job_us(rate, us)
            extra = outcome.series_of(_subject(part, mode), f"extra µs/job ({metric})")
            extra.values[:] = [a - b for a, b in zip(us.values, base_us.values, strict=True)]
            outcome.ratios.append(ratio_of(rate, base, f"{part}: {mode} / {BASE_MODE}, {metric}"))
    hello = outcome.series_of(_subject(f"HTTP enqueue c={CONCURRENCY}", "hello-world"), "req/s")
    for mode in MODES:
        enqueue = outcome.series_of(_subject(f"HTTP enqueue c={CONCURRENCY}", mode), "req/s")
        outcome.ratios.append(
            ratio_of(enqueue, hello, f"enqueue, {mode} / hello-world req/s, c={CONCURRENCY}")
        )


def _add_notes(outcome: Outcome, sink: OtlpSink, config: BenchConfig) -> None:
    outcome.notes.append(
        "modes: off = Settings(metrics=False) / --no-metrics and no OTLP endpoint; metrics = "
        "the default; tracing = metrics off, OJS_OTEL_ENDPOINT (embedded: open_tracing) set to "
        "a loopback OTLP/HTTP receiver in the harness that parses and counts the exports; "
        "both = metrics on and tracing on. Memory backend; the order of the modes rotates "
        "from run to run"
    )
    for mode, (_, tracing) in MODES.items():
        if tracing:
            requests, spans = sink.counts(f"http-{mode}")
            outcome.notes.append(
                f"ojs-actors serve ({mode}): {spans:,} spans received in {requests:,} OTLP "
                "requests over the whole scenario (enqueue loads and lifecycles)"
            )
    outcome.notes.append(
        f"HTTP enqueue: {CONCURRENCY} connections, {config.sizes.warmup_seconds} s warm-up, "
        f"up to {config.sizes.load_seconds} s, into queue {ENQUEUE_QUEUE!r} (never fetched)"
    )
