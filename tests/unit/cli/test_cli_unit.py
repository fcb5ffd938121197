"""The `nudge` commands that need no broker: reading events, checking them,
replaying a log, and clear errors."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from nudge.cli import COMMANDS, build_parser, main
from nudge.cli.commands.tail import describe
from nudge.schemas import eventlog
from tests.unit.policy_kit import T0, click, consent, iso, purchase

ROOT = Path(__file__).resolve().parents[3]


def log_line(kind: str, event: dict, **extra) -> str:
    return json.dumps({"kind": kind, "event": event, **extra})


def test_every_command_has_help(capsys) -> None:
    for name in COMMANDS:
        with pytest.raises(SystemExit) as done:
            build_parser().parse_args([name, "--help"])
        assert done.value.code == 0
        assert "usage: nudge" in capsys.readouterr().out


def test_events_are_read_from_logs_arrays_and_pretty_json_with_line_numbers() -> None:
    view = click("c-1", T0)
    lines = [log_line("clickstream", view), "", json.dumps(purchase("c-1", T0)), "{nope"]
    items = eventlog.parse("\n".join(lines))
    assert [(i.line, getattr(i, "kind", None)) for i in items] == [
        (1, "clickstream"),
        (3, "purchases"),
        (4, None),
    ]
    assert isinstance(items[2], eventlog.Unreadable) and "not JSON" in items[2].error
    array = eventlog.parse("[\n" + json.dumps(view) + ",\n" + json.dumps(view) + "\n]")
    assert [(i.line, i.kind) for i in array] == [(2, "clickstream"), (3, "clickstream")]
    [pretty] = eventlog.parse(json.dumps(view, indent=2))
    assert pretty.event == view and pretty.key == b"c-1"
    [unknown] = eventlog.parse('{"type": "teleport"}')
    assert isinstance(unknown, eventlog.Unreadable) and "--kind" in unknown.error


def test_send_check_names_the_line_and_reason_of_each_invalid_event(tmp_path, capsys) -> None:
    now = T0.replace(year=2026, month=11, day=22)
    good = click("c-1", now)
    bad = {**click("c-1", now), "price": "free"}
    path = tmp_path / "events.jsonl"
    path.write_text(f"{json.dumps(good)}\n{json.dumps(bad)}\n")
    assert main(["send", "--check", str(path)]) == 1
    captured = capsys.readouterr()
    assert "line 2: schema_violation" in captured.err
    assert "1 valid, 1 invalid" in captured.out


def test_send_refuses_an_unknown_kind(capsys) -> None:
    assert main(["send", "--kind", "nope", "--check", "{}"]) == 1
    assert "--kind must be one of" in capsys.readouterr().err


@pytest.fixture
def story(tmp_path: Path) -> Path:
    """A consented shopper who views lamps, buys one, then views again."""
    events = [
        ("consent", consent("c-1", T0 - timedelta(hours=1), "email")),
        *[("clickstream", click("c-1", T0 + timedelta(minutes=m))) for m in range(3)],
        ("purchases", purchase("c-1", T0 + timedelta(minutes=10), "lighting")),
        ("clickstream", click("c-1", T0 + timedelta(minutes=20))),
    ]
    path = tmp_path / "story.jsonl"
    lines = [log_line(kind, event) for kind, event in events]
    lines.append(log_line("actions", {"ignored": True}))  # output lines are skipped
    path.write_text("\n".join(lines) + "\n")
    return path


def replay_json(story: Path, capsys, *extra: str) -> dict:
    assert main(["replay", str(story), "--json", "--quiet", *extra]) == 0
    return json.loads(capsys.readouterr().out)


def test_replay_reports_actions_and_suppressions(story: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "decisions.jsonl"
    report = replay_json(story, capsys, "--out", str(out))
    sent = {r["action_id"]: r["count"] for r in report["actions"]}
    assert sent == {"category_inspiration": 1, "order_confirmation": 1}
    assert report["suppression_reasons"] == {"purchase_cooldown": 1, "action_cooldown": 1}
    assert report["skipped"] == {"actions": 1}
    assert report["events"] == 6
    decisions = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(decisions) == report["decisions"]
    assert {d["kind"] for d in decisions} <= {"action", "suppression"}


def test_replay_on_rocksdb_decides_as_in_memory_and_keeps_its_state(
    story: Path, tmp_path: Path, capsys
) -> None:
    in_memory = replay_json(story, capsys)
    state = f"rocksdb:{tmp_path / 'state'}"
    assert replay_json(story, capsys, "--state", state) == {**in_memory, "state": state}
    # A second replay on that state is a restarted worker seeing every event
    # again: nothing is sent anew, and each action it has no record of having
    # sent is re-issued once (same decision id), not counted as sent.
    again = replay_json(story, capsys, "--state", state)
    assert again["actions"] == [] and again["suppressions"] == 0
    assert again["reissued"] == sum(row["count"] for row in in_memory["actions"]) == 2
    assert again["duplicates"] + again["reissued"] == again["events"]


def test_replay_counts_repeats_and_reissues_apart_from_sends(tmp_path: Path, capsys) -> None:
    """Within one replay nothing was lost: 50 copies of a trigger send once
    and re-issue nothing; the report says so, as JSON and as text."""
    order = purchase("c-1", T0, "lighting")
    path = tmp_path / "copies.jsonl"
    lines = [log_line("consent", consent("c-1", T0 - timedelta(hours=1), "email"))]
    lines += [log_line("purchases", order)] * 50
    path.write_text("\n".join(lines) + "\n")
    report = replay_json(path, capsys)
    assert [row["count"] for row in report["actions"]] == [1]
    assert (report["duplicates"], report["reissued"], report["decisions"]) == (49, 0, 1)
    assert main(["replay", str(path), "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "re-issued: 0" in text and "duplicates skipped: 49" in text
    state = f"rocksdb:{tmp_path / 'state'}"
    replay_json(path, capsys, "--state", state)
    assert main(["replay", str(path), "--quiet", "--state", state]) == 0
    text = capsys.readouterr().out
    assert "(sent 0, suppressed 0)" in text and "re-issued: 1 " in text


def test_replay_recorded_clock_decides_at_each_lines_time(tmp_path: Path, capsys) -> None:
    view = click("c-1", T0, category="lighting")
    late = iso(T0 + timedelta(days=3))  # processed long after: the trigger expired
    path = tmp_path / "late.jsonl"
    lines = [log_line("consent", consent("c-1", T0 - timedelta(hours=1), "email"))]
    lines += [log_line("clickstream", {**view, "event_id": f"v-{n}"}, at=late) for n in range(3)]
    path.write_text("\n".join(lines) + "\n")
    assert replay_json(path, capsys)["actions"]
    recorded = replay_json(path, capsys, "--clock", "recorded")
    assert recorded["actions"] == [] and recorded["suppression_reasons"] == {"expired": 1}


def test_replay_names_a_broken_line(tmp_path: Path, capsys) -> None:
    path = tmp_path / "broken.jsonl"
    path.write_text('{"kind": "clickstream", "event": {}}\n{oops\n')
    assert main(["replay", str(path), "--quiet"]) == 1
    assert "line 2: not JSON" in capsys.readouterr().err


def test_explain_says_when_no_worker_answers(capsys) -> None:
    assert main(["explain", "c-1", "--url", "http://127.0.0.1:9"]) == 1
    assert "cannot reach a worker at http://127.0.0.1:9" in capsys.readouterr().err


def test_tail_lines_say_what_was_decided_and_why() -> None:
    action = {"action_id": "cart_reminder", "channel": "push", "send_after": None}
    assert describe("actions.push", action).startswith("ACTION      cart_reminder via push")
    suppression = {
        "reasons": ["consent"],
        "candidates": [{"action_id": "category_inspiration", "reasons": ["consent"]}],
    }
    assert describe("suppressions", suppression) == (
        "SUPPRESSED  consent  (category_inspiration: consent)"
    )
