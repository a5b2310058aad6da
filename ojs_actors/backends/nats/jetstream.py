"""The JetStream API calls the NATS backend makes, over :class:`~.client.NatsClient`.

Each call exists twice: as :class:`~.client.Request` values with a parser of their
replies (:func:`api_request` / :func:`parse_api`, :func:`atomic_batch_request` /
:func:`parse_batch_ack`, :func:`direct_get_request` / :func:`parse_direct`), so that a
caller can pipeline several in one :meth:`~.client.NatsClient.requests` round trip; and
as a method of :class:`JetStream`, which does that for one call.

The server's limits, as documented and measured on nats-server 2.15.1 (defaults of its
``jetstream { limits { batch { ... } } }`` configuration):

* an atomic batch holds at most :data:`MAX_BATCH_MESSAGES` messages (1000; one more is
  refused at the commit: ``10199 atomic publish batch is too large: 1000``);
* at most :data:`MAX_INFLIGHT_PER_STREAM` batches (50) are open at once on one stream,
  and :data:`MAX_INFLIGHT_TOTAL` (1000) on the server: the first message of one more is
  refused with ``429 / 10210 atomic publish too many inflight``. A batch is open from
  its first message to its commit; one abandoned (its connection lost mid-write) keeps
  its place until :data:`BATCH_TIMEOUT` (10 s without a message) discards it. Batches
  sent whole in one write are committed one after the other, so a pipeline of many is
  not refused; :meth:`JetStream.atomic_publish_many` still sends at most
  ``MAX_INFLIGHT_PER_STREAM`` of them per round trip;
* a Direct Get ``multi_last`` matches at most :data:`MAX_MULTI_LAST` subjects (1024;
  more, listed or matched by a wildcard, answer status ``413 Too Many Results``):
  :meth:`JetStream.get_last` asks for them in chunks, in one round trip;
* ``STREAM.INFO`` lists at most :data:`MAX_SUBJECT_DETAILS` subjects (100,000) a page.

Atomic batch (ADR-50): the messages carry ``Nats-Batch-Id``, ``Nats-Batch-Sequence``
(1, 2, ...) and, on the last, ``Nats-Batch-Commit: 1``. Only the commit needs a reply
subject (it gets the :class:`PubAck`, or the batch's error); the first message has one
too, which the server answers with an empty message once the batch is open, or with
the reason it is not (too many in flight, atomic publish disabled on the stream): a
clearer error than the commit's ``batch is incomplete``. The others go without. The
messages are stored with consecutive sequences, the commit's last: ``seq - count + 1``
to ``seq``. When any message's ``Nats-Expected-Last-Subject-Sequence`` (or
``Nats-Expected-Last-Sequence``) does not hold, the commit answers ``10071 wrong last
sequence: N`` and nothing of the batch is stored. ``Nats-Rollup: sub`` and ``Nats-TTL``
work in a batch (``Nats-Rollup: all`` does not: ``10111``), and so does ``Nats-Msg-Id``;
``Nats-Expected-Last-Msg-Id`` is refused (``10177``). The batch headers are stored with
the messages (Direct Get returns them).
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from .client import NatsClient, Replies, Request
from .protocol import Msg

API_PREFIX = "$JS.API"
MAX_BATCH_MESSAGES = 1000
"""Messages in one atomic batch (``jetstream.limits.batch.max_msgs``)."""
MAX_INFLIGHT_PER_STREAM = 50
"""Atomic batches open at once on one stream (``max_inflight_per_stream``)."""
MAX_INFLIGHT_TOTAL = 1000
"""Atomic batches open at once on one server (``max_inflight_total``)."""
BATCH_TIMEOUT = 10.0
"""Seconds without a message after which an open batch is discarded (``timeout``)."""
MAX_MULTI_LAST = 1024
"""Subjects one Direct Get ``multi_last`` may match."""
MAX_SUBJECT_DETAILS = 100_000
"""Subjects in one page of ``STREAM.INFO`` with ``subjects_filter``."""

ERR_STREAM_NAME_IN_USE = 10058
"""``stream name already in use with a different configuration``."""
ERR_STREAM_NOT_FOUND = 10059
ERR_WRONG_LAST_SEQUENCE = 10071
"""An expected last (subject) sequence did not hold."""
ERR_BATCH_INCOMPLETE = 10176
"""The batch was not stored: a message is missing (or its first was refused)."""
ERR_BATCH_TOO_LARGE = 10199
ERR_BATCH_TOO_MANY_INFLIGHT = 10210
ERR_BATCH_DUPLICATE_MSG_ID = 10201
"""An atomic batch held a ``Nats-Msg-Id`` the stream saw within its duplicate window:
the whole batch is refused (a lone publish would be dropped as a duplicate instead)."""
"""Too many batches open (429): nothing of this one was stored; retry later."""

BATCH_ID = "Nats-Batch-Id"
BATCH_SEQUENCE = "Nats-Batch-Sequence"
BATCH_COMMIT = "Nats-Batch-Commit"
STATUS_END_OF_BATCH = 204
STATUS_NOT_FOUND = 404

_DIRECT_HEADERS = (
    "Nats-Stream",
    "Nats-Subject",
    "Nats-Sequence",
    "Nats-Time-Stamp",
    "Nats-Num-Pending",
    "Nats-Last-Sequence",
    "Nats-UpTo-Sequence",
)
"""What Direct Get adds to a stored message's headers (stripped from StoredMsg's)."""

Message = tuple[str, bytes, Mapping[str, str]]
"""A message to publish: subject, data, headers."""


class JetStreamError(Exception):
    """JetStream refused a call: ``code`` is HTTP-like (400, 404, 429, 500, or a status
    of a Direct Get reply), ``err_code`` JetStream's own (10071, ...; 0 if none)."""

    def __init__(self, code: int, err_code: int, description: str) -> None:
        super().__init__(f"{description} (code {code}, err_code {err_code})")
        self.code = code
        self.err_code = err_code
        self.description = description

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, JetStreamError):
            return NotImplemented
        return (self.code, self.err_code, self.description) == (
            other.code,
            other.err_code,
            other.description,
        )

    def __hash__(self) -> int:
        return hash((self.code, self.err_code, self.description))


@dataclass(frozen=True, slots=True)
class StoredMsg:
    """A message read from a stream by Direct Get: ``headers`` are those it was stored
    with (Direct Get's own, ``Nats-Subject``, ``Nats-Sequence``, ... taken out);
    ``time`` is when it was stored (RFC 3339, nanoseconds, UTC)."""

    subject: str
    seq: int
    data: bytes
    headers: dict[str, str]
    time: str


@dataclass(frozen=True, slots=True)
class PubAck:
    """A publish stored: the stream and its sequence; ``duplicate`` if its
    ``Nats-Msg-Id`` was seen within the stream's duplicate window (then not stored
    again); ``count`` the messages of an atomic batch, stored as ``seq - count + 1`` to
    ``seq``."""

    stream: str
    seq: int
    duplicate: bool = False
    count: int = 1


# -- API calls -----------------------------------------------------------------------------


def api_request(
    name: str, body: Mapping[str, Any] | None = None, prefix: str = API_PREFIX
) -> Request:
    """A JetStream API call: ``name`` like ``STREAM.INFO.OJS``, ``body`` its JSON."""
    data = b"" if body is None else orjson.dumps(dict(body))
    return Request(f"{prefix}.{name}", data)


def parse_api(replies: list[Msg]) -> dict[str, Any]:
    """The answer of an API call; :class:`JetStreamError` if it is an error."""
    reply = _single(replies)
    answer = _json(reply)
    if not isinstance(answer, dict):
        raise JetStreamError(500, 0, f"the JetStream API answered {reply.data[:80]!r}")
    _raise_error(answer)
    return answer


def purge_request(
    stream: str,
    *,
    filter: str | None = None,  # noqa: A002  # the API's name
    seq: int | None = None,
    keep: int | None = None,
    prefix: str = API_PREFIX,
) -> Request:
    """``STREAM.PURGE``: messages of ``stream`` matching ``filter``, below sequence
    ``seq`` or all but the last ``keep`` (answered ``{"purged": n}``)."""
    body: dict[str, Any] = {}
    if filter is not None:
        body["filter"] = filter
    if seq is not None:
        body["seq"] = seq
    if keep is not None:
        body["keep"] = keep
    return api_request(f"STREAM.PURGE.{_stream_name(stream)}", body or None, prefix)


def stream_subjects_request(
    stream: str, subject_filter: str, offset: int = 0, prefix: str = API_PREFIX
) -> Request:
    """``STREAM.INFO`` listing the subjects matching ``subject_filter`` with their
    message counts, from ``offset`` on (:func:`parse_stream_subjects`)."""
    body: dict[str, Any] = {"subjects_filter": subject_filter}
    if offset:
        body["offset"] = offset
    return api_request(f"STREAM.INFO.{_stream_name(stream)}", body, prefix)


def parse_stream_subjects(replies: list[Msg]) -> tuple[dict[str, int], int | None]:
    """A page of subjects with their counts, and the offset of the next page (``None``:
    this was the last)."""
    answer = parse_api(replies)
    page: dict[str, int] = answer.get("state", {}).get("subjects") or {}
    total = int(answer.get("total", 0))
    offset = int(answer.get("offset", 0)) + len(page)
    return page, (offset if page and offset < total else None)


def publish_request(
    subject: str, data: bytes = b"", headers: Mapping[str, str] | None = None
) -> Request:
    """A JetStream publish: the stream capturing ``subject`` answers a :class:`PubAck`."""
    return Request(subject, data, headers)


def parse_pub_ack(replies: list[Msg]) -> PubAck:
    """The :class:`PubAck` of a publish; :class:`JetStreamError` if it was refused."""
    return _pub_ack(_single(replies))


def atomic_batch_request(messages: Sequence[Message], batch_id: str | None = None) -> list[Request]:
    """The requests of one atomic batch (ADR-50), to send in order in one
    :meth:`~.client.NatsClient.requests`: the first and the last (the commit) with a
    reply subject, the others without (see the module docstring)."""
    count = len(messages)
    if count == 0:
        raise ValueError("an atomic batch holds at least one message")
    batch = batch_id or secrets.token_hex(16)
    last = count - 1
    requests: list[Request] = []
    for index, (subject, data, headers) in enumerate(messages):
        marked = dict(headers)
        marked[BATCH_ID] = batch
        marked[BATCH_SEQUENCE] = str(index + 1)
        if index == last:
            marked[BATCH_COMMIT] = "1"
        replies: Replies = "one" if index == 0 or index == last else "none"
        requests.append(Request(subject, data, marked, replies))
    return requests


def parse_batch_ack(replies: list[list[Msg]]) -> PubAck:
    """The :class:`PubAck` of a batch from the replies of its requests (as
    :meth:`~.client.NatsClient.requests` lists them); :class:`JetStreamError` if the
    batch was not stored (its first message's error if it had one: more telling)."""
    if not replies:
        raise ValueError("no replies: an atomic batch has at least one message")
    first = replies[0]
    if len(replies) > 1 and first and (first[-1].data or first[-1].status is not None):
        # not the empty reply of a batch opened: its error (raised here), or the ack of a
        # message stored alone by a server that ignores the batch headers (< 2.12)
        _pub_ack(first[-1])
        raise JetStreamError(
            500, 0, "the server stored a batch's first message alone: no atomic batch publish"
        )
    commit = replies[-1]
    if not commit:
        raise JetStreamError(500, 0, "the batch's commit got no reply")
    ack = _pub_ack(commit[-1])
    if ack.count != len(replies):
        raise JetStreamError(
            500, 0, f"a batch of {len(replies)} messages was acknowledged as {ack.count}"
        )
    return ack


def direct_get_request(
    stream: str,
    *,
    seq: int | None = None,
    next_by_subj: str | None = None,
    last_by_subj: str | None = None,
    batch: int | None = None,
    multi_last: Sequence[str] | None = None,
    up_to_seq: int | None = None,
) -> Request:
    """A Direct Get (``$JS.API.DIRECT.GET.<stream>``, the stream needs ``allow_direct``):
    one message, or with ``batch`` or ``multi_last`` a stream of them ended by a status
    204 message (or a 404 alone when nothing matches)."""
    body: dict[str, Any] = {}
    if seq is not None:
        body["seq"] = seq
    if next_by_subj is not None:
        body["next_by_subj"] = next_by_subj
    if last_by_subj is not None:
        body["last_by_subj"] = last_by_subj
    if batch is not None:
        body["batch"] = batch
    if multi_last is not None:
        body["multi_last"] = list(multi_last)
    if up_to_seq is not None:
        body["up_to_seq"] = up_to_seq
    if not body:
        raise ValueError("a Direct Get says which message(s) it wants")
    streamed = batch is not None or multi_last is not None
    return Request(
        f"{API_PREFIX}.DIRECT.GET.{_stream_name(stream)}",
        orjson.dumps(body),
        replies="stream" if streamed else "one",
    )


def parse_direct(replies: list[Msg]) -> list[StoredMsg]:
    """The messages of a Direct Get's replies: none for 404; :class:`JetStreamError` for
    another status (408 bad request, 413 too many subjects, ...)."""
    found: list[StoredMsg] = []
    for reply in replies:
        status = reply.status
        if status is None:
            found.append(stored(reply))
        elif status == STATUS_END_OF_BATCH or status == STATUS_NOT_FOUND:
            break
        else:
            raise JetStreamError(status, 0, reply.description or f"status {status}")
    return found


def stored(reply: Msg) -> StoredMsg:
    """The :class:`StoredMsg` of one Direct Get reply."""
    headers = dict(reply.headers)
    try:
        subject = headers["Nats-Subject"]
        seq = int(headers["Nats-Sequence"])
    except (KeyError, ValueError):
        raise JetStreamError(
            500, 0, "not a Direct Get reply (no Nats-Subject, Nats-Sequence)"
        ) from None
    time = headers.get("Nats-Time-Stamp", "")
    for key in _DIRECT_HEADERS:
        headers.pop(key, None)
    return StoredMsg(subject, seq, reply.data, headers, time)


# -- JetStream ---------------------------------------------------------------------------


class JetStream:
    """The JetStream calls of one :class:`~.client.NatsClient`; each is one round trip
    unless said otherwise. Errors: :class:`JetStreamError` when JetStream refuses,
    :class:`~ojs_actors.core.BackendUnavailable` when the server is unreachable (and
    :class:`~.client.NoResponders` when nothing answers: no JetStream, or no stream
    captures a published subject)."""

    def __init__(self, client: NatsClient, prefix: str = API_PREFIX) -> None:
        self.client = client
        self.prefix = prefix

    async def api(self, name: str, body: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """An API call's answer (``name`` like ``STREAM.INFO.OJS``)."""
        [replies] = await self.client.requests([api_request(name, body, self.prefix)])
        return parse_api(replies)

    async def publish(
        self, subject: str, data: bytes = b"", headers: Mapping[str, str] | None = None
    ) -> PubAck:
        """Store one message in the stream capturing ``subject``."""
        [replies] = await self.client.requests([publish_request(subject, data, headers)])
        return parse_pub_ack(replies)

    async def atomic_publish(self, messages: Sequence[Message]) -> PubAck:
        """Store ``messages`` (at least one, all of one stream; at most the server's
        ``max_msgs``, :data:`MAX_BATCH_MESSAGES` by default) all or none."""
        replies = await self.client.requests(atomic_batch_request(messages))
        return parse_batch_ack(replies)

    async def atomic_publish_many(
        self, batches: Sequence[Sequence[Message]]
    ) -> list[PubAck | JetStreamError]:
        """Store each batch all or none, in order, pipelined: up to
        :data:`MAX_INFLIGHT_PER_STREAM` batches a round trip. Each batch's ack, or the
        error that refused it (the others are stored all the same)."""
        results: list[PubAck | JetStreamError] = []
        for start in range(0, len(batches), MAX_INFLIGHT_PER_STREAM):
            chunk = batches[start : start + MAX_INFLIGHT_PER_STREAM]
            calls: list[Request] = []
            bounds: list[int] = []
            for messages in chunk:
                calls += atomic_batch_request(messages)
                bounds.append(len(calls))
            replies = await self.client.requests(calls)
            begin = 0
            for end in bounds:
                try:
                    results.append(parse_batch_ack(replies[begin:end]))
                except JetStreamError as error:
                    results.append(error)
                begin = end
        return results

    async def get_batch(
        self, stream: str, subject_filter: str, start_seq: int, limit: int
    ) -> list[StoredMsg]:
        """Up to ``limit`` messages matching ``subject_filter`` (wildcards allowed) from
        sequence ``start_seq`` on, in stream order. One round trip, unless the server
        ends the batch early (its byte limit): then more, from where it stopped."""
        found: list[StoredMsg] = []
        while len(found) < limit:
            request = direct_get_request(
                stream, seq=start_seq, next_by_subj=subject_filter, batch=limit - len(found)
            )
            [replies] = await self.client.requests([request])
            got = parse_direct(replies)
            found += got
            end = replies[-1]
            if not got or end.status != STATUS_END_OF_BATCH:
                break
            if not _header_int(end, "Nats-Num-Pending"):
                break
            start_seq = got[-1].seq + 1
        return found

    async def get_last(
        self, stream: str, subjects: Sequence[str], *, up_to_seq: int | None = None
    ) -> dict[str, StoredMsg]:
        """The last message of each subject (by subject; those without one are left
        out), asked :data:`MAX_MULTI_LAST` subjects a request, all in one round trip
        (more if the server cuts an answer short at its byte limit, 64 MiB by default:
        then the rest is asked from where it stopped, at the same point in time).
        ``up_to_seq``: as the stream was at that sequence. A wildcard among ``subjects``
        counts as every subject it matches (more than the limit: ``JetStreamError``
        413). Requests in one write are answered one after the other: the chunks are
        not one point in time unless ``up_to_seq`` is given."""
        wanted = list(dict.fromkeys(subjects))
        if not wanted:
            return {}
        chunks = [wanted[i : i + MAX_MULTI_LAST] for i in range(0, len(wanted), MAX_MULTI_LAST)]
        asks = [
            (chunk, direct_get_request(stream, multi_last=chunk, up_to_seq=up_to_seq))
            for chunk in chunks
        ]
        found: dict[str, StoredMsg] = {}
        while asks:
            answers = await self.client.requests([request for _, request in asks])
            again: list[tuple[list[str], Request]] = []
            for (chunk, _), replies in zip(asks, answers, strict=True):
                for message in parse_direct(replies):
                    found[message.subject] = message
                end = replies[-1]
                if end.status == STATUS_END_OF_BATCH and _header_int(end, "Nats-Num-Pending"):
                    rest = direct_get_request(
                        stream,
                        multi_last=chunk,
                        seq=_header_int(end, "Nats-Last-Sequence") + 1,
                        up_to_seq=_header_int(end, "Nats-UpTo-Sequence") or up_to_seq,
                    )
                    again.append((chunk, rest))
            asks = again
        return found

    async def purge(
        self,
        stream: str,
        *,
        filter: str | None = None,  # noqa: A002  # the API's name
        seq: int | None = None,
        keep: int | None = None,
    ) -> int:
        """Remove messages of ``stream`` (matching ``filter``; below sequence ``seq``, or
        all but the last ``keep``); how many were removed."""
        [replies] = await self.client.requests(
            [purge_request(stream, filter=filter, seq=seq, keep=keep, prefix=self.prefix)]
        )
        return int(parse_api(replies).get("purged", 0))

    async def stream_subjects(self, stream: str, subject_filter: str) -> dict[str, int]:
        """The subjects of ``stream`` matching ``subject_filter`` that hold messages, with
        how many each holds: ``STREAM.INFO`` pages (:data:`MAX_SUBJECT_DETAILS` each) read
        one after the other until ``total``."""
        subjects: dict[str, int] = {}
        offset: int | None = 0
        while offset is not None:
            request = stream_subjects_request(stream, subject_filter, offset, prefix=self.prefix)
            [replies] = await self.client.requests([request])
            page, offset = parse_stream_subjects(replies)
            subjects.update(page)
        return subjects

    async def ensure_stream(self, config: Mapping[str, Any]) -> dict[str, Any]:
        """The stream ``config["name"]`` with ``config``: created, or updated if it exists
        with another configuration (one round trip when it exists as it should). The
        stream's info as the server answers it."""
        name = _stream_name(str(config.get("name", "")))
        try:
            return await self.api(f"STREAM.CREATE.{name}", config)
        except JetStreamError as error:
            if error.err_code != ERR_STREAM_NAME_IN_USE:
                raise
        return await self.api(f"STREAM.UPDATE.{name}", config)


# -- helpers -----------------------------------------------------------------------------


def _single(replies: list[Msg]) -> Msg:
    if not replies:
        raise JetStreamError(500, 0, "no reply")
    return replies[-1]


def _json(reply: Msg) -> Any:
    if reply.status is not None and not reply.data:
        raise JetStreamError(reply.status, 0, reply.description or f"status {reply.status}")
    try:
        return orjson.loads(reply.data)
    except orjson.JSONDecodeError:
        raise JetStreamError(500, 0, f"JetStream answered {reply.data[:80]!r}, not JSON") from None


def _raise_error(answer: Mapping[str, Any]) -> None:
    error = answer.get("error")
    if error is not None:
        if not isinstance(error, dict):
            raise JetStreamError(500, 0, str(error))
        raise JetStreamError(
            int(error.get("code", 0)),
            int(error.get("err_code", 0)),
            str(error.get("description", "")),
        )


def _pub_ack(reply: Msg) -> PubAck:
    answer = _json(reply)
    if not isinstance(answer, dict):
        raise JetStreamError(500, 0, f"a publish was answered {reply.data[:80]!r}")
    _raise_error(answer)
    try:
        return PubAck(
            stream=str(answer["stream"]),
            seq=int(answer["seq"]),
            duplicate=bool(answer.get("duplicate", False)),
            count=int(answer.get("count", 1)),
        )
    except (KeyError, TypeError, ValueError):
        raise JetStreamError(500, 0, f"not a publish ack: {reply.data[:80]!r}") from None


def _header_int(reply: Msg, name: str) -> int:
    try:
        return int(reply.headers.get(name) or 0)
    except ValueError:
        raise JetStreamError(
            500, 0, f"header {name} is not a number: {reply.headers[name]!r}"
        ) from None


def _stream_name(name: str) -> str:
    if not name or any(char in name for char in " \t\r\n.*>"):
        raise ValueError(
            f"a stream name is not empty and has no whitespace, '.', '*', '>': {name!r}"
        )
    return name
