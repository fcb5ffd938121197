"""`nudge explain`: why a running worker would or would not contact someone."""

from __future__ import annotations

import argparse
import json
import os
import urllib.error
import urllib.request
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from nudge.errors import UserError

EPILOG = """\
examples:
  nudge explain cust-42                            the customer's state, and what it means now
  nudge explain cust-42 --event view.json          a dry-run decision on this event, fully traced
  echo '{"type": "product_view", "category": "lighting"}' | nudge explain cust-42 --event -

The token comes from NUDGE_API_TOKEN, the worker from --url, else
NUDGE_WORKER_URL, else http://127.0.0.1:$NUDGE_WEB_PORT (6066). An event
without event_id, ts or a customer gets them filled in (now, CUSTOMER). A dry
run sends nothing and changes no state.
"""


class ApiError(UserError):
    """The worker could not answer; the message says what to do."""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "explain",
        help="show a customer's state, or dry-run a decision, on a running worker",
        description="Ask a running worker about a customer: state summary or decision trace.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("customer", nargs="?", metavar="CUSTOMER", help="customer (or visitor) id")
    parser.add_argument(
        "--event", metavar="FILE", help="dry-run this event (a file, or - for stdin)"
    )
    parser.add_argument("--kind", help="the event's input topic kind (default: by its type)")
    parser.add_argument("--url", help="the worker's web address (default: $NUDGE_WORKER_URL)")
    parser.add_argument("--json", action="store_true", help="print the worker's JSON as is")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.event is None:
        if not args.customer:
            raise UserError("name a CUSTOMER, or pass --event FILE")
        answer = _call(args, "GET", f"/api/customers/{args.customer}")
        print(json.dumps(answer, indent=2) if args.json else render_summary(answer))
        return 0
    kind, event = _event(args)
    answer = _call(args, "POST", f"/api/decide/{kind}", json.dumps(event).encode())
    print(json.dumps(answer, indent=2) if args.json else render_trace(answer))
    return 0


def worker_url(args: argparse.Namespace) -> str:
    default = f"http://127.0.0.1:{os.environ.get('NUDGE_WEB_PORT', '6066')}"
    return (args.url or os.environ.get("NUDGE_WORKER_URL") or default).rstrip("/")


def _event(args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    import sys

    from nudge.schemas import eventlog

    data = sys.stdin.buffer.read() if args.event == "-" else _read(args.event)
    items = eventlog.parse(data, args.kind)
    if len(items) != 1:
        raise UserError(f"{args.event}: expected one event, found {len(items)}")
    [item] = items
    if isinstance(item, eventlog.Unreadable):
        raise UserError(f"{args.event}: line {item.line}: {item.error}")
    event = dict(item.event)
    event.setdefault("event_id", f"explain-{uuid.uuid4().hex[:12]}")
    event.setdefault("ts", datetime.now(UTC).isoformat())
    if args.customer and not (event.get("customer_id") or event.get("anonymous_id")):
        event["customer_id"] = args.customer
    return item.kind, event


def _read(name: str) -> bytes:
    path = Path(name)
    if not path.is_file():
        raise UserError(f"{name}: no such file")
    return path.read_bytes()


def _call(args: argparse.Namespace, method: str, path: str, body: bytes | None = None) -> dict:
    url = worker_url(args) + path
    request = urllib.request.Request(url, data=body, method=method)
    token = os.environ.get("NUDGE_API_TOKEN")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        raise ApiError(_http_error(exc, args, token)) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ApiError(
            f"cannot reach a worker at {worker_url(args)} ({reason}): is it running? "
            "Point --url or NUDGE_WORKER_URL at its web port"
        ) from None


def _http_error(exc: urllib.error.HTTPError, args: argparse.Namespace, token: str | None) -> str:
    try:
        detail = json.loads(exc.read())
    except ValueError:
        detail = {}
    if exc.code == 401:
        return "the worker wants a token: set NUDGE_API_TOKEN to its API token (HTTP 401)"
    if exc.code == 403:
        why = detail.get("error", "forbidden")
        return f"the worker refused the token in NUDGE_API_TOKEN: {why} (HTTP 403)"
    if exc.code == 404 and args.event is None:
        return f"the worker has no state for {args.customer!r} (HTTP 404)"
    if exc.code == 400:
        return f"the worker rejected the event: {detail.get('error')}: {detail.get('detail')}"
    return f"HTTP {exc.code}: {detail.get('error', exc.reason)}"


def render_summary(s: dict[str, Any]) -> str:
    """The state summary as a page for people."""
    records = s.get("records", {})
    profile, recency = records.get("profile", {}), records.get("recency", {})
    fatigue = records.get("fatigue", {})
    allowed = s.get("marketing_allowed", {})
    contacts = s.get("contacts", {})
    lines = [
        f"customer {s.get('customer_id')}   (as of {_short(s.get('as_of'))})",
        f"  relationship   {s.get('relationship_level')}, {s.get('experiment_arm')} arm",
        "  marketing      "
        + ", ".join(f"{ch} {'yes' if ok else 'no'}" for ch, ok in allowed.items())
        + ("   GLOBAL OPT-OUT" if s.get("global_opt_out") else ""),
        f"  blocked        {_pairs(s.get('blocked_channels')) or 'none'}",
        f"  contacts       {contacts.get('last_hour', 0)} in the last hour,"
        f" {contacts.get('last_day', 0)} day, {contacts.get('last_week', 0)} week",
        f"  back-off until {_short(s.get('backoff_until')) or '-'}"
        f"   snoozed until {_short(s.get('snoozed_until')) or '-'}",
        f"  preferences    {_preferences(profile)}",
        f"  activity       {_activity(recency)}",
    ]
    recent = fatigue.get("contacts", [])[-5:]
    if recent:
        lines.append("  last contacts")
        lines += [f"    {_short(_iso(c[0]))}  {c[2]} via {c[1]}" for c in recent]
    return "\n".join(lines)


def render_trace(t: dict[str, Any]) -> str:
    """A dry-run decision and every candidate's fate."""
    decision = t.get("decision")
    if t.get("duplicate"):
        head = "DUPLICATE: this event id was processed already; nothing would happen"
    elif decision is None:
        head = "NO DECISION: no catalog action's trigger holds for this event (state would update)"
    elif decision.get("kind") == "action":
        when = f", send after {decision['send_after']}" if decision.get("send_after") else ""
        head = f"ACTION {decision['action_id']} via {decision['channel']}{when}"
        head += "\n  why: " + "; ".join(decision.get("reasons", []))
    else:
        head = f"SUPPRESSED: {', '.join(decision.get('reasons', []))}"
    lines = [head + "   (dry run: nothing sent, no state changed)"]
    if t.get("candidates"):
        lines.append("candidates")
    for c in t.get("candidates", []):
        verdict = "ruled out: " + ", ".join(c["ruled_out_by"]) if c["ruled_out_by"] else "eligible"
        lines.append(f"  {c['action_id']:<26} {verdict}   score {c['score']:.4g}")
        for channel, reasons in c.get("channels_ruled_out", {}).items():
            lines.append(f"    {channel:<8} no: {', '.join(reasons)}")
        for channel, at in c.get("usable_channels", {}).items():
            lines.append(f"    {channel:<8} usable from {_short(at)}")
        if c.get("chosen_channel"):
            lines.append(f"    chosen   {c['chosen_channel']} ({c.get('channel_reason')})")
    return "\n".join(lines)


def _preferences(profile: dict[str, Any]) -> str:
    parts = []
    if profile.get("preferred_channel"):
        parts.append(f"prefers {profile['preferred_channel']}")
    quiet = profile.get("quiet_hours")
    if quiet:  # [start minute, end minute, zone]
        start, end, tz = quiet
        parts.append(f"quiet {start // 60:02}:{start % 60:02}-{end // 60:02}:{end % 60:02} {tz}")
    if profile.get("max_per_week") is not None:
        parts.append(f"at most {profile['max_per_week']} a week")
    if profile.get("interests"):
        parts.append("interests " + ", ".join(profile["interests"]))
    return ", ".join(parts) or "none stated"


def _activity(recency: dict[str, Any]) -> str:
    parts = [f"{recency.get('orders', 0)} orders ({recency.get('revenue', 0):.2f})"]
    if recency.get("cart_items"):
        parts.append(f"cart {recency['cart_items']} items ({recency.get('cart_value', 0):.2f})")
    affinity = recency.get("affinity", {})
    top = sorted(affinity.items(), key=lambda kv: -kv[1])[:3]
    if top:
        parts.append("interest in " + ", ".join(f"{c} {v:.1f}" for c, v in top))
    return ", ".join(parts)


def _pairs(mapping: dict[str, Any] | None) -> str:
    return ", ".join(f"{k} ({v})" for k, v in (mapping or {}).items())


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


def _short(text: str | None) -> str:
    """An ISO time as `YYYY-MM-DD HH:MM UTC`."""
    if not text:
        return ""
    return datetime.fromisoformat(text).astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
