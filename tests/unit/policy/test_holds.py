"""Held actions: an action that must wait for quiet hours to end stays in the
person's state, and when it is due the rules run again on the state then.

Each test holds one action (quiet hours 22:00-07:00 UTC, a view at 23:00),
changes something before 07:00, and releases: the action with its decision
id, or a suppression with that id naming what changed.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from nudge.policy.engine import Engine
from nudge.policy.holds import DueHolds
from nudge.policy.ids import decision_id
from nudge.policy.inmemory import InMemoryWorker
from nudge.policy.processor import HOLDS_KIND, Processor, Result
from nudge.policy.state import MAX_MARKETING_HOLDS
from nudge.schemas.outputs import Action, Suppression
from nudge.testing import Driver
from tests.unit.policy_kit import (
    HOUR,
    Person,
    acted,
    catalog,
    click,
    consent,
    erasure,
    feed,
    feedback,
    held,
    key_of,
    marketing,
    opt_in,
    policy,
    preferences,
    purchase,
    suppressed,
    topic_of,
    transactional,
)

NIGHT = {"start": "22:00", "end": "07:00", "tz": "UTC"}
EVENING = datetime(2026, 3, 2, 23, 0, tzinfo=UTC)
DUE = datetime(2026, 3, 3, 7, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
CATALOG = catalog(
    marketing("promo", channels=["email"], category="$event", expiry_hours=12),
    transactional(),
)
POLICY = policy(purchase_cooldown={"default_days": 3})
ENGINE = Engine(CATALOG, POLICY)


def held_person(name: str = "c-1") -> tuple[Person, Action]:
    """A person with email consent and night quiet hours, and one held promo,
    for what happens inside the engine (a late release, the next event)."""
    p = Person(ENGINE, name)
    p.opt_in(EVENING - HOUR, "email")
    p.send(preferences(p.id, EVENING - HOUR, quiet_hours=NIGHT))
    promo = p.hold(click(p.id, EVENING, category="lighting"))
    assert promo.send_after == DUE
    return p, promo


def held_promo() -> tuple[Driver, Action]:
    """The worker in memory at 23:00 with one held promo for c-1, who gave
    email consent and night quiet hours."""
    d = Driver(CATALOG, POLICY, start=EVENING - HOUR)
    opt_in(d, "c-1", EVENING - HOUR, "email")
    feed(d, preferences("c-1", EVENING - HOUR, quiet_hours=NIGHT))
    promo = held(feed(d, click("c-1", EVENING, category="lighting")))
    assert promo.send_after == DUE
    return d, promo


def test_a_held_action_is_kept_in_state_and_its_contact_reserved_at_its_due_time() -> None:
    d, promo = held_promo()
    [hold] = d.state("c-1").holds.pending
    assert hold.due == DUE.timestamp() and hold.action_id == "promo"
    [contact] = d.state("c-1").fatigue.contacts
    assert contact.at == DUE.timestamp() and contact.decision_id == promo.decision_id[:16]
    assert d.advance_to(DUE - MINUTE) == []  # not due yet: nothing changes
    assert len(d.state("c-1").holds.pending) == 1


def test_nothing_changed_releases_the_action_once_with_its_decision_id() -> None:
    d, promo = held_promo()
    out = d.advance_to(DUE + timedelta(seconds=1))
    assert [o.kind for o in out] == ["actions", "actions.email"]
    action = acted(out)
    assert action.decision_id == promo.decision_id == decision_id(promo.trigger_event_id, "promo")
    assert action.send_after is None and action.decided_at == DUE  # the timer's release
    assert action.channel == "email" and action.category == "lighting"
    assert action.reasons[-1].startswith("held from 2026-03-02 23:00 until 2026-03-03 07:00")
    assert action.expires_at == promo.expires_at
    assert d.state("c-1").holds.pending == []
    [contact] = d.state("c-1").fatigue.contacts  # the contact now sits where it reached the person
    assert contact.at == DUE.timestamp() and contact.deferred_s == 0
    assert d.advance_to(DUE + HOUR) == []  # released once: the hold is gone


def test_a_revocation_before_the_due_time_becomes_a_consent_suppression() -> None:
    d, promo = held_promo()
    feed(d, consent("c-1", EVENING + HOUR, "email", "revoked"))
    withdrawn = suppressed(d.advance_to(DUE))
    assert withdrawn.decision_id == promo.decision_id
    assert withdrawn.reasons == ["consent"]
    assert withdrawn.candidates[0].action_id == "promo"
    state = d.state("c-1")
    assert state.fatigue.contacts == []  # the reservation is given back
    assert "promo" not in state.fatigue.last_action
    assert d.outputs("actions") == []


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda at: consent("c-1", at, "all", "revoked"), "consent"),
        (lambda at: feedback("c-1", at, "unsubscribed", "email"), "consent"),
        (lambda at: feedback("c-1", at, "bounced", "email"), "channel_blocked"),
        (lambda at: purchase("c-1", at, "lighting"), "purchase_cooldown"),
        (lambda at: preferences("c-1", at, snooze_until=(at + 9 * HOUR).isoformat()), "snooze"),
    ],
    ids=["opt-out", "unsubscribe", "bounce", "purchase of the category", "snooze"],
)
def test_what_changed_before_the_due_time_is_named(change, reason: str) -> None:
    d, promo = held_promo()
    feed(d, change(EVENING + HOUR))
    out = d.advance_to(DUE)
    decided = [*out.actions, *out.suppressions]
    [withdrawn] = [x for x in decided if x.trigger_event_id == promo.trigger_event_id]
    assert isinstance(withdrawn, Suppression) and withdrawn.reasons == [reason]
    assert withdrawn.decision_id == promo.decision_id


def test_a_purchase_of_another_category_does_not_stop_it() -> None:
    d, promo = held_promo()
    feed(d, purchase("c-1", EVENING + HOUR, "garden"))
    released = d.advance_to(DUE)  # the order confirmation waited too
    promo_out, receipt = released.actions
    assert promo_out.decision_id == promo.decision_id
    assert receipt.action_id == "receipt" and released.suppressions == []


def test_a_held_message_counts_against_caps_and_a_late_release_is_capped_again() -> None:
    e = Engine(
        catalog(
            marketing("promo", channels=["email"], expiry_hours=12),
            marketing("banner", channels=["web"], triggers=[{"event": "search"}]),
        ),
        policy(global_caps={"hour": 1}),
    )
    p = Person(e)
    p.opt_in(EVENING - HOUR)
    p.send(preferences(p.id, EVENING - HOUR, quiet_hours=NIGHT))
    p.hold(click(p.id, EVENING))
    # 06:30: a banner would land half an hour before the held mail.
    assert p.suppress(click(p.id, DUE - 30 * MINUTE, "search")).reasons == ["global_cap"]
    # The release comes late (the worker was down) and on-site content was
    # shown meanwhile: one hour cap, the mail may not follow it now.
    assert e.record_impression(p.state, "banner", "web", DUE + 30 * MINUTE, "d" * 32)
    [capped] = p.release(DUE + 31 * MINUTE)
    assert isinstance(capped, Suppression) and capped.reasons == ["global_cap"]


def test_an_erasure_withdraws_held_actions_and_releases_nothing() -> None:
    d, promo = held_promo()
    out = feed(d, erasure("c-1", EVENING + HOUR))
    withdrawn = suppressed(out)
    assert withdrawn.reasons == ["erased"]
    assert withdrawn.decision_id == promo.decision_id and withdrawn.customer_id == "c-1"
    assert [o.kind for o in out] == ["suppressions", "erasures"]
    assert d.state("c-1").holds.pending == []
    assert d.advance_to(DUE + HOUR) == []


def test_changed_quiet_hours_keep_it_waiting_and_an_expired_one_is_withdrawn() -> None:
    d, promo = held_promo()
    later = {"start": "22:00", "end": "09:00", "tz": "UTC"}
    feed(d, preferences("c-1", EVENING + HOUR, quiet_hours=later))
    assert d.advance_to(DUE) == []  # still night for them: it waits on
    [hold] = d.state("c-1").holds.pending
    assert hold.due == (DUE + 2 * HOUR).timestamp()
    action = acted(d.advance_to(DUE + 2 * HOUR))
    assert action.decision_id == promo.decision_id

    # Released late (the worker was down): the trigger's 12 h expiry has passed.
    q, _ = held_person("c-2")
    [late] = q.release(EVENING + 12 * HOUR)
    assert isinstance(late, Suppression) and late.reasons == ["expired"]


def test_the_next_event_after_the_due_time_releases_it_first() -> None:
    """Inside the engine: an event of the person's after the due time releases
    a hold the timer has not released yet."""
    p, promo = held_person()
    outcome = p.send(purchase(p.id, DUE + MINUTE, "lighting"))
    [action, *_] = outcome.released
    assert isinstance(action, Action) and action.decision_id == promo.decision_id
    assert outcome.decision is not None and outcome.decision.action_id == "receipt"


def test_a_redelivered_held_trigger_issues_nothing() -> None:
    d, promo = held_promo()
    trigger = click("c-1", EVENING, category="lighting", event_id=promo.trigger_event_id)
    again = feed(d, trigger, now=EVENING + HOUR)
    assert again == []
    [result] = again.results
    assert result.duplicate and result.outcome.decision is None and result.outcome.released == []
    assert len(d.state("c-1").holds.pending) == 1


def test_marketing_waits_only_while_few_are_held_transactional_always_goes_out() -> None:
    kinds = ("search", "page_view", "session_start", "add_to_cart", "product_view")
    promos = [marketing(f"promo_{k}", triggers=[{"event": k}], expiry_hours=12) for k in kinds]
    d = Driver(catalog(*promos, transactional()), policy(), start=EVENING - HOUR)
    opt_in(d, "c-1", EVENING - HOUR, "email")
    feed(d, preferences("c-1", EVENING - HOUR, quiet_hours=NIGHT))
    for i, kind in enumerate(kinds[:MAX_MARKETING_HOLDS]):
        held(feed(d, click("c-1", EVENING + i * MINUTE, kind)))
    full = suppressed(feed(d, click("c-1", EVENING + HOUR, kinds[MAX_MARKETING_HOLDS])))
    assert full.candidates[0].channel_reasons == {"email": ["quiet_hours"]}
    receipt = held(feed(d, purchase("c-1", EVENING + HOUR)))  # transactional: held beyond four
    assert receipt.message_class == "transactional"
    released = [a.action_id for a in d.advance_to(DUE).actions]
    assert released == [f"promo_{k}" for k in kinds[:MAX_MARKETING_HOLDS]] + ["receipt"]


def event_clock_worker(*subjects: str) -> InMemoryWorker:
    """The worker's loop on the event clock, with one promo held for each subject."""
    worker = InMemoryWorker(ENGINE, event_clock=True)
    for subject in subjects:
        send(worker, consent(subject, EVENING - HOUR, "email"))
        send(worker, preferences(subject, EVENING - HOUR, quiet_hours=NIGHT))
        assert send(worker, click(subject, EVENING)).outcome.held is not None
    return worker


def send(worker: InMemoryWorker, event: dict, now: datetime = EVENING) -> Result:
    (result,) = worker.feed(topic_of(event), key_of(event), json.dumps(event).encode(), now)
    return result


def test_the_processor_releases_on_a_holds_due_message_and_deletes_the_empty_record() -> None:
    worker = event_clock_worker()
    send(worker, consent("c-9", EVENING - HOUR, "email"))
    send(worker, preferences("c-9", EVENING - HOUR, quiet_hours=NIGHT))
    result = send(worker, click("c-9", EVENING))
    assert [e.kind for e in result.emits] == []  # held: nothing published
    assert result.next_due == DUE.timestamp() and b"c-9" in worker.tables["holds"]

    def release(at: float, request: bytes | None = None) -> Result:
        value = Processor.release_request(at) if request is None else request
        (result,) = worker.feed(HOLDS_KIND, b"c-9", value, EVENING)
        return result

    early = release(DUE.timestamp() - 60)
    assert early.emits == [] and early.writes == {} and early.next_due == DUE.timestamp()

    due = release(DUE.timestamp())
    assert [e.kind for e in due.emits] == ["actions", "actions.email"]
    assert due.writes["holds"] is None and b"c-9" not in worker.tables["holds"]
    assert due.next_due is None
    assert worker.state("c-9").holds.pending == []

    again = release(DUE.timestamp())
    assert again.emits == []  # a repeated request releases nothing twice

    bad = release(0, b"\xc1")
    assert bad.invalid_reason == "malformed"


def test_on_the_event_clock_a_hold_the_timer_missed_is_judged_as_of_its_due_time() -> None:
    """A fast log's clock can pass a due time before the worker's 1 s timer
    asks for the release: the person's next event, the next night, then
    releases it. Judged as of that event, it would be in quiet hours and held
    again; `nudge replay` released it at 07:00. Judged as of its due time,
    the worker agrees with the replay."""
    worker = event_clock_worker("c-8")
    next_night = DUE + timedelta(hours=16)  # 23:00 again: quiet hours
    result = send(worker, click("c-8", next_night, category="garden"), next_night)
    [action] = [d for d in result.outcome.released if isinstance(d, Action)]
    assert action.decided_at == DUE and action.send_after is None
    assert worker.state("c-8").holds.pending[0].due > next_night.timestamp()
    # ^ what stays held is the new click's promo, until the morning after


def test_the_due_index_keeps_the_latest_due_time_per_subject() -> None:
    index = DueHolds()
    index.note("a", 10.0)
    index.note("b", 5.0)
    index.note("a", 20.0)  # superseded: 10 is skipped
    index.note("c", 7.0)
    index.note("c", None)  # nothing held any more
    assert index.next() == 5.0
    assert index.pop_due(15.0) == [("b", 5.0)]
    assert index.next() == 20.0  # a's superseded 10 is not its next
    assert index.pop_due(25.0) == [("a", 20.0)]
    assert index.pop_due(100.0) == [] and len(index) == 0
    assert index.next() is None


def test_a_replay_releases_held_actions_when_its_clock_passes_them() -> None:
    from nudge.replay import MemoryTables, Replay
    from nudge.schemas.eventlog import parse

    log = [
        consent("r-1", EVENING - HOUR, "email"),
        preferences("r-1", EVENING - HOUR, quiet_hours=NIGHT),
        click("r-1", EVENING),  # held until 07:00
        consent("r-2", EVENING - HOUR, "email"),
        preferences("r-2", EVENING - HOUR, quiet_hours=NIGHT),
        click("r-2", EVENING),  # held until 07:00, but revoked at 01:00
        consent("r-2", EVENING + 2 * HOUR, "email", "revoked"),
        click("r-3", DUE + MINUTE),  # someone else's event moves the clock past 07:00
    ]
    text = "".join(json.dumps({"kind": topic_of(e), "event": e}) + "\n" for e in log)
    replay = Replay(ENGINE, MemoryTables())
    decisions = list(replay.run(parse(text)))
    released = {d.customer_id: d for d in decisions if d.trigger_type == "product_view"}
    assert isinstance(released["r-1"], Action) and released["r-1"].decided_at == DUE
    assert isinstance(released["r-2"], Suppression) and released["r-2"].reasons == ["consent"]
    # released before r-3's event is decided, as the worker's timer would
    order = [d.customer_id for d in decisions]
    assert order.index("r-1") < order.index("r-3") and order.index("r-2") < order.index("r-3")
    assert replay.report.held == 2 and replay.report.still_held == 0
    assert replay.report.actions["promo", "email"] == 1

    # At the end of a log, what is due by its last event is released, the rest stays held.
    early = Replay(ENGINE, MemoryTables())
    assert list(early.run(parse(text.rsplit("\n", 2)[0] + "\n"))) == []
    assert early.report.still_held == 2


def test_the_worker_index_follows_each_partition_and_the_event_clock() -> None:
    from types import SimpleNamespace

    from nudge.policy.processor import Result
    from nudge.streams.holds import HoldTimer

    settings = SimpleNamespace(topic_prefix="t.", clock="event")
    timer = HoldTimer(SimpleNamespace(settings=settings))  # type: ignore[arg-type]
    timer.observe(0, Result(subject="a", next_due=100.0, event_time=50.0))
    timer.observe(1, Result(subject="b", next_due=None, event_time=120.0))  # nothing held
    timer.observe(2, Result(invalid_reason="malformed", event_time=10.0))
    assert timer.topic == "t.holds-due" and timer.now() == 120.0  # the latest event time
    assert set(timer.partitions) == {0}
    assert timer.partitions[0].pop_due(timer.now()) == [("a", 100.0)]
    timer.observe(0, Result(subject="a", next_due=None))  # released: forgotten
    assert len(timer.partitions[0]) == 0
