"""nats-server's monitoring endpoints (``-m PORT`` / ``http:``), read with the standard
library only, so a measuring process can read ``/varz`` without the harness's imports."""

from __future__ import annotations

import json
from typing import Any
from urllib.request import urlopen

HOST = "127.0.0.1"


def nats_monitor(port: int, path: str = "/varz", timeout: float = 10.0) -> dict[str, Any]:
    """The JSON of a monitoring endpoint (Go may send it chunked: urllib reads that)."""
    with urlopen(f"http://{HOST}:{port}{path}", timeout=timeout) as answer:  # noqa: S310
        document: dict[str, Any] = json.loads(answer.read())
        return document


def in_msgs(port: int) -> int:
    """Messages the server has received from clients so far (``/varz`` ``in_msgs``)."""
    return int(nats_monitor(port)["in_msgs"])
