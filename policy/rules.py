"""The rules that rule a candidate out, each answering with a reason code.

Action-level rules look at the action as a whole; channel-level rules look at
one channel at one send time. A candidate survives with at least one usable
channel and no action-level reason.
"""

from __future__ import annotations

import functools
import zoneinfo
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from nudge.policy import engagement, personas
from nudge.policy.clock import DAY, HOUR, WEEK
from nudge.policy.config import LEVELS, Caps, CatalogAction, ContactPolicy, Level, QuietHoursPolicy
from nudge.policy.cycles import CycleModel, purchase_window
from nudge.policy.locality import person_zone
from nudge.policy.state import CONTACT_HORIZON, MAX_CONTACTS, Contact, CustomerState, QuietWindow
from nudge.policy.updates import profiling_allowed
from nudge.schemas.events import Event
from nudge.schemas.outputs import ReasonCode

ENGAGED_WITHIN = 30 * DAY
CART = "$cart"  # a catalog category: the open cart's


@dataclass(slots=True)
class DecisionContext:
    """Everything the rules need besides the candidate, computed once per
    decision rather than once per candidate and channel."""

    customer_id: str
    event: Event
    event_category: str | None
    now: float
    state: CustomerState
    policy: ContactPolicy
    in_holdout: bool
    level: Level = "unknown"
    # (time, channel) of marketing contacts any cap window around now can see.
    recent: list[tuple[float, str]] = field(default_factory=list)
    quiet_end: float | None = None  # end of quiet hours, once computed
    # (earliest, latest) -> the person's best hour in it (best_hour), once computed
    best_hours: dict[tuple[float, float], tuple[float, float, float] | None] = field(
        default_factory=dict
    )
    cycles: CycleModel | None = None  # learned purchase cycles, if a model serves them

    def __post_init__(self) -> None:
        self.level = relationship_level(self.state, self.now)
        horizon = self.now - WEEK
        self.recent = [(c.at, c.channel) for c in self.state.fatigue.contacts if c.at > horizon]


def relationship_level(state: CustomerState, now: float) -> Level:
    """unknown -> identified -> known -> engaged, from what we know and how
    they engage."""
    profile, recency, fatigue = state.profile, state.recency, state.fatigue
    if not profile.identified:
        return "unknown"
    granted = any(e.status == "granted" for e in state.consent.entries.values())
    if not (recency.orders or profile.reachable or granted):
        return "identified"
    if recency.orders >= 3 or now - fatigue.last_engaged <= ENGAGED_WITHIN:
        return "engaged"
    return "known"


def resolve_category(action: CatalogAction, ctx: DecisionContext) -> str | None:
    if action.category == "$event":
        return ctx.event_category
    if action.category == CART:
        return ctx.state.recency.cart_category
    return action.category


def action_reasons(action: CatalogAction, ctx: DecisionContext) -> list[ReasonCode]:
    """Reasons that rule out the action on every channel."""
    state, now, policy = ctx.state, ctx.now, ctx.policy
    reasons: list[ReasonCode] = []
    marketing = action.message_class == "marketing"
    if now - ctx.event.ts.timestamp() > action.expiry_hours * HOUR:
        reasons.append("expired")
    if marketing and ctx.in_holdout:
        reasons.append("holdout")
    if LEVELS.index(ctx.level) < LEVELS.index(action.min_level):
        reasons.append("relationship_level")
    if action.interests and not set(action.interests) & interests_of(state):
        reasons.append("not_interested")
    if not personas.eligible(action, state.profile.persona):
        reasons.append("persona")
    if marketing and now < state.profile.snooze_until:
        reasons.append("snooze")
    category = resolve_category(action, ctx)
    cycles = ctx.cycles
    if marketing and category and in_purchase_cooldown(state, policy, category, now, cycles):
        reasons.append("purchase_cooldown")
    last = state.fatigue.last_action.get(action.id)
    if marketing and last is not None and now < last + action.cooldown_hours * HOUR:
        reasons.append("action_cooldown")
    if marketing and action.max_per_week is not None:
        sent = sum(
            1 for c in state.fatigue.contacts if c.action_id == action.id and c.at > now - WEEK
        )
        if sent >= action.max_per_week:
            reasons.append("action_cap")
    if marketing and now < state.fatigue.backoff_until:
        reasons.append("fatigue")
    return reasons


def in_purchase_cooldown(
    state: CustomerState,
    policy: ContactPolicy,
    category: str,
    now: float,
    cycles: CycleModel | None = None,
) -> bool:
    """Was the category bought too recently to promote it at `now`? With a
    learned cycle, until the person's next need is near (policy/cycles.py)."""
    window = purchase_window(state, policy, cycles, category, profiling_allowed(state))
    return window is not None and now < window.cooldown_until


def held_reasons(
    action: CatalogAction,
    channel: str,
    category: str | None,
    state: CustomerState,
    policy: ContactPolicy,
    now: float,
    own: str,
    cycles: CycleModel | None = None,
) -> list[ReasonCode]:
    """Why a held action may not go out at `now` after all: what changed
    since it was decided (a revocation, opt-out or block, a snooze, a
    purchase of its category, a fatigue back-off, other messages filling a
    cap). `own` is its contact's decision id: its own reservation is no
    other message."""
    reasons: list[ReasonCode] = []
    why = consent_reason(action, channel, state)
    if why:
        reasons.append(why)
    if action.message_class != "marketing":
        return reasons
    if now < state.profile.snooze_until:
        reasons.append("snooze")
    if action.category == CART and state.recency.cart_items == 0:
        reasons.append("cart_closed")
    if category is not None and in_purchase_cooldown(state, policy, category, now, cycles):
        reasons.append("purchase_cooldown")
    if now < state.fatigue.backoff_until:
        reasons.append("fatigue")
    horizon = now - WEEK
    others = [
        (c.at, c.channel) for c in state.fatigue.contacts if c.at > horizon and c.decision_id != own
    ]
    capped = caps_reason(action, channel, now, others, state, policy)
    if capped:
        reasons.append(capped)
    return reasons


def interests_of(state: CustomerState) -> set[str]:
    """Stated interests, plus the three strongest categories when profiling
    is allowed."""
    interests = set(state.profile.interests)
    if profiling_allowed(state):
        affinity = state.recency.affinity
        interests.update(sorted(affinity, key=affinity.__getitem__, reverse=True)[:3])
    return interests


def consent_reason(action: CatalogAction, channel: str, state: CustomerState) -> ReasonCode | None:
    """Hard blocks bind every message; consent rules depend on the class."""
    if channel in state.consent.blocked:
        return "channel_blocked"
    entries = state.consent.entries
    if action.message_class == "transactional":
        entry = entries.get(f"{channel}:transactional")
        return "consent" if entry is not None and entry.status == "revoked" else None
    if not marketing_allowed(state, channel):
        return "consent"
    if uses_profiling(action) and not profiling_allowed(state, channel):
        return "consent"
    return None


def marketing_allowed(state: CustomerState, channel: str) -> bool:
    """A marketing grant for the channel in force, and no opt-out of `all`:
    that stands until `all` is granted again (the consent log says so)."""
    entries = state.consent.entries
    overall = entries.get("all:marketing")
    if overall is not None and overall.status == "revoked":
        return False
    entry = entries.get(f"{channel}:marketing")
    return entry is not None and entry.status == "granted"


def uses_profiling(action: CatalogAction) -> bool:
    """Does the action exist because of what profiling learned (affinity)?"""
    return any(trigger.min_category_affinity is not None for trigger in action.triggers)


def reachable(channel: str, state: CustomerState, policy: ContactPolicy) -> bool:
    """Do we hold contact details for the channel? Known ones are on file
    (stated, or learned from a grant or a delivery); until an identify or
    preferences event has stated them, the policy's `assumed_reachable` count
    too. On-site content needs none. Consent is checked apart."""
    profile = state.profile
    if channel == "web" or channel in profile.reachable:
        return True
    return not profile.reachable_stated and channel in policy.assumed_reachable


def earliest_send(ctx: DecisionContext, wait: float) -> float:
    """Now, or `wait` seconds after the event if that is later."""
    return max(ctx.now, ctx.event.ts.timestamp() + wait) if wait else ctx.now


def send_time(channel: str, ctx: DecisionContext, wait: float = 0.0) -> float:
    """When a message on this channel may reach the person: now (or `wait`
    seconds after the event, as its trigger asks: at once if the event came
    in that late), or the end of their quiet hours then for channels that
    interrupt."""
    quiet = ctx.policy.quiet_hours
    earliest = earliest_send(ctx, wait)
    if channel in quiet.silent_channels:
        return earliest
    if wait:
        return quiet_hours_end(quiet_window(ctx.state, quiet), earliest)
    if ctx.quiet_end is None:
        ctx.quiet_end = quiet_hours_end(quiet_window(ctx.state, quiet), ctx.now)
    return ctx.quiet_end


def best_hour(
    ctx: DecisionContext, earliest: float, expires: float
) -> tuple[float, float, float] | None:
    """When to hold a marketing message to: the start of the person's best
    local hours after `earliest` (the end of quiet hours, or now), within the
    policy's max delay and before `expires`, with that block's response rate
    and the rate at `earliest`; None to send at `earliest`. Learned hours are
    behaviour: not used once profiling is revoked."""
    learning = ctx.policy.engagement
    if not learning.send_hour or not profiling_allowed(ctx.state):
        return None
    latest = min(earliest + learning.max_delay_hours * HOUR, expires)
    key = (earliest, latest)
    if key not in ctx.best_hours:
        quiet = quiet_window(ctx.state, ctx.policy.quiet_hours)
        ctx.best_hours[key] = engagement.best_time(
            ctx.state, earliest, latest, _zone(quiet.tz), learning,
            lambda t: quiet_hours_end(quiet, t),
        )  # fmt: skip
    return ctx.best_hours[key]


def zone_of(state: CustomerState, policy: ContactPolicy) -> zoneinfo.ZoneInfo:
    """The person's own zone (policy/locality.py)."""
    return _zone(person_zone(state.profile, policy.quiet_hours.tz)[0])


def quiet_window(state: CustomerState, quiet: QuietHoursPolicy) -> QuietWindow:
    """The person's quiet hours (their own window, else the policy's), always
    in the person's own zone (policy/locality.py), never the policy's by default."""
    window = state.profile.quiet_hours or _default_window(quiet.start, quiet.end, quiet.tz)
    zone, _ = person_zone(state.profile, quiet.tz)
    if zone == window.tz:
        return window
    return QuietWindow(window.start_minute, window.end_minute, zone)


def quiet_hours_end(window: QuietWindow, now: float) -> float:
    """`now` if outside the window, else the moment the window ends."""
    local = datetime.fromtimestamp(now, _zone(window.tz))
    minute = local.hour * 60 + local.minute
    start, end = window.start_minute, window.end_minute
    inside = start <= minute < end if start <= end else minute >= start or minute < end
    if not inside:
        return now
    end_local = local.replace(hour=end // 60, minute=end % 60, second=0, microsecond=0)
    if end_local <= local:
        end_local += timedelta(days=1)
    return end_local.timestamp()


def cap_reason(
    action: CatalogAction, channel: str, at: float, ctx: DecisionContext
) -> ReasonCode | None:
    """Would one more message at `at` exceed a per-channel or global cap in
    any rolling window that contains it? Transactional messages are exempt."""
    return caps_reason(action, channel, at, ctx.recent, ctx.state, ctx.policy)


def caps_reason(
    action: CatalogAction,
    channel: str,
    at: float,
    recent: list[tuple[float, str]],
    state: CustomerState,
    policy: ContactPolicy,
) -> ReasonCode | None:
    """cap_reason against the (time, channel) marketing contacts `recent`."""
    if action.message_class == "transactional":
        return None
    channel_caps = policy.channel_caps.get(channel)  # type: ignore[call-overload]
    if channel_caps is not None:
        same_channel = [t for t, ch in recent if ch == channel]
        if exceeds(same_channel, at, _windows(channel_caps)):
            return "channel_cap"
    global_windows = _windows(policy.global_caps)
    personal = state.profile.max_per_week
    if personal is not None:
        global_windows = [*global_windows, (WEEK, personal)]
    if exceeds([t for t, _ in recent], at, global_windows):
        return "global_cap"
    # The state keeps MAX_CONTACTS contacts: one more in a week would push
    # out a contact that some window still needs, so that is a cap too.
    if len(recent) >= MAX_CONTACTS:
        return "global_cap"
    return None


def exceeds(times: list[float], at: float, windows: list[tuple[float, int]]) -> bool:
    """True if adding a message at `at` puts more than `cap` messages into
    some window [s, s + length) that contains `at`.

    Existing times may lie in the future (deferred messages), so every window
    position is checked, not only the one ending now. The count can only
    change at a message time, so it suffices to start windows there.
    """
    for length, cap in windows:
        if len(times) < cap:
            continue  # even all of them plus this one stay within the cap
        nearby = sorted(t for t in times if at - length < t < at + length)
        if len(nearby) < cap:
            continue
        starts = [t for t in nearby if t <= at] + [at]
        for start in starts:
            if start > at or start + length <= at:
                continue
            inside = sum(1 for t in nearby if start <= t < start + length) + 1
            if inside > cap:
                return True
    return False


def prune_contacts(contacts: list[Contact], now: float, limit: int) -> list[Contact]:
    """Drop contacts no window can see any more; keep at most `limit`."""
    kept = [c for c in contacts if c.at > now - CONTACT_HORIZON]
    return kept[-limit:]


def engagement_rate(state: CustomerState, channel: str) -> float:
    """Smoothed share of messages on this channel that got a response."""
    fatigue = state.fatigue
    return (fatigue.engaged.get(channel, 0) + 1) / (fatigue.sent.get(channel, 0) + 4)


@functools.lru_cache(maxsize=64)
def _windows(caps: Caps) -> list[tuple[float, int]]:
    """Caps.windows(), built once per distinct caps (they are immutable)."""
    return caps.windows()


@functools.lru_cache(maxsize=256)
def _zone(name: str) -> zoneinfo.ZoneInfo:
    return zoneinfo.ZoneInfo(name)


@functools.lru_cache(maxsize=16)
def _default_window(start: str, end: str, tz: str) -> QuietWindow:
    sh, sm = start.split(":")
    eh, em = end.split(":")
    return QuietWindow(int(sh) * 60 + int(sm), int(eh) * 60 + int(em), tz)
