"""The faults of a chaos run and the time each took to recover from.

Two loops run beside the workload until the fault phase ends:

* **actor kills**, at a steady pace (the plan's count over the phase): ``SIGUSR1`` to a
  server that is up, which kills one of its queue, cron or workflow actors;
* **process and store faults**, one at a time at random gaps, one of each kind first:
  SIGKILL of a server and its restart on the same port after 0.2-1.5 s (not on memory,
  whose jobs live in its process), and, through the store's proxies, a cut, a delay or
  a reset of the connections.

After each fault ends (the kill signal sent, the restart begun, the proxy restored) a
probe measures the time until a server affected by it completes one job end to end
(enqueue, fetch, ack on a queue of its own): the recovery time of that fault kind. Actor
kills are probed one at a time, and only while no other fault is on.
"""

from __future__ import annotations

import random
import time
from collections import defaultdict
from dataclasses import dataclass, field

import httpx
import trio

from ._proxy import FaultProxy
from ._servers import Cluster, ServerProcess
from ._workload import post

PROBE_QUEUE = "chaos-probe"
PROBE_LIMIT_S = 120.0


@dataclass
class FaultLog:
    injected: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    recovery_s: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    unrecovered: list[str] = field(default_factory=list)
    busy: bool = False
    """A process or store fault is on (actor kills are not probed meanwhile)."""


async def probe(client: httpx.AsyncClient, server: ServerProcess) -> bool:
    """One job end to end on ``server``, retried until it works (or the limit)."""
    deadline = trio.current_time() + PROBE_LIMIT_S
    while trio.current_time() < deadline:
        base = server.url
        enqueued = await post(client, f"{base}/ojs/v1/jobs", {
            "type": "chaos.probe", "args": [], "options": {"queue": PROBE_QUEUE},
        })  # fmt: skip
        if enqueued is not None and enqueued.is_success:
            fetched = await post(client, f"{base}/ojs/v1/workers/fetch", {
                "queues": [PROBE_QUEUE], "count": 10, "worker_id": "chaos-probe",
                "visibility_timeout_ms": 2_000, "wait_ms": 1_000,
            })  # fmt: skip
            if fetched is not None and fetched.is_success:
                jobs = fetched.json().get("jobs", [])
                acks = [
                    await post(client, f"{base}/ojs/v1/workers/ack", {"job_id": job["id"]})
                    for job in jobs
                ]
                if any(ack is not None and ack.is_success for ack in acks):
                    return True
        await trio.sleep(0.05)
    return False


async def _recovered(log: FaultLog, kind: str, client: httpx.AsyncClient, server: ServerProcess,
                     since: float) -> None:  # fmt: skip
    if await probe(client, server):
        log.recovery_s[kind].append(time.monotonic() - since)
    else:
        log.unrecovered.append(kind)


async def kill_actors(
    cluster: Cluster, log: FaultLog, rng: random.Random, count: int, seconds: float
) -> None:
    """About ``count`` kills spread over ``seconds`` (never past them); after a kill made
    while no other fault is on and no probe is running, a probe of its recovery (beside
    the kills, which go on at their pace)."""
    if count <= 0:
        return
    gap = seconds / count
    probing = False

    async def probe_after(server: ServerProcess) -> None:
        nonlocal probing
        probing = True
        try:
            await _recovered(log, "actor_kill", cluster.client, server, time.monotonic())
        finally:
            probing = False

    async with trio.open_nursery() as nursery:
        with trio.move_on_after(seconds):
            for _ in range(count):
                await trio.sleep(gap * rng.uniform(0.5, 1.5))
                up = [server for server in cluster.servers if server.ready]
                if not up:
                    continue
                server = rng.choice(up)
                server.kill_an_actor()
                log.injected["actor_kill"] += 1
                if not log.busy and not probing:
                    nursery.start_soon(probe_after, server)


async def break_things(
    cluster: Cluster, proxies: list[FaultProxy], log: FaultLog, rng: random.Random,
    sigkills: int, proxy_faults: int, seconds: float,
) -> None:  # fmt: skip
    """``sigkills`` restarts and ``proxy_faults`` store faults in random order, spread over
    ``seconds``."""
    store_kinds = ["cut", "delay", "reset"]
    rng.shuffle(store_kinds)
    planned = ["sigkill"] * sigkills + [
        store_kinds[n % 3] for n in range(proxy_faults if proxies else 0)
    ]
    # one of each kind first (a short run that the probes make shorter still sees each)
    kinds = list(dict.fromkeys(planned))
    distinct = len(kinds)
    rest = planned[:]
    for kind in kinds:
        rest.remove(kind)
    rng.shuffle(kinds)
    rng.shuffle(rest)
    kinds += rest
    if not kinds:
        return
    gap = seconds / (len(kinds) + 1)
    deadline = trio.current_time() + seconds
    for number, kind in enumerate(kinds):
        await trio.sleep(gap * rng.uniform(0.3, 0.9))
        if number >= distinct and trio.current_time() > deadline:
            return  # the probes took the time: the phase is over (each kind was seen)
        log.busy = True
        try:
            if kind == "sigkill":
                server = rng.choice(cluster.servers)
                await server.sigkill()
                await trio.sleep(rng.uniform(0.2, 1.5))  # down for a while
                since = time.monotonic()
                await server.start(cluster.client)
            else:
                proxy = rng.choice(proxies)
                server = rng.choice([s for s in cluster.servers if s.up] or cluster.servers)
                if kind == "reset":
                    proxy.reset()
                elif kind == "cut":
                    with proxy.cut():
                        await trio.sleep(rng.uniform(1.0, 5.0))
                else:
                    with proxy.delay(rng.uniform(0.05, 0.3)):
                        await trio.sleep(rng.uniform(1.0, 5.0))
                since = time.monotonic()
            log.injected[kind] += 1
            await _recovered(log, kind, cluster.client, server, since)
        finally:
            log.busy = False
