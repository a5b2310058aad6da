"""Live event streams (ojs-realtime): ``GET /ojs/v1/events/stream`` (Server-Sent Events,
the filters of ``GET /ojs/v1/events``) and the WebSocket ``/ojs/v1/ws``.

Both follow the event outbox from where the client says (``Last-Event-ID``, or the
``after`` query parameter; a WebSocket's ``resume``), else from its end.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from quart import Blueprint, Response, current_app, request, websocket

from ...backends import EventFilter
from ...system.event_stream import EventFeed, StreamSettings, StreamStats
from ..asgi import CLIENT_GONE, scope_items
from ..sse import SseBody
from ..wire import csv_param, ojs_system
from ..ws_session import DROPPED_CODE, SUBPROTOCOL, WsSession
from ._sse import refusal, stream_response

blueprint = Blueprint("stream", __name__)

REALTIME = "ojs_realtime"
"""``app.extensions`` key of the app's :class:`Realtime` (made on first use if not set)."""


@dataclass(frozen=True, slots=True)
class Realtime:
    settings: StreamSettings = StreamSettings()
    stats: StreamStats = field(default_factory=StreamStats)


def realtime() -> Realtime:
    found = current_app.extensions.get(REALTIME)
    if found is None:
        found = current_app.extensions[REALTIME] = Realtime()
    assert isinstance(found, Realtime)
    return found


@blueprint.get("/ojs/v1/events/stream")
async def event_stream() -> Response:
    refused = refusal("events")
    if refused is not None:
        return refused
    system = ojs_system()
    live = realtime()
    feed = EventFeed(
        system.events,
        EventFilter(
            types=csv_param("types"), queues=csv_param("queues"), job_types=csv_param("job_types")
        ),
    )
    after = request.headers.get("Last-Event-ID") or request.args.get("after") or None
    gap = await feed.start(after)
    body = SseBody(
        feed,
        gap,
        signals=system.signals,
        settings=live.settings,
        stats=live.stats,
        client_gone=scope_items(request.scope)[CLIENT_GONE],
    )
    return stream_response(body)  # as long as its client stays


@blueprint.websocket("/ojs/v1/ws")
async def event_socket() -> None:
    offered = SUBPROTOCOL in websocket.requested_subprotocols
    await websocket.accept(subprotocol=SUBPROTOCOL if offered else None)
    live = realtime()
    session = WsSession(ojs_system(), live.settings, live.stats, websocket.send)
    live.stats.open += 1
    try:
        dropped = await session.run(websocket.receive)
    finally:
        live.stats.open -= 1
    if dropped is not None:
        await websocket.close(DROPPED_CODE, f"{dropped}: resume after your last event id")
