"""Server-sent event streams of a region's intensity and a site's live figures, within a key's scope.

`GET /v1/stream/grid/{region}`: every new or restated intensity of the region (all factor sets
and bases), as the grid consumer publishes it. `GET /v1/stream/alerts`: every alert event
(firing, resolved) the key may see, as on the alerts topic. `GET /v1/stream/sites/{site}`: the site's power
now, latest interval energy and its emissions, after each readings batch that touched it.
Each event carries `id: <partition>.<offset>`; reconnect with `Last-Event-ID` (or
`?last_event_id=`) to receive what was missed, as far as the stream's buffer reaches. Idle
streams get a comment line every `WATTSTREAM_SSE_HEARTBEAT_S`. A client that falls too far
behind is disconnected, never buffered without bound.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Query, Request, Response
from starlette.types import Receive, Scope, Send

from api.auth import AlertsRead, GridRead, Principal, SitesRead, scoped_connection
from api.errors import error_responses
from api.routers.grid import region_or_404
from api.streams import (
    ALERTS_CHANNEL,
    RAW_SEND,
    SSE_CLIENTS,
    SSE_EVENTS,
    Event,
    ServerWire,
    StreamHub,
    Subscription,
    parse_event_id,
    sse,
)
from schemas.messages import IDENTIFIER

__all__ = ["router"]

router = APIRouter(prefix="/v1/stream", tags=["streams"])

# an id is `<partition>.<offset>`; one the stream cannot use (not an id) starts it from now
LastEventId = Annotated[
    str | None, Header(max_length=64, description="the id of the last event received, to resume")
]
LastEventIdQuery = Annotated[
    str | None,
    Query(alias="last_event_id", max_length=64, description="Last-Event-ID, for clients that cannot set it"),
]
_STREAM: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {"text/event-stream": {"example": 'id: 0.42\nevent: grid\ndata: {"region": "CN-ZJ"}\n\n'}}
    },
    **error_responses(401, 403, 404, 429),
}


class EventStream(Response):
    """An SSE response fed by the hub: subscribes when the response starts, writes what the hub
    queues for it, ends when the client goes, falls too far behind, or the server stops."""

    media_type = "text/event-stream"

    def __init__(
        self, hub: StreamHub, channel: str, last_event_id: str | None, accept: Callable[[Event], bool] | None
    ) -> None:
        self.hub, self.channel, self.accept = hub, channel, accept
        self.after = parse_event_id(last_event_id)
        self.status_code = 200
        self.background = None
        self.init_headers({"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = self.channel.split(":", 1)[0]
        sub, missed = self.hub.subscribe(self.channel, self.after, self.accept)
        SSE_CLIENTS.labels(kind).inc()
        gone = asyncio.create_task(_until_disconnect(receive, sub))
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            first = b"".join([b"retry: 3000\n\n", *(sse(e) for e in missed)])
            SSE_EVENTS.labels(kind).inc(len(missed))
            await send({"type": "http.response.body", "body": first, "more_body": True})
            # from here the hub may write this client's frames itself (see `Subscription`)
            sub.direct = scope.get(RAW_SEND)
            sub.wire = ServerWire.of(sub.direct)
            while (chunk := await sub.next()) is not None:
                sub.writing = True
                try:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                finally:
                    sub.writing = False
            self.hub.unsubscribe(sub)  # before the end: nothing may be written after it
            if not sub.broken:  # a connection that failed under a write takes nothing more
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        except OSError:
            pass  # the client went while we wrote (ASGI 2.4 servers say so with OSError)
        finally:
            sub.close()
            gone.cancel()
            self.hub.unsubscribe(sub)
            SSE_CLIENTS.labels(kind).dec()


async def _until_disconnect(receive: Receive, sub: Subscription) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    sub.close(discard=True)


def _stream(
    request: Request, channel: str, last_event_id: str | None, accept: Callable[[Event], bool] | None = None
) -> EventStream:
    return EventStream(request.app.state.hub, channel, last_event_id, accept)


@router.get(
    "/grid/{region}",
    summary="Live intensity of a region (SSE)",
    response_class=EventStream,
    status_code=200,
    responses=_STREAM,
)
async def grid_stream(
    request: Request,
    who: GridRead,
    region: Annotated[str, Path(pattern=IDENTIFIER, examples=["CN-ZJ"])],
    last_event_id: LastEventId = None,
    last_event_id_query: LastEventIdQuery = None,
) -> EventStream:
    async with scoped_connection(request.app.state.pool, who) as conn:  # not held while streaming
        await region_or_404(conn, region, who)
    return _stream(request, f"grid:{region}", last_event_id or last_event_id_query)


@router.get(
    "/sites/{site}",
    summary="Live power, latest interval energy and emissions of a site (SSE)",
    response_class=EventStream,
    status_code=200,
    responses=_STREAM,
)
async def site_stream(
    request: Request,
    who: SitesRead,
    site: Annotated[str, Path(pattern=IDENTIFIER, examples=["hz-b001"])],
    last_event_id: LastEventId = None,
    last_event_id_query: LastEventIdQuery = None,
) -> EventStream:
    await request.app.state.sites.visible(site, who)
    return _stream(request, f"site:{site}", last_event_id or last_event_id_query)


def _in_scope(who: Principal) -> Callable[[Event], bool] | None:
    """An alerts key's filter: its tenant's alerts and its sites' (None: it sees every alert)."""
    if who.all_alerts:
        return None
    tenant, sites = who.tenant, who.sites

    def accept(event: Event) -> bool:
        tags = dict(event.tags)
        return (tenant is not None and tags.get("tenant") == tenant) or tags.get("site") in sites

    return accept


@router.get(
    "/alerts",
    summary="Live alert events within the key's scope (SSE)",
    response_class=EventStream,
    status_code=200,
    responses=_STREAM,
)
async def alert_stream(
    request: Request,
    who: AlertsRead,
    last_event_id: LastEventId = None,
    last_event_id_query: LastEventIdQuery = None,
) -> EventStream:
    return _stream(request, ALERTS_CHANNEL, last_event_id or last_event_id_query, _in_scope(who))
