"""`nudge tail`: follow what nudge decides (or what arrives), one readable line per record."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from typing import Any

from nudge.cli import connection
from nudge.errors import UserError

#: Kinds worth reading as JSON: outputs, inputs and the impressions topic
#: (identity merges carry msgpack state, not for people).
OUTPUTS = (
    "actions",
    "actions.email",
    "actions.sms",
    "actions.push",
    "actions.web",
    "suppressions",
    "deadletter",
    "consent-log",
    "erasures",
)
EPILOG = """\
examples:
  nudge tail actions suppressions               new decisions as they are made
  nudge tail deadletter --from-beginning        every rejected input, and why
  nudge tail actions --json | jq .              the records as channels see them
  nudge tail clickstream purchases consent --from-beginning --log > traffic.jsonl
                                                input traffic as an event log for
                                                nudge replay --clock recorded

Ctrl-C stops (exit status 0).
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    from nudge.policy.onsite import IMPRESSION_KIND
    from nudge.streams.topics import INPUT_KINDS

    parser = subparsers.add_parser(
        "tail",
        help="follow actions, suppressions, deadletters, consent-log, erasures or inputs",
        description="Print records from nudge's topics as they arrive, one line each.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "kinds",
        nargs="+",
        metavar="KIND",
        choices=(*OUTPUTS, *INPUT_KINDS, IMPRESSION_KIND),
        help=f"one or more of: {', '.join((*OUTPUTS, *INPUT_KINDS, IMPRESSION_KIND))}",
    )
    parser.add_argument(
        "--from-beginning", action="store_true", help="start at the oldest record, not now"
    )
    parser.add_argument("--limit", type=int, metavar="N", help="stop after N records")
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="print each record's JSON as is")
    output.add_argument(
        "--log",
        action="store_true",
        help='print event-log lines {"kind", "event", "at": Kafka time} (for nudge replay)',
    )
    connection.add_arguments(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from kafka import KafkaConsumer, TopicPartition

    from nudge.streams.topics import topic_name

    if args.limit is not None and args.limit < 1:
        raise UserError("--limit must be at least 1")
    bootstrap, prefix, security = connection.resolve(args)
    kind_of = {topic_name(prefix, kind): kind for kind in args.kinds}
    connection.require_topics(bootstrap, kind_of, security)
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, **security)
    shown = 0
    try:
        consumer.assign(
            [TopicPartition(t, p) for t in kind_of for p in consumer.partitions_for_topic(t) or ()]
        )
        if args.from_beginning:
            consumer.seek_to_beginning()
        else:
            consumer.seek_to_end()
        if args.limit is None:  # on stderr: stdout stays the records alone
            print(f"following {', '.join(args.kinds)} (Ctrl-C stops)", file=sys.stderr, flush=True)
        while args.limit is None or shown < args.limit:
            batch = consumer.poll(timeout_ms=500)
            records = sorted(
                (r for rs in batch.values() for r in rs), key=lambda r: (r.timestamp, r.offset)
            )
            for record in records[: None if args.limit is None else args.limit - shown]:
                print(_render(args, kind_of[record.topic], record), flush=True)
                shown += 1
    except KeyboardInterrupt:
        pass  # Ctrl-C is how one stops following
    finally:
        consumer.close()
    return 0


def _render(args: argparse.Namespace, kind: str, record: Any) -> str:
    text = (record.value or b"").decode("utf-8", errors="replace")
    if args.json:
        return text
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    at = datetime.fromtimestamp(record.timestamp / 1000, UTC)
    if args.log:
        from nudge.schemas.eventlog import encode_line

        return encode_line(kind, value, at).decode()
    key = (record.key or b"").decode("utf-8", errors="replace") or "-"
    if not isinstance(value, dict):
        what = f"(not JSON: {len(record.value or b'')} bytes)"
    else:
        what = describe(kind, value)
    return f"{at:%Y-%m-%d %H:%M:%S}Z  {key:<20} {what}"


def describe(kind: str, value: dict[str, Any]) -> str:
    """The gist of one record: what happened, and why."""
    if kind.startswith("actions"):
        when = f", send after {value['send_after']}" if value.get("send_after") else ""
        return (
            f"ACTION      {value.get('action_id')} via {value.get('channel')}{when}"
            f"  ({value.get('message_class')}, score {value.get('score')},"
            f" decision {str(value.get('decision_id'))[:12]})"
        )
    if kind == "suppressions":
        candidates = "; ".join(
            f"{c.get('action_id')}: {', '.join(c.get('reasons', []))}"
            for c in value.get("candidates", [])
        )
        return f"SUPPRESSED  {', '.join(value.get('reasons', []))}  ({candidates})"
    if kind == "deadletter":
        where = f"{value.get('source_topic')}[{value.get('partition')}]@{value.get('offset')}"
        return f"DEADLETTER  {where}  {value.get('reason')}: {value.get('error')}"
    if kind == "consent-log":
        was = value.get("previous_status") or "unset"
        late = "" if value.get("applied") else "  (not applied: older than the change on file)"
        return (
            f"CONSENT     {value.get('channel')}/{value.get('purpose')} {value.get('status')}"
            f" (was {was}) from {value.get('source')}{late}"
        )
    if kind == "erasures":
        tables = ", ".join(value.get("tables_cleared", []))
        return f"ERASED      {tables}  (request {value.get('request_event_id')})"
    if kind == "onsite-impressions":
        return f"IMPRESSION  {value.get('action_id')} via {value.get('channel')}"
    # An input event: its type and the fields that say more than the key does.
    hidden = {"event_id", "ts", "type", "schema_version"}
    if kind != "identity":
        hidden |= {"customer_id", "anonymous_id"}
    details = {k: v for k, v in value.items() if k not in hidden}
    return f"{str(value.get('type', kind)).upper():<11} {json.dumps(details)[:120]}"
