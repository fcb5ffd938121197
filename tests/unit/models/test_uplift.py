"""Uplift: the T-learner finds whom a message moves where propensity ranks the
people who buy anyway first; Qini by hand; the artifact keeps the uplift
model; the engine ranks on uplift x value x lever when the scorer has one;
and a simulated log's holdout comes back as would-be examples for training."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from nudge.cli import main as cli_main
from nudge.lab.baselines import NudgePolicy
from nudge.lab.simulation import Simulation
from nudge.models import artifact
from nudge.models.artifact import ArtifactError
from nudge.models.examples import build_examples
from nudge.models.features import FEATURE_NAMES, FeatureBuilder
from nudge.models.scorer import ModelScorer
from nudge.models.serving import ScorerHolder
from nudge.models.training import fit_propensity, label_orders, train, uplift_report
from nudge.models.uplift import (
    UpliftError,
    UpliftModel,
    compare,
    fit_uplift,
    qini_coefficient,
    qini_curve,
    qini_gain,
    uplift_at,
)
from nudge.policy.config import load_catalog, load_policy
from nudge.policy.engine import Engine
from nudge.policy.scoring import HeuristicScorer, ScoringRequest
from nudge.schemas.eventlog import read_log, write_log
from tests.unit.policy_kit import DAY, T0, Person, catalog, click, marketing, policy

ROOT = Path(__file__).resolve().parents[3]
CATALOG = load_catalog(ROOT / "config" / "catalog.toml")


# -- the estimator ---------------------------------------------------------------------


def segments(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Segment 1 orders half the time with or without a message; segment 0
    orders 5% of the time, 25% with one. A third of the people are held out."""
    rng = np.random.default_rng(seed)
    segment = rng.integers(0, 2, n)
    X = np.column_stack([segment, rng.normal(size=n)]).astype(float)
    treated = rng.random(n) < 2 / 3
    rate = np.where(segment == 1, 0.5, np.where(treated, 0.25, 0.05))
    y = (rng.random(n) < rate).astype(np.int64)
    return X, y, treated


def test_t_learner_recovers_the_effect_where_propensity_ranks_the_wrong_segment_first() -> None:
    X, y, treated = segments(6000, seed=1)
    model = fit_uplift(X, y, treated)
    propensity = fit_propensity(X[treated], y[treated])
    seg0, seg1 = np.array([[0.0, 0.0]]), np.array([[1.0, 0.0]])
    assert model.predict(seg0)[0] == pytest.approx(0.20, abs=0.04)
    assert model.predict(seg1)[0] == pytest.approx(0.0, abs=0.04)
    # Propensity prefers the people who order anyway.
    p0, p1 = propensity.predict_proba(np.vstack([seg0, seg1]))[:, 1]
    assert p1 > p0 + 0.2
    # On fresh people, the uplift ranking earns more incremental orders.
    X_new, y_new, t_new = segments(4000, seed=2)
    table = compare(
        y_new,
        t_new,
        {"uplift": model.predict(X_new), "propensity": propensity.predict_proba(X_new)[:, 1]},
    )
    # Best possible here: 2/3 treated x (0.2 x 1/8 + 0.1 x 1/2 - 0.1 / 2) = 0.0167.
    assert table["uplift"]["qini"] > 0.012
    assert table["propensity"]["qini"] < -0.012
    assert table["uplift"]["uplift_at_0.3"] == pytest.approx(0.20, abs=0.05)
    gain, low, high = qini_gain(
        y_new, t_new, model.predict(X_new), propensity.predict_proba(X_new)[:, 1]
    )
    assert 0 < low < gain < high  # surely better, so training would serve it
    assert table["propensity"]["uplift_at_0.3"] == pytest.approx(0.0, abs=0.05)


def test_an_arm_without_both_outcomes_cannot_train() -> None:
    X, y, treated = segments(300, seed=3)
    y[~treated] = 0
    with pytest.raises(UpliftError, match="control arm"):
        fit_uplift(X, y, treated)


# -- Qini and uplift-at-k ------------------------------------------------------------------


def test_qini_on_a_hand_checked_example() -> None:
    score = np.array([0.4, 0.3, 0.2, 0.1])
    treated = np.array([True, False, True, False])
    y = np.array([1, 0, 0, 1])
    # Top 1: one treated order, no control -> Q=1. Top 2: the control did not
    # order -> 1. Top 3: 1. All 4: 1 treated order - 1 control order x 2/2 = 0.
    k, q = qini_curve(score, y, treated)
    assert k.tolist() == [0, 1, 2, 3, 4] and q.tolist() == [0, 1, 1, 1, 0]
    # Trapezoids 0.5 + 1 + 1 + 0.5 = 3; random targeting's line is flat at 0.
    assert qini_coefficient(score, y, treated) == pytest.approx(3 / 16)
    # Reversed: Q = 0, -1, -0.5, 0 (the control's order comes first): -1.5 / 16.
    assert qini_coefficient(-score, y, treated) == pytest.approx(-1.5 / 16)
    # The top half: treated order rate 1, control 0.
    assert uplift_at(score, y, treated, 0.5) == pytest.approx(1.0)
    assert uplift_at(score, y, treated, 0.25) is None  # no control among the top 1


def test_tied_scores_form_one_point_of_the_curve() -> None:
    treated = np.array([True, False, True, False])
    y = np.array([1, 0, 0, 1])
    k, q = qini_curve(np.zeros(4), y, treated)
    assert k.tolist() == [0, 4] and q.tolist() == [0, 0]
    assert qini_coefficient(np.zeros(4), y, treated) == 0.0  # a constant is random


def test_compare_reports_an_interval_and_leaves_out_thin_slices() -> None:
    X, y, treated = segments(2000, seed=6)
    score = X[:, 0] * -1.0  # the segment a message moves first
    row = compare(y, treated, {"by_segment": score})["by_segment"]
    assert row["qini_low"] < row["qini"] < row["qini_high"]
    assert row["qini_low"] > 0  # 2,000 people tell this ranking from random
    assert uplift_at(score, y, treated, 0.005, min_arm=20) is None  # 10 people
    assert row["uplift_at_0.3"] == pytest.approx(0.2, abs=0.06)


# -- artifact and scorer -------------------------------------------------------------------


def feature_models(seed: int = 4) -> tuple:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(400, len(FEATURE_NAMES)))
    treated = rng.random(400) < 0.5
    y = (rng.random(400) < 1 / (1 + np.exp(-X[:, 0] - 0.5 * treated))).astype(np.int64)
    return fit_propensity(X, y), fit_uplift(X, y, treated)


def test_the_artifact_keeps_the_uplift_model_and_the_scorer_serves_its_difference(
    tmp_path: Path,
) -> None:
    propensity, uplift = feature_models()
    saved = artifact.save(tmp_path, propensity, None, {"source": "test"}, "v1", uplift=uplift)
    artifact.set_current(tmp_path, "v1")
    loaded = artifact.load(tmp_path)
    assert loaded.uplift is not None
    builder = FeatureBuilder(load_policy(ROOT / "config" / "policy.toml").quiet_hours)
    scorer = ModelScorer(loaded, builder)
    requests = requests_for_catalog()
    propensities, uplifts = scorer.propensities_and_uplifts(requests)
    X = builder.matrix(requests)
    np.testing.assert_allclose(uplifts, saved.uplift.predict(X), rtol=0, atol=1e-12)
    np.testing.assert_allclose(propensities, propensity.predict_proba(X)[:, 1], rtol=0, atol=1e-12)
    assert scorer.propensities_and_uplifts([]) == ([], [])
    holder = ScorerHolder(tmp_path, load_policy(ROOT / "config" / "policy.toml"))
    assert holder.propensities_and_uplifts(requests)[1] == pytest.approx(uplifts, abs=1e-12)


def test_without_an_uplift_model_the_scorer_says_so(tmp_path: Path) -> None:
    propensity, _ = feature_models()
    artifact.save(tmp_path, propensity, None, {}, "v1")
    artifact.set_current(tmp_path, "v1")
    quiet = load_policy(ROOT / "config" / "policy.toml")
    assert artifact.load(tmp_path).uplift is None
    requests = requests_for_catalog()
    scorer = ModelScorer(artifact.load(tmp_path), FeatureBuilder(quiet.quiet_hours))
    assert scorer.propensities_and_uplifts(requests)[1] is None
    assert ScorerHolder(tmp_path / "none", quiet).propensities_and_uplifts(requests)[1] is None


def test_an_uplift_model_of_the_wrong_shape_is_refused(tmp_path: Path) -> None:
    propensity, _ = feature_models()
    narrow = fit_propensity(np.eye(4), np.array([0, 1, 0, 1]))
    with pytest.raises(ArtifactError, match="uplift model"):
        artifact.save(tmp_path, propensity, None, {}, "v1", uplift=UpliftModel(narrow, narrow))


def requests_for_catalog() -> list[ScoringRequest]:
    """Every catalog action on email, for a new customer viewing a product."""
    from nudge.policy.state import CustomerState
    from tests.unit.policy_kit import decode

    event = decode(click("c-1", T0), T0)
    return [
        ScoringRequest(CustomerState(), event, action, "lighting", "email", T0.timestamp())
        for action in CATALOG.actions
    ]


# -- the engine -----------------------------------------------------------------------------


class FixedScorer:
    """Pure stand-in: fixed propensities and, optionally, uplifts per action."""

    version = "fixed"

    def __init__(self, propensity: dict[str, float], uplift: dict[str, float] | None) -> None:
        self.propensity, self.uplift = propensity, uplift

    def propensities(self, requests: Sequence[ScoringRequest]) -> list[float]:
        return [self.propensity[r.action.id] for r in requests]

    def propensities_and_uplifts(
        self, requests: Sequence[ScoringRequest]
    ) -> tuple[list[float], list[float] | None]:
        if self.uplift is None:
            return self.propensities(requests), None
        return self.propensities(requests), [self.uplift[r.action.id] for r in requests]


def two_offers(uplift: dict[str, float] | None) -> Person:
    scorer = FixedScorer({"likely": 0.9, "moved": 0.1}, uplift)
    engine = Engine(catalog(marketing("likely"), marketing("moved")), policy(), scorer)
    person = Person(engine)
    person.opt_in(T0, "email")
    return person


def test_the_engine_ranks_on_uplift_when_the_scorer_has_it() -> None:
    action = two_offers({"likely": 0.0, "moved": 0.05}).act(click("c-1", T0))
    assert action.action_id == "moved"
    assert action.score == pytest.approx(0.05 * 10.0)
    assert action.propensity == pytest.approx(0.1)
    assert action.reasons[0].startswith("score 0.5 = uplift +0.0500 x value 10")


def test_a_held_action_says_on_release_that_uplift_scored_it() -> None:
    scorer = FixedScorer({"moved": 0.1}, {"moved": 0.05})
    quiet = {"start": "21:00", "end": "08:00", "tz": "UTC"}
    engine = Engine(catalog(marketing("moved")), policy(quiet_hours=quiet), scorer)
    person = Person(engine)
    person.opt_in(T0, "email")
    evening = T0.replace(hour=22)
    held = person.hold(click("c-1", evening))
    assert held.reasons[0].startswith("score 0.5 = uplift +0.0500")
    (released,) = person.release(evening.replace(hour=8) + DAY)
    assert released.action_id == "moved"
    assert released.reasons[0] == held.reasons[0]


def test_the_engine_ranks_on_propensity_without_an_uplift_model() -> None:
    action = two_offers(None).act(click("c-1", T0))
    assert action.action_id == "likely"
    assert action.reasons[0].startswith("score 9 = propensity 0.900")
    # A Scorer with no uplift method at all is ranked the same way.
    plain = Engine(catalog(marketing("likely")), policy(), HeuristicScorer())
    person = Person(plain)
    person.opt_in(T0, "email")
    assert "propensity" in person.act(click("c-1", T0)).reasons[0]


def test_nudge_simulate_logs_the_holdouts_would_be_decisions(tmp_path: Path) -> None:
    policy_path = tmp_path / "policy.toml"
    text = (ROOT / "config" / "policy.toml").read_text()
    policy_path.write_text(text.replace("share = 0.05", "share = 0.5"))
    out = tmp_path / "events.jsonl"
    argv = ["simulate", "--customers", "40", "--days", "4", "--quiet", "--out", str(out)]
    assert cli_main([*argv, "--policy", str(policy_path)]) == 0
    records = list(read_log(out))
    would_be = [r for r in records if r.kind == "suppressions" and r.event.get("would_be")]
    assert would_be
    assert all(r.event["experiment_arm"] == "holdout" for r in would_be)
    actions = [r for r in records if r.kind == "actions"]
    marketing = [r for r in actions if r.event["message_class"] == "marketing"]
    assert marketing  # the other half are sent messages
    assert all(r.event["experiment_arm"] == "treatment" for r in marketing)


# -- from a simulated log --------------------------------------------------------------------


@pytest.fixture(scope="module")
def holdout_log(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """200 customers for 14 days, half of them held out, would-be decisions logged."""
    folder = tmp_path_factory.mktemp("uplift")
    policy_text = (ROOT / "config" / "policy.toml").read_text()
    assert "share = 0.05" in policy_text
    policy_path = folder / "policy.toml"
    policy_path.write_text(policy_text.replace("share = 0.05", "share = 0.5"))
    log = folder / "events.jsonl"
    world = Simulation(200, 14, seed=5)
    write_log(world.run(NudgePolicy(policy=policy_path, log_would_be=True)), log)
    return log, policy_path


def test_the_holdouts_would_be_decisions_come_back_as_examples(holdout_log) -> None:
    log, policy_path = holdout_log
    records = list(read_log(log))
    logged = [r for r in records if r.kind == "suppressions" and r.event.get("would_be")]
    assert logged, "the simulator logs the holdout's would-be decisions"
    replayed = build_examples(records, CATALOG, load_policy(policy_path))
    stats = replayed.stats
    assert stats["logged_would_be"] == len(logged)
    assert len(replayed.withheld) + stats["would_be_diverged"] == len(logged)
    assert len(replayed.withheld) >= 0.8 * len(logged)
    sent = {e.subject for e in replayed.examples}
    held = {e.subject for e in replayed.withheld}
    assert held and sent
    assert not [s for s in held if _marketing_to(replayed, s)]  # the holdout got no marketing
    label_orders(replayed.withheld, replayed.orders, 2 * 86400.0)
    assert any(e.ordered for e in replayed.withheld)


def _marketing_to(replayed, subject: str) -> bool:
    transactional = FEATURE_NAMES.index("transactional")
    return any(e.subject == subject and not e.features[transactional] for e in replayed.examples)


def test_training_reports_qini_against_propensity_for_both_arms(holdout_log) -> None:
    log, policy_path = holdout_log
    result = train(log, CATALOG, load_policy(policy_path), holdout_days=5)
    summary = result.metadata["uplift"]
    assert summary["train"]["holdout"] > 0 and summary["train"]["treatment"] > 0
    if "metrics" in summary:  # the held-out days had decisions of both arms
        assert set(summary["metrics"]) == {"uplift", "propensity", "heuristic"}
        gain = summary["qini_gain_over_propensity"]
        assert gain["low"] <= gain["gain"] <= gain["high"]
        served = gain["low"] > 0 and summary["metrics"]["uplift"]["qini"] > 0
        assert summary["served"] is served
    assert (result.uplift is not None) is summary["served"]
    text = "\n".join(uplift_report(summary))
    assert "holdout would-be" in text and ("served" in text)
