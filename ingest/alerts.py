"""Alert rules evaluated in-stream, in the transaction that commits the data and its offsets.

The readings consumer evaluates the rules of the sites each batch touched (`SiteAlertStage`, a
batch stage after energy and emissions); the grid consumer those of the regions whose
intensity a batch wrote (`GridAlerts`). A rule on a site lives with the site's partition (the
readings topic is keyed by site, the grid topic by region), so each alert's state has exactly
one writer: the worker that owns the partition, fenced by the stored offsets like every other
row. Staleness is evaluated on a timer (`tick`) by the same worker, in a transaction fenced by
the same offsets.

Values per rule kind (`core.alerting` has the state machine):

| kind | metric | value |
|---|---|---|
| threshold | site_power_kw | Σ latest power of the site's total meters, at their newest reading |
| threshold | interval_energy_kwh, emissions_rate_kg_per_h, pue | the latest complete energy bucket |
| threshold | grid_intensity_g_per_kwh, nonfossil_share | each new interval of the region |
| staleness | meter_silence_s, grid_silence_s | seconds since anything new was received |
| quota_burn | quota_ratio | the local month's (or year's) use to date, projected straight-line, ÷ the quota |
| imbalance | imbalance | abs(main − Σ sub-items) ÷ main, in the latest complete bucket |
| anomaly | anomaly_score | the last local hour's energy against the same hour of the previous days |

Transitions are rows in `alerts` (the outbox): after the transaction commits they are sent to
the alerts topic (keyed by fingerprint) and marked published; the timer and every partition
assignment publish what a crash left unsent. An event may thus reach the topic twice (a crash
between Kafka's acknowledgement and the mark), never zero times, and always with the same
`event_id`.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

import asyncpg
import msgspec
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from aiokafka.partitioner import murmur2

from core.alerting import (
    BUCKET_METRICS,
    AlertState,
    BucketFigures,
    Condition,
    Transition,
    anomaly_hours,
    anomaly_score,
    event_id,
    fingerprint,
    local_period,
    preferred_intensity,
    quota_ratio,
    site_power_series,
    step,
)
from ingest import metrics
from ingest.consumer import OffsetAdvance
from ingest.errors import FencedOffsets
from ingest.writer import ReadingRows
from runtime.dberrors import is_transient_db_error
from schemas.events import AlertEvent, encode_event
from schemas.timeutil import from_epoch_us, to_epoch_us

if TYPE_CHECKING:
    from ingest.consumer import FencedConsumer

__all__ = [
    "GRID_METRICS",
    "SITE_METRICS",
    "AlertEngine",
    "GridAlerts",
    "Observation",
    "Rule",
    "SiteAlertStage",
    "partition_of",
]

log = logging.getLogger(__name__)

SITE_METRICS: Final = ("site_power_kw", "interval_energy_kwh", "emissions_rate_kg_per_h", "pue")
GRID_METRICS: Final = ("grid_intensity_g_per_kwh", "nonfossil_share")
_GRID_SIDE: Final = [*GRID_METRICS, "grid_silence_s"]
_US: Final = 1_000_000
_NOT_BUCKETED: Final = ("meter_silence_s", "site_power_kw")
_BASIS_PREFERENCE: Final = ("consumption", "production", "published")
_RELAY_LIMIT: Final = 1000
_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder()


def partition_of(key: str, partitions: int) -> int:
    """The partition Kafka's default partitioner puts `key` in (murmur2, as the Java client)."""
    return int(murmur2(key.encode()) & 0x7FFFFFFF) % partitions


@dataclass(frozen=True, slots=True)
class Rule:
    rule_id: int
    name: str
    kind: str
    metric: str
    condition: Condition
    params: dict[str, Any]
    tenant: str | None
    severity: str
    labels: dict[str, str]
    annotations: dict[str, str]

    @classmethod
    def from_record(cls, r: asyncpg.Record) -> Rule:
        return cls(
            rule_id=r["rule_id"],
            name=r["name"],
            kind=r["kind"],
            metric=r["metric"],
            condition=Condition(r["comparator"], r["threshold"], r["resolve_threshold"], r["for_s"]),
            params=_decoder.decode(r["params"]),
            tenant=r["tenant"],
            severity=r["severity"],
            labels=_decoder.decode(r["labels"]),
            annotations=_decoder.decode(r["annotations"]),
        )


@dataclass(frozen=True, slots=True)
class Observation:
    """One value of one rule on one subject, at an event time."""

    rule: Rule
    subject: str  # a site, site/meter or region
    ts_us: int
    value: float | None
    partition: int  # the subject's partition in the topic the evaluating consumer reads
    site: str | None = None
    meter: str | None = None
    region: str | None = None
    tenant: str | None = None
    detail: dict[str, str] = field(default_factory=dict)

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.rule.rule_id, self.subject)

    @property
    def owner(self) -> str | None:
        """The tenant whose keys see this alert: the site's, else the rule's."""
        return self.tenant if self.tenant is not None else self.rule.tenant


_LOAD_STATES = """
SELECT fingerprint, state, since, last_ts, last_value FROM alert_state WHERE fingerprint = ANY($1::text[])
"""
_SAVE_STATES = """
INSERT INTO alert_state AS a
       (fingerprint, rule_id, subject, state, since, last_ts, last_value, site_id, region, tenant, labels)
SELECT f, r, su, st, si, l, v, s, re, t, la::jsonb
  FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::timestamptz[], $6::timestamptz[],
              $7::float8[], $8::text[], $9::text[], $10::text[], $11::text[])
       AS x(f, r, su, st, si, l, v, s, re, t, la)
ON CONFLICT (fingerprint) DO UPDATE
   SET state = EXCLUDED.state, since = EXCLUDED.since, last_ts = EXCLUDED.last_ts,
       last_value = EXCLUDED.last_value, labels = EXCLUDED.labels, updated_at = now()
"""
_INSERT_ALERTS = """
INSERT INTO alerts (event_id, fingerprint, rule_id, status, at, starts_at, ends_at, value, site_id, region,
                    tenant, labels, annotations, source_topic, source_partition)
SELECT e, f, r, s, a, st, en, v, si, re, te, l::jsonb, an::jsonb, $14, p
  FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[], $5::timestamptz[], $6::timestamptz[],
              $7::timestamptz[], $8::float8[], $9::text[], $10::text[], $11::text[], $12::text[], $13::text[],
              $15::int[]) AS t(e, f, r, s, a, st, en, v, si, re, te, l, an, p)
ON CONFLICT DO NOTHING
"""
_FIRING_BY_KIND = """
SELECT r.kind, count(*) AS n FROM alert_state a JOIN alert_rules r USING (rule_id)
 WHERE a.state = 'firing' GROUP BY r.kind
"""


class AlertEngine:
    """Steps alerts on observations and records their transitions, inside a transaction."""

    def __init__(self, source_topic: str) -> None:
        self._source = source_topic

    async def evaluate(self, conn: asyncpg.Connection, observations: Sequence[Observation]) -> int:
        """Returns how many transitions were recorded."""
        if not observations:
            return 0
        obs = sorted(observations, key=lambda o: o.ts_us)
        fps = sorted({o.fingerprint for o in obs})
        states: dict[str, AlertState] = {
            r["fingerprint"]: AlertState(
                r["state"],
                None if r["since"] is None else to_epoch_us(r["since"]),
                to_epoch_us(r["last_ts"]),
                r["last_value"],
            )
            for r in await conn.fetch(_LOAD_STATES, fps)
        }
        changed: dict[str, tuple[Observation, AlertState]] = {}
        transitions: list[tuple[Observation, Transition]] = []
        for o in obs:
            fp = o.fingerprint
            before = states.get(fp)
            after, transition = step(o.rule.condition, before, o.ts_us, o.value)
            if after is not None and after != before:
                states[fp] = after
                changed[fp] = (o, after)
            if transition is not None:
                transitions.append((o, transition))
        if changed:
            await conn.execute(
                _SAVE_STATES,
                list(changed),
                [o.rule.rule_id for o, _ in changed.values()],
                [o.subject for o, _ in changed.values()],
                [s.state for _, s in changed.values()],
                [None if s.since_us is None else from_epoch_us(s.since_us) for _, s in changed.values()],
                [from_epoch_us(s.last_ts_us) for _, s in changed.values()],
                [s.last_value for _, s in changed.values()],
                [o.site for o, _ in changed.values()],
                [o.region for o, _ in changed.values()],
                [o.owner for o, _ in changed.values()],
                [_encoder.encode(_labels(o)).decode() for o, _ in changed.values()],
            )
        if transitions:
            await self._record(conn, transitions)
        return len(transitions)

    async def _record(
        self, conn: asyncpg.Connection, transitions: list[tuple[Observation, Transition]]
    ) -> None:
        cols: list[list[Any]] = [[] for _ in range(14)]
        for o, t in transitions:
            fp = o.fingerprint
            values = (
                event_id(fp, t.status, t.starts_at_us),
                fp,
                o.rule.rule_id,
                t.status,
                from_epoch_us(t.at_us),
                from_epoch_us(t.starts_at_us),
                from_epoch_us(t.at_us) if t.status == "resolved" else None,
                t.value,
                o.site,
                o.region,
                o.owner,
                _encoder.encode(_labels(o)).decode(),
                _encoder.encode(_annotations(o, t)).decode(),
                o.partition,
            )
            for col, v in zip(cols, values, strict=True):
                col.append(v)
            metrics.ALERT_TRANSITIONS.labels(o.rule.kind, t.status).inc()
            log.info(
                "alert %s: %s on %s (%s = %.6g)",
                t.status,
                o.rule.name,
                o.subject,
                o.rule.metric,
                t.value,
                extra={"fingerprint": fp, "partition": o.partition},
            )
        await conn.execute(_INSERT_ALERTS, *cols[:13], self._source, cols[13])

    async def report_firing(self, conn: asyncpg.Connection) -> None:
        for r in await conn.fetch(_FIRING_BY_KIND):
            metrics.ALERTS_FIRING.labels(r["kind"]).set(r["n"])


def _labels(o: Observation) -> dict[str, str]:
    built = {
        "alertname": o.rule.name,
        "rule_id": str(o.rule.rule_id),
        "kind": o.rule.kind,
        "metric": o.rule.metric,
        "severity": o.rule.severity,
    }
    for name, value in (("site", o.site), ("meter", o.meter), ("region", o.region), ("tenant", o.owner)):
        if value is not None:
            built[name] = value
    return {**o.rule.labels, **built}  # the rule's own labels never hide what the alert is


def _annotations(o: Observation, t: Transition) -> dict[str, str]:
    c = o.rule.condition
    summary = (
        f"{o.rule.metric} {t.value:.6g} {c.comparator} {c.threshold:g}"
        if t.status == "firing"
        else f"{o.rule.metric} {t.value:.6g}, back past {c.resolve_threshold:g}"
    )
    return {
        **o.rule.annotations,
        "summary": f"{o.subject}: {summary}",
        "value": f"{t.value:.6g}",
        "threshold": f"{c.threshold:g}",
        "resolve_threshold": f"{c.resolve_threshold:g}",
        **o.detail,
    }


# --- the outbox relay ---

_UNPUBLISHED = """
SELECT event_id, fingerprint, rule_id, status, at, starts_at, ends_at, value, site_id, region, tenant,
       labels, annotations, recorded_at
  FROM alerts
 WHERE published_at IS NULL AND source_topic = $1 AND source_partition = ANY($2::int[])
 ORDER BY at, recorded_at
 LIMIT $3
"""
_MARK_PUBLISHED = """
UPDATE alerts SET published_at = now()
 WHERE published_at IS NULL AND (event_id, at) IN (SELECT * FROM unnest($1::text[], $2::timestamptz[]))
"""


_labels_decoder = msgspec.json.Decoder(dict[str, Any])


def _texts(raw: str) -> dict[str, str]:
    """Labels or annotations as text: the API admits only strings, but the column is jsonb."""
    return {
        k: v if isinstance(v, str) else _encoder.encode(v).decode()
        for k, v in _labels_decoder.decode(raw).items()
    }


def alert_message(r: asyncpg.Record) -> bytes:
    """The public alert event (the value of a record on the alerts topic)."""
    return encode_event(
        AlertEvent(
            event_id=r["event_id"],
            fingerprint=r["fingerprint"],
            status=r["status"],
            rule_id=r["rule_id"],
            at=r["at"],
            starts_at=r["starts_at"],
            ends_at=r["ends_at"],
            value=r["value"],
            site=r["site_id"],
            region=r["region"],
            tenant=r["tenant"],
            labels=_texts(r["labels"]),
            annotations=_texts(r["annotations"]),
        )
    )


def _headers(r: asyncpg.Record) -> list[tuple[str, bytes]]:
    out = [("event-id", r["event_id"].encode())]
    for name, col in (("tenant", "tenant"), ("site", "site_id"), ("region", "region")):
        if r[col] is not None:
            out.append((name, r[col].encode()))
    return out


async def relay(
    pool: asyncpg.Pool,
    producer: AIOKafkaProducer,
    topic: str,
    source_topic: str,
    partitions: Iterable[int],
    acked: Callable[[Sequence[asyncio.Future[Any]]], Awaitable[None]],
) -> int:
    """Publish the unpublished transitions of these source partitions, oldest first, and mark
    them once `acked` says Kafka has them (the consumer's, which a stop cuts short); returns
    how many were published."""
    owned = sorted(set(partitions))
    if not owned:
        return 0
    total = 0
    while True:
        async with pool.acquire() as conn:
            rows = await conn.fetch(_UNPUBLISHED, source_topic, owned, _RELAY_LIMIT)
        if not rows:
            return total
        sends = [
            await producer.send(
                topic, value=alert_message(r), key=r["fingerprint"].encode(), headers=_headers(r)
            )
            for r in rows
        ]
        await acked(sends)
        async with pool.acquire() as conn:
            await conn.execute(_MARK_PUBLISHED, [r["event_id"] for r in rows], [r["at"] for r in rows])
        now = datetime.now(UTC)
        for r in rows:
            metrics.ALERT_PUBLISH_LAG.observe(max((now - r["recorded_at"]).total_seconds(), 0.0))
        total += len(rows)
        if len(rows) < _RELAY_LIMIT:
            return total


async def fenced_tick(consumer: FencedConsumer, partitions: Sequence[int], work: Any, what: str) -> None:
    """Run timer work in a transaction fenced by the stored offsets of `partitions` (each must
    still be where this consumer left it), logging and skipping on a fence or an outage."""
    positions = {tp.partition: pos for tp, pos in consumer.positions.items() if pos >= 0}
    fence = [OffsetAdvance(p, positions[p], positions[p]) for p in partitions if p in positions]
    try:
        async with consumer.db.acquire() as conn, conn.transaction():
            await consumer.offsets.advance(conn, fence)
            await work(conn, [f.partition for f in fence])
    except FencedOffsets as exc:
        log.info("%s skipped: %s", what, exc)
    except Exception as exc:
        if not is_transient_db_error(exc):
            raise
        log.warning("%s skipped, the database is away: %s", what, exc)


# --- site rules (the readings consumer) ---

_SITES_OF_METERS = "SELECT DISTINCT site_id FROM meters WHERE meter_id = ANY($1::bigint[])"
# Which site a rule covers: its own site, or (no site) every site of its tenant and/or region.
_COVERS = """(r.site_id = s.site_id
        OR (r.site_id IS NULL AND (r.tenant IS NULL OR r.tenant = s.tenant)
            AND (r.region IS NULL OR r.region = s.region)))"""
_SITE_RULES = f"""
SELECT s.site_id AS subject_site, s.tenant AS site_tenant, s.region AS site_region, s.timezone,
       s.energy_quota_month_kwh, s.energy_quota_year_kwh, s.carbon_quota_month_t, s.carbon_quota_year_t,
       r.*
  FROM sites s
  JOIN alert_rules r ON r.enabled AND NOT (r.metric = ANY($2::text[])) AND {_COVERS}
 WHERE s.site_id = ANY($1::text[])
"""  # noqa: S608 - constant fragments, every value bound
_STALENESS_SITES = f"""
SELECT DISTINCT s.site_id
  FROM sites s JOIN alert_rules r ON r.enabled AND r.metric = 'meter_silence_s' AND {_COVERS}
"""  # noqa: S608 - constant fragments, every value bound
# Per site, every bucket this batch recomputed (still in `energy_stage`) that is complete (the
# site's newest reading is at or past its end), oldest first: energy by meter role, emissions.
_SITE_BUCKETS = """
WITH s AS (
    SELECT site_id, wattstream_total_role(site_id) AS total_role FROM unnest($1::text[]) AS site_id
), l AS (
    SELECT s.site_id, s.total_role, max(st.last_ts) AS last_ts, count(*) AS n_total
      FROM s JOIN meters m ON m.site_id = s.site_id AND m.role = s.total_role
      JOIN meter_state st USING (meter_id)
     GROUP BY s.site_id, s.total_role
), b AS (
    SELECT DISTINCT l.site_id, l.total_role, l.n_total, e.bucket_start
      FROM energy_stage e JOIN meters m USING (meter_id) JOIN l ON l.site_id = m.site_id
     WHERE e.bucket_start + make_interval(secs => $2) <= l.last_ts
)
SELECT b.site_id, b.n_total, b.bucket_start, e.total_kwh, e.main_kwh, e.sub_kwh, e.it_kwh,
       (SELECT se.co2e_kg FROM site_emissions se
         WHERE se.site_id = b.site_id AND se.bucket_start = b.bucket_start AND se.superseded_at IS NULL)
           AS co2e_kg
  FROM b
  LEFT JOIN LATERAL (
      SELECT sum(ei.kwh) FILTER (WHERE m.role = b.total_role) AS total_kwh,
             sum(ei.kwh) FILTER (WHERE m.role = 'main') AS main_kwh,
             sum(ei.kwh) FILTER (WHERE m.role = 'sub_item') AS sub_kwh,
             sum(ei.kwh) FILTER (WHERE m.role = 'it_load') AS it_kwh
        FROM meters m JOIN energy_interval ei ON ei.meter_id = m.meter_id AND ei.bucket_start = b.bucket_start
       WHERE m.site_id = b.site_id
  ) e ON true
 ORDER BY b.site_id, b.bucket_start
"""
# The total meters of sites, with their latest power (the starting point of a batch's power timeline).
_TOTAL_METERS = """
SELECT m.meter_id, m.site_id, st.last_power_kw
  FROM meters m LEFT JOIN meter_state st USING (meter_id)
 WHERE m.site_id = ANY($1::text[]) AND m.role = wattstream_total_role(m.site_id)
"""
_METER_SILENCE = """
SELECT m.site_id, m.meter, extract(epoch FROM ($2::timestamptz - coalesce(st.updated_at, m.created_at)))
           AS silent_s
  FROM meters m LEFT JOIN meter_state st USING (meter_id)
 WHERE m.site_id = ANY($1::text[])
"""
_TO_DATE = """
SELECT (SELECT sum(ei.kwh) FROM meters m JOIN energy_interval ei USING (meter_id)
         WHERE m.site_id = $1 AND m.role = wattstream_total_role($1)
           AND ei.bucket_start >= $2 AND ei.bucket_start < $3) AS kwh,
       (SELECT sum(co2e_kg) FROM site_emissions
         WHERE site_id = $1 AND superseded_at IS NULL AND bucket_start >= $2 AND bucket_start < $3) AS co2e_kg
"""
_HOURLY = """
SELECT w.i, sum(ei.kwh) AS kwh, count(*) AS n
  FROM unnest($2::timestamptz[]) WITH ORDINALITY AS w(lo, i)
  JOIN meters m ON m.site_id = $1 AND m.role = wattstream_total_role($1)
  JOIN energy_interval ei ON ei.meter_id = m.meter_id AND ei.bucket_start >= w.lo
   AND ei.bucket_start < w.lo + interval '1 hour'
 GROUP BY w.i
"""
_QUOTA_COLUMN: Final = {
    ("energy", "month"): "energy_quota_month_kwh",
    ("energy", "year"): "energy_quota_year_kwh",
    ("carbon", "month"): "carbon_quota_month_t",
    ("carbon", "year"): "carbon_quota_year_t",
}


class _Outboxed:
    """Publishes the transitions of the consumer's partitions after a commit that recorded some
    (and on every tick, for what a crash or an outage left behind)."""

    _alerts_topic: str
    _recorded = 0  # transitions recorded since the last publish

    async def after_commit(self, consumer: FencedConsumer, *, always: bool = False) -> None:
        """The transitions are committed: if the database or Kafka is away now, they stay in the
        outbox and the next commit or tick publishes them."""
        if not (always or self._recorded):
            return  # nothing new: no round trip on the batch path
        self._recorded = 0
        try:
            await relay(
                consumer.db,
                consumer.producer,
                self._alerts_topic,
                consumer.topic,
                [tp.partition for tp in consumer.positions],
                consumer.acked,
            )
        except KafkaError as exc:
            log.warning(
                "alert events left in the outbox, Kafka is away: %s", exc, extra={"topic": consumer.topic}
            )
        except Exception as exc:
            if not is_transient_db_error(exc):
                raise
            log.warning("alert events left in the outbox, the database is away: %s", exc)


@dataclass(frozen=True, slots=True)
class _SiteRule:
    rule: Rule
    site: str
    tenant: str
    region: str | None
    timezone: str
    quotas: dict[tuple[str, str], float | None]


class SiteAlertStage(_Outboxed):
    """The readings consumer's batch stage: the rules of the sites this batch touched. Also
    `after_commit` (publish) and `tick` (staleness, and what a crash left unpublished)."""

    def __init__(self, engine: AlertEngine, *, alerts_topic: str, partitions: int, bucket_s: int) -> None:
        self._engine = engine
        self._alerts_topic = alerts_topic
        self._partitions = partitions
        self._bucket_s = bucket_s
        self.evaluated = 0

    async def prepare(self, conn: asyncpg.Connection) -> None:
        """Nothing per connection."""

    async def apply(self, conn: asyncpg.Connection, rows: ReadingRows) -> None:
        if not len(rows):
            return
        started = time.monotonic()
        sites = [
            r["site_id"] for r in await conn.fetch(_SITES_OF_METERS, sorted(set(rows.meter_id.tolist())))
        ]
        obs = await self.observations(conn, sites, datetime.now(UTC), rows)
        self._recorded += await self._engine.evaluate(conn, obs)
        metrics.ALERT_EVALUATION_SECONDS.observe(time.monotonic() - started)

    async def observations(
        self, conn: asyncpg.Connection, sites: Sequence[str], now: datetime, rows: ReadingRows | None = None
    ) -> list[Observation]:
        """What the rules of these sites observe: meter silence as of `now`; with a batch's
        `rows`, also the site power at each of its readings and the buckets it completed."""
        rules = [
            _SiteRule(
                Rule.from_record(r),
                r["subject_site"],
                r["site_tenant"],
                r["site_region"],
                r["timezone"],
                {key: r[col] for key, col in _QUOTA_COLUMN.items()},
            )
            for r in await conn.fetch(_SITE_RULES, list(sites), _GRID_SIDE)
        ]
        out: list[Observation] = []
        by_metric: dict[str, list[_SiteRule]] = defaultdict(list)
        for sr in rules:
            by_metric[sr.rule.metric].append(sr)
        if by_metric["meter_silence_s"]:
            out += await self._silence(conn, by_metric["meter_silence_s"], now)
        if rows is None:
            return out
        if by_metric["site_power_kw"]:
            out += await self._power(conn, by_metric["site_power_kw"], rows)
        bucket_rules = [sr for m, group in by_metric.items() if m not in _NOT_BUCKETED for sr in group]
        if bucket_rules:
            buckets: dict[str, list[asyncpg.Record]] = defaultdict(list)
            for b in await conn.fetch(
                _SITE_BUCKETS, sorted({sr.site for sr in bucket_rules}), self._bucket_s
            ):
                buckets[b["site_id"]].append(b)
            for sr in bucket_rules:
                if buckets.get(sr.site):
                    out += await self._observe(conn, sr, buckets[sr.site])
        return out

    def _obs(self, sr: _SiteRule, ts: datetime, value: float | None, **kw: Any) -> Observation:
        return Observation(
            rule=sr.rule,
            subject=kw.pop("subject", sr.site),
            ts_us=to_epoch_us(ts),
            value=value,
            partition=partition_of(sr.site, self._partitions),
            site=sr.site,
            region=sr.region,
            tenant=sr.tenant,
            **kw,
        )

    async def _silence(
        self, conn: asyncpg.Connection, rules: list[_SiteRule], now: datetime
    ) -> list[Observation]:
        meters: dict[str, list[asyncpg.Record]] = defaultdict(list)
        for m in await conn.fetch(_METER_SILENCE, sorted({sr.site for sr in rules}), now):
            meters[m["site_id"]].append(m)
        return [
            self._obs(sr, now, float(m["silent_s"]), subject=f"{sr.site}/{m['meter']}", meter=m["meter"])
            for sr in rules
            for m in meters.get(sr.site, ())
        ]

    async def _power(
        self, conn: asyncpg.Connection, rules: list[_SiteRule], rows: ReadingRows
    ) -> list[Observation]:
        """Site power at each reading of the batch: Σ over its total meters of each one's latest
        power so far (a meter not in the batch at its stored latest, one in the batch from its
        first reading in it)."""
        meters = await conn.fetch(_TOTAL_METERS, sorted({sr.site for sr in rules}))
        site_of = {m["meter_id"]: m["site_id"] for m in meters}
        in_batch = set(rows.meter_id.tolist())
        power: dict[str, dict[int, float]] = defaultdict(dict)
        for m in meters:
            if m["meter_id"] not in in_batch and m["last_power_kw"] is not None:
                power[m["site_id"]][m["meter_id"]] = m["last_power_kw"]
        timeline: dict[str, list[tuple[int, int, float]]] = defaultdict(list)
        for meter_id, ts, kw in zip(
            rows.meter_id.tolist(), rows.ts_us.tolist(), rows.power_kw.tolist(), strict=True
        ):
            site = site_of.get(meter_id)
            if site is not None and not math.isnan(kw):  # a register-only reading says nothing of power
                timeline[site].append((ts, meter_id, kw))
        values = {site: site_power_series(power[site], events) for site, events in timeline.items()}
        return [self._obs(sr, from_epoch_us(ts), kw) for sr in rules for ts, kw in values.get(sr.site, ())]

    async def _observe(
        self, conn: asyncpg.Connection, sr: _SiteRule, buckets: list[asyncpg.Record]
    ) -> list[Observation]:
        metric = sr.rule.metric
        length = timedelta(seconds=self._bucket_s)
        latest_end = buckets[-1]["bucket_start"] + length
        if metric == "quota_ratio":
            return await self._quota(conn, sr, latest_end)
        if metric == "anomaly_score":
            return await self._anomaly(conn, sr, latest_end, buckets[-1]["n_total"])
        observe = BUCKET_METRICS.get(metric)
        if observe is None:
            log.warning("alert rule %d has an unknown metric %r", sr.rule.rule_id, metric)
            return []
        out = []
        for f in buckets:
            value, detail = observe(
                BucketFigures(
                    f["total_kwh"], f["main_kwh"], f["sub_kwh"], f["it_kwh"], f["co2e_kg"], self._bucket_s
                )
            )
            extra = {"detail": _detail(**detail)} if detail else {}
            out.append(self._obs(sr, f["bucket_start"] + length, value, **extra))
        return out

    async def _quota(self, conn: asyncpg.Connection, sr: _SiteRule, at: datetime) -> list[Observation]:
        p = sr.rule.params
        what, period = p.get("quota", "energy"), p.get("period", "month")
        limit = p.get("limit") or sr.quotas.get((what, period))
        if not limit:
            return []
        start, end = local_period(at - timedelta(microseconds=1), sr.timezone, period)
        if (at - start).total_seconds() < float(p.get("min_elapsed_s", 86_400.0)):
            return []
        row = await conn.fetchrow(_TO_DATE, sr.site, start, at)
        used = (
            row["kwh"] if what == "energy" else (None if row["co2e_kg"] is None else row["co2e_kg"] / 1000.0)
        )
        if used is None:
            return []
        ratio = quota_ratio(used, start, end, at, float(limit))
        unit = "kWh" if what == "energy" else "tCO2e"
        detail = _detail(
            used_to_date=f"{used:.6g} {unit}",
            projected=f"{ratio * float(limit):.6g} {unit}",
            quota=f"{float(limit):g} {unit}",
            period=f"{start.date().isoformat()}..{end.date().isoformat()} ({sr.timezone})",
        )
        return [self._obs(sr, at, ratio, detail=detail)]

    async def _anomaly(
        self, conn: asyncpg.Connection, sr: _SiteRule, at: datetime, n_meters: int
    ) -> list[Observation]:
        p = sr.rule.params
        days, min_samples = int(p.get("days", 28)), int(p.get("min_samples", 7))
        hour_end, starts = anomaly_hours(at, sr.timezone, days)
        complete = n_meters * (3600 // self._bucket_s)
        got = {r["i"] - 1: r["kwh"] for r in await conn.fetch(_HOURLY, sr.site, starts) if r["n"] >= complete}
        if 0 not in got:
            return []
        history = [got[d] for d in range(1, days + 1) if d in got]
        if len(history) < min_samples:
            return []
        score, median, scale = anomaly_score(got[0], history)
        detail = _detail(hour_kwh=got[0], usual_kwh=median, scale_kwh=scale, days=len(history))
        return [self._obs(sr, hour_end, score, detail=detail)]

    # --- after commit, and on the timer ---

    async def tick(self, consumer: FencedConsumer) -> None:
        async def staleness(conn: asyncpg.Connection, fenced: list[int]) -> None:
            sites = [
                r["site_id"]
                for r in await conn.fetch(_STALENESS_SITES)
                if partition_of(r["site_id"], self._partitions) in fenced
            ]
            # without a batch's rows, observations are meter silence only
            await self._engine.evaluate(
                conn, await self.observations(conn, sites, datetime.now(UTC)) if sites else []
            )
            await self._engine.report_firing(conn)

        started = time.monotonic()
        await fenced_tick(
            consumer, sorted(tp.partition for tp in consumer.positions), staleness, "staleness evaluation"
        )
        metrics.ALERT_EVALUATION_SECONDS.observe(time.monotonic() - started)
        await self.after_commit(consumer, always=True)


def _detail(**values: Any) -> dict[str, str]:
    return {k: v if isinstance(v, str) else f"{v:.6g}" for k, v in values.items() if v is not None}


# --- grid rules (the grid consumer) ---

_GRID_RULES = """
SELECT r.*, r.region AS subject_region FROM alert_rules r
 WHERE r.enabled AND r.region = ANY($1::text[]) AND r.metric = ANY($2::text[])
"""
_GRID_SILENCE_REGIONS = """
SELECT DISTINCT region FROM alert_rules WHERE enabled AND metric = 'grid_silence_s'
"""
_GRID_LAST_HEARD = """
SELECT t.region, extract(epoch FROM ($2::timestamptz - greatest(
           (SELECT g.received_at FROM grid_mix g WHERE g.region = t.region ORDER BY g.ts DESC LIMIT 1),
           (SELECT i.recorded_at FROM grid_intensity i WHERE i.region = t.region AND i.basis = 'published'
             ORDER BY i.ts DESC LIMIT 1)))) AS silent_s
  FROM unnest($1::text[]) AS t(region)
"""


class GridAlerts(_Outboxed):
    """The grid consumer's rules: each new interval of a region's intensity, and feed silence."""

    def __init__(self, engine: AlertEngine, *, alerts_topic: str, partitions: int, scope: str) -> None:
        self._engine = engine
        self._alerts_topic = alerts_topic
        self._partitions = partitions
        self._scope = scope

    async def evaluate(self, conn: asyncpg.Connection, changed: Sequence[asyncpg.Record]) -> None:
        """Inside the grid batch's transaction, on the intensity rows it wrote."""
        regions = sorted({r["region"] for r in changed})
        if not regions:
            return
        started = time.monotonic()
        rules = await conn.fetch(_GRID_RULES, regions, list(GRID_METRICS))
        obs: list[Observation] = []
        for rec in rules:
            rule = Rule.from_record(rec)
            region = rec["subject_region"]
            for row in self._preferred([c for c in changed if c["region"] == region], rule.params):
                column = (
                    "intensity_g_per_kwh" if rule.metric == "grid_intensity_g_per_kwh" else "nonfossil_share"
                )
                end = row["ts"] + timedelta(seconds=row["interval_s"])
                obs.append(
                    Observation(
                        rule=rule,
                        subject=region,
                        ts_us=to_epoch_us(end),
                        value=row[column],
                        partition=partition_of(region, self._partitions),
                        region=region,
                        detail={"factor_set": row["factor_set"], "basis": row["basis"]},
                    )
                )
        self._recorded += await self._engine.evaluate(conn, obs)
        metrics.ALERT_EVALUATION_SECONDS.observe(time.monotonic() - started)

    def _preferred(self, rows: list[asyncpg.Record], params: dict[str, Any]) -> list[Any]:
        return preferred_intensity(
            rows,
            scope=params.get("scope", self._scope),
            basis=params.get("basis"),
            factor_set=params.get("factor_set"),
            preference=_BASIS_PREFERENCE,
        )

    async def tick(self, consumer: FencedConsumer) -> None:
        async def silence(conn: asyncpg.Connection, fenced: list[int]) -> None:
            regions = [
                r["region"]
                for r in await conn.fetch(_GRID_SILENCE_REGIONS)
                if partition_of(r["region"], self._partitions) in fenced
            ]
            if not regions:
                return
            now = datetime.now(UTC)
            heard = {r["region"]: r["silent_s"] for r in await conn.fetch(_GRID_LAST_HEARD, regions, now)}
            rules = await conn.fetch(_GRID_RULES, regions, ["grid_silence_s"])
            await self._engine.evaluate(
                conn,
                [
                    Observation(
                        rule=Rule.from_record(rec),
                        subject=rec["subject_region"],
                        ts_us=to_epoch_us(now),
                        value=None
                        if heard.get(rec["subject_region"]) is None
                        else float(heard[rec["subject_region"]]),
                        partition=partition_of(rec["subject_region"], self._partitions),
                        region=rec["subject_region"],
                    )
                    for rec in rules
                ],
            )

        await fenced_tick(
            consumer, sorted(tp.partition for tp in consumer.positions), silence, "grid staleness"
        )
        await self.after_commit(consumer, always=True)
