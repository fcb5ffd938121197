"""One or more examples per rule and reason code, on small hand-built
catalogs and policies so each test shows exactly one rule at work."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from nudge.policy.engine import Engine
from nudge.policy.ids import in_holdout
from nudge.policy.state import MAX_CONTACTS, TABLES, CustomerState, decode_state, encode_state
from nudge.schemas.codec import encode
from nudge.schemas.events import IdentityEvent
from nudge.schemas.outputs import Action, Suppression
from tests.unit.policy_kit import (
    DAY,
    HOUR,
    T0,
    Person,
    acted,
    catalog,
    click,
    consent,
    decode,
    driver,
    feed,
    feedback,
    held,
    marketing,
    opt_in,
    policy,
    preferences,
    purchase,
    reasons_of,
    suppressed,
    transactional,
)

MINUTE = timedelta(minutes=1)
BERLIN_NIGHT = {"start": "22:00", "end": "07:00", "tz": "Europe/Berlin"}


def engine(*actions: dict, **policy_fields: object) -> Engine:
    return Engine(catalog(*(actions or (marketing(),))), policy(**policy_fields))


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


# -- consent -------------------------------------------------------------------------


def test_marketing_needs_a_granted_consent_on_the_channel() -> None:
    d = driver(marketing(channels=["email", "push"]))
    s = suppressed(feed(d, click("c-1", T0)))
    assert s.reasons == ["consent"]
    assert s.candidates[0].channel_reasons == {"email": ["consent"], "push": ["consent"]}
    feed(d, consent("c-1", T0 + MINUTE, "push"))
    assert acted(feed(d, click("c-1", T0 + 2 * MINUTE))).channel == "push"


def test_pending_double_opt_in_is_not_consent_until_confirmed() -> None:
    d = driver()
    feed(d, consent("c-1", T0, "email", "pending"))
    assert suppressed(feed(d, click("c-1", T0 + MINUTE))).reasons == ["consent"]
    feed(d, consent("c-1", T0 + 2 * MINUTE, "email", "granted"))
    assert acted(feed(d, click("c-1", T0 + 3 * MINUTE))).channel == "email"


def test_a_revocation_rules_out_only_its_channel() -> None:
    d = driver(marketing(channels=["email", "push"]))
    opt_in(d, "c-1", T0, "email", "push")
    feed(d, consent("c-1", T0 + MINUTE, "email", "revoked"))
    assert acted(feed(d, click("c-1", T0 + 2 * MINUTE))).channel == "push"
    feed(d, consent("c-1", T0 + 3 * MINUTE, "push", "revoked"))
    s = suppressed(feed(d, click("c-1", T0 + 4 * MINUTE)))
    assert s.candidates[0].channel_reasons == {"email": ["consent"], "push": ["consent"]}


def test_a_grant_for_all_covers_every_channel() -> None:
    d = driver(marketing(channels=["sms"]))
    feed(d, consent("c-1", T0, "all"))
    # A grant for `all` gives no phone number: sms needs one on file.
    assert suppressed(feed(d, click("c-1", T0 + MINUTE))).reasons == ["no_channel"]
    feed(d, preferences("c-1", T0 + MINUTE, reachable_channels=["email", "sms"]))
    assert acted(feed(d, click("c-1", T0 + 2 * MINUTE))).channel == "sms"


def test_global_opt_out_stands_over_channel_grants_until_all_is_granted_again() -> None:
    d = driver(marketing(channels=["email", "push"]))
    opt_in(d, "c-1", T0, "email", "push")
    feed(d, consent("c-1", T0 + MINUTE, "all", "revoked"))
    assert suppressed(feed(d, click("c-1", T0 + 2 * MINUTE))).reasons == ["consent"]
    feed(d, consent("c-1", T0 + 3 * MINUTE, "email", "granted"))  # the global opt-out stands
    assert suppressed(feed(d, click("c-1", T0 + 4 * MINUTE))).reasons == ["consent"]
    feed(d, consent("c-1", T0 + 5 * MINUTE, "all", "granted"))
    assert acted(feed(d, click("c-1", T0 + 6 * MINUTE))).channel == "email"


def test_an_older_grant_for_all_cannot_undo_a_newer_channel_revocation() -> None:
    d = driver(marketing(channels=["email", "push"]))
    opt_in(d, "c-1", T0, "email", "push")
    feed(d, consent("c-1", T0 + 2 * HOUR, "email", "revoked"))
    late = consent("c-1", T0 + HOUR, "all", "granted")  # sent earlier, arrives later
    feed(d, late, now=T0 + 3 * HOUR)
    action = acted(feed(d, click("c-1", T0 + 3 * HOUR)))
    assert action.channel == "push"
    assert d.state("c-1").consent.entries["email:marketing"].status == "revoked"


def test_a_grant_at_the_same_instant_as_a_revocation_does_not_apply() -> None:
    d = driver()
    feed(d, consent("c-1", T0, "email", "revoked"))
    (log,) = feed(d, consent("c-1", T0, "email", "granted"), now=T0 + MINUTE).consent_log
    assert log.applied is False
    assert suppressed(feed(d, click("c-1", T0 + 2 * MINUTE))).reasons == ["consent"]


# -- hard channel blocks -----------------------------------------------------------


def test_a_bounce_blocks_the_channel_for_marketing_and_transactional() -> None:
    p = Person(engine(marketing(channels=["email"]), transactional(channels=["email", "sms"])))
    p.opt_in(T0)
    p.send(feedback(p.id, T0 + MINUTE, "bounced", "email"))
    s = p.suppress(click(p.id, T0 + 2 * MINUTE))
    assert s.reasons == ["channel_blocked"]
    assert p.act(purchase(p.id, T0 + 3 * MINUTE)).channel == "sms"
    p.send(feedback(p.id, T0 + 4 * MINUTE, "bounced", "sms"))
    s = p.suppress(purchase(p.id, T0 + 5 * MINUTE))
    assert s.candidates[0].channel_reasons == {
        "email": ["channel_blocked"],
        "sms": ["channel_blocked"],
    }


def test_a_complaint_blocks_and_revokes_even_for_transactional_messages() -> None:
    p = Person(engine(marketing(channels=["email"]), transactional(channels=["email"])))
    p.opt_in(T0)
    p.send(feedback(p.id, T0 + MINUTE, "complained", "email"))
    s = p.suppress(click(p.id, T0 + 2 * MINUTE))
    # The complaint back-off rules the promo out as a whole, so its channels
    # are not examined on the hot path; the block and revocation are in state.
    assert reasons_of(s, "promo") == ["fatigue"]
    assert p.state.consent.blocked["email"] == "complained"
    assert p.state.consent.entries["email:marketing"].status == "revoked"
    s = p.suppress(purchase(p.id, T0 + 3 * MINUTE))
    assert reasons_of(s, "receipt") == ["channel_blocked"]


def test_only_a_grant_made_after_the_block_lifts_it() -> None:
    p = Person(engine(transactional(channels=["email"])))
    original = consent(p.id, T0, "email")
    p.send(original)
    p.send(feedback(p.id, T0 + DAY, "bounced", "email"))
    # The original opt-in, redelivered long after (beyond the dedupe window):
    p.state.profile.processed = b""
    p.send(original, now=T0 + 2 * DAY)
    assert p.suppress(purchase(p.id, T0 + 2 * DAY)).reasons == ["channel_blocked"]
    p.send(consent(p.id, T0 + 3 * DAY, "email"))  # a fresh opt-in, e.g. a new address
    assert p.act(purchase(p.id, T0 + 3 * DAY + MINUTE)).channel == "email"


# -- who the person is ----------------------------------------------------------------


def test_relationship_level_unknown_visitor_is_not_contacted() -> None:
    p = Person(engine(marketing(min_level="identified", channels=["web"])), "anon-7")
    anonymous = click(p.id, T0)
    anonymous["anonymous_id"] = anonymous.pop("customer_id")
    grant = consent(p.id, T0 - MINUTE, "web")
    grant["anonymous_id"] = grant.pop("customer_id")
    p.send(grant)
    assert p.suppress(anonymous).reasons == ["relationship_level"]
    assert p.act(click(p.id, T0 + MINUTE)).channel == "web"  # now with a customer id


def test_relationship_level_engaged_needs_recent_engagement_or_three_orders() -> None:
    p = Person(engine(marketing(min_level="engaged")))
    p.opt_in(T0 - DAY)  # known: identified and reachable with consent
    assert p.suppress(click(p.id, T0)).reasons == ["relationship_level"]
    p.send(feedback(p.id, T0 + MINUTE, "opened", "email"))
    assert p.act(click(p.id, T0 + 2 * MINUTE)).action_id == "promo"
    q = Person(engine(marketing(min_level="engaged")), "c-2")
    q.opt_in(T0 - DAY)
    for i in range(3):
        q.send(purchase(q.id, T0 - DAY * 60 + i * MINUTE))
    assert q.act(click(q.id, T0)).action_id == "promo"


def test_not_interested_unless_stated_or_shown_interest() -> None:
    p = Person(engine(marketing(interests=["garden"])))
    p.opt_in(T0)
    assert p.suppress(click(p.id, T0 + MINUTE, category="lighting")).reasons == ["not_interested"]
    p.send(preferences(p.id, T0 + 2 * MINUTE, interests=["garden"]))
    assert p.act(click(p.id, T0 + 3 * MINUTE)).action_id == "promo"

    q = Person(engine(marketing(interests=["garden"])), "c-2")
    q.opt_in(T0)
    q.send(click(q.id, T0 + MINUTE, "search", category="garden"))  # no affinity from search
    q.send(click(q.id, T0 + 2 * MINUTE, "add_to_cart", category="garden"))
    assert q.act(click(q.id, T0 + 3 * MINUTE, category="garden")).action_id == "promo"
    # Without profiling consent, behaviour says nothing about interests.
    q.send(consent(q.id, T0 + 4 * MINUTE, "all", "revoked", "profiling"))
    assert q.suppress(click(q.id, T0 + 5 * MINUTE)).reasons == ["not_interested"]


# -- the holdout ---------------------------------------------------------------------


def test_holdout_is_stable_per_customer_and_has_the_configured_share() -> None:
    ids = [f"cust-{i}" for i in range(20_000)]
    held = [i for i in ids if in_holdout(i, 0.05, "salt-a")]
    assert abs(len(held) / len(ids) - 0.05) < 0.005
    assert held == [i for i in ids if in_holdout(i, 0.05, "salt-a")]
    assert held != [i for i in ids if in_holdout(i, 0.05, "salt-b")]  # a new salt reshuffles
    assert not any(in_holdout(i, 0.0, "salt-a") for i in ids[:1000])


def test_holdout_suppresses_marketing_with_what_would_have_been_sent() -> None:
    share, salt = 0.05, "nudge-holdout-v1"
    held = next(f"cust-{i}" for i in range(1000) if in_holdout(f"cust-{i}", share, salt))
    treated = next(f"cust-{i}" for i in range(1000) if not in_holdout(f"cust-{i}", share, salt))
    actions = (marketing(channels=["email", "push"]), transactional())
    rules = {"holdout": {"share": share, "salt": salt}}
    p = Person(engine(*actions, **rules), held)
    p.opt_in(T0)
    s = p.suppress(click(p.id, T0 + MINUTE))
    assert s.reasons == ["holdout"] and s.experiment_arm == "holdout"
    assert s.would_be is not None and s.would_be.action_id == "promo"
    assert s.would_be.channel == "email" and s.would_be.score > 0
    receipt = p.act(purchase(p.id, T0 + 2 * MINUTE))  # transactional: not held out
    assert receipt.action_id == "receipt" and receipt.experiment_arm == "holdout"
    q = Person(engine(*actions, **rules), treated)
    q.opt_in(T0)
    assert q.act(click(q.id, T0 + MINUTE)).experiment_arm == "treatment"


# -- cooldowns and caps -----------------------------------------------------------------


def test_purchase_cooldown_is_per_category_with_its_own_length() -> None:
    rules = {"purchase_cooldown": {"default_days": 14, "categories": {"garden": 7}}}
    p = Person(engine(marketing(category="$event"), **rules))
    p.opt_in(T0)
    p.send(purchase(p.id, T0, "garden", "lighting"))
    assert p.suppress(click(p.id, T0 + 6.9 * DAY, category="garden")).reasons == [
        "purchase_cooldown"
    ]
    assert p.act(click(p.id, T0 + 7 * DAY + MINUTE, category="garden")).category == "garden"
    assert p.suppress(click(p.id, T0 + 13 * DAY, category="lighting")).reasons == [
        "purchase_cooldown"
    ]
    assert p.act(click(p.id, T0 + 14 * DAY + MINUTE, category="lighting")).category == "lighting"
    assert p.act(click(p.id, T0 + 14 * DAY + 2 * MINUTE, category="kitchen")).category == "kitchen"


def test_purchase_cooldown_of_a_fixed_category_whatever_was_viewed() -> None:
    p = Person(engine(marketing(category="air_filters")))
    p.opt_in(T0)
    p.send(purchase(p.id, T0, "air_filters"))
    s = p.suppress(click(p.id, T0 + DAY, category="lighting"))
    assert s.reasons == ["purchase_cooldown"]


def test_purchase_cooldown_survives_eviction_from_the_bounded_purchase_map() -> None:
    p = Person(engine(marketing(category="$event")))
    p.opt_in(T0)
    for i in range(17):  # one category more than the state keeps
        p.send(purchase(p.id, T0 + i * HOUR, f"cat-{i}"))
    assert "cat-0" not in p.state.recency.last_purchase
    s = p.suppress(click(p.id, T0 + 2 * DAY, category="cat-0"))
    assert s.reasons == ["purchase_cooldown"]


def test_action_cooldown() -> None:
    d = driver(marketing(cooldown_hours=6))
    opt_in(d, "c-1", T0)
    acted(feed(d, click("c-1", T0)))
    assert suppressed(feed(d, click("c-1", T0 + 5 * HOUR))).reasons == ["action_cooldown"]
    acted(feed(d, click("c-1", T0 + 6 * HOUR + MINUTE)))


def test_action_cap_per_week() -> None:
    d = driver(marketing(max_per_week=2, channels=["web"]))
    opt_in(d, "c-1", T0)
    acted(feed(d, click("c-1", T0)))
    acted(feed(d, click("c-1", T0 + DAY)))
    assert suppressed(feed(d, click("c-1", T0 + 2 * DAY))).reasons == ["action_cap"]
    acted(feed(d, click("c-1", T0 + 7 * DAY + MINUTE)))


def test_channel_cap_moves_to_another_channel_then_suppresses() -> None:
    caps = {"email": {"day": 1}, "push": {"hour": 1}}
    d = driver(marketing(channels=["email", "push"]), channel_caps=caps)
    opt_in(d, "c-1", T0)
    assert acted(feed(d, click("c-1", T0))).channel == "email"
    assert acted(feed(d, click("c-1", T0 + MINUTE))).channel == "push"
    s = suppressed(feed(d, click("c-1", T0 + 2 * MINUTE)))
    assert s.candidates[0].channel_reasons == {"email": ["channel_cap"], "push": ["channel_cap"]}
    assert acted(feed(d, click("c-1", T0 + HOUR + 2 * MINUTE))).channel == "push"


def test_global_cap_counts_every_channel() -> None:
    d = driver(marketing(channels=["email", "push", "sms"]), global_caps={"day": 2})
    opt_in(d, "c-1", T0)
    acted(feed(d, click("c-1", T0)))
    acted(feed(d, click("c-1", T0 + HOUR)))
    s = suppressed(feed(d, click("c-1", T0 + 2 * HOUR)))
    assert s.reasons == ["global_cap"]
    assert acted(feed(d, click("c-1", T0 + DAY + MINUTE))).action_id == "promo"


def test_caps_count_deferred_messages_where_they_will_land() -> None:
    actions = (
        marketing("mail", channels=["email"], triggers=[{"event": "search"}]),
        marketing("banner", channels=["web"]),
        marketing("mail_again", channels=["email"], triggers=[{"event": "page_view"}]),
    )
    d = driver(*actions, global_caps={"hour": 1}, quiet_hours=BERLIN_NIGHT)
    opt_in(d, "c-1", T0)
    at_0630 = utc(2026, 3, 3, 5, 30)  # 06:30 in Berlin: quiet until 07:00
    mail = held(feed(d, click("c-1", at_0630, "search")))
    assert mail.send_after == utc(2026, 3, 3, 6, 0)
    # 06:45: the banner would land 15 minutes before the deferred mail.
    assert suppressed(feed(d, click("c-1", at_0630 + 15 * MINUTE))).reasons == ["global_cap"]
    (released,) = d.advance_to(utc(2026, 3, 3, 6, 0)).actions  # the mail, at 07:00 in Berlin
    assert released.decision_id == mail.decision_id
    q = driver(*actions, channel_caps={"email": {"hour": 1}}, quiet_hours=BERLIN_NIGHT)
    opt_in(q, "c-1", T0)
    held(feed(q, click("c-1", at_0630, "search")))
    s = suppressed(feed(q, click("c-1", at_0630 + 10 * MINUTE, "page_view")))
    assert s.reasons == ["channel_cap"]


def test_the_contact_ring_never_forgets_a_contact_a_window_can_see() -> None:
    """Only MAX_CONTACTS contacts are kept: once that many fall in a week,
    nudge stops rather than forget one and overrun a cap."""
    actions = (
        marketing("mail", channels=["email"], triggers=[{"event": "search"}]),
        marketing("banner", channels=["web"]),
    )
    p = Person(engine(*actions, channel_caps={"email": {"week": 1}}))
    p.opt_in(T0)
    assert p.act(click(p.id, T0, "search")).channel == "email"
    banners = [p.send(click(p.id, T0 + i * 10 * MINUTE)).decision for i in range(1, 40)]
    assert sum(isinstance(d, Action) for d in banners) == MAX_CONTACTS - 1
    assert {tuple(d.reasons) for d in banners if isinstance(d, Suppression)} == {("global_cap",)}
    assert p.suppress(click(p.id, T0 + 2 * DAY, "search")).reasons == ["channel_cap"]
    assert p.act(click(p.id, T0 + 7 * DAY + MINUTE, "search")).channel == "email"


def test_a_contact_deferred_across_a_dst_change_does_not_evict_one_still_in_a_window() -> None:
    """Deferral across the autumn change can exceed 24 h; contacts are pruned
    relative to the decision time, not the (later) delivery time."""
    actions = (
        marketing("banner", channels=["web"]),
        marketing("mail", channels=["email"], triggers=[{"event": "search"}], expiry_hours=48),
    )
    p = Person(engine(*actions, channel_caps={"web": {"week": 1}}))
    midnight = utc(2026, 10, 24, 22, 0, 30)  # 00:00:30 on 25 October in Berlin (a 25 h day)
    p.opt_in(midnight - 8 * DAY)
    all_day = {"start": "00:00", "end": "23:59", "tz": "Europe/Berlin"}
    p.send(preferences(p.id, midnight - 8 * DAY, quiet_hours=all_day))
    first = p.act(click(p.id, midnight - 7 * DAY + 30 * MINUTE))  # web: silent, sent at once
    assert first.channel == "web"
    mail = p.hold(click(p.id, midnight, "search"))
    assert mail.send_after is not None
    assert mail.send_after - midnight > timedelta(hours=24)
    # A banner one second later would be the second within a week of the first.
    assert p.suppress(click(p.id, midnight + timedelta(seconds=1))).reasons == ["channel_cap"]


# -- fatigue ------------------------------------------------------------------------------


FATIGUE = {"ignored_threshold": 3, "backoff_hours": 24, "max_backoff_hours": 72}


def test_fatigue_backs_off_exponentially_after_n_ignored() -> None:
    p = Person(engine(marketing(channels=["web"]), fatigue=FATIGUE))
    p.opt_in(T0)
    for i in range(2):
        p.send(feedback(p.id, T0 + i * MINUTE, "ignored", "web"))
    assert p.state.fatigue.backoff_until == 0
    p.act(click(p.id, T0 + 3 * MINUTE))
    third = T0 + 4 * MINUTE
    p.send(feedback(p.id, third, "dismissed", "web"), now=third)
    assert p.state.fatigue.backoff_until == (third + 24 * HOUR).timestamp()
    assert p.suppress(click(p.id, third + 23 * HOUR)).reasons == ["fatigue"]
    p.act(click(p.id, third + 24 * HOUR + MINUTE))
    fourth = third + 25 * HOUR
    p.send(feedback(p.id, fourth, "ignored", "web"), now=fourth)
    assert p.state.fatigue.backoff_until == (fourth + 48 * HOUR).timestamp()
    fifth = fourth + 49 * HOUR
    p.send(feedback(p.id, fifth, "ignored", "web"), now=fifth)
    assert p.state.fatigue.backoff_until == (fifth + 72 * HOUR).timestamp()  # capped


@pytest.mark.parametrize("engagement", ["opened", "clicked", "converted"])
def test_engagement_resets_fatigue(engagement: str) -> None:
    p = Person(engine(marketing(channels=["web"]), fatigue=FATIGUE))
    p.opt_in(T0)
    for i in range(4):
        p.send(feedback(p.id, T0 + i * MINUTE, "ignored", "web"))
    assert p.suppress(click(p.id, T0 + HOUR)).reasons == ["fatigue"]
    p.send(feedback(p.id, T0 + 2 * HOUR, engagement, "web"))
    assert p.state.fatigue.ignored_streak == 0
    p.act(click(p.id, T0 + 2 * HOUR + MINUTE))


def test_a_complaint_backoff_outlasts_engagement() -> None:
    p = Person(engine(marketing(channels=["web"])))
    p.opt_in(T0)
    p.send(feedback(p.id, T0, "complained", "sms"))
    p.send(feedback(p.id, T0 + HOUR, "clicked", "web"))
    assert p.suppress(click(p.id, T0 + 2 * HOUR)).reasons == ["fatigue"]
    assert p.act(click(p.id, T0 + 31 * DAY)).channel == "web"  # 720 h by default


# -- quiet hours ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("window", "event_at", "send_after"),
    [
        # 23:30 in Berlin (UTC+1): wait for 07:00 the next morning.
        (BERLIN_NIGHT, utc(2026, 3, 2, 22, 30), utc(2026, 3, 3, 6, 0)),
        # 01:00 in Berlin, past midnight: 07:00 the same day.
        (BERLIN_NIGHT, utc(2026, 3, 3, 0, 0), utc(2026, 3, 3, 6, 0)),
        # A window that does not cross midnight, in New York (UTC-5).
        (
            {"start": "13:00", "end": "15:00", "tz": "America/New_York"},
            utc(2026, 3, 2, 19, 10),
            utc(2026, 3, 2, 20, 0),
        ),
        # Spring forward in Berlin: the night is an hour shorter.
        (BERLIN_NIGHT, utc(2026, 3, 28, 22, 0), utc(2026, 3, 29, 5, 0)),
        # Fall back in Berlin: the night is an hour longer.
        (BERLIN_NIGHT, utc(2026, 10, 24, 21, 0), utc(2026, 10, 25, 6, 0)),
        # Kolkata (UTC+5:30) has no DST but a half-hour offset.
        (
            {"start": "21:00", "end": "08:30", "tz": "Asia/Kolkata"},
            utc(2026, 3, 2, 17, 0),
            utc(2026, 3, 3, 3, 0),
        ),
    ],
)
def test_quiet_hours_defer_to_their_end_in_the_persons_zone(
    window: dict, event_at: datetime, send_after: datetime
) -> None:
    d = driver(marketing(channels=["email"]), start=event_at - DAY)
    opt_in(d, "c-1", event_at - DAY)
    feed(d, preferences("c-1", event_at - DAY, quiet_hours=window))
    action = held(feed(d, click("c-1", event_at)))
    assert action.send_after == send_after
    assert "deferred to the end of quiet hours" in action.reasons
    assert d.advance_to(send_after - MINUTE) == []
    (released,) = d.advance_to(send_after).actions
    assert released.decision_id == action.decision_id and released.decided_at == send_after


def test_outside_quiet_hours_nothing_waits() -> None:
    d = driver(marketing(channels=["email"]))
    opt_in(d, "c-1", T0)
    feed(d, preferences("c-1", T0, quiet_hours=BERLIN_NIGHT))
    assert acted(feed(d, click("c-1", T0 + MINUTE))).send_after is None  # 12:01 in Berlin


def test_the_policy_default_applies_when_the_person_has_none() -> None:
    d = driver(marketing(channels=["email"]), quiet_hours=BERLIN_NIGHT)
    opt_in(d, "c-1", T0)
    opt_in(d, "c-2", T0)
    feed(d, preferences("c-2", T0, quiet_hours={"start": "02:00", "end": "05:00", "tz": "UTC"}))
    late = utc(2026, 3, 2, 22, 30)
    assert held(feed(d, click("c-1", late))).send_after == utc(2026, 3, 3, 6, 0)
    assert acted(feed(d, click("c-2", late))).send_after is None  # theirs wins


def test_a_silent_channel_is_used_at_once_instead_of_waiting() -> None:
    d = driver(marketing(channels=["email", "web"]))
    opt_in(d, "c-1", T0)
    feed(d, preferences("c-1", T0, quiet_hours=BERLIN_NIGHT))
    action = acted(feed(d, click("c-1", utc(2026, 3, 2, 22, 30))))
    assert action.channel == "web" and action.send_after is None


def test_quiet_hours_rule_out_a_channel_when_waiting_would_pass_the_expiry() -> None:
    d = driver(marketing(channels=["email"], expiry_hours=1))
    opt_in(d, "c-1", T0)
    feed(d, preferences("c-1", T0, quiet_hours=BERLIN_NIGHT))
    s = suppressed(feed(d, click("c-1", utc(2026, 3, 2, 22, 30))))
    assert s.reasons == ["quiet_hours"]
    assert s.candidates[0].channel_reasons == {"email": ["quiet_hours"]}


# -- snooze, expiry, reachability ---------------------------------------------------------


def test_snooze_pauses_marketing_until_it_ends_or_is_cleared() -> None:
    p = Person(engine(marketing(), transactional()))
    p.opt_in(T0)
    p.send(preferences(p.id, T0, snooze_until=(T0 + 2 * DAY).isoformat()))
    assert p.suppress(click(p.id, T0 + DAY)).reasons == ["snooze"]
    assert p.act(purchase(p.id, T0 + DAY + MINUTE)).action_id == "receipt"
    assert p.act(click(p.id, T0 + 2 * DAY + MINUTE)).action_id == "promo"
    p.send(preferences(p.id, T0 + 3 * DAY, snooze_until=(T0 + 9 * DAY).isoformat()))
    p.send(preferences(p.id, T0 + 3 * DAY + MINUTE, snooze_until=None))
    assert p.act(click(p.id, T0 + 3 * DAY + 2 * MINUTE)).action_id == "promo"


def test_a_trigger_older_than_the_expiry_is_not_acted_on() -> None:
    p = Person(engine(marketing(expiry_hours=12)))
    p.opt_in(T0 - DAY)
    s = p.suppress(click(p.id, T0), now=T0 + 13 * HOUR)
    assert s.reasons == ["expired"]
    assert p.act(click(p.id, T0 + 13 * HOUR), now=T0 + 24 * HOUR).action_id == "promo"


def _identified(engine: Engine, customer: str, reachable: list[str]) -> Person:
    """A customer whose identify event said which channels we can reach."""
    p = Person(engine, customer)
    event = IdentityEvent(
        event_id=f"id-{customer}",
        ts=T0,
        type="identify",
        customer_id=customer,
        anonymous_id="anon-1",
        reachable_channels=reachable,  # type: ignore[arg-type]
    )
    assert engine.merge(p.state, CustomerState(), event)
    return p


def test_no_channel_when_the_person_cannot_be_reached_on_any_offered_channel() -> None:
    e = engine(marketing("text", channels=["sms", "push"]))
    p = _identified(e, "c-1", ["email"])
    p.opt_in(T0)
    s = p.suppress(click(p.id, T0 + MINUTE))
    assert s.reasons == ["no_channel"]
    assert s.candidates[0].channel_reasons == {"sms": ["no_channel"], "push": ["no_channel"]}
    q = _identified(engine(marketing(channels=["sms", "web"])), "c-2", ["email"])
    q.opt_in(T0)
    assert q.act(click(q.id, T0 + MINUTE)).channel == "web"  # on-site needs no address


# -- transactional messages ------------------------------------------------------------


OBSTACLES = {
    "no marketing consent": ({}, lambda p: None),
    "caps at zero": (
        {"global_caps": {"day": 0}, "channel_caps": {"email": {"hour": 0}}},
        lambda p: p.opt_in(T0 - DAY),
    ),
    "fatigue": (
        {"fatigue": {"ignored_threshold": 1}},
        lambda p: (
            p.opt_in(T0 - DAY),
            p.send(feedback(p.id, T0 - HOUR, "ignored", "email")),
        ),
    ),
    "snooze": (
        {},
        lambda p: (
            p.opt_in(T0 - DAY),
            p.send(preferences(p.id, T0 - HOUR, snooze_until=(T0 + DAY).isoformat())),
        ),
    ),
    "holdout": ({"holdout": {"share": 0.5, "salt": "s"}}, lambda p: p.opt_in(T0 - DAY)),
}


@pytest.mark.parametrize("obstacle", list(OBSTACLES))
def test_transactional_messages_skip_the_marketing_rules(obstacle: str) -> None:
    fields, setup = OBSTACLES[obstacle]
    held = next(f"c-{i}" for i in range(100) if in_holdout(f"c-{i}", 0.5, "s"))
    e = engine(marketing(), transactional(), **fields)
    p = Person(e, held)
    setup(p)
    assert p.suppress(click(p.id, T0)).reasons  # the obstacle stops marketing
    receipt = p.act(purchase(p.id, T0 + MINUTE))
    assert receipt.action_id == "receipt" and receipt.message_class == "transactional"
    assert receipt.send_after is None


def test_transactional_messages_skip_action_cooldowns_and_caps() -> None:
    p = Person(engine(transactional(cooldown_hours=24, max_per_week=1)))
    for i in range(3):
        assert p.act(purchase(p.id, T0 + i * MINUTE)).action_id == "receipt"


def test_quiet_hours_defer_a_transactional_message_but_never_drop_it() -> None:
    p = Person(engine(transactional(channels=["email"], expiry_hours=2)))
    p.send(preferences(p.id, T0, quiet_hours=BERLIN_NIGHT))
    receipt = p.hold(purchase(p.id, utc(2026, 3, 2, 22, 30)))
    assert receipt.send_after == utc(2026, 3, 3, 6, 0)
    assert receipt.expires_at > receipt.send_after
    # Released when due, three hours after its trigger's two-hour expiry:
    # still delivered, with an expiry counted from its delivery.
    [released] = p.release(utc(2026, 3, 3, 6, 0))
    assert isinstance(released, Action) and released.send_after is None
    assert released.expires_at == utc(2026, 3, 3, 8, 0)


def test_a_revoked_transactional_consent_is_respected() -> None:
    p = Person(engine(transactional(channels=["email", "sms"])))
    p.send(preferences(p.id, T0, reachable_channels=["email", "sms"]))
    p.send(consent(p.id, T0, "email", "revoked", "transactional"))
    assert p.act(purchase(p.id, T0 + MINUTE)).channel == "sms"
    p.send(consent(p.id, T0 + 2 * MINUTE, "all", "revoked", "transactional"))
    s = p.suppress(purchase(p.id, T0 + 3 * MINUTE))
    assert s.reasons == ["consent"]


# -- channel choice and exploration -------------------------------------------------------


def test_the_preferred_channel_wins_when_usable() -> None:
    p = Person(engine(marketing(channels=["email", "push", "web"])))
    p.opt_in(T0)
    p.send(preferences(p.id, T0, preferred_channel="push"))
    action = p.act(click(p.id, T0 + MINUTE))
    assert action.channel == "push"
    assert "channel push: preferred channel" in action.reasons


def test_best_engagement_when_the_preferred_channel_is_not_usable() -> None:
    p = Person(engine(marketing(channels=["email", "push", "web"])))
    p.opt_in(T0, "email", "web")
    p.send(preferences(p.id, T0, preferred_channel="push"))  # no consent for push
    p.send(feedback(p.id, T0, "clicked", "web"))
    action = p.act(click(p.id, T0 + MINUTE))
    assert action.channel == "web"
    # One click on web, none on email: (1 + 4 x 0.2) / (1 + 4), the prior's weight.
    assert "channel web: best engagement (0.36)" in action.reasons


def test_policy_order_breaks_engagement_ties() -> None:
    e = engine(marketing(channels=["email", "push", "sms"]), channel_order=["sms", "push"])
    p = Person(e)
    p.opt_in(T0)
    assert p.act(click(p.id, T0 + MINUTE)).channel == "sms"
    q = Person(engine(marketing(channels=["sms", "push", "email"])), "c-2")
    q.opt_in(T0)
    assert q.act(click(q.id, T0 + MINUTE)).channel == "email"  # the default order


def test_exploration_logs_a_consistent_propensity_and_replays() -> None:
    epsilon = 0.2
    actions = (marketing("big", value=50.0), marketing("small", value=1.0))
    e = engine(*actions, exploration={"epsilon": epsilon})
    picks: dict[str, list[float]] = {"big": [], "small": []}
    for i in range(1000):
        p = Person(e, "c-1")
        p.opt_in(T0)
        action = p.act(click(p.id, T0 + MINUTE, event_id=f"view-{i}"))
        picks[action.action_id].append(action.selection_probability)
        assert action.explored == (action.action_id == "small")
        if i < 50:  # the same event id always gives the same pick
            again = Person(e, "c-1")
            again.opt_in(T0)
            replay = again.act(click(p.id, T0 + MINUTE, event_id=f"view-{i}"))
            assert (replay.action_id, replay.decision_id) == (action.action_id, action.decision_id)
    assert picks["big"] and all(q == pytest.approx(1 - epsilon / 2) for q in picks["big"])
    assert picks["small"] and all(q == pytest.approx(epsilon / 2) for q in picks["small"])
    assert abs(len(picks["small"]) / 1000 - epsilon / 2) < 0.03


def test_a_single_eligible_action_is_picked_with_certainty() -> None:
    p = Person(engine(marketing(), exploration={"epsilon": 0.5}))
    p.opt_in(T0)
    for i in range(20):
        action = p.act(click(p.id, T0 + i * MINUTE))
        assert action.selection_probability == 1.0 and not action.explored


def test_explain_examines_every_channel_and_decides_the_same() -> None:
    """The hot path skips the channels of a candidate already ruled out as a
    whole; an explanation checks them all, and the decision is the same."""
    hot = Person(engine(marketing(channels=["email"])))
    hot.opt_in(T0)
    hot.send(feedback(hot.id, T0 + MINUTE, "complained", "email"))
    explained = Person(engine(marketing(channels=["email"])), customer=hot.id)
    explained.state = decode_state(encode_state(hot.state, set(TABLES)))
    trigger = click(hot.id, T0 + 2 * MINUTE)
    now = T0 + 2 * MINUTE + timedelta(seconds=1)
    fast = hot.engine.process(hot.state, decode(trigger, now), now, hot.id)
    full = explained.engine.process(
        explained.state, decode(trigger, now), now, hot.id, explain=True
    )
    assert encode(fast.decision) == encode(full.decision)
    assert full.decision.reasons == ["fatigue"]
    [candidate] = full.trace
    assert candidate.reasons == ["fatigue"]
    assert candidate.channel_reasons == {"email": ["channel_blocked"]}
    assert fast.trace[0].channel_reasons == {}
