"""Pending on-site impressions: laid over the state until the agent has them."""

from __future__ import annotations

from datetime import UTC, datetime

from nudge.policy.engine import Engine
from nudge.policy.onsite import Impression
from nudge.policy.state import CustomerState
from nudge.streams.impressions import PendingImpressions
from tests.unit.policy_kit import catalog, marketing, policy

AT = datetime(2026, 3, 2, 11, 0, tzinfo=UTC)


def impression(decision_id: str, subject: str = "c-1") -> Impression:
    return Impression(decision_id=decision_id, customer_id=subject, action_id="help", at=AT)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def engine() -> Engine:
    return Engine(catalog(marketing("help", channels=["web"])), policy())


def test_a_returned_impression_counts_in_the_next_decisions_state() -> None:
    pending, eng = PendingImpressions(), engine()
    pending.add(impression("d1"))
    state = CustomerState()
    assert pending.lay_over(eng, state, "c-1") == 1
    assert [c.action_id for c in state.fatigue.contacts] == ["help"]
    assert pending.lay_over(eng, CustomerState(), "someone-else") == 0


def test_an_impression_the_agent_already_recorded_is_not_counted_twice() -> None:
    pending, eng = PendingImpressions(), engine()
    pending.add(impression("d1"))
    recorded = CustomerState()
    assert eng.record_impression(recorded, "help", "web", AT, "d1")
    assert pending.lay_over(eng, recorded, "c-1") == 0
    assert len(recorded.fatigue.contacts) == 1


def test_pending_impressions_expire_and_stay_bounded() -> None:
    clock = Clock()
    pending = PendingImpressions(ttl_s=60, max_pending=3, clock=clock)
    for n in range(5):
        pending.add(impression(f"d{n}", subject=f"c-{n % 2}"))
    assert len(pending) == 3
    clock.now = 61
    assert pending.lay_over(engine(), CustomerState(), "c-0") == 0
    assert len(pending) == 0
