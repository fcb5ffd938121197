"""Exploration among eligible (action, channel) pairs, with logged probabilities.

Off-policy evaluation (lab/ope.py) divides by the logged probability of
what was sent, so it must be the true chance of that (action, channel) pair;
and exploring must never pick a pair that a rule ruled out.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import timedelta

import pytest

from nudge.policy.engine import Engine
from nudge.policy.scoring import ScoringRequest
from nudge.schemas.outputs import Action, Suppression
from tests.unit.policy_kit import (
    T0,
    Person,
    catalog,
    click,
    marketing,
    policy,
    preferences,
    purchase,
)

MINUTE = timedelta(minutes=1)
BY_CHANNEL = {"email": 0.10, "push": 0.20, "web": 0.05, "sms": 0.30}


class ChannelScorer:
    """A propensity that depends on the channel only, to see which one was scored."""

    version = "by-channel"

    def propensities(self, requests: Sequence[ScoringRequest]) -> list[float]:
        return [BY_CHANNEL[r.channel] for r in requests]


def explorer(epsilon: float, **fields) -> Engine:
    actions = (
        marketing("big", channels=["email", "push", "web"], value=50.0),
        marketing("small", channels=["email", "push"], value=1.0),
    )
    return Engine(
        catalog(*actions), policy(exploration={"epsilon": epsilon}, **fields), ChannelScorer()
    )


def decide(engine: Engine, i: int, *setup) -> tuple[Person, object]:
    person = Person(engine)
    person.opt_in(T0)
    for event in setup:
        person.send(event)
    outcome = person.send(click(person.id, T0 + MINUTE, event_id=f"view-{i}"))
    return person, outcome


def test_actions_and_channels_are_explored_with_their_true_probabilities() -> None:
    epsilon, n = 0.3, 2000
    engine = explorer(epsilon)
    picks: Counter[tuple[str, str]] = Counter()
    for i in range(n):
        _, outcome = decide(engine, i)
        action = outcome.decision
        assert isinstance(action, Action)
        chances = {(c.candidate.action.id, c.channel): c.probability for c in outcome.choices}
        # five pairs; the greedy one (big on email, by channel order) keeps the rest
        assert len(chances) == 5 and sum(chances.values()) == pytest.approx(1.0)
        assert chances[("big", "email")] == pytest.approx(1 - epsilon + epsilon / 5)
        pair = (action.action_id, action.channel)
        assert action.selection_probability == pytest.approx(chances[pair], abs=1e-6)
        assert action.explored == (pair != ("big", "email"))
        assert action.propensity == pytest.approx(BY_CHANNEL[action.channel])  # scored there
        picks[pair] += 1
        if i < 30:  # the draw is hashed from the event id: a replay picks the same
            _, again = decide(engine, i)
            assert (again.decision.action_id, again.decision.channel) == pair
    for pair, chance in chances.items():
        share = picks[pair] / n
        assert abs(share - chance) < 4 * (chance * (1 - chance) / n) ** 0.5 + 1e-3, pair


def test_exploration_never_picks_a_pair_a_rule_ruled_out() -> None:
    # push has no consent, sms is capped at zero a day, `small` promotes the
    # category just bought: only big on email and big on web pass every rule.
    engine = Engine(
        catalog(
            marketing("big", channels=["email", "push", "web", "sms"], value=50.0),
            marketing("small", channels=["email", "web"], value=1.0, category="lighting"),
        ),
        policy(exploration={"epsilon": 0.5}, channel_caps={"sms": {"day": 0}}),
        ChannelScorer(),
    )
    seen: Counter[tuple[str, str]] = Counter()
    for i in range(400):
        person = Person(engine)
        person.opt_in(T0, "email", "web", "sms")
        person.send(purchase(person.id, T0, "lighting"))
        outcome = person.send(click(person.id, T0 + MINUTE, event_id=f"view-{i}"))
        action = outcome.decision
        assert isinstance(action, Action)
        assert {(c.candidate.action.id, c.channel) for c in outcome.choices} == {
            ("big", "email"),
            ("big", "web"),
        }
        seen[(action.action_id, action.channel)] += 1
        expected = 0.75 if action.channel == "email" else 0.25
        assert action.selection_probability == pytest.approx(expected)
    assert set(seen) == {("big", "email"), ("big", "web")}


def test_a_stated_preferred_channel_is_never_explored_away() -> None:
    engine = explorer(0.5)
    for i in range(300):
        prefers = preferences("c-1", T0, preferred_channel="push")
        _, outcome = decide(engine, i, prefers)
        action = outcome.decision
        assert isinstance(action, Action) and action.channel == "push"
        assert {c.channel for c in outcome.choices} == {"push"}
        assert sum(c.probability for c in outcome.choices) == pytest.approx(1.0)


def test_a_suppression_is_certain_and_offers_no_choice() -> None:
    """Nothing passed every rule: nudge never explores into (or out of) a
    suppression, so its probability is 1 and no pair is offered."""
    engine = explorer(0.5)
    for i in range(50):
        person = Person(engine)  # no consent on any channel
        outcome = person.send(click(person.id, T0 + MINUTE, event_id=f"view-{i}"))
        assert isinstance(outcome.decision, Suppression)
        assert outcome.choices == []


def test_a_receipt_is_never_explored_onto_another_channel() -> None:
    receipt = {
        "id": "receipt",
        "message_class": "transactional",
        "channels": ["email", "sms"],
        "triggers": [{"event": "purchase"}],
        "value": 1.0,
        "cooldown_hours": 0,
    }
    engine = Engine(catalog(receipt), policy(exploration={"epsilon": 0.5}), ChannelScorer())
    channels = Counter()
    for i in range(200):
        person = Person(engine)
        action = person.act(purchase(person.id, T0 + MINUTE, event_id=f"order-{i}"))
        assert (action.explored, action.selection_probability) == (False, 1.0)
        channels[action.channel] += 1
    assert len(channels) == 1, channels
