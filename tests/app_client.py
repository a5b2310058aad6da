"""Calls through an app's Quart test client, for the tests of one endpoint family."""

from __future__ import annotations

from typing import Any

import trio

JSON = {"Content-Type": "application/json"}


async def request(client: Any, method: str, path: str, body: Any = None) -> tuple[int, Any, Any]:
    """``(status, headers, JSON body)`` of one call; never a 5xx, never longer than 10 s."""
    with trio.fail_after(10):
        response = await client.open(path, method=method, json=body, headers=JSON)
        data = await response.get_json()
    assert response.status_code < 500, data
    return response.status_code, response.headers, data
