"""`nudge experiments report LOG`: what each experiment arm adds over its holdout."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nudge.schemas.eventlog import LoggedEvent

EPILOG = """\
examples:
  nudge simulate --out run.jsonl --experiments config/experiments.toml
  nudge experiments report run.jsonl
  nudge tail actions suppressions purchases identity --from-beginning --log > live.jsonl
  nudge experiments report live.jsonl --json

The log is JSON Lines of {"kind", "event"} (what nudge simulate --out writes;
nudge tail --log exports live topics in it) with the decisions (actions, and
the holdout's suppressions that name what would have been sent), purchases
and identity events. A person counts from their first decision that sends
marketing or, in the holdout, would have; their orders after it are their
conversions. Each arm is compared with its own holdout: incremental
conversions = (orders per treated person - orders per holdout person) x
treated people, with a normal confidence interval. Rows whose sample cannot
tell the arm from its holdout say so. People in no experiment are the row
"- / -".
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "experiments",
        help="read out experiments: per arm, conversions and what the arm adds over its holdout",
        description="Experiment readouts (config/experiments.toml defines the experiments).",
    )
    commands = parser.add_subparsers(dest="experiments_command", required=True, metavar="COMMAND")
    report = commands.add_parser(
        "report",
        help="per arm: people, messages, conversions, incremental conversions with an interval",
        description="Read an event log and report every experiment arm against its holdout.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    report.add_argument("log", metavar="LOG", help="the event log (a file, or - for stdin)")
    report.add_argument(
        "--confidence", type=_confidence, default=0.95, help="of the intervals (default 0.95)"
    )
    report.add_argument("--json", action="store_true", help="print the rows as JSON")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from nudge.lab.readout import read

    skipped: list[str] = []
    if args.log == "-":
        readout = read(_records(sys.stdin.buffer, skipped))
    else:
        with Path(args.log).open("rb") as stream:
            readout = read(_records(stream, skipped))
    rows = [row.as_dict() for row in readout.report(args.confidence)]
    if args.json:
        print(json.dumps({"arms": rows, "unreadable_lines": len(skipped)}, indent=2))
    else:
        print(render(rows))
    for problem in skipped[:5]:
        print(f"skipped {problem}", file=sys.stderr)
    if not rows:
        print("no decisions in the log: nothing to report", file=sys.stderr)
        return 1
    return 0


def _records(stream: Any, skipped: list[str]) -> Iterator[LoggedEvent]:
    from nudge.schemas.eventlog import Unreadable, read

    for item in read(stream):
        if isinstance(item, Unreadable):
            skipped.append(f"line {item.line}: {item.error}")
            continue
        yield item


def render(rows: list[dict[str, Any]]) -> str:
    """A table, one line per arm, then the notes."""
    percent = f"{rows[0]['confidence']:.0%}" if rows else "95%"
    header = (
        f"{'experiment':<16} {'arm':<12} {'people':>7} {'messages':>9} {'conv.':>7}"
        f" {'holdout':>8} {'h. conv.':>8} {'incremental':>12}  {percent} interval"
    )
    lines = [header, "-" * len(header)]
    notes = []
    for row in rows:
        incremental = row["incremental"]
        shown = "-" if incremental is None else f"{incremental:+.1f}"
        interval = "-" if row["low"] is None else f"[{row['low']:+.1f}, {row['high']:+.1f}]"
        lines.append(
            f"{row['experiment']:<16} {row['arm']:<12} {row['people']:>7,} {row['messages']:>9,}"
            f" {row['conversions']:>7,} {row['holdout_people']:>8,}"
            f" {row['holdout_conversions']:>8,} {shown:>12}  {interval}"
        )
        if row["note"]:
            notes.append(f"{row['experiment']} / {row['arm']}: {row['note']}")
    lines += ["", "people: treated people who entered; holdout: the arm's holdout people who did."]
    lines += ["conv.: their orders after entering; incremental: over the holdout's rate."]
    if notes:
        lines += ["", *notes]
    return "\n".join(lines)


def _confidence(text: str) -> float:
    value = float(text)
    if not 0.5 <= value < 1:
        raise argparse.ArgumentTypeError("must be at least 0.5 and below 1")
    return value
