"""`nudge replay --clock event` judges event times against the log's own clock:
a log of any age replays as it did live, an event far from its neighbours is
still rejected, and a replay that rejects most of its input fails."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from nudge.cli import main
from tests.unit.policy_kit import click, consent, purchase

#: Late morning in Europe (outside the shipped quiet hours) a few days ago, and
#: the same time seven years earlier: older than the worker's five-year bound.
RECENT = (datetime.now(UTC) - timedelta(days=3)).replace(hour=11, minute=0, second=0, microsecond=0)
HISTORIC = RECENT - timedelta(days=7 * 365)


def story(start: datetime, customer: str = "c-1") -> list[tuple[str, dict]]:
    """A consented shopper views lamps, buys one, then views again."""
    return [
        ("consent", consent(customer, start - timedelta(hours=1), "email")),
        *[("clickstream", click(customer, start + timedelta(minutes=m))) for m in range(3)],
        ("purchases", purchase(customer, start + timedelta(minutes=10), "lighting")),
        ("clickstream", click(customer, start + timedelta(minutes=20))),
    ]


def write_log(path: Path, events: list[tuple[str, dict]]) -> Path:
    path.write_text("".join(json.dumps({"kind": k, "event": e}) + "\n" for k, e in events))
    return path


def replay(path: Path, capsys, *extra: str) -> tuple[int, dict, str]:
    status = main(["replay", str(path), "--json", "--quiet", *extra])
    captured = capsys.readouterr()
    return status, json.loads(captured.out), captured.err


def decided(report: dict) -> tuple:
    """What a report says was decided, without counts that name the log."""
    sent = sorted((r["action_id"], r["channel"], r["count"]) for r in report["actions"])
    return sent, report["suppression_reasons"], report["deadletters"]


def test_a_log_older_than_five_years_replays_as_a_recent_one(tmp_path: Path, capsys) -> None:
    old = write_log(tmp_path / "old.jsonl", story(HISTORIC))
    new = write_log(tmp_path / "new.jsonl", story(RECENT))
    status, historic, err = replay(old, capsys, "--clock", "event")
    assert status == 0, err
    assert historic["deadletters"] == {}, "the event times were judged against today"
    assert historic["events"] == 6 and historic["decisions"] == 3
    status, recent, _ = replay(new, capsys, "--clock", "event")
    assert status == 0
    assert decided(historic) == decided(recent)


def test_an_event_far_from_the_log_is_still_a_bad_timestamp(tmp_path: Path, capsys) -> None:
    events = story(HISTORIC)
    # Six years before its neighbours, and two days after today: neither can be true.
    events.insert(3, ("clickstream", click("c-2", HISTORIC - timedelta(days=6 * 365))))
    events.append(("clickstream", click("c-3", datetime.now(UTC) + timedelta(days=2))))
    status, report, err = replay(write_log(tmp_path / "log.jsonl", events), capsys)
    assert status == 0, err  # 2 of 8 rejected: a minority
    assert report["deadletters"] == {"bad_timestamp": 2}
    assert report["events"] == 8 and report["decisions"] == 3


def test_a_replay_that_rejects_most_of_its_input_fails_and_says_why(tmp_path: Path, capsys) -> None:
    events = story(RECENT)
    for _ in range(7):  # no customer_id or anonymous_id
        events.append(("clickstream", {**click("x", RECENT), "customer_id": None}))
    events.append(("clickstream", {**click("c-9", RECENT), "ts": "yesterday"}))
    status, report, err = replay(write_log(tmp_path / "log.jsonl", events), capsys)
    assert status == 1
    assert report["deadletters"] == {"schema_violation": 1, "missing_subject": 7}
    assert "8 of 14 events (57%) were rejected" in err
    assert "missing_subject 7, schema_violation 1" in err

    # Half rejected is not most.
    status, report, err = replay(write_log(tmp_path / "half.jsonl", events[:12]), capsys)
    assert status == 0, err
    assert sum(report["deadletters"].values()) == 6
