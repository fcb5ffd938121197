"""Benchmark of the pure engine: decisions per second and latency, without Kafka.

    python -m bench.engine [--customers 5000 --events 200000 --seed 7
                            --out bench/results/engine.json]

nudge.traffic's seeded generator writes a realistic mix of input messages (JSON
bytes, keyed by subject id, event times advancing over a fortnight) for many
customers: browsing sessions concentrated on a few categories per person, carts
and checkouts, purchases, consent grants and revocations, preferences with
quiet hours in several time zones, channel feedback of every kind, anonymous
visitors who later log in, a few erasures and at-least-once redeliveries.

The messages go through `policy.processor.Processor` exactly as the Faust agent
calls it (streams/app.py): the state loader reads one dict per table holding
bytes, the writes go back as bytes (so decoding and encoding state is timed),
identity merges are fed back in as the worker's internal topic would, and
`now` is the event time + 50 ms. Publishing to Kafka is not included.

Two phases, each timed per message with `time.perf_counter_ns`:

1. mixed: the realistic stream above (after a warm-up). Most messages are not
   triggers, so it reports messages/s, and latency per message and per
   decision (a message that produced an action or a suppression).
2. triggers: only trigger events (session starts and product views in their
   favourite category) of customers with marketing consent, on the state the
   mixed phase left. Nearly every message is a decision, so this is the
   throughput the 20,000 decisions/s target refers to.

Targets (one core, no Kafka): >= 20,000 decisions/s and p99 decision latency < 1 ms.
"""

from __future__ import annotations

import collections
import cProfile
import gc
import io
import pstats
import random
import sys
import time
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec

from bench.common import (
    CATALOG,
    POLICY,
    REPO_ROOT,
    add_pinning,
    default_out,
    latency_summary,
    machine_info,
    percentile,
    pin_to_one_core,
    rate,
    write_json,
)
from bench.common import parser as bench_parser
from nudge.policy.clock import DAY
from nudge.policy.config import load_catalog, load_policy
from nudge.policy.engine import Engine
from nudge.policy.processor import MERGE_KIND, Processor
from nudge.policy.state import TABLES, decode_state
from nudge.schemas.outputs import Action, Suppression
from nudge.traffic import CATEGORIES, START, Generator, Raw, iso, product_id

DEFAULT_OUT = default_out("engine")  # published figures: --out bench/results/...

TARGET_DECISIONS_PER_SECOND = 20_000
TARGET_P99_US = 1_000.0

PROCESSING_DELAY = timedelta(milliseconds=50)  # now = event time + 50 ms
PARTITIONS = 8


@dataclass(slots=True)
class Message:
    """One input message as the agent sees it."""

    kind: str
    key: bytes
    value: bytes
    now: datetime
    source: tuple[str, int, int]


def generate_messages(customers: int, events: int, seed: int) -> list[Message]:
    """nudge.traffic's realistic mix, in event-time order, as the agent receives it."""
    return encode_messages(Generator(customers, events, seed).generate())


def encode_messages(raw: Iterable[Raw]) -> list[Message]:
    """JSON bytes with RFC 3339 times, keyed, with a (topic, partition, offset) source."""
    encoder = msgspec.json.Encoder()
    offsets: collections.Counter = collections.Counter()
    messages = []
    for r in raw:
        body = dict(r.body)
        body["ts"] = iso(r.ts)
        if isinstance(body.get("snooze_until"), float):
            body["snooze_until"] = iso(body["snooze_until"])
        key = r.key.encode()
        partition = zlib.crc32(key) % PARTITIONS
        topic = f"nudge.{r.kind}"
        offset = offsets[(topic, partition)]
        offsets[(topic, partition)] += 1
        now = datetime.fromtimestamp(r.ts, UTC) + PROCESSING_DELAY
        messages.append(Message(r.kind, key, encoder.encode(body), now, (topic, partition, offset)))
    return messages


def trigger_messages(
    tables: dict[str, dict[bytes, bytes]], after: float, count: int, seed: int
) -> list[Message]:
    """Only triggers, for customers with marketing consent on some channel:
    session starts, and product views in the person's strongest category."""
    rng = random.Random(seed * 7919 + 1)
    eligible: list[tuple[str, str | None]] = []
    for key, raw_consent in sorted(tables["consent"].items()):
        state = decode_state({"consent": raw_consent, "recency": tables["recency"].get(key)})
        entries = state.consent.entries
        overall = entries.get("all:marketing")
        if overall is not None and overall.status == "revoked":
            continue
        if any(k.endswith(":marketing") and e.status == "granted" for k, e in entries.items()):
            affinity = state.recency.affinity
            top = max(affinity, key=affinity.__getitem__) if affinity else None
            eligible.append((key.decode(), top))
    if not eligible:
        return []
    products = {c: [product_id(c, n) for n in range(5)] for c in CATEGORIES}
    raw = []
    t = after + 60.0
    gap = 2 * DAY / max(count, 1)  # spread over two days
    for i in range(count):
        customer, top = rng.choice(eligible)
        t += rng.expovariate(1 / gap)
        body: dict = {"event_id": f"tr-{seed}-{i:08d}", "customer_id": customer, "ts": t}
        if top is None or rng.random() < 0.4:
            body.update(type="session_start", page="/")
        else:
            body.update(
                type="product_view", product_id=rng.choice(products[top]), category=top, price=19.9
            )
        raw.append(Raw(t, i, "clickstream", customer, body))
    return encode_messages(raw)


# -- running and measuring -------------------------------------------------------------------


@dataclass
class PhaseStats:
    """What one phase measured; latencies in nanoseconds."""

    name: str
    latencies: list[int] = field(default_factory=list)
    decision_latencies: list[int] = field(default_factory=list)
    by_type: dict[str, list[int]] = field(default_factory=lambda: collections.defaultdict(list))
    wall_ns: int = 0
    cpu_ns: int = 0  # process CPU time: what a busy neighbour on the core cannot inflate
    messages: int = 0
    merges: int = 0
    actions: collections.Counter = field(default_factory=collections.Counter)
    channels: collections.Counter = field(default_factory=collections.Counter)
    suppressions: int = 0
    suppression_reasons: collections.Counter = field(default_factory=collections.Counter)
    deadletters: collections.Counter = field(default_factory=collections.Counter)
    duplicates: int = 0
    mix: collections.Counter = field(default_factory=collections.Counter)

    @property
    def decisions(self) -> int:
        return sum(self.actions.values()) + self.suppressions

    def summary(self) -> dict:
        seconds, cpu, busy = self.wall_ns / 1e9, self.cpu_ns / 1e9, sum(self.latencies) / 1e9
        decisions = self.decisions
        return {
            "messages": self.messages,
            "merges_fed_back": self.merges,
            "decisions": decisions,
            "decision_share": round(decisions / self.messages, 4) if self.messages else 0.0,
            "actions": sum(self.actions.values()),
            "suppressions": self.suppressions,
            "duplicates": self.duplicates,
            "deadletters": sum(self.deadletters.values()),
            "deadletter_reasons": dict(self.deadletters),
            "wall_seconds": round(seconds, 4),
            "cpu_seconds": round(cpu, 4),
            "messages_per_second": rate(self.messages, seconds),
            "decisions_per_second": rate(decisions, seconds),
            "decisions_per_cpu_second": rate(decisions, cpu),
            "messages_per_busy_second": rate(self.messages, busy),
            "latency_us": latency_summary(self.latencies),
            "decision_latency_us": latency_summary(self.decision_latencies),
            "latency_by_type_us": {
                kind: {"count": len(values), **latency_summary(values, ("p50", "p99"))}
                for kind, values in sorted(self.by_type.items())
            },
            "actions_by_action": dict(self.actions.most_common()),
            "actions_by_channel": dict(self.channels.most_common()),
            "suppression_reasons": dict(self.suppression_reasons.most_common()),
            "input_mix": {k: round(v / self.messages, 4) for k, v in self.mix.most_common()}
            if self.messages
            else {},
        }


def new_tables() -> dict[str, dict[bytes, bytes]]:
    return {name: {} for name in TABLES}


def run_phase(
    name: str,
    messages: Sequence[Message],
    processor: Processor,
    tables: dict[str, dict[bytes, bytes]],
    warmup: int = 0,
) -> PhaseStats:
    """Process every message like the agent does; time all but the first `warmup`.

    Identity merges the processor emits are processed right after the message
    that produced them, as the worker would consume them from its internal topic."""
    stats = PhaseStats(name)
    perf = time.perf_counter_ns
    process = processor.process

    def load(subject: str) -> dict[str, bytes | None]:
        subject_key = subject.encode()
        return {table: tables[table].get(subject_key) for table in TABLES}

    pending: collections.deque[Message] = collections.deque()
    feed = iter(messages)
    index = 0
    started = cpu_started = 0
    cpu = time.process_time_ns
    while True:
        if pending:
            message = pending.popleft()
        else:
            message = next(feed, None)
            if message is None:
                break
            index += 1
            if index == warmup + 1:
                started, cpu_started = perf(), cpu()
        t0 = perf()
        result = process(
            message.kind, message.key, message.value, message.source, load, message.now
        )
        if result.subject is not None:
            subject_key = result.subject.encode()
            for table, data in result.writes.items():
                if data is None:
                    tables[table].pop(subject_key, None)
                else:
                    tables[table][subject_key] = data
        elapsed = perf() - t0
        for emit in result.emits:
            if emit.kind == MERGE_KIND:
                pending.append(
                    Message(
                        MERGE_KIND,
                        emit.key or b"",
                        emit.value,
                        message.now,
                        ("nudge.identity-merges", 0, 0),
                    )
                )
        if index <= warmup:
            continue
        stats.messages += 1
        stats.latencies.append(elapsed)
        stats.mix[message.kind] += 1
        stats.by_type[result.event_type or "invalid"].append(elapsed)
        if message.kind == MERGE_KIND:
            stats.merges += 1
        if result.invalid_reason is not None:
            stats.deadletters[result.invalid_reason] += 1
            continue
        if result.duplicate and message.kind != MERGE_KIND:
            stats.duplicates += 1
        decision = result.outcome.decision if result.outcome else None
        if decision is None:
            continue
        stats.decision_latencies.append(elapsed)
        if isinstance(decision, Action):
            stats.actions[decision.action_id] += 1
            stats.channels[decision.channel] += 1
        elif isinstance(decision, Suppression):
            stats.suppressions += 1
            stats.suppression_reasons.update(decision.reasons)
    if started:
        stats.wall_ns, stats.cpu_ns = perf() - started, cpu() - cpu_started
    return stats


def state_sizes(tables: dict[str, dict[bytes, bytes]]) -> dict:
    """Encoded bytes per subject (all four tables), customers and anonymous visitors."""
    per_subject: collections.Counter = collections.Counter()
    per_table = {}
    for table, rows in tables.items():
        per_table[table] = round(sum(map(len, rows.values())) / len(rows), 1) if rows else 0.0
        for key, value in rows.items():
            per_subject[key] += len(value)
    customers = sorted(v for k, v in per_subject.items() if k.startswith(b"cust-"))
    return {
        "subjects": len(per_subject),
        "customers": len(customers),
        "mean_bytes_per_customer": round(sum(customers) / len(customers), 1) if customers else 0,
        "p99_bytes_per_customer": percentile(customers, 99) if customers else 0,
        "max_bytes_per_customer": max(customers, default=0),
        "mean_bytes_per_row_by_table": per_table,
    }


def build_processor() -> Processor:
    return Processor(Engine(load_catalog(CATALOG), load_policy(POLICY)))


def run_benchmark(
    customers: int, events: int, seed: int, trigger_events: int, warmup: int | None
) -> tuple[dict, list[Message], list[Message]]:
    """Generate, run both phases; returns the result dict (without machine info)
    and the two streams (for profiling)."""
    began = time.perf_counter()
    messages = generate_messages(customers, events, seed)
    generated = time.perf_counter() - began
    warmup = min(len(messages) // 10, 10_000) if warmup is None else warmup
    processor = build_processor()
    tables = new_tables()
    gc.collect()
    gc.freeze()  # the generated stream is harness data: keep it out of the worker's GC work
    mixed = run_phase("mixed", messages, processor, tables, warmup=warmup)
    sizes = state_sizes(tables)
    last_ts = max((m.now for m in messages), default=START).timestamp()
    triggers = trigger_messages(tables, last_ts, trigger_events, seed)
    gc.collect()
    gc.freeze()
    trigger_stats = run_phase("triggers", triggers, processor, tables)
    gc.unfreeze()
    mixed_summary = mixed.summary()
    trigger_summary = trigger_stats.summary()
    checks = {
        "trigger_decisions_per_second": {
            "target": f">= {TARGET_DECISIONS_PER_SECOND}",
            "value": trigger_summary["decisions_per_second"],
            "pass": trigger_summary["decisions_per_second"] >= TARGET_DECISIONS_PER_SECOND,
        },
        "trigger_decision_p99_us": p99_check(trigger_summary),
        "mixed_decision_p99_us": p99_check(mixed_summary),
    }
    result = {
        "benchmark": "engine",
        "description": "policy.processor.Processor on in-memory byte tables, no Kafka",
        "params": {
            "customers": customers,
            "events": events,
            "seed": seed,
            "trigger_events": trigger_events,
            "warmup_messages": warmup,
            "now": "event ts + 50 ms",
            "catalog": str(CATALOG.relative_to(REPO_ROOT)),
            "policy": str(POLICY.relative_to(REPO_ROOT)),
            "generation_seconds": round(generated, 2),
        },
        "mixed": mixed_summary,
        "triggers": trigger_summary,
        "state_size": sizes,
        "targets": checks,
        "pass": all(check["pass"] for check in checks.values()),
    }
    return result, messages, triggers


def p99_check(summary: dict) -> dict:
    p99 = summary["decision_latency_us"]["p99"]
    return {
        "target": f"< {TARGET_P99_US:g}",
        "value": p99,
        "pass": p99 is not None and p99 < TARGET_P99_US,
    }


def profile(
    messages: Sequence[Message], triggers: Sequence[Message], top: int = 15
) -> tuple[str, list[dict]]:
    """Both phases again on fresh tables under cProfile: the top functions."""
    processor = build_processor()
    tables = new_tables()
    profiler = cProfile.Profile()
    profiler.enable()
    run_phase("profile-mixed", messages, processor, tables)
    run_phase("profile-triggers", triggers, processor, tables)
    profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)
    rows = []
    for (filename, line, function), (_cc, calls, tottime, cumtime, _callers) in sorted(
        stats.stats.items(), key=lambda item: item[1][2], reverse=True
    )[:top]:
        where = Path(filename)
        if REPO_ROOT in where.parents:
            where = where.relative_to(REPO_ROOT)
        rows.append(
            {
                "function": f"{where}:{line}({function})",
                "calls": calls,
                "tottime_s": round(tottime, 4),
                "cumtime_s": round(cumtime, 4),
            }
        )
    return out.getvalue(), rows


def render(result: dict) -> str:
    """A readable table of the figures."""
    lines = []
    params, machine = result["params"], result.get("machine", {})
    lines.append(
        f"nudge engine benchmark: {params['customers']} customers, {params['events']} events, "
        f"seed {params['seed']}, warm-up {params['warmup_messages']} messages"
    )
    if machine:
        lines.append(
            f"{machine['cpu_model']}, {machine['nproc']} CPUs, pinned to core "
            f"{machine['pinned_core']}, Python {machine['python']}"
        )
    header = f"{'':32}{'mixed stream':>16}{'triggers only':>16}"
    lines += ["", header, "-" * len(header)]
    mixed, trig = result["mixed"], result["triggers"]

    def row(label: str, a: object, b: object) -> None:
        lines.append(f"{label:32}{a!s:>16}{b!s:>16}")

    row("messages", mixed["messages"], trig["messages"])
    row(
        "decisions (share)",
        f"{mixed['decisions']} ({mixed['decision_share']:.0%})",
        f"{trig['decisions']} ({trig['decision_share']:.0%})",
    )
    row("  actions", mixed["actions"], trig["actions"])
    row("  suppressions", mixed["suppressions"], trig["suppressions"])
    row(
        "duplicates / deadletters",
        f"{mixed['duplicates']} / {mixed['deadletters']}",
        f"{trig['duplicates']} / {trig['deadletters']}",
    )
    row("messages/s", f"{mixed['messages_per_second']:,.0f}", f"{trig['messages_per_second']:,.0f}")
    row(
        "decisions/s",
        f"{mixed['decisions_per_second']:,.0f}",
        f"{trig['decisions_per_second']:,.0f}",
    )
    row(
        "decisions per CPU second",
        f"{mixed['decisions_per_cpu_second']:,.0f}",
        f"{trig['decisions_per_cpu_second']:,.0f}",
    )
    for label, key in (("per message", "latency_us"), ("per decision", "decision_latency_us")):
        for point in ("p50", "p95", "p99", "max"):
            row(f"latency {label} {point} (µs)", mixed[key][point], trig[key][point])
    lines.append("")
    lines.append("latency by input type, mixed stream (p50 / p99 µs):")
    for kind, figures in mixed["latency_by_type_us"].items():
        lines.append(f"  {kind:20}{figures['count']:>8}  {figures['p50']:>7} / {figures['p99']}")
    lines.append(
        "actions (mixed): " + ", ".join(f"{k} {v}" for k, v in mixed["actions_by_action"].items())
    )
    lines.append(
        "suppression reasons (mixed): "
        + ", ".join(f"{k} {v}" for k, v in mixed["suppression_reasons"].items())
    )
    lines.append(
        "suppression reasons (triggers): "
        + ", ".join(f"{k} {v}" for k, v in trig["suppression_reasons"].items())
    )
    sizes = result["state_size"]
    lines.append(
        f"state per customer: mean {sizes['mean_bytes_per_customer']} B, "
        f"p99 {sizes['p99_bytes_per_customer']:.0f} B, max {sizes['max_bytes_per_customer']} B "
        f"({sizes['customers']} customers, {sizes['subjects']} subjects)"
    )
    lines.append("")
    for name, check in result["targets"].items():
        verdict = "PASS" if check["pass"] else "FAIL"
        value = "n/a" if check["value"] is None else f"{check['value']:,}"
        lines.append(f"{verdict}  {name}: {value} (target {check['target']})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser("bench.engine", __doc__, DEFAULT_OUT)
    parser.add_argument("--customers", type=int, default=5000)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--trigger-events",
        type=int,
        default=None,
        help="messages in the triggers-only phase (default: events / 2)",
    )
    parser.add_argument(
        "--warmup",
        type=int,
        default=None,
        help="untimed first messages (default: min(10%%, 10000))",
    )
    add_pinning(parser)
    parser.add_argument(
        "--profile", action="store_true", help="afterwards, rerun both phases under cProfile"
    )
    parser.add_argument("--quiet", action="store_true", help="no table on stdout")
    args = parser.parse_args(argv)

    pinned = None if args.no_pin else pin_to_one_core(args.core)
    trigger_events = args.events // 2 if args.trigger_events is None else args.trigger_events
    result, messages, triggers = run_benchmark(
        args.customers, args.events, args.seed, trigger_events, args.warmup
    )
    result["machine"] = machine_info(pinned)
    if args.profile:
        text, rows = profile(messages, triggers)
        result["profile_top_tottime"] = rows
        if not args.quiet:
            print(text)
    write_json(result, args.out)
    if not args.quiet:
        print(render(result))
        print(f"\nresult written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
