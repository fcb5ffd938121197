"""Soak: sustained realistic traffic for minutes, watching for slow trouble.

    python -m bench.soak [--minutes 10 --rate 300 --out bench/results/soak.json]

One broker and one worker, started here with bench.pipeline's settings (the
integration policy without quiet hours, the heuristic scorer, 8 partitions),
and bench.pipeline's load generator and latency reader in their own
processes. A 10 s untimed trial at the same rate (bench.pipeline's
run_trial) warms the worker up first: the soak is about the steady state.

Traffic is bench.pipeline's realistic mix at a fixed rate, in chunks of about
a minute, each chunk with its own seed and its own customers, whose marketing
consent is granted just before their first event (grants are sent at the same
rate and count as traffic). Fresh customers keep arriving, so state grows as
in production instead of cycling over a fixed set.

Every 10 s it records consumer lag (the worker's `nudge_consumer_lag` gauge
summed over the agent's input partitions, identity merges included: end
offset minus the group's committed offset, polled by the worker every 5 s),
worker RSS and CPU (psutil), messages consumed, the ERROR/CRITICAL/WARNING/
Traceback lines the worker logged, and, at the end, p50/p99 latency of the
decisions whose trigger was sent in each window.

Verdict (exit status 1 if any fails):

- lag does not grow: over the second half, the least-squares slope of lag is
  at most 1% of the rate per second, or lag stays under 10 s of traffic
  (committed-offset lag moves with the 2.8 s commit timer and the 5 s poll,
  so smaller values are that cadence, not a backlog);
- RSS is bounded: the last third's maximum at most 20% (--rss-growth) above
  the first third's;
- the worker logs no ERROR, CRITICAL, WARNING or Traceback line once the
  soak's traffic has started (the realistic mix is valid input: even a
  deadletter is news); lines from start-up and warm-up are reported only;
- every event sent is processed within 2 minutes of the last send.

The target is 5,000 events/s; one worker on this shared 2-core machine
sustains about 300-500/s (docs/performance.md), so the soak runs at 300/s by
default: it tests stability at a sustainable rate, not throughput.
"""

from __future__ import annotations

import argparse
import bisect
import math
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from bench.common import INTEGRATION_POLICY as POLICY
from bench.common import REPO_ROOT, default_out, machine_info, percentile, summary, write_json
from bench.common import parser as bench_parser
from bench.pipeline import (
    PARTITIONS,
    SEED,
    Samples,
    System,
    Template,
    broker,
    build_stream,
    consent_grants,
    load,
    metric_series,
    render_trial,
    run_trial,
    scrape,
    start_workers,
    templates,
)
from nudge.policy.processor import MERGE_KIND
from nudge.streams.topics import topic_name
from nudge.testing import WorkerProcess

DEFAULT_OUT = default_out("soak")  # published figures: --out bench/results/...

TARGET_RATE = 5000
DEFAULT_RATE = 300
RATE_NOTE = (
    f"the target is {TARGET_RATE:,} events/s; one worker on this shared 2-core machine "
    "sustains about 300-500/s (docs/performance.md), so the soak runs below that: "
    "it tests stability at a sustainable rate, not throughput"
)
WINDOW_S = 10.0
CHUNK_S = 60.0  # traffic seconds per chunk of fresh customers
DRAIN_TIMEOUT_S = 120.0
LAG_SLOPE_SHARE = 0.01  # of the rate, per second: faster growth over the second half fails
LAG_FLOOR_S = 10.0  # ... unless lag stays under this many seconds of traffic
RSS_GROWTH = 0.2
LOG_LINES_KEPT = 50
# An untimed trial first, so first-use costs (metadata, connections, new
# RocksDB files) do not show as a backlog in the first windows.
WARM_UP_S = 10.0
WARM_UP_FIGURES = ("sent", "throughput_per_second", "latency_ms", "drain_seconds", "sustained")


# -- traffic --------------------------------------------------------------------------------


def soak_traffic(rate: int, seconds: float, tag: str, chunk_s: float = CHUNK_S) -> list[Template]:
    """`rate` x `seconds` events of the realistic mix, in chunks of `chunk_s`
    worth, each with its own seed and customers (ids `tag.<chunk>.`), each
    customer's consent grant just before their first event."""
    total = int(rate * seconds)
    items: list[Template] = []
    chunk = 0
    while len(items) < total:
        chunk_tag = f"{tag}.{chunk}"
        events = templates(build_stream(int(rate * chunk_s), SEED + chunk), chunk_tag)
        items += granted_first(events, consent_grants(events, chunk_tag))
        chunk += 1
    return items[:total]


def granted_first(items: Sequence[Template], grants: Sequence[Template]) -> list[Template]:
    """`items` with each grant (keyed by its customer) inserted just before that
    customer's first event, as a sign-up would precede the browsing."""
    pending = {grant.key: grant for grant in grants}
    out = []
    for item in items:
        grant = pending.pop(item.key, None)
        if grant is not None:
            out.append(grant)
        out.append(item)
    return out


# -- what the worker shows ------------------------------------------------------------------


def inputs_consumed(page: str) -> int:
    """Input events consumed: `nudge_events_consumed_total` without the
    internal identity merges, comparable with what the generator sent."""
    series = metric_series(page, "nudge_events_consumed_total")
    return int(sum(v for labels, v in series.items() if f'topic="{MERGE_KIND}"' not in labels))


def total_lag(page: str) -> int | None:
    """Sum of the lag gauge over partitions; None while the worker reports none
    (no measurement yet, or the broker could not be asked)."""
    series = metric_series(page, "nudge_consumer_lag")
    return int(sum(series.values())) if series else None


@dataclass
class LogTail:
    """The complete lines a growing log file gained since the last read."""

    path: Path
    offset: int = 0
    partial: bytes = b""

    def read(self) -> list[str]:
        if not self.path.exists():
            return []
        with self.path.open("rb") as log:
            log.seek(self.offset)
            data = log.read()
        self.offset += len(data)
        *lines, self.partial = (self.partial + data).split(b"\n")
        return [line.decode(errors="replace") for line in lines]


def log_level(line: str) -> str | None:
    """'error' (ERROR, CRITICAL, a traceback), 'warning', or None for a line of
    the worker's log (`[time] [pid] [LEVEL] message`)."""
    if "[ERROR]" in line or "[CRITICAL]" in line or line.startswith("Traceback ("):
        return "error"
    if "[WARNING]" in line:
        return "warning"
    return None


def flagged(lines: Sequence[str]) -> list[str]:
    return [line for line in lines if log_level(line)]


# -- verdict --------------------------------------------------------------------------------


def linear_slope(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    """Least-squares slope of ys over xs; None below two distinct xs."""
    if len(xs) < 2:
        return None
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        return None
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx


def lag_trend(t: Sequence[float], lag: Sequence[int | None], rate: float) -> dict:
    """Lag's slope (messages per second) over the second half of the soak, its
    maxima, and whether it grows; `growing` is None when fewer than three
    second-half measurements exist (no verdict either way)."""
    known = [(x, y) for x, y in zip(t, lag, strict=True) if y is not None]
    half = t[0] + (t[-1] - t[0]) / 2 if t else 0.0
    second = [(x, y) for x, y in known if x >= half]
    slope = linear_slope([x for x, _ in second], [y for _, y in second])
    second_max = max((y for _, y in second), default=None)
    growing = None
    if len(second) >= 3 and slope is not None and second_max is not None:
        growing = slope > LAG_SLOPE_SHARE * rate and second_max > LAG_FLOOR_S * rate
    return {
        "second_half_slope_per_s": None if slope is None else round(slope, 2),
        "slope_limit_per_s": round(LAG_SLOPE_SHARE * rate, 2),
        "max": max((y for _, y in known), default=None),
        "second_half_max": second_max,
        "floor": round(LAG_FLOOR_S * rate),
        "last": known[-1][1] if known else None,
        "measurements": len(known),
        "growing": growing,
    }


def rss_bound(t: Sequence[float], rss_mb: Sequence[float], growth_limit: float) -> dict:
    """RSS at start and end, its maximum, the first and last thirds' maxima
    and whether the last stays within `growth_limit` of the first; the last
    half's slope (MB/min) shows a leak's pace. `bounded` is None below three
    samples."""
    third = len(rss_mb) // 3
    first_max = max(rss_mb[:third]) if third else None
    last_max = max(rss_mb[-third:]) if third else None
    growth = last_max / first_max - 1 if first_max and last_max else None
    half = len(rss_mb) // 2
    slope = linear_slope(t[half:], rss_mb[half:])
    return {
        "start_mb": rss_mb[0] if rss_mb else None,
        "end_mb": rss_mb[-1] if rss_mb else None,
        "max_mb": max(rss_mb, default=None),
        "first_third_max_mb": first_max,
        "last_third_max_mb": last_max,
        "growth": None if growth is None else round(growth, 3),
        "growth_limit": growth_limit,
        "last_half_slope_mb_per_min": None if slope is None else round(slope * 60, 2),
        "bounded": None if growth is None else growth <= growth_limit,
    }


def verdict(lag: dict, rss: dict, log_lines: Sequence[str], sent: int, processed: int) -> list[str]:
    """Why the soak failed; empty when it passed."""
    failures = []
    if lag["growing"] is None:
        failures.append(
            f"lag unknown: {lag['measurements']} measurements, fewer than 3 in the second half"
        )
    elif lag["growing"]:
        failures.append(
            f"lag grows: {lag['second_half_slope_per_s']}/s over the second half "
            f"(limit {lag['slope_limit_per_s']}/s), up to {lag['second_half_max']} "
            f"(floor {lag['floor']})"
        )
    if rss["bounded"] is None:
        failures.append("RSS: too few samples to judge")
    elif not rss["bounded"]:
        failures.append(
            f"RSS grows: last third's max {rss['last_third_max_mb']} MB is "
            f"{rss['growth']:.0%} above the first third's {rss['first_third_max_mb']} MB "
            f"(limit {rss['growth_limit']:.0%})"
        )
    if log_lines:
        failures.append(f"{len(log_lines)} ERROR/WARNING/Traceback lines in the worker log")
    if processed < sent:
        failures.append(f"{sent - processed} of {sent} events sent were not processed")
    return failures


# -- the soak -------------------------------------------------------------------------------


@dataclass
class Watch:
    """What the soak records at each window boundary, besides bench.pipeline's
    Samples (time, consumed, CPU, RSS)."""

    lag: list[int | None] = field(default_factory=list)
    log: list[list[str]] = field(default_factory=list)  # flagged lines since the last mark
    load1: list[float] = field(default_factory=list)


def soak(
    ctx: mp.context.BaseContext,
    bootstrap: str,
    worker: WorkerProcess,
    system: System,
    items: list[Template],
    rate: int,
    tag: str,
) -> dict:
    """Send `items` at `rate`, marking every WINDOW_S; then wait for the worker
    to drain and collect the latencies. Raises if the worker exits."""
    url = system.metrics_urls[0]
    processes = [psutil.Process(worker.process.pid)]
    log = LogTail(worker.log_path)
    samples, watch = Samples(), Watch()
    windows = math.ceil(len(items) / rate / WINDOW_S)

    def mark(count: int) -> str:
        if worker.process.poll() is not None:
            raise RuntimeError(f"worker exited with {worker.process.returncode}:\n{worker.tail()}")
        samples.take(system, processes, count, fresh=True)
        page = scrape(url)
        watch.lag.append(total_lag(page))
        watch.log.append(flagged(log.read()))
        watch.load1.append(os.getloadavg()[0])
        return page

    with load(ctx, bootstrap, system, items, rate, tag) as running:
        base = inputs_consumed(mark(running.count.value))
        running.go.set()
        for k in range(1, windows + 1):
            time.sleep(max(0.0, samples.t[0] + k * WINDOW_S - time.time()))
            mark(running.count.value)
            print(render_mark(samples, watch), flush=True)
        first, last, sent, lateness = running.producer_q.get(timeout=DRAIN_TIMEOUT_S)
        drain = None
        while drain is None and time.time() < last + DRAIN_TIMEOUT_S:
            if inputs_consumed(scrape(url)) - base >= sent:
                drain = round(time.time() - last, 2)
            time.sleep(0.25)
        processed = inputs_consumed(mark(running.count.value)) - base
        rows = running.outputs()
    return {
        "samples": samples,
        "watch": watch,
        "rows": rows,
        "first": first,
        "last": last,
        "sent": sent,
        "lateness": lateness,
        "processed": processed,
        "drain_seconds": drain,
    }


def summarize(raw: dict, rate: int, rss_growth: float) -> dict:
    """Per-window figures and the verdict from what `soak` recorded (the last
    sample, after the drain, is not a window but its log lines count)."""
    samples, watch = raw["samples"], raw["watch"]
    t = [x - samples.t[0] for x in samples.t]
    n = len(t) - 1  # windows, plus the drain mark at the end
    windows = []

    def offered(when: float) -> int:
        return scheduled(when, raw["first"], rate, raw["sent"])

    latencies = by_window(raw["rows"], samples.t[:n])
    for k in range(1, n):
        in_window = latencies[k - 1]
        seconds = samples.t[k] - samples.t[k - 1]
        consumed = samples.processed[k] - samples.processed[k - 1]
        windows.append({
            "t": round(t[k], 1),
            "offered": offered(samples.t[k]) - offered(samples.t[k - 1]),
            "consumed": consumed,
            "consumed_per_second": round(consumed / seconds, 1),
            "lag": watch.lag[k],
            "rss_mb": round(samples.rss[k] / 2**20, 1),
            "cpu_cores": round((samples.cpu_s[k] - samples.cpu_s[k - 1]) / seconds, 3),
            "decisions": len(in_window),
            "p50_ms": percentile(in_window, 50, digits=1),
            "p99_ms": percentile(in_window, 99, digits=1),
            "log_errors": sum(log_level(line) == "error" for line in watch.log[k]),
            "log_warnings": sum(log_level(line) == "warning" for line in watch.log[k]),
            "load1": round(watch.load1[k], 2),
        })  # fmt: skip
    latency = sorted(arrived * 1000 - trigger for arrived, trigger, _c, _a in raw["rows"])
    actions = sorted(arrived * 1000 - trigger for arrived, trigger, _c, a in raw["rows"] if a)
    lag = lag_trend([w["t"] for w in windows], [w["lag"] for w in windows], rate)
    rss = rss_bound([w["t"] for w in windows], [w["rss_mb"] for w in windows], rss_growth)
    log_lines = [line for lines in watch.log[1:] for line in lines]
    busy = samples.cpu_s[n - 1] - samples.cpu_s[0]  # while sending
    drained = samples.cpu_s[n] - samples.cpu_s[0]  # until `processed` was read
    per_event = round(drained / raw["processed"] * 1e6, 1) if raw["processed"] else None
    failures = verdict(lag, rss, log_lines, raw["sent"], raw["processed"])
    return {
        "windows": windows,
        "summary": {
            "sent": raw["sent"],
            "processed": raw["processed"],
            "offered_per_second": round(raw["sent"] / max(raw["last"] - raw["first"], 1e-9), 1),
            "generator_max_lateness_ms": round(raw["lateness"] * 1000, 1),
            "drain_seconds": raw["drain_seconds"],
            "latency_ms": summary(latency),
            "action_latency_ms": summary(actions),
            "lag": lag,
            "rss": rss,
            "cpu_cores_mean": round(busy / t[n - 1], 3),
            "cpu_us_per_event": per_event,
            "log": {
                "errors": sum(log_level(line) == "error" for line in log_lines),
                "warnings": sum(log_level(line) == "warning" for line in log_lines),
                "lines": log_lines[:LOG_LINES_KEPT],
                "before_traffic": watch.log[0][:LOG_LINES_KEPT],
            },
        },
        "verdict": {"pass": not failures, "failures": failures},
    }


def by_window(
    rows: Sequence[tuple[float, int, int, bool]], bounds: Sequence[float]
) -> list[list[float]]:
    """Sorted latencies (ms) of the decisions whose trigger was sent in each
    window [bounds[k], bounds[k + 1]); rows as bench.pipeline's reader gives."""
    windows: list[list[float]] = [[] for _ in bounds[1:]]
    for arrived, trigger, _created, _action in rows:
        k = bisect.bisect_right(bounds, trigger / 1000) - 1
        if 0 <= k < len(windows):
            windows[k].append(arrived * 1000 - trigger)
    return [sorted(window) for window in windows]


def scheduled(when: float, first: float, rate: float, sent: int) -> int:
    """Events the generator's schedule had sent by `when` (it reports its
    worst lateness, so the schedule stands in for a count)."""
    return min(sent, max(0, math.ceil((when - first) * rate)))


def run(args: argparse.Namespace) -> dict:
    ctx = mp.get_context("spawn")
    started = time.time()
    tag = f"s{uuid.uuid4().hex[:6]}"
    items = soak_traffic(args.rate, args.minutes * 60, tag)
    result: dict = {
        "benchmark": "soak",
        "description": "sustained realistic traffic at a fixed rate: lag, RSS, log, latency",
        "params": {
            "minutes": args.minutes,
            "rate": args.rate,
            "rate_note": RATE_NOTE,
            "events": len(items),
            "subjects": len({item.key for item in items}),  # customers and anonymous visitors
            "chunk_seconds": CHUNK_S,
            "window_seconds": WINDOW_S,
            "partitions": PARTITIONS,
            "policy": str(POLICY.relative_to(REPO_ROOT)),
            "worker_env": args.worker_env,
            "lag_grows_when": (
                f"second-half slope > {LAG_SLOPE_SHARE:.0%} of the rate per second and "
                f"second-half max > {LAG_FLOOR_S:g} s of traffic"
            ),
            "rss_bounded_when": f"last third's max <= first third's max x {1 + args.rss_growth:g}",
        },
    }
    with tempfile.TemporaryDirectory(prefix="nudge-soak-") as tmp, broker(Path(tmp)) as bootstrap:
        print(f"broker at {bootstrap}; {RATE_NOTE}", flush=True)
        (worker,) = start_workers(bootstrap, Path(tmp), 1, args.worker_env)
        system = System(
            "nudge", worker.prefix, [worker.process.pid],
            [topic_name(worker.prefix, k) for k in ("actions", "suppressions")],
            metrics_urls=[f"{worker.url}/metrics"],
        )  # fmt: skip
        try:
            warm = run_trial(ctx, bootstrap, system, args.rate, WARM_UP_S)
            result["warm_up"] = {key: warm[key] for key in WARM_UP_FIGURES}
            print(f"warm-up: {render_trial(warm)}", flush=True)
            raw = soak(ctx, bootstrap, worker, system, items, args.rate, tag)
        finally:
            worker.stop()
            result["worker_log_tail"] = worker.tail(20)
    result.update(summarize(raw, args.rate, args.rss_growth))
    result["elapsed_seconds"] = round(time.time() - started)
    return result


# -- output ---------------------------------------------------------------------------------


def render_mark(samples: Samples, watch: Watch) -> str:
    """One progress line for the latest mark (latencies come at the end)."""
    seconds = samples.t[-1] - samples.t[-2]
    consumed = (samples.processed[-1] - samples.processed[-2]) / seconds
    cpu = (samples.cpu_s[-1] - samples.cpu_s[-2]) / seconds
    return (
        f"{samples.t[-1] - samples.t[0]:6.0f} s  consumed {consumed:6.0f}/s  lag "
        f"{_v(watch.lag[-1]):>6}  rss {samples.rss[-1] / 2**20:6.0f} MB  cpu {cpu:4.2f}  "
        f"log lines flagged {len(watch.log[-1])}"
    )


def render(result: dict) -> str:
    p, s, v = result["params"], result["summary"], result["verdict"]
    lat, act, lag, rss, log = s["latency_ms"], s["action_latency_ms"], s["lag"], s["rss"], s["log"]
    lines = [
        f"nudge soak: {p['minutes']:g} min at {p['rate']}/s, 1 worker, {p['partitions']} "
        f"partitions, {p['subjects']:,} fresh subjects",
        f"({p['rate_note']})",
        "",
        f"events: sent {s['sent']:,}, processed {s['processed']:,}, drained "
        f"{_v(s['drain_seconds'])} s after the last send; offered {s['offered_per_second']}/s, "
        f"generator late by at most {s['generator_max_lateness_ms']} ms",
        f"latency (event -> decision at a consumer): p50 {lat['p50']} p95 {lat['p95']} "
        f"p99 {lat['p99']} max {lat['max']} ms over {lat['count']:,} decisions; actions p50 "
        f"{act['p50']} p99 {act['p99']} ms",
        f"lag: max {_v(lag['max'])}, second half max {_v(lag['second_half_max'])} (floor "
        f"{lag['floor']}), slope {_v(lag['second_half_slope_per_s'])}/s (limit "
        f"{lag['slope_limit_per_s']}/s), last {_v(lag['last'])}",
        f"RSS: start {_v(rss['start_mb'])} MB, end {_v(rss['end_mb'])} MB, max "
        f"{_v(rss['max_mb'])} MB; thirds' max {_v(rss['first_third_max_mb'])} -> "
        f"{_v(rss['last_third_max_mb'])} MB ({_pct(rss['growth'])}, limit "
        f"{rss['growth_limit']:.0%}); last half {_v(rss['last_half_slope_mb_per_min'])} MB/min",
        f"CPU: {s['cpu_cores_mean']} cores mean, {_v(s['cpu_us_per_event'])} µs per event",
        f"worker log once traffic started: {log['errors']} errors, {log['warnings']} warnings "
        f"({len(log['before_traffic'])} flagged in start-up and warm-up, not judged)",
        *(f"    {line[:160]}" for line in log["lines"][:10]),
        "",
        f"{'t s':>6} {'offered':>7} {'consumed/s':>10} {'lag':>6} {'rss MB':>7} {'cpu':>5} "
        f"{'decided':>7} {'p50 ms':>7} {'p99 ms':>7} {'E':>3} {'W':>3} {'load':>5}",
    ]
    for w in result["windows"]:
        lines.append(
            f"{w['t']:>6.0f} {w['offered']:>7} {w['consumed_per_second']:>10.0f} "
            f"{_v(w['lag']):>6} {w['rss_mb']:>7.0f} {w['cpu_cores']:>5.2f} {w['decisions']:>7} "
            f"{_v(w['p50_ms']):>7} {_v(w['p99_ms']):>7} {w['log_errors']:>3} "
            f"{w['log_warnings']:>3} {w['load1']:>5.2f}"
        )
    lines.append("")
    lines += ["PASS"] if v["pass"] else [f"FAIL  {failure}" for failure in v["failures"]]
    return "\n".join(lines)


def _v(value: object) -> str:
    return "-" if value is None else str(value)


def _pct(share: float | None) -> str:
    return "-" if share is None else f"{share:+.0%}"


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser("bench.soak", __doc__, DEFAULT_OUT)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument(
        "--rate", type=int, default=DEFAULT_RATE, help="events/s (not 5,000: above)"
    )
    parser.add_argument(
        "--rss-growth",
        type=float,
        default=RSS_GROWTH,
        help="allowed growth of the last third's max RSS over the first third's (share)",
    )
    parser.add_argument(
        "--worker-env", action="append", default=[], metavar="K=V", help="extra worker variable"
    )
    args = parser.parse_args(argv)

    load_before = os.getloadavg()
    result = run(args)
    result["machine"] = machine_info(None, load_before)
    write_json(result, args.out)
    print()
    print(render(result))
    print(f"\nresult written to {args.out}")
    return 0 if result["verdict"]["pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
