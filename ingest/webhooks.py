"""Webhook delivery: a consumer of the alerts topic, and a dispatcher with retries.

`WebhookRouter` reads alert events (its own consumer group, offsets fenced in the database like
every wattstream consumer) and, in the transaction that advances its offsets, records one
delivery per matching subscription: unique on (subscription, event id), so an event that
reached the topic twice is delivered once. An alert matching an active silence is recorded as
`silenced` and not sent.

The dispatcher sends due deliveries (leased with `FOR UPDATE SKIP LOCKED`, so several
processes may run) as signed Alertmanager payloads, logs every attempt, and on failure (a
non-2xx answer, a refused connection, no answer within `webhook_timeout_s`) waits
`webhook_backoff_initial_s` × 2^(attempt−1), at most `webhook_backoff_max_s`, with jitter.
After `webhook_max_attempts` the delivery is `dead` and listed by the API. A resolved event is
not sent before the firing event of the same alert has been (delivered, dead or silenced).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
import msgspec
from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord

from core.alerting import silenced
from ingest import metrics
from ingest.consumer import FencedConsumer
from runtime.dberrors import is_transient_db_error
from schemas.settings import Settings
from schemas.webhooks import EVENT_ID_HEADER, SEVERITIES, SIGNATURE_HEADER, alertmanager_payload, sign

__all__ = ["Dispatcher", "WebhookRouter"]

log = logging.getLogger(__name__)

_decoder = msgspec.json.Decoder()
_SUBSCRIPTIONS = """
SELECT subscription_id, name, tenant, site_id, min_severity FROM webhook_subscriptions WHERE enabled
"""
_SILENCES = "SELECT matchers, tenant FROM silences WHERE starts_at <= now() AND ends_at > now()"
_INSERT_DELIVERIES = """
INSERT INTO webhook_deliveries (subscription_id, event_id, fingerprint, tenant, site_id, payload, status,
                                finished_at)
SELECT s, e, f, t, si, p, st, CASE WHEN st = 'silenced' THEN now() END
  FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bytea[], $7::text[])
       AS d(s, e, f, t, si, p, st)
ON CONFLICT (subscription_id, event_id) DO NOTHING
"""
_CLAIM = """
UPDATE webhook_deliveries d SET next_attempt_at = now() + make_interval(secs => $2::float8)
  FROM webhook_subscriptions s
 WHERE d.delivery_id IN (
        SELECT x.delivery_id FROM webhook_deliveries x
         WHERE x.status = 'pending' AND x.next_attempt_at <= now()
           AND NOT EXISTS (SELECT FROM webhook_deliveries y
                            WHERE y.subscription_id = x.subscription_id AND y.fingerprint = x.fingerprint
                              AND y.delivery_id < x.delivery_id AND y.status = 'pending')
         ORDER BY x.next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED)
   AND s.subscription_id = d.subscription_id
RETURNING d.delivery_id, d.event_id, d.payload, d.attempts, s.url, s.secret
"""
_ATTEMPT = """
INSERT INTO webhook_attempts (delivery_id, attempt, http_status, error, duration_ms)
VALUES ($1, $2, $3, $4, $5)
"""
_DELIVERED = """
UPDATE webhook_deliveries SET status = 'delivered', attempts = $2, last_error = NULL, finished_at = now()
 WHERE delivery_id = $1
"""
_FAILED = """
UPDATE webhook_deliveries
   SET attempts = $2::int, last_error = $3::text,
       status = CASE WHEN $2::int >= $4::int THEN 'dead' ELSE 'pending' END,
       finished_at = CASE WHEN $2::int >= $4::int THEN now() END,
       next_attempt_at = now() + make_interval(secs => $5::float8)
 WHERE delivery_id = $1
RETURNING status
"""
_NEXT_DUE = "SELECT min(next_attempt_at) AS due FROM webhook_deliveries WHERE status = 'pending'"


def _wants(sub: asyncpg.Record, event: dict[str, Any]) -> bool:
    if sub["site_id"] is not None and event.get("site") != sub["site_id"]:
        return False
    if sub["tenant"] is not None and event.get("tenant") != sub["tenant"]:
        return False
    severity = event["labels"].get("severity", "warning")
    rank = SEVERITIES.index(severity) if severity in SEVERITIES else 1
    return rank >= SEVERITIES.index(sub["min_severity"])


class WebhookRouter(FencedConsumer):
    """Consumes the alerts topic into `webhook_deliveries`; runs the dispatcher beside it."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(
            settings, settings.topic_alerts, settings.webhook_consumer_group, "wattstream-webhooks"
        )
        self.dispatcher = Dispatcher(settings)

    async def prepare_connection(self, conn: asyncpg.Connection) -> None:
        """Nothing per connection."""

    def forget_state(self) -> None:
        """Nothing cached."""

    async def run(self, stop: asyncio.Event) -> None:
        dispatching = asyncio.create_task(self.dispatcher.run(stop))
        try:
            await super().run(stop)
        finally:
            stop.set()
            await dispatching

    async def process(self, owned: dict[TopicPartition, list[ConsumerRecord]], stop: asyncio.Event) -> None:
        events: list[dict[str, Any]] = []
        for msgs in owned.values():
            for msg in msgs:
                try:
                    events.append(_decoder.decode(msg.value))
                except msgspec.DecodeError:
                    log.warning(
                        "not an alert event; skipped",
                        extra={"topic": msg.topic, "partition": msg.partition, "offset": msg.offset},
                    )
        advances = self.advances(owned)

        async def write(conn: asyncpg.Connection) -> int:
            subs = await conn.fetch(_SUBSCRIPTIONS)
            silences = [(_decoder.decode(r["matchers"]), r["tenant"]) for r in await conn.fetch(_SILENCES)]
            rows: list[tuple[Any, ...]] = []
            for event in events:
                quiet = silenced(event["labels"], silences)
                for sub in subs:
                    if _wants(sub, event):
                        body = alertmanager_payload(event, sub["name"], self._s.external_url)
                        rows.append(
                            (
                                sub["subscription_id"],
                                event["event_id"],
                                event["fingerprint"],
                                event.get("tenant"),
                                event.get("site"),
                                body,
                                "silenced" if quiet else "pending",
                            )
                        )
            async with conn.transaction():
                await self.offsets.advance(conn, advances)
                if rows:
                    await conn.execute(_INSERT_DELIVERIES, *(list(c) for c in zip(*rows, strict=True)))
            for r in rows:
                if r[6] == "silenced":
                    metrics.WEBHOOK_DELIVERIES.labels("silenced").inc()
            return len(rows)

        if await self.in_transaction(owned, stop, write) is None:
            return
        self.committed(owned)
        self.dispatcher.wake()


class Dispatcher:
    """Sends due deliveries until `stop`; see the module docstring."""

    def __init__(self, settings: Settings) -> None:
        self._s = settings
        self._wake = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        s = self._s
        pool = await asyncpg.create_pool(s.database_url.get_secret_value(), min_size=1, max_size=4)
        limits = httpx.Limits(max_connections=s.webhook_concurrency)
        try:
            async with httpx.AsyncClient(timeout=s.webhook_timeout_s, limits=limits) as client:
                while not stop.is_set():
                    try:
                        sent = await self._round(pool, client)
                        wait = 0.0 if sent else await self._idle_for(pool)
                    except Exception as exc:
                        if not is_transient_db_error(exc):
                            raise
                        log.warning("webhook dispatcher: database unavailable: %s", exc)
                        wait = s.db_retry_max_s
                    if wait:
                        self._wake.clear()
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(_first(stop, self._wake), wait)
        finally:
            await pool.close()

    async def _idle_for(self, pool: asyncpg.Pool) -> float:
        async with pool.acquire() as conn:
            due = await conn.fetchval(_NEXT_DUE)
        if due is None:
            return 5.0
        return float(min(max((due - datetime.now(UTC)).total_seconds(), 0.05), 5.0))

    async def _round(self, pool: asyncpg.Pool, client: httpx.AsyncClient) -> int:
        lease = self._s.webhook_timeout_s * 2 + 5
        async with pool.acquire() as conn:
            due = await conn.fetch(_CLAIM, self._s.webhook_concurrency, lease)
        if due:
            await asyncio.gather(*(self._deliver(pool, client, d) for d in due))
        return len(due)

    async def _deliver(self, pool: asyncpg.Pool, client: httpx.AsyncClient, d: asyncpg.Record) -> None:
        s = self._s
        attempt = d["attempts"] + 1
        body = bytes(d["payload"])
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(d["secret"], body, int(time.time())),
            EVENT_ID_HEADER: d["event_id"],
            "User-Agent": "wattstream-webhooks/1",
        }
        started = time.monotonic()
        status: int | None = None
        error: str | None = None
        try:
            response = await client.post(d["url"], content=body, headers=headers)
            status = response.status_code
            if not 200 <= status < 300:
                error = f"HTTP {status}"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"[:500] or type(exc).__name__
        took_ms = (time.monotonic() - started) * 1000
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute(_ATTEMPT, d["delivery_id"], attempt, status, error, took_ms)
            if error is None:
                await conn.execute(_DELIVERED, d["delivery_id"], attempt)
                metrics.WEBHOOK_DELIVERIES.labels("delivered").inc()
                return
            backoff = min(s.webhook_backoff_initial_s * 2 ** (attempt - 1), s.webhook_backoff_max_s)
            backoff *= random.uniform(0.8, 1.2)  # noqa: S311 - jitter, not security
            outcome = await conn.fetchval(
                _FAILED, d["delivery_id"], attempt, error, s.webhook_max_attempts, backoff
            )
        metrics.WEBHOOK_DELIVERIES.labels("dead" if outcome == "dead" else "failed").inc()
        log.info(
            "webhook attempt %d of delivery %d failed (%s)%s",
            attempt,
            d["delivery_id"],
            error,
            "; dead" if outcome == "dead" else f"; retry in {backoff:.1f} s",
        )


async def _first(*events: asyncio.Event) -> None:
    waits = [asyncio.create_task(e.wait()) for e in events]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()
