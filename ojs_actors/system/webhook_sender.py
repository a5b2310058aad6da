"""One webhook request (ojs-webhooks §5.3, §7.1, §8.1): the signed POST of an event to a
subscription's URL, with httpx on trio, bounded in time and in what it reads back.

Redirects are followed (at most 3), each to a host the allow-list admits
(``Settings.webhook_allowed_hosts``), so a redirect cannot lead the server where a
subscription could not.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import trio

from ..core import webhooks

USER_AGENT = "OJS-Webhook/1.0 (ojs-actors)"
MAX_REDIRECTS = 3
RESPONSE_BODY_LIMIT = 1024
"""Bytes of a receiver's answer kept (the test endpoint shows them); the rest is not read."""


@dataclass(frozen=True, slots=True)
class Outcome:
    status_code: int | None
    """The receiver's final status; ``None`` if none came (timeout, connection error)."""
    error: str | None
    duration_ms: int
    retry_after_ms: int | None = None
    body: str = ""
    final: bool = False
    """A failure no retry can mend (a redirect refused or too many): a dead delivery."""

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


class DisallowedHost(Exception):
    """A redirect to a host the allow-list does not admit."""


def new_client(allowed_hosts: Sequence[str], timeout: float) -> httpx.AsyncClient:
    """The client of a process's deliveries (one connection pool), to close with it."""

    async def check_host(request: httpx.Request) -> None:
        if not webhooks.host_allowed(request.url.host, allowed_hosts):
            raise DisallowedHost(f"host {request.url.host!r} is not allowed")

    return httpx.AsyncClient(
        timeout=httpx.Timeout(timeout),
        follow_redirects=True,
        max_redirects=MAX_REDIRECTS,
        event_hooks={"request": [check_host]},
        headers={"User-Agent": USER_AGENT},
        trust_env=False,
    )


def _retry_after_ms(value: str | None) -> int | None:
    if value is None or not value.strip().isdigit():
        return None  # an HTTP date is rare from receivers: the schedule applies
    return int(value.strip()) * 1000


async def send(
    client: httpx.AsyncClient,
    subscription: dict[str, Any],
    event: dict[str, Any],
    delivery_id: str,
    now_ms: int,
    time_limit: float,
) -> Outcome:
    """POST ``event`` to ``subscription``, signed at ``now_ms``; never raises for what the
    receiver or the network does (that is the :class:`Outcome`)."""
    body = json.dumps(event, separators=(",", ":")).encode()
    timestamp = now_ms // 1000
    headers = {
        "Content-Type": "application/json",
        "X-OJS-Event-Type": str(event.get("type", "")),
        "X-OJS-Delivery-ID": delivery_id,
        "X-OJS-Subscription-ID": subscription["id"],
        "X-OJS-Timestamp": str(timestamp),
        "X-OJS-Signature": webhooks.signature_header(subscription, timestamp, body, now_ms),
    }
    started = time.monotonic()

    def outcome(status: int | None, error: str | None, **more: Any) -> Outcome:
        return Outcome(status, error, int((time.monotonic() - started) * 1000), **more)

    try:
        with trio.fail_after(time_limit):  # the whole exchange, redirects included
            async with client.stream(
                "POST", subscription["url"], content=body, headers=headers
            ) as response:
                kept = bytearray()
                async for chunk in response.aiter_bytes():
                    kept += chunk
                    if len(kept) >= RESPONSE_BODY_LIMIT:
                        break
    except trio.TooSlowError:
        return outcome(None, f"timed out after {time_limit:g}s")
    except DisallowedHost as error:
        return outcome(None, f"redirect refused: {error}", final=True)
    except (httpx.InvalidURL, httpx.UnsupportedProtocol) as error:  # no retry mends these
        return outcome(None, f"{type(error).__name__}: {error}".rstrip(": "), final=True)
    except httpx.TooManyRedirects:
        return outcome(None, f"more than {MAX_REDIRECTS} redirects", final=True)
    except (httpx.HTTPError, OSError) as error:  # timeouts, refused, reset: tried again
        return outcome(None, f"{type(error).__name__}: {error}".rstrip(": "))
    except Exception as error:  # anything else of the client's: tried again on the schedule
        return outcome(None, f"{type(error).__name__}: {error}".rstrip(": "))
    status = response.status_code
    text = bytes(kept[:RESPONSE_BODY_LIMIT]).decode("utf-8", "replace")
    failure = None if 200 <= status < 300 else f"HTTP {status}"
    return outcome(
        status,
        failure,
        retry_after_ms=_retry_after_ms(response.headers.get("Retry-After")),
        body=text,
    )


__all__ = ["USER_AGENT", "Outcome", "new_client", "send"]
