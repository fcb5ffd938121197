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
from policy_kit import (
    HOUR,
    Person,
    catalog,
    click,
    consent,
    erasure,
    feedback,
    key_of,
    marketing,
    policy,
    preferences,
    purchase,
    topic_of,
    transactional,
)

from nudge.policy.engine import Engine
from nudge.policy.holds import DueHolds
from nudge.policy.ids import decision_id
from nudge.policy.processor import HOLDS_KIND, Processor
from nudge.policy.state import MAX_MARKETING_HOLDS, decode_state
from nudge.schemas.outputs import Action, Suppression

NIGHT = {"start": "22:00", "end": "07:00", "tz": "UTC"}
EVENING = datetime(2026, 3, 2, 23, 0, tzinfo=UTC)
DUE = datetime(2026, 3, 3, 7, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
ENGINE = Engine(
    catalog(
        marketing("promo", channels=["email"], category="$event", expiry_hours=12),
        transactional(),
    ),
    policy(purchase_cooldown={"default_days": 3}),
)


def held_person(name: str = "c-1") -> tuple[Person, Action]:
    """A person with email consent and night quiet hours, and one held promo."""
    p = Person(ENGINE, name)
    p.opt_in(EVENING - HOUR, "email")
    p.send(preferences(p.id, EVENING - HOUR, quiet_hours=NIGHT))
    held = p.hold(click(p.id, EVENING, category="lighting"))
    assert held.send_after == DUE
    return p, held


def test_a_held_action_is_kept_in_state_and_its_contact_reserved_at_its_due_time() -> None:
    p, held = held_person()
    [hold] = p.state.holds.pending
    assert hold.due == DUE.timestamp() and hold.action_id == "promo"
    [contact] = p.state.fatigue.contacts
    assert contact.at == DUE.timestamp() and contact.decision_id == held.decision_id[:16]
    assert p.release(DUE - MINUTE) == []  # not due yet: nothing changes
    assert len(p.state.holds.pending) == 1


def test_nothing_changed_releases_the_action_once_with_its_decision_id() -> None:
    p, held = held_person()
    [action] = p.release(DUE + timedelta(seconds=1))
    assert isinstance(action, Action)
    assert action.decision_id == held.decision_id == decision_id(held.trigger_event_id, "promo")
    assert action.send_after is None and action.decided_at == DUE + timedelta(seconds=1)
    assert action.channel == "email" and action.category == "lighting"
    assert action.reasons[-1].startswith("held from 2026-03-02 23:00 until 2026-03-03 07:00")
    assert action.expires_at == held.expires_at
    assert p.state.holds.pending == []
    [contact] = p.state.fatigue.contacts  # the contact now sits where it reached the person
    assert contact.at == (DUE + timedelta(seconds=1)).timestamp() and contact.deferred_s == 0
    assert p.release(DUE + HOUR) == []  # released once: the hold is gone


def test_a_revocation_before_the_due_time_becomes_a_consent_suppression() -> None:
    p, held = held_person()
    p.send(consent(p.id, EVENING + HOUR, "email", "revoked"))
    [withdrawn] = p.release(DUE)
    assert isinstance(withdrawn, Suppression)
    assert withdrawn.decision_id == held.decision_id
    assert withdrawn.reasons == ["consent"]
    assert withdrawn.candidates[0].action_id == "promo"
    assert p.state.fatigue.contacts == []  # the reservation is given back
    assert "promo" not in p.state.fatigue.last_action


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda p, at: consent(p.id, at, "all", "revoked"), "consent"),
        (lambda p, at: feedback(p.id, at, "unsubscribed", "email"), "consent"),
        (lambda p, at: feedback(p.id, at, "bounced", "email"), "channel_blocked"),
        (lambda p, at: purchase(p.id, at, "lighting"), "purchase_cooldown"),
        (lambda p, at: preferences(p.id, at, snooze_until=(at + 9 * HOUR).isoformat()), "snooze"),
    ],
    ids=["opt-out", "unsubscribe", "bounce", "purchase of the category", "snooze"],
)
def test_what_changed_before_the_due_time_is_named(change, reason: str) -> None:
    p, held = held_person()
    p.send(change(p, EVENING + HOUR))
    [withdrawn] = [d for d in p.release(DUE) if d.trigger_event_id == held.trigger_event_id]
    assert isinstance(withdrawn, Suppression) and withdrawn.reasons == [reason]
    assert withdrawn.decision_id == held.decision_id


def test_a_purchase_of_another_category_does_not_stop_it() -> None:
    p, held = held_person()
    p.send(purchase(p.id, EVENING + HOUR, "garden"))
    promo, receipt = p.release(DUE)  # the order confirmation waited too
    assert isinstance(promo, Action) and promo.decision_id == held.decision_id
    assert isinstance(receipt, Action) and receipt.action_id == "receipt"


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
    p, held = held_person()
    outcome = p.send(erasure(p.id, EVENING + HOUR))
    [withdrawn] = outcome.released
    assert isinstance(withdrawn, Suppression) and withdrawn.reasons == ["erased"]
    assert withdrawn.decision_id == held.decision_id and withdrawn.customer_id == p.id
    assert p.state.holds.pending == []
    assert p.release(DUE + HOUR) == []


def test_changed_quiet_hours_keep_it_waiting_and_an_expired_one_is_withdrawn() -> None:
    p, held = held_person()
    later = {"start": "22:00", "end": "09:00", "tz": "UTC"}
    p.send(preferences(p.id, EVENING + HOUR, quiet_hours=later))
    assert p.release(DUE) == []  # still night for them: it waits on
    [hold] = p.state.holds.pending
    assert hold.due == (DUE + 2 * HOUR).timestamp()
    [action] = p.release(DUE + 2 * HOUR)
    assert isinstance(action, Action) and action.decision_id == held.decision_id

    q, _ = held_person("c-2")
    [late] = q.release(EVENING + 12 * HOUR)  # the trigger's 12 h expiry has passed
    assert isinstance(late, Suppression) and late.reasons == ["expired"]


def test_the_next_event_after_the_due_time_releases_it_first() -> None:
    p, held = held_person()
    outcome = p.send(purchase(p.id, DUE + MINUTE, "lighting"))
    [action, *_] = outcome.released
    assert isinstance(action, Action) and action.decision_id == held.decision_id
    assert outcome.decision is not None and outcome.decision.action_id == "receipt"


def test_a_redelivered_held_trigger_issues_nothing() -> None:
    p, held = held_person()
    trigger = click(p.id, EVENING, category="lighting", event_id=held.trigger_event_id)
    again = p.send(trigger, EVENING + HOUR)
    assert again.duplicate and again.decision is None and again.released == []


def test_marketing_waits_only_while_few_are_held_transactional_always_goes_out() -> None:
    kinds = ("search", "page_view", "session_start", "add_to_cart", "product_view")
    promos = [marketing(f"promo_{k}", triggers=[{"event": k}], expiry_hours=12) for k in kinds]
    p = Person(Engine(catalog(*promos, transactional()), policy()))
    p.opt_in(EVENING - HOUR, "email")
    p.send(preferences(p.id, EVENING - HOUR, quiet_hours=NIGHT))
    for i, kind in enumerate(kinds[:MAX_MARKETING_HOLDS]):
        p.hold(click(p.id, EVENING + i * MINUTE, kind))
    full = p.suppress(click(p.id, EVENING + HOUR, kinds[MAX_MARKETING_HOLDS]))
    assert full.candidates[0].channel_reasons == {"email": ["quiet_hours"]}
    receipt = p.hold(purchase(p.id, EVENING + HOUR))  # transactional: held beyond the four
    assert receipt.message_class == "transactional"
    released = [d.action_id for d in p.release(DUE) if isinstance(d, Action)]
    assert released == [f"promo_{k}" for k in kinds[:MAX_MARKETING_HOLDS]] + ["receipt"]


class EventClockWorker:
    """A Processor on the event clock over in-memory tables, as a worker uses it."""

    def __init__(self) -> None:
        self.processor = Processor(ENGINE, event_clock=True)
        self.tables: dict[str, dict[str, bytes]] = {}

    def load(self, subject: str) -> dict[str, bytes | None]:
        return dict(self.tables.get(subject, {}))

    def feed(self, kind: str, key: bytes, value: bytes, now: datetime):
        result = self.processor.process(kind, key, value, (kind, 0, 0), self.load, now)
        stored = self.tables.setdefault(result.subject or "", {})
        for table, data in result.writes.items():
            if data is None:
                stored.pop(table, None)
            else:
                stored[table] = data
        return result

    def event(self, event: dict, now: datetime = EVENING):
        return self.feed(topic_of(event), key_of(event), json.dumps(event).encode(), now)

    def hold_one(self, subject: str):
        self.event(consent(subject, EVENING - HOUR, "email"))
        self.event(preferences(subject, EVENING - HOUR, quiet_hours=NIGHT))
        return self.event(click(subject, EVENING))


def test_the_processor_releases_on_a_holds_due_message_and_deletes_the_empty_record() -> None:
    worker = EventClockWorker()
    feed, load, tables = worker.feed, worker.load, worker.tables
    result = worker.hold_one("c-9")
    assert [e.kind for e in result.emits] == []  # held: nothing published
    assert result.next_due == DUE.timestamp() and "holds" in tables["c-9"]

    early = feed(HOLDS_KIND, b"c-9", Processor.release_request(DUE.timestamp() - 60), EVENING)
    assert early.emits == [] and early.writes == {} and early.next_due == DUE.timestamp()

    due = feed(HOLDS_KIND, b"c-9", Processor.release_request(DUE.timestamp()), EVENING)
    assert [e.kind for e in due.emits] == ["actions", "actions.email"]
    assert due.writes["holds"] is None and "holds" not in tables["c-9"]
    assert due.next_due is None
    assert decode_state(load("c-9")).holds.pending == []

    again = feed(HOLDS_KIND, b"c-9", Processor.release_request(DUE.timestamp()), EVENING)
    assert again.emits == []  # a repeated request releases nothing twice

    bad = feed(HOLDS_KIND, b"c-9", b"\xc1", EVENING)
    assert bad.invalid_reason == "malformed"


def test_on_the_event_clock_a_hold_the_timer_missed_is_judged_as_of_its_due_time() -> None:
    """A fast log's clock can pass a due time before the worker's 1 s timer
    asks for the release: the person's next event, the next night, then
    releases it. Judged as of that event, it would be in quiet hours and held
    again; `nudge replay` released it at 07:00. Judged as of its due time,
    the worker agrees with the replay."""
    worker = EventClockWorker()
    worker.hold_one("c-8")
    next_night = DUE + timedelta(hours=16)  # 23:00 again: quiet hours
    result = worker.event(click("c-8", next_night, category="garden"), next_night)
    [action] = [d for d in result.outcome.released if isinstance(d, Action)]
    assert action.decided_at == DUE and action.send_after is None
    assert decode_state(worker.load("c-8")).holds.pending[0].due > next_night.timestamp()
    # ^ what stays held is the new click's promo, until the morning after


def test_the_due_index_keeps_the_latest_due_time_per_subject() -> None:
    index = DueHolds()
    index.note("a", 10.0)
    index.note("b", 5.0)
    index.note("a", 20.0)  # superseded: 10 is skipped
    index.note("c", 7.0)
    index.note("c", None)  # nothing held any more
    assert index.pop_due(15.0) == [("b", 5.0)]
    assert index.pop_due(25.0) == [("a", 20.0)]
    assert index.pop_due(100.0) == [] and len(index) == 0


def test_a_replay_releases_held_actions_when_its_clock_passes_them() -> None:
    from nudge.schemas.eventlog import parse
    from nudge.replay import MemoryTables, Replay

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
