"""An erasure stays erased through a real broker, across workers.

One worker learns a customer (consent, interests, a visitor's browsing that
follows them across login), then erases them. A second worker with an empty
disk takes over, rebuilding its tables from the changelogs. Upstream resends
the old consent and preferences: they are dropped, and the person's next
visit gets no marketing. The erasure reached the visitor's id as well.
"""

from __future__ import annotations

import urllib.request
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from nudge.testing import WorkerProcess
from tests.workers import Workers

pytestmark = pytest.mark.integration

TOKEN = "erasure-test-token"
OUTPUTS = ("actions", "suppressions", "erasures")


def at(minutes_ago: float) -> str:
    return (datetime.now(UTC) - timedelta(minutes=minutes_ago)).isoformat()


ENV = {"NUDGE_API_TOKEN": TOKEN, "NUDGE_ERASURE_KEY": "integration-erasure-key"}


def dropped_as_erased(process: WorkerProcess) -> float:
    with urllib.request.urlopen(f"{process.url}/metrics", timeout=5) as response:
        lines = response.read().decode().splitlines()
    wanted = 'nudge_dropped_events_total{reason="erased"}'
    return sum(float(line.split()[-1]) for line in lines if line.startswith(wanted))


def test_an_erasure_stays_erased_on_another_worker(workers: Workers) -> None:
    customer, visitor = f"erin-{uuid.uuid4().hex[:6]}", f"anon-{uuid.uuid4().hex[:6]}"
    grant = {"event_id": f"{customer}-grant", "type": "consent", "customer_id": customer,
             "ts": at(30), "channel": "email", "purpose": "marketing", "status": "granted",
             "source": "test"}  # fmt: skip
    interests = {"event_id": f"{customer}-prefs", "type": "preferences",
                 "customer_id": customer, "ts": at(29), "interests": ["garden"]}  # fmt: skip
    views = [
        {
            "event_id": f"{visitor}-view-{n}",
            "type": "product_view",
            "anonymous_id": visitor,
            "ts": at(minutes),
            "product_id": f"rake-{n}",
            "category": "garden",
        }
        for n, minutes in enumerate((28, 26))
    ]
    login = {"event_id": f"{visitor}-login", "type": "identify", "customer_id": customer,
             "anonymous_id": visitor, "ts": at(27)}  # fmt: skip

    def visit(n: int, minutes_ago: float) -> dict:
        return {"event_id": f"{customer}-visit-{n}", "type": "session_start",
                "customer_id": customer, "ts": at(minutes_ago)}  # fmt: skip

    first = workers.start(env=ENV, no_traceback=True)
    publisher = workers.publisher(first)
    reader = workers.reader(first, OUTPUTS)
    for kind, event in [("consent", grant), ("preferences", interests),
                        ("clickstream", views[0]), ("identity", login)]:  # fmt: skip
        publisher.send(kind, event).get(10)
    # After the login, the visitor's browsing follows them to the customer.
    reader.wait_for(lambda _: _summary(first, customer).get("linked") == [visitor])
    publisher.send("clickstream", views[1]).get(10)
    reader.wait_for(lambda _: _summary(first, customer).get("garden", 0) > 1.5)
    # The control: before the erasure the visit earns a garden email.
    publisher.send("clickstream", visit(1, 25)).get(10)
    reader.wait_for(lambda got: any(r.kind == "actions" for r in reader.by_trigger(
        f"{customer}-visit-1")))  # fmt: skip

    erase = {"event_id": f"{customer}-erase", "type": "erasure", "customer_id": customer,
             "ts": at(20)}  # fmt: skip
    publisher.send("privacy", erase).get(10)
    confirmed = reader.wait_for(
        lambda got: (
            {r.value.get("customer_id") for r in got if r.kind == "erasures"} >= {customer, visitor}
        )
    )
    assert {r.value["customer_id"] for r in confirmed if r.kind == "erasures"} == {
        customer,
        visitor,
    }
    first.stop()

    # A second worker, empty disk: tables (markers included) from the changelogs.
    second = workers.start(prefix=first.prefix, env=ENV, no_traceback=True)
    for kind, event in [("consent", grant), ("preferences", interests),
                        ("clickstream", views[0])]:  # fmt: skip
        publisher.send(kind, event).get(10)  # upstream resends the old events
    publisher.send("clickstream", visit(2, 1)).get(10)
    reader.wait_for(lambda got: bool(reader.by_trigger(f"{customer}-visit-2")))
    (decision,) = reader.by_trigger(f"{customer}-visit-2")
    assert decision.kind == "suppressions", decision.value
    assert dropped_as_erased(second) == 3
    status, _ = second.get(f"/api/customers/{visitor}", token=TOKEN)
    assert status == 404  # the visitor's pointer went with the customer


def _summary(process: WorkerProcess, customer: str) -> dict:
    status, body = process.get(f"/api/customers/{customer}", token=TOKEN)
    if status != 200:
        return {}
    records = body["records"]
    return {
        "linked": records["profile"].get("linked_ids"),
        "garden": records["recency"].get("affinity", {}).get("garden", 0.0),
    }
