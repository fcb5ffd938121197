"""The simulated world: reproducible, valid per the contract, closing the loop
on the actions it receives, and telling a spammer from nudge."""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime, timedelta

import pytest

from nudge.cli import main as nudge
from nudge.lab.baselines import BlastPolicy, NudgePolicy, SilentPolicy
from nudge.lab.shoppers import ARCHETYPES, CART_INTENT_HALF_LIFE, TIMING
from nudge.lab.simulation import Simulation
from nudge.policy.clock import DAY
from nudge.policy.inmemory import event_key
from nudge.schemas.codec import decode_event
from nudge.schemas.eventlog import LoggedEvent, read_log, write_log

CUSTOMERS, DAYS = 80, 7


def play(policy, customers: int = CUSTOMERS, days: float = DAYS, seed: int = 7):
    return list(Simulation(customers, days, seed).run(policy))


@pytest.fixture(scope="module")
def nudge_log() -> list[LoggedEvent]:
    return play(NudgePolicy())


def test_same_seed_gives_the_identical_log(nudge_log: list[LoggedEvent]) -> None:
    assert play(NudgePolicy()) == nudge_log


def test_another_seed_gives_another_world(nudge_log: list[LoggedEvent]) -> None:
    assert play(NudgePolicy(), seed=8) != nudge_log


def test_every_event_is_valid_per_the_contract(nudge_log: list[LoggedEvent]) -> None:
    kinds = Counter()
    for kind, event in ((r.kind, r.event) for r in nudge_log):
        if kind in ("actions", "suppressions"):  # outputs, not input events
            continue
        now = datetime.fromisoformat(event["ts"]) + timedelta(seconds=1)
        decode_event(kind, json.dumps(event).encode(), event_key(event), now)
        kinds[kind, event["type"]] += 1
    for expected in [
        ("clickstream", "session_start"),
        ("clickstream", "product_view"),
        ("clickstream", "add_to_cart"),
        ("clickstream", "checkout_started"),
        ("purchases", "purchase"),
        ("consent", "consent"),
        ("preferences", "preferences"),
        ("identity", "identify"),
        ("feedback", "delivered"),
        ("feedback", "opened"),
        ("feedback", "ignored"),
    ]:
        assert kinds[expected], f"no {expected} in the log"


def test_nudge_worker_sees_no_invalid_input() -> None:
    policy = NudgePolicy()
    play(policy)
    assert not policy.worker.deadletters


def test_anonymous_visitors_browse_before_they_identify(nudge_log: list[LoggedEvent]) -> None:
    anonymous = {r.event.get("anonymous_id") for r in nudge_log if r.kind == "clickstream"}
    identified = {r.event["anonymous_id"] for r in nudge_log if r.kind == "identity"}
    assert anonymous & identified


def test_feedback_refers_to_actions_sent_before(nudge_log: list[LoggedEvent]) -> None:
    sent: set[str] = set()
    answered = 0
    for kind, event in ((r.kind, r.event) for r in nudge_log):
        if kind == "actions":
            sent.add(event["decision_id"])
        elif kind == "feedback":
            assert event["decision_id"] in sent
            answered += 1
    assert answered


def test_respond_answers_one_action_with_its_decision_id(nudge_log: list[LoggedEvent]) -> None:
    actions = [r.event for r in nudge_log if r.kind == "actions"]
    action = next(e for e in actions if e["message_class"] == "marketing")
    simulation = Simulation(CUSTOMERS, DAYS, 7)
    reactions = simulation.respond(action)
    feedback = [r.event for r in reactions if r.kind == "feedback"]
    assert feedback[0]["type"] in ("delivered", "bounced", "ignored")
    assert {e["decision_id"] for e in feedback} == {action["decision_id"]}
    times = [r.event["ts"] for r in reactions]
    assert times == sorted(times)


def test_blast_sends_far_more_and_loses_more_people() -> None:
    def tally(policy) -> Counter:
        counts: Counter = Counter()
        for kind, event in ((r.kind, r.event) for r in play(policy, customers=150, days=14)):
            if kind == "actions" and event["message_class"] == "marketing":
                counts["messages"] += 1
            elif kind == "feedback" and event["type"] in ("unsubscribed", "complained"):
                counts["opt_outs"] += 1
        return counts

    nudge_counts, blast_counts = tally(NudgePolicy()), tally(BlastPolicy())
    assert blast_counts["messages"] > 3 * nudge_counts["messages"]
    assert blast_counts["opt_outs"] > 3 * max(1, nudge_counts["opt_outs"])


def test_the_simulated_log_round_trips(tmp_path, nudge_log: list[LoggedEvent]) -> None:
    path = tmp_path / "log.jsonl"
    assert write_log(nudge_log, path) == len(nudge_log)
    assert list(read_log(path)) == nudge_log


def test_every_person_has_one_of_the_archetypes() -> None:
    """The hidden truth is an Archetype; "persona" is left to the learned clusters."""
    world = Simulation(CUSTOMERS, DAYS, 7)
    names = {a.name for a in ARCHETYPES}
    assert {p.archetype.name for p in world.people} == names
    assert not hasattr(world.people[0], "persona")


def test_simulate_command_writes_the_log(tmp_path) -> None:
    path = tmp_path / "out" / "log.jsonl"
    argv = ["simulate", "--customers", "20", "--days", "2", "--out", str(path), "--quiet"]
    assert nudge(argv) == 0
    records = list(read_log(path))
    assert records == play(NudgePolicy(), customers=20, days=2)
    assert {r.kind for r in records} >= {"clickstream", "consent", "actions", "feedback"}


def test_an_abandoned_carts_pull_fades_with_its_age() -> None:
    """A reminder about a fresh cart gets the full "cart" lifts; one about a
    cart two days old half of what they add; a fortnight-old one almost none."""
    person = Simulation(5, 1, seed=7).people[0]
    person.cart_since = 1_000_000.0
    click, buy, irritation = TIMING["cart"]
    assert person.timing_lifts("cart", person.cart_since) == (click, buy, irritation)
    two_days = person.timing_lifts("cart", person.cart_since + CART_INTENT_HALF_LIFE)
    assert two_days == pytest.approx((1 + (click - 1) / 2, 1 + (buy - 1) / 2, irritation))
    click_old, buy_old, _ = person.timing_lifts("cart", person.cart_since + 14 * DAY)
    assert 1.0 < buy_old < 1.05 and 1.0 < click_old < 1.05
    assert person.timing_lifts("due", person.cart_since + 14 * DAY) == TIMING["due"]


class CartWatch(Simulation):
    """Checks, at every item put in a cart, that the cart's age counts from its first."""

    def __init__(self, *args: object) -> None:
        super().__init__(*args)
        self.first_added: dict[str, float] = {}
        self.later_items = 0

    def _observe(self, person, kind: str, event: dict, t: float) -> None:
        super()._observe(person, kind, event, t)
        if kind == "clickstream" and event["type"] == "add_to_cart":
            if len(person.cart) == 1:
                self.first_added[person.customer_id] = t
            else:
                self.later_items += 1
            assert person.cart_since == self.first_added[person.customer_id]


def test_the_cart_age_starts_at_the_carts_first_item() -> None:
    sim = CartWatch(300, 10, 7)
    for _ in sim.run(SilentPolicy()):
        pass
    assert sim.later_items, "no cart got a second item in the sample"


def test_held_actions_go_out_when_due_not_at_the_next_event() -> None:
    """As the worker's timer does: a purchase arriving after the due time
    must not find the hold still waiting (it would be released after the
    order, about what was just bought)."""
    released = []
    for record in play(NudgePolicy(), customers=300, days=7):
        action = record.event
        if record.kind == "actions" and action.get("held_at"):
            released.append(action)
    assert released, "nothing was held in the sample"
    for action in released:
        until = action["reasons"][-1].split(" until ")[1][:16]  # "YYYY-MM-DD HH:MM"
        decided = datetime.fromisoformat(action["decided_at"])
        due = datetime.fromisoformat(until + "+00:00")
        assert timedelta(0) <= decided - due < timedelta(minutes=1), action["reasons"][-1]
