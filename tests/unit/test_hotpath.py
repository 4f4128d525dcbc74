"""The latest value's hot path answers only what the route would answer the same way; everything
else (no key, a key without sites:read, a site hidden from the key, no event, over the rate)
falls through to the route."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from types import SimpleNamespace
from typing import Any

from api.auth import Principal, RateLimiter
from api.directory import SiteDirectory, SiteInfo
from api.errors import Unauthorized
from api.hotpath import LatestValues
from api.streams import Event, StreamHub
from schemas.events import SiteEnergyEvent, encode_event

_KEYS = {
    "ws_op_x": Principal("op", "operator", "operator", None, frozenset()),
    "ws_a_x": Principal("a", "manager a", "manager", "tenant-a", frozenset()),
    "ws_b_x": Principal("b", "manager b", "manager", "tenant-b", frozenset(), rate_per_s=1e-9, burst=1),
    "ws_al_x": Principal("al", "alerts", "alerts", None, frozenset()),
}


_UNCHECKABLE = {"ws_db_away"}


class _Keys:
    async def authenticate(self, token: str) -> Principal:
        if token in _UNCHECKABLE:  # a key not cached while the database restarts
            raise ConnectionRefusedError(111, "Connection refused")
        if token not in _KEYS:
            raise Unauthorized("invalid API key")
        return _KEYS[token]


def _event(site: str, kw: float) -> bytes:
    # times in another zone on purpose: the event's contract writes them in UTC
    cst = timezone(timedelta(hours=8))
    return encode_event(
        SiteEnergyEvent(
            site=site,
            power_kw=kw,
            as_of=datetime(2026, 11, 24, 10, 15, tzinfo=cst),
            bucket_start=datetime(2026, 11, 24, 10, 0, tzinfo=cst),
            kwh=1.5,
            co2e_kg=None,
            intensity_g_per_kwh=None,
            factor_set=None,
            emissions_quality=None,
        )
    )


def _app() -> Any:
    hub = StreamHub(buffer=5, client_queue=5)
    hub.publish(Event("site:a-1", 0, 7, _event("a-1", 3.5)))
    hub.publish(Event("site:b-1", 0, 8, _event("b-1", 9.0)))
    sites = SiteDirectory(pool=None, refresh_s=30)
    sites._sites = {
        s: SiteInfo(s, t, "CN-ZJ", "Asia/Shanghai")
        for s, t in [("a-1", "tenant-a"), ("b-1", "tenant-b"), ("a-2", "tenant-a")]
    }
    state = SimpleNamespace(keys=_Keys(), sites=sites, hub=hub, rate_limiter=RateLimiter(100, 100))
    return SimpleNamespace(state=state, routes=[])


async def _get(path: str, token: str | None) -> tuple[str, list[dict[str, Any]]]:
    """('hot', messages) if the middleware answered, ('route', []) if it passed the request on."""
    sent: list[dict[str, Any]] = []
    passed: list[bool] = []

    async def route(scope: Any, receive: Any, send: Any) -> None:
        passed.append(True)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    headers = [(b"authorization", f"Bearer {token}".encode())] if token else []
    scope = {"type": "http", "method": "GET", "path": path, "headers": headers, "app": APP}
    await LatestValues(route)(scope, None, send)  # type: ignore[arg-type]
    return ("route", []) if passed else ("hot", sent)


APP = _app()


async def test_a_visible_site_with_an_event_is_answered_from_memory() -> None:
    how, sent = await _get("/v1/sites/a-1/latest", "ws_a_x")
    assert how == "hot"
    assert sent[0]["status"] == 200 and (b"content-type", b"application/json") in sent[0]["headers"]
    assert sent[1]["body"] == (
        b'{"site":"a-1","power_kw":3.5,"as_of":"2026-11-24T02:15:00Z","bucket_start":"2026-11-24T02:00:00Z",'
        b'"kwh":1.5,"co2e_kg":null,"intensity_g_per_kwh":null,"factor_set":null,"emissions_quality":null,'
        b'"source":"stream"}'
    ), "the event's contract, re-encoded with its source; its times in UTC with Z"
    assert (await _get("/v1/sites/b-1/latest", "ws_op_x"))[0] == "hot"  # an operator sees every site


async def test_everything_else_goes_to_the_route() -> None:
    for path, token in [
        ("/v1/sites/b-1/latest", "ws_a_x"),  # another tenant's site: the route answers its 404
        ("/v1/sites/nope/latest", "ws_a_x"),  # a missing site: the same
        ("/v1/sites/a-2/latest", "ws_a_x"),  # visible, but no event yet: the route asks the database
        ("/v1/sites/a-1/latest", None),  # no key: 401 from the route
        ("/v1/sites/a-1/latest", "ws_forged_x"),  # a bad key: the same
        ("/v1/sites/a-1/latest", "ws_db_away"),  # its key cannot be checked: the route's 503
        ("/v1/sites/a-1/latest", "ws_al_x"),  # an alerts key may not read sites: 403 from the route
        ("/v1/sites/a-1\n/latest", "ws_a_x"),  # not an identifier (the path is decoded)
        ("/v1/sites/a-1/now", "ws_a_x"),  # another route
    ]:
        assert (await _get(path, token))[0] == "route", (path, token)


async def test_a_key_over_its_rate_goes_to_the_route_for_its_429() -> None:
    assert (await _get("/v1/sites/b-1/latest", "ws_b_x"))[0] == "hot"  # its burst of one
    assert (await _get("/v1/sites/b-1/latest", "ws_b_x"))[0] == "route"


def test_an_event_that_is_not_a_site_event_leaves_the_answer_to_the_database() -> None:
    from api.hotpath import latest_body

    hub = StreamHub(buffer=10, client_queue=10)
    hub.publish(Event("site:a-1", 0, 7, b'{"site": "a-1", "power_kw": "lots"}'))
    assert latest_body(hub, "a-1") is None
    hub.publish(Event("site:a-1", 0, 8, _event("a-1", 3.5)))
    assert latest_body(hub, "a-1") is not None
