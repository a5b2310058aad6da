"""Actors' snapshots in Redis: :class:`RedisSnapshots`."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from ..codec import dumps
from ..outbox import EVENT_RETENTION
from .connection import RedisConnection


class RedisSnapshots:
    """The :class:`~ojs_actors.backends.base.Snapshots` part on ``connection``.

    Owns the keys ``snapshots``, ``snaporder``, ``snapver``, ``snapkind:{k}``,
    ``snapindexed`` and ``snapseq`` under the connection's prefix."""

    def __init__(self, connection: RedisConnection, event_retention: int = EVENT_RETENTION) -> None:
        """``event_retention``: outbox entries kept (``save_snapshot_if`` appends events)."""
        self._connection = connection
        self._keep = event_retention

    async def load_snapshot(self, key: str) -> dict[str, Any] | None:
        connection = self._connection
        raw = await connection.hget(connection.prefix + "snapshots", key)
        return json.loads(raw) if raw is not None else None

    async def save_snapshot(self, key: str, state: dict[str, Any]) -> None:
        await self._connection.script("save_snapshot", key, dumps(state))

    async def load_snapshot_versioned(self, key: str) -> tuple[dict[str, Any], int] | None:
        found = await self._connection.script("load_snapshot", key)
        if not found:
            return None
        raw, version = found
        return dict(json.loads(raw)), int(version)

    async def save_snapshot_if(
        self,
        key: str,
        state: dict[str, Any],
        expected_version: int | None,
        *,
        events: Sequence[dict[str, Any]] = (),
    ) -> int | None:
        expected = "" if expected_version is None else str(expected_version)
        outbox: list[Any] = []
        if events:
            outbox.append(self._keep)
            for event in events:
                outbox += [str(event["id"]), dumps(event)]
        version = await self._connection.script(
            "save_snapshot", key, dumps(state), expected, *outbox
        )
        return int(version) if version is not None else None

    async def list_snapshots(self, prefix: str) -> dict[str, dict[str, Any]]:
        flat = await self._connection.script("list_snapshots", prefix)
        return {flat[i]: json.loads(flat[i + 1]) for i in range(0, len(flat), 2)}

    async def delete_snapshot(self, key: str) -> bool:
        return bool(await self._connection.script("delete_snapshot", key))
