"""The persona check's arms differ only in the extra action's persona
eligibility (lab/persona_check.py)."""

from __future__ import annotations

from pathlib import Path

from nudge.lab.persona_check import TARGET_TRAITS, _paired, catalogs
from nudge.policy.config import load_catalog


def test_the_arms_differ_only_in_who_the_extra_action_is_for(tmp_path: Path) -> None:
    paths = catalogs(tmp_path)
    arms = {arm: {a.id: a for a in load_catalog(path).actions} for arm, path in paths.items()}
    assert "picks_for_regulars" not in arms["blind"]
    assert arms["aware"]["picks_for_regulars"].personas == TARGET_TRAITS
    assert arms["everyone"]["picks_for_regulars"].personas == []
    aware, everyone = arms["aware"]["picks_for_regulars"], arms["everyone"]["picks_for_regulars"]
    assert aware.triggers == everyone.triggers and aware.channels == everyone.channels
    assert set(arms["aware"]) - {"picks_for_regulars"} == set(arms["blind"])


def test_paired_differences_are_per_seed() -> None:
    runs = {
        7: {
            "a": {"total_conversions": 10, "messages": 5},
            "b": {"total_conversions": 7, "messages": 9},
        },
        8: {
            "a": {"total_conversions": 12, "messages": 5},
            "b": {"total_conversions": 8, "messages": 6},
        },
    }
    diff = _paired(runs, "a", "b")
    assert diff["orders"]["per_seed"] == [3, 4] and diff["messages"] == [-4, -1]
