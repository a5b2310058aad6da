"""A small keep-alive HTTP/1.1 JSON client on trio, cheap per request.

The HTTP workers of scenario 2 run many requests per job; a general client
(httpx) would cost more CPU than the server it measures. This one writes a
precomputed head plus the JSON body and reads only status and ``Content-Length``
(the parser of :mod:`bench._load`). It opens the connection again when the server
closes it (Hypercorn does after 1000 requests), and before reusing one that sat
idle long enough for the server to drop it (Hypercorn's keep-alive timeout is 5 s):
a request sent on a connection the server is closing would be lost.
"""

from __future__ import annotations

import json
from typing import Any

import trio

from ._load import parse_response

RECEIVE_BYTES = 256 * 1024
IDLE_REUSE_S = 2.0  # safely below the server's keep-alive timeout


class HttpClient:
    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self._stream: trio.SocketStream | None = None
        self._buffer = bytearray()
        self._last_used = 0.0

    async def _connection(self) -> trio.SocketStream:
        if self._stream is not None and trio.current_time() - self._last_used > IDLE_REUSE_S:
            await self.aclose()
        if self._stream is None:
            self._stream = await trio.open_tcp_stream(self.host, self.port)
            self._buffer.clear()
        return self._stream

    async def post(self, path: str, payload: Any) -> tuple[int, Any]:
        """POST ``payload`` as JSON; the status and the decoded JSON answer."""
        body = json.dumps(payload, separators=(",", ":")).encode()
        return await self._exchange("POST", path, body)

    async def get(self, path: str) -> tuple[int, Any]:
        """GET ``path``; the status and the decoded JSON answer."""
        return await self._exchange("GET", path, None)

    async def _exchange(self, method: str, path: str, body: bytes | None) -> tuple[int, Any]:
        head = f"{method} {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
        if body is not None:
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        stream = await self._connection()
        await stream.send_all((head + "\r\n").encode() + (body or b""))
        while (response := parse_response(self._buffer)) is None:
            data = await stream.receive_some(RECEIVE_BYTES)
            if not data:
                await self.aclose()
                raise ConnectionError(f"the server closed the connection during {method} {path}")
            self._buffer += data
        answer = json.loads(self._buffer[response.body_start : response.end] or b"null")
        del self._buffer[: response.end]
        self._last_used = trio.current_time()
        if response.closes:
            await self.aclose()
        return response.status, answer

    async def aclose(self) -> None:
        if self._stream is not None:
            stream, self._stream = self._stream, None
            await stream.aclose()
