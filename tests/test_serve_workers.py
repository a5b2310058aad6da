"""``ojs-actors serve --workers N``: real processes, one port.

The parent (``OjsServer.process``) binds the port and supervises N children, each a
whole server over the shared backend. These tests find the children through ``/proc``
(the processes whose parent is the server) and tell them apart by the process id the
access log and the ``ojs_actors.*`` log lines carry.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from serving import NATS_BATCH_MAX, REPO, OjsServer, nats_env

from ojs_actors.cli import build_parser
from ojs_actors.http.workers import child_command, describe_exit

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="finds the worker processes through /proc"
)

CLOSE = {"Connection": "close"}
"""A new connection per request, so that requests spread over the children."""


def process_state(pid: int) -> str | None:
    """The ``/proc`` state letter of ``pid`` (``None`` once it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return stat.rpartition(")")[2].split()[0]


def alive(pid: int) -> bool:
    return process_state(pid) not in (None, "Z", "X")


def children(pid: int) -> set[int]:
    """The live processes whose parent is ``pid``."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if int(fields[1]) == pid and fields[0] not in ("Z", "X"):
            found.add(int(entry.name))
    return found


def serving_pids(log: Path) -> set[int]:
    """The processes that logged that they serve."""
    text = log.read_text(errors="replace")
    return {int(pid) for pid in re.findall(r"ojs_actors\.serve\[(\d+)\]: ojs-actors serving", text)}


def handled_by(log: Path, request: str) -> list[int]:
    """The process of every access-log line of ``request`` (e.g. ``POST /ojs/v1/jobs``)
    that got a response."""
    text = log.read_text(errors="replace")
    pattern = rf"\[(\d+)\] \[INFO\] \S+ - - \[[^]]*\] \"{re.escape(request)} [^\"]*\" \d{{3}}"
    return [int(pid) for pid in re.findall(pattern, text)]


def wait_for_children(server: OjsServer, count: int, timeout: float = 30.0) -> set[int]:
    """The ``count`` children of ``server``, once each of them serves."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = children(server.process.pid)
        if len(pids) == count and pids <= serving_pids(server.log_path):
            return pids
        assert server.process.poll() is None, server.log_path.read_text(errors="replace")
        time.sleep(0.05)
    raise TimeoutError(f"not {count} serving children: {server.log_path.read_text()}")


def wait_gone(pids: set[int], timeout: float) -> set[int]:
    """The processes of ``pids`` still alive after up to ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(alive(pid) for pid in pids):
        time.sleep(0.05)
    return {pid for pid in pids if alive(pid)}


def enqueue(client: httpx.Client, queue: str, n: int) -> str:
    response = client.post(
        "/ojs/v1/jobs", json={"type": "workers.test", "args": [n], "options": {"queue": queue}}
    )
    assert response.status_code == 201, response.text
    job_id: str = response.json()["job"]["id"]
    return job_id


def enqueue_once(url: str, queue: str) -> None:
    with httpx.Client(base_url=url, timeout=10, headers=CLOSE) as client:
        enqueue(client, queue, 0)


def fetch_all(client: httpx.Client, queue: str) -> list[str]:
    """Fetch until the queue gives nothing more; every job fetched is acked."""
    fetched: list[str] = []
    while True:
        response = client.post(
            "/ojs/v1/workers/fetch",
            json={"queues": [queue], "count": 50, "worker_id": "test-worker"},
        )
        assert response.status_code == 200, response.text
        jobs = [job["id"] for job in response.json()["jobs"]]
        if not jobs:
            return fetched
        fetched += jobs
        for job_id in jobs:
            response = client.post("/ojs/v1/workers/ack", json={"job_id": job_id})
            assert response.status_code == 200, response.text


def assert_no_traceback(log: Path) -> None:
    text = log.read_text(errors="replace")
    assert "Traceback" not in text, f"a process logged an error:\n{text}"


@pytest.fixture
def sqlite_workers(tmp_path: Path) -> Iterator[OjsServer]:
    """``serve --workers 2 --backend sqlite``, both children serving."""
    server = OjsServer(
        ["--workers", "2", "--backend", "sqlite", "--db", str(tmp_path / "ojs.db"),
         "--access-log"],
        tmp_path / "server.log",
        poll_interval=0.2,
    )  # fmt: skip
    try:
        wait_for_children(server, 2)
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["sqlite", "redis", "nats"])
def shared_workers(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OjsServer]:
    """``serve --workers 2`` over sqlite, then over redis, then over nats, both children
    serving."""
    if request.param == "sqlite":
        yield request.getfixturevalue("sqlite_workers")
        return
    if request.param == "nats":  # a stream of this test alone on the session's nats-server
        options = request.getfixturevalue("nats_options")
        env = nats_env(options["url"], options)
    else:
        env = {"REDIS_URL": request.getfixturevalue("redis_url")}
    server = OjsServer(
        ["--workers", "2", "--backend", request.param, "--access-log"],
        tmp_path / "server.log",
        env=env,
        poll_interval=0.2,
    )
    try:
        wait_for_children(server, 2)
        yield server
    finally:
        server.stop()


def test_the_cli_reads_workers_from_the_flag_and_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert build_parser().parse_args(["serve"]).workers == 1
    assert build_parser().parse_args(["serve", "--workers", "3"]).workers == 3
    monkeypatch.setenv("OJS_WORKERS", "4")
    assert build_parser().parse_args(["serve"]).workers == 4
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--workers", "0"])
    # a child gets the parent's arguments, and the last --workers wins
    command = child_command(["serve", "--workers", "2", "--backend", "sqlite"], 7, 9)
    args = build_parser().parse_args(command[3:])
    assert (args.workers, args.listen_fd, args.parent_fd, args.backend) == (1, 7, 9, "sqlite")
    assert describe_exit(-signal.SIGKILL) == "was killed by SIGKILL"
    assert describe_exit(3) == "exited with code 3"


def test_two_workers_serve_one_port_over_sqlite(sqlite_workers: OjsServer) -> None:
    server = sqlite_workers
    pids = children(server.process.pid)
    with httpx.Client(base_url=server.url, timeout=10, headers=CLOSE) as client:
        enqueued = {enqueue(client, "both", n) for n in range(30)}
        fetched = fetch_all(client, "both")
        assert sorted(fetched) == sorted(enqueued)  # each job fetched once, whoever served it
        # Connections go to whichever child accepts first: on a busy machine one child can
        # take every sequential connection, so send them 16 at a time until both have.
        for _ in range(20):
            if set(handled_by(server.log_path, "POST /ojs/v1/jobs")) == pids:
                break
            senders = [
                threading.Thread(target=enqueue_once, args=(server.url, "spread"))
                for _ in range(16)
            ]
            for sender in senders:
                sender.start()
            for sender in senders:
                sender.join(timeout=30)
    for request in ("POST /ojs/v1/jobs", "POST /ojs/v1/workers/fetch"):
        assert set(handled_by(server.log_path, request)) <= pids
    assert set(handled_by(server.log_path, "POST /ojs/v1/jobs")) == pids
    assert children(server.process.pid) == pids
    assert_no_traceback(server.log_path)


def test_a_killed_worker_is_restarted_and_no_acknowledged_job_is_lost(
    shared_workers: OjsServer,
) -> None:
    server = shared_workers
    first = children(server.process.pid)
    enqueued: set[str] = set()
    answered_at: list[float] = []
    lock = threading.Lock()
    stop = threading.Event()

    def produce(number: int) -> None:
        with httpx.Client(base_url=server.url, timeout=10, headers=CLOSE) as client:
            n = 0
            while not stop.is_set():
                n += 1
                try:
                    job_id = enqueue(client, "kill", number * 100_000 + n)
                except httpx.TransportError:  # in flight at the kill: either outcome is right
                    continue
                with lock:
                    enqueued.add(job_id)
                    answered_at.append(time.monotonic())

    with httpx.Client(base_url=server.url, timeout=10, headers=CLOSE) as client:
        before = {enqueue(client, "kill", -n) for n in range(1, 21)}
    threads = [threading.Thread(target=produce, args=(n,), daemon=True) for n in range(3)]
    for thread in threads:
        thread.start()
    try:
        deadline = time.monotonic() + 10
        while len(enqueued) < 30 and time.monotonic() < deadline:
            time.sleep(0.01)
        victim = min(first)
        killed_at = time.monotonic()
        os.kill(victim, signal.SIGKILL)
        assert wait_gone({victim}, 10) == set()
        after = wait_for_children(server, 2)
        restarted_at = time.monotonic()
        assert victim not in after and len(after - first) == 1
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and sum(t > restarted_at for t in answered_at) < 30:
            time.sleep(0.01)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=15)

    # the port kept answering, while one worker was gone and once it was back
    assert any(killed_at < t < restarted_at for t in answered_at), "no answer while restarting"
    assert sum(t > restarted_at for t in answered_at) >= 30
    with httpx.Client(base_url=server.url, timeout=10, headers=CLOSE) as client:
        fetched = fetch_all(client, "kill")
    assert len(fetched) == len(set(fetched)), "a job was fetched twice"
    assert before | enqueued <= set(fetched), "a job enqueued with a 2xx was lost"
    text = server.log_path.read_text(errors="replace")
    assert f"(pid {victim}) was killed by SIGKILL; restarting it" in text
    assert_no_traceback(server.log_path)


def test_sigterm_stops_every_worker_and_exits_0(sqlite_workers: OjsServer) -> None:
    server = sqlite_workers
    pids = children(server.process.pid)
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(timeout=30) == 0
    assert wait_gone(pids, 5) == set()
    text = server.log_path.read_text(errors="replace")
    for pid in pids:
        assert f"ojs_actors.serve[{pid}]: received SIGTERM, shutting down" in text
    assert "all worker processes stopped" in text
    assert_no_traceback(server.log_path)
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{server.url}/ojs/v1/health", timeout=2)


def test_workers_stop_by_themselves_when_the_parent_is_killed(
    sqlite_workers: OjsServer,
) -> None:
    server = sqlite_workers
    pids = children(server.process.pid)
    server.kill()
    assert wait_gone(pids, 20) == set(), "a worker outlived its parent"
    text = server.log_path.read_text(errors="replace")
    for pid in pids:
        assert f"ojs_actors.serve[{pid}]: the supervising process is gone" in text


def test_workers_that_keep_dying_stop_the_server_with_an_error(tmp_path: Path) -> None:
    (tmp_path / "a-directory").mkdir()  # not a database file: every child fails to start
    result = subprocess.run(
        [sys.executable, "-m", "ojs_actors", "serve", "--workers", "2", "--backend", "sqlite",
         "--db", str(tmp_path / "a-directory"), "--host", "127.0.0.1", "--port", "0"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    assert "restarts in the last 30 s (at most 5): giving up" in result.stderr
    assert result.stderr.count("restarting it") == 5


def test_the_memory_backend_refuses_several_workers() -> None:
    for args, env in [
        (["--workers", "2", "--backend", "memory"], {}),
        (["--backend", "memory"], {"OJS_WORKERS": "2"}),
    ]:
        result = subprocess.run(
            [sys.executable, "-m", "ojs_actors", "serve", *args, "--port", "0"],
            cwd=REPO, capture_output=True, text=True, timeout=60,
            env={**os.environ, **env},
        )  # fmt: skip
        assert result.returncode == 2, result.stderr
        assert "each worker process would have its own memory" in result.stderr
        assert "Use --backend sqlite or --backend redis or --backend nats" in result.stderr


def test_a_port_in_use_fails_before_any_worker_starts(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "ojs_actors", "serve", "--workers", "2", "--backend",
             "sqlite", "--db", str(tmp_path / "ojs.db"), "--host", "127.0.0.1",
             "--port", str(port)],
            cwd=REPO, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert result.returncode == 1, result.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "worker 0 started" not in result.stderr


def backend_flags(backend: str, request: pytest.FixtureRequest) -> list[str]:
    """``--backend`` and the store's flags (which the children inherit)."""
    if backend == "redis":
        return ["--backend", "redis", "--redis-url", request.getfixturevalue("redis_url")]
    options: dict[str, Any] = request.getfixturevalue("nats_options")
    return ["--backend", "nats", "--nats-url", options["url"],
            "--nats-stream", options["stream"], "--nats-prefix", options["prefix"],
            "--nats-storage", options["storage"], "--nats-batch-max", NATS_BATCH_MAX]  # fmt: skip


@pytest.mark.parametrize("backend", ["redis", "nats"])
def test_two_workers_over_a_networked_backend(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    server = OjsServer(
        [*backend_flags(backend, request), "--workers", "2", "--access-log"],
        tmp_path / "server.log",
        poll_interval=0.2,
    )
    queue = f"{backend}-both"
    try:
        pids = wait_for_children(server, 2)
        with httpx.Client(base_url=server.url, timeout=10, headers=CLOSE) as client:
            enqueued = {enqueue(client, queue, n) for n in range(20)}
            fetched = fetch_all(client, queue)
            assert sorted(fetched) == sorted(enqueued)
            response = client.get(f"/ojs/v1/jobs/{fetched[0]}")
            assert response.json()["job"]["state"] == "completed"
            stats = client.get(f"/ojs/v1/queues/{queue}/stats").json()["stats"]
            by_state = {state: n for state, n in stats.items() if state not in ("queue", "depth")}
            assert {state: n for state, n in by_state.items() if n} == {"completed": 20}
        assert set(handled_by(server.log_path, "POST /ojs/v1/jobs")) <= pids
    finally:
        server.stop()
    assert server.process.returncode == 0
    assert wait_gone(pids, 5) == set()
    assert_no_traceback(server.log_path)
