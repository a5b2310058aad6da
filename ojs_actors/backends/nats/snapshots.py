"""Actors' snapshots in NATS: :class:`NatsSnapshots`.

One subject per key (``ojs.snap.{kind}.{rest}``, :mod:`.layout`), every save rolling the
older message up, so the subject's last sequence is the snapshot's version and a
compare-and-set save is a ``Nats-Expected-Last-Subject-Sequence`` on it (0: the key must
not exist). Every save reads the current version first: it keeps the first save's
sequence in the body, which orders listings (first saved first), and guards the write.
Listing by prefix reads the kind's subjects (``queue:``, ``cron:``, …)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ...core import BackendUnavailable
from ..codec import dumps, dumps_record, loads_record
from .connection import CasFailed, NatsStore
from .events import NatsEventLog
from .writes import Batch, guarded

MAX_ATTEMPTS = 20


class NatsSnapshots:
    """The :class:`~ojs_actors.backends.base.Snapshots` part."""

    def __init__(self, store: NatsStore, events: NatsEventLog) -> None:
        self._store = store
        self._events = events

    async def load_snapshot(self, key: str) -> dict[str, Any] | None:
        found = await self.load_snapshot_versioned(key)
        return found[0] if found is not None else None

    async def load_snapshot_versioned(self, key: str) -> tuple[dict[str, Any], int] | None:
        found = await self._last(key)
        if found is None:
            return None
        stored, seq = found
        return stored["state"], seq

    async def _last(self, key: str) -> tuple[dict[str, Any], int] | None:
        """The stored body ``{"key", "state", "first"}`` and its sequence."""
        subject = self._store.subjects.snapshot(key)
        message = (await self._store.last([subject])).get(subject)
        if message is None or not message.data:
            return None
        return loads_record(message.data.decode()), message.seq

    async def save_snapshot(self, key: str, state: dict[str, Any]) -> None:
        for _ in range(MAX_ATTEMPTS):
            found = await self._last(key)
            expected = found[1] if found is not None else 0
            if await self._save(key, state, expected, found, ()) is not None:
                return
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
        found = await self._last(key)
        if (found[1] if found is not None else None) != expected_version:
            return None
        return await self._save(key, state, expected_version or 0, found, events)

    async def _save(
        self,
        key: str,
        state: dict[str, Any],
        expected: int,
        found: tuple[dict[str, Any], int] | None,
        events: Sequence[dict[str, Any]],
    ) -> int | None:
        """Store ``state`` over the version ``found`` (at ``expected``); the new version, or
        ``None`` if the key changed meanwhile. Keeps the first save's sequence, which
        orders listings."""
        first = (found[0].get("first") or found[1]) if found is not None else 0
        batch = Batch(self._store.subjects)
        at = batch.put(
            self._store.subjects.snapshot(key), _body(key, state, first), guarded(expected)
        )
        for event in events:
            batch.put_event(event["id"], dumps(event).encode())
        try:
            ack = await self._store.write(batch.finish())
        except CasFailed:
            return None
        if events:
            await self._events.appended(len(events))
        return batch.seq_of(ack, at)

    async def delete_snapshot(self, key: str) -> bool:
        return await self._store.purge(self._store.subjects.snapshot(key)) > 0


def _body(key: str, state: dict[str, Any], first: int) -> bytes:
    return dumps_record({"key": key, "state": state, "first": first}).encode()
