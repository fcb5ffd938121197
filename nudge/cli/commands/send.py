"""`nudge send`: validate events against the contract and publish them, keyed per the contract."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path

from nudge.cli import connection
from nudge.errors import UserError

EPILOG = """\
examples:
  nudge send events.jsonl                          an event log (nudge simulate --out)
  nudge send '{"event_id": "e-1", "type": "page_view", "customer_id": "c-1", "ts": "..."}'
  cat order.json | nudge send --kind purchases
  nudge send --check events.jsonl                  validate only, send nothing

Each event is validated with the schema the worker uses (schemas.codec) and
keyed by its customer id, else its anonymous id (the anonymous id for identity
events). Invalid events are reported with their line and reason and not sent
(exit status 1), unless --force sends them anyway (e.g. to see them reach the
deadletter topic). Lines of output kinds (the actions a simulated log
records) are skipped.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "send",
        help="validate events and publish them to the input topics",
        description=(
            "Publish one event (JSON on the command line or stdin) or a file of events "
            "(an event log in JSON Lines, or a JSON array) to nudge's input topics."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "source",
        nargs="?",
        default="-",
        metavar="FILE|JSON|-",
        help="a file, an event as JSON text, or - for stdin (the default)",
    )
    parser.add_argument("--kind", help="input topic kind for events without one (default: by type)")
    parser.add_argument("--force", action="store_true", help="send invalid events too")
    parser.add_argument("--check", action="store_true", help="validate only; send nothing")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    connection.add_arguments(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from nudge.schemas import eventlog
    from nudge.schemas.codec import InvalidEvent, decode_event
    from nudge.streams.topics import INPUT_KINDS

    if args.kind is not None and args.kind not in INPUT_KINDS:
        raise UserError(f"--kind must be one of {', '.join(INPUT_KINDS)}")
    items = eventlog.parse(_read(args.source), args.kind)
    now = datetime.now(UTC)
    valid, invalid, skipped = [], [], 0
    for item in items:
        if isinstance(item, eventlog.LoggedEvent) and item.kind not in INPUT_KINDS:
            skipped += 1
            continue
        problem = None
        if isinstance(item, eventlog.Unreadable):  # not JSON, or no way to tell its topic
            problem = f"{'malformed' if item.event is None else 'unknown_type'}: {item.error}"
        if problem is None:
            try:
                decode_event(item.kind, item.value, None, now, check_key=False)
            except InvalidEvent as exc:
                problem = f"{exc.reason}: {exc.detail}"
        if problem is None:
            valid.append(item)
        else:
            invalid.append(item)
            print(f"line {item.line}: {problem}", file=sys.stderr)
    if skipped:
        print(f"skipped {skipped} lines that are not input events", file=sys.stderr)
    if not items:
        raise UserError("no events in the input")
    if args.check:
        print(f"{len(valid)} valid, {len(invalid)} invalid")
        return 1 if invalid else 0
    # Forcing sends what can be sent: anything with an event and a topic.
    sendable = [i for i in invalid if isinstance(i, eventlog.LoggedEvent)]
    forced = sendable if args.force else []
    to_send = sorted(valid + forced, key=lambda item: item.line)
    sent = _publish(to_send, args) if to_send else 0
    held = len(invalid) - len(forced)
    print(f"sent {sent} events" + (f"; {held} invalid not sent" if held else ""))
    return 1 if held else 0


def _read(source: str) -> bytes:
    if source == "-":
        return sys.stdin.buffer.read()
    if source.lstrip().startswith(("{", "[")):
        return source.encode()
    path = Path(source)
    if not path.is_file():
        raise UserError(f"{source}: no such file (and not a JSON event)")
    return path.read_bytes()


def _publish(items: list, args: argparse.Namespace) -> int:
    """Send in order and wait for every acknowledgement; a failure is an error."""
    from kafka import KafkaProducer
    from tqdm import tqdm

    from nudge.streams.topics import topic_name

    bootstrap, prefix, security = connection.resolve(args)
    topics = {item.kind: topic_name(prefix, item.kind) for item in items}
    connection.require_topics(bootstrap, topics.values(), security)
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5, **security)
    try:
        futures = [
            producer.send(topics[item.kind], key=item.key, value=item.value)
            for item in tqdm(items, unit=" events", disable=args.quiet or None, leave=False)
        ]
        producer.flush(60)
    finally:
        producer.close(10)
    failed = [f for f in futures if f.failed()]
    if failed:
        raise UserError(
            f"{len(failed)} of {len(futures)} events not delivered: {failed[0].exception}"
        )
    return len(futures)
