"""A trigger redelivered after a crash issues its action again, never loses it.

The worker writes an action's state (with the event id in the dedupe ring and
the contact in fatigue) before the action is sent to Kafka. After a kill -9 the
trigger comes back as a duplicate; skipping it would lose an action that never
reached Kafka, so the engine issues the same action again (Engine._reissue).
"""

from __future__ import annotations

import json
from datetime import timedelta

import msgspec
from policy_kit import (
    HOUR,
    T0,
    Person,
    catalog,
    click,
    consent,
    feedback,
    key_of,
    marketing,
    policy,
    preferences,
    purchase,
    topic_of,
    transactional,
)

from policy.engine import REDELIVERY, Engine
from policy.processor import Processor
from policy.state import MAX_TRANSACTIONAL, Contact, Fatigue, decode_state
from schemas.outputs import Action, Suppression

ENGINE = Engine(catalog(marketing(), transactional()), policy())


def test_a_redelivered_trigger_issues_the_same_action_again() -> None:
    anna = Person(ENGINE)
    anna.opt_in(T0, "email")
    trigger = click(anna.id, T0 + HOUR)
    first = anna.act(trigger)
    again = anna.send(trigger, T0 + 2 * HOUR)
    assert again.duplicate and isinstance(again.decision, Action)
    copy = again.decision
    for field in ("decision_id", "action_id", "channel", "send_after", "expires_at"):
        assert getattr(copy, field) == getattr(first, field), field
    assert abs((copy.decided_at - first.decided_at).total_seconds()) < 1e-3
    assert copy.reasons == [REDELIVERY]
    assert copy.trigger_event_id == first.trigger_event_id
    assert len(anna.state.fatigue.contacts) == 1  # counted once


def test_a_deferred_action_keeps_its_send_after_and_decision_time() -> None:
    ben = Person(ENGINE)
    ben.opt_in(T0, "email")
    night = {"start": "10:00", "end": "14:00", "tz": "UTC"}  # T0 is 11:00 UTC
    ben.send(preferences(ben.id, T0, quiet_hours=night))
    trigger = click(ben.id, T0 + timedelta(minutes=5))
    first = ben.act(trigger)
    assert first.send_after is not None
    copy = ben.send(trigger, T0 + HOUR).decision
    assert isinstance(copy, Action)
    assert copy.send_after == first.send_after
    assert abs((copy.decided_at - first.decided_at).total_seconds()) <= 1


def test_a_transactional_action_is_issued_again_too() -> None:
    cara = Person(ENGINE)
    order = purchase(cara.id, T0)
    first = cara.act(order)
    assert first.message_class == "transactional"
    copy = cara.send(order, T0 + HOUR).decision
    assert isinstance(copy, Action) and copy.decision_id == first.decision_id


def test_the_transactional_ring_stays_small() -> None:
    dan = Person(ENGINE)
    for n in range(3 * MAX_TRANSACTIONAL):
        dan.act(purchase(dan.id, T0 + n * HOUR))
    assert len(dan.state.fatigue.transactional) == MAX_TRANSACTIONAL


def test_a_revocation_withholds_the_copy_and_a_non_trigger_issues_nothing() -> None:
    eve = Person(ENGINE)
    eve.opt_in(T0, "email")
    trigger = click(eve.id, T0 + HOUR)
    eve.act(trigger)
    eve.send(consent(eve.id, T0 + 2 * HOUR, "email", "revoked"))
    withheld = eve.send(trigger, T0 + 3 * HOUR).decision  # the opt-out binds the copy
    assert isinstance(withheld, Suppression)
    assert withheld.reasons == ["consent"] and withheld.trigger_event_id == trigger["event_id"]
    update = feedback(eve.id, T0 + HOUR, "opened")
    eve.send(update)
    assert eve.send(update).decision is None  # no trigger: nothing to issue


def test_contacts_read_before_the_deferral_field_existed() -> None:
    """Records written before `deferred_s` decode (no deferral) and re-encode
    without it, so old and new workers can share a changelog."""
    old = msgspec.msgpack.encode([[[1.0, "email", "promo", "abcd", False]]])
    fatigue = msgspec.msgpack.decode(old, type=Fatigue)
    assert fatigue.contacts == [Contact(1.0, "email", "promo", "abcd")]
    assert fatigue.contacts[0].deferred_s == 0


def test_the_crash_hazard_through_the_processor() -> None:
    """State written, outputs lost (kill -9 before the producer flushed):
    the redelivered message yields the action the first attempt never delivered."""
    processor = Processor(ENGINE)
    tables: dict[str, bytes] = {}

    def deliver(event: dict, offset: int, now_offset: timedelta) -> list[tuple[str, dict]]:
        now = T0 + timedelta(hours=1, seconds=1) + now_offset
        raw = json.dumps(event).encode()
        kind = topic_of(event)
        result = processor.process(
            kind, key_of(event), raw, (kind, 0, offset), lambda _: dict(tables), now
        )
        tables.update({t: v for t, v in result.writes.items() if v is not None})
        return [(e.kind, json.loads(e.value)) for e in result.emits]

    deliver(consent("c-1", T0), 1, timedelta(0))
    trigger = click("c-1", T0 + HOUR)
    lost = deliver(trigger, 2, timedelta(0))  # written to the tables, never published
    replayed = deliver(trigger, 2, timedelta(seconds=30))
    assert [kind for kind, _ in replayed] == ["actions", "actions.email"]
    assert replayed[0][1]["decision_id"] == lost[0][1]["decision_id"]
    assert (
        decode_state(dict(tables)).fatigue.contacts[0].decision_id
        == (lost[0][1]["decision_id"][:16])
    )
