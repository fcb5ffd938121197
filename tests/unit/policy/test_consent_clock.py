"""A consent change stamped far in the future cannot outrank one made now."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from nudge.testing import Driver
from tests.unit.policy_kit import consent, driver

NOW = datetime(2026, 3, 2, 11, 0, tzinfo=UTC)


def email_status(d: Driver) -> str:
    return d.state("c-1").consent.entries["email:marketing"].status


def test_a_grant_stamped_23_hours_ahead_does_not_override_a_revocation_made_now() -> None:
    d = driver(start=NOW)
    d.send("consent", consent("c-1", NOW - timedelta(seconds=1), "email", "revoked"))
    out = d.send("consent", consent("c-1", NOW + timedelta(hours=23), "email", "granted"))
    (result,) = out.results
    assert result.invalid_reason == "future_consent"
    assert result.writes == {}
    (dead,) = out
    assert dead.kind == "deadletter" and dead.key == b"c-1"
    record = dead.value
    assert (record.reason, record.source_topic, record.offset) == ("future_consent", "consent", 2)
    assert "1380 min ahead" in record.error
    assert email_status(d) == "revoked"


def test_a_little_clock_skew_is_tolerated_and_the_bound_is_a_setting() -> None:
    d = driver(start=NOW)
    ahead = consent("c-1", NOW + timedelta(minutes=3), "email", "granted")
    assert [r.invalid_reason for r in d.send("consent", ahead).results] == [None]
    assert email_status(d) == "granted"
    strict = consent("c-1", NOW + timedelta(minutes=3), "email", "revoked")
    rejected = driver(start=NOW, consent_max_future_minutes=1).send("consent", strict)
    assert [r.invalid_reason for r in rejected.results] == ["future_consent"]
