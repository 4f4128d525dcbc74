"""The ingest rows: crash consistency, poison, a broker restart, SIGTERM, a database outage.

Each runs real `wattstream ingest` subprocesses on topics of its own in the battery's scratch
database, drives the services through deploy/, and measures from the outside: the offsets the
worker stored with its rows, the topic's ends, the rows themselves, the dead-letter topic,
/proc for memory.
"""

from __future__ import annotations

import asyncio
import functools
import random
import statistics
import time
from collections.abc import Awaitable, Callable

import asyncpg

from loadtest.battery.context import Context, caught_up, reporting, row_topics, sleep_until, supervised
from loadtest.battery.deadletters import check_dead_letters
from loadtest.battery.kafka_io import Message, max_record_bytes, produce, read_topic
from loadtest.battery.poison import MIXED_BATCH, Poison, add_bad_element, make_poison, poison_site
from loadtest.battery.procs import WattstreamProcess
from loadtest.battery.report import RowResult
from loadtest.battery.traffic import Traffic, make_traffic
from loadtest.battery.verify import Watch, compare, prepare_meters, wait_until
from schemas.settings import Settings

__all__ = [
    "BROKER_RESUME_BOUND_S",
    "DB_RESUME_BOUND_S",
    "SIGTERM_BOUND_S",
    "STALL_BOUND_S",
    "broker_restart",
    "crash_consistency",
    "database_outage",
    "poison",
    "sigterm",
]

STALL_BOUND_S = 60.0  # poison: lag back to 0 this soon after the last message
BROKER_RESUME_BOUND_S = 30.0
SIGTERM_BOUND_S = 10.0  # WATTSTREAM_SHUTDOWN_GRACE_S's default, the README's promise
DB_RESUME_BOUND_S = 30.0
_MEMORY_SLACK = 64 * 1024 * 1024
_DRAIN_S = 300.0  # how long the battery waits for a worker to catch up before calling it stalled
_MiB = 1024 * 1024
_POISON = "poison"  # the poison row's site prefix
_SQL_SITE_READINGS = "SELECT count(*) FROM readings r JOIN meters m USING (meter_id) WHERE m.site_id = $1"


def _produced(n: list[int], total: int) -> str:
    return f"{n[0]:,}/{total:,} messages produced"


def _on_chunk(n: list[int]) -> Callable[[int], None]:
    def note(done: int) -> None:
        n[0] = done

    return note


async def crash_consistency(ctx: Context) -> RowResult:
    sc = ctx.scale
    r = RowResult("crash consistency")
    rng = random.Random(ctx.seed)
    plan = _fault_plan(sc.kills, sc.pg_restarts)
    r.faults = f"{sc.kills} × SIGKILL of the worker, {sc.pg_restarts} × PostgreSQL stop + start (3 s down)"
    async with row_topics(ctx, "crash") as s:
        traffic = make_traffic("crash", sc.crash_readings, sc.crash_meters, seed=ctx.seed, t0=ctx.t0)
        await prepare_meters(s, traffic)
        r.load = traffic.load()
        ctx.progress.say(r.load)
        watch = Watch(s)
        produced = [0]
        worker = ctx.worker(s, "crash-worker")
        async with (
            supervised(worker, ctx.progress) as sup,
            reporting(ctx.progress, watch, lambda: _produced(produced, len(traffic.messages))),
        ):
            started = time.monotonic()
            producing = asyncio.create_task(
                produce(s, traffic.messages, sc.crash_seconds, on_chunk=_on_chunk(produced))
            )
            try:
                last = 0
                for j, fault in enumerate(plan):
                    await sleep_until(started + sc.crash_seconds * (j + 1) / (len(plan) + 1))
                    # each fault meets a worker that has committed since the last one (or has
                    # nothing left to commit)
                    moved = await wait_until(functools.partial(_moving, watch, last, producing), 120)
                    if moved is None:
                        r.problems.append(f"no progress for 120 s before fault {j + 1} ({fault})")
                    await asyncio.sleep(rng.uniform(0.0, 1.0))
                    last = await watch.consumed() or last
                    if fault == "kill":
                        ctx.progress.say(f"fault {j + 1}/{len(plan)}: SIGKILL the worker")
                        await worker.kill()
                        await worker.start()
                    else:
                        ctx.progress.say(f"fault {j + 1}/{len(plan)}: stop PostgreSQL for 3 s")
                        await ctx.services.must("timescaledb", "stop")
                        await asyncio.sleep(3.0)
                        await ctx.services.must("timescaledb", "start")
                await producing
            finally:
                producing.cancel()
            drained = await caught_up(watch, _DRAIN_S)
        if drained is None:
            r.problems.append(f"the worker did not catch up within {_DRAIN_S:.0f} s of the last message")
        c = await compare(s, traffic)
        r.figure = c.figure() + f"; {len(sup.exits)} worker exits"
        r.problems += c.problems
        if sup.summary():
            r.problems.append(sup.summary() or "")
    return r


def _fault_plan(kills: int, restarts: int) -> list[str]:
    """Kills and database restarts interleaved, starting and ending with a kill."""
    plan = ["kill"] * kills
    for i in range(restarts):
        plan.insert(round((i + 1) * kills / (restarts + 1)) + i, "pg")
    return plan


async def _moving(watch: Watch, offset: int, producing: asyncio.Task[object]) -> bool:
    return await _past(watch, offset) or (producing.done() and await watch.lag() == 0)


async def _past(watch: Watch, offset: int) -> bool:
    now = await watch.consumed()
    return now is not None and now > offset


def _oversized_bytes(ctx: Context) -> int:
    # 1.5 MB, the size: over the ingest limit (1 MiB by default), under the broker's 8 MB
    return max(1_500_000, ctx.base.ingest_max_record_bytes + 256 * 1024)


async def poison(ctx: Context) -> RowResult:
    sc = ctx.scale
    r = RowResult("poison")
    rng = random.Random(ctx.seed + 1)
    async with row_topics(ctx, "poison", unknown_meters="deadletter") as s:
        traffic = make_traffic(
            _POISON, sc.poison_good_readings, 150, seed=ctx.seed + 1, t0=ctx.t0, auto_register_share=0.0
        )
        await prepare_meters(s, traffic)
        limit = await max_record_bytes(s, s.topic_readings)
        messages, expected_kinds = _mix_poison(traffic, sc.poison_messages, rng, _oversized_bytes(ctx), limit)
        n_kinds = len({p.kind for p in expected_kinds.values()})
        r.load = (
            f"{sc.poison_messages:,} bad messages of {n_kinds} kinds mixed into {len(traffic.expected):,} "
            f"good readings ({len(traffic.messages):,} messages)"
        )
        r.faults = (
            "poison among the good: oversized, deeply nested, NUL, invalid UTF-8, keyless, empty, "
            "tombstone, colliding headers, …"
        )
        ctx.progress.say(r.load)
        watch = Watch(s)
        produced = [0]
        worker = ctx.worker(s, "poison-worker")
        async with (
            supervised(worker, ctx.progress) as sup,
            reporting(ctx.progress, watch, lambda: _produced(produced, len(messages))),
        ):
            where = await produce(s, messages, sc.poison_seconds, on_chunk=_on_chunk(produced))
            drained = await caught_up(watch, STALL_BOUND_S)
            if drained is None:
                lag = await watch.lag()
                r.problems.append(f"stalled: lag {lag} records {STALL_BOUND_S:.0f} s after the last message")
        expected = {}
        for i, p in expected_kinds.items():
            origin = where[i]
            assert origin is not None
            expected[origin] = (messages[i], p)
        ctx.progress.say("reading the dead-letter topic")
        records = await read_topic(s, s.topic_deadletter, s.deadletter_partitions)
        dl = check_dead_letters(records, s.topic_readings, expected)
        c = await compare(s, traffic)
        poison_rows = await _poison_readings(s)
        r.problems += dl.problems
        r.problems += [f"good traffic: {p}" for p in c.problems]
        if poison_rows:
            r.problems.append(f"{poison_rows:,} readings of the poison site were stored")
        if sup.summary():
            r.problems.append(sup.summary() or "")
        wrong = sum(sum(v.values()) for v in dl.wrong_reason.values())
        r.figure = (
            f"{dl.found:,}/{dl.expected:,} origins dead-lettered, {wrong:,} wrong reason, "
            f"{dl.unexpected} extra, {dl.truncated} truncated; "
            f"good {c.stored:,}/{c.readings:,} stored; caught up "
            + (f"{drained:.1f} s after the last message" if drained is not None else "never")
            + f"; {len(sup.exits)} worker exits"
        )
    return r


def _mix_poison(
    traffic: Traffic, n: int, rng: random.Random, oversized: int, topic_limit: int
) -> tuple[list[Message], dict[int, Poison]]:
    """The good messages with `n` poison messages among them; the poison by message index."""
    messages: list[tuple[Message, Poison | None]] = [(m, None) for m in traffic.messages]
    batches = [i for i, (m, _) in enumerate(messages) if m.readings > 1]
    mixed = rng.sample(batches, min(len(batches), max(n // 50, 1)))
    for i in mixed:
        messages[i] = (
            add_bad_element(messages[i][0], poison_site(_POISON)),
            Poison(MIXED_BATCH, "negative_value"),
        )
    keys = [site.encode() for site in traffic.sites]
    for bad in make_poison(
        _POISON, n - len(mixed), keys, rng, oversized_bytes=oversized, topic_limit=topic_limit
    ):
        messages.insert(rng.randrange(len(messages) + 1), bad)
    return [m for m, _ in messages], {i: p for i, (_, p) in enumerate(messages) if p is not None}


async def _poison_readings(s: Settings) -> int:
    conn = await asyncpg.connect(s.migrate_database_url.get_secret_value())
    try:
        return int(await conn.fetchval(_SQL_SITE_READINGS, poison_site(_POISON)))
    finally:
        await conn.close()


async def broker_restart(ctx: Context) -> RowResult:
    sc = ctx.scale
    r = RowResult("Kafka broker restart")
    r.faults = "deploy/kafka.sh restart mid-stream"
    async with row_topics(ctx, "broker") as s:
        traffic = make_traffic("broker", sc.broker_readings, 150, seed=ctx.seed + 2, t0=ctx.t0)
        await prepare_meters(s, traffic)
        r.load = traffic.load()
        watch = Watch(s)
        produced = [0]
        worker = ctx.worker(s, "broker-worker")
        async with (
            supervised(worker, ctx.progress) as sup,
            reporting(ctx.progress, watch, lambda: _produced(produced, len(traffic.messages))),
        ):
            started = time.monotonic()
            producing = asyncio.create_task(
                produce(s, traffic.messages, sc.broker_seconds, on_chunk=_on_chunk(produced))
            )
            try:
                await sleep_until(started + sc.broker_seconds * 0.3)
                await wait_until(lambda: _past(watch, 0), 60)
                t_restart = time.monotonic()
                await ctx.services.must("kafka", "restart")
                back = time.monotonic()
                before = await watch.consumed() or 0
                resumed = await wait_until(lambda: _past(watch, before), 120, interval=0.25)
                resumed = None if resumed is None else time.monotonic() - back
                await producing
            finally:
                producing.cancel()
            drained = await caught_up(watch, _DRAIN_S)
        c = await compare(s, traffic)
        r.figure = (
            f"restart took {back - t_restart:.1f} s; progress resumed "
            + (f"{resumed:.1f} s after it was back" if resumed is not None else "never (120 s)")
            + f"; {c.stored:,}/{c.readings:,} stored, {c.lost} lost; {len(sup.exits)} worker exits"
        )
        if resumed is None or resumed > BROKER_RESUME_BOUND_S:
            r.problems.append(
                f"progress did not resume within {BROKER_RESUME_BOUND_S:.0f} s of the broker's return"
            )
        if drained is None:
            r.problems.append(f"the worker did not catch up within {_DRAIN_S:.0f} s of the last message")
        r.problems += c.problems
        if sup.summary():
            r.problems.append(sup.summary() or "")
    return r


async def sigterm(ctx: Context) -> RowResult:
    sc = ctx.scale
    r = RowResult("SIGTERM")
    async with row_topics(ctx, "sigterm") as s:
        traffic = make_traffic("sigterm", sc.sigterm_backlog, 150, seed=ctx.seed + 3, t0=ctx.t0)
        await prepare_meters(s, traffic)
        r.load = f"{traffic.load()}, a backlog when the worker starts"
        cut = len(traffic.messages) * 4 // 5
        backlog, held = traffic.messages[:cut], traffic.messages[cut:]
        await produce(s, backlog, 0.0)
        watch = Watch(s)
        outcomes: list[tuple[str, int | None, float, str]] = []

        async def state(name: str, log: str, prepare: Callable[[WattstreamProcess], Awaitable[str]]) -> None:
            proc = ctx.worker(s, f"sigterm-{log}")
            await proc.start()
            note = ""
            try:
                note = await prepare(proc)
                ctx.progress.say(f"SIGTERM while {name}{' (' + note + ')' if note else ''}")
                rc, took = await proc.terminate(within=SIGTERM_BOUND_S + 20)
            finally:
                await ctx.services.heal()
            if rc != 0 or took > SIGTERM_BOUND_S:
                tail = proc.last_lines(2)[-300:]
                rc_text = "still running (killed)" if rc is None else f"exit {rc}"
                r.problems.append(f"SIGTERM while {name}: {rc_text} after {took:.1f} s; last log: {tail}")
            outcomes.append((name, rc, took, note))

        async def joining(proc: WattstreamProcess) -> str:
            seen = await wait_until(functools.partial(_logged, proc, '"consuming"'), 60, interval=0.05)
            return "" if seen is not None else "never logged 'consuming'"

        async def busy(proc: WattstreamProcess) -> str:
            before = await watch.consumed() or 0
            await wait_until(lambda: _past(watch, before), 60, interval=0.1)
            lag = await watch.lag()
            return f"lag {lag:,}" if lag else "caught up already"

        async def running(proc: WattstreamProcess) -> None:
            """Started for real: readings partitions assigned, and nothing left to do."""
            assigned = f'"partition assigned", "topic": "{s.topic_readings}"'
            await wait_until(functools.partial(_logged, proc, assigned), 60, interval=0.1)
            await caught_up(watch, 120)

        async def db_down(proc: WattstreamProcess) -> str:
            await running(proc)
            await ctx.services.must("timescaledb", "stop")
            await produce(s, held, 0.0)
            seen = await wait_until(
                functools.partial(_logged, proc, "database unavailable"), 20, interval=0.1
            )
            return "batch held" if seen is not None else "no batch held"

        async def broker_down(proc: WattstreamProcess) -> str:
            await running(proc)
            await ctx.services.must("kafka", "stop")
            await asyncio.sleep(3.0)
            return ""

        async def idle(proc: WattstreamProcess) -> str:
            await running(proc)
            await asyncio.sleep(2.0)
            return ""

        await state("joining the group", "joining", joining)
        await state("busy with a backlog", "busy", busy)
        await state("the database is down", "db-down", db_down)
        await state("the broker is down", "broker-down", broker_down)
        await state("idle", "idle", idle)
        r.faults = "SIGTERM in 5 states: " + ", ".join(name for name, *_ in outcomes)
        # and nothing was lost by any of it
        final = ctx.worker(s, "sigterm-final")
        await final.start()
        try:
            drained = await caught_up(watch, _DRAIN_S)
        finally:
            await final.terminate(within=30)
        if drained is None:
            r.problems.append("the worker did not catch up afterwards")
        c = await compare(s, traffic)
        r.problems += c.problems
        r.figure = (
            "; ".join(
                f"{name}{' (' + note + ')' if note else ''}: "
                f"{'exit ' + str(rc) if rc is not None else 'still running'} after {took:.1f} s"
                for name, rc, took, note in outcomes
            )
            + f"; afterwards {c.stored:,}/{c.readings:,} stored"
        )
    return r


async def _logged(proc: WattstreamProcess, text: str) -> bool:
    return text in proc.log_since_start()


async def database_outage(ctx: Context) -> RowResult:
    sc = ctx.scale
    r = RowResult("database outage")
    pre, post = 15.0, 15.0
    seconds = pre + sc.outage_s + post
    r.faults = f"deploy/timescaledb.sh stop, {sc.outage_s:.0f} s down, start"
    async with row_topics(ctx, "outage") as s:
        traffic = make_traffic("outage", int(sc.outage_rate * seconds), 150, seed=ctx.seed + 4, t0=ctx.t0)
        await prepare_meters(s, traffic)
        r.load = f"{traffic.load()} at {sc.outage_rate:,.0f}/s over {seconds:.0f} s"
        watch = Watch(s)
        produced = [0]
        samples: list[tuple[float, int]] = []
        worker = ctx.worker(s, "outage-worker")
        async with (
            supervised(worker, ctx.progress) as sup,
            reporting(ctx.progress, watch, lambda: _produced(produced, len(traffic.messages))),
        ):

            async def sample() -> None:
                while True:
                    rss = worker.rss_bytes()
                    if rss is not None:
                        samples.append((time.monotonic(), rss))
                    await asyncio.sleep(0.5)

            sampling = asyncio.create_task(sample())
            started = time.monotonic()
            producing = asyncio.create_task(
                produce(s, traffic.messages, seconds, on_chunk=_on_chunk(produced))
            )
            try:
                await sleep_until(started + pre)
                t_down = time.monotonic()
                await ctx.services.must("timescaledb", "stop")
                await sleep_until(t_down + sc.outage_s)
                await ctx.services.must("timescaledb", "start")
                t_up = time.monotonic()
                # what was committed when it came back (the worker is still in its backoff then)
                before = await watch.consumed() or 0
                resumed = await wait_until(lambda: _past(watch, before), 120, interval=0.25)
                resumed = None if resumed is None else time.monotonic() - t_up
                await producing
            finally:
                producing.cancel()
                sampling.cancel()
            drained = await caught_up(watch, _DRAIN_S)
        c = await compare(s, traffic)
        warm = [rss for t, rss in samples if t_down - 10 <= t < t_down] or [0]
        during = [rss for t, rss in samples if t_down <= t <= t_up + (resumed or 0) + 5] or [0]
        mid = [rss for t, rss in samples if t_down + sc.outage_s / 2 - 1 <= t <= t_down + sc.outage_s / 2 + 1]
        end = [rss for t, rss in samples if t_up - 2 <= t <= t_up]
        baseline, peak = statistics.median(warm), max(during)
        slope = (statistics.median(end) - statistics.median(mid)) if mid and end else 0.0
        bound = s.readings_partitions * s.ingest_max_partition_fetch_bytes + _MEMORY_SLACK
        r.figure = (
            f"RSS {baseline / _MiB:.0f} MiB before, peak {peak / _MiB:.0f} MiB "
            f"(+{(peak - baseline) / _MiB:.0f}, "
            f"bound +{bound / _MiB:.0f}), {slope / _MiB:+.0f} MiB over the outage's 2nd half; resumed "
            + (f"{resumed:.1f} s after the database was back" if resumed is not None else "never")
            + f"; {c.stored:,}/{c.readings:,} stored; {len(sup.exits)} worker exits"
        )
        if peak - baseline > bound:
            r.problems.append(
                f"memory grew by {(peak - baseline) / _MiB:.0f} MiB during the outage "
                f"(bound {bound / _MiB:.0f} MiB)"
            )
        if resumed is None or resumed > DB_RESUME_BOUND_S:
            r.problems.append(
                f"progress did not resume within {DB_RESUME_BOUND_S:.0f} s of the database's return"
            )
        if drained is None:
            r.problems.append(f"the worker did not catch up within {_DRAIN_S:.0f} s of the last message")
        r.problems += c.problems
        if sup.summary():
            r.problems.append(sup.summary() or "")
    return r
