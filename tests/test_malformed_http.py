"""Malformed HTTP over raw sockets against real ``ojs-actors serve`` processes.

Each case sends something no well-behaved client sends (truncated or mis-sized bodies,
huge headers, a body dribbled a byte at a time, bytes that are not UTF-8, JSON nested
100,000 deep, broken chunked encoding, a garbage request line). After each, the server
must still answer ``GET /ojs/v1/health`` on a fresh connection; where it answers the
malformed request, the answer is a 4xx, never a 5xx, and carries the OJS error body
whenever the app (not Hypercorn's HTTP parser, which answers bare 4xx) answered it.
Every wait is bounded by a socket timeout. Both HTTP paths are covered.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from serving import OjsServer

MEDIA_TYPE = "application/openjobspec+json"
SOCKET_TIMEOUT = 5.0  # seconds; no exchange waits longer for a byte
ENQUEUE = b'{"type": "test.malformed", "args": []}'


@dataclass
class Answer:
    status: int
    headers: dict[str, str]  # lowercase names
    body: bytes

    @property
    def from_app(self) -> bool:
        """Whether the app answered: it stamps OJS-Version on every answer, Hypercorn does not."""
        return "ojs-version" in self.headers

    def error(self) -> dict[str, Any]:
        """The OJS error of this answer, checked against ojs-http-binding §16.1."""
        assert self.headers.get("content-type") == MEDIA_TYPE, self
        error = json.loads(self.body)["error"]
        assert isinstance(error["code"], str) and error["code"], error
        assert isinstance(error["message"], str) and error["message"], error
        assert isinstance(error["retryable"], bool), error
        return dict(error)


@pytest.fixture(autouse=True)
def still_serving(memory_server: OjsServer) -> Iterator[None]:
    """After each case: a fresh connection is served, and the server logged no crash."""
    log_size = memory_server.log_path.stat().st_size
    yield
    health = exchange(memory_server, request_bytes("GET", "/ojs/v1/health"))
    assert health is not None and health.status == 200, health
    with memory_server.log_path.open("rb") as log:
        log.seek(log_size)
        logged = log.read().decode(errors="replace")
    assert "Traceback" not in logged, logged


def request_bytes(
    method: str,
    path: str,
    body: bytes = b"",
    headers: Iterable[tuple[str, str]] = (),
    *,
    close: bool = True,
) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
    lines += ["Connection: close"] if close else []
    lines += [f"{name}: {value}" for name, value in headers]
    if body and not any(name.lower() == "content-length" for name, _ in headers):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def json_post(path: str, body: bytes, *, close: bool = True, **extra: str) -> bytes:
    headers = [("Content-Type", MEDIA_TYPE), *extra.items()]
    return request_bytes("POST", path, body, headers, close=close)


def exchange(
    server: OjsServer,
    *chunks: bytes,
    pause: float = 0.0,
    half_close: bool = False,
) -> Answer | None:
    """Send ``chunks`` (``pause`` seconds apart) on a new connection and read the answer;
    ``None`` if the server closed the connection without one. ``half_close`` ends the
    sending side, for requests the server would otherwise wait to see the rest of."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=SOCKET_TIMEOUT) as conn:
        try:
            for chunk in chunks:
                conn.sendall(chunk)
                time.sleep(pause)
            if half_close:
                conn.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server gave up on us mid-request: read what it said, if anything
        return read_answer(conn)


def read_answer(conn: socket.socket) -> Answer | None:
    received = b""
    while b"\r\n\r\n" not in received:
        chunk = _recv(conn)
        if not chunk:
            assert not received, f"connection closed mid-answer: {received!r}"
            return None
        received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = _recv(conn)
        assert chunk, f"connection closed {length - len(body)} bytes short of the answer"
        body += chunk
    return Answer(int(status_line.split()[1]), headers, body[:length])


def _recv(conn: socket.socket) -> bytes:
    try:
        return conn.recv(65536)
    except ConnectionResetError:
        return b""
    except TimeoutError:
        raise AssertionError(f"no answer within {SOCKET_TIMEOUT} s: the server hangs") from None


def assert_refused(answer: Answer | None, *, by_app: bool = False) -> Answer | None:
    """A 4xx, or no answer at all (the connection closed); the OJS error body when the app
    answered. ``by_app``: the request reaches the app, so the answer must come from it."""
    if answer is None:
        assert not by_app, "the server closed the connection without an answer"
        return None
    assert 400 <= answer.status < 500, answer
    if by_app:
        assert answer.from_app, answer
    return assert_no_server_error(answer)


def assert_no_server_error(answer: Answer | None) -> Answer | None:
    """Any answer but a 5xx (or none); an app's 4xx carries the OJS error body."""
    if answer is not None:
        assert answer.status < 500, answer
        if answer.status >= 400 and answer.from_app:
            answer.error()
    return answer


# -- bodies that do not match their Content-Length ---------------------------------------


@pytest.mark.parametrize("path", ["/ojs/v1/jobs", "/ojs/v1/workers/heartbeat", "/ojs/v1/nowhere"])
def test_truncated_body_then_close(memory_server: OjsServer, path: str) -> None:
    """Content-Length promises more than arrives before the client hangs up."""
    with socket.create_connection(
        ("127.0.0.1", memory_server.port), timeout=SOCKET_TIMEOUT
    ) as conn:
        conn.sendall(json_post(path, ENQUEUE[:10], **{"Content-Length": "100"}))


@pytest.mark.parametrize("path", ["/ojs/v1/jobs", "/ojs/v1/workers/heartbeat"])
def test_truncated_body_then_half_close(memory_server: OjsServer, path: str) -> None:
    """As above, but the client still listens: a 4xx, or a closed connection."""
    sent = json_post(path, ENQUEUE[:10], **{"Content-Length": "100"})
    assert_refused(exchange(memory_server, sent, half_close=True))


@pytest.mark.parametrize("path", ["/ojs/v1/jobs", "/ojs/v1/cron"])
def test_content_length_shorter_than_the_body(memory_server: OjsServer, path: str) -> None:
    """The app reads the declared 10 bytes, which are not a JSON document, and answers
    first (the rest is the next request, on a kept-alive connection)."""
    sent = json_post(path, ENQUEUE, close=False, **{"Content-Length": "10"})
    assert_refused(exchange(memory_server, sent), by_app=True)


@pytest.mark.parametrize("length", ["abc", "-5", "10, 20", "99999999999999999999999"])
def test_content_length_that_is_no_length(memory_server: OjsServer, length: str) -> None:
    answer = exchange(
        memory_server, json_post("/ojs/v1/jobs", ENQUEUE, **{"Content-Length": length})
    )
    assert_refused(answer)


def test_conflicting_content_lengths(memory_server: OjsServer) -> None:
    sent = json_post("/ojs/v1/jobs", ENQUEUE).replace(
        b"\r\n\r\n", f"\r\nContent-Length: {len(ENQUEUE) + 1}\r\n\r\n".encode(), 1
    )
    assert_refused(exchange(memory_server, sent))


def test_body_larger_than_the_limit_is_read_and_refused(memory_server: OjsServer) -> None:
    """2 MiB against the 1 MiB default limit, sent whole: refused (413) once read, and the
    connection stays usable (the body was drained, not left unread)."""
    body = b"[" * (2 * 1024 * 1024)
    with socket.create_connection(
        ("127.0.0.1", memory_server.port), timeout=SOCKET_TIMEOUT
    ) as conn:
        conn.sendall(json_post("/ojs/v1/jobs", body, close=False))
        answer = assert_refused(read_answer(conn), by_app=True)
        assert answer is not None and answer.status == 413, answer
        assert answer.headers.get("connection") != "close"
        conn.sendall(request_bytes("GET", "/ojs/v1/health"))
        health = read_answer(conn)
        assert health is not None and health.status == 200


def test_body_far_larger_than_the_limit_is_refused_unread(memory_server: OjsServer) -> None:
    """8 MiB declared, 1 KiB sent, the socket left open: refused at once (413), unread,
    and the connection closed."""
    sent = json_post("/ojs/v1/jobs", b"[" * 1024, **{"Content-Length": str(8 * 1024 * 1024)})
    answer = assert_refused(exchange(memory_server, sent), by_app=True)
    assert answer is not None and answer.status == 413, answer
    assert answer.headers["connection"] == "close"


# -- headers -----------------------------------------------------------------------------


@pytest.mark.parametrize("size", [100_000, 1_000_000])
def test_huge_header(memory_server: OjsServer, size: int) -> None:
    sent = request_bytes("GET", "/ojs/v1/health", headers=[("X-Padding", "a" * size)])
    assert_refused(exchange(memory_server, sent))


def test_many_headers(memory_server: OjsServer) -> None:
    headers = [(f"X-Header-{n}", "value") for n in range(10_000)]
    assert_refused(exchange(memory_server, request_bytes("GET", "/ojs/v1/health", headers=headers)))


def test_header_without_colon(memory_server: OjsServer) -> None:
    sent = request_bytes("GET", "/ojs/v1/health").replace(b"\r\n\r\n", b"\r\nno colon\r\n\r\n")
    assert_refused(exchange(memory_server, sent))


# -- a slow body -------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/ojs/v1/jobs", "/ojs/v1/workflows"])
def test_body_a_byte_at_a_time(memory_server: OjsServer, path: str) -> None:
    """A complete request dribbled in (10 ms between bytes): answered as if sent at once."""
    body = (
        ENQUEUE
        if path == "/ojs/v1/jobs"
        else b'{"type": "chain", "steps": [{"type": "a.b", "args": []}]}'
    )
    sent = json_post(path, body)
    head, _, _ = sent.partition(b"\r\n\r\n")
    answer = exchange(
        memory_server, head + b"\r\n\r\n", *(bytes([byte]) for byte in body), pause=0.01
    )
    assert answer is not None and answer.status == 201, answer


# -- bytes that are not UTF-8 --------------------------------------------------------------


@pytest.mark.parametrize("path", ["/ojs/v1/jobs", "/ojs/v1/workers/fetch", "/ojs/v1/cron"])
def test_body_not_utf8(memory_server: OjsServer, path: str) -> None:
    answer = exchange(memory_server, json_post(path, b'{"type": "\xff\xfe\xc3\x28", "args": []}'))
    answered = assert_refused(answer, by_app=True)
    assert answered is not None and answered.status == 400


@pytest.mark.parametrize(
    "path",
    ["/ojs/v1/jobs/\xff\xfe", "/ojs/v1/queues/\xc3\x28/stats", "/ojs/\xff", "/ojs/v1/jobs/%ff%fe"],
)
def test_path_not_utf8(memory_server: OjsServer, path: str) -> None:
    sent = request_bytes("GET", "PATH").replace(b"PATH", path.encode("latin-1"))
    assert_refused(exchange(memory_server, sent))


@pytest.mark.parametrize("name", ["X-Request-Id", "Content-Type", "X-Anything"])
def test_header_not_utf8(memory_server: OjsServer, name: str) -> None:
    sent = json_post("/ojs/v1/jobs", ENQUEUE).replace(
        b"\r\n\r\n", f"\r\n{name}: ".encode() + b"\xff\xfe\xc3\x28\r\n\r\n", 1
    )
    answer = assert_no_server_error(exchange(memory_server, sent))
    assert answer is not None, "the server closed the connection without an answer"


# -- deeply nested JSON ------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 100_000,
        b'{"a":' * 100_000,
        b'{"type": "a", "args": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    ],
    ids=["open-arrays", "open-objects", "closed-args"],
)
@pytest.mark.parametrize("path", ["/ojs/v1/jobs", "/ojs/v1/workflows", "/ojs/v1/cron"])
def test_deeply_nested_json(memory_server: OjsServer, path: str, body: bytes) -> None:
    answered = assert_refused(exchange(memory_server, json_post(path, body)), by_app=True)
    assert answered is not None and answered.status == 400


# -- chunked encoding ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("chunks", "half_close"),
    [
        (b"zz\r\n{}\r\n0\r\n\r\n", False),
        (b"-1\r\n{}\r\n", False),
        (b"5\r\n{}\r\n0\r\n\r\n", True),  # a chunk longer than sent: the server waits
        (b"ffffffffffffffffffff\r\n{}", True),
    ],
    ids=["size-not-hex", "size-negative", "size-wrong", "size-huge"],
)
def test_invalid_chunked_encoding(
    memory_server: OjsServer, chunks: bytes, half_close: bool
) -> None:
    head = request_bytes(
        "POST",
        "/ojs/v1/jobs",
        headers=[("Content-Type", MEDIA_TYPE), ("Transfer-Encoding", "chunked")],
    )
    assert_refused(exchange(memory_server, head + chunks, half_close=half_close))


def test_chunked_and_content_length(memory_server: OjsServer) -> None:
    """Both framings at once (request smuggling's shape): refused or answered, never a 5xx."""
    head = request_bytes(
        "POST",
        "/ojs/v1/jobs",
        headers=[
            ("Content-Type", MEDIA_TYPE),
            ("Transfer-Encoding", "chunked"),
            ("Content-Length", "4"),
        ],
    )
    body = f"{len(ENQUEUE):x}\r\n".encode() + ENQUEUE + b"\r\n0\r\n\r\n"
    assert_no_server_error(exchange(memory_server, head + body))


# -- request lines -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "line",
    [
        b"\x00\x01\x02garbage\r\n\r\n",
        b"GET\r\n\r\n",
        b"G\xffT /ojs/v1/health HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /ojs/v1/health HTTP/1.1 extra\r\nHost: x\r\n\r\n",
        b"GET " + b"/a" * 50_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    ],
    ids=["binary", "method-only", "method-not-ascii", "extra-token", "path-100k"],
)
def test_garbage_request_line(memory_server: OjsServer, line: bytes) -> None:
    assert_refused(exchange(memory_server, line))


def test_only_blank_lines(memory_server: OjsServer) -> None:
    """Blank lines before a request line are allowed (RFC 9112 §2.2): the server waits."""
    assert_refused(exchange(memory_server, b"\r\n" * 1000, half_close=True))


@pytest.mark.parametrize("path", ["/ojs/v1/queues", "/ojs/v1/health", "/ojs/v1/nowhere"])
def test_answer_survives_a_half_close(memory_server: OjsServer, path: str) -> None:
    """Sending EOF after a complete request (``nc -N``, some HTTP/1.0 clients) still
    gets the whole answer."""
    answer = exchange(memory_server, request_bytes("GET", path), half_close=True)
    assert answer is not None and answer.status in (200, 404), answer


def test_unknown_http_version(memory_server: OjsServer) -> None:
    line = b"GET /ojs/v1/health HTTP/9.9\r\nHost: x\r\n\r\n"
    assert_no_server_error(exchange(memory_server, line))
