"""Off-policy evaluation in the simulator, small and fast (the full check:
`python -m nudge.lab.ope_check`, figures in results/ope/)."""

from __future__ import annotations

import io
import re
from contextlib import redirect_stdout
from pathlib import Path

import msgspec
import pytest

from nudge.cli import main
from nudge.lab.baselines import CATALOG, POLICY
from nudge.lab.logged import from_log
from nudge.lab.ope import estimate_all, ips, on_policy
from nudge.lab.ope_check import check_seed, play, push_first
from nudge.policy.config import load_catalog, load_policy
from nudge.policy.engine import Engine
from nudge.schemas.eventlog import LoggedEvent, write_log

CUSTOMERS, DAYS, SEED = 150, 5.0, 11


@pytest.fixture(scope="module")
def configs():
    """The shipped configuration exploring a lot (the logging policy), and the
    push-first variant of the shipped one (the candidate)."""
    shipped = (load_catalog(CATALOG), load_policy(POLICY))
    exploration = msgspec.structs.replace(shipped[1].exploration, epsilon=0.3)
    logging = (shipped[0], msgspec.structs.replace(shipped[1], exploration=exploration))
    return logging, push_first(*shipped)


@pytest.fixture(scope="module")
def logged_world(configs):
    logging, variant = configs
    return play(CUSTOMERS, DAYS, SEED, logging, variant)


def test_both_engines_give_probabilities_that_sum_to_one(logged_world) -> None:
    recorder, _, until = logged_world
    decisions = recorder.decisions(until, "clicked")
    assert len(decisions) > 200
    explored = 0
    for d in decisions:
        assert sum(d.logging.values()) == pytest.approx(1.0)
        assert sum(d.target.values()) == pytest.approx(1.0)
        assert d.logging[d.logged] > 0
        explored += len(d.logging) > 1
    assert explored > 20  # channels are explored: there is something to learn from


def test_the_log_replay_reproduces_every_logged_decision(configs, logged_world) -> None:
    logging, variant = configs
    recorder, records, until = logged_world
    replayed = from_log(records, Engine(*logging), Engine(*variant), reward="clicked")
    assert replayed.logged_actions > 50 and replayed.diverged == 0
    live = estimate_all(recorder.decisions(until, "clicked"))
    again = estimate_all(replayed.decisions)
    for a, b in zip(live, again, strict=True):
        assert b.value == pytest.approx(a.value, rel=0.2, abs=1e-3)


def test_evaluating_the_logging_policy_on_its_own_log_gives_its_rate(configs) -> None:
    logging, _ = configs
    recorder, _, until = play(CUSTOMERS, DAYS, SEED, logging, logging)
    decisions = recorder.decisions(until, "clicked")
    assert ips(decisions).value == pytest.approx(on_policy(decisions).value)


def test_a_variants_estimate_from_another_policys_log_holds_its_real_rate(configs) -> None:
    logging, variant = configs
    row = check_seed(CUSTOMERS, DAYS, SEED, logging, variant)["clicked"]
    truth = row["variant_true_rate"]["value"]
    assert truth > 0  # a world with responses in it: the check means something
    for estimate in row["estimates"]:
        assert estimate["covers_truth"], (estimate, truth)


def test_the_command_prints_each_estimate_with_its_interval(
    configs, logged_world, tmp_path: Path
) -> None:
    _, records, _ = logged_world
    log = tmp_path / "log.jsonl"
    write_log(records, log)
    variant = tmp_path / "push-first.toml"
    variant.write_text(
        POLICY.read_text().replace(
            'channel_order = ["email", "push", "web", "sms"]',
            'channel_order = ["push", "email", "web", "sms"]',
        )
    )
    exploring = tmp_path / "logged.toml"
    exploring.write_text(POLICY.read_text().replace("epsilon = 0.05", "epsilon = 0.3"))
    out = io.StringIO()
    with redirect_stdout(out):
        code = main(
            [
                *("evaluate", "--offline", str(log), "--policy", str(variant)),
                *("--logged-policy", str(exploring), "--reward", "clicked"),
            ]
        )
    assert code == 0
    text = out.getvalue()
    for label in ("logged policy", "candidate IPS", "candidate SNIPS", "candidate DR"):
        line = next(line for line in text.splitlines() if label in line)
        value, low, high = (float(x) for x in re.findall(r"\d+\.\d+", line))
        assert low <= value <= high
    assert "reproduced" in text and "largest weight" in text
    # the shipped policy (epsilon 0.05) did not make this log: refused, not guessed
    assert main(["evaluate", "--offline", str(log), "--policy", str(variant)]) == 1


def test_a_log_without_actions_is_refused_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    view = {"event_id": "e-1", "type": "page_view", "customer_id": "c-1"}
    log = tmp_path / "log.jsonl"
    write_log([LoggedEvent("clickstream", {**view, "ts": "2026-03-02T10:00:00Z"})], log)
    assert main(["evaluate", "--offline", str(log), "--policy", str(POLICY)]) == 1
    assert "the log holds no actions" in capsys.readouterr().err
