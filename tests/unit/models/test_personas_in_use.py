"""Personas in use (issue #17, point 3): assigned from behaviour by the served
persona model as state changes, stored, carried on actions, shown in
explanations, targeted by the catalog; none without a model or without
profiling consent."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from nudge.models.artifact import Artifact
from nudge.models.features import FEATURE_NAMES, FeatureBuilder
from nudge.models.personas import (
    DESCRIPTORS,
    FoldedPersonas,
    PersonaModel,
    descriptors,
    persona_key,
)
from nudge.models.scorer import ModelScorer
from nudge.policy import personas
from nudge.policy.config import ConfigError, load_catalog
from nudge.policy.engine import Engine
from nudge.policy.explain import summarize_state
from nudge.policy.scoring import HeuristicScorer
from nudge.policy.state import CustomerState, Fatigue, Recency
from nudge.schemas.outputs import Action
from tests.unit.policy_kit import (
    DAY,
    HOUR,
    T0,
    Person,
    catalog,
    click,
    consent,
    marketing,
    policy,
    purchase,
)

NOW = T0.timestamp()


class FixedPersona(HeuristicScorer):
    """The heuristic scorer with a persona model that says one persona."""

    def __init__(self, persona: str) -> None:
        self.key = persona

    def persona(self, state: CustomerState, now: float) -> str:
        return self.key


def _engine(scorer: HeuristicScorer | None, *actions: dict) -> Engine:
    return Engine(catalog(*(actions or (marketing(),))), policy(), scorer)


def _states(n: int, seed: int = 0) -> list[CustomerState]:
    rng = np.random.default_rng(seed)
    states = []
    for i in range(n):
        orders = int(rng.poisson(8 if i % 2 else 1))
        states.append(
            CustomerState(
                recency=Recency(
                    orders=orders,
                    revenue=float(orders * rng.uniform(20, 200)),
                    last_seen={"session_start": NOW - float(rng.uniform(0, 90)) * 86400},
                    affinity={f"cat{k}": 1.0 for k in range(int(rng.integers(1, 6)))},
                ),
                fatigue=Fatigue(
                    sent={"email": int(rng.integers(0, 20))},
                    engaged={"email": int(rng.integers(0, 5))},
                    ignored_streak=int(rng.integers(0, 4)),
                ),
            )
        )
    return states


def test_the_folded_persona_model_matches_predict() -> None:
    states = _states(60)
    X = np.array([descriptors(s, NOW) for s in states])
    model = PersonaModel(n_personas=3).fit(X)
    folded = FoldedPersonas(model)
    assert [folded.cluster(s, NOW) for s in states] == model.predict(X).tolist()
    for persona in model.personas_:
        assert persona["key"] == persona_key(persona["name"])
        assert all(t in personas.TRAITS for t in personas.traits_of(persona["key"]))


def test_persona_keys_are_the_traits_of_the_name() -> None:
    assert persona_key("Frequent buyers, big spenders (2)") == "frequent_buyers+big_spenders"
    assert persona_key("Lapsing") == "lapsing"
    assert persona_key("Average customers (3)") == "average"
    assert len(DESCRIPTORS) * 2 + 1 == len(personas.TRAITS)


def test_the_served_model_assigns_stores_and_carries_the_persona() -> None:
    states = _states(60)
    X = np.array([descriptors(s, NOW) for s in states])
    model = PersonaModel(n_personas=3).fit(X)
    rows = np.random.default_rng(1).normal(size=(40, len(FEATURE_NAMES)))
    pipe = make_pipeline(StandardScaler(), LogisticRegression()).fit(rows, [0, 1] * 20)
    scorer = ModelScorer(Artifact("m-1", pipe, model), FeatureBuilder(policy().quiet_hours))
    p = Person(_engine(scorer))
    p.opt_in(T0 - DAY)
    action = p.act(click(p.id, T0))
    expected = FoldedPersonas(model).assign(p.state, T0.timestamp() + 1)
    assert p.state.profile.persona == expected == action.persona
    assert f"persona {expected}" in action.reasons
    summary = summarize_state(p.state, p.id, p.engine.policy, T0)
    assert summary["persona"] == expected


def test_the_persona_follows_behaviour_as_it_changes() -> None:
    class ByOrders(HeuristicScorer):
        def persona(self, state: CustomerState, now: float) -> str:
            return "frequent_buyers" if state.recency.orders >= 2 else "rare_buyers"

    p = Person(_engine(ByOrders()))
    p.send(purchase(p.id, T0))
    assert p.state.profile.persona == "rare_buyers"
    p.send(purchase(p.id, T0 + HOUR))
    assert p.state.profile.persona == "frequent_buyers"


def test_no_persona_without_a_model_or_without_profiling_consent() -> None:
    p = Person(_engine(None))
    p.opt_in(T0 - DAY)
    assert p.act(click(p.id, T0)).persona is None and p.state.profile.persona is None
    q = Person(_engine(FixedPersona("lapsing")), "c-2")
    q.opt_in(T0 - DAY)
    q.send(click(q.id, T0))
    assert q.state.profile.persona == "lapsing"
    q.send(consent(q.id, T0 + HOUR, "all", "revoked", "profiling"))
    assert q.state.profile.persona is None  # dropped at once, not at the next visit
    assert q.act(click(q.id, T0 + 2 * HOUR)).persona is None


def test_catalog_eligibility_by_persona() -> None:
    targeted = marketing("winback", personas=["lapsing", "rare_buyers"], value=50.0)
    everyone = marketing("promo")
    lapsing = Person(_engine(FixedPersona("lapsing+small_spenders"), targeted, everyone))
    lapsing.opt_in(T0 - DAY)
    assert lapsing.act(click(lapsing.id, T0)).action_id == "winback"
    loyal = Person(_engine(FixedPersona("frequent_buyers"), targeted, everyone), "c-2")
    loyal.opt_in(T0 - DAY)
    outcome = loyal.send(click(loyal.id, T0))
    assert isinstance(outcome.decision, Action) and outcome.decision.action_id == "promo"
    [winback] = [c for c in outcome.trace if c.action.id == "winback"]
    assert winback.reasons == ["persona"]
    unknown = Person(_engine(None, targeted), "c-3")  # no persona: not targeted
    unknown.opt_in(T0 - DAY)
    assert unknown.suppress(click(unknown.id, T0)).reasons == ["persona"]


def test_a_per_persona_lever_scales_the_score() -> None:
    action = marketing(lever=1.0, persona_levers={"big_spenders": 2.5})
    big = Person(_engine(FixedPersona("frequent_buyers+big_spenders"), action))
    plain = Person(_engine(FixedPersona("frequent_buyers"), action), "c-2")
    for p in (big, plain):
        p.opt_in(T0 - DAY)
    a, b = big.act(click(big.id, T0)), plain.act(click(plain.id, T0))
    assert a.score == pytest.approx(2.5 * b.score)
    assert "lever 2.5" in a.reasons[0]
    assert "persona frequent_buyers+big_spenders: lever 2.5 for big_spenders" in a.reasons


def test_the_catalog_refuses_an_unknown_trait(tmp_path) -> None:
    path = tmp_path / "catalog.toml"
    path.write_text(
        '[[actions]]\nid = "a"\nmessage_class = "marketing"\nchannels = ["email"]\n'
        'value = 1.0\npersonas = ["vip"]\ntriggers = [{ event = "session_start" }]\n'
    )
    with pytest.raises(ConfigError, match="personas"):
        load_catalog(path)
