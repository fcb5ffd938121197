"""How each input event changes a customer's state.

Consent is applied with a bias to the person's protection: a revocation is
always applied at once, while a grant older than the change already on file
(or as old as a revocation on file) is recorded in the audit log but not
applied; an unconfirmed (pending) opt-in never lifts a revocation, and a
change for `all` never overrides a newer change for one channel.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from msgspec import UNSET

from nudge.policy import engagement
from nudge.policy.clock import DAY, HOUR
from nudge.policy.config import ContactPolicy
from nudge.policy.cycles import observe
from nudge.policy.ids import hash64
from nudge.policy.locality import merge_clocks, observe_activity, person_zone
from nudge.policy.state import (
    CART_PRODUCTS,
    MAX_CATEGORIES,
    RECENT_VIEWS,
    ConsentEntry,
    CustomerState,
    QuietWindow,
    Recency,
    merge_orders,
    ordered,
    remember_order,
)
from nudge.schemas.events import (
    ClickEvent,
    ConsentEvent,
    FeedbackEvent,
    IdentityEvent,
    PreferencesEvent,
    PurchaseEvent,
)
from nudge.schemas.outputs import ConsentLogEntry, NotApplied

AFFINITY_HALF_LIFE = 14 * DAY
AFFINITY_WEIGHTS = {"product_view": 1.0, "add_to_cart": 3.0, "purchase": 5.0}
CHANNELS = ("email", "sms", "push", "web")
STATS_LIMIT = 64
ENGAGEMENTS = ("opened", "clicked", "converted")
DELIVERED = ("delivered", *ENGAGEMENTS)  # the channel reached the person
NEGATIVE = ("ignored", "dismissed")


#: Browsing (clickstream, on site or in the app) is the person's `web` channel:
#: `web:profiling` revoked means browsing is no longer profiled.
BROWSING_CHANNEL = "web"


def profiling_allowed(state: CustomerState, channel: str | None = None) -> bool:
    """Behavioural profiling stops when the person revokes it, for every
    channel (`all`) or for one: then nothing is learned from that channel's
    events and nothing learned is used to message them on it."""
    entries = state.consent.entries
    for key in ("all:profiling", f"{channel}:profiling") if channel else ("all:profiling",):
        entry = entries.get(key)
        if entry is not None and entry.status == "revoked":
            return False
    return True


def apply_click(state: CustomerState, event: ClickEvent) -> None:
    recency = state.recency
    ts = event.ts.timestamp()
    recency.last_seen[event.type] = ts
    if event.type == "add_to_cart":
        recency.cart_items += event.quantity
        recency.cart_value += (event.price or 0.0) * event.quantity
        recency.cart_category = event.category or recency.cart_category
        recency.cart_updated_at = ts
        if event.product_id:
            products = [p for p in recency.cart_products if p != event.product_id]
            recency.cart_products = [*products, event.product_id][-CART_PRODUCTS:]
    elif event.type == "remove_from_cart":
        recency.cart_items = max(0, recency.cart_items - event.quantity)
        recency.cart_value = max(0.0, recency.cart_value - (event.price or 0.0) * event.quantity)
        recency.cart_updated_at = ts
        if event.product_id in recency.cart_products:
            recency.cart_products.remove(event.product_id)
    elif event.type == "checkout_started":
        recency.cart_updated_at = ts
    if profiling_allowed(state, BROWSING_CHANNEL):
        if event.type == "product_view" and event.product_id:
            pairs = [p for p in viewed(recency) if p[0] != event.product_id]
            pairs = [*pairs, (event.product_id, event.category or "")][-RECENT_VIEWS:]
            recency.recent_views = [product for product, _ in pairs]
            recency.view_categories = [category for _, category in pairs]
        if event.category and event.type in AFFINITY_WEIGHTS:
            add_affinity(state, event.category, AFFINITY_WEIGHTS[event.type], ts)
        observe_activity(state.profile, ts, event.time_zone)
        state.touch("profile")
    elif event.time_zone:
        state.profile.device_zone = event.time_zone  # reported, not inferred: no profiling
        state.touch("profile")
    state.touch("recency")


def viewed(recency: Recency) -> list[tuple[str, str]]:
    """(product id, category or "") of the recent views, oldest first. The
    categories align from the newest: views stored before they were kept
    have none."""
    views = recency.recent_views
    categories = recency.view_categories[-len(views) :] if views else []
    padded = [""] * (len(views) - len(categories)) + categories
    return list(zip(views, padded, strict=True))


def add_affinity(state: CustomerState, category: str, weight: float, ts: float) -> None:
    """Exponentially decayed interest per category, capped to the strongest."""
    recency = state.recency
    if ts > recency.affinity_at:
        factor = 0.5 ** ((ts - recency.affinity_at) / AFFINITY_HALF_LIFE)
        recency.affinity = {c: s * factor for c, s in recency.affinity.items() if s * factor > 0.01}
        recency.affinity_at = ts
    else:
        weight *= 0.5 ** ((recency.affinity_at - ts) / AFFINITY_HALF_LIFE)
    recency.affinity[category] = recency.affinity.get(category, 0.0) + weight
    if len(recency.affinity) > MAX_CATEGORIES:
        weakest = min(recency.affinity, key=recency.affinity.__getitem__)
        del recency.affinity[weakest]


def known_order(state: CustomerState, event: PurchaseEvent) -> bool:
    """Was this order counted already? Shops resend orders with new event ids,
    or long after: counting one twice would double RFM and confirm it again."""
    return ordered(state.recency, _order_hash(event))


def apply_purchase(state: CustomerState, event: PurchaseEvent) -> None:
    recency = state.recency
    ts = event.ts.timestamp()
    remember_order(recency, _order_hash(event))
    recency.last_seen["purchase"] = ts
    recency.orders += 1
    recency.revenue = round(recency.revenue + event.total, 2)
    recency.cart_items = 0
    recency.cart_value = 0.0
    recency.cart_category = None
    recency.cart_products = []
    for category in dict.fromkeys(item.category for item in event.items):
        last = recency.last_purchase.get(category)
        if last is not None and ts < last:
            continue  # an older order arriving late: neither a cycle nor the latest
        if profiling_allowed(state):
            observe(recency.cycles, category, last, ts)
        recency.last_purchase[category] = ts
    for item in event.items:
        if profiling_allowed(state):
            add_affinity(state, item.category, AFFINITY_WEIGHTS["purchase"], ts)
    _bound_purchases(recency)
    state.touch("recency")


def _order_hash(event: PurchaseEvent) -> int:
    return hash64(f"order\x1f{event.order_id}")


def _bound_purchases(recency: Recency) -> None:
    """Keep the newest categories; remember when the newest evicted one was
    bought, so its cooldown still holds (see rules.action_reasons)."""
    purchases = recency.last_purchase
    if len(purchases) <= MAX_CATEGORIES:
        return
    oldest = sorted(purchases, key=purchases.__getitem__)
    for category in oldest[: len(purchases) - MAX_CATEGORIES]:
        recency.forgotten_purchase_at = max(recency.forgotten_purchase_at, purchases.pop(category))
        recency.cycles.pop(category, None)


def set_consent(
    state: CustomerState,
    customer_id: str,
    channel: str,
    purpose: str,
    status: str,
    source: str,
    event_id: str,
    event_ts: datetime,
    now: datetime,
) -> ConsentLogEntry:
    """Record one consent change (channel may be `all`) and its audit entry."""
    entries = state.consent.entries
    key = f"{channel}:{purpose}"
    current = entries.get(key)
    ts = event_ts.timestamp()
    applied = _supersedes(current, ts, status)
    not_applied: NotApplied | None = None if applied else "older_than_current"
    overall = entries.get(f"all:{purpose}")
    if applied and channel != "all" and status != "revoked" and _revoked(overall):
        # An opt-out of `all` stands until `all` is granted again; saying the
        # grant applied would misstate what the person now receives.
        applied, not_applied = False, "global_opt_out"
    if applied:
        entry = ConsentEntry(status=status, at=ts)
        entries[key] = entry
        changed = [channel]
        if channel == "all":
            # `all` speaks for every channel, but never over a newer change to one.
            changed = [
                c for c in CHANNELS if _supersedes(entries.get(f"{c}:{purpose}"), ts, status)
            ]
            for each in changed:
                entries[f"{each}:{purpose}"] = entry
        if status == "granted" and purpose == "marketing":
            blocked, blocked_at = state.consent.blocked, state.consent.blocked_at
            for each in changed:
                if each in blocked and ts > blocked_at.get(each, 0.0):
                    del blocked[each]
                    blocked_at.pop(each, None)
        state.touch("consent")
    return ConsentLogEntry(
        customer_id=customer_id,
        channel=channel,  # type: ignore[arg-type]
        purpose=purpose,  # type: ignore[arg-type]
        status=status,  # type: ignore[arg-type]
        previous_status=current.status if current else None,  # type: ignore[arg-type]
        applied=applied,
        not_applied=not_applied,
        source=source,
        event_id=event_id,
        event_ts=event_ts,
        recorded_at=now,
    )


def _revoked(entry: ConsentEntry | None) -> bool:
    return entry is not None and entry.status == "revoked"


def _supersedes(current: ConsentEntry | None, ts: float, status: str) -> bool:
    """A revocation always applies; a grant only over an older entry, and
    never over a revocation made at the same moment. An unconfirmed
    (pending) opt-in never lifts a revocation: only its confirmation can."""
    if status == "revoked" or current is None:
        return True
    if current.status == "revoked":
        return status == "granted" and ts > current.at
    return ts >= current.at


def block_channel(state: CustomerState, channel: str, why: str, ts: float) -> None:
    """A hard block (bounce, complaint) binds every message on the channel
    until a marketing grant made after it."""
    consent = state.consent
    consent.blocked[channel] = why
    consent.blocked_at[channel] = max(ts, consent.blocked_at.get(channel, 0.0))
    state.touch("consent")


def apply_consent(
    state: CustomerState, customer_id: str, event: ConsentEvent, now: datetime
) -> ConsentLogEntry:
    # Opting in to a channel's messages means giving its address (a double
    # opt-in confirms it): the channel is reachable from then on.
    if event.status == "granted" and event.purpose != "profiling":
        learn_address(state, event.channel)
    return set_consent(
        state,
        customer_id,
        event.channel,
        event.purpose,
        event.status,
        event.source,
        event.event_id,
        event.ts,
        now,
    )


def apply_preferences(state: CustomerState, event: PreferencesEvent) -> None:
    """Fields present replace what we had; null clears; absent is untouched."""
    profile = state.profile
    if not _unset(event.preferred_channel):
        profile.preferred_channel = event.preferred_channel
    if not _unset(event.quiet_hours):
        quiet = event.quiet_hours
        profile.quiet_hours = (
            QuietWindow(_minutes(quiet.start), _minutes(quiet.end), quiet.tz) if quiet else None
        )
        if quiet and _unset(event.time_zone):
            profile.time_zone = quiet.tz  # a window's zone is a stated zone too
    if not _unset(event.time_zone):
        profile.time_zone = event.time_zone
    if not _unset(event.max_contacts_per_week):
        profile.max_per_week = event.max_contacts_per_week
    if not _unset(event.interests):
        profile.interests = list(event.interests or [])
    if not _unset(event.snooze_until):
        profile.snooze_until = event.snooze_until.timestamp() if event.snooze_until else 0.0
    if not _unset(event.reachable_channels):  # the contact details on file now
        profile.reachable = list(dict.fromkeys(event.reachable_channels or []))
        profile.reachable_stated = True
    state.touch("profile")


def apply_identity(state: CustomerState, event: IdentityEvent) -> None:
    """On the customer's side: what an identify/alias tells us directly."""
    profile = state.profile
    profile.identified = True
    for channel in event.reachable_channels:
        if channel not in profile.reachable:
            profile.reachable.append(channel)
    if event.reachable_channels:  # an empty list is the default: it says nothing
        profile.reachable_stated = True
    state.touch("profile")


def learn_address(state: CustomerState, channel: str) -> None:
    """The person has contact details for the channel: they granted consent
    on it, or a message on it was delivered (rules.reachable). Evidence only
    counts until contact details are stated: then the statement is the truth."""
    known = state.profile.reachable
    if state.profile.reachable_stated:
        return
    if channel in CHANNELS and channel != BROWSING_CHANNEL and channel not in known:
        known.append(channel)
        state.touch("profile")


def learn_outcome(state: CustomerState, event: FeedbackEvent, policy: ContactPolicy) -> None:
    """Count a message's known outcome once (policy/engagement.py), in the
    local block it reached the person; a receipt's opens teach nothing about
    marketing, so transactional messages are left out."""
    outcome = engagement.outcome_of(event.type)
    if outcome == engagement.UNKNOWN:
        return
    short = _short(event.decision_id)
    if short and any(c.decision_id == short for c in state.fatigue.transactional):
        return
    contact = next((c for c in state.fatigue.contacts if short and c.decision_id == short), None)
    before = contact.outcome if contact is not None else engagement.UNKNOWN
    at = contact.at if contact is not None else event.ts.timestamp()
    zone, _ = person_zone(state.profile, policy.quiet_hours.tz)
    block = engagement.block_of(datetime.fromtimestamp(at, ZoneInfo(zone)))
    engagement.record(state, event.channel, block, before, outcome)
    if contact is not None:
        contact.outcome = max(contact.outcome, outcome)


def apply_feedback(
    state: CustomerState,
    customer_id: str,
    event: FeedbackEvent,
    policy: ContactPolicy,
    now: datetime,
) -> list[ConsentLogEntry]:
    """Close the loop: engagement relaxes fatigue, neglect and complaints
    raise it, unsubscribes and complaints revoke the channel."""
    fatigue = state.fatigue
    ts = event.ts.timestamp()
    channel = event.channel
    kind = event.type
    logs: list[ConsentLogEntry] = []
    learn_outcome(state, event, policy)
    if kind in DELIVERED:
        learn_address(state, channel)
    if kind in ENGAGEMENTS:
        fatigue.engaged[channel] = min(
            fatigue.engaged.get(channel, 0) + 1, fatigue.sent.get(channel, 0) + 1
        )
        fatigue.ignored_streak = 0
        fatigue.backoff_until = max(0.0, _complaint_backoff(state, policy))
        fatigue.last_engaged = max(fatigue.last_engaged, ts)
        if kind == "converted":
            fatigue.conversions += 1
            for contact in fatigue.contacts:
                if contact.decision_id == _short(event.decision_id):
                    contact.converted = True
    elif kind in NEGATIVE:
        fatigue.ignored_streak += 1
        over = fatigue.ignored_streak - policy.fatigue.ignored_threshold
        if over >= 0:
            hours = min(policy.fatigue.backoff_hours * 2**over, policy.fatigue.max_backoff_hours)
            fatigue.backoff_until = max(fatigue.backoff_until, now.timestamp() + hours * HOUR)
    elif kind in ("unsubscribed", "complained"):
        logs.append(
            set_consent(
                state, customer_id, channel, "marketing", "revoked",
                f"feedback:{kind}", event.event_id, event.ts, now,
            )
        )  # fmt: skip
        if kind == "complained":
            block_channel(state, channel, "complained", ts)
            fatigue.last_complaint = max(fatigue.last_complaint, ts)
            fatigue.backoff_until = max(fatigue.backoff_until, _complaint_backoff(state, policy))
    elif kind == "bounced":
        block_channel(state, channel, "bounced", ts)
        if channel in state.profile.reachable:  # the address on file is dead
            state.profile.reachable.remove(channel)
            state.touch("profile")
    state.touch("fatigue")
    return logs


def _complaint_backoff(state: CustomerState, policy: ContactPolicy) -> float:
    last = state.fatigue.last_complaint
    return last + policy.fatigue.complaint_backoff_hours * HOUR if last else 0.0


def record_contact_stats(state: CustomerState, channel: str) -> None:
    """Count a message sent on a channel; halve counts to keep them recent."""
    fatigue = state.fatigue
    fatigue.sent[channel] = fatigue.sent.get(channel, 0) + 1
    if fatigue.sent[channel] >= STATS_LIMIT:
        fatigue.sent[channel] //= 2
        fatigue.engaged[channel] = fatigue.engaged.get(channel, 0) // 2


def merge_states(target: CustomerState, source: CustomerState) -> None:
    """Fold an anonymous visitor's state into the customer they turned out to be.

    Behaviour (recency, affinity, carts) is combined. Consent and fatigue are
    merged conservatively: any revocation, block or back-off on either side
    survives, a grant only where the customer had none.
    """
    _merge_recency(target, source)
    _merge_fatigue(target, source)
    for key, entry in source.consent.entries.items():
        mine = target.consent.entries.get(key)
        if mine is None or (entry.status == "revoked" and mine.status != "revoked"):
            target.consent.entries[key] = entry
    for channel, why in source.consent.blocked.items():
        target.consent.blocked.setdefault(channel, why)
        at = source.consent.blocked_at.get(channel, 0.0)
        target.consent.blocked_at[channel] = max(at, target.consent.blocked_at.get(channel, 0.0))
    profile = target.profile
    profile.identified = True
    profile.merged_ids += 1
    if profile.preferred_channel is None:
        profile.preferred_channel = source.profile.preferred_channel
    if profile.quiet_hours is None:
        profile.quiet_hours = source.profile.quiet_hours
    merge_clocks(profile, source.profile)
    profile.snooze_until = max(profile.snooze_until, source.profile.snooze_until)
    for channel in source.profile.reachable:
        learn_address(target, channel)
    profile.reachable_stated = profile.reachable_stated or source.profile.reachable_stated
    target.touch("recency", "fatigue", "consent", "profile")


def _merge_recency(target: CustomerState, source: CustomerState) -> None:
    mine, theirs = target.recency, source.recency
    for kind, ts in theirs.last_seen.items():
        mine.last_seen[kind] = max(ts, mine.last_seen.get(kind, 0.0))
    pairs = viewed(mine)
    pairs += [p for p in viewed(theirs) if p[0] not in mine.recent_views]
    mine.recent_views = [product for product, _ in pairs[-RECENT_VIEWS:]]
    mine.view_categories = [category for _, category in pairs[-RECENT_VIEWS:]]
    for category, own in theirs.cycles.items():
        if own[0] > mine.cycles.get(category, (0.0, 0.0))[0]:
            mine.cycles[category] = list(own)  # the longer own history speaks
    for category, score in theirs.affinity.items():
        add_affinity(target, category, score, theirs.affinity_at)
    for category, ts in theirs.last_purchase.items():
        mine.last_purchase[category] = max(ts, mine.last_purchase.get(category, 0.0))
    mine.forgotten_purchase_at = max(mine.forgotten_purchase_at, theirs.forgotten_purchase_at)
    _bound_purchases(mine)
    mine.orders += theirs.orders
    merge_orders(mine, theirs)
    mine.revenue = round(mine.revenue + theirs.revenue, 2)
    if theirs.cart_updated_at > mine.cart_updated_at:
        mine.cart_items = theirs.cart_items
        mine.cart_value = theirs.cart_value
        mine.cart_category = theirs.cart_category
        mine.cart_updated_at = theirs.cart_updated_at
        mine.cart_products = list(theirs.cart_products)


def _merge_fatigue(target: CustomerState, source: CustomerState) -> None:
    mine, theirs = target.fatigue, source.fatigue
    mine.contacts = sorted(mine.contacts + theirs.contacts, key=lambda c: c.at)
    for action, ts in theirs.last_action.items():
        mine.last_action[action] = max(ts, mine.last_action.get(action, 0.0))
    mine.ignored_streak = max(mine.ignored_streak, theirs.ignored_streak)
    mine.backoff_until = max(mine.backoff_until, theirs.backoff_until)
    mine.last_complaint = max(mine.last_complaint, theirs.last_complaint)


def _unset(value: object) -> bool:
    return value is UNSET


def _minutes(hhmm: str) -> int:
    hours, minutes = hhmm.split(":")
    return int(hours) * 60 + int(minutes)


def _short(decision_id: str | None) -> str:
    return (decision_id or "")[:16]
