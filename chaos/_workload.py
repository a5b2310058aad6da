"""The workload of a chaos run: producers (single and batch enqueues, scheduled and retried
jobs, chain and DAG workflows), a cron entry firing every second, HTTP workers, and an
embedded worker group in the harness's own process. Everything it causes goes into the
:class:`~._ledger.Ledger`; every loop stops when the run's ``stop`` event is set.

A request whose answer is lost (a connection error, a timeout, a 5xx) leaves its jobs of
unknown fate: they are checked at the end like accepted ones if the server holds them.
"""

from __future__ import annotations

import random
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import trio

from ojs_actors.backends import create_backend
from ojs_actors.core import Job, new_id
from ojs_actors.system import Settings, open_system

from ._ledger import Ledger, Workflow
from ._servers import Cluster

JOB_TYPE = "chaos.work"
HTTP_QUEUES = ("chaos-a", "chaos-b")
CRON_QUEUE = "chaos-cron"
EMBEDDED_QUEUE = "chaos-embedded"
WORKFLOW_KINDS = ("chain", "dag")
VISIBILITY_MS = 4_000
"""A job whose worker's ack was lost (or whose worker's server died), or whose claim's
answer was lost, comes back after this (set on every job, for the embedded group's
claims, and on every fetch)."""
RETRY = {"max_attempts": 25, "initial_interval": "PT0.2S", "backoff_coefficient": 1.0}
"""Room for leases that run out while the store is away (each counts as an attempt)."""
OPTIONS = {"retry": RETRY, "visibility_timeout_ms": VISIBILITY_MS}
CRON = {
    "name": "chaos-tick",
    "expression": "* * * * * *",  # every second
    "overlap_policy": "allow",
    "job_template": {
        "type": JOB_TYPE,
        "args": ["cron", 0],
        "options": {"queue": CRON_QUEUE, **OPTIONS},
    },
}


@dataclass(frozen=True)
class Pace:
    """How hard a run drives the servers (a networked store's speed sets it)."""

    producers: int
    pause_s: float
    """Each producer's pause between two requests."""
    http_workers: int
    fetch_count: int = 8
    fetch_wait_ms: int = 500
    """How long an HTTP worker's fetch waits for work (its ``wait_ms``)."""
    poll_s: float = 0.2
    """Every process's ``--poll-interval`` (how often its timers and waiting fetches look
    at the store)."""


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def _answer(response: httpx.Response | None) -> bool | None:
    if response is None or response.status_code >= 500:
        return None
    return response.is_success


def job_request(
    ledger: Ledger, kind: str, queue: str, fail_times: int = 0, **options: Any
) -> dict[str, Any]:
    job_id = new_id()
    ledger.asked(job_id, kind, fail_times)
    return {
        "id": job_id,
        "type": JOB_TYPE,
        "args": [kind, fail_times],
        "options": {"queue": queue, **OPTIONS, **options},
    }


async def post(client: httpx.AsyncClient, url: str, body: Any) -> httpx.Response | None:
    """The response, or ``None`` if none came (the server away or too slow)."""
    try:
        return await client.post(url, json=body)
    except httpx.HTTPError:
        return None


async def produce(
    cluster: Cluster, ledger: Ledger, rng: random.Random, stop: trio.Event, pace: Pace,
    *, embedded: bool,
) -> None:  # fmt: skip
    queues = [*HTTP_QUEUES, *([EMBEDDED_QUEUE] * embedded)]
    for kind in WORKFLOW_KINDS:  # one of each in every run, however short or slow
        while True:
            if stop.is_set() or await _workflow(cluster, ledger, cluster.any_url(), rng, kind):
                break
            await trio.sleep(pace.pause_s)
    while not stop.is_set():
        url = cluster.any_url()
        roll = rng.random()
        queue = rng.choice(queues)
        if roll < 0.15:
            jobs = [job_request(ledger, "batch", rng.choice(queues)) for _ in range(5)]
            response = await post(cluster.client, f"{url}/ojs/v1/jobs/batch", {"jobs": jobs})
            ledger.answered([job["id"] for job in jobs], _answer(response))
        elif roll < 0.22:
            await _workflow(cluster, ledger, url, rng)
        else:
            if roll < 0.32:
                at = time.time() + rng.uniform(0.5, 3.0)
                stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(at))
                request = job_request(
                    ledger, "scheduled", queue, scheduled_at=f"{stamp}.{int(at % 1 * 1000):03d}Z"
                )
            elif roll < 0.45:
                request = job_request(ledger, "retried", queue, fail_times=rng.randint(1, 2))
            else:
                request = job_request(ledger, "single", queue)
            response = await post(cluster.client, f"{url}/ojs/v1/jobs", request)
            ledger.answered([request["id"]], _answer(response))
        await trio.sleep(pace.pause_s * rng.uniform(0.5, 1.5))


async def _workflow(
    cluster: Cluster, ledger: Ledger, url: str, rng: random.Random, kind: str | None = None
) -> bool:
    """Start a chain or a DAG (``kind``, else either); whether the server took it."""
    queue = rng.choice(HTTP_QUEUES)
    options = {"queue": queue, **OPTIONS}
    kind = kind or rng.choice(WORKFLOW_KINDS)
    if kind == "chain":
        body: dict[str, Any] = {
            "type": "chain",
            "name": "chaos-chain",
            "steps": [
                {"type": JOB_TYPE, "args": ["step", 0], "options": options} for _ in range(3)
            ],
        }
    else:
        step = {"type": JOB_TYPE, "args": ["step", 0]}
        body = {
            "name": "chaos-dag",
            "steps": [
                {**step, "id": "a", "depends_on": []},
                {**step, "id": "b", "depends_on": ["a"]},
                {**step, "id": "c", "depends_on": ["a"]},
                {**step, "id": "d", "depends_on": ["b", "c"]},
            ],
            "options": options,
        }
    response = await post(cluster.client, f"{url}/ojs/v1/workflows", body)
    if response is None or not response.is_success:
        return False
    workflow = response.json().get("workflow", response.json())
    ledger.workflows.append(Workflow(workflow["id"], kind))
    return True


async def http_worker(
    cluster: Cluster, ledger: Ledger, rng: random.Random, stop: trio.Event, pace: Pace,
    name: str, *, queues: Sequence[str],
) -> None:  # fmt: skip
    """Fetch, run (a few ms), ack or fail on purpose, until ``stop``."""
    while not stop.is_set():
        url = cluster.any_url()
        sent = now_ms()
        response = await post(cluster.client, f"{url}/ojs/v1/workers/fetch", {
            "queues": list(queues), "count": pace.fetch_count, "worker_id": name,
            "visibility_timeout_ms": VISIBILITY_MS, "wait_ms": pace.fetch_wait_ms,
        })  # fmt: skip
        if response is None or not response.is_success:
            await trio.sleep(0.1)
            continue
        for job in response.json().get("jobs", ()):
            fail_times = ledger.ran(job, name, now_ms(), sent)
            await trio.sleep(rng.uniform(0, 0.002))
            if int(job.get("attempt") or 0) <= fail_times:
                await post(cluster.client, f"{url}/ojs/v1/workers/nack", {
                    "job_id": job["id"],
                    "error": {"type": "ChaosFailure", "message": "planned failure"},
                })  # fmt: skip
                continue
            acked = await post(cluster.client, f"{url}/ojs/v1/workers/ack", {"job_id": job["id"]})
            if acked is not None and acked.is_success:
                ledger.acked(job["id"], now_ms())


@asynccontextmanager
async def embedded_worker_group(
    backend: str, options: dict[str, Any], ledger: Ledger, poll_s: float
) -> AsyncIterator[None]:
    """A worker group in this process on the run's store (through its proxies), running
    the embedded queue's jobs while the block is open."""

    async def work(job: Job) -> None:
        fail_times = ledger.ran(job.to_wire(), "embedded", now_ms(), None)
        await trio.sleep(0.002)
        if job.attempt <= fail_times:
            raise RuntimeError("planned failure")

    settings = Settings(poll_interval=poll_s)
    async with (
        open_system(create_backend(backend, **options), settings=settings) as system,
        system.worker_group([EMBEDDED_QUEUE], {JOB_TYPE: work}, concurrency=8),
    ):
        yield


async def register_cron(cluster: Cluster) -> None:
    """The every-second entry; retried until a server takes it."""
    while True:
        response = await post(cluster.client, f"{cluster.any_url()}/ojs/v1/cron", CRON)
        if response is not None and response.is_success:
            return
        await trio.sleep(0.2)


async def delete_cron(cluster: Cluster) -> None:
    for _ in range(50):
        try:
            response = await cluster.client.delete(
                f"{cluster.any_url()}/ojs/v1/cron/{CRON['name']}"
            )
        except httpx.HTTPError:
            response = None
        if response is not None and response.status_code in (200, 204, 404):
            return
        await trio.sleep(0.2)
