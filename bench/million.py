"""Benchmark of state at scale: bytes per customer on disk, worker memory as
the tables grow, and restart-to-ready with a large table.

    python -m bench.million [--customers 500000 --checkpoints 100000,250000,500000
                             --realistic 20000 --out bench/results/million.json]

Everything goes through a real worker on a real broker (both started here).
In this, the fill mode, customers are created by producing their events,
never by writing RocksDB or the changelogs directly (`--preload` below does
write the changelogs, for scale).

1. realistic: `--realistic` customers get bench.pipeline's traffic (the
   nudge.traffic mix, about six events each, marketing consent granted), so
   every table holds what real traffic leaves there.
2. fill: further customers get one event each, a marketing consent grant
   (it writes the consent and profile tables), until each checkpoint; there
   the worker's RSS (psutil), the table directory's size and the key counts
   are recorded after a few idle seconds.
3. restart: the worker is stopped gracefully (SIGTERM), started again on its
   own data dir, and the time from process start to /ready 200 is taken; then
   the same after kill -9 (in the preload mode: a kill -9 halfway through
   another `--traffic-seconds` of traffic, so the crash journal has writes
   to roll back).
4. compaction: with the worker stopped, each RocksDB is compacted (rocksdict)
   and the directory measured again, for the steady-state size. Bytes per
   realistic subject (customer or anonymous visitor) = its share of the
   logical bytes (keys + values, read back) x the compacted directory size.

Targets: state < 1 KB per customer on disk; RSS < 1.5 GB with 1,000,000
customers; ready within 15 s of a restart.

    python -m bench.million --preload 1000000 --out bench/results/million-1m.json

`--preload N` is the other mode, for the 1,000,000-customer figures: filling
through the worker's decision path runs at the worker's throughput (a few
hundred events/s on a shared 2-core box: 30-50 minutes per million), so
instead the tables are seeded through their changelogs, the one other way
state legitimately reaches a worker:

1. preload: before any worker runs, the topics are created as the worker
   creates them (streams.admin.ensure_topics, same settings), and N customers'
   records are produced straight into the state changelog topic. The values
   are the real thing: each customer's events (a marketing consent grant on
   every channel, a session_start, a product_view, spread over the last six
   days) go through the real policy engine in-process (policy.processor,
   built by streams.worker.build_engine with the worker's policy), and the
   final bytes of every part it wrote are produced as one record
   (policy/stored.py), keyed by customer id, to
   the partition the worker would use: Faust writes a table's changelog to
   the partition of the source message, which Kafka's default partitioner
   (murmur2 of the key, as kafka-python and aiokafka implement it) chose. One
   record per customer, i.e. a fully compacted changelog:
   the worker would also leave the intermediate writes of the three events,
   until compaction. Restore time grows with the records, not the customers,
   so it is a lower bound for a changelog holding more history; the restore
   rate (records/s) is recorded for that reason.
2. restore: a worker starts on an empty data dir; Faust's recovery rebuilds
   RocksDB from the changelogs (the real restore path). Time to /ready, peak
   RSS during the restore, RSS after 10 s idle, the table directory and the
   key estimates are recorded.
3. traffic: `--traffic-seconds` at `--traffic-rate` (session_start and
   product_view events on random preloaded customers, so reads hit RocksDB
   across the key space); the decisions and suppressions it caused (proof the
   state was found in the right partition: a customer without state has no
   consent) and RSS after idle.
4. restart and compaction as in the fill mode's steps 3 and 4, with the
   RSS after each restart and whether the graceful stop was a clean one.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing as mp
import os
import random
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import psutil
from kafka import KafkaConsumer, TopicPartition
from kafka.partitioner.default import murmur2

from bench.common import INTEGRATION_POLICY as POLICY
from bench.common import REPO_ROOT, default_out, machine_info, write_json
from bench.common import parser as bench_parser
from bench.pipeline import (
    PARTITIONS,
    TS_MARK,
    Template,
    _expect,
    broker,
    build_stream,
    consent_grants,
    events_consumed,
    metric_series,
    produce,
    scrape,
    templates,
)
from nudge.policy.clock import DAY
from nudge.policy.processor import Processor
from nudge.policy.stored import STATE_TABLE, encode_record
from nudge.streams.admin import changelog_topic, ensure_topics
from nudge.streams.crash_journal import CLEAN_STOP_MARKER
from nudge.streams.settings import Settings
from nudge.streams.worker import build_engine
from nudge.testing import WorkerProcess
from nudge.traffic import any_product, consent

DEFAULT_OUT = default_out("million")  # published figures: --out bench/results/...
PRELOAD_OUT = default_out("million-preload")
PREFIX = "bench."  # topic prefix; the worker's app id is PREFIX + "nudge"
PRELOAD_SEED = 6
PRELOAD_DAYS = 6.0  # preloaded customers' events fall in the last six days
IDLE_S = 10.0  # idle before a preload-mode memory reading
READY_TIMEOUT_S = 3600.0  # a full restore of millions of records takes minutes here
BATCH_BYTES = 512 * 1024  # preload producer batch (under the 1 MB request limit)
CHUNK = 50_000  # events produced before waiting for the worker to catch up
TARGET_BYTES = 1024
TARGET_RSS_MB = 1536
TARGET_READY_S = 15.0


def grants(first: int, count: int) -> list[Template]:
    """One marketing consent grant (all channels) for customers first .. first+count."""
    out = []
    for i in range(first, first + count):
        customer = f"m.c{i:07d}"
        head = (
            f'{{"event_id":"m.g{i}","type":"consent","customer_id":"{customer}",'
            f'"channel":"all","purpose":"marketing","status":"granted","source":"bench","ts":'
        )
        out.append(Template("consent", customer, head.encode(), b"}"))
    return out


def send_all(
    ctx: mp.context.BaseContext, bootstrap: str, items: list[Template], rate: float = 0
) -> tuple[float, float, int, float]:
    """Produce `items` from a separate process, at `rate`/s (0: as fast as
    possible); returns bench.pipeline.produce's (first send, last send, sent,
    worst lateness)."""
    back, go = ctx.Queue(), ctx.Event()
    process = ctx.Process(target=produce, args=(bootstrap, PREFIX, items, rate, go, back))
    process.start()
    _expect(back.get(timeout=60), "ready")
    go.set()
    report = back.get(timeout=600 + (len(items) / rate if rate else 0))
    process.join(30)
    return report


def wait_processed(worker: WorkerProcess, target: int, timeout: float = 1800) -> float:
    """Wait until the worker has consumed `target` events; returns when."""
    deadline = time.time() + timeout
    while events_consumed(f"{worker.url}/metrics") < target:
        if time.time() > deadline:
            raise TimeoutError(f"worker did not reach {target} events")
        time.sleep(0.5)
    return time.time()


def table_keys(worker: WorkerProcess) -> dict[str, int]:
    _status, body = worker.get("/metrics")
    keys = {}
    for line in body.get("text", "").splitlines():
        if line.startswith("nudge_table_entries_estimate{"):
            name = line.split('table="', 1)[1].split('"', 1)[0]
            keys[name] = int(float(line.rsplit(" ", 1)[1]))
    return keys


def du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def snapshot(worker: WorkerProcess, customers: int, tables: Path, idle: float = 5) -> dict:
    time.sleep(idle)  # idle: memtables and caches settle, the agent is not mid-batch
    process = psutil.Process(worker.process.pid)
    memory = process.memory_full_info()
    size = du(tables)
    keys = table_keys(worker)
    return {
        "customers": customers,
        "rss_mb": round(memory.rss / 2**20, 1),
        "uss_mb": round(memory.uss / 2**20, 1),
        "table_dir_bytes": size,
        "bytes_per_customer": round(size / customers, 1),
        "keys_estimate": keys,
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def time_to_ready(worker: WorkerProcess) -> float:
    started = time.monotonic()
    worker.start(ready_timeout=900)
    return round(time.monotonic() - started, 2)


def timed_start(worker: WorkerProcess, timeout: float = READY_TIMEOUT_S) -> dict:
    """Start the worker; seconds from process start to /ready 200, and its
    peak RSS meanwhile (sampled every 0.5 s: a restore's high-water mark)."""
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.wait(0.5):
            process = worker.process
            if process is not None and process.poll() is None:
                with contextlib.suppress(psutil.Error):  # exited meanwhile
                    peak = max(peak, psutil.Process(process.pid).memory_info().rss)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.monotonic()
    try:
        worker.start(ready_timeout=timeout)
        ready = time.monotonic() - started
    finally:
        done.set()
        sampler.join()
    return {"ready_s": round(ready, 2), "peak_rss_mb_until_ready": round(peak / 2**20, 1)}


def compact(tables: Path) -> dict[str, dict[str, int]]:
    """Compact every table partition DB (the worker must be stopped); returns
    the logical size (key + value bytes) and key count per table and per
    subject prefix ("r." realistic, "m." filled)."""
    from rocksdict import Options, Rdict

    logical: dict[str, dict[str, int]] = {}
    for db_dir in sorted(p for p in tables.rglob("*.db") if p.is_dir()):
        db = Rdict(str(db_dir), Options(raw_mode=True))
        db.compact_range(None, None)
        table = db_dir.name.rsplit("-", 1)[0]
        for key, value in db.items():
            if key.startswith(b"__faust"):
                continue
            group = logical.setdefault(f"{key[:2].decode(errors='replace')}{table}", {})
            group["keys"] = group.get("keys", 0) + 1
            group["bytes"] = group.get("bytes", 0) + len(key) + len(value)
        db.close()
    return logical


def realistic_bytes(logical: dict[str, dict[str, int]], tables: Path, subjects: int) -> dict:
    """On-disk bytes per realistic subject: its share of the logical bytes,
    scaled by the compacted data files' size over all logical bytes (RocksDB's
    compression and per-record overhead, the same for every group). Each DB's
    fixed files (LOG, MANIFEST, OPTIONS: tens of KB per DB, 4 tables x 8
    partitions) are reported apart: they do not grow with customers."""
    total = sum(g["bytes"] for g in logical.values()) or 1
    mine = sum(g["bytes"] for name, g in logical.items() if name.startswith("r."))
    data = sum(f.stat().st_size for f in tables.rglob("*.sst"))
    return {
        "subjects": subjects,
        "logical_bytes_per_subject": round(mine / subjects, 1),
        "disk_bytes_per_subject": round(mine / total * data / subjects, 1),
        "data_file_bytes": data,
        "fixed_file_bytes": du(tables) - data,
    }


# -- preload: seeding the tables through their changelogs ---------------------------------


def customer_id(i: int) -> str:
    return f"p.c{i:07d}"


def partition_for(key: bytes, partitions: int) -> int:
    """Kafka's default partitioner (Java's, kafka-python's and aiokafka's):
    the partition an upstream producer sends this key's events to, hence the
    partition of the changelog records their table writes produce."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def worker_settings(bootstrap: str, workdir: Path) -> Settings:
    """The Settings the bench's worker runs with (WorkerProcess.env plus the
    bench's extra env); the rest comes from this process's environment, which
    the worker inherits."""
    return Settings(
        bootstrap_servers=bootstrap,
        topic_prefix=PREFIX,
        app_id=f"{PREFIX}nudge",
        partitions=PARTITIONS,
        data_dir=workdir / "worker" / "tables",
        policy_path=POLICY,
        model_dir=workdir / "none",
    )


def preload_events(i: int, rng: random.Random, end: float) -> list[tuple[str, dict, float]]:
    """Customer i's history: (kind, body, event time) of a marketing consent
    grant on every channel, then a session start and a product view."""
    customer = customer_id(i)
    t = end - rng.uniform(600, PRELOAD_DAYS * DAY)
    view = t + 60 + rng.expovariate(1 / 40)
    return [
        ("consent", consent(customer, f"p.g{i}", t, "all", source="bench"), t),
        ("clickstream", {"event_id": f"p.s{i}", "type": "session_start",
                         "customer_id": customer, "page": "/"}, t + 60),
        ("clickstream", {"event_id": f"p.v{i}", "type": "product_view",
                         "customer_id": customer, **any_product(rng)}, view),
    ]  # fmt: skip


def customer_records(
    processor: Processor, i: int, rng: random.Random, end: float, outputs: dict[str, int]
) -> tuple[bytes, dict[str, bytes]]:
    """Run customer i's events through the real engine; (key, {table: the
    final bytes of every table written}). Counts the outputs by kind."""
    key = customer_id(i).encode()
    state: dict[str, bytes] = {}
    for offset, (kind, body, ts) in enumerate(preload_events(i, rng, end)):
        body["ts"] = datetime.fromtimestamp(ts, UTC).isoformat()
        now = datetime.fromtimestamp(ts + 0.05, UTC)
        result = processor.process(
            kind, key, msgspec.json.encode(body), (kind, 0, offset), lambda _: dict(state), now
        )
        if result.invalid_reason is not None:
            raise RuntimeError(f"preload event rejected: {result.invalid_reason} {body}")
        for table, value in result.writes.items():
            if value is None:
                state.pop(table, None)
            else:
                state[table] = value
        for emit in result.emits:
            outputs[emit.kind] = outputs.get(emit.kind, 0) + 1
    return key, state


def preload(settings: Settings, customers: int, seed: int = PRELOAD_SEED) -> dict:
    """Create the topics as the worker would, then produce `customers`
    customers' table records into the changelogs; returns what was sent."""
    created = ensure_topics(settings)
    time.sleep(2)  # new topics: let partition leadership settle before producing
    engine, _scorer = build_engine(settings)
    processor = Processor(engine, event_clock=settings.clock == "event")
    topics = {STATE_TABLE: changelog_topic(settings, STATE_TABLE)}
    began = time.perf_counter()
    stats = asyncio.run(_preload(settings.bootstrap_servers, topics, processor, customers, seed))
    seconds = time.perf_counter() - began
    records = sum(t["records"] for t in stats["tables"].values())
    return {
        "customers": customers,
        "topics_created": len(created),
        "records": records,
        "seconds": round(seconds, 1),
        "customers_per_second": round(customers / seconds),
        "records_per_second": round(records / seconds),
        **stats,
    }


async def _preload(
    bootstrap: str, topics: dict[str, str], processor: Processor, customers: int, seed: int
) -> dict:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks=1, linger_ms=100, max_batch_size=BATCH_BYTES
    )
    await producer.start()
    tables = {table: {"records": 0, "value_bytes": 0} for table in topics}
    outputs: dict[str, int] = {}
    per_partition = [0] * PARTITIONS
    builders: dict[tuple[str, int], object] = {}
    pending: list[asyncio.Future] = []

    async def ship(table: str, partition: int) -> None:
        batch = builders.pop((table, partition))
        pending.append(await producer.send_batch(batch, topics[table], partition=partition))

    try:
        for topic in topics.values():
            if len(await producer.partitions_for(topic)) != PARTITIONS:
                raise RuntimeError(f"{topic} does not have {PARTITIONS} partitions")
        rng = random.Random(seed)
        end = time.time()
        for i in range(customers):
            key, parts = customer_records(processor, i, rng, end, outputs)
            partition = partition_for(key, PARTITIONS)
            per_partition[partition] += 1
            records = {STATE_TABLE: encode_record(parts)}  # one record per customer
            for table, value in records.items():
                builder = builders.get((table, partition))
                if builder is None:
                    builder = builders[(table, partition)] = producer.create_batch()
                if builder.append(key=key, value=value, timestamp=None) is None:  # full
                    await ship(table, partition)
                    builder = builders[(table, partition)] = producer.create_batch()
                    builder.append(key=key, value=value, timestamp=None)
                tables[table]["records"] += 1
                tables[table]["value_bytes"] += len(value)
            if i % 2000 == 1999:
                for future in [f for f in pending if f.done()]:
                    future.result()  # raises a failed send
                pending[:] = [f for f in pending if not f.done()]
                await asyncio.sleep(0)  # let the sender run
            if i % 100_000 == 99_999:
                print(f"preload: {i + 1} customers", flush=True)
        for table, partition in list(builders):
            await ship(table, partition)
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    for table in tables.values():
        table["mean_value_bytes"] = round(table["value_bytes"] / max(1, table["records"]), 1)
    return {
        "tables": tables,
        "customers_per_partition": per_partition,
        "engine_outputs": dict(sorted(outputs.items())),
    }


def kill_under_traffic(
    ctx: mp.context.BaseContext, bootstrap: str, worker: WorkerProcess, args: argparse.Namespace
) -> dict:
    """kill -9 halfway through `args.traffic_seconds` of traffic, restart on
    the same data dir at once: seconds to /ready, peak RSS, and what the
    crash journal rolled back (streams/crash_journal.py)."""
    items = traffic(args.preload, int(args.traffic_rate * args.traffic_seconds), PRELOAD_SEED + 1)
    sender = threading.Thread(target=send_all, args=(ctx, bootstrap, items, args.traffic_rate))
    sender.start()
    time.sleep(args.traffic_seconds / 2)
    worker.kill()
    restart = timed_start(worker)
    sender.join()
    log = worker.log_path.read_text(errors="replace")
    recoveries = [line for line in log.splitlines() if "did not stop cleanly" in line]
    restart["recovery"] = recoveries[-1].split("] ", 1)[-1] if recoveries else None
    restart["killed_after_s_of_traffic"] = args.traffic_seconds / 2
    return restart


def changelog_records(bootstrap: str, topics: list[str]) -> dict[str, int]:
    """Records in each changelog (end offsets summed over its partitions)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        ends = consumer.end_offsets(
            [TopicPartition(t, p) for t in topics for p in range(PARTITIONS)]
        )
    finally:
        consumer.close()
    return {t: sum(v for tp, v in ends.items() if tp.topic == t) for t in topics}


def traffic(customers: int, events: int, seed: int) -> list[Template]:
    """Session starts and product views on random preloaded customers."""
    rng = random.Random(seed)
    out = []
    for n in range(events):
        customer = customer_id(rng.randrange(customers))
        body: dict = {"event_id": f"t.{seed}.{n}", "customer_id": customer}
        if rng.random() < 0.5:
            body.update(type="session_start", page="/")
        else:
            body.update(type="product_view", **any_product(rng))
        body["ts"] = TS_MARK
        head, tail = msgspec.json.encode(body).split(f'"{TS_MARK}"'.encode())
        out.append(Template("clickstream", customer, head, tail))
    return out


def decisions(worker: WorkerProcess) -> dict[str, dict[str, float]]:
    text = scrape(f"{worker.url}/metrics")
    return {
        name: metric_series(text, f"nudge_{name}")
        for name in ("decisions_total", "suppressions_total", "decision_seconds_sum",
                     "decision_seconds_count", "duplicate_events_total")
    }  # fmt: skip


def drive(
    ctx: mp.context.BaseContext, bootstrap: str, worker: WorkerProcess, args: argparse.Namespace
) -> dict:
    """`args.traffic_seconds` of traffic at `args.traffic_rate` on the
    preloaded customers; what the worker made of it."""
    items = traffic(args.preload, int(args.traffic_rate * args.traffic_seconds), PRELOAD_SEED)
    before = decisions(worker)
    consumed = events_consumed(f"{worker.url}/metrics")
    first, last, sent, lateness = send_all(ctx, bootstrap, items, args.traffic_rate)
    done = wait_processed(worker, consumed + len(items))
    after = decisions(worker)
    delta = {
        name: {
            labels.strip("{}") or "total": round(value - before[name].get(labels, 0.0), 4)
            for labels, value in series.items()
            if value != before[name].get(labels, 0.0)
        }
        for name, series in after.items()
    }
    count = delta.pop("decision_seconds_count", {}).get("total", 0)
    total = delta.pop("decision_seconds_sum", {}).get("total", 0.0)
    return {
        "events": sent,
        "offered_per_second": round(sent / max(last - first, 1e-9)),
        "worst_send_lateness_s": round(lateness, 3),
        "drained_s_after_last_send": round(done - last, 2),
        "mean_decision_ms": round(total / count * 1000, 3) if count else None,
        **delta,
    }


def stop_gracefully(worker: WorkerProcess, tables: Path) -> dict:
    """SIGTERM; whether the worker stopped cleanly (a stop that times out is a
    kill -9, and its restart a full restore)."""
    started = time.monotonic()
    worker.stop(timeout=120)
    return {
        "stop_s": round(time.monotonic() - started, 2),
        "exit_code": worker.process.returncode,
        "clean_stop_marked": any(tables.rglob(CLEAN_STOP_MARKER)),  # in Faust's tabledir
    }


def run_preload(args: argparse.Namespace) -> dict:
    ctx = mp.get_context("spawn")
    n = args.preload
    result: dict = {
        "benchmark": "million",
        "mode": "preload",
        "command": "python -m bench.million " + " ".join(args.argv),
        "params": {
            "preload_customers": n,
            "preload_events_per_customer": "consent grant (all channels, marketing), "
            "session_start, product_view; final table values only (a compacted changelog)",
            "traffic_rate": args.traffic_rate,
            "traffic_seconds": args.traffic_seconds,
            "partitions": PARTITIONS,
            "policy": str(POLICY.relative_to(REPO_ROOT)),
            "idle_before_memory_s": IDLE_S,
        },
    }
    with tempfile.TemporaryDirectory(prefix="nudge-million-") as tmp, broker(Path(tmp)) as boot:
        workdir = Path(tmp)
        settings = worker_settings(boot, workdir)
        worker = WorkerProcess(
            boot, PREFIX, workdir / "worker", partitions=PARTITIONS,
            extra_env={"NUDGE_POLICY": str(POLICY), "NUDGE_MODEL_DIR": str(workdir / "none")},
        )  # fmt: skip
        tables = workdir / "worker" / "tables"
        changelogs = [changelog_topic(settings, STATE_TABLE)]
        result["preload"] = preload(settings, n)
        print(f"preload: {result['preload']}", flush=True)
        records = changelog_records(boot, changelogs)
        try:
            restore = timed_start(worker)
            print(f"restored: {restore}", flush=True)
            restore["changelog_records"] = records
            restore["records_per_second_incl_start"] = round(
                sum(records.values()) / restore["ready_s"]
            )
            result["restore"] = {**restore, **snapshot(worker, n, tables, IDLE_S)}
            print(f"after restore: {result['restore']}", flush=True)
            result["traffic"] = drive(ctx, boot, worker, args)
            result["traffic"].update(snapshot(worker, n, tables, IDLE_S))
            print(f"after traffic: {result['traffic']}", flush=True)

            stop = stop_gracefully(worker, tables)
            records = changelog_records(boot, changelogs)
            graceful = {**stop, **timed_start(worker), "changelog_records": records}
            result["graceful_restart"] = {**graceful, **snapshot(worker, n, tables, IDLE_S)}
            print(f"graceful restart: {result['graceful_restart']}", flush=True)

            kill9 = {**kill_under_traffic(ctx, boot, worker, args), "changelog_records": records}
            result["kill9_restart"] = {**kill9, **snapshot(worker, n, tables, IDLE_S)}
            print(f"kill -9 restart: {result['kill9_restart']}", flush=True)
        finally:
            worker.stop(timeout=120)
        before = du(tables)
        logical = compact(tables)
        after = du(tables)
        data = sum(f.stat().st_size for f in tables.rglob("*.sst"))
        result["compacted"] = {
            "table_dir_bytes_before": before,
            "table_dir_bytes_after": after,
            "bytes_per_customer_before": round(before / n, 1),
            "bytes_per_customer": round(after / n, 1),
            "data_file_bytes_per_customer": round(data / n, 1),
            "logical_bytes_per_customer": round(sum(g["bytes"] for g in logical.values()) / n, 1),
            "logical": logical,
        }
        result["worker_log_tail"] = worker.tail(15)
    rss = {
        phase: result[phase]["rss_mb"]
        for phase in ("restore", "traffic", "graceful_restart", "kill9_restart")
    }
    ready = {
        "first_start_full_restore_s": result["restore"]["ready_s"],
        "graceful_stop_ready_s": result["graceful_restart"]["ready_s"],
        "kill9_ready_s": result["kill9_restart"]["ready_s"],
    }
    result["targets"] = {
        "rss_mb": {
            "customers": n,
            "value": rss,
            "peak_during_restores": max(
                result[p]["peak_rss_mb_until_ready"]
                for p in ("restore", "graceful_restart", "kill9_restart")
            ),
            "target": f"< {TARGET_RSS_MB} at 1,000,000",
            "pass": n >= 1_000_000 and max(rss.values()) < TARGET_RSS_MB,
        },
        "ready_after_restart_s": {
            "value": ready,
            "target": f"< {TARGET_READY_S:g} s",
            "graceful_pass": ready["graceful_stop_ready_s"] < TARGET_READY_S,
            "kill9_pass": ready["kill9_ready_s"] < TARGET_READY_S,
        },
    }
    return result


def run(args: argparse.Namespace) -> dict:
    ctx = mp.get_context("spawn")
    result: dict = {
        "benchmark": "million",
        "params": {
            "customers": args.customers,
            "checkpoints": args.checkpoints,
            "realistic_customers": args.realistic,
            "partitions": PARTITIONS,
            "policy": str(POLICY.relative_to(REPO_ROOT)),
        },
        "checkpoints": [],
    }
    with tempfile.TemporaryDirectory(prefix="nudge-million-") as tmp, broker(Path(tmp)) as boot:
        workdir = Path(tmp)
        worker = WorkerProcess(
            boot, "bench.", workdir / "worker", partitions=PARTITIONS,
            extra_env={"NUDGE_POLICY": str(POLICY), "NUDGE_MODEL_DIR": str(workdir / "none")},
        )  # fmt: skip
        tables = workdir / "worker" / "tables"
        worker.start()
        try:
            began = time.time()
            stream = build_stream(args.realistic * 6)
            items = templates(stream, "r")
            realistic = consent_grants(items, "r") + items
            send_all(ctx, boot, realistic)
            done = wait_processed(worker, len(realistic))
            shot = snapshot(worker, args.realistic, tables)
            result["realistic"] = {
                "events": len(realistic),
                "events_per_second": round(len(realistic) / (done - began)),
                **shot,
            }
            print(f"realistic: {result['realistic']}", flush=True)
            consumed, created, rate = len(realistic), args.realistic, None
            for checkpoint in args.checkpoints:
                while created < checkpoint:
                    count = min(CHUNK, checkpoint - created)
                    started = time.time()
                    send_all(ctx, boot, grants(created, count))
                    consumed += count
                    wait_processed(worker, consumed)
                    rate = count / (time.time() - started)
                    created += count
                shot = snapshot(worker, created, tables)
                shot["fill_events_per_second"] = round(rate) if rate else None
                result["checkpoints"].append(shot)
                print(f"checkpoint: {shot}", flush=True)
            worker.stop()
            result["restart"] = {"graceful_stop_ready_s": time_to_ready(worker)}
            print(f"restart after graceful stop: {result['restart']}", flush=True)
            worker.kill()
            result["restart"]["kill9_ready_s"] = time_to_ready(worker)
            print(f"restart after kill -9: {result['restart']}", flush=True)
            result["restart"]["customers"] = created
        finally:
            worker.stop()
        before = du(tables)
        logical = compact(tables)
        after = du(tables)
        result["compacted"] = {
            "table_dir_bytes_before": before,
            "table_dir_bytes_after": after,
            "bytes_per_customer": round(after / created, 1),
            "logical": logical,
            # Every subject with state has a profile record (its processed event ids).
            "realistic": realistic_bytes(logical, tables, logical[f"r.{STATE_TABLE}"]["keys"]),
        }
        result["worker_log_tail"] = worker.tail(15)
    last = result["checkpoints"][-1] if result["checkpoints"] else {}
    restart = result["restart"]
    result["targets"] = {
        "disk_bytes_per_realistic_subject": {
            "value": result["compacted"]["realistic"]["disk_bytes_per_subject"],
            "target": f"< {TARGET_BYTES}",
            "pass": result["compacted"]["realistic"]["disk_bytes_per_subject"] < TARGET_BYTES,
        },
        "rss_mb_at_largest_checkpoint": {
            "customers": last.get("customers"),
            "value": last.get("rss_mb"),
            "target": f"< {TARGET_RSS_MB} at 1,000,000",
            "pass": last.get("customers") == 1_000_000 and last["rss_mb"] < TARGET_RSS_MB,
        },
        "ready_after_restart_s": {
            "value": restart,
            "target": f"< {TARGET_READY_S:g} s",
            "pass": max(restart["graceful_stop_ready_s"], restart["kill9_ready_s"])
            < TARGET_READY_S,
        },
    }
    return result


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(
        "bench.million",
        __doc__,
        None,
        f"default {DEFAULT_OUT.name}, with --preload {PRELOAD_OUT.name}",
    )
    parser.add_argument(
        "--checkpoints",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[100_000, 250_000, 500_000],
    )
    parser.add_argument("--realistic", type=int, default=20_000)
    parser.add_argument(
        "--preload",
        type=int,
        metavar="N",
        help="seed N customers through the changelogs instead of filling through the worker",
    )
    parser.add_argument("--traffic-rate", type=float, default=300.0, help="with --preload")
    parser.add_argument("--traffic-seconds", type=float, default=60.0, help="with --preload")
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    args.customers = max(args.checkpoints)
    if args.out is None:
        args.out = PRELOAD_OUT if args.preload else DEFAULT_OUT
    load = os.getloadavg()
    result = run_preload(args) if args.preload else run(args)
    result["machine"] = machine_info(None, load)
    write_json(result, args.out)
    print(f"\nresult written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
