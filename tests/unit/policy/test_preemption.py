"""A held action gives way to a worthier one that needs its contact.

A held action reserves its contact at its due time, so caps count it. When
a later trigger's candidate is refused only by those reserved contacts and
is clearly worth more (catalog value, PREEMPT_MARGIN) than the holds that
reserved them, the holds are withdrawn
(a suppression with their decision id, reason `preempted`) and the new one
is decided on the caps they gave back. A contact already made is never
taken back, and a worthier hold is never given up for a lesser action.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from nudge.testing import Driver
from tests.unit.policy_kit import (
    HOUR,
    acted,
    catalog,
    click,
    feed,
    held,
    marketing,
    opt_in,
    policy,
    suppressed,
)

NOON = datetime(2026, 3, 3, 12, 0, tzinfo=UTC)
MINUTES = timedelta(minutes=1)
REMINDER = marketing(
    "cart_reminder",
    category="$cart",
    value=18.0,
    triggers=[{"event": "add_to_cart", "send_after_minutes": 60}],
)


def inspiration(wait: float | None) -> dict:
    trigger = {"event": "product_view"} | ({"send_after_minutes": wait} if wait else {})
    return marketing("inspiration", category="$event", value=8.0, triggers=[trigger])


def one_email_a_day(*actions: dict) -> Driver:
    d = Driver(catalog(*actions), policy(channel_caps={"email": {"day": 1}}), start=NOON - HOUR)
    opt_in(d, "c-1", NOON - HOUR, "email")
    return d


def view(at: datetime) -> dict:
    return click("c-1", at, "product_view", product_id="lamp-1", price=40.0)


def add_to_cart(at: datetime) -> dict:
    return click("c-1", at, "add_to_cart", product_id="lamp-1", price=40.0)


def test_a_held_inspiration_gives_its_email_to_the_cart_reminder() -> None:
    d = one_email_a_day(REMINDER, inspiration(wait=60))
    waiting = held(feed(d, view(NOON)))

    out = feed(d, add_to_cart(NOON + 10 * MINUTES))

    withdrawn = suppressed(out)
    assert withdrawn.decision_id == waiting.decision_id
    assert withdrawn.reasons == ["preempted"]
    reminder = out.results[0].outcome.held
    assert reminder is not None and reminder.action_id == "cart_reminder"
    assert "in place of held inspiration" in reminder.reasons
    assert d.advance_to(NOON + HOUR) == []  # the inspiration's due time: nothing
    assert acted(d.advance_to(NOON + 70 * MINUTES)).decision_id == reminder.decision_id


def test_a_held_reminder_is_not_given_up_for_a_lesser_action() -> None:
    d = one_email_a_day(REMINDER, inspiration(wait=60))
    reminder = held(feed(d, add_to_cart(NOON)))

    refused = suppressed(feed(d, view(NOON + 10 * MINUTES)))

    assert refused.candidates[0].action_id == "inspiration"
    assert "channel_cap" in refused.reasons and "preempted" not in refused.reasons
    assert acted(d.advance_to(NOON + HOUR)).decision_id == reminder.decision_id


def test_a_message_already_sent_is_never_taken_back() -> None:
    d = one_email_a_day(REMINDER, inspiration(wait=None))
    sent = acted(feed(d, view(NOON)))

    refused = suppressed(feed(d, add_to_cart(NOON + 10 * MINUTES)))

    assert refused.decision_id != sent.decision_id
    assert "channel_cap" in refused.reasons
    assert d.advance_to(NOON + 2 * HOUR) == []


def test_an_action_of_about_the_same_worth_does_not_displace_a_hold() -> None:
    d = one_email_a_day(
        marketing("reminder_lite", value=10.0, triggers=REMINDER["triggers"]), inspiration(wait=60)
    )
    waiting = held(feed(d, view(NOON)))

    refused = suppressed(feed(d, add_to_cart(NOON + 10 * MINUTES)))

    assert refused.candidates[0].action_id == "reminder_lite" and "preempted" not in refused.reasons
    assert acted(d.advance_to(NOON + HOUR)).decision_id == waiting.decision_id
