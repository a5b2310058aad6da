"""The NATS backend's lifetime and its few ways of reaching the server: :class:`NatsStore`.

It owns the client (:mod:`.client`, native to trio), makes sure the streams exist with
the configuration :mod:`.layout` gives (creating or updating them at start), checks the
server's version, and offers the other parts the calls they share: reading the last
message of many subjects at once, reading a subject filter in stream order, writing an
atomic batch (:class:`CasFailed` when a compare-and-set in it does not hold: then nothing
of the batch was stored), purging, listing subjects.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Awaitable, Iterable, Sequence
from typing import TypeVar

from ...core import BackendUnavailable, PayloadTooLarge
from .client import NatsClient
from .jetstream import (
    ERR_BATCH_TOO_LARGE,
    ERR_WRONG_LAST_SEQUENCE,
    MAX_BATCH_MESSAGES,
    JetStream,
    JetStreamError,
    Message,
    PubAck,
    StoredMsg,
)
from .layout import EVENTS_STREAM, PREFIX, STREAM, Subjects, events_stream_config, stream_config

log = logging.getLogger("ojs_actors.backends.nats")

DEFAULT_URL = "nats://localhost:4222"
MINIMUM_VERSION = (2, 12, 0)
"""Atomic batch publish came with nats-server 2.12. Older servers accept the stream
setting and the batch headers and silently ignore them, so the version is checked."""
PAGE = 1000
"""Messages per read of a subject filter (one Direct Get batch)."""

T = TypeVar("T")


class CasFailed(Exception):
    """A compare-and-set in an atomic batch did not hold; nothing of the batch was stored."""


class NatsStore:
    """The connection the NATS parts share, and the backend's lifetime."""

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        stream: str = STREAM,
        events_stream: str = EVENTS_STREAM,
        prefix: str = PREFIX,
        storage: str = "file",
        replicas: int = 1,
        events_max_age_s: int = 86_400,
        batch_max_messages: int = MAX_BATCH_MESSAGES,
        creds: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
        request_timeout: float | None = 5.0,
        max_connections: int = 8,
    ) -> None:
        self.url = url
        self.stream = stream
        self.events_stream = events_stream
        self.subjects = Subjects(prefix)
        self.storage = storage
        self.replicas = replicas
        self.events_max_age_s = events_max_age_s
        self.batch_max_messages = batch_max_messages
        self.client = NatsClient(
            url,
            creds=creds,
            ssl_context=ssl_context,
            request_timeout=request_timeout,
            max_connections=max_connections,
        )
        self.js = JetStream(self.client)

    # -- lifetime -----------------------------------------------------------------------

    async def start(self) -> None:
        await self.client.ping()
        version = self.client.server_version
        if version < MINIMUM_VERSION:
            raise BackendUnavailable(
                f"nats-server {'.'.join(map(str, version))} at {self.url} is too old: the "
                f"nats backend needs {'.'.join(map(str, MINIMUM_VERSION))} or newer (atomic "
                "batch publish; older servers silently ignore it).",
                details={"backend": "nats", "server_version": list(version)},
            )
        if not self.client.server_info.get("jetstream"):
            raise BackendUnavailable(
                f"nats-server at {self.url} runs without JetStream: start it with -js.",
                details={"backend": "nats"},
            )
        storage, replicas = self.storage, self.replicas
        await self.js.ensure_stream(
            stream_config(self.stream, self.subjects, storage=storage, replicas=replicas)
        )
        await self.js.ensure_stream(
            events_stream_config(
                self.events_stream,
                self.subjects,
                storage=storage,
                replicas=replicas,
                max_age_s=self.events_max_age_s,
            )
        )

    async def close(self) -> None:
        await self.client.aclose()

    async def ping(self) -> float:
        return await self.client.ping()

    async def reset(self) -> None:
        await self.js.purge(self.stream)
        await self.js.purge(self.events_stream)

    # -- shared calls -------------------------------------------------------------------

    async def last(self, subjects: Iterable[str]) -> dict[str, StoredMsg]:
        """The last message of each subject that has one."""
        wanted = list(dict.fromkeys(subjects))
        if not wanted:
            return {}
        return await self._call(self.js.get_last(self.stream, wanted))

    async def read(
        self, subject_filter: str, start_seq: int = 1, limit: int | None = None
    ) -> list[StoredMsg]:
        """Messages matching ``subject_filter`` from ``start_seq`` on, in stream order;
        every one of them if ``limit`` is ``None``."""
        found: list[StoredMsg] = []
        while True:
            page = PAGE if limit is None else min(PAGE, limit - len(found))
            if page <= 0:
                return found
            got = await self._call(self.js.get_batch(self.stream, subject_filter, start_seq, page))
            found.extend(got)
            if len(got) < page:
                return found
            start_seq = got[-1].seq + 1

    async def write(self, messages: Sequence[Message]) -> PubAck:
        """Store ``messages`` as one atomic batch; :class:`CasFailed` if a compare-and-set
        in it did not hold (nothing stored)."""
        if len(messages) > self.batch_max_messages:
            raise BatchTooLarge(len(messages), self.batch_max_messages)
        try:
            return await self.js.atomic_publish(messages)
        except JetStreamError as error:
            if error.err_code == ERR_WRONG_LAST_SEQUENCE:
                raise CasFailed(error.description) from error
            if error.err_code == ERR_BATCH_TOO_LARGE:
                raise BatchTooLarge(len(messages), self.batch_max_messages) from error
            raise self.unavailable(error) from error

    async def purge(
        self, subject_filter: str, *, before_seq: int | None = None, keep: int | None = None
    ) -> int:
        return await self._call(
            self.js.purge(self.stream, filter=subject_filter, seq=before_seq, keep=keep)
        )

    async def subjects_of(self, subject_filter: str) -> dict[str, int]:
        """Subjects matching the filter that hold messages, with their message counts."""
        return await self._call(self.js.stream_subjects(self.stream, subject_filter))

    async def _call(self, call: Awaitable[T]) -> T:
        try:
            return await call
        except JetStreamError as error:
            raise self.unavailable(error) from error

    def unavailable(self, error: JetStreamError) -> BackendUnavailable:
        """What a refused JetStream call means to the caller: the backend cannot serve."""
        return BackendUnavailable(
            f"NATS JetStream refused a call: {error.description} (code {error.err_code}).",
            details={"backend": "nats", "err_code": error.err_code},
        )


class BatchTooLarge(PayloadTooLarge):
    """More messages than one atomic batch may hold (nats-server's
    ``jetstream.limits.batch.max_msgs``)."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(
            f"This write needs {size} messages in one atomic batch; the NATS server takes "
            f"at most {limit} (jetstream {{ limits {{ batch {{ max_msgs }} }} }} in its "
            "configuration; tell ojs-actors with OJS_NATS_BATCH_MAX). Send fewer jobs at once.",
            details={"backend": "nats", "messages": size, "limit": limit},
        )
