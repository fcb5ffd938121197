"""The worker's record of the actions it sent (streams/produced.py), and the
metrics that count repeats: duplicates without output apart from re-issues."""

from __future__ import annotations

import asyncio
import json

from prometheus_client import REGISTRY

from nudge.policy.engine import Engine
from nudge.policy.processor import Emit, Result
from nudge.streams.app import record_metrics
from nudge.streams.produced import ProducedActions
from tests.unit.policy_kit import HOUR, T0, Person, catalog, click, decode, marketing, policy


def did(n: int) -> str:
    return f"{n:016x}{'ab' * 8}"


def action(n: int, channel: str = "email") -> list[Emit]:
    """The two messages of one action, as the processor emits them."""
    payload = json.dumps({"decision_id": did(n), "action_id": "promo"}).encode()
    return [Emit("actions", b"c-1", payload), Emit(f"actions.{channel}", b"c-1", payload)]


def test_an_action_is_known_once_handed_to_the_producer() -> None:
    record = ProducedActions()
    assert not record(did(1))
    record.record([Emit("consent-log", b"c-1", b"{}"), *action(1)])
    assert record(did(1)) and not record(did(2))
    record.record([Emit("suppressions", b"c-1", json.dumps({"decision_id": did(2)}).encode())])
    assert not record(did(2))  # only actions count


def test_a_failed_send_forgets_the_action_so_a_copy_reissues_it() -> None:
    async def scenario() -> tuple[bool, bool, bool]:
        loop = asyncio.get_running_loop()
        record = ProducedActions()
        ok, failed = loop.create_future(), loop.create_future()
        record.record(action(1), [ok, failed])
        in_flight = record(did(1))  # on its way: a copy now must not re-issue it
        ok.set_result(None)
        await asyncio.sleep(0)
        acked_one = record(did(1))
        failed.set_exception(RuntimeError("delivery timed out"))
        await asyncio.sleep(0)
        return in_flight, acked_one, record(did(1))

    assert asyncio.run(scenario()) == (True, True, False)


def test_the_record_is_bounded_and_keeps_what_is_asked_for() -> None:
    record = ProducedActions(capacity=10)
    for n in range(6):
        record.record(action(n))
    assert record(did(0))  # asked again: moved to the newer generation
    for n in range(6, 12):
        record.record(action(n))
    assert record(did(0)) and record(did(11))
    assert not record(did(1))  # the oldest not asked for is gone
    assert sum(record(did(n)) for n in range(12)) <= 10


def counter(name: str) -> float:
    return REGISTRY.get_sample_value(name) or 0.0


def test_metrics_count_reissues_apart_from_duplicates_without_output() -> None:
    engine = Engine(catalog(marketing()), policy())
    anna = Person(engine)
    anna.opt_in(T0, "email")
    trigger = click(anna.id, T0 + HOUR)
    sent = {anna.act(trigger).decision_id}
    now = T0 + 2 * HOUR
    reissued = engine.process(anna.state, decode(trigger, now), now, anna.id)  # no record
    known = engine.process(
        anna.state, decode(trigger, now), now, anna.id, produced=sent.__contains__
    )
    assert reissued.decision is not None and known.decision is None
    names = ("nudge_duplicate_events_total", "nudge_reissued_actions_total")
    before = {name: counter(name) for name in names}
    for outcome in (reissued, known, known):
        result = Result(event_type="product_view", duplicate=True, outcome=outcome)
        record_metrics("clickstream", result)
    after = {name: counter(name) - before[name] for name in names}
    assert after == {"nudge_duplicate_events_total": 2, "nudge_reissued_actions_total": 1}
