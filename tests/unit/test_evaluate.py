"""`nudge evaluate` end to end on a tiny world: the report and the chart."""

from __future__ import annotations

import json

from nudge.cli import main as nudge


def test_evaluate_writes_the_report_and_the_chart(tmp_path, capsys) -> None:
    argv = ["evaluate", "--customers", "60", "--days", "4", "--seed", "3"]
    assert nudge([*argv, "--out", str(tmp_path), "--quiet"]) == 0

    report = json.loads((tmp_path / "evaluation.json").read_text())
    assert report["command"] == "nudge evaluate --customers 60 --days 4 --seed 3"
    assert set(report["policies"]) == {"nudge", "blast", "autopilot", "silent"}
    for result in report["policies"].values():
        assert {
            "messages",
            "attributed_conversions",
            "organic_purchases",
            "total_conversions",
            "conversions_per_1000_messages",
            "unsubscribes",
            "complaints",
            "revenue",
            "incremental_orders",
        } <= set(result)
        assert result["total_conversions"] == (
            result["attributed_conversions"] + result["organic_purchases"]
        )
        assert result["invalid_events"] == 0
    assert report["policies"]["silent"]["messages"] == 0
    assert len(report["targets"]) == 3
    assert report["all_targets_passed"] == all(t["passed"] for t in report["targets"])
    assert (tmp_path / "evaluation.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    printed = capsys.readouterr().out
    assert "conversions / 1,000 messages" in printed
    assert printed.count("PASS") + printed.count("FAIL") == 3
