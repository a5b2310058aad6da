"""A cluster-wide lease in the snapshot store: which one process of those sharing a
backend does work that must be done once (relay the outbox, deliver webhooks).

The lease is the snapshot ``key``, ``{"holder": <process id>, "until": <epoch ms>}``,
taken and renewed by compare-and-set: renewed once a third of it is used; the others
take it when it runs out; a holder that finds it taken stops until it can take it again.
A restarted process that kept its holder id takes its lease back at once. The event
relay (:mod:`.event_relay`) and the webhook dispatcher (:mod:`.webhook_dispatcher`)
each hold one.
"""

from __future__ import annotations

import logging

from ..backends.base import Snapshots
from .clock import Clock

log = logging.getLogger("ojs_actors.system")


class Lease:
    def __init__(
        self, store: Snapshots, key: str, holder: str, clock: Clock, seconds: float
    ) -> None:
        if seconds <= 0:
            raise ValueError("a lease must last a positive time")
        self.store = store
        self.key = key
        self.holder = holder
        self.clock = clock
        self.length_ms = max(1, int(seconds * 1000))
        self.taken = False
        """Whether the last :meth:`keep` took the lease anew (resume from the store)."""
        self.held = False
        """Whether this holder had the lease at its last look (:attr:`holding` also checks
        that it has not run out since)."""
        self._version: int | None = None
        self.until = 0
        """When the lease runs out: ours while holding, else the last holder seen's."""
        self.renew_at = 0

    @property
    def holding(self) -> bool:
        return self.held and self.clock() < self.until

    def drop(self) -> None:
        """Forget the lease here (it runs out in the store by itself)."""
        self.held, self.until = False, 0

    async def keep(self) -> bool:
        """Hold the lease, with at least two thirds of it left: renew it, or take it if it
        is free, ran out, or already names this holder. Whether it is held."""
        self.taken = False
        now = self.clock()
        if self.held and now < self.renew_at:
            return True
        until = now + self.length_ms
        mine = {"holder": self.holder, "until": until}
        if self.held:
            version = await self.store.save_snapshot_if(self.key, mine, self._version)
        else:
            stored = await self.store.load_snapshot_versioned(self.key)
            expected = None
            if stored is not None:
                lease, expected = stored
                other_until = lease.get("until")
                if (
                    lease.get("holder") != self.holder
                    and isinstance(other_until, int)
                    and other_until > now
                ):
                    self.until = other_until
                    return False
            version = await self.store.save_snapshot_if(self.key, mine, expected)
        if version is None:  # another process wrote the lease meanwhile
            if self.held:
                log.warning("lease %s lost to another process", self.key)
            self.drop()
            return False
        if not self.held:
            log.info("lease %s taken (%s)", self.key, self.holder)
            self.taken = True
        self.held, self._version, self.until = True, version, until
        self.renew_at = until - self.length_ms * 2 // 3
        return True


__all__ = ["Lease"]
