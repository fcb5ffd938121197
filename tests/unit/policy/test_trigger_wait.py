"""A trigger that waits (`send_after_minutes`): the abandoned-cart flow.

The reminder is decided when the item goes into the cart and held; an hour
later every rule runs again, and it goes out only if the cart is still open
and nothing else changed: bought meanwhile, emptied, or asked to stop, it
becomes a suppression with its decision id.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from nudge.policy.config import ConfigError, load_catalog
from nudge.testing import Driver
from tests.unit.policy_kit import (
    HOUR,
    acted,
    catalog,
    click,
    consent,
    feed,
    held,
    marketing,
    opt_in,
    policy,
    purchase,
    suppressed,
    transactional,
)

NOON = datetime(2026, 3, 3, 12, 0, tzinfo=UTC)
WAIT = timedelta(minutes=60)
MINUTE = timedelta(minutes=1)
REMINDER = marketing(
    "cart_reminder",
    channels=["email"],
    category="$cart",
    cooldown_hours=72,
    expiry_hours=24,
    triggers=[{"event": "add_to_cart", "send_after_minutes": 60}],
)


def carted(customer: str = "c-1") -> tuple[Driver, str]:
    """c-1, with email consent, puts a lamp in the cart at noon: the reminder
    is decided and held for an hour. Returns the driver and its decision id."""
    d = Driver(
        catalog(REMINDER, transactional()),
        policy(purchase_cooldown={"default_days": 3}),
        start=NOON - HOUR,
    )
    opt_in(d, customer, NOON - HOUR, "email")
    reminder = held(feed(d, click(customer, NOON, "add_to_cart", product_id="lamp-1", price=40.0)))
    assert reminder.send_after == NOON + WAIT
    waited = "held as its trigger asks: 60 min after the add_to_cart"
    assert any(waited in reason for reason in reminder.reasons)
    return d, reminder.decision_id


def test_an_abandoned_cart_is_reminded_of_once_the_wait_is_over() -> None:
    d, decision = carted()
    assert d.advance_to(NOON + WAIT - timedelta(seconds=1)) == []
    reminder = acted(d.advance_to(NOON + WAIT))
    assert reminder.decision_id == decision and reminder.category == "lighting"
    assert reminder.content is not None and reminder.content.products == ["lamp-1"]
    assert "its trigger's wait" in reminder.reasons[-1]


def test_a_cart_bought_before_the_wait_is_over_gets_no_reminder() -> None:
    d, decision = carted()
    feed(d, purchase("c-1", NOON + timedelta(minutes=5), "lighting"))
    withdrawn = suppressed(d.advance_to(NOON + WAIT))
    assert withdrawn.decision_id == decision
    assert set(withdrawn.reasons) == {"cart_closed", "purchase_cooldown"}
    assert d.outputs("actions.email") == [] or all(
        a.message_class == "transactional" for a in d.outputs("actions.email")
    )


def test_an_emptied_cart_gets_no_reminder() -> None:
    d, decision = carted()
    feed(d, click("c-1", NOON + timedelta(minutes=5), "remove_from_cart", product_id="lamp-1"))
    withdrawn = suppressed(d.advance_to(NOON + WAIT))
    assert withdrawn.decision_id == decision and withdrawn.reasons == ["cart_closed"]


def test_a_revocation_during_the_wait_is_respected() -> None:
    d, decision = carted()
    feed(d, consent("c-1", NOON + timedelta(minutes=10), "email", "revoked"))
    withdrawn = suppressed(d.advance_to(NOON + WAIT))
    assert withdrawn.decision_id == decision and withdrawn.reasons == ["consent"]


def test_the_wait_counts_as_the_actions_cooldown_from_its_send_time() -> None:
    """A second item in the same hour decides nothing new: the held reminder
    already holds the action's cooldown."""
    d, _ = carted()
    later = feed(d, click("c-1", NOON + timedelta(minutes=20), "add_to_cart", product_id="lamp-2"))
    assert later.actions == [] and "action_cooldown" in str(later.suppressions[0].candidates)


def test_a_wait_past_the_expiry_is_refused_when_the_catalog_loads(tmp_path) -> None:
    path = tmp_path / "catalog.toml"
    path.write_text(
        '[[actions]]\nid = "late"\nmessage_class = "marketing"\nchannels = ["email"]\n'
        "value = 1.0\nexpiry_hours = 1\n"
        'triggers = [{ event = "add_to_cart", send_after_minutes = 90 }]\n'
    )
    with pytest.raises(ConfigError, match="waits 90 minutes"):
        load_catalog(path)


def test_the_wait_counts_from_the_event_not_from_when_it_arrived() -> None:
    """An add_to_cart that reaches the worker 70 minutes late: its hour has
    passed, so the reminder goes out at once; 40 minutes late, it waits the
    other 20."""
    d = Driver(catalog(REMINDER), policy(), start=NOON - HOUR)
    opt_in(d, "c-1", NOON - HOUR, "email")
    opt_in(d, "c-2", NOON - HOUR, "email")
    late = feed(d, click("c-1", NOON, "add_to_cart", product_id="lamp-1"), NOON + 70 * MINUTE)
    reminder = acted(late)
    assert reminder.send_after is None
    assert not any("held as its trigger asks" in r for r in reminder.reasons)
    later = click("c-2", NOON + 30 * MINUTE, "add_to_cart", product_id="lamp-2")
    held_reminder = held(feed(d, later, NOON + 70 * MINUTE))
    assert held_reminder.send_after == NOON + 90 * MINUTE
