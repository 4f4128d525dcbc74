"""Alert latency: from a reading produced to Kafka to its alert event on the alerts topic.

Real and on loopback: a scratch database and topics, `wattstream ingest --only readings` as its
own process, one threshold rule over `sites` sites (site power > 100 kW, no `for`). Each round
every site gets one reading that crosses the threshold (150 kW fires, the next round's 50 kW
resolves), one Kafka message each, while `load_rps` readings per second of other sites (no
rules) keep the worker busy. Latency = the event read from the alerts topic − the moment its
reading was handed to the producer.

The reference, measured in the same run with the same clients: Kafka's own produce → consume
latency on a scratch topic, the floor of any pipeline that goes through Kafka twice is about
twice that.

    python -m loadtest.bench_alerts --sites 200 --rounds 20 --load-rps 5000
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import msgspec
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from ingest.registry import MeterRecord, SiteRecord, register
from ingest.topics import ensure_topics
from loadtest.scratch import percentile, scratch, settings_env
from schemas.settings import Settings, TopicSpec

__all__ = ["AlertBench", "main", "report", "run"]

_T0 = datetime(2026, 3, 1, tzinfo=UTC)
_ROOT = Path(__file__).resolve().parents[1]


@dataclass
class AlertBench:
    sites: int
    rounds: int
    load_rps: float
    events: int
    alert_p50_ms: float
    alert_p99_ms: float
    kafka_p50_ms: float
    kafka_p99_ms: float

    @property
    def ratio_p50(self) -> float:
        return self.alert_p50_ms / self.kafka_p50_ms


def _reading(site: str, ts: datetime, kw: float) -> bytes:
    return json.dumps({"site": site, "meter": "main", "ts": ts.isoformat(), "power_kw": kw}).encode()


async def _tail(s: Settings, topic: str, partitions: int) -> tuple[AIOKafkaConsumer, list[TopicPartition]]:
    consumer = AIOKafkaConsumer(bootstrap_servers=s.kafka_bootstrap, enable_auto_commit=False)
    await consumer.start()
    parts = [TopicPartition(topic, p) for p in range(partitions)]
    consumer.assign(parts)
    await consumer.seek_to_end(*parts)
    for tp in parts:
        await consumer.position(tp)
    return consumer, parts


async def _load(s: Settings, producer: AIOKafkaProducer, rps: float, stop: asyncio.Event) -> None:
    """Readings of 50 sites without rules at about `rps`, in messages of 100."""
    k = 0
    while not stop.is_set() and rps > 0:
        t = time.monotonic()
        site = f"bench-load-{k % 50}"
        batch = [
            {
                "site": site,
                "meter": "main",
                "ts": (_T0 + timedelta(seconds=k * 100 + i)).isoformat(),
                "power_kw": 5.0,
            }
            for i in range(100)
        ]
        await producer.send(s.topic_readings, json.dumps({"readings": batch}).encode(), key=site.encode())
        k += 1
        await asyncio.sleep(max(100 / rps - (time.monotonic() - t), 0))


async def _kafka_reference(
    s: Settings, producer: AIOKafkaProducer, per_round: int, rounds: int
) -> list[float]:
    """The same pacing as the alert rounds, through one topic and straight back."""
    topic = f"{s.topic_alerts}.echo"
    await (await producer.send(topic, b"warm-up", key=b"w"))  # leaders elected before the clock runs
    consumer, _ = await _tail(s, topic, 3)
    sent: dict[bytes, float] = {}
    out: list[float] = []
    n = per_round * rounds

    async def collect() -> None:
        while len(out) < n:
            for records in (await consumer.getmany(timeout_ms=200)).values():
                now = time.monotonic()
                out.extend(now - sent[r.key] for r in records if r.key in sent)

    collecting = asyncio.create_task(collect())
    try:
        for i in range(n):
            key = str(i).encode()
            sent[key] = time.monotonic()
            await producer.send(topic, b"x", key=key)
            if i % per_round == per_round - 1:
                await asyncio.sleep(0.5)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(collecting, 30)
    finally:
        collecting.cancel()
        await consumer.stop()
    return out


async def run(base: Settings, sites: int, rounds: int, load_rps: float) -> AlertBench:
    async with scratch(base, "benchalerts", ingest_metrics_port=0) as s:
        names = [f"bench-al-{i}" for i in range(sites)]
        await register(
            s.database_url.get_secret_value(),
            [SiteRecord(n, tenant="bench-al") for n in names],
            [MeterRecord(n, "main") for n in names],
        )
        owner = await asyncpg.connect(s.migrate_database_url.get_secret_value())
        await owner.execute(
            "INSERT INTO alert_rules (name, kind, metric, comparator, threshold, resolve_threshold, tenant)"
            " VALUES ('bench', 'threshold', 'site_power_kw', '>', 100, 80, 'bench-al')"
        )
        await ensure_topics(
            s.kafka_bootstrap,
            [TopicSpec(name=f"{s.topic_alerts}.echo", partitions=3, retention_ms=3_600_000)],
        )
        worker = subprocess.Popen(  # noqa: ASYNC220 - started once, before the clock runs
            [sys.executable, "-m", "wattstream", "ingest", "--only", "readings", "--log-level", "WARNING"],
            env=settings_env(s),
            cwd=_ROOT,
        )
        producer = AIOKafkaProducer(bootstrap_servers=s.kafka_bootstrap, acks="all", linger_ms=0)
        await producer.start()
        stop = asyncio.Event()
        try:
            # warm up: every site evaluated once, below the threshold
            for n in names:
                await producer.send(s.topic_readings, _reading(n, _T0, 50.0), key=n.encode())
            while await owner.fetchval("SELECT count(*) FROM alert_state") < sites:  # noqa: ASYNC110
                await asyncio.sleep(0.2)  # polling the database: there is no event to wait on
            consumer, _ = await _tail(s, s.topic_alerts, s.alerts_partitions)
            loading = asyncio.create_task(_load(s, producer, load_rps, stop))
            sent: dict[tuple[str, datetime], float] = {}
            latencies: list[float] = []

            async def collect() -> None:
                while len(latencies) < sites * rounds:
                    for records in (await consumer.getmany(timeout_ms=200)).values():
                        now = time.monotonic()
                        for r in records:
                            e = msgspec.json.decode(r.value)
                            key = (e["site"], datetime.fromisoformat(e["at"]))
                            if key in sent:
                                latencies.append(now - sent.pop(key))

            collecting = asyncio.create_task(collect())
            for k in range(rounds):
                ts = _T0 + timedelta(minutes=k + 1)
                for n in names:
                    sent[(n, ts)] = time.monotonic()
                    await producer.send(
                        s.topic_readings, _reading(n, ts, 150.0 if k % 2 == 0 else 50.0), key=n.encode()
                    )
                await asyncio.sleep(0.5)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(collecting, 60)
            stop.set()
            await loading
            await consumer.stop()
            reference = await _kafka_reference(s, producer, sites, rounds)
        finally:
            stop.set()
            await producer.stop()
            worker.terminate()
            worker.wait(30)
            await owner.close()
    if not latencies:
        raise RuntimeError("no alert events arrived")
    return AlertBench(
        sites=sites,
        rounds=rounds,
        load_rps=load_rps,
        events=len(latencies),
        alert_p50_ms=percentile(latencies, 0.5) * 1000,
        alert_p99_ms=percentile(latencies, 0.99) * 1000,
        kafka_p50_ms=percentile(reference, 0.5) * 1000,
        kafka_p99_ms=percentile(reference, 0.99) * 1000,
    )


def report(b: AlertBench) -> str:
    return (
        f"alert latency, reading produced → event on the alerts topic ({b.events} of {b.sites * b.rounds} "
        f"transitions, {b.sites} sites, background load {b.load_rps:,.0f} readings/s):\n"
        f"  alerts  p50 {b.alert_p50_ms:7.1f} ms   p99 {b.alert_p99_ms:7.1f} ms\n"
        f"  Kafka produce → consume (reference, same run)  p50 {b.kafka_p50_ms:7.1f} ms   "
        f"p99 {b.kafka_p99_ms:7.1f} ms\n"
        f"  ratio p50 {b.ratio_p50:.1f}× one Kafka hop"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sites", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--load-rps", type=float, default=5000.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = asyncio.run(run(Settings(), args.sites, args.rounds, args.load_rps))
    print(json.dumps(asdict(result)) if args.json else report(result))


if __name__ == "__main__":
    main()
