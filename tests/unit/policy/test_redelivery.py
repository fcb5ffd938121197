"""A repeated trigger re-issues its action only if it may not have reached Kafka.

The worker writes an action's state (with the event id in the dedupe ring and
the contact in fatigue) before the action is sent to Kafka. After a kill -9 the
trigger comes back as a duplicate; skipping it would lose an action that never
reached Kafka, so the engine issues the same action again (Engine._reissue).
But a trigger resent upstream, 10,000 times, must not send 10,000 copies: the
transport's record of what it sent (streams/produced.py, a predicate to the
pure engine) says the action went out, and nothing is issued. Purchases are
also recognised by their order id, beyond the 32-event dedupe ring.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import msgspec

from nudge.policy.engine import REISSUE, Engine
from nudge.policy.inmemory import InMemoryWorker
from nudge.policy.processor import Result
from nudge.policy.state import (
    MAX_ORDER_IDS,
    MAX_PROCESSED_IDS,
    MAX_TRANSACTIONAL,
    Contact,
    Fatigue,
)
from nudge.policy.updates import merge_states
from nudge.schemas.outputs import Action, Suppression
from tests.unit.policy_kit import (
    HOUR,
    T0,
    Person,
    catalog,
    click,
    consent,
    decode,
    feedback,
    iso,
    key_of,
    marketing,
    policy,
    preferences,
    purchase,
    topic_of,
    transactional,
)

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
    assert copy.reasons == [REISSUE]
    assert copy.trigger_event_id == first.trigger_event_id
    assert len(anna.state.fatigue.contacts) == 1  # counted once


def test_a_held_action_is_not_issued_again_until_released_then_as_released() -> None:
    ben = Person(ENGINE)
    ben.opt_in(T0, "email")
    night = {"start": "10:00", "end": "14:00", "tz": "UTC"}  # T0 is 11:00 UTC
    ben.send(preferences(ben.id, T0, quiet_hours=night))
    trigger = click(ben.id, T0 + timedelta(minutes=5))
    held = ben.hold(trigger)
    assert held.send_after is not None
    again = ben.send(trigger, T0 + HOUR)
    assert again.duplicate and again.decision is None  # nothing was published yet
    [released] = ben.release(held.send_after)
    assert isinstance(released, Action) and released.decision_id == held.decision_id
    copy = ben.send(trigger, held.send_after + HOUR).decision
    assert isinstance(copy, Action) and copy.decision_id == held.decision_id
    assert copy.send_after is None
    assert abs((copy.decided_at - released.decided_at).total_seconds()) <= 1


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
    worker = InMemoryWorker(ENGINE)
    now = T0 + timedelta(hours=1, seconds=1)
    send(worker, consent("c-1", T0), now)
    trigger = click("c-1", T0 + HOUR)
    lost, _ = records([send(worker, trigger, now)])  # written to the tables, never published
    restart(worker)  # the restarted worker knows nothing
    replayed = records([send(worker, trigger, now + timedelta(seconds=30))])
    assert [kind for kind, _ in replayed] == ["actions", "actions.email"]
    assert replayed[0][1]["decision_id"] == lost[1]["decision_id"]
    assert worker.state("c-1").fatigue.contacts[0].decision_id == lost[1]["decision_id"][:16]


# -- re-issue only what may not have reached Kafka ---------------------------------


def send(worker: InMemoryWorker, event: dict, now: datetime | None = None) -> Result:
    """One event through the worker's loop with its record of the actions it
    sent (as streams/app.py keeps it), at `now` (one second after the event
    by default): bytes in, emits out, no Kafka."""
    now = now or datetime.fromisoformat(event["ts"]) + timedelta(seconds=1)
    (result,) = worker.feed(topic_of(event), key_of(event), json.dumps(event).encode(), now)
    return result


def restart(worker: InMemoryWorker) -> None:
    """A new process: the tables survive (changelog), the record does not."""
    worker.sent.clear()


def records(results: list[Result]) -> list[tuple[str, dict]]:
    return [(e.kind, json.loads(e.value)) for r in results for e in r.emits]


def test_ten_thousand_copies_of_a_trigger_send_one_action() -> None:
    """The issue's case: one event id resent 10,000 times, no restart: one
    record on `actions` and one on `actions.email`, nothing else."""
    worker = InMemoryWorker(ENGINE)
    send(worker, consent("c-1", T0))
    trigger = click("c-1", T0 + HOUR)
    results = [send(worker, trigger) for _ in range(10_000)]
    assert [kind for kind, _ in records(results)] == ["actions", "actions.email"]
    assert [r.duplicate for r in results].count(True) == 9_999
    assert all(r.writes == {} for r in results[1:])  # state changed once
    assert len(worker.state("c-1").fatigue.contacts) == 1


def test_after_a_restart_ten_thousand_copies_reissue_once_and_say_why() -> None:
    """State written, action maybe lost (the worker died before Kafka had it):
    the first copy the restarted worker sees re-issues it, with the same
    decision id and a reason that says why; the other copies issue nothing."""
    worker = InMemoryWorker(ENGINE)
    send(worker, consent("c-1", T0))
    trigger = click("c-1", T0 + HOUR)
    [first, _] = records([send(worker, trigger)])
    restart(worker)
    later = T0 + HOUR + timedelta(seconds=30)
    results = [send(worker, trigger, later) for _ in range(10_000)]
    again = records(results)
    assert [kind for kind, _ in again] == ["actions", "actions.email"]
    copy = again[0][1]
    assert copy["decision_id"] == first[1]["decision_id"]
    assert copy["reasons"] == [REISSUE]
    assert "no record that the action reached Kafka" in REISSUE
    assert "restart" not in first[1]["reasons"][0]
    assert all(r.duplicate for r in results)


def test_a_copy_the_transport_knows_is_sent_issues_nothing_not_even_a_withheld_one() -> None:
    """An action that reached Kafka before an opt-out stays what it was: a
    copy of its trigger issues neither the action nor a suppression."""
    eve = Person(ENGINE)
    eve.opt_in(T0, "email")
    trigger = click(eve.id, T0 + HOUR)
    sent = {eve.act(trigger).decision_id}
    eve.send(consent(eve.id, T0 + 2 * HOUR, "email", "revoked"))
    now = T0 + 3 * HOUR
    outcome = ENGINE.process(
        eve.state, decode(trigger, now), now, eve.id, produced=sent.__contains__
    )
    assert outcome.duplicate and outcome.decision is None


def test_an_order_resent_beyond_the_event_ring_counts_once() -> None:
    """33 events later the event id has left the dedupe ring; the order id
    has not: RFM, last purchase and the confirmation are not repeated."""
    worker = InMemoryWorker(ENGINE)
    order = purchase("c-1", T0, "lighting", price=40.0)
    [confirmation] = [d for k, d in records([send(worker, order)]) if k == "actions"]
    for n in range(MAX_PROCESSED_IDS + 1):
        send(worker, click("c-1", T0 + timedelta(minutes=n + 1), "page_view"))
    late = send(worker, order, T0 + 2 * HOUR)
    assert late.duplicate and late.emits == [] and late.writes == {}
    recency = worker.state("c-1").recency
    assert (recency.orders, recency.revenue) == (1, 40.0)
    assert recency.last_purchase == {"lighting": T0.timestamp()}
    # After a restart the copy re-issues the confirmation it may have lost, once.
    restart(worker)
    again = records([send(worker, order, T0 + 3 * HOUR) for _ in range(3)])
    assert [k for k, _ in again] == ["actions", "actions.email"]
    assert again[0][1]["decision_id"] == confirmation["decision_id"]


def test_an_order_resent_with_a_new_event_id_counts_once() -> None:
    worker = InMemoryWorker(ENGINE)
    order = purchase("c-1", T0, "lighting", price=40.0)
    send(worker, order)
    resent = {**order, "event_id": "shop-retry-1", "ts": iso(T0 + HOUR)}
    result = send(worker, resent)
    assert result.duplicate and result.emits == [] and result.writes == {}
    other = purchase("c-1", T0 + 2 * HOUR, "garden", price=5.0)
    send(worker, other)
    recency = worker.state("c-1").recency
    assert (recency.orders, recency.revenue) == (2, 45.0)


def test_the_order_ring_is_bounded_and_merged() -> None:
    dan = Person(ENGINE)
    for n in range(3 * MAX_ORDER_IDS):
        dan.send(purchase(dan.id, T0 + n * HOUR))
    assert len(dan.state.recency.order_ids) == 4 * MAX_ORDER_IDS
    assert dan.state.recency.orders == 3 * MAX_ORDER_IDS
    # An order the visitor placed before identifying still counts once.
    visitor = Person(ENGINE, "c-2")
    bought = purchase("c-2", T0)
    visitor.send(bought)
    customer = Person(ENGINE, "c-3")
    customer.send(purchase("c-3", T0 - HOUR))
    merge_states(customer.state, visitor.state)
    assert customer.state.recency.orders == 2
    again = customer.send({**bought, "event_id": "retry", "customer_id": "c-3"})
    assert again.duplicate and again.decision is None  # no contact for the new event id
    assert customer.state.recency.orders == 2
    merge_states(dan.state, visitor.state)
    assert len(dan.state.recency.order_ids) == 4 * MAX_ORDER_IDS
