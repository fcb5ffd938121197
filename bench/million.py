"""Benchmark of state at scale: bytes per customer on disk, worker memory as
the tables grow, and restart-to-ready with a large table.

    python -m bench.million [--customers 500000 --checkpoints 100000,250000,500000
                             --realistic 20000 --out bench/results/million.json]

Everything goes through a real worker on a real broker (both started here):
customers are created by producing their events, never by writing RocksDB
or the changelogs directly.

1. realistic: `--realistic` customers get bench.pipeline's traffic (the
   bench.engine mix, about six events each, marketing consent granted), so
   every table holds what real traffic leaves there.
2. fill: further customers get one event each, a marketing consent grant
   (it writes the consent and profile tables), until each checkpoint; there
   the worker's RSS (psutil), the table directory's size and the key counts
   are recorded after a few idle seconds.
3. restart: the worker is stopped gracefully (SIGTERM), started again on its
   own data dir, and the time from process start to /ready 200 is taken; then
   the same after kill -9.
4. compaction: with the worker stopped, each RocksDB is compacted (rocksdict)
   and the directory measured again, for the steady-state size. Bytes per
   realistic subject (customer or anonymous visitor) = its share of the
   logical bytes (keys + values, read back) x the compacted directory size.

Targets: state < 1 KB per customer on disk; RSS < 1.5 GB with 1,000,000
customers; ready within 15 s of a restart.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import tempfile
import time
from pathlib import Path

import psutil

from bench.engine import machine_info, write_json
from bench.pipeline import (
    PARTITIONS,
    POLICY,
    Template,
    _expect,
    broker,
    build_stream,
    consent_grants,
    events_consumed,
    produce,
    templates,
)
from nudge.testing import WorkerProcess

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO_ROOT / "bench" / "results" / "million.json"
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


def send_all(ctx: mp.context.BaseContext, bootstrap: str, items: list[Template]) -> None:
    """Produce `items` as fast as possible from a separate process."""
    back, go = ctx.Queue(), ctx.Event()
    process = ctx.Process(target=produce, args=(bootstrap, "bench.", items, 0, go, back))
    process.start()
    _expect(back.get(timeout=60), "ready")
    go.set()
    back.get(timeout=600)
    process.join(30)


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


def snapshot(worker: WorkerProcess, customers: int, tables: Path) -> dict:
    time.sleep(5)  # idle: memtables and caches settle, the agent is not mid-batch
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
    }


def time_to_ready(worker: WorkerProcess) -> float:
    started = time.monotonic()
    worker.start(ready_timeout=900)
    return round(time.monotonic() - started, 2)


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


def realistic_bytes(logical: dict[str, dict[str, int]], dir_bytes: int, subjects: int) -> dict:
    """On-disk bytes per realistic subject: its share of the logical bytes,
    scaled by the directory's size over all logical bytes (RocksDB's
    compression and overhead, same for both groups)."""
    total = sum(g["bytes"] for g in logical.values()) or 1
    mine = sum(g["bytes"] for name, g in logical.items() if name.startswith("r."))
    return {
        "subjects": subjects,
        "logical_bytes_per_subject": round(mine / subjects, 1),
        "disk_bytes_per_subject": round(mine / total * dir_bytes / subjects, 1),
    }


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
            "realistic": realistic_bytes(logical, after, logical["r.profile"]["keys"]),
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
    parser = argparse.ArgumentParser(
        prog="python -m bench.million",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--checkpoints",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[100_000, 250_000, 500_000],
    )
    parser.add_argument("--realistic", type=int, default=20_000)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    args.customers = max(args.checkpoints)
    load = os.getloadavg()
    result = run(args)
    result["machine"] = {
        **machine_info(None),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "load_average": [round(x, 2) for x in load],
        "load_average_end": [round(x, 2) for x in os.getloadavg()],
    }
    write_json(result, args.out)
    print(f"\nresult written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
