"""The reliability workload's own bookkeeping, checked without a broker: the
fault tests trust that every event it says must leave a record does leave one
when nothing goes wrong, so the pure engine (the worker's decision path) is
fed the same stream in the same order and must account for each of them."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from workload import ALWAYS_RECORDED, POLICY, build

from nudge.config import CATALOG as SHIPPED_CATALOG
from nudge.config import shipped
from nudge.policy.config import load_catalog, load_policy
from nudge.policy.engine import Engine
from nudge.policy.processor import Processor
from nudge.policy.state import TABLES
from nudge.schemas.outputs import Action
from nudge.traffic import SHOPPING

CATALOG = shipped(SHIPPED_CATALOG)


def test_the_stream_is_seeded_shopping_with_grants_first_and_opt_outs_within() -> None:
    work, again = build("w1-", 60), build("w1-", 60)
    assert [e["event_id"] for _, e in work.stream] == [e["event_id"] for _, e in again.stream]
    assert 8 * 60 <= len(work.stream) <= 10 * 60
    assert {kind for kind, _ in work.stream} == {"clickstream", "purchases", "consent"}
    assert {e["type"] for _, e in work.stream} >= {"session_start", "product_view", "purchase"}
    times = [datetime.fromisoformat(e["ts"]) for _, e in work.stream]
    assert times == sorted(times) and times[-1] < datetime.now(UTC)
    first_grant = min(datetime.fromisoformat(e["ts"]) for _, e in work.grants)
    assert first_grant < times[0]
    assert {e["customer_id"] for _, e in work.grants} == set(work.customers)
    assert all(e["event_id"].startswith("w1-") for _, e in (*work.grants, *work.stream))
    opt_outs = {e["customer_id"] for _, e in work.stream if e["type"] == "consent"}
    assert opt_outs == work.opted_out and 0 < len(opt_outs) < 60
    assert work.purchases and len(work.purchases) <= round(60 * 9 * SHOPPING.purchases)


def test_every_event_it_must_record_is_recorded_and_every_order_confirmed() -> None:
    work = build("w2-", 120, seed=3)
    processor = Processor(Engine(load_catalog(CATALOG), load_policy(POLICY)))
    tables: dict[str, dict[bytes, bytes]] = {name: {} for name in TABLES}
    recorded: set[str] = set()
    confirmed: set[str] = set()
    now = datetime.now(UTC)
    for offset, (kind, event) in enumerate([*work.grants, *work.stream]):
        key = event["customer_id"].encode()
        result = processor.process(
            kind,
            key,
            json.dumps(event).encode(),
            (kind, 0, offset),
            lambda _subject, key=key: {t: tables[t].get(key) for t in TABLES},
            now,
        )
        assert result.invalid_reason is None, (result.invalid_reason, event)
        for table, data in result.writes.items():
            if data is None:
                tables[table].pop(key, None)
            else:
                tables[table][key] = data
        decision = result.outcome.decision if result.outcome else None
        if decision is not None:
            recorded.add(decision.trigger_event_id)
        if isinstance(decision, Action) and decision.action_id == "order_confirmation":
            confirmed.add(decision.trigger_event_id)
        if any(emit.kind == "consent-log" for emit in result.emits):
            recorded.add(event["event_id"])
    assert work.must_record, "the workload must leave records to check"
    assert {e["type"] for _, e in work.stream if e["event_id"] in work.must_record} == (
        ALWAYS_RECORDED
    )
    missing = work.must_record - recorded
    assert not missing, sorted(missing)[:5]
    assert work.purchases <= confirmed, sorted(work.purchases - confirmed)[:5]
