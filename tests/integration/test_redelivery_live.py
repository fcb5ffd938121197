"""Re-sent events against a real broker and worker: one trigger published 200
times gives one action, and a worker that restarts re-issues it at most
once, saying why (issue #12, point 3)."""

from __future__ import annotations

import time
import uuid

import pytest
from prometheus_client.parser import text_string_to_metric_families

from nudge.policy.engine import REISSUE
from nudge.testing import EventPublisher, OutputReader, Received, WorkerProcess
from tests.events import purchase
from tests.workers import Workers

pytestmark = pytest.mark.integration

OUTPUTS = ("actions", "actions.email", "actions.sms", "suppressions")
COPIES = 200
#: After the marker's records arrived, how much longer to listen for stragglers.
QUIET_S = 3.0


@pytest.fixture(scope="module")
def worker(module_workers: Workers) -> WorkerProcess:
    return module_workers.start(no_traceback=True)


def settle(publisher: EventPublisher, reader: OutputReader, customer: str, name: str) -> None:
    """Publish a marker trigger for the customer (same partition, after all
    copies): once its action is on both topics, every copy before it was
    decided; then listen a while longer for anything still on its way."""
    marker = purchase(customer, name)
    publisher.send("purchases", marker).get(10)
    mine = marker["event_id"]
    reader.wait_for(
        lambda got: sum(r.value.get("trigger_event_id") == mine for r in got) >= 2, timeout=60
    )
    deadline = time.monotonic() + QUIET_S
    while time.monotonic() < deadline:
        reader.poll(0.3)


def records_of(reader: OutputReader, decision_id: str) -> list[Received]:
    return [r for r in reader.received if r.value.get("decision_id") == decision_id]


def counter(worker: WorkerProcess, name: str) -> float:
    status, body = worker.get("/metrics")
    assert status == 200, body
    for family in text_string_to_metric_families(body["text"]):
        for sample in family.samples:
            if sample.name == name and not sample.labels:
                return sample.value
    raise AssertionError(f"{name} not exported")


def test_copies_of_a_trigger_send_one_action_and_a_restart_reissues_it_once(
    worker: WorkerProcess, publisher: EventPublisher, outputs: OutputReader
) -> None:
    customer = f"copies-{uuid.uuid4().hex[:6]}"
    trigger = purchase(customer, "order")
    duplicates = counter(worker, "nudge_duplicate_events_total")
    reissued = counter(worker, "nudge_reissued_actions_total")
    for _ in range(COPIES):
        publisher.send("purchases", trigger)
    publisher.flush()
    settle(publisher, outputs, customer, "marker-1")

    [first] = [r for r in outputs.by_trigger(trigger["event_id"]) if r.kind == "actions"]
    decision_id, channel = first.value["decision_id"], first.value["channel"]
    assert first.value["action_id"] == "order_confirmation"
    assert [r.kind for r in records_of(outputs, decision_id)].count("actions") == 1
    assert sorted(r.kind for r in records_of(outputs, decision_id)) == [
        "actions",
        f"actions.{channel}",
    ]
    assert first.value["reasons"] != [REISSUE]
    assert counter(worker, "nudge_duplicate_events_total") - duplicates == COPIES - 1
    assert counter(worker, "nudge_reissued_actions_total") - reissued == 0

    # A new worker process on the same state knows nothing of what its
    # predecessor sent: the first copy it sees re-issues the action, once.
    worker.stop()
    worker.start()
    for _ in range(COPIES // 4):
        publisher.send("purchases", trigger)
    publisher.flush()
    settle(publisher, outputs, customer, "marker-2")
    copies = records_of(outputs, decision_id)
    assert sorted(r.kind for r in copies) == sorted(["actions", f"actions.{channel}"] * 2)
    reissue = [r for r in copies if r.kind == "actions"][1].value
    assert reissue["reasons"] == [REISSUE]
    for field in ("action_id", "channel", "trigger_event_id", "expires_at"):
        assert reissue[field] == first.value[field], field
    assert counter(worker, "nudge_reissued_actions_total") == 1
    assert counter(worker, "nudge_duplicate_events_total") == COPIES // 4 - 1
