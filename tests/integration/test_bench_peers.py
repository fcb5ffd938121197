"""The benchmark's peers (bench/peers) against a real broker, started as
bench.pipeline starts them: each decides as bench.peers.decision says,
counts what it processed where the benchmark reads it, and stops cleanly."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bench.pipeline import PeerProcess, System, peer_process
from nudge.testing import EventPublisher, OutputReader


def stamp(seconds_ago: float = 0.0) -> str:
    return (datetime.now(UTC) - timedelta(seconds=seconds_ago)).isoformat()


def consent(event_id: str, customer: str, channel: str, status: str) -> dict:
    return {"event_id": event_id, "type": "consent", "customer_id": customer, "channel": channel,
            "purpose": "marketing", "status": status, "source": "test", "ts": stamp()}  # fmt: skip


def view(event_id: str, customer: str, category: str = "garden") -> dict:
    return {"event_id": event_id, "type": "product_view", "customer_id": customer,
            "product_id": "p1", "category": category, "ts": stamp()}  # fmt: skip


def purchase(event_id: str, customer: str, category: str) -> dict:
    item = {"product_id": "p2", "category": category, "price": 9.5}
    return {"event_id": event_id, "type": "purchase", "customer_id": customer, "order_id": "o1",
            "items": [item], "ts": stamp()}  # fmt: skip


def wait_processed(system: System, count: int, peer: PeerProcess, timeout: float = 30) -> None:
    """Until the peer's own counter says `count` events are done (so the next
    phase cannot overtake them: the Faust agent keeps no order across topics)."""
    deadline = time.monotonic() + timeout
    while system.processed(0) < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{peer.name} processed {system.processed(0)} of {count}:\n"
                               f"{peer.tail()}")  # fmt: skip
        time.sleep(0.1)


@pytest.mark.parametrize("name", ["faust", "quix"])
def test_peer_decides_consent_cap_and_cooldown(
    name: str, kafka_bootstrap: str, unique_prefix: str, tmp_path: Path
) -> None:
    # Two partitions: Quix assigns a partition in about half a second here (a
    # watermark query per partition), so the benchmark's 8 x 7 would take a minute.
    peer = peer_process(name, kafka_bootstrap, tmp_path, prefix=unique_prefix, partitions=2)
    system = peer.start()
    publisher = EventPublisher(kafka_bootstrap, unique_prefix)
    reader = OutputReader(kafka_bootstrap, unique_prefix, ["actions"])
    try:
        assert system.processed(0) == 0
        # Phase 1: consent and a purchase. Nothing to decide.
        publisher.send_all([
            ("consent", consent("e1", "alice", "all", "granted")),
            ("consent", consent("e2", "bob", "email", "granted")),
            ("consent", consent("e3", "bob", "email", "revoked")),
            ("consent", consent("e4", "carol", "all", "granted")),
            ("purchases", purchase("e5", "carol", "garden")),
        ])  # fmt: skip
        wait_processed(system, 5, peer)
        # Phase 2: triggers.
        publisher.send_all([
            ("clickstream", view("t1", "alice")),  # consented, never contacted: action
            ("clickstream", view("t2", "bob")),  # revoked: suppressed for consent
            ("clickstream", view("t3", "carol", "garden")),  # bought garden: cooldown
            ("clickstream", view("t4", "dave")),  # never consented
        ])  # fmt: skip
        wait_processed(system, 9, peer)
        # Phase 3: alice again, inside 24 h of her action.
        publisher.send_all([("clickstream", view("t5", "alice", "kitchen"))])
        wait_processed(system, 10, peer)
        triggers = {"t1", "t2", "t3", "t4", "t5"}
        reader.wait_for(lambda got: {r.value["trigger_event_id"] for r in got} >= triggers, 30)
    finally:
        reader.close()
        publisher.close()
        peer.stop()

    decided = {r.value["trigger_event_id"]: r.value for r in reader.received}
    assert len(reader.received) == 5  # one decision per trigger, none for the rest
    assert decided["t1"]["kind"] == "action" and decided["t1"]["channel"] == "email"
    assert (decided["t2"]["kind"], decided["t2"]["reason"]) == ("suppression", "consent")
    assert (decided["t3"]["kind"], decided["t3"]["reason"]) == ("suppression", "category_cooldown")
    assert (decided["t4"]["kind"], decided["t4"]["reason"]) == ("suppression", "consent")
    assert (decided["t5"]["kind"], decided["t5"]["reason"]) == ("suppression", "contact_cap")
    # What the latency reader needs: the trigger's id and time, parseable.
    assert datetime.fromisoformat(decided["t1"]["trigger_ts"]).tzinfo is not None
    assert peer.process is not None and peer.process.returncode == 0  # stopped cleanly
