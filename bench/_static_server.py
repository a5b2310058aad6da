"""A minimal HTTP/1.1 responder: one fixed response per bodiless request, nothing else.

It exists to show the load generator's own ceiling: a server that does almost
no work per request, so the rate the generator reaches against it is a lower
bound of what the generator can drive (``python -m bench._static_server --port P``).
With ``--close-after N`` it ends each connection after its N-th response, as
Hypercorn does after 1000, so the generator's reconnecting can be tested.
"""

from __future__ import annotations

import argparse
import selectors
import signal
import socket
import sys

HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 17\r\n"
BODY = b'{"hello":"world"}'
RESPONSE = HEAD + b"\r\n" + BODY
LAST_RESPONSE = HEAD + b"Connection: close\r\n\r\n" + BODY


def serve(port: int, close_after: int | None = None) -> None:
    selector = selectors.DefaultSelector()
    listener = socket.create_server(("127.0.0.1", port), backlog=256)
    listener.setblocking(False)
    selector.register(listener, selectors.EVENT_READ, None)
    pending: dict[socket.socket, bytearray] = {}
    answered: dict[socket.socket, int] = {}
    while True:
        for key, _ in selector.select():
            if key.data is None:
                client, _address = listener.accept()
                client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                client.setblocking(False)
                selector.register(client, selectors.EVENT_READ, True)
                pending[client] = bytearray()
                answered[client] = 0
                continue
            client = key.fileobj  # type: ignore[assignment]
            data = client.recv(65536)
            closing = not data  # the client hung up
            buffer = pending[client]
            buffer += data
            requests = buffer.count(b"\r\n\r\n")
            if requests:
                del buffer[: buffer.rfind(b"\r\n\r\n") + 4]
                answered[client] += requests
                closing = close_after is not None and answered[client] >= close_after
                if closing:
                    client.sendall(RESPONSE * (requests - 1) + LAST_RESPONSE)
                else:
                    client.sendall(RESPONSE * requests)
            if closing:
                selector.unregister(client)
                del pending[client], answered[client]
                client.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--close-after", type=int, help="responses per connection, then close")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    serve(args.port, args.close_after)


if __name__ == "__main__":
    main()
