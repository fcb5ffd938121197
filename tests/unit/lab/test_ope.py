"""Off-policy estimators (lab/ope.py) on synthetic logs where the truth is known."""

from __future__ import annotations

import math

import numpy as np
import pytest

from nudge.lab.ope import (
    LoggedDecision,
    diagnostics,
    doubly_robust,
    estimate_all,
    ips,
    on_policy,
    snips,
)

PAIRS = ("a@email", "a@push", "b@email", None)
# Reward rate of each pair, for two kinds of context; nothing sent converts never.
RATES = (
    {"a@email": 0.05, "a@push": 0.20, "b@email": 0.10, None: 0.0},
    {"a@email": 0.15, "a@push": 0.02, "b@email": 0.30, None: 0.0},
)
LOGGING = (  # explores everything
    {"a@email": 0.7, "a@push": 0.1, "b@email": 0.1, None: 0.1},
    {"a@email": 0.1, "a@push": 0.1, "b@email": 0.2, None: 0.6},
)
TARGET = (  # a different, partly random policy
    {"a@push": 0.8, "b@email": 0.2},
    {"b@email": 0.9, None: 0.1},
)


def truth(target=TARGET) -> float:
    """Contexts are equally likely: the target's mean reward, exactly."""
    return float(np.mean([sum(p * RATES[x][a] for a, p in target[x].items()) for x in (0, 1)]))


def synthetic(
    rng: np.random.Generator,
    people: int,
    per_person: int = 4,
    logging=LOGGING,
    target=TARGET,
    rates=RATES,
) -> list[LoggedDecision]:
    decisions = []
    for person in range(people):
        x = int(rng.integers(2))  # a person's decisions share a context: clustered
        for _ in range(per_person):
            pairs = list(logging[x])
            logged = pairs[rng.choice(len(pairs), p=[logging[x][a] for a in pairs])]
            reward = float(rng.random() < rates[x][logged])
            decisions.append(LoggedDecision(f"p{person}", logged, logging[x], target[x], reward))
    return decisions


def test_every_estimator_recovers_a_known_rate_within_its_interval() -> None:
    decisions = synthetic(np.random.default_rng(1), people=3000)
    expected = truth()
    for estimate in estimate_all(decisions):
        assert estimate.covers(expected), estimate
        assert abs(estimate.value - expected) < 0.015, estimate
        assert 0 < estimate.high - estimate.low < 0.05
    # the logging policy's own rate is another number: the estimators moved off it
    logged = on_policy(decisions).value
    assert abs(logged - expected) > 0.03


def test_the_intervals_hold_the_truth_at_about_their_stated_rate() -> None:
    rng = np.random.default_rng(2)
    expected, runs = truth(), 60
    covered = {"IPS": 0, "SNIPS": 0, "DR": 0}
    for _ in range(runs):
        for estimate in estimate_all(synthetic(rng, people=400)):
            covered[estimate.method] += estimate.covers(expected)
    for method, hits in covered.items():  # 95% stated; 60 runs: >= 50 unless badly off
        assert hits >= 50, (method, hits)


def test_snips_and_dr_have_less_variance_than_ips_where_weights_swing() -> None:
    """Most messages convert, whatever is sent; the logging policy is uniform
    over four pairs and the target always sends one: IPS weights are 0 or 4,
    so IPS swings with how often that pair happened to be logged. SNIPS
    normalises the weights away and DR's reward model absorbs the common rate."""
    flat = ({"a@email": 0.8, "a@push": 0.8, "b@email": 0.8, "b@push": 0.8},) * 2
    uniform = ({"a@email": 0.25, "a@push": 0.25, "b@email": 0.25, "b@push": 0.25},) * 2
    always = ({"a@email": 1.0},) * 2
    rng = np.random.default_rng(3)
    values: dict[str, list[float]] = {"IPS": [], "SNIPS": [], "DR": []}
    widths: dict[str, list[float]] = {"IPS": [], "SNIPS": [], "DR": []}
    for _ in range(150):
        decisions = synthetic(rng, 100, 4, logging=uniform, target=always, rates=flat)
        for estimate in estimate_all(decisions):
            values[estimate.method].append(estimate.value)
            widths[estimate.method].append(estimate.high - estimate.low)
    spread = {method: float(np.var(v)) for method, v in values.items()}
    assert spread["SNIPS"] < 0.5 * spread["IPS"] and spread["DR"] < 0.5 * spread["IPS"], spread
    for method in ("SNIPS", "DR"):
        assert np.mean(values[method]) == pytest.approx(0.8, abs=0.01)
        assert np.mean(widths[method]) < 0.7 * np.mean(widths["IPS"])


def test_evaluating_the_logging_policy_itself_gives_its_own_rate() -> None:
    decisions = synthetic(np.random.default_rng(4), 500, target=LOGGING)
    own = on_policy(decisions)
    assert ips(decisions).value == pytest.approx(own.value)
    assert snips(decisions).value == pytest.approx(own.value)
    assert diagnostics(decisions).max_weight == pytest.approx(1.0)
    assert diagnostics(decisions).effective_sample_size == pytest.approx(len(decisions))
    assert doubly_robust(decisions).covers(own.value)


def test_a_choice_the_logging_policy_never_makes_is_reported_as_unsupported() -> None:
    never = ({"c@sms": 1.0},) * 2
    decisions = synthetic(np.random.default_rng(5), 200, target=never)
    d = diagnostics(decisions)
    assert d.unsupported_mass == pytest.approx(1.0) and d.max_weight == 0.0
    assert ips(decisions).value == 0.0
    assert math.isnan(snips(decisions).value)  # no weight at all: SNIPS cannot say


def test_sending_nothing_needs_no_support_its_reward_is_known() -> None:
    """The candidate stays silent half the time where the logging policy
    always sent: no weight carries that half, yet its reward is surely 0."""
    always_sends = ({"a@email": 0.5, "b@email": 0.5},) * 2
    half_silent = ({"a@email": 0.5, None: 0.5},) * 2
    decisions = synthetic(np.random.default_rng(6), 3000, logging=always_sends, target=half_silent)
    expected = truth(half_silent)
    assert diagnostics(decisions).unsupported_mass == 0.0
    for estimate in estimate_all(decisions):
        assert estimate.covers(expected), estimate
        assert abs(estimate.value - expected) < 0.01, estimate


def test_no_decisions_is_an_error_not_a_rate() -> None:
    for estimator in (ips, snips, doubly_robust, on_policy, diagnostics):
        with pytest.raises(ValueError):
            estimator([])
