"""`nudge replay`: what a catalog and policy would have decided on an event log, offline."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import IO

from nudge.errors import UserError

#: More rejected events than this share of the log fails the replay.
MAX_REJECTED_SHARE = 0.5

EPILOG = """\
examples:
  nudge replay last-week.jsonl --policy new-policy.toml
  nudge replay events.jsonl --catalog config/catalog.toml --json
  nudge replay events.jsonl --state rocksdb:.data/replay --out decisions.jsonl

The log is JSON Lines of {"kind": <input topic kind>, "event": {...}} (what
nudge simulate writes; nudge tail --log exports live traffic in it), bare
events, or a JSON array. Each customer's events must be in the order they
happened. Lines of other kinds (e.g. logged actions) are skipped.

--clock event decides as of each event's own time, as a worker with
NUDGE_CLOCK=event does: on the same events both decide the same. --clock
recorded decides at each line's "at" (when the worker processed it, e.g. the
Kafka time nudge tail --log records), or at the event time where a line has
none. --state rocksdb:DIR keeps the state in local RocksDB files: a second
replay continues from it.

Event times are judged against the log's clock (the newest event time so far),
not today's, so a log of any age replays. The exit status is 1 when more than
half of the events were rejected (deadletter reasons on stderr).
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "replay",
        help="run the decision engine offline over an event log; report what it would send",
        description=(
            "Replay an event log through the worker's decision engine, without Kafka, and "
            "report what would have been sent and suppressed, by action, channel and reason."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("events", metavar="EVENTS", help="the event log (a file, or - for stdin)")
    parser.add_argument("--catalog", type=Path, help="action catalog (default: $NUDGE_CATALOG)")
    parser.add_argument("--policy", type=Path, help="contact policy (default: $NUDGE_POLICY)")
    parser.add_argument(
        "--model-dir",
        type=Path,
        help="score with the model CURRENT names there (default: the heuristic scorer)",
    )
    parser.add_argument(
        "--state", default="memory", metavar="memory|rocksdb:DIR", help="where state lives"
    )
    parser.add_argument("--clock", choices=("event", "recorded"), default="event")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--out", type=Path, help="write every decision here (JSON Lines)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from nudge.replay import Replay, open_tables

    engine = _engine(args)
    tables = open_tables(args.state)
    out = args.out.open("wb") if args.out else None
    try:
        with _open(args.events) as stream:
            replay = Replay(engine, tables, args.clock)
            for decision in replay.run(_progress(stream, args)):
                if out is not None:
                    out.write(_encode(decision) + b"\n")
    finally:
        tables.close()
        if out is not None:
            out.close()
    report = replay.report.as_json()
    report.update(source=args.events, clock=args.clock, state=args.state)
    print(json.dumps(report, indent=2) if args.json else render(report))
    return _verdict(report)


def _verdict(report: dict) -> int:
    """1, with a message, when most of the log was rejected: the report then
    describes the few events that passed, not the log, and scripts must see it."""
    rejected = sum(report["deadletters"].values())
    if rejected <= MAX_REJECTED_SHARE * report["events"]:
        return 0
    reasons = ", ".join(f"{reason} {n:,}" for reason, n in sorted(report["deadletters"].items()))
    print(
        f"nudge replay: {rejected:,} of {report['events']:,} events"
        f" ({rejected / report['events']:.0%}) were rejected as the worker would reject them"
        f" ({reasons}); the report does not represent this log. Check its format and times.",
        file=sys.stderr,
    )
    return 1


def _engine(args: argparse.Namespace):
    from nudge.policy.config import load_catalog, load_policy
    from nudge.policy.engine import Engine
    from nudge.streams.settings import Settings

    settings = Settings()
    policy = load_policy(args.policy or settings.policy_path)
    scorer = None
    if args.model_dir is not None:
        from nudge.models.serving import ScorerHolder

        scorer = ScorerHolder(args.model_dir, policy)
    return Engine(load_catalog(args.catalog or settings.catalog_path), policy, scorer)


def _open(name: str) -> IO[bytes]:
    if name == "-":
        return sys.stdin.buffer
    path = Path(name)
    if not path.is_file():
        raise UserError(f"{name}: no such file")
    return path.open("rb")


def _progress(stream: IO[bytes], args: argparse.Namespace):
    from tqdm import tqdm

    from nudge.schemas import eventlog

    total = None
    if stream is not sys.stdin.buffer:
        total = sum(chunk.count(b"\n") for chunk in iter(lambda: stream.read(1 << 20), b""))
        stream.seek(0)
    items = eventlog.read(stream)
    return tqdm(items, total=total, unit=" lines", disable=args.quiet or None, leave=False)


def _encode(decision) -> bytes:
    from nudge.schemas.codec import encode

    return encode(decision)


def render(report: dict) -> str:
    """The report as tables for people."""
    lines = [
        f"replayed {report['events']:,} events from {report['source']}"
        f" (clock {report['clock']}, state {report['state']})",
    ]
    if report["skipped"]:
        skipped = ", ".join(f"{n:,} {kind}" for kind, n in sorted(report["skipped"].items()))
        lines.append(f"skipped lines of other kinds: {skipped}")
    sent = sum(row["count"] for row in report["actions"])
    lines.append(
        f"decisions: {report['decisions']:,}"
        f"  (sent {sent:,}, suppressed {report['suppressions']:,})"
    )
    lines.append(
        f"re-issued: {report['reissued']:,}"
        "  (repeated triggers whose action this replay had not sent; not counted as sent)"
    )
    lines += ["", "would send                      channel      count"]
    lines += [
        f"  {r['action_id']:<30}{r['channel']:<10}{r['count']:>8,}" for r in report["actions"]
    ]
    if not report["actions"]:
        lines.append("  (nothing)")
    lines += ["", "suppressed, by reason                        count"]
    reasons = report["suppression_reasons"].items()
    lines += [f"  {reason:<40}{n:>8,}" for reason, n in reasons]
    if not reasons:
        lines.append("  (nothing)")
    if report["ruled_out"]:
        lines += ["", "candidates ruled out         reason            count"]
        lines += [
            f"  {r['action_id']:<27}{r['reason']:<19}{r['count']:>6,}" for r in report["ruled_out"]
        ]
    if report["deadletters"]:
        dead = ", ".join(f"{n:,} {reason}" for reason, n in sorted(report["deadletters"].items()))
        lines += ["", f"rejected as the worker would (deadletter): {dead}"]
    if report["duplicates"]:
        lines.append(f"duplicates skipped: {report['duplicates']:,}")
    if report["reissues_withheld"]:
        lines.append(f"re-issues withheld (consent): {report['reissues_withheld']:,}")
    if report["still_held"]:
        lines.append(
            f"people with actions still held at the end (due later): {report['still_held']:,}"
        )
    return "\n".join(lines)
