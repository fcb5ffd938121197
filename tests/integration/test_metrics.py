"""What an on-call engineer sees, checked against what really happened: a
known batch goes through a real worker on a real broker, and /metrics must
count exactly that, with no customer identifier in metrics or logs; /ready
must not turn green before a worker that lost its disk has recovered."""

from __future__ import annotations

import json
import re
import shutil
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from prometheus_client.parser import text_string_to_metric_families

from nudge.policy.stored import STATE_TABLE
from nudge.streams.lag import INTERVAL_S
from nudge.streams.topics import INPUT_KINDS, INTERNAL_KINDS
from nudge.testing import Received, WorkerProcess
from tests.integration.test_worker import Story
from tests.workers import Workers

pytestmark = pytest.mark.integration

TOKEN = "metrics-test-token"
PARTITIONS = 4
OUTPUTS = ("actions", "suppressions", "deadletter", "consent-log")
LOG_LINE = re.compile(r"^\[[^\]]+\] \[\d+\] \[(\w+)\] ")

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(worker: WorkerProcess) -> tuple[str, Samples]:
    """The /metrics text and its samples keyed by (name, sorted labels)."""
    status, body = worker.get("/metrics")
    assert status == 200, body
    text = body["text"]
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    return text, samples


def series(samples: Samples, name: str, *labels: str) -> dict[tuple[str, ...], float]:
    """{label values: value} of one metric; zero-valued series left out."""
    found = {}
    for (sample, pairs), value in samples.items():
        if sample == name and value:
            by_name = dict(pairs)
            found[tuple(by_name[label] for label in labels)] = value
    return found


def lag(samples: Samples) -> dict[tuple[str, str], float]:
    return {
        (dict(pairs)["topic"], dict(pairs)["partition"]): value
        for (name, pairs), value in samples.items()
        if name == "nudge_consumer_lag"
    }


def log_records(text: str) -> Iterator[tuple[str, str]]:
    """(level, line) for every line of a worker log; continuation lines
    (tracebacks) keep their record's level, lines before any record count as
    WARNING (Python's last-resort handler)."""
    level = "WARNING"
    for line in text.splitlines():
        match = LOG_LINE.match(line)
        if match:
            level = match.group(1)
        yield level, line


class Customer(Story):
    """A fresh customer's events (tests/integration/test_worker.py), purchases too."""

    @property
    def id(self) -> str:
        return self.customer

    def purchase(self, category: str, minutes_ago: float = 0) -> dict:
        item = {"product_id": "sku-2", "category": category, "price": 30}
        return self.event("purchase", minutes_ago, order_id=f"o-{self.count}", items=[item])


@dataclass
class Batch:
    """What was sent, what came out on Kafka, and what the worker reported."""

    customers: list[Customer]
    sent: Counter  # (topic kind, event type or "invalid") -> count
    invalid: Counter  # reason -> count
    triggers: dict[str, str]  # trigger event id -> expected action id or suppression reason
    outputs: list[Received]
    metrics_text: str
    samples: Samples
    log: str


@pytest.fixture(scope="module")
def batch(module_workers: Workers) -> Batch:
    worker = module_workers.start(partitions=PARTITIONS, env={"NUDGE_LOG_LEVEL": "debug"})
    publisher = module_workers.publisher(worker)
    reader = module_workers.reader(worker, OUTPUTS)
    sent: Counter = Counter()
    triggers: dict[str, str] = {}

    def send(kind: str, event: dict | bytes, key: bytes | None = None) -> None:
        publisher.send(kind, event, key).get(10)
        type_ = event.get("type", "invalid") if isinstance(event, dict) else "invalid"
        sent[kind, type_] += 1

    def wait_for(kind: str, key: str) -> None:
        reader.wait_for(lambda got: any(r.kind == kind and r.key == key.encode() for r in got))

    buyers = [Customer("buyer") for _ in range(3)]
    fans = [Customer("fan") for _ in range(2)]  # consented: the 3rd view earns an action
    strangers = [Customer("stranger") for _ in range(2)]  # no consent: suppressed
    cooled = Customer("cooled")  # just bought filters: no filter offer
    browser = Customer("browser")  # page views trigger nothing
    for fan in fans:
        send("consent", fan.consent("email"))
    for fan in fans:  # topics are not ordered with each other: consent first
        wait_for("consent-log", fan.id)
    for buyer in buyers:
        purchase = buyer.purchase("garden")
        send("purchases", purchase)
        triggers[purchase["event_id"]] = "order_confirmation"
    send("purchases", purchase)  # the same event id again: counted, then skipped
    filters = cooled.purchase("air_filters", 5)
    send("purchases", filters)
    triggers[filters["event_id"]] = "order_confirmation"
    expected = {
        **dict.fromkeys(fans, "category_inspiration"),
        **dict.fromkeys(strangers, "consent"),
    }
    for person, outcome in expected.items():
        send("clickstream", person.view("lighting", 2))
        send("clickstream", person.view("lighting", 1))
        trigger = person.view("lighting")
        send("clickstream", trigger)
        triggers[trigger["event_id"]] = outcome
    for _ in range(4):
        send("clickstream", browser.event("page_view", page="/garden"))
    wait_for("actions", cooled.id)
    trigger = cooled.view("air_filters")
    send("clickstream", trigger)
    triggers[trigger["event_id"]] = "purchase_cooldown"
    invalid = Counter(malformed=2, unknown_type=1, missing_subject=1)
    key = browser.id.encode()
    send("clickstream", b'{"event_id": "x1", "type": "page_view", "customer_id": ', key)
    send("clickstream", b"\xff\xfe not json", key)
    teleport = {**browser.event("page_view"), "type": "teleport"}
    send("clickstream", json.dumps(teleport).encode(), key)
    orphan = browser.event("page_view")
    del orphan["customer_id"]
    send("clickstream", json.dumps(orphan).encode(), key)
    last_sent = time.monotonic()

    reader.wait_for(
        lambda got: (
            {r.value.get("trigger_event_id") for r in got} >= set(triggers)
            and sum(r.kind == "deadletter" for r in got) >= invalid.total()
        )
    )
    # Lag 0 means every message was processed, counted and committed; a
    # measurement older than the last send could say 0 for too early.
    deadline = time.monotonic() + 60
    while True:
        _, samples = scrape(worker)
        fresh = time.monotonic() > last_sent + INTERVAL_S + 1
        if fresh and lag(samples) and not any(lag(samples).values()):
            break
        assert time.monotonic() < deadline, f"lag never reached 0: {lag(samples)}"
        time.sleep(0.5)
    reader.poll(1.0)
    text, samples = scrape(worker)
    return Batch(
        customers=[*buyers, *fans, *strangers, cooled, browser],
        sent=sent,
        invalid=invalid,
        triggers=triggers,
        outputs=list(reader.received),
        metrics_text=text,
        samples=samples,
        log=worker.log_path.read_text(errors="replace"),
    )


def decisions(batch: Batch) -> list[Received]:
    """Each decision once: a trigger redelivered after a restart re-issues its
    action with the same decision id (downstream drops the copy by that id)."""
    unique: dict[str, Received] = {}
    for r in batch.outputs:
        if r.kind in ("actions", "suppressions"):
            unique.setdefault(r.value["decision_id"], r)
    return list(unique.values())


def test_events_are_counted_by_topic_and_type(batch: Batch) -> None:
    assert series(batch.samples, "nudge_events_consumed_total", "topic", "type") == batch.sent
    assert series(batch.samples, "nudge_duplicate_events_total") == {(): 1}
    # The duplicate is a purchase whose confirmation this worker sent: not again.
    assert series(batch.samples, "nudge_reissued_actions_total") == {}  # none (0 is left out)
    assert ("nudge_reissued_actions_total", ()) in batch.samples  # exported all the same
    copies = [r for r in batch.outputs if r.kind == "actions"]
    assert len(copies) == len({r.value["decision_id"] for r in copies})


def test_invalid_events_and_deadletters_are_counted_by_reason(batch: Batch) -> None:
    dead = Counter(r.value["reason"] for r in batch.outputs if r.kind == "deadletter")
    assert dead == batch.invalid
    reasons = series(batch.samples, "nudge_invalid_events_total", "reason")
    assert reasons == {(reason,): n for reason, n in batch.invalid.items()}
    assert series(batch.samples, "nudge_deadletters_total") == {(): batch.invalid.total()}


def test_decisions_match_what_reached_kafka(batch: Batch) -> None:
    by_trigger = {r.value["trigger_event_id"]: r for r in decisions(batch)}
    assert set(by_trigger) == set(batch.triggers), "one decision per trigger, no other"
    for trigger, expected in batch.triggers.items():
        decision = by_trigger[trigger].value
        if by_trigger[trigger].kind == "actions":
            assert decision["action_id"] == expected
        else:
            assert expected in decision["reasons"], decision
    actions = Counter(
        (r.value["channel"], r.value["action_id"]) for r in decisions(batch) if r.kind == "actions"
    )
    assert actions == {("email", "order_confirmation"): 4, ("email", "category_inspiration"): 2}
    suppressed = [r.value for r in decisions(batch) if r.kind == "suppressions"]
    reasons = Counter(reason for s in suppressed for reason in s["reasons"])
    assert series(batch.samples, "nudge_actions_total", "channel", "action") == dict(actions)
    assert series(batch.samples, "nudge_suppressions_total", "reason") == {
        (reason,): n for reason, n in reasons.items()
    }
    assert series(batch.samples, "nudge_decisions_total", "outcome") == {
        ("action",): 6,
        ("suppression",): 3,
    }
    assert series(batch.samples, "nudge_consent_changes_total", "applied") == {("true",): 2}


def test_latency_histograms_observe_every_decision(batch: Batch) -> None:
    valid = sum(n for (_, type_), n in batch.sent.items() if type_ != "invalid")
    processed = valid - 1  # the duplicate is skipped before deciding
    assert series(batch.samples, "nudge_decision_seconds_count") == {(): processed}
    assert series(batch.samples, "nudge_event_to_emit_seconds_count") == {(): len(batch.triggers)}
    bounds = {
        float(dict(pairs)["le"])
        for name, pairs in batch.samples
        if name == "nudge_event_to_emit_seconds_bucket"
    }
    assert {0.001, 0.002, 0.005, 0.01, 0.025} <= bounds, "buckets too coarse for milliseconds"


def test_lag_is_reported_for_every_input_partition_and_drops_to_zero(batch: Batch) -> None:
    expected = {
        (kind, str(p)) for kind in (*INPUT_KINDS, *INTERNAL_KINDS) for p in range(PARTITIONS)
    }
    assert lag(batch.samples) == dict.fromkeys(expected, 0.0)


def test_table_entries_are_estimated_for_written_tables(batch: Batch) -> None:
    entries = series(batch.samples, "nudge_table_entries_estimate", "table")
    assert set(entries) == {(STATE_TABLE,)}  # one record per customer (policy/stored.py)
    assert all(n > 0 for n in entries.values()), entries


def test_no_customer_identifier_in_metrics_or_logs_above_debug(batch: Batch) -> None:
    ids = [c.id for c in batch.customers]
    assert not [i for i in ids if i in batch.metrics_text]
    leaks = [
        line
        for level, line in log_records(batch.log)
        if level != "DEBUG" and any(i in line for i in ids)
    ]
    assert not leaks, leaks[:5]


def test_logs_one_debug_line_per_decision_and_a_warning_per_deadletter(batch: Batch) -> None:
    records = list(log_records(batch.log))
    for decision in decisions(batch):
        lines = [line for level, line in records if decision.value["decision_id"] in line]
        assert len(lines) == 1, (decision.value["decision_id"], lines)
        assert LOG_LINE.match(lines[0]).group(1) == "DEBUG"
        assert str(decision.value["reasons"]) in lines[0]
    warnings = [line for level, line in records if level == "WARNING" and "deadletter" in line]
    assert len(warnings) == batch.invalid.total(), warnings


def test_ready_only_once_a_worker_without_its_disk_has_recovered(workers: Workers) -> None:
    """Delete a worker's RocksDB dir: its state must come back from the
    changelogs, and /ready must not say 200 before the API can show it."""
    worker = workers.new(partitions=PARTITIONS, env={"NUDGE_API_TOKEN": TOKEN})
    publisher = workers.publisher(worker)
    customers = [Customer("kept") for _ in range(60)]
    worker.start()
    for customer in customers:
        publisher.send("consent", customer.consent("email"))
        publisher.send("clickstream", customer.view("garden"))
    publisher.flush()
    for customer in customers:
        assert recovered(worker, customer, timeout=30), customer.id
    worker.stop()
    shutil.rmtree(worker.data_dir / "tables")
    late = [Customer("late") for _ in range(20)]  # lag for the restarted worker
    for customer in late:
        publisher.send("clickstream", customer.event("page_view", page="/"))
    publisher.flush()

    seen: list[int] = []
    lags: list[float] = []
    missing: list[str] = []

    def watch_ready(timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = worker.get("/ready")[0]
            seen.append(status)
            if status == 200:
                missing.extend(c.id for c in customers if not recovered(worker, c))
                return
            if status:
                lags.append(sum(lag(scrape(worker)[1]).values()))
            time.sleep(0.05)
        raise TimeoutError(f"not ready: {worker.tail()}")

    worker.wait_ready = watch_ready  # observe /ready from the very start
    worker.start(ready_timeout=90)
    assert not missing, f"/ready said 200 before {len(missing)} customers were recovered"
    assert 503 in seen[: seen.index(200)], "never reported not-ready while recovering"
    assert max(lags, default=0) > 0, "the messages sent while it was down were never lag"
    deadline = time.monotonic() + 30
    while any(lag(scrape(worker)[1]).values()):
        assert time.monotonic() < deadline, "lag never went back to 0"
        time.sleep(0.5)


def recovered(worker: WorkerProcess, customer: Customer, timeout: float = 0) -> bool:
    """Does the explain API show the customer's consent (polling up to timeout)?"""
    deadline = time.monotonic() + timeout
    while True:
        status, summary = worker.get(f"/api/customers/{customer.id}", token=TOKEN)
        if status == 200 and summary["marketing_allowed"]["email"]:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)
