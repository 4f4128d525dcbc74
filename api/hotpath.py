"""The latest value of a site at memory speed: `GET /v1/sites/{site}/latest` answered before routing.

Dashboards and control rooms poll the latest value of many sites, so its answer should cost
what a dictionary lookup costs. When everything it needs is already in this process (the key
in the key cache, the site in the site directory and visible to the key, an event for the site
in the stream hub, and the key within its rate), this middleware answers at once, skipping
routing and dependency resolution. In every other case (no or bad key, a key without
`sites:read`, a site the directory does not show to the key, no event yet, over the rate) the
request goes on to the route in `api.routers.energy`, which decides and answers it, errors
included. So the answer, its errors and its timing class are the route's: this is its cache.
"""

from __future__ import annotations

import re
from typing import Final

import msgspec
from fastapi.routing import iter_route_contexts
from starlette.types import ASGIApp, Receive, Scope, Send

from api.auth import PERMISSIONS
from api.errors import ApiError
from api.streams import StreamHub
from runtime.dberrors import API_TRANSIENT_DB_ERRORS
from schemas.events import SiteLatestBody, decode_site_energy, encode_latest
from schemas.messages import IDENTIFIER_STRICT

# a failed key check goes on to the route, which answers it: 401, or 503 with Retry-After
_ROUTE_ANSWERS: tuple[type[Exception], ...] = (ApiError, *API_TRANSIENT_DB_ERRORS)

__all__ = ["LatestValues", "latest_body"]

_ID: Final = re.compile(IDENTIFIER_STRICT)
_PREFIX: Final = "/v1/sites/"
_SUFFIX: Final = "/latest"
_ROUTE: Final = _PREFIX + "{site}" + _SUFFIX


def latest_body(hub: StreamHub, site: str) -> bytes | None:
    """The site's newest live event as a `SiteLatest` JSON body, if this process holds one:
    decoded and encoded again by its contract (a couple of microseconds), never spliced."""
    event = hub.latest(f"site:{site}")
    if event is None:
        return None
    try:
        e = decode_site_energy(event.data)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None  # not a site event this API can read (a foreign producer's): the database answers
    return encode_latest(SiteLatestBody(**{f: getattr(e, f) for f in e.__struct_fields__}, source="stream"))


def _bearer(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            return token.strip() if scheme.lower() == "bearer" else None
    return None


class LatestValues:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._route: object | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET":
            path: str = scope["path"]
            if path.startswith(_PREFIX) and path.endswith(_SUFFIX):
                body = await self._answer(scope, path[len(_PREFIX) : -len(_SUFFIX)])
                if body is not None:
                    scope["route"] = self._route_of(scope)  # the metrics label the route, as routing does
                    await send(
                        {
                            "type": "http.response.start",
                            "status": 200,
                            "headers": [
                                (b"content-length", b"%d" % len(body)),
                                (b"content-type", b"application/json"),
                            ],
                        }
                    )
                    await send({"type": "http.response.body", "body": body})
                    return
        await self.app(scope, receive, send)

    async def _answer(self, scope: Scope, site: str) -> bytes | None:
        state = scope["app"].state
        token = _bearer(scope)
        if token is None or not _ID.match(site):
            return None
        try:
            who = await state.keys.authenticate(token)
        except _ROUTE_ANSWERS:
            return None
        if "sites:read" not in PERMISSIONS[who.role] or state.sites.cached_visible(site, who) is None:
            return None
        body = latest_body(state.hub, site)
        if body is None:
            return None
        try:
            state.rate_limiter.take(who)
        except ApiError:
            return None
        return body

    def _route_of(self, scope: Scope) -> object | None:
        if self._route is None:  # the route's own object, as routing puts it in the scope
            self._route = next(
                (
                    c.original_route
                    for c in iter_route_contexts(scope["app"].routes)
                    if getattr(c.original_route, "path", None) == _ROUTE
                ),
                None,
            )
        return self._route
