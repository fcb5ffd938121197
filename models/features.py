"""Features of one scoring request, computed only from the state the engine
holds at decision time.

A model may only see what the engine sees when it decides: the customer's
state records, the candidate action and channel, the trigger and the clock.
Nothing here reads an event log, so nothing can leak from after the decision.
The feature list is fixed and versioned: an artifact records the names and
the schema version it was trained on, and the loader refuses a mismatch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from nudge.policy import rules
from nudge.policy.clock import DAY, HOUR
from nudge.policy.config import LEVELS, QuietHoursPolicy
from nudge.policy.scoring import ScoringRequest
from nudge.policy.updates import AFFINITY_HALF_LIFE, CHANNELS, profiling_allowed

#: Bump whenever a name, its meaning or its order changes.
FEATURE_SCHEMA_VERSION = 1

MAX_DAYS = 365.0  # "never" or "long ago": one value so the model sees no outliers
MAX_CART_HOURS = 24.0 * 30
TRIGGERS = (
    "session_start",
    "page_view",
    "product_view",
    "search",
    "add_to_cart",
    "remove_from_cart",
    "checkout_started",
    "purchase",
)

FEATURE_NAMES: tuple[str, ...] = (
    # recency
    "days_since_session",
    "days_since_purchase",
    "orders_log",
    "revenue_log",
    "category_affinity",  # decayed score s of the action's category, as s / (s + 3)
    "category_affinity_share",  # s over the sum of all categories
    "days_since_category_purchase",
    "has_cart",
    "cart_value_log",
    "cart_age_hours",
    # fatigue
    "contacts_last_day",
    "contacts_last_week",
    "ignored_streak",
    "channel_engagement",  # smoothed share of messages on the channel that got a response
    "channel_sent_log",
    "days_since_engaged",
    "conversions_log",
    # consent and profile
    "relationship_level",  # 0 unknown .. 3 engaged
    "has_preferred_channel",
    "preferred_channel_match",
    "in_quiet_hours",
    # the action
    "transactional",
    "action_value_log",
    "action_lever",
    *(f"channel={channel}" for channel in CHANNELS),
    *(f"trigger={trigger}" for trigger in TRIGGERS),
)


def _days_since(now: float, then: float | None) -> float:
    if not then:
        return MAX_DAYS
    return min(MAX_DAYS, max(0.0, (now - then) / DAY))


class FeatureBuilder:
    """Turns a batch of scoring requests into a float matrix, one row each.

    It needs the policy's default quiet hours to tell whether a channel would
    have to wait, exactly as the engine's rules do.
    """

    def __init__(self, quiet_hours: QuietHoursPolicy) -> None:
        self.quiet_hours = quiet_hours
        self.silent_channels = frozenset(quiet_hours.silent_channels)

    def matrix(self, requests: Sequence[ScoringRequest]) -> np.ndarray:
        """Shape (len(requests), len(FEATURE_NAMES)), float64."""
        return np.array([self.row(r) for r in requests], dtype=np.float64).reshape(
            len(requests), len(FEATURE_NAMES)
        )

    def row(self, request: ScoringRequest) -> list[float]:
        values = self._values(request)
        return [values.get(name, 0.0) for name in FEATURE_NAMES]

    def _values(self, request: ScoringRequest) -> dict[str, float]:
        state, now, channel = request.state, request.now, request.channel
        recency, fatigue, profile = state.recency, state.fatigue, state.profile
        action = request.action
        # Behavioural profiling stops when the person revokes it: affinity
        # then counts as unknown, as it does for the heuristic.
        score, total = 0.0, 0.0
        if profiling_allowed(state, channel or None) and recency.affinity:
            decay = 0.5 ** (max(0.0, now - recency.affinity_at) / AFFINITY_HALF_LIFE)
            score = recency.affinity.get(request.category or "", 0.0) * decay
            total = sum(recency.affinity.values()) * decay
        has_cart = recency.cart_items > 0
        cart_age = (now - recency.cart_updated_at) / HOUR if has_cart else MAX_CART_HOURS
        quiet = rules.quiet_window(state, self.quiet_hours)
        deferred = channel not in self.silent_channels and rules.quiet_hours_end(quiet, now) > now
        preferred = profile.preferred_channel
        return {
            "days_since_session": _days_since(now, recency.last_seen.get("session_start")),
            "days_since_purchase": _days_since(now, recency.last_seen.get("purchase")),
            "orders_log": math.log1p(recency.orders),
            "revenue_log": math.log1p(recency.revenue),
            "category_affinity": score / (score + 3.0),
            "category_affinity_share": score / total if total > 0 else 0.0,
            "days_since_category_purchase": _days_since(
                now, recency.last_purchase.get(request.category or "")
            ),
            "has_cart": float(has_cart),
            "cart_value_log": math.log1p(recency.cart_value) if has_cart else 0.0,
            "cart_age_hours": min(MAX_CART_HOURS, max(0.0, cart_age)),
            "contacts_last_day": sum(1.0 for c in fatigue.contacts if c.at > now - DAY),
            "contacts_last_week": sum(1.0 for c in fatigue.contacts if c.at > now - 7 * DAY),
            "ignored_streak": float(fatigue.ignored_streak),
            "channel_engagement": rules.engagement_rate(state, channel),
            "channel_sent_log": math.log1p(fatigue.sent.get(channel, 0)),
            "days_since_engaged": _days_since(now, fatigue.last_engaged),
            "conversions_log": math.log1p(fatigue.conversions),
            "relationship_level": float(LEVELS.index(rules.relationship_level(state, now))),
            "has_preferred_channel": float(preferred is not None),
            "preferred_channel_match": float(preferred == channel),
            "in_quiet_hours": float(deferred),
            "transactional": float(action.message_class == "transactional"),
            "action_value_log": math.log1p(action.value),
            "action_lever": action.lever,
            f"channel={channel}": 1.0,
            f"trigger={getattr(request.event, 'type', '')}": 1.0,
        }
