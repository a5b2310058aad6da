"""The ReadyWatcher: wakes this process's waiting fetches when another process (or this
one) makes jobs available, on a backend that tells (:class:`ReadyNotices`, e.g. Redis).

Without it, a fetch waiting in one process learns of a job enqueued through another only
at its next poll (``Settings.poll_interval``); with it, at once. Its notices are hints:
while the backend is away the watcher retries every poll interval, and the waiters keep
polling, so nothing depends on a notice arriving.
"""

from __future__ import annotations

import logging

import trio

from ..actors import Actor
from ..backends import ReadyNotices
from ..core import BackendUnavailable
from .signals import Signals

log = logging.getLogger("ojs_actors.system")


class ReadyWatcher(Actor):
    def __init__(self, backend: ReadyNotices, signals: Signals, *, poll_interval: float) -> None:
        self.backend = backend
        self.signals = signals
        self.poll_interval = poll_interval

    async def on_start(self) -> None:
        self.nursery.start_soon(self._run)

    async def _run(self) -> None:
        while True:
            try:
                await self.backend.watch_ready(self.signals.notify_ready)
            except BackendUnavailable as error:  # an outage is no crash: watch again later
                log.warning("ready notices: %s; retrying in %.1fs", error, self.poll_interval)
            await trio.sleep(self.poll_interval)
