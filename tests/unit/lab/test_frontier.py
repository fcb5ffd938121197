"""The frontier's mechanics on a small world (lab/frontier.py): tracing changes
nothing, a budget of 0 is the control, the budget is never exceeded, the
oracle never promotes a just-bought category and reads what it should."""

from __future__ import annotations

import pytest

from nudge.lab.baselines import BlastPolicy
from nudge.lab.evaluate import play
from nudge.lab.frontier import (
    CartDuePolicy,
    OraclePolicy,
    RandomPolicy,
    order_chance,
    play_traced,
    shares,
)
from nudge.lab.simulation import Simulation

WORLD = (150, 6, 4)  # customers, days, seed


@pytest.fixture(scope="module")
def blast() -> dict:
    return play("blast", *WORLD)


def test_a_traced_world_plays_exactly_as_a_plain_one(blast: dict) -> None:
    traced, _ = play_traced("blast", *WORLD, lambda w: BlastPolicy())
    for key in ("total_conversions", "messages", "unsubscribes", "attributed_conversions"):
        assert traced[key] == blast[key]
    assert sum(row["messages"] for row in traced["by_kind"].values()) == blast["messages"]
    # a new order made by a click is credited to the message that made it
    assert 0 < traced["caused_orders"] <= traced["attributed_conversions"]


def test_a_budget_of_zero_is_the_control() -> None:
    control = play("silent", *WORLD)
    arms = (
        lambda w: OraclePolicy(w, 0.0, budget=0),
        lambda w: CartDuePolicy(w, budget=0),
        lambda w: RandomPolicy(1.0, 0),
    )
    for make in arms:
        thinned, _ = play_traced("thinned", *WORLD, make)
        assert thinned["messages"] == 0
        assert thinned["total_conversions"] == control["total_conversions"]
        assert thinned["revenue"] == control["revenue"]


def test_the_budget_is_respected(blast: dict) -> None:
    budget = blast["messages"] // 10
    oracle, policy = play_traced("oracle", *WORLD, lambda w: OraclePolicy(w, 0.0, budget))
    assert oracle["messages"] == budget == policy.sent
    randomly, _ = play_traced("random", *WORLD, lambda w: RandomPolicy(0.5, budget))
    assert randomly["messages"] == budget


def test_the_selections_never_promote_a_just_bought_category(
    blast: dict,
) -> None:
    assert blast["just_bought_promotions"] > 0
    oracle, policy = play_traced("oracle", *WORLD, lambda w: OraclePolicy(w, 0.0))
    assert oracle["just_bought_promotions"] == 0
    assert 0 < oracle["messages"] < blast["messages"]
    assert len(policy.scores) >= oracle["messages"]
    cart_due, _ = play_traced("cart_due", *WORLD, lambda w: CartDuePolicy(w))
    assert cart_due["just_bought_promotions"] == 0
    timings = {kind.split("|")[3] for kind in cart_due["by_kind"]}
    assert timings and timings <= {"cart", "due"}
    ages = {kind.split("|")[4] for kind in cart_due["by_kind"] if "|cart|" in kind}
    assert ages and ages <= {"<1d", "1-7d", ">7d"}


def test_a_higher_threshold_sends_only_likelier_messages() -> None:
    low, everything = play_traced("oracle", *WORLD, lambda w: OraclePolicy(w, 0.0))
    cut = sorted(everything.scores)[len(everything.scores) // 2]
    high, _ = play_traced("oracle", *WORLD, lambda w: OraclePolicy(w, cut))
    assert 0 < high["messages"] < low["messages"]


def test_order_chance_is_zero_where_no_new_order_can_follow() -> None:
    sim = Simulation(*WORLD)
    person = sim.people[0]
    base = {
        "customer_id": person.customer_id,
        "message_class": "marketing",
        "action_id": "category_inspiration",
        "category": next(iter(person.interests)),
    }
    t = sim.start
    assert order_chance(sim, {**base, "channel": "push"}, t) > 0
    assert order_chance(sim, {**base, "channel": "push", "message_class": "transactional"}, t) == 0
    assert order_chance(sim, {**base, "channel": "web"}, t) == 0  # not on the site
    assert order_chance(sim, {**base, "channel": "push", "customer_id": "nobody"}, t) == 0


def test_shares_and_the_margin_over_the_target_are_per_seed() -> None:
    runs = {
        seed: {
            "blast": {"incremental_conversions": 50, "messages": 1000, "unsubscribes": 100},
            "oracle": {"incremental_conversions": inc, "messages": 150, "unsubscribes": 10},
        }
        for seed, inc in ((7, 40), (8, 20))
    }
    result = shares(runs, "oracle")
    assert result["incremental_conversions"]["per_seed"] == [0.8, 0.4]
    assert result["messages"]["mean"] == 0.15
    assert result["orders_over_target"]["per_seed"] == [10.0, -10.0]
