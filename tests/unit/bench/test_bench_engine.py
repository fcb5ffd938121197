"""Smoke test of the engine benchmark: a tiny run in-process, no timing assertions."""

from __future__ import annotations

import json
from pathlib import Path

from bench import engine

EXPECTED_PHASE_KEYS = {
    "messages",
    "decisions",
    "decision_share",
    "actions",
    "suppressions",
    "deadletters",
    "messages_per_second",
    "decisions_per_second",
    "latency_us",
    "decision_latency_us",
    "suppression_reasons",
    "actions_by_action",
}


def test_generator_is_seeded_valid_and_mixed() -> None:
    first = engine.generate_messages(50, 2000, seed=3)
    again = engine.generate_messages(50, 2000, seed=3)
    assert [m.value for m in first] == [m.value for m in again]
    assert 1900 <= len(first) <= 2100
    kinds = {m.kind for m in first}
    assert {"clickstream", "purchases", "consent", "preferences", "feedback"} <= kinds
    times = [m.now for m in first]
    assert times == sorted(times), "event times advance"
    for message in first:  # keyed by the subject, as the worker requires
        body = json.loads(message.value)
        subject = (
            body["anonymous_id"]
            if message.kind == "identity"
            else body.get("customer_id") or body.get("anonymous_id")
        )
        assert message.key == subject.encode()


def test_tiny_run_writes_a_complete_result(tmp_path: Path) -> None:
    out = tmp_path / "engine.json"
    code = engine.main(
        [
            "--customers", "50",
            "--events", "2000",
            "--trigger-events", "500",
            "--seed", "11",
            "--out", str(out),
            "--no-pin",
            "--quiet",
        ]
    )  # fmt: skip
    assert code == 0
    result = json.loads(out.read_text())
    assert {"params", "machine", "mixed", "triggers", "state_size", "targets", "pass"} <= set(
        result
    )
    assert {"nproc", "python", "cpu_model", "date"} <= set(result["machine"])
    for phase in ("mixed", "triggers"):
        figures = result[phase]
        assert set(figures) >= EXPECTED_PHASE_KEYS
        assert figures["deadletters"] == 0, figures["deadletter_reasons"]
        assert figures["messages"] > 0
        assert {"p50", "p95", "p99", "max"} <= set(figures["decision_latency_us"])
    mixed = result["mixed"]
    assert mixed["actions"] > 0
    assert mixed["suppressions"] > 0
    assert mixed["suppression_reasons"]
    assert mixed["decisions"] == mixed["actions"] + mixed["suppressions"]
    assert result["triggers"]["decision_share"] > 0.9, "the trigger phase is all decisions"
    assert result["state_size"]["max_bytes_per_customer"] > 0
    assert set(result["targets"]) == {
        "trigger_decisions_per_second",
        "trigger_decision_p99_us",
        "mixed_decision_p99_us",
    }
    assert isinstance(result["pass"], bool)
