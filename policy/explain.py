"""Explanations: a readable summary of a customer's state and the full trace
of a decision, so anyone can see why nudge did or did not contact someone."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec

from nudge.policy import engagement, rules
from nudge.policy.clock import DAY, HOUR, WEEK
from nudge.policy.config import ContactPolicy
from nudge.policy.engine import Outcome
from nudge.policy.ids import in_holdout
from nudge.policy.locality import person_zone
from nudge.policy.state import TABLES, CustomerState


def _iso(ts: float) -> str | None:
    return datetime.fromtimestamp(ts, UTC).isoformat() if ts else None


def summarize_state(
    state: CustomerState, customer_id: str, policy: ContactPolicy, now: datetime
) -> dict[str, Any]:
    """The stored records plus what they mean right now."""
    now_ts = now.timestamp()
    fatigue = state.fatigue
    consent = state.consent.entries
    channels = ("email", "sms", "push", "web")
    overall = consent.get("all:marketing")
    opted_out = overall is not None and overall.status == "revoked"
    return {
        "customer_id": customer_id,
        "as_of": now.isoformat(),
        "relationship_level": rules.relationship_level(state, now_ts),
        "experiment_arm": (
            "holdout"
            if in_holdout(customer_id, policy.holdout.share, policy.holdout.salt)
            else "treatment"
        ),
        "marketing_allowed": {
            ch: ch not in state.consent.blocked and rules.marketing_allowed(state, ch)
            for ch in channels
        },
        "global_opt_out": opted_out,
        "blocked_channels": dict(state.consent.blocked),
        "contacts": {
            "last_hour": sum(1 for c in fatigue.contacts if c.at > now_ts - HOUR),
            "last_day": sum(1 for c in fatigue.contacts if c.at > now_ts - DAY),
            "last_week": sum(1 for c in fatigue.contacts if c.at > now_ts - WEEK),
        },
        "backoff_until": _iso(fatigue.backoff_until) if fatigue.backoff_until > now_ts else None,
        "time_zone": dict(
            zip(("zone", "source"), person_zone(state.profile, policy.quiet_hours.tz), strict=True)
        ),
        # Assigned from behaviour by the served persona model (policy/personas.py);
        # null without one, or when profiling is not allowed.
        "persona": state.profile.persona,
        "engagement": _engagement(state, policy),
        "snoozed_until": (
            _iso(state.profile.snooze_until) if state.profile.snooze_until > now_ts else None
        ),
        "records": {table: _as_dict(getattr(state, table)) for table in TABLES},
    }


def _engagement(state: CustomerState, policy: ContactPolicy) -> dict[str, Any]:
    """What the person responds to (policy/engagement.py): the smoothed rate
    per channel, and per four-hour block of their local day once enough is known."""
    learning = policy.engagement
    per_channel, per_block = engagement.counts(state)
    rates = engagement.block_rates(state, learning)
    width = engagement.BLOCK_HOURS
    return {
        "known_outcomes": dict(zip(engagement.CHANNELS, per_channel, strict=True)),
        "channel_rates": {
            ch: round(engagement.channel_rate(state, ch, learning), 3) for ch in engagement.CHANNELS
        },
        "local_hour_rates": (
            {f"{b * width:02d}-{b * width + width:02d}": round(r, 3) for b, r in enumerate(rates)}
            if rates is not None
            else None
        ),
        "local_hour_outcomes": [list(pair) for pair in per_block],
    }


def _as_dict(record: msgspec.Struct) -> dict[str, Any]:
    """A state record with field names (records are stored as arrays)."""
    return {name: msgspec.to_builtins(getattr(record, name)) for name in record.__struct_fields__}


def trace_outcome(outcome: Outcome) -> dict[str, Any]:
    """Every candidate the decision considered, and what became of it."""
    decision = outcome.decision
    return {
        "duplicate": outcome.duplicate,
        "decision": msgspec.to_builtins(decision) if decision is not None else None,
        # A decision that must wait: held in state until its send_after, not published.
        "held": msgspec.to_builtins(outcome.held) if outcome.held is not None else None,
        "released": [msgspec.to_builtins(d) for d in outcome.released],
        "candidates": [
            {
                "action_id": c.action.id,
                "message_class": c.action.message_class,
                "category": c.category,
                "ruled_out_by": c.reasons,
                "channels_ruled_out": c.channel_reasons,
                "usable_channels": {ch: _iso(at) for ch, at in c.send_times.items()},
                "chosen_channel": c.channel,
                "channel_reason": c.channel_why or None,
                "propensity": round(c.propensity, 6),
                "score": round(c.score, 6),
            }
            for c in outcome.trace
        ],
        "records": [msgspec.to_builtins(r) for r in outcome.records],
    }
