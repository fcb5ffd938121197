"""The minimal decision both peers make, so they are comparable with each
other and, in kind, with nudge: consent, a contact cap, a category cooldown.

Pure: (state, event, now) -> (state', decision or None), with state and
decision as JSON-ready dicts. Much less than nudge decides (no catalog,
scoring, quiet hours, fatigue, identity, dedupe), which is the point: what a
stateful stream processor costs with almost no decision in it.

- consent: a marketing consent event grants or revokes one channel (or `all`);
  a trigger with no marketing consent on any channel is suppressed (`consent`);
- cap: at most one action per customer in 24 h (`contact_cap`);
- cooldown: no action on a trigger of a category bought in the last 7 days
  (`category_cooldown`);
- otherwise an action on the first consented channel, recorded as a contact.

Triggers are the clickstream types nudge's catalog triggers on; a purchase
starts its categories' cooldowns (nudge's purchase receipt is not modelled).
"""

from __future__ import annotations

from datetime import UTC, datetime

from nudge.policy.clock import DAY

CHANNELS = ("email", "push", "sms", "web")
TRIGGERS = frozenset({"session_start", "page_view", "product_view", "search", "checkout_started"})
CAP_SECONDS = DAY
COOLDOWN_SECONDS = 7 * DAY
ACTION = "peer_offer"


def decide(state: dict | None, event: dict, now: float) -> tuple[dict, dict | None]:
    """Apply `event` (a decoded input event) to `state` at `now` (epoch s);
    a decision for a trigger, else None. `state` is not modified."""
    state = {
        "consent": list(state["consent"]) if state else [],
        "contact": state["contact"] if state else None,
        "bought": dict(state["bought"]) if state else {},
    }
    kind = event.get("type")
    if kind == "consent":
        if event.get("purpose") == "marketing":
            _consent(state, event.get("channel"), event.get("status") == "granted")
        return state, None
    if kind == "purchase":
        for item in event.get("items") or ():
            state["bought"][item["category"]] = now
        return state, None
    if kind not in TRIGGERS:
        return state, None
    category = event.get("category")
    if not state["consent"]:
        reason = "consent"
    elif state["contact"] is not None and now - state["contact"] < CAP_SECONDS:
        reason = "contact_cap"
    elif category is not None and now - state["bought"].get(category, -1e18) < COOLDOWN_SECONDS:
        reason = "category_cooldown"
    else:
        state["contact"] = now
        return state, _decision(event, now, "action", channel=state["consent"][0])
    return state, _decision(event, now, "suppression", reason=reason)


def _consent(state: dict, channel: str | None, granted: bool) -> None:
    channels = CHANNELS if channel == "all" else (channel,) if channel in CHANNELS else ()
    kept = set(state["consent"])
    kept = kept | set(channels) if granted else kept - set(channels)
    state["consent"] = [c for c in CHANNELS if c in kept]  # first: the channel an action uses


def _decision(event: dict, now: float, kind: str, **fields: str) -> dict:
    """Carries what bench.pipeline's latency reader reads (`Decided`)."""
    return {
        "kind": kind,
        "decision_id": f"{event.get('event_id')}:{ACTION}",
        "action": ACTION,
        "trigger_event_id": event.get("event_id"),
        "trigger_ts": event.get("ts"),
        "decided_at": datetime.fromtimestamp(now, UTC).isoformat(),
        **fields,
    }
