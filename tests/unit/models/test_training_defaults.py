"""`nudge simulate --out` then `nudge train`, both with their defaults, train
and evaluate a model; and a model no better than a constant is not deployed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.model_latency import synthetic_log
from nudge.cli import main as nudge
from nudge.models import artifact
from nudge.models.examples import Example, ExampleSet
from nudge.models.training import beats_constant, default_holdout_days
from nudge.policy.clock import DAY


@pytest.fixture(scope="module")
def default_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The log `nudge simulate --out` writes with every default (200 customers, 28 days)."""
    path = tmp_path_factory.mktemp("simulated") / "events.jsonl"
    assert nudge(["simulate", "--out", str(path), "--quiet"]) == 0
    return path


def fake_examples(first_decision_day: float, end_day: float) -> ExampleSet:
    """A replay whose log starts two years before its first decision, as a simulated one does."""
    example = Example("d", first_decision_day * DAY, [], 0.0)
    return ExampleSet([example], {}, [], -720 * DAY, end_day * DAY, {})


def test_the_holdout_is_measured_from_the_first_decision_not_the_imported_history() -> None:
    assert default_holdout_days(fake_examples(0, 28), label_window_days=2) == 7.0
    assert default_holdout_days(fake_examples(0, 20), label_window_days=2) == 5.0
    # A week of decisions: the old fixed 7-day holdout left nothing to train on.
    assert default_holdout_days(fake_examples(0, 7), label_window_days=2) == 3.0
    assert default_holdout_days(fake_examples(0, 400), label_window_days=2) == 7.0


def test_simulate_then_train_with_their_defaults_train_and_evaluate(
    default_log: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    models = tmp_path / "models"
    monkeypatch.setenv("NUDGE_MODEL_DIR", str(models))  # train's default --out
    assert nudge(["train", str(default_log)]) == 0
    printed = capsys.readouterr()
    (version,) = [p.name for p in models.iterdir() if p.is_dir()]
    metadata = json.loads((models / version / "metadata.json").read_text())
    metrics = metadata["metrics"]
    assert metrics["train"]["examples"] >= 300, metrics["train"]
    assert metrics["validation"]["examples"] >= 100, metrics["validation"]
    assert metadata["training_window"]["holdout_days"] == 7.0
    # Deployed exactly when it beats a constant, warned exactly when it does not.
    useful = beats_constant(metadata)
    assert (models / "CURRENT").exists() == useful
    assert ("WARNING" in printed.err) == (not useful)
    assert f"skill {metrics['validation']['brier_skill']:+.1%}" in printed.out


def test_a_model_no_better_than_a_constant_is_saved_but_not_deployed(
    default_log: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """The default simulated world is such a case: 200 customers over 28 days give
    about 150 held-out decisions with 5 responses, and the model's Brier score is
    worse than the base rate's (0.0351 vs 0.0331)."""
    models = tmp_path / "models"
    (models / "previous").mkdir(parents=True)
    (models / "previous" / "metadata.json").write_text("{}")
    artifact.set_current(models, "previous")

    assert nudge(["train", str(default_log), "--out", str(models)]) == 0
    printed = capsys.readouterr()
    (version,) = [p.name for p in models.iterdir() if p.is_dir() and p.name != "previous"]
    validation = artifact.load(models, version).metadata["metrics"]["validation"]
    assert validation["brier"] >= validation["constant_brier"]
    assert validation["brier_skill"] <= 0
    assert "WARNING: held-out Brier" in printed.err
    assert "not better than a constant" in printed.err
    assert "NOT deployed: CURRENT unchanged (previous)" in printed.out
    assert artifact.current_version(models) == "previous"

    assert nudge(["train", str(default_log), "--out", str(models), "--force"]) == 0
    printed = capsys.readouterr()
    assert "WARNING: held-out Brier" in printed.err
    forced = artifact.current_version(models)
    assert forced not in ("previous", version)
    assert f"CURRENT -> {forced} (--force)" in printed.out


def test_a_model_better_than_a_constant_is_deployed_without_a_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    log = tmp_path / "events.jsonl"
    synthetic_log(log, customers=200, days=21, seed=5)
    models = tmp_path / "models"
    assert nudge(["train", str(log), "--out", str(models)]) == 0
    printed = capsys.readouterr()
    deployed = artifact.load(models)
    assert beats_constant(deployed.metadata)
    assert deployed.metadata["metrics"]["validation"]["brier_skill"] > 0
    assert "WARNING" not in printed.err
    assert f"CURRENT -> {deployed.version}\n" in printed.out
