"""One chaos run on one backend: the store and its proxies, the servers, the workload, the
faults, the drain, and the ledger's verdict (:func:`run`)."""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import trio

from ojs_actors.core.timefmt import parse_timestamp

from ._faults import FaultLog, break_things, kill_actors
from ._ledger import Ledger, Verdict
from ._servers import Cluster, ServerProcess
from ._stores import open_store
from ._workload import (
    CRON_QUEUE,
    EMBEDDED_QUEUE,
    HTTP_QUEUES,
    Pace,
    delete_cron,
    embedded_worker_group,
    http_worker,
    produce,
    register_cron,
)

CHECK_CONCURRENCY = 8
DRAINED_QUEUES = (*HTTP_QUEUES, CRON_QUEUE, EMBEDDED_QUEUE)


@dataclass(frozen=True)
class Plan:
    backend: str
    seconds: float
    """The fault phase (the workload runs through it)."""
    actor_kills: int
    sigkills: int
    proxy_faults: int
    servers: int
    pace: Pace
    drain_s: float
    seed: int


@dataclass
class Report:
    plan: Plan
    verdict: Verdict
    faults: FaultLog
    actor_kills_done: int
    seconds: float

    def recovery(self) -> dict[str, tuple[float, float]]:
        """Per fault kind, the (median, max) seconds to recover."""
        return {
            kind: (statistics.median(times), max(times))
            for kind, times in sorted(self.faults.recovery_s.items())
            if times
        }

    @property
    def ok(self) -> bool:
        return self.verdict.ok and not self.faults.unrecovered

    def as_dict(self) -> dict[str, Any]:
        verdict = self.verdict
        return {
            "backend": self.plan.backend,
            "seconds": round(self.seconds, 1),
            "servers": self.plan.servers,
            "jobs": verdict.jobs,
            "jobs_run": verdict.jobs_run,
            "faults": dict(self.faults.injected) | {"actor_kill": self.actor_kills_done},
            "lost": len(verdict.lost),
            "unfinished": len(verdict.unfinished),
            "acked_ran_again": len(verdict.acked_ran_again),
            "ran_twice_unacked": verdict.ran_twice_unacked,
            "missing_completed_events": len(verdict.missing_completed_events),
            "duplicate_cron_slots": len(verdict.duplicate_cron_slots),
            "cron_slots_fired": verdict.cron_slots_fired,
            "workflows": verdict.workflows,
            "workflows_unfinished": len(verdict.workflows_unfinished),
            "workflow_order_violations": len(verdict.workflow_order_violations),
            "unrecovered": self.faults.unrecovered,
            "recovery_s": {
                kind: {"median": round(med, 3), "max": round(top, 3)}
                for kind, (med, top) in self.recovery().items()
            },
            "examples": {
                "lost": verdict.lost[:5],
                "unfinished": verdict.unfinished[:5],
                "acked_ran_again": verdict.acked_ran_again[:5],
                "missing_completed_events": verdict.missing_completed_events[:5],
                "workflows_unfinished": verdict.workflows_unfinished[:5],
                "workflow_order_violations": verdict.workflow_order_violations[:5],
            },
            "ok": self.ok,
        }


async def run(plan: Plan, directory: Path) -> Report:
    rng = random.Random(plan.seed)
    ledger = Ledger()
    faults = FaultLog()
    began = time.monotonic()
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=32)
    async with (
        open_store(plan.backend, directory) as store,
        httpx.AsyncClient(timeout=10.0, limits=limits) as client,
    ):
        servers = [
            ServerProcess(
                f"server-{n}", plan.backend, store.environment, directory, plan.pace.poll_s
            )
            for n in range(plan.servers if store.shared else 1)
        ]
        try:
            for server in servers:
                await server.start(client)
            cluster = Cluster(servers, client)
            await register_cron(cluster)
            final = await _drive(plan, cluster, store.options if store.shared else None,
                                 store.proxies, ledger, faults, rng)  # fmt: skip
            completed_events = await _completed_events(cluster)
            workflow_steps = await _workflow_steps(cluster, ledger)
        finally:
            with trio.CancelScope(shield=True):
                for server in servers:
                    await server.stop()
        kills = sum(server.actor_kills() for server in servers)
    verdict = ledger.verdict(final, completed_events, workflow_steps)
    return Report(plan, verdict, faults, kills, time.monotonic() - began)


async def _drive(
    plan: Plan, cluster: Cluster, embedded_options: dict[str, Any] | None, proxies: list[Any],
    ledger: Ledger, faults: FaultLog, rng: random.Random,
) -> dict[str, dict[str, Any] | None]:  # fmt: skip
    """The workload under faults, then the drain; the final state of every job to check."""
    stop_load = trio.Event()
    stop_workers = trio.Event()
    embedded = embedded_options is not None
    worker_queues = (*HTTP_QUEUES, CRON_QUEUE)
    async with AsyncExitStack() as stack:
        if embedded_options is not None:
            await stack.enter_async_context(
                embedded_worker_group(plan.backend, embedded_options, ledger, plan.pace.poll_s)
            )
        async with trio.open_nursery() as nursery:
            for _ in range(plan.pace.producers):
                producer = partial(produce, embedded=embedded)
                nursery.start_soon(producer, cluster, ledger, random.Random(rng.random()),
                                   stop_load, plan.pace)  # fmt: skip
            for n in range(plan.pace.http_workers):
                worker = partial(http_worker, queues=worker_queues)
                nursery.start_soon(worker, cluster, ledger, random.Random(rng.random()),
                                   stop_workers, plan.pace, f"http-{n}")  # fmt: skip
            async with trio.open_nursery() as fault_nursery:
                fault_nursery.start_soon(kill_actors, cluster, faults, rng, plan.actor_kills,
                                         plan.seconds)  # fmt: skip
                fault_nursery.start_soon(break_things, cluster, proxies, faults, rng,
                                         plan.sigkills, plan.proxy_faults, plan.seconds)  # fmt: skip
            stop_load.set()
            for server in cluster.servers:
                if not server.up:
                    await server.start(cluster.client)
            await delete_cron(cluster)
            final = await _drain(cluster, ledger, DRAINED_QUEUES, plan.drain_s)
            stop_workers.set()
    return final


async def _get_json(cluster: Cluster, path: str) -> tuple[int, Any] | None:
    try:
        response = await cluster.client.get(f"{cluster.any_url()}{path}")
    except httpx.HTTPError:
        return None
    if response.status_code >= 500:
        return None
    return response.status_code, response.json()


async def _drain(
    cluster: Cluster, ledger: Ledger, queues: Sequence[str], seconds: float
) -> dict[str, dict[str, Any] | None]:
    """Wait until ``queues`` hold nothing waiting or running (their stats, cheap to read),
    then read every job's state, again for those not completed yet, until all are (or
    ``seconds`` passed): the last state read of each (``None``: not found; a job never
    read successfully is left out)."""
    deadline = trio.current_time() + seconds
    with trio.move_on_at(deadline):
        while True:  # polled: the servers' work raises no event in this process
            if await _queues_idle(cluster, queues):
                break
            await trio.sleep(1.0)
    final: dict[str, dict[str, Any] | None] = {}
    done: set[str] = set()
    limiter = trio.CapacityLimiter(CHECK_CONCURRENCY)

    async def read(job_id: str) -> None:
        async with limiter:
            answer = await _get_json(cluster, f"/ojs/v1/jobs/{job_id}")
        if answer is None or answer[0] not in (200, 404):
            return  # no answer: read again in the next round
        status, body = answer
        job = body.get("job") if status == 200 else None
        if job is not None and job.get("completed_at"):
            job["completed_at_ms"] = parse_timestamp(job["completed_at"], "completed_at")
        final[job_id] = job
        if job is not None and job.get("state") == "completed":
            done.add(job_id)

    while True:
        async with trio.open_nursery() as nursery:
            for job_id in ledger.to_check():
                if job_id not in done:
                    nursery.start_soon(read, job_id)
        if all(job_id in done for job_id in ledger.to_check()):
            return final
        if trio.current_time() > deadline:
            return final
        await trio.sleep(1.0)


async def _queues_idle(cluster: Cluster, queues: Sequence[str]) -> bool:
    for queue in queues:
        answer = await _get_json(cluster, f"/ojs/v1/queues/{queue}/stats")
        if answer is None or answer[0] != 200:
            return False
        stats = answer[1].get("stats", {})
        if any(stats.get(state) for state in ("available", "active", "scheduled", "retryable")):
            return False
    return True


async def _completed_events(cluster: Cluster) -> set[str]:
    seen: set[str] = set()
    after: str | None = None
    while True:
        query = "/ojs/v1/events?types=job.completed&limit=1000" + (
            f"&after={after}" if after else ""
        )
        answer = await _get_json(cluster, query)
        if answer is None:
            await trio.sleep(0.2)
            continue
        body = answer[1]
        for event in body.get("events", ()):
            job_id = (event.get("data") or {}).get("job_id") or event.get("subject")
            if job_id:
                seen.add(job_id)
        if not body.get("has_more"):
            return seen
        after = body["cursor"]


async def _workflow_steps(
    cluster: Cluster, ledger: Ledger
) -> dict[str, list[dict[str, Any]] | None]:
    found: dict[str, list[dict[str, Any]] | None] = {}
    for workflow in ledger.workflows:
        answer = None
        while answer is None:
            answer = await _get_json(cluster, f"/ojs/v1/workflows/{workflow.id}")
        view = answer[1].get("workflow", answer[1]) if answer[0] == 200 else {}
        if view.get("state") != "completed":
            found[workflow.id] = None
            continue
        steps = view.get("steps", [])
        if workflow.kind == "chain":
            steps = [
                {**step, "id": str(n), "depends_on": [str(n - 1)] if n else []}
                for n, step in enumerate(steps)
            ]
        found[workflow.id] = steps
    return found
