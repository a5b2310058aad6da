"""Scenario 7: ojs-actors' Redis client beside a raw RESP exchange, one round trip at a time.

In one fresh process per run, against one redis-server, four subjects each make
sequential calls on one connection, timed call by call (``perf_counter_ns``):

* ``client EVALSHA``: ``RedisClient.evalsha`` of a trivial loaded script
  (``return ARGV[1]``, one argument), the call every write of the backend makes;
* ``raw EVALSHA``: the same ``EVALSHA sha 0 x``, its bytes packed once beforehand, sent
  with ``send_all`` on a plain trio TCP stream and its reply read with a
  ``hiredis.Reader`` (UTF-8 replies, as the client's): the least a trio program can do
  for that round trip;
* ``client PING`` (``RedisClient.execute("PING")``) and ``raw PING``, the same way.

After a warm-up of every subject, the calls run in ``blocks`` blocks of ``calls`` per
subject, the subjects' order rotating from block to block, so that noise hits all of
them alike. A subject's figure is the median round trip of all its timed calls; the
ratio of the client's median over the raw exchange's is the client's overhead (target
≤ 1.5).

    python -m bench._redis_client --port 6379 --calls 2000 --blocks 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import hiredis
import trio

from ._config import BenchConfig
from ._outcome import Outcome, Progress
from ._results import ratio_of
from ._servers import HOST, ServerGroup

SCENARIO = "redis_client"
TARGET_CLIENT_OVER_RAW = 1.5
SCRIPT = "return ARGV[1]"
COMMANDS = ("EVALSHA", "PING")
SIDES = ("client", "raw")
SUBJECTS = tuple(f"{side} {command}" for command in COMMANDS for side in SIDES)
METRIC = "round trip µs"
MEASURE_LIMIT_S = 120.0
"""The most one run's process may take, start-up included."""


def subject(side: str, command: str) -> str:
    return f"{side} {command}"


class RawResp:
    """The minimal RESP exchange: one trio stream, pre-packed request bytes, a hiredis
    reader."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.reader = hiredis.Reader(encoding="utf-8")

    async def call(self, payload: bytes) -> Any:
        await self.stream.send_all(payload)
        reader = self.reader
        while (reply := reader.gets()) is False:
            data = await self.stream.receive_some(65_536)
            if not data:
                raise trio.BrokenResourceError("Redis closed the connection")
            reader.feed(data)
        return reply


def _pack(*words: Any) -> bytes:
    """One command in RESP, as the client packs it."""
    packed: bytes = hiredis.pack_command(tuple(words))
    return packed


async def _timed(call: Callable[[], Awaitable[Any]], expected: Any, calls: int) -> list[float]:
    """``calls`` sequential calls; each one's round trip in µs."""
    samples: list[float] = []
    clock = time.perf_counter_ns
    for _ in range(calls):
        started = clock()
        reply = await call()
        samples.append((clock() - started) / 1000.0)
        if reply != expected:
            raise RuntimeError(f"unexpected reply {reply!r}, wanted {expected!r}")
    return samples


async def measure(port: int, calls: int, blocks: int, warmup: int) -> dict[str, Any]:
    """Every subject's median round trip (µs) over ``blocks`` x ``calls`` timed calls, and
    the median of each block, by subject."""
    from ojs_actors.backends.redis.client import RedisClient, script_sha

    sha = script_sha(SCRIPT)
    client = RedisClient(f"redis://{HOST}:{port}/0")
    stream = await trio.open_tcp_stream(HOST, port)
    try:
        raw = RawResp(stream)
        loaded = await raw.call(_pack("SCRIPT", "LOAD", SCRIPT))
        if loaded != sha:
            raise RuntimeError(f"SCRIPT LOAD answered {loaded!r}, not {sha}")
        evalsha = _pack("EVALSHA", sha, 0, "x")
        ping = _pack("PING")
        plan: dict[str, tuple[Callable[[], Awaitable[Any]], Any]] = {
            subject("client", "EVALSHA"): (lambda: client.evalsha(SCRIPT, sha, ("x",)), "x"),
            subject("raw", "EVALSHA"): (lambda: raw.call(evalsha), "x"),
            subject("client", "PING"): (lambda: client.execute("PING"), "PONG"),
            subject("raw", "PING"): (lambda: raw.call(ping), "PONG"),
        }
        for call, expected in plan.values():
            await _timed(call, expected, warmup)
        samples: dict[str, list[float]] = {name: [] for name in plan}
        block_medians: dict[str, list[float]] = {name: [] for name in plan}
        names = list(plan)
        for block in range(blocks):
            shift = block % len(names)
            for name in names[shift:] + names[:shift]:
                block_samples = await _timed(*plan[name], calls)
                samples[name] += block_samples
                block_medians[name].append(statistics.median(block_samples))
    finally:
        await client.aclose()
        await stream.aclose()
    return {
        "median_us": {name: statistics.median(values) for name, values in samples.items()},
        "block_median_us": block_medians,
        "calls": calls,
        "blocks": blocks,
        "warmup": warmup,
        "round_trips_counted": client.round_trips,
    }


def measure_isolated(port: int, calls: int, blocks: int, warmup: int) -> dict[str, Any]:
    """:func:`measure` in a fresh process, bounded by :data:`MEASURE_LIMIT_S`."""
    command = [sys.executable, "-m", "bench._redis_client", "--port", str(port),
               "--calls", str(calls), "--blocks", str(blocks), "--warmup", str(warmup)]  # fmt: skip
    finished = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=MEASURE_LIMIT_S,
        check=False,
        cwd=Path(__file__).resolve().parent.parent,
    )
    if finished.returncode != 0 or not finished.stdout.strip():
        raise RuntimeError(finished.stderr.strip()[-1500:] or "no output")
    result: dict[str, Any] = json.loads(finished.stdout.strip().splitlines()[-1])
    return result


def run_redis_client(config: BenchConfig, progress: Progress) -> Outcome:
    sizes = config.sizes
    outcome = Outcome(SCENARIO, "7. Redis client round trip beside a raw RESP exchange")
    with ServerGroup("redis-client") as group:
        redis = group.redis()
        group.wait_ready()
        for run in range(sizes.runs):
            progress(f"{SCENARIO}: run {run + 1}/{sizes.runs}")
            try:
                result = measure_isolated(
                    redis.port, sizes.rtt_calls, sizes.rtt_blocks, sizes.rtt_warmup
                )
            except (RuntimeError, subprocess.TimeoutExpired) as error:
                outcome.notes.append(f"run {run + 1} failed: {str(error)[-500:]}")
                result = {"median_us": {}}
            outcome.runs.append({"run": run, **result})
            for name in SUBJECTS:
                value = float(result["median_us"].get(name, float("nan")))
                outcome.series_of(name, METRIC).values.append(value)
    for command in COMMANDS:
        outcome.ratios.append(
            ratio_of(
                outcome.series_of(subject("client", command), METRIC),
                outcome.series_of(subject("raw", command), METRIC),
                f"Redis client / raw RESP round trip, {command}",
                TARGET_CLIENT_OVER_RAW,
                at_most=True,
            )
        )
    outcome.notes.append(
        f"each run: a fresh process, one connection per side, {sizes.rtt_warmup} warm-up calls "
        f"per subject, then {sizes.rtt_blocks} blocks of {sizes.rtt_calls} sequential calls "
        "per subject, the order rotating by block; figure = median of every timed call. "
        "client = RedisClient.evalsha of a loaded 'return ARGV[1]' (and .execute('PING')); "
        "raw = the same command's bytes packed once, send_all on a plain trio TCP stream, "
        "the reply read with a hiredis.Reader"
    )
    return outcome


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True, help="redis-server on 127.0.0.1")
    parser.add_argument("--calls", type=int, default=2000, help="calls per subject per block")
    parser.add_argument("--blocks", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=200, help="untimed calls per subject")
    args = parser.parse_args(argv)
    result = trio.run(measure, args.port, args.calls, args.blocks, args.warmup)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
