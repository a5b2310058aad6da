"""The NATS client protocol as bytes in and events out: pure, no I/O (the client does that).

Wire format (https://docs.nats.io/reference/reference-protocols/nats-protocol): each
operation is a control line ending in ``\\r\\n``; ``MSG`` and ``HMSG`` are followed by
their payload and another ``\\r\\n``. What the server sends, as :class:`Parser` events:

* ``INFO {json}``: :class:`Info` (on connect, and again when the cluster changes or
  the server enters lame duck mode, ``"ldm": true``);
* ``MSG <subject> <sid> [reply-to] <#bytes>`` and
  ``HMSG <subject> <sid> [reply-to] <#header bytes> <#total bytes>``: :class:`Msg`,
  with its headers block parsed (``NATS/1.0[ <status>[ <description>]]\\r\\n`` then
  ``Key: Value\\r\\n`` lines and an empty line);
* ``PING``, ``PONG``, ``+OK``, ``-ERR '<text>'``: :class:`Ping`, :class:`Pong`,
  :class:`Ok`, :class:`Err`.

What the client sends, built by :func:`connect`, :func:`pub` (``PUB``, or ``HPUB`` with
headers), :func:`sub`, :func:`unsub` and the :data:`PING` / :data:`PONG` constants.
Operation names are case-insensitive on the wire; the server sends them in capitals.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

CRLF = b"\r\n"
PING = b"PING\r\n"
PONG = b"PONG\r\n"
HEADER_LINE = "NATS/1.0"
MAX_CONTROL_LINE = 1 << 20
"""Longest control line accepted (an ``INFO`` listing a large cluster's URLs is the
longest the server sends; nats-server limits the client's lines to 4 KiB by default):
beyond it without a line end, the input is not NATS."""

_HEADER_PREFIX = HEADER_LINE.encode()
_BAD_SUBJECT_CHARS = (" ", "\t", "\r", "\n")


class ProtocolError(Exception):
    """The bytes received are not the NATS protocol (or not a well-formed part of it)."""


# -- events --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Msg:
    """A message delivered by the server (``MSG`` or ``HMSG``).

    ``headers`` is empty without a headers block (a key sent twice keeps its last value;
    keys as sent); ``status`` and ``description`` come from the block's first line:
    ``100`` idle heartbeat, ``204`` end of batch, ``404`` not found, ``408`` timeout or
    bad request, ``409`` conflict, ``413`` too many subjects, ``503`` no responders.
    ``sid`` is the subscription it was delivered to."""

    subject: str
    reply: str | None
    data: bytes
    headers: dict[str, str]
    status: int | None = None
    description: str = ""
    sid: int = 0


@dataclass(frozen=True, slots=True)
class Info:
    """The server's ``INFO``: its id, version, limits (``max_payload``), features
    (``headers``, ``jetstream``), TLS and auth requirements, login ``nonce``."""

    options: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Ping:
    """The server checks the client is alive: answer :data:`PONG`."""


@dataclass(frozen=True, slots=True)
class Pong:
    """The answer to the client's :data:`PING`: everything sent before it was processed."""


@dataclass(frozen=True, slots=True)
class Ok:
    """``+OK``: sent only in verbose mode."""


@dataclass(frozen=True, slots=True)
class Err:
    """``-ERR``: the text without its quotes (``Authorization Violation``,
    ``Permissions Violation for Publish to ...``, ``Stale Connection``, ...)."""

    text: str


Event = Info | Msg | Ping | Pong | Ok | Err

_PING_EVENT = Ping()
_PONG_EVENT = Pong()
_OK_EVENT = Ok()


# -- parsing -------------------------------------------------------------------------------


class Parser:
    """Turns the bytes a connection receives into events, whatever the chunking: a frame
    split across reads waits in the buffer for its rest, and one read may hold many."""

    __slots__ = ("_buffer", "_pending")

    def __init__(self) -> None:
        self._buffer = bytearray()
        # a message whose control line was read, waiting for its payload:
        # (subject, sid, reply, header bytes, total bytes)
        self._pending: tuple[str, int, str | None, int, int] | None = None

    def feed(self, data: bytes | bytearray | memoryview) -> list[Event]:
        """The events completed by ``data``; :class:`ProtocolError` on anything else."""
        buffer = self._buffer
        buffer += data
        events: list[Event] = []
        position = 0
        end = len(buffer)
        while position < end:
            pending = self._pending
            if pending is not None:
                subject, sid, reply, header_size, total = pending
                stop = position + total
                if end < stop + 2:
                    break
                if buffer[stop : stop + 2] != CRLF:
                    raise ProtocolError(f"a message payload on {subject!r} does not end in CRLF")
                self._pending = None
                if header_size:
                    view = memoryview(buffer)
                    try:
                        block = bytes(view[position : position + header_size])
                        payload = bytes(view[position + header_size : stop])
                    finally:
                        view.release()
                    headers, status, description = parse_headers(block)
                    events.append(Msg(subject, reply, payload, headers, status, description, sid))
                else:
                    events.append(
                        Msg(subject, reply, bytes(buffer[position:stop]), {}, None, "", sid)
                    )
                position = stop + 2
                continue
            line_end = buffer.find(CRLF, position)
            if line_end < 0:
                if end - position > MAX_CONTROL_LINE:
                    raise ProtocolError(f"no line end in {end - position} bytes")
                break
            line = bytes(buffer[position:line_end])
            position = line_end + 2
            events_or_pending = self._control(line)
            if events_or_pending is not None:
                events.append(events_or_pending)
        if position:
            del buffer[:position]  # CPython moves the start: no copy of the rest
        return events

    def _control(self, line: bytes) -> Event | None:
        """The event of a control line, or None for a message header (then pending)."""
        op, _, rest = line.partition(b" ")
        if not rest and b"\t" in op:
            op, _, rest = line.partition(b"\t")
        op = op.upper()
        if op == b"MSG" or op == b"HMSG":
            self._pending = _message_line(op, rest, line)
            return None
        if op == b"PING":
            return _PING_EVENT
        if op == b"PONG":
            return _PONG_EVENT
        if op == b"+OK":
            return _OK_EVENT
        if op == b"-ERR":
            text = rest.strip().decode("utf-8", "replace")
            if len(text) >= 2 and text[0] == text[-1] == "'":
                text = text[1:-1]
            return Err(text)
        if op == b"INFO":
            try:
                options = orjson.loads(rest)
            except orjson.JSONDecodeError as error:
                raise ProtocolError(f"INFO is not JSON: {error}") from None
            if not isinstance(options, dict):
                raise ProtocolError("INFO is not a JSON object")
            return Info(options)
        raise ProtocolError(f"unknown operation {line[:40]!r}")


def _message_line(op: bytes, rest: bytes, line: bytes) -> tuple[str, int, str | None, int, int]:
    args = rest.split()
    try:
        if op == b"MSG":
            if len(args) == 3:
                subject, sid, size = args
                reply = None
            elif len(args) == 4:
                subject, sid, reply_bytes, size = args
                reply = reply_bytes.decode()
            else:
                raise ValueError("wrong number of fields")
            header_size = 0
            total = int(size)
        else:
            if len(args) == 4:
                subject, sid, header_text, size = args
                reply = None
            elif len(args) == 5:
                subject, sid, reply_bytes, header_text, size = args
                reply = reply_bytes.decode()
            else:
                raise ValueError("wrong number of fields")
            header_size = int(header_text)
            total = int(size)
            if not 0 < header_size <= total:
                raise ValueError("header size out of range")
        if total < 0:
            raise ValueError("negative size")
        return subject.decode(), int(sid), reply, header_size, total
    except ValueError as error:  # UnicodeDecodeError is one too
        raise ProtocolError(f"bad message line {line[:80]!r}: {error}") from None


def parse_headers(block: bytes) -> tuple[dict[str, str], int | None, str]:
    """A headers block as (headers, status, description)."""
    if not block.startswith(_HEADER_PREFIX):
        raise ProtocolError(f"a headers block starts with {HEADER_LINE}, not {block[:12]!r}")
    try:
        text = block.decode()
    except UnicodeDecodeError as error:
        raise ProtocolError(f"headers are not UTF-8: {error}") from None
    lines = text.split("\r\n")
    status_line = lines[0][len(HEADER_LINE) :].strip()
    status: int | None = None
    description = ""
    if status_line:
        code, _, description = status_line.partition(" ")
        if len(code) != 3 or not code.isdigit():
            raise ProtocolError(f"bad status line {lines[0]!r}")
        status = int(code)
        description = description.strip()
    headers: dict[str, str] = {}
    for header in lines[1:]:
        if not header:
            continue
        key, colon, value = header.partition(":")
        if not colon or not key:
            raise ProtocolError(f"bad header line {header!r}")
        headers[key.strip()] = value.strip()
    return headers, status, description


# -- encoding ------------------------------------------------------------------------------


def check_subject(subject: str, what: str = "subject") -> str:
    """``subject`` if it can go on the wire: not empty, no whitespace; else ValueError."""
    if not subject or any(char in subject for char in _BAD_SUBJECT_CHARS):
        raise ValueError(f"a NATS {what} is not empty and has no whitespace: {subject!r}")
    return subject


def encode_headers(headers: Mapping[str, str]) -> bytes:
    """The headers block of ``headers`` (``NATS/1.0\\r\\nKey: Value\\r\\n...\\r\\n``)."""
    parts = [HEADER_LINE, "\r\n"]
    for key, value in headers.items():
        if not key or ":" in key or any(char in key for char in _BAD_SUBJECT_CHARS):
            raise ValueError(f"a header name has no colon nor whitespace: {key!r}")
        if "\r" in value or "\n" in value:
            raise ValueError(f"the value of header {key!r} has a line break")
        parts += (key, ": ", value, "\r\n")
    parts.append("\r\n")
    return "".join(parts).encode()


def pub(
    subject: str,
    data: bytes = b"",
    reply: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> bytes:
    """``PUB`` (``HPUB`` when there are headers) of ``data`` to ``subject``."""
    check_subject(subject)
    if reply is not None:
        check_subject(reply, "reply subject")
    if headers:
        block = encode_headers(headers)
        header_size = len(block)
        total = header_size + len(data)
        if reply is None:
            line = f"HPUB {subject} {header_size} {total}\r\n"
        else:
            line = f"HPUB {subject} {reply} {header_size} {total}\r\n"
        return b"".join((line.encode(), block, data, CRLF))
    if reply is None:
        line = f"PUB {subject} {len(data)}\r\n"
    else:
        line = f"PUB {subject} {reply} {len(data)}\r\n"
    return b"".join((line.encode(), data, CRLF))


def sub(subject: str, sid: int, queue: str | None = None) -> bytes:
    """``SUB``: deliver the messages of ``subject`` (wildcards allowed) as ``sid``."""
    check_subject(subject)
    if queue is None:
        return f"SUB {subject} {sid}\r\n".encode()
    check_subject(queue, "queue group")
    return f"SUB {subject} {queue} {sid}\r\n".encode()


def unsub(sid: int, max: int | None = None) -> bytes:  # noqa: A002  # the protocol's name
    """``UNSUB``: end subscription ``sid`` now, or after ``max`` messages in all."""
    if max is None:
        return f"UNSUB {sid}\r\n".encode()
    return f"UNSUB {sid} {max}\r\n".encode()


def connect(options: Mapping[str, Any]) -> bytes:
    """``CONNECT {json}``: the client's options (verbose, headers, credentials, ...)."""
    return b"CONNECT " + orjson.dumps(dict(options)) + CRLF
