"""HTTP/1.1 keep-alive load generator: N connections, each sending one request after another.

It runs in a process of its own (``python -m bench._load``, a JSON spec on stdin,
a JSON result on stdout), so the server it measures has the other core to itself.
It is kept much cheaper per request than any server it measures: one precomputed
request, non-blocking sockets on one ``selectors`` loop, and a response parser that
reads only the status line and ``Content-Length``. Everything here is the standard
library, so the process starts in a few tens of milliseconds.

Every load is bounded by a request count and by a time limit, and stops by itself.
"""

from __future__ import annotations

import base64
import json
import selectors
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ._results import percentile

RECEIVE_BYTES = 256 * 1024
DRAIN_GRACE_S = 30.0  # how long responses still in flight may take after the time limit


class ProtocolError(Exception):
    """The server answered something this minimal parser does not handle."""


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    body_start: int  # offset of the body in the buffer
    end: int  # offset just past the body: the whole response's length
    closes: bool  # "Connection: close": the server ends the connection after it


def parse_response(buffer: bytes | bytearray) -> Response | None:
    """The first response in ``buffer`` once all of it has arrived, else None.

    Needs a ``Content-Length``: chunked bodies are refused (servers send a length
    for the fixed-size bodies measured here).
    """
    head_end = buffer.find(b"\r\n\r\n")
    if head_end < 0:
        return None
    if not buffer.startswith(b"HTTP/1."):
        raise ProtocolError(f"not an HTTP/1.x response: {bytes(buffer[:40])!r}")
    try:
        status = int(buffer[9:12])
    except ValueError:
        raise ProtocolError(f"bad status line: {bytes(buffer[:40])!r}") from None
    head = bytes(buffer[:head_end]).lower()
    at = head.find(b"\r\ncontent-length:")
    if at < 0:
        raise ProtocolError("response without Content-Length")
    line_end = head.find(b"\r\n", at + 2)
    length = int(head[at + 17 : line_end if line_end >= 0 else head_end])
    body_start = head_end + 4
    end = body_start + length
    if len(buffer) < end:
        return None
    return Response(status, body_start, end, b"\r\nconnection: close" in head)


def build_request(
    method: str, path: str, body: bytes = b"", *, host: str = "127.0.0.1", port: int = 80
) -> bytes:
    """One keep-alive HTTP/1.1 request, JSON body if any."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}:{port}"]
    if body or method in ("POST", "PUT", "PATCH"):
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


@dataclass(frozen=True, slots=True)
class LoadSpec:
    host: str
    port: int
    request: bytes  # sent as is, again and again
    connections: int
    max_requests: int  # in the measured phase, over all connections
    max_seconds: float  # of the measured phase; responses in flight are then awaited
    warmup_seconds: float = 0.0  # same load first, not recorded
    ok_statuses: tuple[int, ...] = (200, 201)

    def to_json(self) -> str:
        fields = asdict(self)
        fields["request"] = base64.b64encode(self.request).decode()
        return json.dumps(fields)

    @classmethod
    def from_json(cls, text: str) -> LoadSpec:
        fields = json.loads(text)
        fields["request"] = base64.b64decode(fields["request"])
        fields["ok_statuses"] = tuple(fields["ok_statuses"])
        return cls(**fields)


@dataclass(slots=True)
class LoadResult:
    requests: int  # completed in the measured phase
    failures: int  # of those, answered with a status not in ok_statuses
    elapsed_s: float  # first request sent to last response received
    p50_ms: float
    p99_ms: float
    client_cpu: float  # the generator's CPU seconds per elapsed second (1.0 = one core)
    reconnects: int  # connections the server closed (Hypercorn: after 1000 requests each)
    statuses: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        return asdict(self)

    @property
    def per_s(self) -> float:
        return self.requests / self.elapsed_s if self.elapsed_s > 0 else 0.0


class _Connection:
    __slots__ = ("sock", "outgoing", "incoming", "sent_at", "busy")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.outgoing = memoryview(b"")
        self.incoming = bytearray()
        self.sent_at = 0.0
        self.busy = False


def _connect(spec: LoadSpec) -> socket.socket:
    sock = socket.create_connection((spec.host, spec.port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setblocking(False)
    return sock


def _drive(
    connections: list[_Connection],
    selector: selectors.BaseSelector,
    spec: LoadSpec,
    max_requests: int,
    seconds: float,
    latencies: list[float] | None,
    statuses: dict[int, int],
) -> tuple[float, int]:
    """Send requests back to back on every connection until the count or the time is used
    up, then wait for the answers still in flight. Returns the elapsed seconds and the
    number of connections the server closed (each is opened again, as a client would)."""
    reconnects = 0
    request = spec.request
    issued = 0
    in_flight = 0
    started = time.perf_counter()
    deadline = started + seconds
    hard_deadline = deadline + DRAIN_GRACE_S
    last_response = started

    def send(connection: _Connection) -> None:
        nonlocal issued, in_flight
        issued += 1
        in_flight += 1
        connection.busy = True
        connection.sent_at = time.perf_counter()
        try:
            sent = connection.sock.send(request)
        except BlockingIOError:
            sent = 0
        if sent < len(request):
            connection.outgoing = memoryview(request)[sent:]
            selector.modify(
                connection.sock, selectors.EVENT_READ | selectors.EVENT_WRITE, connection
            )

    for idle in connections:
        if issued < max_requests:
            send(idle)
    while in_flight:
        now = time.perf_counter()
        if now >= hard_deadline:
            raise TimeoutError(
                f"{in_flight} responses still missing {DRAIN_GRACE_S} s after the end"
            )
        for key, mask in selector.select(timeout=min(0.5, hard_deadline - now)):
            connection: _Connection = key.data
            if mask & selectors.EVENT_WRITE and connection.outgoing:
                try:
                    sent = connection.sock.send(connection.outgoing)
                except BlockingIOError:
                    sent = 0
                connection.outgoing = connection.outgoing[sent:]
                if not connection.outgoing:
                    selector.modify(connection.sock, selectors.EVENT_READ, connection)
            if not mask & selectors.EVENT_READ:
                continue
            data = connection.sock.recv(RECEIVE_BYTES)
            if not data:
                raise ProtocolError("the server closed a connection")
            connection.incoming += data
            response = parse_response(connection.incoming)
            if response is None:
                continue
            if len(connection.incoming) > response.end:
                raise ProtocolError("more bytes than one response: the server answered unasked")
            last_response = time.perf_counter()
            if latencies is not None:
                latencies.append(last_response - connection.sent_at)
            statuses[response.status] = statuses.get(response.status, 0) + 1
            connection.incoming.clear()
            connection.busy = False
            if response.closes:
                reconnects += 1
                selector.unregister(connection.sock)
                connection.sock.close()
                connection.sock = _connect(spec)
                selector.register(connection.sock, selectors.EVENT_READ, connection)
            in_flight -= 1
            if issued < max_requests and last_response < deadline:
                send(connection)
    return last_response - started, reconnects


def generate_load(spec: LoadSpec) -> LoadResult:
    """Run ``spec`` from this process (``run_load`` runs it in a process of its own)."""
    selector = selectors.DefaultSelector()
    connections: list[_Connection] = []
    try:
        for _ in range(spec.connections):
            connection = _Connection(_connect(spec))
            selector.register(connection.sock, selectors.EVENT_READ, connection)
            connections.append(connection)
        if spec.warmup_seconds > 0:
            _drive(connections, selector, spec, sys.maxsize, spec.warmup_seconds, None, {})
        latencies: list[float] = []
        statuses: dict[int, int] = {}
        cpu_before = time.process_time()
        elapsed, reconnects = _drive(
            connections, selector, spec, spec.max_requests, spec.max_seconds, latencies, statuses
        )
        cpu = time.process_time() - cpu_before
    finally:
        for connection in connections:
            connection.sock.close()
        selector.close()
    latencies.sort()
    return LoadResult(
        requests=len(latencies),
        failures=sum(n for status, n in statuses.items() if status not in spec.ok_statuses),
        elapsed_s=elapsed,
        p50_ms=percentile(latencies, 50) * 1000,
        p99_ms=percentile(latencies, 99) * 1000,
        client_cpu=cpu / elapsed if elapsed > 0 else 0.0,
        reconnects=reconnects,
        statuses={str(status): n for status, n in sorted(statuses.items())},
    )


def run_load(spec: LoadSpec) -> LoadResult:
    """Run ``spec`` in a fresh process of its own and return what it measured."""
    limit = spec.warmup_seconds + spec.max_seconds + 2 * DRAIN_GRACE_S + 30
    finished = subprocess.run(
        [sys.executable, "-m", "bench._load"],
        input=spec.to_json(),
        capture_output=True,
        text=True,
        timeout=limit,
        check=False,
        cwd=Path(__file__).resolve().parent.parent,
    )
    if finished.returncode != 0:
        raise RuntimeError(f"load generator failed: {finished.stderr.strip()[-2000:]}")
    return LoadResult(**json.loads(finished.stdout))


def main() -> None:
    result = generate_load(LoadSpec.from_json(sys.stdin.read()))
    json.dump(result.as_dict(), sys.stdout)


if __name__ == "__main__":
    main()
