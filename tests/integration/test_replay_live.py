"""Replay equals live: `nudge replay --clock event` on an event log makes
exactly the decisions a real worker with NUDGE_CLOCK=event makes on the same
log published to Kafka.

Kafka orders messages within a partition, not across partitions or topics,
and identity merges travel through an internal topic. The event clock is the
latest event time the worker processed, anyone's: if another person's later
event ran ahead of a purchase, the clock would pass a held cart reminder's due
time first and release it with the cart still open, where the replay (in log
order) withdraws it. So the log is published one event at a time: each is
confirmed processed (its id is in the subject's dedupe ring, read through the
explain API) before the next goes out, and the worker sees the log in its
order, as the replay does.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from nudge.cli import main
from nudge.lab.baselines import NudgePolicy
from nudge.lab.simulation import Simulation
from nudge.policy.ids import decision_id, hash64
from nudge.policy.state import Profile, seen
from nudge.schemas.eventlog import KIND_OF_TYPE, contract_key
from nudge.testing import EventPublisher, OutputReader, WorkerProcess
from tests.workers import TEST_POLICY, Workers

pytestmark = pytest.mark.integration

TOKEN = "replay-live-token"
OUTPUTS = ("actions", "suppressions")


@pytest.fixture(scope="module")
def worker(module_workers: Workers) -> WorkerProcess:
    env = {"NUDGE_CLOCK": "event", "NUDGE_API_TOKEN": TOKEN}
    return module_workers.start(env=env, no_traceback=True)


def story(start: datetime) -> list[tuple[str, dict]]:
    """Six customers: consents, views, carts, purchases, feedback, an opt-out,
    quiet hours, an identify, an unsubscribe and a complaint."""
    run = uuid.uuid4().hex[:6]
    log: list[tuple[str, dict]] = []

    def add(who: str, minute: float, type_: str, **fields: object) -> dict:
        subject = {"anonymous_id": who} if who.startswith("anon") else {"customer_id": who}
        event = {
            "event_id": f"{who}-{len(log)}",
            "type": type_,
            "ts": (start + timedelta(minutes=minute)).isoformat().replace("+00:00", "Z"),
            **subject,
            **fields,
        }
        log.append((KIND_OF_TYPE[type_], event))
        return event

    def consent(who: str, minute: float, channel: str, status: str = "granted") -> dict:
        return add(who, minute, "consent", channel=channel, purpose="marketing", status=status,
                   source="story")  # fmt: skip

    def view(who: str, minute: float, category: str = "lighting") -> dict:
        return add(who, minute, "product_view", product_id=f"sku-{minute}", category=category)

    def buy(who: str, minute: float, category: str = "lighting") -> dict:
        item = {"product_id": "sku-1", "category": category, "price": 49.0}
        return add(who, minute, "purchase", order_id=f"o-{who}-{minute}", items=[item])

    names = ("anna", "ben", "cara", "dan", "eve", "fay")
    anna, ben, cara, dan, eve, fay = (f"{name}-{run}" for name in names)
    anon = f"anon-{run}"
    consent(anna, 0, "email")
    consent(anna, 0.5, "web")
    add(anna, 1, "preferences", preferred_channel="email")
    inspiration = [view(anna, m) for m in (10, 11, 12)][-1]
    add(anna, 13, "add_to_cart", product_id="lamp-1", category="lighting", price=49.0)
    add(anna, 60, "session_start", page="/")  # cart idle: a reminder is a candidate
    add(anna, 70, "clicked", channel="email",
        decision_id=decision_id(inspiration["event_id"], "category_inspiration"))  # fmt: skip
    buy(anna, 80)
    view(anna, 90)  # just bought lighting: purchase cooldown

    consent(ben, 0, "email")
    for minute in (5, 6, 7):
        view(ben, minute, "garden")
    add(ben, 30, "consent", channel="all", purpose="marketing", status="revoked",
        source="unsubscribe_link")  # fmt: skip
    view(ben, 40, "garden")  # opted out

    consent(cara, 0, "email")
    consent(cara, 0.5, "push")
    quiet_from = (start + timedelta(minutes=20) - timedelta(hours=1)).strftime("%H:%M")
    quiet_to = (start + timedelta(minutes=20) + timedelta(hours=2)).strftime("%H:%M")
    add(cara, 1, "preferences", quiet_hours={"start": quiet_from, "end": quiet_to, "tz": "UTC"})
    for minute in (18, 19, 20):
        view(cara, minute)  # deferred to the end of her quiet hours

    view(anon, 5)
    view(anon, 6)
    consent(dan, 7, "email")
    add(anon, 8, "identify", customer_id=dan, reachable_channels=["email"])
    view(dan, 9)  # the visitor's views count for the customer now

    consent(eve, 0, "email")
    consent(eve, 0.5, "sms")
    add(eve, 15, "unsubscribed", channel="email")
    for minute in (16, 17, 18):
        view(eve, minute)
    buy(eve, 25)  # her order confirmation still goes out

    consent(fay, 0, "email")
    add(fay, 20, "complained", channel="email")
    buy(fay, 30)  # not by email: the channel is blocked
    return log


def simulated(start: datetime, days: int = 3) -> list[tuple[str, dict]]:
    """A simulated population's input events over the last days (plus their history)."""
    simulation = Simulation(40, days, seed=5, start=start)
    return [(r.kind, r.event) for r in simulation.run(NudgePolicy()) if r.kind != "actions"]


@dataclass
class Probe:
    """How to tell that a subject's last published event was processed."""

    subject: str  # whose dedupe ring records it
    mark: str  # hashed into the ring: the event id, or merge\x1f<id> for a merge


class InOrder:
    """Publishes a log one event at a time, so the worker processes it in log order."""

    def __init__(self, publisher: EventPublisher, worker: WorkerProcess) -> None:
        self.publisher = publisher
        self.worker = worker
        self.pending: dict[str, Probe] = {}
        self.alias: dict[str, str] = {}  # visitor -> customer, once logged in

    def publish(self, kind: str, event: dict) -> None:
        subject = (contract_key(event) or b"").decode()
        if kind != "identity" and subject in self.alias:
            # A logged-in visitor's event is forwarded to the customer and
            # decided there, after a hop through identity-forwards: it is
            # the customer's event now, recorded in the customer's ring.
            subject = self.alias[subject]
        self.drain()  # the one before, anyone's, is processed: the log's order
        self.publisher.send(kind, event).get(10)
        if kind == "identity":  # done once the customer has merged the visitor's state
            self.alias[subject] = event["customer_id"]
            merge = Probe(event["customer_id"], f"merge\x1f{event['event_id']}")
            self.pending[subject] = self.pending[event["customer_id"]] = merge
        else:
            self.pending[subject] = Probe(subject, event["event_id"])

    def wait(self, probe: Probe, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.processed(probe):
            assert time.monotonic() < deadline, f"not processed in {timeout}s: {probe}"
            time.sleep(0.02)
        # Done for every subject it stands for: a merge probe left under the
        # visitor's id would later look for a ring entry long since rotated out.
        for subject in [s for s, pending in self.pending.items() if pending is probe]:
            del self.pending[subject]

    def processed(self, probe: Probe) -> bool:
        status, summary = self.worker.get(f"/api/customers/{probe.subject}", token=TOKEN)
        if status != 200:
            return False
        ring = base64.b64decode(summary["records"]["profile"].get("processed", ""))
        return seen(Profile(processed=ring), hash64(probe.mark))

    def drain(self) -> None:
        for probe in list(self.pending.values()):
            self.wait(probe)


def decision_key(record: dict) -> tuple:
    """What must match: the decision, its action and channel, every reason
    (scores and "held from .. until .." lines included) and its hold. A live
    worker's hold timer can fall behind the log's clock; a hold it missed is
    then released at the person's next event, judged as of its due time as
    the replay judges it (Engine.release_due)."""
    return (
        record["decision_id"],
        record["kind"],
        record.get("action_id"),
        record.get("channel"),
        tuple(record["reasons"]),
        record.get("send_after"),
    )


def test_replay_makes_the_same_decisions_as_the_live_worker(
    worker: WorkerProcess, publisher: EventPublisher, outputs: OutputReader, tmp_path: Path
) -> None:
    # Midnight, not the current minute: the simulated log is then the same at
    # any hour of the day, so a failure here is reproducible.
    now = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    log = story(now - timedelta(hours=3)) + simulated(now - timedelta(days=3))
    path = tmp_path / "events.jsonl"
    path.write_text("".join(json.dumps({"kind": k, "event": e}) + "\n" for k, e in log))

    out = tmp_path / "decisions.jsonl"
    replay = ["replay", str(path), "--clock", "event", "--policy", str(TEST_POLICY), "--quiet"]
    assert main([*replay, "--out", str(out)]) == 0
    replayed = Counter(decision_key(json.loads(line)) for line in out.read_text().splitlines())
    kinds = Counter(key[1] for key in replayed.elements())
    assert kinds["action"] >= 10 and kinds["suppression"] >= 5, kinds

    in_order = InOrder(publisher, worker)
    for kind, event in log:
        in_order.publish(kind, event)
    in_order.drain()
    outputs.wait_for(lambda got: len(got) >= replayed.total(), timeout=60)
    outputs.poll(2.0)  # nothing more may follow
    live = Counter(decision_key(r.value) for r in outputs.received)
    assert live == replayed, (
        f"only live: {sorted((live - replayed).elements())}\n"
        f"only replayed: {sorted((replayed - live).elements())}"
    )
