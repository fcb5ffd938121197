"""A consent change stamped far in the future cannot outrank one made now."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import msgspec

from nudge.policy.engine import Engine
from nudge.policy.processor import Processor
from nudge.policy.state import decode_state
from nudge.schemas.outputs import DeadLetter
from tests.unit.policy_kit import catalog, consent, marketing, policy

NOW = datetime(2026, 3, 2, 11, 0, tzinfo=UTC)


class Store:
    """One customer's tables, written back as the worker would."""

    def __init__(self) -> None:
        self.tables: dict[str, bytes | None] = {}

    def load(self, _subject: str) -> dict[str, bytes | None]:
        return dict(self.tables)

    def apply(self, writes: dict[str, bytes | None]) -> None:
        self.tables.update(writes)


def process(processor: Processor, store: Store, event: dict, now: datetime = NOW):
    raw = json.dumps(event).encode()
    result = processor.process("consent", b"c-1", raw, ("nudge.consent", 0, 7), store.load, now)
    store.apply(result.writes)
    return result


def processor(**fields) -> Processor:
    return Processor(Engine(catalog(marketing()), policy(**fields)))


def email_status(store: Store) -> str:
    return decode_state(store.tables).consent.entries["email:marketing"].status


def test_a_grant_stamped_23_hours_ahead_does_not_override_a_revocation_made_now() -> None:
    proc, store = processor(), Store()
    process(proc, store, consent("c-1", NOW - timedelta(seconds=1), "email", "revoked"))
    result = process(proc, store, consent("c-1", NOW + timedelta(hours=23), "email", "granted"))
    assert result.invalid_reason == "future_consent"
    assert result.writes == {}
    (emit,) = result.emits
    record = msgspec.json.decode(emit.value, type=DeadLetter)
    assert (record.reason, record.offset) == ("future_consent", 7)
    assert "1380 min ahead" in record.error
    assert email_status(store) == "revoked"


def test_a_little_clock_skew_is_tolerated_and_the_bound_is_a_setting() -> None:
    store = Store()
    ahead = consent("c-1", NOW + timedelta(minutes=3), "email", "granted")
    assert process(processor(), store, ahead).invalid_reason is None
    assert email_status(store) == "granted"
    strict = consent("c-1", NOW + timedelta(minutes=3), "email", "revoked")
    rejected = process(processor(consent_max_future_minutes=1), store, strict)
    assert rejected.invalid_reason == "future_consent"
