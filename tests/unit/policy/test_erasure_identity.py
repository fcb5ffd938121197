"""An erasure stays erased, and identity follows a visitor across a login.

Through nudge.testing.Driver, the worker in memory: the Processor on tables
of bytes, with the worker's own topics (identity-merges, identity-forwards,
privacy) fed back as the worker would; no broker.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from nudge.policy import erasure
from nudge.policy.ids import in_holdout
from nudge.schemas.outputs import Action, Suppression
from nudge.testing import Driver, Outputs
from tests.unit.policy_kit import (
    acted,
    catalog,
    click,
    consent,
    feed,
    marketing,
    policy,
    suppressed,
)
from tests.unit.policy_kit import erasure as erasure_event

T = datetime(2026, 3, 2, 11, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
SECRET = b"test-secret"


def worker(**policy_fields: Any) -> Driver:
    """The worker in memory: the worker's own topics (identity-merges,
    identity-forwards, privacy) are fed back as the worker would."""
    engine_catalog = catalog(marketing(channels=["email"]))
    return Driver(engine_catalog, policy(**policy_fields), start=T, erasure_key=SECRET)


def send(driver: Driver, event: dict[str, Any], now: datetime | None = None) -> Outputs:
    """`feed`, insisting that nothing was dead-lettered."""
    out = feed(driver, event, now)
    assert all(r.invalid_reason is None for r in out.results), out.deadletters
    return out


def markers(driver: Driver) -> list[str]:
    return [key.decode() for key in driver.worker.tables[erasure.MARKER_TABLE]]


def decisions(out: Outputs) -> list[Action | Suppression]:
    return [*out.actions, *out.suppressions]


def identify(anonymous_id: str, customer: str, at: datetime) -> dict[str, Any]:
    return {
        "event_id": f"identify-{anonymous_id}",
        "type": "identify",
        "customer_id": customer,
        "anonymous_id": anonymous_id,
        "ts": at.isoformat(),
    }


def anonymous_view(anonymous_id: str, at: datetime, n: int) -> dict[str, Any]:
    event = click("x", at, event_id=f"{anonymous_id}-view-{n}", category="lamps")
    del event["customer_id"]
    return {**event, "anonymous_id": anonymous_id}


# -- erasure ------------------------------------------------------------------


def test_a_grant_redelivered_after_an_erasure_is_dropped_and_never_stored() -> None:
    d = worker()
    grant = consent("c-1", T, "email")
    send(d, grant)
    send(d, erasure_event("c-1", T + MINUTE))
    assert d.stored("c-1") == {}
    again = send(d, grant, now=T + 3 * 24 * 60 * MINUTE)  # the same event, days later
    (result,) = again.results
    assert result.dropped == "erased" and again == []
    assert (result.writes, result.emits) == ({}, [])
    assert d.stored("c-1") == {}
    view = send(d, click("c-1", T + 4 * 24 * 60 * MINUTE))
    assert suppressed(view).reasons == ["consent"]


def test_events_after_an_erasure_start_from_empty_state_that_remembers_it() -> None:
    d = worker()
    send(d, consent("c-1", T, "email"))
    send(d, erasure_event("c-1", T + MINUTE))
    send(d, consent("c-1", T + 2 * MINUTE, "email"))
    assert d.state("c-1").profile.erased_at == (T + MINUTE).timestamp()
    acted(send(d, click("c-1", T + 3 * MINUTE)))
    # A redelivered old erasure does not wipe what came after it.
    old = send(d, erasure_event("c-1", T + MINUTE, event_id="erase-again"))
    assert [r.dropped for r in old.results] == ["erased"] and old == []
    assert d.state("c-1").consent.entries["email:marketing"].status == "granted"


def test_the_marker_is_a_keyed_hash_of_the_id_and_expires() -> None:
    d = worker(erasure_marker_days=30)
    send(d, erasure_event("c-1", T))
    (key,) = markers(d)
    assert "c-1" not in key and key == erasure.marker_key("c-1", SECRET)
    assert key != erasure.marker_key("c-1", b"another-secret")
    assert set(d.stored(key)) == {erasure.MARKER_TABLE}
    raw = d.stored(key)[erasure.MARKER_TABLE]
    assert erasure.live_marker(raw, (T + timedelta(days=29)).timestamp()) is not None
    assert erasure.live_marker(raw, (T + timedelta(days=31)).timestamp()) is None
    # Once it has expired, an old event is applied again: the retention is a setting.
    late = send(d, consent("c-1", T - MINUTE, "email"), now=T + timedelta(days=31))
    assert [r.dropped for r in late.results] == [None]
    assert [log.applied for log in late.consent_log] == [True]


# -- identity -------------------------------------------------------------------


def test_a_visitors_browsing_after_login_reaches_the_customer() -> None:
    d = worker()
    send(d, anonymous_view("anon-1", T, 0))
    send(d, identify("anon-1", "c-9", T + MINUTE))
    pointer = d.state("anon-1").profile
    assert pointer.alias_of == "c-9" and "recency" not in d.stored("anon-1")
    results = send(d, anonymous_view("anon-1", T + 2 * MINUTE, 1)).results
    assert results[0].forwarded and results[0].writes == {}
    assert results[1].subject == "c-9"
    customer = d.state("c-9")
    assert customer.recency.affinity["lamps"] > 1.5  # both views, one before login
    assert customer.profile.linked_ids == ["anon-1"]


def arms_differ() -> tuple[str, str]:
    """A visitor and a customer id whose hashed arms differ at a 50% holdout."""
    share, salt = 0.5, "nudge-holdout-v1"
    visitor = next(f"anon-{n}" for n in range(1000) if not in_holdout(f"anon-{n}", share, salt))
    customer = next(f"cust-{n}" for n in range(1000) if in_holdout(f"cust-{n}", share, salt))
    return visitor, customer


def test_the_experiment_arm_does_not_flip_at_login() -> None:
    visitor, customer = arms_differ()
    d = worker(holdout={"share": 0.5})
    (before,) = decisions(send(d, anonymous_view(visitor, T, 0)))
    assert before.experiment_arm == "treatment"
    send(d, identify(visitor, customer, T + MINUTE))
    send(d, consent(customer, T + 2 * MINUTE, "email"))
    (after,) = decisions(send(d, click(customer, T + 3 * MINUTE)))
    assert after.experiment_arm == "treatment"


def test_erasing_the_customer_erases_the_linked_visitor_and_their_pointer() -> None:
    d = worker()
    send(d, anonymous_view("anon-1", T, 0))
    send(d, identify("anon-1", "c-9", T + MINUTE))
    out = send(d, erasure_event("c-9", T + 2 * MINUTE))
    requests = [e for r in out.results for e in r.emits if e.kind == "privacy"]
    assert [e.key for e in requests] == [b"anon-1"]
    assert [c.customer_id for c in out.erasures] == ["c-9", "anon-1"]
    assert d.stored("anon-1") == {} and d.stored("c-9") == {}
    assert len(markers(d)) == 2
    # The visitor's own old events, redelivered, stay dropped.
    old = send(d, anonymous_view("anon-1", T, 0), now=T + 3 * MINUTE)
    assert [r.dropped for r in old.results] == ["erased"]
