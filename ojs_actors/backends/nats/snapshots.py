"""Actors' snapshots in NATS: :class:`NatsSnapshots`.

One subject per key (``ojs.snap.{kind}.{rest}``, :mod:`.layout`), every save rolling the
older message up, so the subject's last sequence is the snapshot's version and a
compare-and-set save is a ``Nats-Expected-Last-Subject-Sequence`` on it (0: the key must
not exist). A save keeps the first save's sequence in the body, which orders listings
(first saved first): it reads the key first, unless this process read or wrote it
last (then the compare-and-set on the version it knows decides, and a lost one reads).
Listing by prefix reads the kind's subjects (``queue:``, ``cron:``, …)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ...core import BackendUnavailable
from ..codec import dumps_record, loads_record
from .connection import CasFailed, NatsStore
from .events import NatsEventLog
from .writes import Batch, guarded

MAX_ATTEMPTS = 20
KNOWN_KEPT = 10_000


class NatsSnapshots:
    """The :class:`~ojs_actors.backends.base.Snapshots` part."""

    def __init__(self, store: NatsStore, events: NatsEventLog) -> None:
        self._store = store
        self._events = events
        self._known: dict[str, tuple[int, int]] = {}
        """Per key this process read or wrote last: (first save's sequence, version), so
        the next save skips the read (its compare-and-set still decides)."""

    def forget(self) -> None:
        self._known.clear()

    async def load_snapshot(self, key: str) -> dict[str, Any] | None:
        found = await self.load_snapshot_versioned(key)
        return found[0] if found is not None else None

    async def load_snapshot_versioned(self, key: str) -> tuple[dict[str, Any], int] | None:
        subject = self._store.subjects.snapshot(key)
        message = (await self._store.last([subject])).get(subject)
        if message is None or not message.data:
            self._known.pop(key, None)
            return None
        stored = loads_record(message.data.decode())
        self._remember(key, stored.get("first") or message.seq, message.seq)
        return stored["state"], message.seq

    def _remember(self, key: str, first: int, version: int) -> None:
        known = self._known
        known.pop(key, None)
        known[key] = (first, version)
        if len(known) > KNOWN_KEPT:
            del known[next(iter(known))]

    async def save_snapshot(self, key: str, state: dict[str, Any]) -> None:
        for _ in range(MAX_ATTEMPTS):
            if key not in self._known:
                await self.load_snapshot_versioned(key)
            first, version = self._known.get(key, (0, 0))
            if await self._save(key, state, first, version, ()) is not None:
                return
            self._known.pop(key, None)  # changed elsewhere: read it again
        raise BackendUnavailable(
            f"Snapshot {key} kept changing concurrently; try again.", details={"backend": "nats"}
        )

    async def list_snapshots(self, prefix: str) -> dict[str, dict[str, Any]]:
        found: list[tuple[int, str, dict[str, Any]]] = []
        for message in await self._store.read(self._store.subjects.snapshots(prefix)):
            if message.data:
                stored = loads_record(message.data.decode())
                if stored["key"].startswith(prefix):
                    found.append(
                        (stored.get("first") or message.seq, stored["key"], stored["state"])
                    )
        found.sort(key=lambda item: item[0])  # first-saved order
        return {key: state for _, key, state in found}

    async def save_snapshot_if(
        self,
        key: str,
        state: dict[str, Any],
        expected_version: int | None,
        *,
        events: Sequence[dict[str, Any]] = (),
    ) -> int | None:
        known = self._known.get(key)
        if expected_version is None:
            first = 0
        elif known is not None and known[1] == expected_version:
            first = known[0]
        else:
            found = await self.load_snapshot_versioned(key)
            if found is None or found[1] != expected_version:
                return None
            first = self._known[key][0]
        return await self._save(key, state, first, expected_version or 0, events)

    async def _save(
        self,
        key: str,
        state: dict[str, Any],
        first: int,
        expected: int,
        events: Sequence[dict[str, Any]],
    ) -> int | None:
        """Store ``state`` over the version ``expected`` (0: none); the new version, or
        ``None`` if the key changed meanwhile. Keeps the first save's sequence (``first``,
        0 for a new key), which orders listings."""
        batch = Batch(self._store.subjects)
        at = batch.put(
            self._store.subjects.snapshot(key), _body(key, state, first), guarded(expected)
        )
        for event in events:
            batch.put_event(event)
        try:
            ack = await self._store.write(batch.finish())
        except CasFailed:
            return None
        if events:
            await self._events.appended(len(events))
        version = batch.seq_of(ack, at)
        self._remember(key, first or version, version)
        return version

    async def delete_snapshot(self, key: str) -> bool:
        self._known.pop(key, None)
        return await self._store.purge(self._store.subjects.snapshot(key)) > 0


def _body(key: str, state: dict[str, Any], first: int) -> bytes:
    return dumps_record({"key": key, "state": state, "first": first}).encode()
