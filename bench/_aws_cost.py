"""Scenario ``aws_cost``: what a job costs on AWS with the sqs backend.

This counts requests, DynamoDB request units and dollars per job, in steady state
under batch load, on moto. AWS bills per request: each SQS request (each 64 KB of
its payload) is billed, and each DynamoDB request by the request units it consumes.
So each run measures what one process of the backend sends for a stream of no-op
jobs. Everything is counted by :class:`~bench._aws_units.UsageMeter`, which wraps the
backend's ``AwsClients`` calls; ``AwsClients.requests`` (botocore's ``before-send``
hook) is read beside it:

- **embedded**: one system on ``--backend sqs`` with one worker group (concurrency
  16, ``batch_size`` 100: claims of up to 100 jobs, acks stored in batches). A
  producer calls ``System.enqueue_batch`` with 100 jobs at a time. It keeps at most
  :data:`MAX_BACKLOG` jobs enqueued and not yet completed, so enqueue, claim and ack
  go on together, as in a steady stream. A warm-up comes first: enough jobs that the
  event outbox is past its retention and trimmed as it grows. Then a measured window
  of ``aws_jobs`` jobs runs from a snapshot of the counters to the moment the last
  job's ack is stored. Background work (hints received and deleted, stale index
  entries cleaned, outbox trims, the scheduler's and fetcher's polls) is counted
  where it falls in the window. In steady state the tail cut off at the end matches
  the warm-up's tail counted at the start.
- **idle**: after the window and a few seconds' settling, the same process with
  nothing to do for ``aws_idle_s`` seconds. Its requests per minute are the floor of
  the bill. They are separated from the per-job cost.
- **HTTP**: the same stream through the HTTP API of a server in the same process
  (Hypercorn on a loopback port): ``POST /ojs/v1/jobs/batch`` with 100 jobs at a time,
  and :data:`HTTP_WORKERS` HTTP workers looping ``POST /ojs/v1/workers/fetch`` (count
  100) and one ``POST /ojs/v1/workers/ack`` per job. The protocol has no batch ack.

Each measurement runs in a fresh process against a moto server started by the
scenario (:mod:`ojs_actors.testing.moto`: moto's own server with two fixes to its DynamoDB, see
there), reset before each measurement. The table keeps the backend's default layout.
The outbox keeps :data:`EVENT_RETENTION` events instead of the default 10,000 (the
retention costs no request either way: DynamoDB's TTL deletes old entries).

Dollars use the US East list prices of :data:`bench._aws_units.PRICES` (its
``sources`` and ``used_on`` say where from and when). The issue's reference design
(ojs-backend-sqs) makes roughly 6-7 requests per job. The target is at most 1 in
steady state under batch load.

    python -m bench --only aws_cost
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import trio

from ojs_actors.testing.services import HOST, SerialMotoServer

from ._aws_units import (
    HOURS_PER_MONTH,
    PRICES,
    Usage,
    UsageMeter,
    mean_transaction_items,
    operations,
    per_unit,
)
from ._config import BenchConfig
from ._outcome import Outcome, Progress
from ._results import Ratio
from ._workload import JOB_TYPE, QUEUE

SCENARIO = "aws_cost"
TITLE = "AWS cost per job (sqs backend, on moto)"
REPO = Path(__file__).resolve().parent.parent

ENQUEUE_BATCH = 100
"""Jobs per ``enqueue_batch`` call or ``POST /ojs/v1/jobs/batch``."""
FETCH_BATCH = 100
"""The worker group's ``batch_size``; the HTTP workers' fetch ``count``."""
CONCURRENCY = 16
MAX_BACKLOG = 300
"""Jobs enqueued and not completed yet above which the producer waits."""
HTTP_WORKERS = 4
HTTP_WAIT_MS = 1000
EVENT_RETENTION = 3000
SETTLE_S = 3.0
"""Between the measured window and the idle one: hints received, trims done."""
AWS_TIMEOUT_S = 30.0
"""The backend's deadline per AWS call (its default 5 s is for real AWS, not moto)."""
TARGET_REQUESTS_PER_JOB = 1.0
REFERENCE_REQUESTS_PER_JOB = 6.5
"""The middle of the issue's "roughly 6-7 per job" for ojs-backend-sqs's design."""
MINUTES_PER_MONTH = HOURS_PER_MONTH * 60

EMBEDDED, HTTP = "embedded sqs", "HTTP sqs"


# -- one measurement, in a fresh process -------------------------------------------------------


def _jobs(first: int, last: int) -> list[dict[str, Any]]:
    return [
        {"type": JOB_TYPE, "args": [n], "options": {"queue": QUEUE}} for n in range(first, last)
    ]


class _Flow:
    """A producer bounded by the jobs not completed yet, and the completions."""

    def __init__(self) -> None:
        self.enqueued = 0
        self.completed = 0
        self._changed = trio.Event()

    def done(self, count: int) -> None:
        if count:
            self.completed += count
            self._changed.set()

    async def _wait(self, ready: Callable[[], bool]) -> None:
        while not ready():
            self._changed = trio.Event()
            await self._changed.wait()

    async def run(
        self, count: int, enqueue: Callable[[list[dict[str, Any]]], Awaitable[None]]
    ) -> None:
        """Enqueue ``count`` more jobs, ``ENQUEUE_BATCH`` at a time, and wait for them all."""
        target = self.enqueued + count
        while self.enqueued < target:
            await self._wait(lambda: self.enqueued - self.completed < MAX_BACKLOG)
            chunk = _jobs(self.enqueued, min(target, self.enqueued + ENQUEUE_BATCH))
            await enqueue(chunk)
            self.enqueued += len(chunk)
        await self._wait(lambda: self.completed >= target)


def _backend_options(endpoint: str, name: str) -> dict[str, Any]:
    return {
        "endpoint_url": endpoint,
        "region": PRICES.region,
        "table": f"ojs-cost-{name}",
        "queue_prefix": f"cost-{name}",
        "event_retention": EVENT_RETENTION,
        "timeout": AWS_TIMEOUT_S,
    }


async def _window(
    meter: UsageMeter,
    flow: _Flow,
    jobs: int,
    enqueue: Callable[[list[dict[str, Any]]], Awaitable[None]],
) -> dict[str, Any]:
    before = meter.snapshot()
    started = time.perf_counter()
    await flow.run(jobs, enqueue)
    usage = meter.snapshot().minus(before)
    return {"jobs": jobs, "seconds": time.perf_counter() - started, "usage": usage.as_dict()}


async def measure_embedded(
    endpoint: str, jobs: int, warmup_jobs: int, idle_s: float, timeout_s: float
) -> dict[str, Any]:
    from ojs_actors import State, create_backend, open_system

    result: dict[str, Any] = {"kind": "embedded", "ok": False}
    flow = _Flow()

    async def noop(job: Any) -> None:
        return None

    def settled(stored: Sequence[Any]) -> None:
        flow.done(sum(1 for job in stored if job.state is State.COMPLETED))

    with trio.move_on_after(timeout_s):
        async with open_system(create_backend("sqs", **_backend_options(endpoint, "e"))) as system:
            meter = UsageMeter(system.backend.aws)  # type: ignore[attr-defined]
            async with system.worker_group(
                [QUEUE], {JOB_TYPE: noop}, concurrency=CONCURRENCY, batch_size=FETCH_BATCH,
                on_settled=settled,
            ):  # fmt: skip

                async def enqueue(chunk: list[dict[str, Any]]) -> None:
                    await system.enqueue_batch(chunk)

                started = time.perf_counter()
                await flow.run(warmup_jobs, enqueue)
                result["warmup"] = {"jobs": warmup_jobs, "seconds": time.perf_counter() - started}
                result["window"] = await _window(meter, flow, jobs, enqueue)
                await trio.sleep(SETTLE_S)
                before = meter.snapshot()
                await trio.sleep(idle_s)
                idle = meter.snapshot().minus(before)
                result["idle"] = {"seconds": idle_s, "queues": 1, "usage": idle.as_dict()}
                result["ok"] = True
    result["completed"] = flow.completed
    return result


async def measure_http(
    endpoint: str, jobs: int, warmup_jobs: int, timeout_s: float
) -> dict[str, Any]:
    from hypercorn.config import Config as HypercornConfig
    from hypercorn.trio import serve as hypercorn_serve

    from ojs_actors import create_backend, open_system
    from ojs_actors.http.app import create_app
    from ojs_actors.testing.services import free_port

    from ._client import HttpClient

    result: dict[str, Any] = {"kind": "http", "ok": False}
    flow = _Flow()
    port = free_port()

    async def worker(client: HttpClient, name: str) -> None:
        fetch = {
            "queues": [QUEUE],
            "count": FETCH_BATCH,
            "worker_id": name,
            "wait_ms": HTTP_WAIT_MS,
        }
        while True:
            status, answer = await client.post("/ojs/v1/workers/fetch", fetch)
            if status != 200:
                raise RuntimeError(f"fetch: HTTP {status} {str(answer)[:300]}")
            for job in answer["jobs"]:
                status, answer = await client.post("/ojs/v1/workers/ack", {"job_id": job["id"]})
                if status != 200:
                    raise RuntimeError(f"ack: HTTP {status} {str(answer)[:300]}")
                flow.done(1)

    with trio.move_on_after(timeout_s):
        async with open_system(create_backend("sqs", **_backend_options(endpoint, "h"))) as system:
            meter = UsageMeter(system.backend.aws)  # type: ignore[attr-defined]
            config = HypercornConfig()
            config.bind = [f"{HOST}:{port}"]
            config.accesslog = None
            shutdown = trio.Event()
            clients = [HttpClient(HOST, port) for _ in range(HTTP_WORKERS + 1)]
            producer = clients[0]

            async def enqueue(chunk: list[dict[str, Any]]) -> None:
                status, answer = await producer.post("/ojs/v1/jobs/batch", {"jobs": chunk})
                if status != 201:
                    raise RuntimeError(f"batch: HTTP {status} {str(answer)[:300]}")

            try:
                async with trio.open_nursery() as nursery:
                    await nursery.start(
                        lambda task_status: hypercorn_serve(
                            create_app(system), config, shutdown_trigger=shutdown.wait,
                            task_status=task_status,
                        )
                    )  # fmt: skip
                    for number, client in enumerate(clients[1:]):
                        nursery.start_soon(worker, client, f"cost-http-{number}")
                    started = time.perf_counter()
                    await flow.run(warmup_jobs, enqueue)
                    result["warmup"] = {
                        "jobs": warmup_jobs,
                        "seconds": time.perf_counter() - started,
                    }
                    result["window"] = await _window(meter, flow, jobs, enqueue)
                    result["ok"] = True
                    nursery.cancel_scope.cancel()
            finally:
                for client in clients:
                    await client.aclose()
    result["completed"] = flow.completed
    return result


async def _measure(kind: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    if kind == "embedded":
        return await measure_embedded(**kwargs)
    if kind == "http":
        return await measure_http(**kwargs)
    raise ValueError(f"unknown measurement {kind!r}")


def main() -> None:
    """``python -m bench._aws_cost``: ``{"kind", "kwargs"}`` on stdin, the result as JSON on
    the last line of stdout."""
    request = json.loads(sys.stdin.read())
    print(json.dumps(trio.run(_measure, request["kind"], request["kwargs"])))


def aws_environment() -> dict[str, str]:
    """The environment of a measurement: moto's dummy credentials, no profile, no other
    endpoint (the backend is given moto's)."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("AWS_")}
    env.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
               AWS_DEFAULT_REGION=PRICES.region)  # fmt: skip
    return env


def run_measurement(kind: str, kwargs: dict[str, Any], timeout_s: float) -> dict[str, Any]:
    """One measurement in a new process; a crash or a hang is a result with ``ok`` false."""
    limit = timeout_s + 60.0
    try:
        finished = subprocess.run(
            [sys.executable, "-m", "bench._aws_cost"],
            input=json.dumps({"kind": kind, "kwargs": kwargs}),
            capture_output=True, text=True, timeout=limit, check=False, cwd=REPO,
            env=aws_environment(),
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        return {"kind": kind, "ok": False, "error": f"no answer within {limit:.0f} s"}
    lines = finished.stdout.strip().splitlines()
    if finished.returncode != 0 or not lines:
        return {"kind": kind, "ok": False, "error": finished.stderr.strip()[-1500:] or "no output"}
    result: dict[str, Any] = json.loads(lines[-1])
    if not result.get("ok"):
        result["error"] = (
            f"timed out after {timeout_s:.0f} s ({result.get('completed')} jobs completed)"
        )
    return result


# -- the scenario -----------------------------------------------------------------------------


def _record_window(outcome: Outcome, subject: str, result: dict[str, Any], ops: list[str]) -> None:
    """The per-job series of one measurement (NaN if it failed)."""
    window = result.get("window") if result.get("ok") else None
    usage = Usage.from_dict(window["usage"]) if window else None
    figures = per_unit(usage, window["jobs"]) if usage is not None and window else None

    def add(name: str, metric: str, value: float | None) -> None:
        outcome.series_of(name, metric).values.append(math.nan if value is None else value)

    add(subject, "requests/job", figures["calls"] if figures else None)
    if "idle" in result or not result.get("ok"):
        add(subject, "requests/job - idle", _net_of_idle(result))
    add(subject, "HTTP attempts/job", figures["requests"] if figures else None)
    add(subject, "WRU/job", figures["wru"] if figures else None)
    add(subject, "RRU/job", figures["rru"] if figures else None)
    add(subject, "SQS billed/job", figures["sqs_billed"] if figures else None)
    add(subject, "$/million jobs", figures["dollars"] * 1e6 if figures else None)
    add(subject, "items/transaction", mean_transaction_items(usage) if usage else None)
    add(subject, "jobs/s (on moto)", window["jobs"] / window["seconds"] if window else None)
    for op in ops:
        value = figures["calls_by_operation"].get(op, 0.0) if figures else None
        add(f"{subject}: {op}", "requests/job", value)


def _net_of_idle(result: dict[str, Any]) -> float | None:
    """Requests per job less what the same process sends idle over as long as the window
    lasted: the share of the polls (scheduler, cron registry, fetcher) that depends on
    time, not on jobs. It shrinks as the job rate grows; moto's rate is low."""
    if not result.get("ok"):
        return None
    window, idle = result["window"], result["idle"]
    idle_per_s = Usage.from_dict(idle["usage"]).total_calls() / idle["seconds"]
    calls = Usage.from_dict(window["usage"]).total_calls()
    return float((calls - idle_per_s * window["seconds"]) / window["jobs"])


def idle_operations(results: list[dict[str, Any]]) -> list[str]:
    return operations(Usage.from_dict(r["idle"]["usage"]) for r in results if r.get("ok"))


def _record_idle(outcome: Outcome, result: dict[str, Any], ops: list[str]) -> None:
    idle = result.get("idle") if result.get("ok") else None
    usage = Usage.from_dict(idle["usage"]) if idle else None
    figures = per_unit(usage, idle["seconds"] / 60) if usage is not None and idle else None
    subject = f"{EMBEDDED}, idle (1 process, 1 queue)"

    def add(metric: str, value: float | None) -> None:
        outcome.series_of(subject, metric).values.append(math.nan if value is None else value)

    add("requests/min", figures["calls"] if figures else None)
    add("DynamoDB requests/min", figures["dynamodb_calls"] if figures else None)
    add("SQS requests/min", figures["sqs_calls"] if figures else None)
    add("RRU/min", figures["rru"] if figures else None)
    add("$/month idle", figures["dollars"] * MINUTES_PER_MONTH if figures else None)
    for op in ops:
        outcome.series_of(f"{subject}: {op}", "requests/min").values.append(
            figures["calls_by_operation"].get(op, 0.0) if figures else math.nan
        )


def _breakdown(results: list[dict[str, Any]]) -> str:
    """Per operation: requests, WRU and RRU per job, from the last valid measurement."""
    valid = [r for r in results if r.get("ok")]
    if not valid:
        return "no valid measurement"
    window = valid[-1]["window"]
    figures = per_unit(Usage.from_dict(window["usage"]), window["jobs"])
    parts = []
    for op, calls in figures["calls_by_operation"].items():
        wru = figures["wru_by_operation"].get(op, 0.0)
        rru = figures["rru_by_operation"].get(op, 0.0)
        parts.append(f"{op} {calls:.3f} req, {wru:.2f} WRU, {rru:.2f} RRU")
    return "; ".join(parts)


def _notes(
    config: BenchConfig, embedded: list[dict[str, Any]], http: list[dict[str, Any]]
) -> list[str]:
    sizes = config.sizes
    prices = PRICES
    notes = [
        f"embedded: one process, System.enqueue_batch x{ENQUEUE_BATCH} while a worker group "
        f"(concurrency {CONCURRENCY}, batch_size {FETCH_BATCH}) runs, at most {MAX_BACKLOG} jobs "
        f"enqueued and not completed; {sizes.aws_warmup_jobs} warm-up jobs, then a window of "
        f"{sizes.aws_jobs} jobs (counters from before the window's first enqueue to the last "
        "job's stored ack, background work included); idle: the same process, nothing to do, "
        f"{sizes.aws_idle_s:g} s after {SETTLE_S:g} s of settling",
        f"HTTP: the server in the same process (Hypercorn, loopback), POST /ojs/v1/jobs/batch "
        f"x{ENQUEUE_BATCH}, {HTTP_WORKERS} HTTP workers: fetch count {FETCH_BATCH} (wait_ms "
        f"{HTTP_WAIT_MS}), one ack per job; {sizes.aws_http_warmup_jobs} warm-up jobs, window "
        f"of {sizes.aws_http_jobs}",
        "requests/job: the backend's AWS calls over the jobs (what AWS bills as requests "
        "with no retries); HTTP attempts/job: AwsClients.requests (botocore before-send, one "
        "per attempt); requests/job - idle: less the requests the same process sends idle in "
        "as long as the window took (the polls that follow time, not jobs: their share per "
        "job falls as the job rate rises, and moto's rate is low); WRU/RRU: DynamoDB "
        "request units estimated from the items sent and read (2 WRU per KB per item of a transaction, 1 per KB otherwise; 1 RRU per 4 KB "
        "strongly consistent: bench/_aws_units.py); SQS billed: one per 64 KB of payload",
        f"prices ({prices.region}, used {prices.used_on}): DynamoDB on-demand "
        f"${prices.wru_per_million} per million WRU, ${prices.rru_per_million} per million "
        f"RRU; SQS standard ${prices.sqs_per_million} per million requests (first million a "
        f"month free, ignored); storage not included. Sources: {prices.sources}",
        f"$/month idle: requests per minute x {MINUTES_PER_MONTH:,} minutes ({HOURS_PER_MONTH} "
        "h); long polls wait 20 s (3 ReceiveMessage a minute per queue fetched from), so a "
        "short idle window shows them unevenly",
        f"reference design (ojs-backend-sqs, per the issue): roughly 6-7 requests per job; "
        f"ratio against {REFERENCE_REQUESTS_PER_JOB}",
        f"moto: ojs_actors/testing/moto.py (moto_server with a rollback of only the items a transaction "
        f"touches, and DynamoDB requests one at a time); event retention {EVENT_RETENTION} "
        "(retention costs no request: the oldest entry kept is computed from the outbox "
        "counter, and DynamoDB's TTL deletes older entries free of charge, which moto "
        "never does)",
        f"embedded, by operation (last valid run): {_breakdown(embedded)}",
        f"HTTP, by operation (last valid run): {_breakdown(http)}",
    ]
    for result in embedded + http:
        if not result.get("ok"):
            notes.append(f"{result['kind']} measurement failed: {result.get('error', '?')}")
        elif (retried := _retries(result)) > 0:
            notes.append(f"{result['kind']}: {retried} requests retried by botocore in the window")
    return notes


def _retries(result: dict[str, Any]) -> int:
    usage = Usage.from_dict(result["window"]["usage"])
    return usage.total_requests() - usage.total_calls()


def run_aws_cost(config: BenchConfig, progress: Progress) -> Outcome:
    sizes = config.sizes
    outcome = Outcome(SCENARIO, TITLE)
    embedded: list[dict[str, Any]] = []
    http: list[dict[str, Any]] = []
    with (
        tempfile.TemporaryDirectory(prefix="ojs-bench-aws-") as directory,
        SerialMotoServer(Path(directory)) as moto,
    ):
        for run in range(sizes.aws_runs):
            progress(f"aws_cost: run {run + 1}/{sizes.aws_runs}, embedded")
            moto.reset()
            embedded.append(
                run_measurement(
                    "embedded",
                    {
                        "endpoint": moto.url,
                        "jobs": sizes.aws_jobs,
                        "warmup_jobs": sizes.aws_warmup_jobs,
                        "idle_s": sizes.aws_idle_s,
                        "timeout_s": sizes.aws_timeout_s,
                    },  # fmt: skip
                    sizes.aws_timeout_s,
                )
            )
            progress(f"aws_cost: run {run + 1}/{sizes.aws_runs}, HTTP")
            moto.reset()
            http.append(
                run_measurement(
                    "http",
                    {
                        "endpoint": moto.url,
                        "jobs": sizes.aws_http_jobs,
                        "warmup_jobs": sizes.aws_http_warmup_jobs,
                        "timeout_s": sizes.aws_timeout_s,
                    },  # fmt: skip
                    sizes.aws_timeout_s,
                )
            )
    ops = operations(Usage.from_dict(r["window"]["usage"]) for r in embedded + http if r.get("ok"))
    idle_ops = idle_operations(embedded)
    for embedded_result, http_result in zip(embedded, http, strict=True):
        _record_window(outcome, EMBEDDED, embedded_result, ops)
        _record_idle(outcome, embedded_result, idle_ops)
        _record_window(outcome, HTTP, http_result, ops)
    outcome.runs = [*embedded, *http]
    per_job = outcome.series_of(EMBEDDED, "requests/job").values
    outcome.ratios += [
        Ratio(
            SCENARIO,
            f"{EMBEDDED} requests/job, steady state (batch load)",
            list(per_job),
            TARGET_REQUESTS_PER_JOB,
            at_most=True,
        ),
        Ratio(
            SCENARIO,
            f"{EMBEDDED} requests/job - idle polls, steady state",
            list(outcome.series_of(EMBEDDED, "requests/job - idle").values),
            TARGET_REQUESTS_PER_JOB,
            at_most=True,
        ),
        Ratio(
            SCENARIO,
            f"{EMBEDDED} requests/job / reference design's {REFERENCE_REQUESTS_PER_JOB}",
            [value / REFERENCE_REQUESTS_PER_JOB for value in per_job],
        ),
        Ratio(
            SCENARIO,
            f"{HTTP} requests/job (single acks: no target)",
            list(outcome.series_of(HTTP, "requests/job").values),
        ),
    ]
    outcome.notes += _notes(config, embedded, http)
    return outcome


if __name__ == "__main__":
    main()
