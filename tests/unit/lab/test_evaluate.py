"""`nudge evaluate` end to end on a tiny world over two seeds: the control sends
nothing, incremental figures lead, the report, the verdicts and the chart; the
trained scorer learns from another world's earlier month and is what nudge serves."""

from __future__ import annotations

import contextlib
import io
import json

import pytest

from nudge.cli import main as nudge
from nudge.lab import evaluate as evaluation
from nudge.lab.baselines import NudgePolicy, SilentPolicy
from nudge.lab.evaluate import evaluate, play, trained_scorer
from nudge.lab.simulation import START, Simulation
from nudge.schemas.eventlog import read_log

ARGV = ["evaluate", "--customers", "60", "--days", "4", "--seed", "3", "--seeds", "2"]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[dict, str]:
    """One run for the module: the report (with the chart's first bytes) and what it printed."""
    out = tmp_path_factory.mktemp("evaluation")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert nudge([*ARGV, "--out", str(out), "--quiet"]) == 0
    report = json.loads((out / "evaluation.json").read_text())
    report["_png"] = (out / "evaluation.png").read_bytes()[:8]
    return report, printed.getvalue()


def test_the_control_arm_sends_nothing() -> None:
    sim = Simulation(60, 4, 3)
    actions = [r.event for r in sim.run(SilentPolicy()) if r.kind == "actions"]
    assert actions, "the control still confirms orders"
    assert {a["message_class"] for a in actions} == {"transactional"}
    tally = play("silent", 60, 4, 3)
    assert tally["messages"] == 0 and tally["messages_by_channel"] == {}
    assert tally["local_night_messages"] == tally["just_bought_promotions"] == 0
    assert tally["transactional_messages"] == len(actions)


def test_incremental_is_measured_against_the_control_on_each_seed(run) -> None:
    report, _ = run
    assert report["command"] == (
        "nudge evaluate --customers 60 --days 4 --seed 3 --seeds 2 --scorer trained --train-seed 1"
    )
    assert report["world"]["seeds"] == [3, 4]
    assert set(report["policies"]) == {"nudge", "blast", "autopilot", "silent"}
    silent = report["policies"]["silent"]
    assert silent["messages"] == 0
    assert silent["incremental_conversions"] == {
        "mean": 0.0,
        "ci95": [0.0, 0.0],
        "per_seed": [0, 0],
    }
    for name, result in report["policies"].items():
        per_seed = [report["per_seed"][s][name] for s in ("3", "4")]
        control = [report["per_seed"][s]["silent"]["total_conversions"] for s in ("3", "4")]
        expected = [r["total_conversions"] - c for r, c in zip(per_seed, control, strict=True)]
        assert result["incremental_conversions"]["per_seed"] == expected
        assert result["incremental_conversions"]["mean"] == pytest.approx(sum(expected) / 2)
        low, high = result["incremental_conversions"]["ci95"]
        assert low <= result["incremental_conversions"]["mean"] <= high
        messages = sum(r["messages"] for r in per_seed)
        if messages:
            assert result["incremental_per_1000_messages"] == pytest.approx(
                1000 * sum(expected) / messages, abs=1e-3
            )
        for r in per_seed:
            assert r["total_conversions"] == r["attributed_conversions"] + r["organic_purchases"]
            assert r["invalid_events"] == 0
        assert {
            "messages",
            "attributed_conversions",
            "unsubscribes",
            "complaints",
            "local_night_messages",
            "just_bought_promotions_total",
            "credited_not_added",
        } <= set(result)


def test_the_harm_counters_fire_on_a_policy_without_rules(run) -> None:
    blast = run[0]["policies"]["blast"]
    assert blast["just_bought_promotions_total"] > 0
    assert blast["local_night_messages"] > 0


def test_the_gap_breakdown_adds_up_to_the_policys_messages(run) -> None:
    report, _ = run
    for name in ("nudge", "blast", "autopilot"):
        by_archetype = report["gap"][name]["by_archetype"]
        total = sum(row["messages"] for row in by_archetype.values())
        assert total == pytest.approx(report["policies"][name]["messages"], abs=0.05)


def test_targets_are_checked_and_printed_with_incremental_figures_first(run) -> None:
    report, printed = run
    assert [t["target"].split(" ")[0] for t in report["targets"]] == [
        "incremental",
        "marketing",
        "unsubscribes",
        "promotions",
    ]
    assert report["all_targets_passed"] == all(t["passed"] for t in report["targets"])
    blast = report["policies"]["blast"]
    assert report["targets"][1]["threshold"] == pytest.approx(0.15 * blast["messages"], abs=0.01)
    assert printed.count("PASS") + printed.count("FAIL") == 4
    table = printed.splitlines()
    assert table[0].startswith("nudge served heuristic-v1 (trained on world 1")
    assert table[3].startswith("incremental orders vs no contact")
    assert report["_png"] == b"\x89PNG\r\n\x1a\n"


def test_a_history_too_small_to_train_leaves_the_heuristic_served(run) -> None:
    """As on a worker: no deployable artifact, the heuristic, and the report says why."""
    report, _ = run
    training = report["training"]
    assert training["deployed"] is False and training["why_not_deployed"].startswith("not trained")
    assert report["world"]["scorer"] == training["served"] == "heuristic-v1"
    assert set(report["policies"]["nudge"]["messages_by_model"]) <= {"heuristic-v1"}


TRAINED_WORLD = 5


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple:
    """A forced artifact from a 300-person world over 10 days (too small to beat
    a constant, so `nudge train --force`'s rule), with every world it simulated.
    World 5: in a world this small, some seeds give no response at all in the
    held-out days, and then nothing can be trained."""
    built: list[tuple[int, float, float]] = []

    class Recorded(Simulation):
        def __init__(self, customers, days, seed, start=START) -> None:
            super().__init__(customers, days, seed, start=start)
            built.append((seed, self.start, self.end))

    work = tmp_path_factory.mktemp("trained")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(evaluation, "Simulation", Recorded)
        scorer, summary = trained_scorer(300, 10, TRAINED_WORLD, work, force=True)
    return scorer, summary, built, work


def test_training_never_sees_an_evaluated_world(trained) -> None:
    _, summary, built, work = trained
    assert built == [(TRAINED_WORLD, START.timestamp() - 10 * 86400, START.timestamp())]
    log = work / f"history-{TRAINED_WORLD}.jsonl"
    times = [r.event["ts"] for r in read_log(log) if "ts" in r.event]
    assert times and max(times) < START.isoformat()
    assert summary["history"]["end"] == START.isoformat() > summary["log_end"]
    with pytest.raises(ValueError, match="training world"):
        evaluate(60, 2, seeds=[1, 2], train_seed=1)
    assert nudge(["evaluate", "--customers", "60", "--days", "2", "--seed", "1", "--quiet"]) == 2


def test_the_trained_artifact_is_what_nudge_serves(trained) -> None:
    scorer, summary, _, _ = trained
    assert summary["deployed"] and summary["served"] == summary["trained_version"]
    assert scorer.version == summary["trained_version"] != "heuristic-v1"
    assert summary["cycles_served"] == (scorer.cycles is not None)
    assert summary["personas"] and scorer.active.personas is not None
    tally = play("nudge", 60, 4, 3, make=lambda: NudgePolicy(scorer))
    assert tally["messages"] > 0
    assert tally["messages_by_model"] == {scorer.version: tally["messages"]}


def test_the_heuristic_run_trains_nothing_and_says_so() -> None:
    report = evaluate(60, 2, seeds=[1], scorer="heuristic", train_seed=1)
    assert report["training"] is None and report["world"]["scorer"] == "heuristic-v1"
    assert report["command"].endswith("--seeds 1 --scorer heuristic")
    with pytest.raises(ValueError, match="scorer"):
        evaluate(60, 2, seeds=[3], scorer="oracle")


def test_nudge_plays_the_catalog_variant_given_and_the_baselines_the_shipped_one(
    tmp_path,
) -> None:
    """A variant without marketing actions: nudge sends none, blast still does,
    and the report and its command name the variant."""
    variant = tmp_path / "quiet.toml"
    variant.write_text(
        '[[actions]]\nid = "order_confirmation"\nmessage_class = "transactional"\n'
        'channels = ["email"]\nvalue = 1.0\ncooldown_hours = 0\n'
        'triggers = [{ event = "purchase" }]\n'
    )
    report = evaluate(60, 3, seeds=[2], scorer="heuristic", catalog=variant)
    policies = report["policies"]
    assert policies["nudge"]["messages"] == 0 < policies["blast"]["messages"]
    assert report["world"]["catalog"] == str(variant)
    assert report["world"]["policy"] == "config/policy.toml"
    assert report["command"].endswith(f"--catalog {variant}")
