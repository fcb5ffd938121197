"""The persona check's arms differ only in the extra action's persona
eligibility, or only in how a persona is assigned (lab/persona_check.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nudge.lab.persona_check import (
    CATALOG_OF,
    RANDOM_TARGET_SHARE,
    TARGET_TRAITS,
    HiddenPersonas,
    RandomPersonas,
    _paired,
    catalogs,
)
from nudge.models.personas import PersonaModel
from nudge.policy.config import load_catalog
from nudge.policy.state import CustomerState


def _model() -> PersonaModel:
    """A fitted persona model with one persona the extra action targets."""
    rows = np.random.default_rng(0).normal(size=(40, 7))
    model = PersonaModel(n_personas=2).fit(rows)
    model.personas_[0]["name"] = "Attentive, responsive"
    model.personas_[1]["name"] = "Tuning out, unresponsive"
    return model


def test_the_arms_differ_only_in_who_the_extra_action_is_for(tmp_path: Path) -> None:
    paths = catalogs(tmp_path)
    arms = {arm: {a.id: a for a in load_catalog(path).actions} for arm, path in paths.items()}
    assert "picks_for_regulars" not in arms["blind"]
    assert arms["aware"]["picks_for_regulars"].personas == TARGET_TRAITS
    assert arms["everyone"]["picks_for_regulars"].personas == []
    aware, everyone = arms["aware"]["picks_for_regulars"], arms["everyone"]["picks_for_regulars"]
    assert aware.triggers == everyone.triggers and aware.channels == everyone.channels
    assert set(arms["aware"]) - {"picks_for_regulars"} == set(arms["blind"])
    assert CATALOG_OF["random"] == CATALOG_OF["hidden"] == "aware"


def test_random_personas_ignore_behaviour_and_stick() -> None:
    scorer = RandomPersonas(_model(), seed=7)
    drawn = [scorer.persona(CustomerState(), 0.0) for _ in range(2000)]
    assert set(drawn) == {"attentive+responsive", "tuning_out+unresponsive"}
    share = drawn.count("attentive+responsive") / len(drawn)
    assert abs(share - RANDOM_TARGET_SHARE) < 0.04
    state = CustomerState()
    state.profile.persona = "tuning_out+unresponsive"
    assert {scorer.persona(state, 0.0) for _ in range(50)} == {"tuning_out+unresponsive"}


def test_the_hidden_ceiling_targets_the_chosen_archetypes_of_the_current_customer() -> None:
    scorer = HiddenPersonas(_model(), {"c1": "loyal_homebody", "c2": "one_time_buyer"})
    state = CustomerState()
    scorer.current = "c1"
    assert scorer.persona(state, 0.0) == "attentive"
    scorer.current = "c2"
    assert scorer.persona(state, 0.0) == "tuning_out"
    scorer.current = None
    state.profile.persona = "attentive"
    assert scorer.persona(state, 0.0) == "attentive"


def test_paired_differences_are_per_seed() -> None:
    runs = {
        7: {
            "a": {"total_conversions": 10, "messages": 5, "unsubscribes": 1},
            "b": {"total_conversions": 7, "messages": 9, "unsubscribes": 3},
        },
        8: {
            "a": {"total_conversions": 12, "messages": 5, "unsubscribes": 2},
            "b": {"total_conversions": 8, "messages": 6, "unsubscribes": 2},
        },
    }
    diff = _paired(runs, "a", "b")
    assert diff["orders"]["per_seed"] == [3, 4] and diff["messages"] == [-4, -1]
    assert diff["unsubscribes"] == [-2, 0]
