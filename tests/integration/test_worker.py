"""The whole pipeline on a real broker with a real worker process:
events of every kind in, actions / suppressions / deadletters out."""

from __future__ import annotations

import base64
import json
import time
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
from kafka import KafkaConsumer

from nudge.policy.stored import STATE_TABLE, decode_record
from nudge.testing import EventPublisher, OutputReader, WorkerProcess
from tests.workers import Workers

pytestmark = pytest.mark.integration

OUTPUTS = (
    "actions",
    "actions.email",
    "actions.push",
    "suppressions",
    "deadletter",
    "consent-log",
    "erasures",
)
TOKEN = "integration-test-token"


@pytest.fixture(scope="module")
def worker(module_workers: Workers) -> WorkerProcess:
    return module_workers.start(env={"NUDGE_API_TOKEN": TOKEN}, no_traceback=True)


class Story:
    """Builds events for one fresh customer with increasing ids and times."""

    def __init__(self, name: str) -> None:
        self.customer = f"{name}-{uuid.uuid4().hex[:6]}"
        self.count = 0

    def event(self, type_: str, minutes_ago: float = 0, **fields: object) -> dict:
        self.count += 1
        ts = datetime.now(UTC) - timedelta(minutes=minutes_ago)
        return {
            "event_id": f"{self.customer}-{self.count}",
            "type": type_,
            "customer_id": self.customer,
            "ts": ts.isoformat(),
            **fields,
        }

    def consent(self, channel: str, status: str = "granted") -> dict:
        return self.event(
            "consent", 30, channel=channel, purpose="marketing", status=status, source="test"
        )

    def view(self, category: str, minutes_ago: float = 0) -> dict:
        return self.event(
            "product_view", minutes_ago, product_id=f"sku-{self.count}", category=category
        )


def publish(publisher: EventPublisher, *items: tuple[str, dict | bytes]) -> None:
    """Send one at a time, waiting for each ack, like upstream systems in real time."""
    for kind, event in items:
        publisher.send(kind, event).get(10)


def processed(outputs: OutputReader, consent_event: dict) -> None:
    """Wait for the consent-log record that proves a consent change was processed.

    Input topics are not ordered with each other, so an opt-out is binding
    from the moment it is processed; the consent log is the evidence.
    """
    outputs.wait_for(
        lambda got: any(
            r.kind == "consent-log" and r.value["event_id"] == consent_event["event_id"]
            for r in got
        )
    )


def wait_state(
    worker: WorkerProcess, customer: str, ready, timeout: float = 20, token: str = TOKEN
) -> dict:
    """Poll the explain API until the customer's state satisfies `ready`."""
    deadline = time.monotonic() + timeout
    while True:
        status, summary = worker.get(f"/api/customers/{customer}", token=token)
        if status == 200 and ready(summary):
            return summary
        assert time.monotonic() < deadline, f"state not reached: {status} {summary}"
        time.sleep(0.1)


def decisions_for(outputs: OutputReader, event_id: str, timeout: float = 30) -> list:
    """The decision records of a trigger, once one arrived: a channel topic's
    copy of an action may arrive before the one on `actions`."""

    def decisions(got: list) -> list:
        return [
            r
            for r in got
            if r.kind in ("actions", "suppressions") and r.value.get("trigger_event_id") == event_id
        ]

    return decisions(outputs.wait_for(decisions, timeout))


def test_consented_shopper_gets_one_action_on_both_action_topics(publisher, outputs) -> None:
    anna = Story("anna")
    trigger = anna.view("lighting")
    grant = anna.consent("email")
    publish(publisher, ("consent", grant))
    processed(outputs, grant)
    publish(
        publisher,
        ("clickstream", anna.view("lighting", 2)),
        ("clickstream", anna.view("lighting", 1)),
        ("clickstream", trigger),
    )
    [decision] = decisions_for(outputs, trigger["event_id"])
    assert decision.kind == "actions"
    action = decision.value
    assert action["action_id"] == "category_inspiration"
    assert action["channel"] == "email"
    assert action["customer_id"] == anna.customer
    assert action["model_version"] == "heuristic-v1"
    assert action["reasons"]
    assert decision.key == anna.customer.encode()
    outputs.wait_for(
        lambda got: any(
            r.kind == "actions.email" and r.value["decision_id"] == action["decision_id"]
            for r in got
        )
    )
    consent_log = [
        r
        for r in outputs.received
        if r.kind == "consent-log" and r.value["customer_id"] == anna.customer
    ]
    assert consent_log and consent_log[0].value["status"] == "granted"


def test_opt_out_then_trigger_gives_a_suppression_naming_consent(publisher, outputs) -> None:
    ben = Story("ben")
    trigger = ben.view("lighting")
    grant = ben.consent("email")
    opt_out = ben.event(
        "consent",
        0.5,
        channel="all",
        purpose="marketing",
        status="revoked",
        source="unsubscribe_link",
    )
    publish(publisher, ("consent", grant))
    processed(outputs, grant)
    publish(
        publisher,
        ("clickstream", ben.view("lighting", 2)),
        ("clickstream", ben.view("lighting", 1)),
        ("consent", opt_out),
    )
    processed(outputs, opt_out)
    publish(publisher, ("clickstream", trigger))
    [decision] = decisions_for(outputs, trigger["event_id"])
    assert decision.kind == "suppressions"
    assert "consent" in decision.value["reasons"]
    [candidate] = decision.value["candidates"]
    assert candidate["action_id"] == "category_inspiration"
    assert candidate["channel_reasons"]["email"] == ["consent"]


def test_purchase_then_trigger_for_that_category_names_the_cooldown(publisher, outputs) -> None:
    cara = Story("cara")
    purchase = cara.event(
        "purchase",
        5,
        order_id="o-1",
        items=[{"product_id": "af-1", "category": "air_filters", "price": 30}],
    )
    trigger = cara.view("air_filters")
    grant = cara.consent("email")
    publish(publisher, ("consent", grant))
    processed(outputs, grant)
    publish(publisher, ("purchases", purchase))
    [confirmation] = decisions_for(outputs, purchase["event_id"])
    publish(publisher, ("clickstream", trigger))
    assert confirmation.value["action_id"] == "order_confirmation"
    assert confirmation.value["message_class"] == "transactional"
    [decision] = decisions_for(outputs, trigger["event_id"])
    assert decision.kind == "suppressions"
    verdicts = {c["action_id"]: c["reasons"] for c in decision.value["candidates"]}
    assert "purchase_cooldown" in verdicts["air_filter_replenishment"]


def test_malformed_record_is_deadlettered_and_the_next_one_still_processed(
    publisher, outputs
) -> None:
    dan = Story("dan")
    garbage = b'{"event_id": "broken", "type": "page_view", "customer_id": '
    purchase = dan.event(
        "purchase", order_id="o-2", items=[{"product_id": "x", "category": "garden", "price": 5}]
    )
    metadata = publisher.send("clickstream", garbage, key=dan.customer.encode()).get(10)
    publish(publisher, ("purchases", purchase))
    [after] = decisions_for(outputs, purchase["event_id"])
    assert after.kind == "actions"
    outputs.wait_for(
        lambda got: any(r.kind == "deadletter" and r.key == dan.customer.encode() for r in got)
    )
    [dead] = [
        r for r in outputs.received if r.kind == "deadletter" and r.key == dan.customer.encode()
    ]
    record = dead.value
    assert record["reason"] == "malformed"
    assert record["source_topic"] == metadata.topic
    assert record["partition"] == metadata.partition
    assert record["offset"] == metadata.offset
    assert base64.b64decode(record["value"]) == garbage


@pytest.mark.parametrize(
    ("mutation", "reason"),
    [
        (lambda e: {**e, "type": "teleport"}, "unknown_type"),
        (lambda e: {k: v for k, v in e.items() if k != "customer_id"}, "missing_subject"),
        (lambda e: {**e, "price": "free"}, "schema_violation"),
        (lambda e: {**e, "ts": "1999-01-01T00:00:00Z"}, "bad_timestamp"),
        (lambda e: {**e, "page": "x" * 70_000}, "oversized"),
    ],
)
def test_invalid_events_reach_deadletter_with_their_reason(
    publisher, outputs, mutation, reason
) -> None:
    eve = Story("eve")
    bad = mutation(eve.event("page_view"))
    publisher.send("clickstream", json.dumps(bad).encode(), key=eve.customer.encode()).get(10)
    outputs.wait_for(
        lambda got: any(r.kind == "deadletter" and r.key == eve.customer.encode() for r in got)
    )
    [dead] = [
        r for r in outputs.received if r.kind == "deadletter" and r.key == eve.customer.encode()
    ]
    assert dead.value["reason"] == reason
    assert dead.value["error"]


def test_a_repeated_event_id_is_processed_once(publisher, outputs, worker) -> None:
    """Once for state; its action is issued again with the same decision id, so
    an action whose first copy a crash lost is never lost (docs/reliability.md)."""
    fay = Story("fay")
    purchase = fay.event(
        "purchase", order_id="o-3", items=[{"product_id": "x", "category": "garden", "price": 5}]
    )
    publish(publisher, ("purchases", purchase), ("purchases", purchase))
    marker = fay.event(
        "purchase", order_id="o-4", items=[{"product_id": "y", "category": "garden", "price": 6}]
    )
    publish(publisher, ("purchases", marker))
    decisions_for(outputs, marker["event_id"])  # both copies are behind this one
    copies = decisions_for(outputs, purchase["event_id"])
    assert len({c.value["decision_id"] for c in copies}) == 1
    assert {c.value["action_id"] for c in copies} == {"order_confirmation"}
    summary = wait_state(worker, fay.customer, lambda s: s["records"]["recency"]["orders"] >= 2)
    assert summary["records"]["recency"]["orders"] == 2  # the repeat was not counted


def test_erasure_is_confirmed_and_no_action_follows(publisher, outputs, worker) -> None:
    gus = Story("gus")
    publish(
        publisher,
        ("consent", gus.consent("email")),
        ("clickstream", gus.view("lighting", 2)),
        ("clickstream", gus.view("lighting", 1)),
    )
    wait_state(
        worker,
        gus.customer,
        lambda s: (
            s["marketing_allowed"]["email"]
            and s["records"]["recency"]["affinity"].get("lighting", 0) > 1.9
        ),
    )
    erasure = gus.event("erasure")
    publish(publisher, ("privacy", erasure))
    outputs.wait_for(
        lambda got: any(
            r.kind == "erasures" and r.value["customer_id"] == gus.customer for r in got
        )
    )
    status, _ = worker.get(f"/api/customers/{gus.customer}", token=TOKEN)
    assert status == 404
    trigger = gus.view("lighting")
    publish(publisher, ("clickstream", trigger))
    # Affinity was erased with everything else: one view is no trigger, so nothing is sent.
    marker = gus.event(
        "purchase", order_id="o-9", items=[{"product_id": "z", "category": "garden", "price": 1}]
    )
    publish(publisher, ("purchases", marker))
    decisions_for(outputs, marker["event_id"])
    assert not [r for r in outputs.by_trigger(trigger["event_id"]) if r.kind == "actions"]


def test_anonymous_browsing_follows_the_visitor_into_their_account(
    publisher, outputs, worker
) -> None:
    hal = Story("hal")
    anonymous = f"anon-{uuid.uuid4().hex[:6]}"

    def anon_view(minutes_ago: float) -> dict:
        event = hal.view("garden", minutes_ago)
        del event["customer_id"]
        return {**event, "anonymous_id": anonymous}

    publish(publisher, ("clickstream", anon_view(3)), ("clickstream", anon_view(2)))
    # Input topics are not ordered with each other: an identify processed
    # before these views would move the visitor's state without them.
    wait_state(
        worker,
        anonymous,
        lambda s: s["records"]["recency"]["affinity"].get("garden", 0) > 1.9,
    )
    publish(
        publisher,
        ("consent", hal.consent("email")),
        (
            "identity",
            {
                **hal.event("identify", 1.5),
                "anonymous_id": anonymous,
                "reachable_channels": ["email"],
            },
        ),
    )
    # The visitor's state travels to the customer's partition via identity-merges.
    wait_state(
        worker,
        hal.customer,
        lambda s: (
            s["records"]["profile"].get("merged_ids") == 1
            and s["marketing_allowed"]["email"]
            and s["records"]["recency"]["affinity"].get("garden", 0) > 1.9
        ),
    )
    trigger = hal.view("garden")
    publish(publisher, ("clickstream", trigger))
    [decision] = decisions_for(outputs, trigger["event_id"])
    assert decision.kind == "actions", decision.value
    assert decision.value["action_id"] == "category_inspiration"


def test_quiet_hours_hold_the_message_until_their_end(publisher, outputs, worker) -> None:
    ivy = Story("ivy")
    local = datetime.now(timezone(timedelta(hours=0)))
    start = (local - timedelta(hours=1)).strftime("%H:%M")
    end = (local + timedelta(hours=2)).strftime("%H:%M")
    trigger = ivy.view("lighting")
    publish(
        publisher,
        ("consent", ivy.consent("email")),
        (
            "preferences",
            ivy.event("preferences", 10, quiet_hours={"start": start, "end": end, "tz": "UTC"}),
        ),
        ("clickstream", ivy.view("lighting", 2)),
        ("clickstream", ivy.view("lighting", 1)),
    )
    wait_state(
        worker,
        ivy.customer,
        lambda s: s["records"]["profile"].get("quiet_hours") and s["marketing_allowed"]["email"],
    )
    publish(publisher, ("clickstream", trigger))
    # Held in the worker's state until the end of the window, not published
    # (tests/integration/test_held_actions.py follows holds to their release).
    summary = wait_state(worker, ivy.customer, lambda s: s["records"]["holds"].get("pending"))
    [hold] = summary["records"]["holds"]["pending"]
    due = datetime.fromtimestamp(hold[0], UTC)  # Hold is stored as an array: due first
    assert due.strftime("%H:%M") == end and due > datetime.now(UTC)
    outputs.poll(1.0)
    assert not outputs.by_trigger(trigger["event_id"])


def test_explain_api_needs_the_token_and_dry_runs_without_side_effects(
    worker, publisher, outputs
) -> None:
    jo = Story("jo")
    publish(
        publisher,
        ("consent", jo.consent("email")),
        ("clickstream", jo.view("lighting", 2)),
        ("clickstream", jo.view("lighting", 1)),
    )
    path = f"/api/customers/{jo.customer}"
    assert worker.get(path)[0] == 401
    assert worker.get(path, token="wrong")[0] == 403
    import time

    deadline = time.monotonic() + 20
    status, summary = worker.get(path, token=TOKEN)
    while (
        status != 200 or summary["records"]["recency"].get("affinity", {}).get("lighting", 0) < 1.9
    ):
        assert time.monotonic() < deadline, (status, summary)
        time.sleep(0.2)
        status, summary = worker.get(path, token=TOKEN)
    assert summary["marketing_allowed"]["email"] is True
    trigger = json.dumps(jo.view("lighting")).encode()
    for _ in range(2):  # twice: a dry run must not record a contact or the event id
        status, trace = worker.request("POST", "/api/decide/clickstream", trigger, token=TOKEN)
        assert status == 200, trace
        assert trace["decision"]["kind"] == "action"
        assert trace["candidates"][0]["chosen_channel"] == "email"
    status, error = worker.request("POST", "/api/decide/clickstream", b"{", token=TOKEN)
    assert status == 400 and error["error"] == "malformed"
    assert worker.request("POST", "/api/decide/nope", trigger, token=TOKEN)[0] == 404
    big = b"{" + b" " * 70_000 + b"}"
    assert worker.request("POST", "/api/decide/clickstream", big, token=TOKEN)[0] == 413


def test_unsubscribe_feedback_revokes_the_channel_and_is_audited(publisher, outputs) -> None:
    kim = Story("kim")
    grant = kim.consent("email")
    publish(publisher, ("consent", grant))
    processed(outputs, grant)
    unsubscribe = kim.event("unsubscribed", 0.5, channel="email", decision_id="d" * 32)
    publish(publisher, ("feedback", unsubscribe))
    processed(outputs, unsubscribe)
    [entry] = [
        r.value
        for r in outputs.received
        if r.kind == "consent-log" and r.value["event_id"] == unsubscribe["event_id"]
    ]
    assert (entry["channel"], entry["status"], entry["source"]) == (
        "email",
        "revoked",
        "feedback:unsubscribed",
    )
    trigger = kim.view("lighting")
    publish(
        publisher,
        ("clickstream", kim.view("lighting", 2)),
        ("clickstream", kim.view("lighting", 1)),
        ("clickstream", trigger),
    )
    [decision] = decisions_for(outputs, trigger["event_id"])
    assert decision.kind == "suppressions"
    assert decision.value["candidates"][0]["channel_reasons"]["email"] == ["consent"]


def test_erasure_writes_a_tombstone_to_the_state_changelog(publisher, outputs, worker) -> None:
    lou = Story("lou")
    publish(
        publisher,
        ("consent", lou.consent("email")),
        ("clickstream", lou.view("garden")),
        ("preferences", lou.event("preferences", preferred_channel="email")),
    )
    wait_state(  # every topic's event is in before the erasure (topics are not ordered)
        worker,
        lou.customer,
        lambda s: (
            s["records"]["profile"].get("preferred_channel")
            and s["marketing_allowed"]["email"]
            and s["records"]["recency"]["affinity"].get("garden")
        ),
    )
    publish(publisher, ("privacy", lou.event("erasure")))
    outputs.wait_for(
        lambda got: any(
            r.kind == "erasures" and r.value["customer_id"] == lou.customer for r in got
        )
    )
    key = lou.customer.encode()
    changelog = f"{worker.prefix}nudge-{STATE_TABLE}-changelog"
    consumer = KafkaConsumer(
        changelog,
        bootstrap_servers=worker.bootstrap,
        auto_offset_reset="earliest",
        consumer_timeout_ms=3000,
    )
    records = [r for r in consumer if r.key == key]
    consumer.close()
    assert len(records) >= 2, "no changelog record of the state, or no tombstone"
    held = decode_record(records[-2].value)
    assert held["consent"] and held["profile"] and held["recency"]  # one record held them all
    assert records[-1].value is None, "the last record of the erased customer is no tombstone"


def test_nothing_was_deadlettered_for_an_internal_error(outputs) -> None:
    """Runs last in this module: every deadletter above was bad input, none
    was the worker failing (e.g. publishing before its changelogs existed)."""
    outputs.poll(1.0)
    reasons = {r.value["reason"] for r in outputs.received if r.kind == "deadletter"}
    assert reasons, "the tests above sent bad input"
    assert "internal_error" not in reasons
