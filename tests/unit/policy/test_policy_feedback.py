"""Closing the loop: channel feedback, identity merges, erasure and the
consent audit log."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import msgspec
import pytest

from nudge.policy.engine import Engine
from nudge.policy.processor import MERGE_KIND, Processor
from nudge.policy.state import TABLES, CustomerState, Profile, decode_state, encode_state
from nudge.schemas.events import IdentityEvent
from nudge.schemas.outputs import ConsentLogEntry, ErasureConfirmation
from tests.unit.policy_kit import (
    DAY,
    HOUR,
    T0,
    Person,
    catalog,
    click,
    consent,
    erasure,
    feedback,
    iso,
    marketing,
    policy,
    preferences,
    purchase,
    transactional,
)

MINUTE = timedelta(minutes=1)


def engine(**policy_fields: Any) -> Engine:
    actions = (marketing(channels=["email", "push"]), transactional(channels=["email"]))
    return Engine(catalog(*actions), policy(**policy_fields))


def snapshot(state: CustomerState) -> dict[str, bytes]:
    return encode_state(state, set(TABLES))


# -- feedback ------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["opened", "clicked", "converted"])
def test_engagement_resets_the_ignored_streak_and_counts_for_the_channel(kind: str) -> None:
    p = Person(engine(fatigue={"ignored_threshold": 2}))
    p.opt_in(T0)
    p.act(click(p.id, T0))
    for i in range(2):
        p.send(feedback(p.id, T0 + (i + 1) * MINUTE, "ignored", "email"))
    fatigue = p.state.fatigue
    assert fatigue.ignored_streak == 2 and fatigue.backoff_until > T0.timestamp()
    p.send(feedback(p.id, T0 + HOUR, kind, "email"))
    assert fatigue.ignored_streak == 0 and fatigue.backoff_until == 0
    assert fatigue.engaged["email"] == 1
    assert fatigue.last_engaged == (T0 + HOUR).timestamp()
    p.act(click(p.id, T0 + HOUR + MINUTE))


def test_converted_marks_the_contact_by_decision_id_and_counts_a_conversion() -> None:
    p = Person(engine())
    p.opt_in(T0)
    first = p.act(click(p.id, T0))
    second = p.act(click(p.id, T0 + MINUTE))
    p.send(feedback(p.id, T0 + HOUR, "converted", first.channel, decision_id=first.decision_id))
    marked = {c.decision_id: c.converted for c in p.state.fatigue.contacts}
    assert marked == {first.decision_id[:16]: True, second.decision_id[:16]: False}
    assert p.state.fatigue.conversions == 1
    p.send(feedback(p.id, T0 + 2 * HOUR, "converted", "email", decision_id="unknown-id"))
    assert p.state.fatigue.conversions == 2
    assert sum(c.converted for c in p.state.fatigue.contacts) == 1


@pytest.mark.parametrize("kind", ["ignored", "dismissed"])
def test_neglect_raises_fatigue_into_a_back_off(kind: str) -> None:
    p = Person(engine(fatigue={"ignored_threshold": 2, "backoff_hours": 10}))
    p.opt_in(T0)
    p.send(feedback(p.id, T0, kind, "push"))
    assert p.state.fatigue.ignored_streak == 1 and p.state.fatigue.backoff_until == 0
    p.act(click(p.id, T0 + MINUTE))
    second = T0 + 2 * MINUTE
    p.send(feedback(p.id, second, kind, "push"), now=second)
    assert p.state.fatigue.backoff_until == (second + 10 * HOUR).timestamp()
    assert p.suppress(click(p.id, T0 + HOUR)).reasons == ["fatigue"]


def test_unsubscribed_revokes_that_channels_marketing_consent_with_an_audit_entry() -> None:
    p = Person(engine())
    p.opt_in(T0)
    event = feedback(p.id, T0 + MINUTE, "unsubscribed", "email", decision_id="d-1")
    outcome = p.send(event)
    assert outcome.records == [
        ConsentLogEntry(
            customer_id=p.id,
            channel="email",
            purpose="marketing",
            status="revoked",
            previous_status="granted",
            applied=True,
            source="feedback:unsubscribed",
            event_id=event["event_id"],
            event_ts=T0 + MINUTE,
            recorded_at=T0 + MINUTE + timedelta(seconds=1),
        )
    ]
    assert p.act(click(p.id, T0 + 2 * MINUTE)).channel == "push"  # other channels stay open
    assert p.act(purchase(p.id, T0 + 3 * MINUTE)).channel == "email"  # receipts still go


def test_complained_revokes_blocks_and_backs_off() -> None:
    p = Person(engine())
    p.opt_in(T0)
    outcome = p.send(feedback(p.id, T0 + MINUTE, "complained", "email"))
    (log,) = outcome.records
    assert (log.source, log.status, log.applied) == ("feedback:complained", "revoked", True)
    assert p.state.consent.blocked == {"email": "complained"}
    assert p.state.fatigue.backoff_until > (T0 + 29 * DAY).timestamp()
    assert p.suppress(purchase(p.id, T0 + 2 * MINUTE)).reasons == ["channel_blocked"]


def test_bounced_blocks_the_channel_without_touching_consent() -> None:
    p = Person(engine())
    p.opt_in(T0)
    outcome = p.send(feedback(p.id, T0 + MINUTE, "bounced", "email"))
    assert outcome.records == []
    assert p.state.consent.blocked == {"email": "bounced"}
    assert p.state.consent.entries["email:marketing"].status == "granted"
    assert p.act(click(p.id, T0 + 2 * MINUTE)).channel == "push"
    assert p.suppress(purchase(p.id, T0 + 3 * MINUTE)).reasons == ["channel_blocked"]


def test_delivered_changes_nothing_that_protects_the_person() -> None:
    p = Person(engine(fatigue={"ignored_threshold": 2}))
    p.opt_in(T0)
    action = p.act(click(p.id, T0))
    p.send(feedback(p.id, T0 + MINUTE, "ignored", "email"))
    before = snapshot(p.state)
    outcome = p.send(
        feedback(p.id, T0 + 2 * MINUTE, "delivered", "email", decision_id=action.decision_id)
    )
    after = snapshot(p.state)
    assert outcome.records == [] and outcome.decision is None
    for table in ("consent", "fatigue", "recency"):
        assert after[table] == before[table], table


# -- identity ------------------------------------------------------------------------


def anonymous(event: dict[str, Any]) -> dict[str, Any]:
    """The same event from a visitor we only know by a cookie id."""
    event = dict(event)
    event["anonymous_id"] = event.pop("customer_id")
    return event


def visitor_and_customer(e: Engine) -> tuple[Person, Person, IdentityEvent]:
    visitor = Person(e, "anon-1")
    for i in range(3):
        visitor.send(anonymous(click("anon-1", T0 + i * MINUTE, category="garden")))
    visitor.send(anonymous(click("anon-1", T0 + 4 * MINUTE, "add_to_cart", price=20.0)))
    visitor.send(anonymous(consent("anon-1", T0 + 5 * MINUTE, "sms", "revoked")))
    visitor.send(anonymous(feedback("anon-1", T0 + 6 * MINUTE, "bounced", "push")))

    customer = Person(e, "cust-9")
    customer.opt_in(T0 - DAY)  # granted sms and push too, before the visit
    customer.send(click("cust-9", T0 - HOUR, category="lighting"))
    customer.send(purchase("cust-9", T0 - 2 * HOUR, "lighting"))
    identify = IdentityEvent(
        event_id="identify-1",
        ts=T0 + 10 * MINUTE,
        type="identify",
        customer_id="cust-9",
        anonymous_id="anon-1",
        reachable_channels=["email", "sms", "push"],
    )
    return visitor, customer, identify


def test_merge_folds_a_visitor_into_the_customer_and_keeps_every_protection() -> None:
    e = engine()
    visitor, customer, identify = visitor_and_customer(e)
    outcome = e.process(visitor.state, identify, T0 + 11 * MINUTE, "anon-1")
    assert outcome.transfer_to == "cust-9" and outcome.decision is None

    assert e.merge(customer.state, visitor.state, identify)
    merged = customer.state
    assert set(merged.recency.affinity) >= {"garden", "lighting"}
    assert merged.recency.cart_items == 1 and merged.recency.orders == 1
    assert merged.consent.entries["sms:marketing"].status == "revoked"  # the visitor's wins
    assert merged.consent.entries["email:marketing"].status == "granted"
    assert merged.consent.blocked == {"push": "bounced"}
    assert merged.profile.identified and merged.profile.merged_ids == 1
    assert merged.profile.reachable == ["email", "sms", "push"]
    assert customer.act(click("cust-9", T0 + 12 * MINUTE)).channel == "email"

    before = snapshot(merged)
    assert not e.merge(customer.state, visitor.state, identify)  # the same transfer again
    assert snapshot(merged) == before


def test_merge_through_the_processor_moves_the_state_once() -> None:
    e = engine()
    visitor, customer, identify = visitor_and_customer(e)
    tables = {"anon-1": snapshot(visitor.state), "cust-9": snapshot(customer.state)}
    processor = Processor(e)
    now = T0 + 11 * MINUTE
    raw = json.dumps(
        {
            "event_id": "identify-1",
            "type": "identify",
            "customer_id": "cust-9",
            "anonymous_id": "anon-1",
            "ts": iso(identify.ts),
            "reachable_channels": ["email"],
        }
    ).encode()
    result = processor.process(
        "identity", b"anon-1", raw, ("identity", 0, 1), lambda s: dict(tables[s]), now
    )
    # The visitor's records are deleted but for a pointer to the customer.
    assert {name: value for name, value in result.writes.items() if name != "profile"} == (
        dict.fromkeys(set(TABLES) - {"profile"})
    )
    pointer = decode_state({"profile": result.writes["profile"]}).profile
    assert (pointer.alias_of, pointer.reachable, pointer.identified) == ("cust-9", [], False)
    (transfer,) = [m for m in result.emits if m.kind == MERGE_KIND]
    assert transfer.key == b"cust-9"

    merged = processor.process(
        MERGE_KIND, transfer.key, transfer.value, (MERGE_KIND, 0, 1), lambda s: tables[s], now
    )
    assert not merged.duplicate
    tables["cust-9"] = {**tables["cust-9"], **merged.writes}  # type: ignore[dict-item]
    state = decode_state(dict(tables["cust-9"]))
    assert state.consent.entries["sms:marketing"].status == "revoked"
    assert state.profile.merged_ids == 1
    again = processor.process(
        MERGE_KIND, transfer.key, transfer.value, (MERGE_KIND, 0, 2), lambda s: tables[s], now
    )
    assert again.duplicate
    assert decode_state(dict(tables["cust-9"]) | again.writes).profile.merged_ids == 1


# -- erasure ------------------------------------------------------------------------------


def test_erasure_clears_every_table_and_confirms() -> None:
    p = Person(engine())
    p.opt_in(T0)
    p.act(click(p.id, T0 + MINUTE))
    p.send(preferences(p.id, T0 + 2 * MINUTE, interests=["garden"]))
    request = erasure(p.id, T0 + HOUR)
    outcome = p.send(request)
    assert outcome.erase
    assert outcome.records == [
        ErasureConfirmation(
            customer_id=p.id,
            request_event_id=request["event_id"],
            tables_cleared=list(TABLES),
            erased_at=T0 + HOUR + timedelta(seconds=1),
        )
    ]
    # Nothing left but when: older events must not bring the person back.
    assert snapshot(p.state) == snapshot(
        CustomerState(profile=Profile(erased_at=(T0 + HOUR).timestamp()))
    )
    assert p.suppress(click(p.id, T0 + 2 * HOUR)).reasons == ["consent"]  # nothing left


def test_erasure_through_the_processor_deletes_and_publishes_the_confirmation() -> None:
    p = Person(engine())
    p.opt_in(T0)
    tables = snapshot(p.state)
    raw = json.dumps(erasure(p.id, T0 + HOUR)).encode()
    result = Processor(p.engine).process(
        "privacy", p.id.encode(), raw, ("privacy", 0, 7), lambda s: dict(tables), T0 + HOUR
    )
    assert result.writes == dict.fromkeys(TABLES)
    assert [m.kind for m in result.emits] == ["erasures"]
    confirmation = msgspec.json.decode(result.emits[0].value, type=ErasureConfirmation)
    assert confirmation.tables_cleared == list(TABLES)


# -- the consent log and precedence ----------------------------------------------------------


def test_an_older_grant_arriving_after_a_newer_revocation_is_logged_but_not_applied() -> None:
    p = Person(engine())
    p.send(consent(p.id, T0 + HOUR, "email", "revoked"))
    late = p.send(consent(p.id, T0, "email", "granted"), now=T0 + 2 * HOUR)
    (log,) = late.records
    assert (log.status, log.previous_status, log.applied) == ("granted", "revoked", False)
    assert log.event_ts == T0 and log.recorded_at == T0 + 2 * HOUR
    assert p.state.consent.entries["email:marketing"].status == "revoked"
    assert p.suppress(click(p.id, T0 + 3 * HOUR)).reasons == ["consent"]


def test_a_revocation_always_applies_even_when_older_than_the_grant_on_file() -> None:
    p = Person(engine())
    p.send(consent(p.id, T0 + HOUR, "email", "granted"))
    late = p.send(consent(p.id, T0, "email", "revoked"), now=T0 + 2 * HOUR)
    assert late.records[0].applied is True
    assert p.state.consent.entries["email:marketing"].status == "revoked"


def test_a_newer_grant_applies_and_every_change_is_logged() -> None:
    p = Person(engine())
    logs = [
        p.send(consent(p.id, T0, "email", "revoked")).records[0],
        p.send(consent(p.id, T0 + HOUR, "all", "granted", source="signup")).records[0],
    ]
    assert [(x.channel, x.status, x.applied) for x in logs] == [
        ("email", "revoked", True),
        ("all", "granted", True),
    ]
    assert logs[1].source == "signup"
    assert p.state.consent.entries["email:marketing"].status == "granted"
    assert p.act(click(p.id, T0 + 2 * HOUR)).channel == "email"
