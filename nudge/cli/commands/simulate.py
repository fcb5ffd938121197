"""`nudge simulate`: a simulated customer population as an event log or as live traffic.

The event log is JSON Lines, one `{"kind": ..., "event": {...}}` per line in
the order things happen: `kind` is an input topic kind (clickstream,
purchases, consent, preferences, identity, feedback), `actions` for the
decisions nudge took in-process, or `suppressions` for the holdout's (what
each would have been sent), so the log is a complete record a trainer can
learn from, uplift included. `nudge send`, `nudge replay` and `nudge train` read it.
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from nudge.errors import UserError

CATCH_UP_SECONDS = 10.0  # --react: how long to wait for the worker's last actions
# A log long enough for `nudge train`'s default split: a week held out after
# three weeks of training decisions. Live traffic wants a short, lively window.
LOG_DAYS, LIVE_DAYS = 28.0, 1.0
DAY_BAR = "{desc}: {percentage:3.0f}%|{bar}| {n:.1f}/{total:g} [{elapsed}<{remaining}{postfix}]"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "simulate",
        help="simulate customers: write an event log, or publish to Kafka (and react)",
        description=(
            "Simulate a population deciding with nudge in-process, and write the event log "
            "(--out FILE.jsonl) or publish its input events to Kafka (--kafka BOOTSTRAP). "
            "With --react, a live worker decides instead: its actions are read back from "
            "the actions topic and the simulated customers' feedback is published."
        ),
        epilog=(
            "A live worker judges event times against its own clock and suppresses triggers "
            "older than an action's expiry (12-48 h), so with --kafka the simulated window "
            "ends now; keep --days short (the default, 1) for lively decisions."
        ),
    )
    parser.add_argument("--customers", type=int, default=200, help="population size")
    parser.add_argument(
        "--days",
        type=float,
        default=None,
        help=f"simulated days (default: {LOG_DAYS:g} for --out, {LIVE_DAYS:g} for --kafka)",
    )
    parser.add_argument("--seed", type=int, default=7, help="same seed, same world and log")
    parser.add_argument(
        "--start",
        type=_date,
        default=None,
        help="first day, YYYY-MM-DD (default: 2026-03-02 for --out, now - days for --kafka)",
    )
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--out", type=Path, help="write the event log here (JSON Lines)")
    target.add_argument("--kafka", metavar="BOOTSTRAP", help="publish to this Kafka cluster")
    parser.add_argument("--prefix", default="nudge.", help="topic prefix (with --kafka)")
    parser.add_argument(
        "--rate", type=float, default=0.0, help="events per second (with --kafka; 0: unpaced)"
    )
    parser.add_argument(
        "--react",
        action="store_true",
        help="(with --kafka) answer a live worker's actions with simulated feedback",
    )
    parser.add_argument(
        "--experiments",
        type=Path,
        help="(with --out) run these experiments (e.g. config/experiments.toml; default: none)",
    )
    parser.add_argument(
        "--policy",
        type=Path,
        help="(with --out) nudge's contact policy (default: config/policy.toml); a larger"
        " holdout share gives an uplift model more to learn from",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.days is None:
        args.days = LOG_DAYS if args.out else LIVE_DAYS
    if args.customers < 1 or args.days <= 0:
        raise UserError("--customers and --days must be positive")
    if args.kafka is None and (args.react or args.rate):
        raise UserError("--react and --rate need --kafka")
    if args.experiments is not None and args.out is None:
        raise UserError("--experiments needs --out (a live worker reads NUDGE_EXPERIMENTS)")
    if args.rate < 0:
        raise UserError("--rate must be >= 0")
    from nudge.lab.simulation import START, Simulation

    start = args.start
    if start is None:
        start = START if args.out else _now() - timedelta(days=args.days)
    simulation = Simulation(args.customers, args.days, args.seed, start=start)
    if args.out is not None:
        return _write(simulation, args)
    return _publish(simulation, args)


def _write(simulation: Any, args: argparse.Namespace) -> int:
    from nudge.lab.baselines import POLICY, NudgePolicy
    from nudge.schemas.eventlog import write_log

    args.out.parent.mkdir(parents=True, exist_ok=True)
    with _DayBar(simulation, args) as bar:
        policy = NudgePolicy(
            policy=args.policy or POLICY, log_would_be=True, experiments=args.experiments
        )
        count = write_log(bar.follow(simulation.run(policy)), args.out)
    print(f"wrote {count:,} lines to {args.out}")
    return 0


def _publish(simulation: Any, args: argparse.Namespace) -> int:
    from nudge.lab.baselines import NudgePolicy
    from nudge.testing import EventPublisher

    _require_topics(args.kafka, args.prefix)
    publisher = EventPublisher(args.kafka, args.prefix)
    live = _LivePolicy(publisher, args.kafka, args.prefix, args.rate) if args.react else None
    pace = _Pace(args.rate)
    sent = 0
    try:
        with _DayBar(simulation, args) as bar:
            for logged in bar.follow(simulation.run(live or NudgePolicy())):
                if logged.kind == "actions":
                    continue  # decided in-process; a live worker makes its own
                if live is None:  # with --react the live policy publishes as it decides
                    pace.wait()
                    publisher.send(logged.kind, logged.event)
                sent += 1
            if live is not None:
                sent += live.catch_up(simulation, CATCH_UP_SECONDS)
        publisher.flush()
    finally:
        publisher.close()
        if live is not None:
            live.close()
    answered = f", answered {live.answered:,} live actions" if live else ""
    print(f"published {sent:,} events to {args.kafka} (prefix {args.prefix}){answered}")
    return 0


def _require_topics(bootstrap: str, prefix: str) -> None:
    """Fail fast, not after a producer's metadata timeout, when nobody created the topics."""
    from kafka import KafkaConsumer

    from nudge.streams.topics import INPUT_KINDS, topic_name

    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        existing = consumer.topics()
    finally:
        consumer.close()
    missing = [topic_name(prefix, kind) for kind in INPUT_KINDS]
    missing = [topic for topic in missing if topic not in existing]
    if missing:
        raise UserError(
            f"topics missing on {bootstrap}: {', '.join(missing)}; a nudge worker with "
            f"NUDGE_TOPIC_PREFIX={prefix} creates them when it starts"
        )


class _LivePolicy:
    """A DecisionPolicy backed by a live worker: `decide` publishes the event
    and hands back whatever actions the worker has published since, with
    their times moved onto the simulation's clock."""

    name = "live"

    def __init__(self, publisher: Any, bootstrap: str, prefix: str, rate: float = 0.0) -> None:
        from kafka import KafkaConsumer, TopicPartition

        from nudge.streams.topics import topic_name

        self.publisher = publisher
        self.pace = _Pace(rate)
        self.answered = 0
        self.consumer = KafkaConsumer(
            bootstrap_servers=bootstrap, enable_auto_commit=False, consumer_timeout_ms=100
        )
        topic = topic_name(prefix, "actions")
        partitions = self.consumer.partitions_for_topic(topic)
        if not partitions:
            raise UserError(f"topic {topic} does not exist: is a nudge worker running?")
        self.consumer.assign([TopicPartition(topic, p) for p in partitions])
        self.consumer.seek_to_end()  # only actions decided from now on

    def decide(self, kind: str, event: dict[str, Any], now: datetime) -> list[dict[str, Any]]:
        self.pace.wait()
        self.publisher.send(kind, event)
        return [_onto_clock(action, now) for action in self._poll(0)]

    def catch_up(self, simulation: Any, seconds: float) -> int:
        """After the last event: answer the actions still arriving, for a bounded time."""
        self.publisher.flush()
        deadline = time.monotonic() + seconds
        sent = 0
        while time.monotonic() < deadline:
            now = datetime.fromtimestamp(simulation.end, UTC)
            for action in self._poll(500):
                for reaction in simulation.respond(_onto_clock(action, now)):
                    if datetime.fromisoformat(reaction.event["ts"]) <= _now() + timedelta(hours=1):
                        self.publisher.send(reaction.kind, reaction.event)
                        sent += 1
        return sent

    def _poll(self, timeout_ms: int) -> list[dict[str, Any]]:
        import json

        batch = self.consumer.poll(timeout_ms=timeout_ms)
        actions = [json.loads(r.value) for records in batch.values() for r in records]
        self.answered += len(actions)
        return actions

    def close(self) -> None:
        self.consumer.close()


def _onto_clock(action: dict[str, Any], now: datetime) -> dict[str, Any]:
    """Shift an action's times so it counts as decided at simulated `now`."""
    shift = now - datetime.fromisoformat(action["decided_at"])
    for key in ("decided_at", "send_after", "expires_at"):
        if action.get(key):
            moved = datetime.fromisoformat(action[key]) + shift
            action[key] = moved.isoformat().replace("+00:00", "Z")
    return action


class _Pace:
    """Sleeps so that calls to `wait` happen at most `rate` times a second."""

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self.next = time.monotonic()

    def wait(self) -> None:
        if not self.interval:
            return
        self.next = max(self.next + self.interval, time.monotonic() - 1.0)
        delay = self.next - time.monotonic()
        if delay > 0:
            time.sleep(delay)


class _DayBar:
    """A progress bar in simulated days, fed by the records flowing past."""

    def __init__(self, simulation: Any, args: argparse.Namespace) -> None:
        from tqdm import tqdm

        self.simulation = simulation
        self.bar = tqdm(
            total=args.days, disable=args.quiet, bar_format=DAY_BAR, desc="simulated days"
        )

    def follow(self, records: Any) -> Any:
        from nudge.policy.clock import DAY

        for n, record in enumerate(records):
            if n % 1000 == 0:
                done = max(0.0, (self.simulation.clock - self.simulation.start) / DAY)
                self.bar.set_postfix(events=f"{n:,}", refresh=False)
                self.bar.update(min(done, self.bar.total) - self.bar.n)
            yield record
        self.bar.update(self.bar.total - self.bar.n)

    def __enter__(self) -> _DayBar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.close()


def _date(text: str) -> datetime:
    try:
        return datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)
