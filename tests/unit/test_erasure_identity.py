"""An erasure stays erased, and identity follows a visitor across a login.

Through the Processor with tables in dicts and the worker's own topics
(identity-merges, identity-forwards, privacy) fed back as the worker would:
bytes in, bytes out, no broker.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from nudge.policy import erasure
from nudge.policy.engine import Engine
from nudge.policy.ids import in_holdout
from nudge.policy.processor import FORWARD_KIND, MERGE_KIND, Emit, Processor, Result
from nudge.policy.state import decode_state
from nudge.schemas.outputs import Action, Suppression
from tests.unit.policy_kit import (
    catalog,
    click,
    consent,
    key_of,
    marketing,
    policy,
    store,
    topic_of,
)
from tests.unit.policy_kit import (
    erasure as erasure_event,
)

T = datetime(2026, 3, 2, 11, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
FED_BACK = (MERGE_KIND, FORWARD_KIND, "privacy")


class Worker:
    """One worker's tables (key -> table -> bytes) and its internal topics."""

    def __init__(self, engine: Engine, secret: bytes | None = b"test-secret") -> None:
        self.processor = Processor(engine, erasure_key=secret)
        self.tables: dict[str, dict[str, bytes]] = {}
        self.results: list[Result] = []
        self.offset = 0

    def load(self, key: str) -> dict[str, bytes | None]:
        return dict(self.tables.get(key, {}))

    def send(self, event: dict[str, Any], now: datetime | None = None) -> list[Result]:
        """Process an input event and whatever it sends to the worker's own topics."""
        now = now or datetime.fromisoformat(event["ts"]) + timedelta(seconds=1)
        pending = [(topic_of(event), key_of(event), json.dumps(event).encode())]
        results = []
        while pending:
            kind, key, value = pending.pop(0)
            self.offset += 1
            source = (kind, 0, self.offset)
            result = self.processor.process(kind, key, value, source, self.load, now)
            assert result.invalid_reason is None, result.emits
            store(self.tables, result)
            results.append(result)
            pending += [(e.kind, e.key, e.value) for e in result.emits if e.kind in FED_BACK]
        self.results += results
        return results

    def decisions(self, results: list[Result]) -> list[Action | Suppression]:
        return [
            r.outcome.decision
            for r in results
            if r.outcome is not None and r.outcome.decision is not None
        ]


def engine(**policy_fields: Any) -> Engine:
    return Engine(catalog(marketing(channels=["email"])), policy(**policy_fields))


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
    worker = Worker(engine())
    grant = consent("c-1", T, "email")
    worker.send(grant)
    worker.send(erasure_event("c-1", T + MINUTE))
    assert "c-1" not in worker.tables or not worker.tables["c-1"]
    (again,) = worker.send(grant, now=T + 3 * 24 * 60 * MINUTE)  # the same event, days later
    assert again.dropped == "erased"
    assert (again.writes, again.emits) == ({}, [])
    assert not worker.tables.get("c-1")
    (view,) = worker.send(click("c-1", T + 4 * 24 * 60 * MINUTE))
    assert isinstance(view.outcome.decision, Suppression)
    assert view.outcome.decision.reasons == ["consent"]


def test_events_after_an_erasure_start_from_empty_state_that_remembers_it() -> None:
    worker = Worker(engine())
    worker.send(consent("c-1", T, "email"))
    worker.send(erasure_event("c-1", T + MINUTE))
    worker.send(consent("c-1", T + 2 * MINUTE, "email"))
    state = decode_state(worker.tables["c-1"])
    assert state.profile.erased_at == (T + MINUTE).timestamp()
    assert isinstance(worker.decisions(worker.send(click("c-1", T + 3 * MINUTE)))[0], Action)
    # A redelivered old erasure does not wipe what came after it.
    (old,) = worker.send(erasure_event("c-1", T + MINUTE, event_id="erase-again"))
    assert old.dropped == "erased"
    assert decode_state(worker.tables["c-1"]).consent.entries["email:marketing"].status == (
        "granted"
    )


def test_the_marker_is_a_keyed_hash_of_the_id_and_expires() -> None:
    worker = Worker(engine(erasure_marker_days=30))
    worker.send(erasure_event("c-1", T))
    (key,) = [k for k in worker.tables if k.startswith("erased:")]
    assert "c-1" not in key and key == erasure.marker_key("c-1", b"test-secret")
    assert key != erasure.marker_key("c-1", b"another-secret")
    assert set(worker.tables[key]) == {erasure.MARKER_TABLE}
    raw = worker.tables[key][erasure.MARKER_TABLE]
    assert erasure.live_marker(raw, (T + timedelta(days=29)).timestamp()) is not None
    assert erasure.live_marker(raw, (T + timedelta(days=31)).timestamp()) is None
    # Once it has expired, an old event is applied again: the retention is a setting.
    (late,) = worker.send(consent("c-1", T - MINUTE, "email"), now=T + timedelta(days=31))
    assert late.dropped is None


# -- identity -------------------------------------------------------------------


def test_a_visitors_browsing_after_login_reaches_the_customer() -> None:
    worker = Worker(engine())
    worker.send(anonymous_view("anon-1", T, 0))
    worker.send(identify("anon-1", "c-9", T + MINUTE))
    pointer = decode_state(worker.tables["anon-1"]).profile
    assert pointer.alias_of == "c-9" and not worker.tables["anon-1"].get("recency")
    results = worker.send(anonymous_view("anon-1", T + 2 * MINUTE, 1))
    assert results[0].forwarded and results[0].writes == {}
    assert results[1].subject == "c-9"
    customer = decode_state(worker.tables["c-9"])
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
    worker = Worker(engine(holdout={"share": 0.5}))
    (before,) = worker.decisions(worker.send(anonymous_view(visitor, T, 0)))
    assert before.experiment_arm == "treatment"
    worker.send(identify(visitor, customer, T + MINUTE))
    worker.send(consent(customer, T + 2 * MINUTE, "email"))
    (after,) = worker.decisions(worker.send(click(customer, T + 3 * MINUTE)))
    assert after.experiment_arm == "treatment"


def test_erasing_the_customer_erases_the_linked_visitor_and_their_pointer() -> None:
    worker = Worker(engine())
    worker.send(anonymous_view("anon-1", T, 0))
    worker.send(identify("anon-1", "c-9", T + MINUTE))
    results = worker.send(erasure_event("c-9", T + 2 * MINUTE))
    requests = [e for r in results for e in r.emits if isinstance(e, Emit) and e.kind == "privacy"]
    assert [e.key for e in requests] == [b"anon-1"]
    assert not worker.tables.get("anon-1") and not worker.tables.get("c-9")
    markers = [k for k in worker.tables if k.startswith("erased:")]
    assert len(markers) == 2
    # The visitor's own old events, redelivered, stay dropped.
    (old,) = worker.send(anonymous_view("anon-1", T, 0), now=T + 3 * MINUTE)
    assert old.dropped == "erased"
