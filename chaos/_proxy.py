"""A loopback TCP proxy the harness puts between the servers and their backend store, and
breaks on purpose: no root, no network namespaces.

* :meth:`FaultProxy.cut` for a while: open connections are closed and new ones are
  refused (accepted and reset at once), as when the store's host goes away;
* :meth:`FaultProxy.delay` for a while: every chunk is held back that long in each
  direction (order kept), as on a congested link;
* :meth:`FaultProxy.reset`: every open connection is reset (RST) once, as by a
  restarted load balancer or a NAT that forgot the flows; new ones go through.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator
from contextlib import contextmanager

import trio

HOST = "127.0.0.1"
CHUNK = 65_536
_LINGER_RESET = struct.pack("ii", 1, 0)
"""SO_LINGER on with a zero timeout: ``close`` sends RST instead of FIN."""


class _Link:
    def __init__(self, client: trio.SocketStream) -> None:
        self.client = client
        self.upstream: trio.SocketStream | None = None
        self.scope = trio.CancelScope()

    def abort(self, *, rst: bool) -> None:
        if rst:
            for stream in (self.client, self.upstream):
                if stream is not None:
                    _arm_reset(stream)
        self.scope.cancel()


def _arm_reset(stream: trio.SocketStream) -> None:
    try:
        stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
    except OSError:
        pass  # already closed


class FaultProxy:
    """Forwards ``HOST:port`` (a free port, known once :meth:`run` started) to
    ``HOST:target_port``."""

    def __init__(self, name: str, target_port: int) -> None:
        self.name = name
        self.target_port = target_port
        self.port = 0
        self.connections = 0
        self._links: set[_Link] = set()
        self._cut = False
        self._delay_s = 0.0

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host=HOST)
        self.port = listeners[0].socket.getsockname()[1]
        async with trio.open_nursery() as nursery:
            task_status.started()
            await trio.serve_listeners(self._serve, listeners, handler_nursery=nursery)

    @contextmanager
    def cut(self) -> Iterator[None]:
        """The store unreachable inside the block."""
        self._cut = True
        for link in list(self._links):
            link.abort(rst=False)
        try:
            yield
        finally:
            self._cut = False

    @contextmanager
    def delay(self, seconds: float) -> Iterator[None]:
        """Every chunk held back ``seconds`` inside the block."""
        self._delay_s = seconds
        try:
            yield
        finally:
            self._delay_s = 0.0

    def reset(self) -> None:
        """Reset every open connection now."""
        for link in list(self._links):
            link.abort(rst=True)

    async def _serve(self, client: trio.SocketStream) -> None:
        if self._cut:
            _arm_reset(client)
            await client.aclose()
            return
        link = _Link(client)
        self._links.add(link)
        self.connections += 1
        try:
            with link.scope:
                link.upstream = await trio.open_tcp_stream(HOST, self.target_port)
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._pipe, client, link.upstream, link)
                    nursery.start_soon(self._pipe, link.upstream, client, link)
        except OSError:
            pass  # the store refused or dropped it: the client sees its end closed
        finally:
            self._links.discard(link)
            with trio.CancelScope(shield=True):
                for stream in (client, link.upstream):
                    if stream is not None:
                        await stream.aclose()

    async def _pipe(self, source: trio.SocketStream, sink: trio.SocketStream, link: _Link) -> None:
        try:
            while data := await source.receive_some(CHUNK):
                if self._delay_s:
                    await trio.sleep(self._delay_s)
                await sink.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        link.scope.cancel()  # one side ended: end the other too
