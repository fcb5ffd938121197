"""Two workers in one consumer group: every customer-keyed API answer comes
from the customer's owner, whichever worker was asked (streams/routing.py).

No standby replicas and state published only once the partitions are split,
so a worker's tables hold only the customers it owns: without routing the
other worker would answer 404, or decide on empty state (no consent).
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from kafka import KafkaAdminClient
from kafka.partitioner.default import murmur2

from nudge.testing import EventPublisher, WorkerProcess
from tests.workers import Workers

pytestmark = pytest.mark.integration

TOKEN = "routing-test-token"
PARTITIONS = 4
PER_PARTITION = 5  # 20 customers, every partition used
#: streams/routing.py's loop guard: answered from the worker's own tables or 503.
LOCAL_ONLY = {"X-Nudge-Forwarded": "1"}
NO_STATE = {"error": "no state for this customer"}


@pytest.fixture(scope="module")
def pair(module_workers: Workers) -> tuple[WorkerProcess, WorkerProcess]:
    env = {
        "NUDGE_API_TOKEN": TOKEN,
        "NUDGE_STANDBY_REPLICAS": "0",  # no warm copy of the other worker's customers
    }
    first = module_workers.start(partitions=PARTITIONS, env=env, no_traceback=True)
    second = module_workers.start(
        prefix=first.prefix, partitions=PARTITIONS, env=env, no_traceback=True
    )
    first.wait_ready(60)  # through the rebalance the second one caused
    return first, second


def call(
    worker: WorkerProcess,
    method: str,
    path: str,
    body: dict | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict]:
    """(status, JSON body) of one API request with the token and `headers`."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(worker.url + path, data=data, method=method)
    request.add_header("Authorization", f"Bearer {TOKEN}")
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def customers_on_every_partition() -> dict[str, int]:
    """Customer id -> partition, as kafka-python's default partitioner keys it."""
    chosen: dict[str, int] = {}
    counts = [0] * PARTITIONS
    while min(counts) < PER_PARTITION:
        customer = f"rita-{uuid.uuid4().hex[:8]}"
        partition = (murmur2(customer.encode()) & 0x7FFFFFFF) % PARTITIONS
        if counts[partition] < PER_PARTITION:
            counts[partition] += 1
            chosen[customer] = partition
    return chosen


def event(customer: str, n: int, type_: str, minutes_ago: float, **fields: object) -> dict:
    ts = datetime.now(UTC) - timedelta(minutes=minutes_ago)
    return {"event_id": f"{customer}-{n}", "type": type_, "customer_id": customer,
            "ts": ts.isoformat(), **fields}  # fmt: skip


def publish_states(worker: WorkerProcess, partition_of: dict[str, int]) -> None:
    """Each customer: marketing consent on email and web, two lighting views,
    in the partition chosen for them."""
    publisher = EventPublisher(worker.bootstrap, worker.prefix)
    try:
        for customer, partition in partition_of.items():
            sent = [publisher.send("consent", event(customer, n, "consent", 30, channel=channel,
                                   purpose="marketing", status="granted", source="test"))
                    for n, channel in enumerate(("email", "web"))]  # fmt: skip
            sent += [publisher.send("clickstream", event(customer, n, "product_view", 5 - n,
                                    product_id=f"lamp-{n}", category="lighting"))
                     for n in (2, 3)]  # fmt: skip
            assert {future.get(10).partition for future in sent} == {partition}
    finally:
        publisher.close()


def complete(summary: dict) -> bool:
    """The customer's whole published state: both consents and the views."""
    allowed = summary["marketing_allowed"]
    affinity = summary["records"]["recency"].get("affinity", {}).get("lighting", 0)
    return allowed["email"] and allowed["web"] and affinity > 1.9


def owned_partitions(bootstrap: str, group: str, topic: str) -> list[set[int]]:
    """The partitions of `topic` each member of `group` holds, from the broker."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        members = admin.describe_groups([group])[group]["members"]
    finally:
        admin.close()
    topics = [m["member_assignment"]["assigned_partitions"] for m in members]
    return [
        {p for t in assigned if t["topic"] == topic for p in t["partitions"]} for assigned in topics
    ]


def test_every_worker_answers_with_the_owners_state(
    pair: tuple[WorkerProcess, WorkerProcess],
) -> None:
    first, second = pair
    partition_of = customers_on_every_partition()
    customers = list(partition_of)
    publish_states(first, partition_of)

    # Control: each customer's partition belongs to one worker only. Asked
    # with the forwarded marker a worker answers from its own tables, or says
    # 503 without forwarding (the loop guard); the broker agrees on the split.
    local: dict[str, set[int]] = {first.url: set(), second.url: set()}
    deadline = time.monotonic() + 30
    for customer in customers:
        path = f"/api/customers/{customer}"
        while True:
            answers = {w.url: call(w, "GET", path, headers=LOCAL_ONLY) for w in pair}
            owners = [url for url, (status, s) in answers.items() if status == 200 and complete(s)]
            if owners:
                break
            assert time.monotonic() < deadline, f"{customer}: state not reached: {answers}"
            time.sleep(0.2)
        [owner] = owners
        [(status, error)] = [answer for url, answer in answers.items() if url != owner]
        assert status == 503 and "not the owner" in error["error"], (status, error)
        local[owner].add(partition_of[customer])
    assert local[first.url] and local[second.url], local
    assert not local[first.url] & local[second.url], local
    split = owned_partitions(first.bootstrap, f"{first.prefix}nudge", f"{first.prefix}clickstream")
    assert sorted(map(sorted, split)) == sorted(map(sorted, local.values())), (split, local)

    # Whichever worker is asked, the answer is the owner's.
    for n, customer in enumerate(customers):
        for worker in pair:
            status, summary = call(worker, "GET", f"/api/customers/{customer}")
            assert status == 200, (worker.url, customer, summary)
            assert summary["customer_id"] == customer and complete(summary), summary
        trigger = event(customer, 4, "product_view", 0, product_id="lamp-4", category="lighting")
        for worker in pair:  # a dry run: decided on the owner's state, twice the same
            status, trace = call(worker, "POST", "/api/decide/clickstream", trigger)
            assert status == 200, (worker.url, customer, trace)
            assert trace["decision"]["kind"] == "action", trace
            assert trace["decision"]["customer_id"] == customer
            assert trace["candidates"][0]["chosen_channel"] == "email", trace
        page = {"customer_id": customer, "page": "/p/lamp-5", "product_id": "lamp-5",
                "category": "lighting"}  # fmt: skip
        asked = pair if n % 2 else pair[::-1]  # each worker asked first half the time
        shown, again = (call(worker, "POST", "/api/onsite", page) for worker in asked)
        assert shown[0] == 200 and shown[1]["content"] is not None, (customer, shown)
        assert shown[1]["content"]["channel"] == "web"
        # Decided by the same owner, which counts the impression it just returned.
        assert again[0] == 200 and again[1]["content"] is None, (customer, again)
        assert "action_cooldown" in again[1]["reasons"], again
    stranger = f"/api/customers/nobody-{uuid.uuid4().hex[:8]}"  # the owner's 404, passed on
    assert [call(w, "GET", stranger) for w in pair] == [(404, NO_STATE)] * 2
