"""The chaos suite (``chaos/``): its smoke run on every backend, and the parts it trusts
(the ledger's checks, the fault proxy, the actor-kill hook) shown to catch what they
must."""

from __future__ import annotations

import contextlib
import json
import signal
import sys
import time
from functools import partial
from pathlib import Path

import httpx
import pytest
import trio
from serving import REPO, OjsServer

from chaos import BACKENDS
from chaos._ledger import Ledger
from chaos._proxy import HOST, FaultProxy

SMOKE_LIMIT_S = 420.0


def _job(job_id: str, attempt: int, **fields: object) -> dict[str, object]:
    return {"id": job_id, "attempt": attempt, **fields}


def test_the_ledger_flags_every_kind_of_violation() -> None:
    ledger = Ledger()
    for job_id in ("fine", "lost", "again", "unknown", "refused", "no-event", "stuck", "gone"):
        ledger.asked(job_id, "single")
    ledger.answered(["fine", "lost", "again", "no-event", "stuck", "gone"], True)
    ledger.answered(["unknown"], None)
    ledger.answered(["refused"], False)
    ledger.ran(_job("fine", 1), "w", 10, 5)
    ledger.acked("fine", 11)
    ledger.ran(_job("again", 1), "w", 10, 5)
    ledger.acked("again", 12)
    ledger.ran(_job("again", 1), "w", 20, 15)  # handed out by a fetch sent after its ack
    ledger.ran(_job("no-event", 1), "w", 10, 5)
    cron = {"cron_name": "tick", "cron_triggered_at": "2026-12-02T00:00:01.000Z"}
    ledger.ran(_job("cron-1", 1, meta=cron), "w", 10, 5)
    ledger.ran(_job("cron-2", 1, meta=cron), "w", 10, 5)  # the same slot, another job
    ledger.ran(_job("step-b", 1), "w", 30, 25)
    completed = {"state": "completed", "attempt": 1, "completed_at_ms": 50}
    final = {
        "fine": completed, "lost": None, "again": completed, "unknown": None,
        "no-event": completed, "cron-1": completed, "cron-2": completed,
        "step-a": completed, "step-b": completed,
        "stuck": {"state": "available"}, "gone": {"state": "discarded"},
    }  # fmt: skip
    steps = [
        {"id": "a", "job_id": "step-a", "depends_on": []},
        {"id": "b", "job_id": "step-b", "depends_on": ["a"]},  # ran at 30, "a" done at 50
    ]
    verdict = ledger.verdict(
        final,
        completed_events={"fine", "again", "cron-1", "cron-2", "step-b"},
        workflow_steps={"wf-1": steps, "wf-2": None},
    )
    assert not verdict.ok
    assert verdict.lost == ["lost", "gone (discarded)"]  # "unknown" was never stored
    assert verdict.unfinished == ["stuck (available)"]
    assert verdict.acked_ran_again == ["again"]
    assert verdict.ran_twice_unacked == 1  # "again" ran twice
    assert verdict.missing_completed_events == ["no-event"]
    assert verdict.duplicate_cron_slots == ["2026-12-02T00:00:01.000Z"]
    assert verdict.workflows_unfinished == ["wf-2"]
    assert verdict.workflow_order_violations == ["wf-1:b"]
    assert "refused" not in ledger.entries


def test_a_later_attempt_than_the_completing_one_is_an_acknowledged_job_run_again() -> None:
    ledger = Ledger()
    ledger.asked("job", "single")
    ledger.answered(["job"], True)
    ledger.ran(_job("job", 1), "embedded", 10, None)
    ledger.ran(_job("job", 2), "embedded", 20, None)
    verdict = ledger.verdict(
        {"job": {"state": "completed", "attempt": 1}}, {"job"}, workflow_steps={}
    )
    assert verdict.acked_ran_again == ["job"]


async def _echo(stream: trio.SocketStream) -> None:
    with contextlib.suppress(trio.BrokenResourceError):  # the proxy resets its side too
        async for data in stream:
            await stream.send_all(data)


async def _roundtrip(port: int, payload: bytes = b"ping") -> bytes:
    stream = await trio.open_tcp_stream(HOST, port)
    async with stream:
        await stream.send_all(payload)
        return await stream.receive_some(1024)


async def test_the_proxy_cuts_delays_and_resets_connections() -> None:
    async with trio.open_nursery() as nursery:
        [listener] = await nursery.start(partial(trio.serve_tcp, _echo, 0, host="127.0.0.1"))
        proxy = FaultProxy("echo", listener.socket.getsockname()[1])
        await nursery.start(proxy.run)
        assert await _roundtrip(proxy.port) == b"ping"

        held = await trio.open_tcp_stream(HOST, proxy.port)
        await held.send_all(b"a")
        assert await held.receive_some(10) == b"a"
        proxy.reset()
        with pytest.raises(trio.BrokenResourceError):
            await held.send_all(b"b")
            await held.receive_some(10)
            await held.send_all(b"c")

        with proxy.cut():
            try:
                answer = await _roundtrip(proxy.port)
            except (trio.BrokenResourceError, OSError):
                answer = b""
            assert answer == b""
        assert await _roundtrip(proxy.port) == b"ping"

        with proxy.delay(0.2):
            started = trio.current_time()
            assert await _roundtrip(proxy.port) == b"ping"
            assert trio.current_time() - started >= 0.4  # both directions held back
        nursery.cancel_scope.cancel()


def test_sigusr1_kills_an_actor_only_when_the_hook_is_armed(tmp_path: Path) -> None:
    armed = OjsServer(
        ["--backend", "memory"], tmp_path / "armed.log", env={"OJS_CHAOS_ACTOR_KILLS": "1"}
    )
    log = tmp_path / "armed.log"
    try:
        httpx.post(f"{armed.url}/ojs/v1/jobs", json={"type": "t", "args": []}).raise_for_status()
        for kills in range(1, 4):
            armed.process.send_signal(signal.SIGUSR1)
            deadline = time.monotonic() + 10
            while log.read_text().count("chaos hook: killed actor") < kills:
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.02)
        assert httpx.get(f"{armed.url}/ojs/v1/health").status_code == 200
        metrics = httpx.get(f"{armed.url}/metrics").text
    finally:
        armed.stop()
    assert 'ojs_actor_restarts_total{kind="' in metrics

    unarmed = OjsServer(["--backend", "memory"], tmp_path / "unarmed.log")
    unarmed.process.send_signal(signal.SIGUSR1)  # the default action: the process ends
    assert unarmed.process.wait(timeout=10) == -signal.SIGUSR1
    unarmed.stop()


async def test_smoke_on_every_backend(tmp_path: Path) -> None:
    """``python -m chaos --smoke`` on each backend, all at once (one process each): no job
    lost, no acknowledged job run again, every check of the ledger passed, and faults of
    every kind the backend has were injected and recovered from."""
    results: dict[str, int] = {}

    async def smoke(backend: str) -> None:
        out = tmp_path / f"{backend}.out"
        with out.open("wb") as sink:
            process = await trio.run_process(
                [sys.executable, "-m", "chaos", "--smoke", "--backend", backend,
                 "--json", str(tmp_path / f"{backend}.json"),
                 "--directory", str(tmp_path / "runs")],
                cwd=REPO, stdout=sink, stderr=sink, check=False,
            )  # fmt: skip
        results[backend] = process.returncode

    with trio.fail_after(SMOKE_LIMIT_S):
        async with trio.open_nursery() as nursery:
            for backend in BACKENDS:
                nursery.start_soon(smoke, backend)
    for backend in BACKENDS:
        output = (tmp_path / f"{backend}.out").read_text(errors="replace")
        assert results[backend] == 0, f"{backend}:\n{output[-6000:]}"
        [report] = json.loads((tmp_path / f"{backend}.json").read_text())
        assert report["ok"] and report["lost"] == 0 and report["acked_ran_again"] == 0, report
        assert report["jobs"] > 0 and report["workflows"] > 0, report
        assert report["cron_slots_fired"] > 0, report
        faults = report["faults"]
        assert faults["actor_kill"] > 0, report
        if backend != "memory":
            assert faults.get("sigkill", 0) >= 1, report
        if backend not in ("memory", "sqlite"):
            assert sum(faults.get(kind, 0) for kind in ("cut", "delay", "reset")) >= 1, report
        assert set(report["recovery_s"]) >= {kind for kind, n in faults.items() if n}, report
