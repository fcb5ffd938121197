"""The experiment readout: who counts from when, and intervals that cover
the truth at the stated rate.

Synthetic logs with a known effect (numpy, seeded), then `nudge experiments
report` on a file, then a small simulated world running a real experiment.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from nudge.cli import main
from nudge.lab.baselines import NudgePolicy
from nudge.lab.readout import MIN_PEOPLE, Readout, read
from nudge.lab.simulation import Simulation
from nudge.schemas.eventlog import LoggedEvent, read_log, write_log

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


def decision(subject: str, arm: str, holdout: bool, at: datetime) -> tuple[str, dict[str, Any]]:
    """A person's entry: a marketing action, or the holdout's would-be suppression."""
    header = {
        "customer_id": subject,
        "decided_at": iso(at),
        "experiment_arm": "holdout" if holdout else "treatment",
        "experiment": {"name": "exp", "arm": arm},
    }
    if holdout:
        would_be = {"action_id": "promo", "channel": "email", "score": 1.0}
        return "suppressions", {**header, "kind": "suppression", "would_be": would_be}
    return "actions", {**header, "kind": "action", "message_class": "marketing"}


def order(subject: str, at: datetime, n: int) -> tuple[str, dict[str, Any]]:
    return "purchases", {"customer_id": subject, "order_id": f"{subject}-{n}", "ts": iso(at)}


def logged(records: list[tuple[str, dict[str, Any]]]) -> list[LoggedEvent]:
    return [LoggedEvent(kind, event) for kind, event in records]


def synthetic_log(
    rng: np.random.Generator, arms: dict[str, tuple[float, float]], treated: int, held: int
) -> list[tuple[str, dict[str, Any]]]:
    """Per arm: `treated` and `held` people who enter at T0 and then order a
    Poisson number of times (rate per arm: (treated, holdout)); everyone
    also ordered before entering, which must not count."""
    records = []
    for arm, (rate_treated, rate_held) in arms.items():
        for holdout, n, rate in ((False, treated, rate_treated), (True, held, rate_held)):
            for i in range(n):
                subject = f"{arm}-{'h' if holdout else 't'}-{i}"
                records.append(order(subject, T0 - timedelta(days=1), 0))
                records.append(decision(subject, arm, holdout, T0))
                for k in range(rng.poisson(rate)):
                    records.append(order(subject, T0 + timedelta(hours=k + 1), k + 1))
    return records


@pytest.mark.parametrize("confidence", [0.95, 0.8])
def test_the_intervals_cover_the_true_difference_at_the_stated_rate(confidence: float) -> None:
    """200 synthetic experiments (seed 16), two arms each: `lift` adds 0.1
    orders per person (0.3 against 0.2), `flat` adds nothing. The interval of
    incremental conversions must cover the truth (0.1 x treated people, or 0)
    in about `confidence` of the 400 readouts."""
    rng = np.random.default_rng(16)
    truth = {"lift": 0.1, "flat": 0.0}
    treated, held = 300, 100
    covered = widths = 0.0
    runs = 200
    for _ in range(runs):
        records = synthetic_log(rng, {"lift": (0.3, 0.2), "flat": (0.2, 0.2)}, treated, held)
        for row in read(logged(records)).report(confidence):
            assert (row.people, row.holdout_people) == (treated, held)
            covered += row.low <= truth[row.arm] * treated <= row.high
            widths += row.high - row.low
    rate = covered / (2 * runs)
    # Binomial standard deviation over 400 readouts: 0.011 at 95 %, 0.02 at 80 %.
    assert abs(rate - confidence) < 3.5 * np.sqrt(confidence * (1 - confidence) / (2 * runs))
    assert widths > 0


def test_orders_before_entering_and_decisions_of_others_do_not_count() -> None:
    records = [
        order("t-1", T0 - timedelta(hours=1), 1),  # before entering: not counted
        decision("t-1", "a", False, T0),
        order("t-1", T0 + timedelta(hours=1), 2),
        order("t-1", T0 + timedelta(hours=1), 2),  # the same order resent: once
        decision("t-1", "a", False, T0 + timedelta(hours=2)),  # a second message
        decision("h-1", "a", True, T0),
        ("suppressions", {**decision("x", "a", True, T0)[1], "would_be": None}),  # no would-be
        ("actions", {**decision("y", "a", False, T0)[1], "message_class": "transactional"}),
    ]
    (row,) = read(logged(records)).report()
    assert (row.people, row.holdout_people) == (1, 1)
    assert (row.messages, row.conversions, row.holdout_conversions) == (2, 1, 0)
    assert row.note.startswith("too small to tell")


def test_a_held_action_enters_its_person_when_it_was_decided_not_released() -> None:
    held = decision("t-1", "a", False, T0 + timedelta(hours=10))
    held[1]["held_at"] = iso(T0)
    records = [held, order("t-1", T0 + timedelta(hours=1), 1), decision("h-1", "a", True, T0)]
    (row,) = read(logged(records)).report()
    assert (row.messages, row.conversions) == (1, 1)


def test_a_visitor_who_logs_in_is_one_person_with_the_customers_orders() -> None:
    readout = Readout()
    for kind, event in [
        decision("anon-1", "a", False, T0),
        ("identity", {"type": "identify", "anonymous_id": "anon-1", "customer_id": "c-1"}),
        order("c-1", T0 + timedelta(hours=1), 1),
        decision("c-1", "a", False, T0 + timedelta(hours=2)),
    ]:
        readout.add(kind, event)
    (row,) = readout.report()
    assert (row.people, row.messages, row.conversions) == (1, 2, 1)


def test_a_sample_too_small_to_tell_says_so_and_a_clear_effect_does_not() -> None:
    rng = np.random.default_rng(3)
    small = read(logged(synthetic_log(rng, {"a": (0.5, 0.2)}, MIN_PEOPLE - 1, 5))).report()
    assert "fewer than" in small[0].note
    flat = read(logged(synthetic_log(rng, {"a": (0.2, 0.2)}, 2000, 2000))).report()
    # A true difference of 0 is inside a 95 % interval almost always (seeded).
    assert flat[0].note == "too small to tell: the interval includes 0"
    clear = read(logged(synthetic_log(rng, {"a": (1.0, 0.2)}, 400, 400))).report()
    assert clear[0].note == "" and clear[0].low > 0


def test_nudge_experiments_report_prints_every_arm(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rng = np.random.default_rng(5)
    records = synthetic_log(rng, {"a": (0.6, 0.2), "b": (0.2, 0.2)}, 200, 60)
    log = tmp_path / "log.jsonl"
    log.write_text("".join(json.dumps({"kind": k, "event": e}) + "\n" for k, e in records))
    assert main(["experiments", "report", str(log)]) == 0
    text = capsys.readouterr().out
    assert "exp              a" in text and "exp              b" in text
    assert "exp / b: too small to tell" in text
    assert main(["experiments", "report", str(log), "--json", "--confidence", "0.9"]) == 0
    rows = json.loads(capsys.readouterr().out)["arms"]
    assert [(r["arm"], r["people"], r["holdout_people"]) for r in rows] == [
        ("a", 200, 60),
        ("b", 200, 60),
    ]
    assert rows[0]["confidence"] == 0.9 and rows[0]["low"] > 0
    (tmp_path / "empty.jsonl").write_text("")
    assert main(["experiments", "report", str(tmp_path / "empty.jsonl")]) == 1


def test_a_simulated_experiment_logs_its_arms_and_reads_out(tmp_path: Path) -> None:
    """A small world (300 people, 7 days, seed 3) with the shipped catalog and
    policy, split into two arms, the second with lower global caps; the log
    holds the actions and the holdout's would-be suppressions, as nudge
    simulate --out writes it."""
    root = Path(__file__).resolve().parents[3] / "config"
    gentle = (root / "policy.toml").read_text().replace("day = 3\nweek = 7", "day = 1\nweek = 3")
    assert gentle != (root / "policy.toml").read_text()
    (tmp_path / "gentle.toml").write_text(gentle)
    (tmp_path / "experiments.toml").write_text(
        '[[experiments]]\nname = "caps"\narms = [{ name = "current" },'
        ' { name = "gentle", policy = "gentle.toml" }]\n'
    )
    policy = NudgePolicy(log_would_be=True, experiments=tmp_path / "experiments.toml")
    log = tmp_path / "run.jsonl"
    write_log(Simulation(300, 7, 3).run(policy), log)
    decisions = [
        json.loads(line)["event"]
        for line in log.read_text().splitlines()
        if json.loads(line)["kind"] in ("actions", "suppressions")
    ]
    assert decisions and all(d["experiment"]["name"] == "caps" for d in decisions)
    assert {d["experiment"]["arm"] for d in decisions} == {"current", "gentle"}
    rows = read(read_log(log)).report()
    assert [(r.experiment, r.arm) for r in rows] == [("caps", "current"), ("caps", "gentle")]
    assert all(r.people > 0 and r.messages >= r.people for r in rows)
    assert all(r.holdout_people > 0 for r in rows)  # their would-be suppressions are logged
