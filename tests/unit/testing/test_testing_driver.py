"""nudge.testing.Driver: the worker in memory, driven the way a user's test drives it.

A catalog and a policy are written as TOML files, as a team testing its own
configuration has them; events go in through `send`, the clock moves by
`advance`, and what comes out is checked as the worker would publish it.
"""

from __future__ import annotations

import re
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from nudge.schemas.outputs import Action, Suppression
from nudge.testing import START, Driver

README = Path(__file__).resolve().parents[3] / "README.md"

CATALOG = """
[[actions]]
id = "lamp_tips"
message_class = "marketing"
channels = ["email"]
value = 10.0
cooldown_hours = 0
triggers = [{ event = "product_view" }]
"""

# Quiet from 13:00 to 15:00 UTC; the driver's clock starts at noon.
POLICY = """
[quiet_hours]
start = "13:00"
end = "15:00"
tz = "UTC"

[holdout]
share = 0.0

[exploration]
epsilon = 0.0
"""


@pytest.fixture
def driver(tmp_path: Path) -> Driver:
    (tmp_path / "catalog.toml").write_text(CATALOG)
    (tmp_path / "policy.toml").write_text(POLICY)
    return Driver(tmp_path / "catalog.toml", tmp_path / "policy.toml")


def grant(driver: Driver, status: str = "granted") -> dict:
    return driver.event(
        "consent", "c-1", channel="email", purpose="marketing", status=status, source="signup"
    )


def view(driver: Driver) -> dict:
    return driver.event("product_view", "c-1", product_id="p-1", category="lighting")


def test_a_trigger_with_consent_publishes_its_action_on_both_action_topics(driver: Driver) -> None:
    assert driver.now == START
    (log,) = driver.send("consent", grant(driver))
    assert log.kind == "consent-log" and log.value.applied
    out = driver.send("clickstream", view(driver))
    assert [o.kind for o in out] == ["actions", "actions.email"]
    (action,) = out.actions
    assert isinstance(action, Action) and action.action_id == "lamp_tips"
    assert action.decided_at == START
    assert driver.outputs("actions") == [action]
    assert [e.channel for e in driver.state("c-1").fatigue.contacts] == ["email"]


def test_a_held_action_goes_out_only_once_the_clock_passes_its_due_time(driver: Driver) -> None:
    driver.send("consent", grant(driver))
    driver.advance(timedelta(hours=1, minutes=30))  # 13:30: quiet
    out = driver.send("clickstream", view(driver))
    assert out == [] and out.results[0].outcome.held is not None
    (hold,) = driver.state("c-1").holds.pending
    due = START + timedelta(hours=3)  # 15:00, the end of quiet hours
    assert hold.due == due.timestamp()
    assert driver.advance(timedelta(minutes=89)) == []  # 14:59
    assert driver.outputs("actions") == []
    released = driver.advance(timedelta(minutes=2))  # 15:01
    (action,) = released.actions
    assert action.action_id == "lamp_tips" and action.send_after is None
    assert action.held_at == START + timedelta(hours=1, minutes=30)
    assert action.decided_at == due  # released as of its due time, as the worker's timer does
    assert not driver.state("c-1").holds.pending
    assert driver.advance(timedelta(days=1)) == []  # released once


def test_a_hold_is_withdrawn_when_consent_is_revoked_before_it_is_due(driver: Driver) -> None:
    driver.send("consent", grant(driver))
    driver.advance(timedelta(hours=2))
    driver.send("clickstream", view(driver))
    driver.send("consent", grant(driver, "revoked"))
    (withdrawn,) = driver.advance(timedelta(hours=2))
    assert isinstance(withdrawn.value, Suppression) and withdrawn.value.reasons == ["consent"]


def test_a_revocation_then_a_trigger_is_a_suppression_naming_consent(driver: Driver) -> None:
    driver.send("consent", grant(driver))
    driver.send("consent", grant(driver, "revoked"))
    out = driver.send("clickstream", view(driver))
    assert out.actions == []
    (suppression,) = out.suppressions
    assert suppression.reasons == ["consent"]
    assert [v.reasons for v in suppression.candidates] == [["consent"]]
    assert driver.state("c-1").consent.entries["email:marketing"].status == "revoked"


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"{not json", "malformed"),
        (b'{"event_id": "e-1", "type": "product_view", "ts": "2026-01-05T12:00:00Z"}',
         "missing_subject"),
        (b'{"event_id": "e-1", "type": "purchase", "customer_id": "c-1",'
         b' "ts": "2026-01-05T12:00:00Z"}', "unknown_type"),
    ],
)  # fmt: skip
def test_invalid_input_goes_to_the_deadletter_topic_with_its_reason(
    driver: Driver, value: bytes, reason: str
) -> None:
    (dead,) = driver.send("clickstream", value, key=b"c-1")
    assert dead.kind == "deadletter"
    assert dead.value.reason == reason and dead.value.error
    assert dead.value.value == value and dead.value.source_topic == "clickstream"
    # The driver goes on, as a worker does.
    driver.send("consent", grant(driver))
    assert driver.send("clickstream", view(driver)).actions


def test_after_an_erasure_the_state_is_empty_and_old_events_stay_dropped(
    driver: Driver,
) -> None:
    old_grant = grant(driver)
    driver.send("consent", old_grant)
    driver.send("clickstream", view(driver))
    driver.advance(60)
    (confirmation,) = driver.send("privacy", driver.event("erasure", "c-1")).erasures
    assert confirmation.customer_id == "c-1"
    assert driver.stored("c-1") == {}
    state = driver.state("c-1")
    assert state.consent.entries == {} and state.fatigue.contacts == []
    driver.advance(timedelta(days=3))
    again = driver.send("consent", old_grant)  # redelivered from before the erasure
    assert again == [] and again.results[0].dropped == "erased"
    assert driver.stored("c-1") == {}
    (suppression,) = driver.send("clickstream", view(driver)).suppressions
    assert suppression.reasons == ["consent"]


def scenario(driver: Driver) -> list[bytes]:
    driver.send("consent", grant(driver))
    for _ in range(3):
        driver.send("clickstream", view(driver))
        driver.advance(timedelta(hours=1))
    driver.send("clickstream", b"{", key=b"c-1")
    driver.advance(timedelta(hours=2))
    return [repr(output).encode() for output in driver.emitted]


def test_the_same_events_and_clock_give_the_same_outputs(tmp_path: Path) -> None:
    (tmp_path / "catalog.toml").write_text(CATALOG)
    (tmp_path / "policy.toml").write_text(POLICY)
    runs = [scenario(Driver(tmp_path / "catalog.toml", tmp_path / "policy.toml")) for _ in range(2)]
    assert runs[0] == runs[1]
    assert len(runs[0]) >= 6  # a consent log, actions and a deadletter, not nothing


def test_the_clock_only_moves_forward(driver: Driver) -> None:
    with pytest.raises(ValueError):
        driver.advance(-1)
    assert driver.now == START


def test_the_driver_imports_neither_kafka_nor_faust() -> None:
    code = (
        "import sys, nudge.testing; nudge.testing.Driver();"
        " print(sorted({m.split('.')[0] for m in sys.modules} & {'kafka', 'aiokafka', 'faust'}))"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert run.stdout.strip() == "[]"


def test_the_readme_example_runs() -> None:
    """The README's example of testing your own policy, executed as written."""
    text = README.read_text()
    section = text[text.index("### Testing your own catalog and policy") :]
    (code,) = re.findall(r"```python\n(.*?)```", section, re.S)[:1]
    exec(compile(code, str(README), "exec"), {})
