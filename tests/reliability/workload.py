"""Traffic for fault injection, and the checks every fault must leave true.

`build` makes a seeded stream for a few hundred customers: consent grants
(published first), then nudge.traffic's shopping traffic (browsing sessions,
searches, carts, checkouts, purchases, redeliveries) with opt-outs among it,
in event-time order. Every event of the kinds that leave a record whatever
the state (a decision, a consent-log entry) must leave one on Kafka; the
checks then prove, from what the worker wrote, that nothing was lost and no
promise to a person was broken:

- accounted: every event that must leave a record has one;
- opt-outs: no marketing action decided after an applied opt-out;
- caps: no channel or global cap exceeded, counting each decision id once;
- duplicates: every copy of an action carries the same decision id;
- contacts: every contact the final state records has its action on Kafka.
"""

from __future__ import annotations

import random
import threading
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import msgspec
import rocksdict
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition

from nudge.policy.clock import DAY, HOUR
from nudge.policy.config import load_policy
from nudge.policy.ids import decision_id
from nudge.policy.state import Fatigue, Holds
from nudge.policy.stored import HOLD_INDEX_PREFIX, STATE_TABLE, decode_record
from nudge.streams.faust_fixes.rocksdb_store import OFFSET_KEY
from nudge.testing import EventPublisher, OutputReader, Received, WorkerProcess
from nudge.traffic import SHOPPING, Generator, consent, iso, with_prefix
from tests.workers import TEST_POLICY

#: The shipped policy without quiet hours, holdout or exploration: the same
#: decisions at any hour of the day.
POLICY = TEST_POLICY
OUTPUTS = ("actions", "suppressions", "deadletter", "consent-log")
TOKEN = "reliability-test-token"
#: The shopping the stream covers: the half hour before it is built (a
#: session still going on then has its later clicks stamped at that moment),
#: recent enough that no trigger has expired (an order confirmation in 2 h).
SPAN = HOUR / 2
EVENTS_PER_CUSTOMER = 9
OPT_OUT_SHARE = 0.3
#: Event types that leave a record whatever the person's state: a session
#: start and a search trigger garden_seasonal, a purchase its order
#: confirmation (each decided: an action, or a suppression naming its
#: reasons), a consent change its consent-log entry.
ALWAYS_RECORDED = frozenset({"session_start", "search", "purchase", "consent"})


@dataclass
class Workload:
    grants: list[tuple[str, dict]]
    stream: list[tuple[str, dict]]
    must_record: set[str]  # event ids that must leave a decision or consent-log entry
    purchases: set[str]  # event ids whose order confirmation must be on Kafka
    opted_out: set[str]  # customers who opt out in the stream
    customers: list[str] = field(default_factory=list)

    @property
    def events(self) -> int:
        return len(self.grants) + len(self.stream)


def build(tag: str, customers: int, seed: int = 7) -> Workload:
    """About nine events of shopping per customer, ids starting with `tag`;
    every customer grants email marketing (half of them push too) before the
    stream, and three in ten opt out of all marketing somewhere in it."""
    rng = random.Random(seed)
    now = time.time()
    start = now - SPAN
    traffic = Generator(
        customers,
        customers * EVENTS_PER_CUSTOMER,
        seed,
        days=SPAN / DAY,
        mix=SHOPPING,
        start=datetime.fromtimestamp(start, UTC),
    )
    events = [(raw.ts, raw.kind, raw.body) for raw in traffic.generate()]
    work = Workload([], [], set(), set(), set())
    for person in traffic.customers:
        customer = f"{tag}{person.id}"
        work.customers.append(customer)
        for channel in ("email", "push") if rng.random() < 0.5 else ("email",):
            grant = consent(customer, f"{customer}-{channel}", iso(start - 1200), channel)
            work.grants.append(("consent", grant))
        if rng.random() < OPT_OUT_SHARE:
            ts = rng.uniform(start, start + SPAN)
            opt_out = consent(
                person.id, f"{person.id}-opt-out", ts, "all", "revoked", "unsubscribe_link"
            )
            events.append((ts, "consent", opt_out))
            work.opted_out.add(customer)
    events.sort(key=lambda event: event[0])  # stable: redeliveries stay after the original
    for ts, kind, body in events:
        event = {**with_prefix(body, tag), "ts": iso(min(ts, now))}
        work.stream.append((kind, event))
        if event["type"] == "purchase":
            work.purchases.add(event["event_id"])
    work.must_record = {
        event["event_id"]
        for _, event in (*work.grants, *work.stream)
        if event["type"] in ALWAYS_RECORDED
    }
    return work


class Traffic(threading.Thread):
    """Publishes events at a steady rate in the background, like upstream systems."""

    def __init__(self, publisher: EventPublisher, items: list[tuple[str, dict]], rate: float):
        super().__init__(daemon=True)
        self.publisher = publisher
        self.items = items
        self.rate = rate
        self.sent = 0

    def run(self) -> None:
        started = time.monotonic()
        for index, (kind, event) in enumerate(self.items):
            delay = started + index / self.rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            self.publisher.send(kind, event)
            self.sent += 1
        self.publisher.flush()


def recorded_ids(received: Iterable[Received]) -> set[str]:
    """Event ids that left a decision or a consent-log entry."""
    ids = set()
    for r in received:
        if r.kind in ("actions", "suppressions"):
            ids.add(r.value["trigger_event_id"])
        elif r.kind == "consent-log":
            ids.add(r.value["event_id"])
    return ids


def wait_recorded(reader: OutputReader, ids: set[str], timeout: float) -> float:
    """Poll until every id in `ids` left a record; seconds it took."""
    started = time.monotonic()
    if wait_settled(reader, ids, timeout, quiet=timeout) is None:
        missing = sorted(ids - recorded_ids(reader.received))
        raise TimeoutError(f"{len(missing)} events left no record, e.g. {missing[:5]}")
    return time.monotonic() - started


def wait_settled(reader: OutputReader, ids: set[str], timeout: float, quiet: float) -> bool | None:
    """Poll until every id in `ids` left a record (True), or nothing new
    arrived for `quiet` seconds or `timeout` passed (None)."""
    started = last_news = time.monotonic()
    while not ids <= recorded_ids(reader.received):
        now = time.monotonic()
        if now - started > timeout or now - last_news > quiet:
            return None
        if reader.poll(0.3):
            last_news = time.monotonic()
    return True


def wait_consumed(bootstrap: str, prefix: str, timeout: float) -> float:
    """Poll until the worker group has committed every message of every input
    topic (no-trigger events leave no record, but they are consumed too);
    seconds it took."""
    started = time.monotonic()
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        inputs = [f"{prefix}{kind}" for kind in ("clickstream", "purchases", "consent")]
        partitions = [
            TopicPartition(t, p) for t in inputs for p in consumer.partitions_for_topic(t) or ()
        ]
        while True:
            ends = consumer.end_offsets(partitions)
            committed = admin.list_group_offsets(f"{prefix}nudge").get(f"{prefix}nudge", {})
            behind = {
                tp: end - (committed[tp].offset if tp in committed else 0)
                for tp, end in ends.items()
                if end > (committed[tp].offset if tp in committed else 0)
            }
            if not behind:
                return time.monotonic() - started
            if time.monotonic() - started > timeout:
                raise TimeoutError(f"input partitions not fully consumed: {behind}")
            time.sleep(0.5)
    finally:
        consumer.close()
        admin.close()


def publish_grants(publisher: EventPublisher, reader: OutputReader, work: Workload) -> None:
    publisher.send_all(work.grants)
    wait_recorded(reader, {e["event_id"] for _, e in work.grants}, 60)


# -- the checks ---------------------------------------------------------------------


def actions(received: Iterable[Received]) -> list[dict]:
    return [r.value for r in received if r.kind == "actions"]


def unaccounted(work: Workload, received: list[Received]) -> set[str]:
    """Events that must have left a record and did not."""
    return work.must_record - recorded_ids(received)


def missing_confirmations(work: Workload, received: list[Received]) -> set[str]:
    """Purchases without their order confirmation action."""
    return work.purchases - {a["trigger_event_id"] for a in actions(received)}


def opt_out_violations(received: list[Received]) -> list[dict]:
    """Marketing actions decided after the person's opt-out was applied."""
    opted_out_at: dict[str, datetime] = {}
    for r in received:
        entry = r.value
        if (
            r.kind == "consent-log"
            and entry["applied"]
            and entry["status"] == "revoked"
            and entry["channel"] == "all"
            and entry["purpose"] == "marketing"
        ):
            at = datetime.fromisoformat(entry["recorded_at"])
            customer = entry["customer_id"]
            opted_out_at[customer] = min(at, opted_out_at.get(customer, at))
    return [
        a
        for a in actions(received)
        if a["message_class"] == "marketing"
        and a["customer_id"] in opted_out_at
        and datetime.fromisoformat(a["decided_at"]) > opted_out_at[a["customer_id"]]
    ]


def cap_violations(received: list[Received]) -> list[str]:
    """Windows holding more marketing messages than the policy allows, counting
    each decision id once, at the time the message reaches the person."""
    policy = load_policy(POLICY)
    sent: dict[str, dict[str, float]] = defaultdict(dict)  # customer -> decision id -> at
    channel_of: dict[str, str] = {}
    for a in actions(received):
        if a["message_class"] != "marketing":
            continue
        at = datetime.fromisoformat(a["send_after"] or a["decided_at"]).timestamp()
        sent[a["customer_id"]].setdefault(a["decision_id"], at)
        channel_of[a["decision_id"]] = a["channel"]
    problems = []
    for customer, by_id in sent.items():
        groups = {"all": sorted(by_id.values())}
        for did, at in by_id.items():
            groups.setdefault(channel_of[did], []).append(at)
        for group, times in groups.items():
            caps = policy.global_caps if group == "all" else policy.channel_caps.get(group)
            for length, cap in caps.windows() if caps else []:
                times = sorted(times)
                worst = max(sum(1 for u in times if t <= u < t + length) for t in times)
                if worst > cap:
                    problems.append(f"{customer} {group}: {worst} in {length:.0f}s > {cap}")
    return problems


def duplicate_stats(received: list[Received]) -> tuple[int, int, list[str]]:
    """(action records, distinct decisions, triggers whose copies differ in id)."""
    records = actions(received)
    ids_by_trigger: dict[str, set[str]] = defaultdict(set)
    for a in records:
        ids_by_trigger[a["trigger_event_id"]].add(a["decision_id"])
    differing = [t for t, ids in ids_by_trigger.items() if len(ids) > 1]
    return len(records), len({a["decision_id"] for a in records}), differing


def changelog(bootstrap: str, worker: WorkerProcess, table: str) -> dict[bytes, bytes]:
    """A table's changelog compacted by hand: each key's latest committed
    value, deleted keys left out (what any worker would recover)."""
    topic = f"{worker.prefix}nudge-{table}-changelog"
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        isolation_level="read_committed",
    )
    partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
    consumer.assign(partitions)
    consumer.seek_to_beginning()
    ends = consumer.end_offsets(partitions)  # read_committed: the last stable offsets
    latest: dict[bytes, bytes | None] = {}
    # To the end offsets, not until a quiet spell: on a busy machine a fetch
    # can take seconds, and the records missed would be the newest.
    deadline = time.monotonic() + 60
    while any(consumer.position(tp) < ends[tp] for tp in partitions):
        assert time.monotonic() < deadline, f"{topic} not read to its end in 60 s"
        for records in consumer.poll(timeout_ms=500).values():
            for record in records:
                latest[record.key] = record.value
    consumer.close()
    return {key: value for key, value in latest.items() if value is not None}


def local_table(worker: WorkerProcess, table: str) -> dict[bytes, bytes]:
    """A stopped worker's RocksDB copy of a table, all partitions."""
    tabledir = worker.data_dir / "tables" / "v1" / "tables"
    rows: dict[bytes, bytes] = {}
    for path in tabledir.glob(f"{table}-*.db"):
        db = rocksdict.Rdict(
            str(path),
            rocksdict.Options(raw_mode=True),
            access_type=rocksdict.AccessType.read_only(),
        )
        rows.update((k, v) for k, v in db.items() if k != OFFSET_KEY)
        db.close()
    return rows


def final_contacts(bootstrap: str, worker: WorkerProcess) -> dict[str, list[str]]:
    """Customer -> short decision ids of every contact in the fatigue part
    of the state changelog's latest record, but those reserved for an action
    still held and not due yet (a cart reminder an hour on): it has not
    been published because its time has not come."""
    fatigue_decoder = msgspec.msgpack.Decoder(Fatigue)
    holds_decoder = msgspec.msgpack.Decoder(Holds)
    now = time.time()
    contacts = {}
    for key, value in changelog(bootstrap, worker, STATE_TABLE).items():
        if key.startswith(HOLD_INDEX_PREFIX):  # the held-actions index, not a customer
            continue
        parts = decode_record(value)
        if not parts["fatigue"]:
            continue
        fatigue = fatigue_decoder.decode(parts["fatigue"])
        holds = holds_decoder.decode(parts["holds"]) if parts["holds"] else Holds()
        waiting = {
            decision_id(hold.trigger_event_id, hold.action_id)[:16]
            for hold in holds.pending
            if hold.due > now
        }
        recorded = (*fatigue.contacts, *fatigue.transactional)
        contacts[key.decode()] = [c.decision_id for c in recorded if c.decision_id not in waiting]
    return contacts


def lost_actions(contacts: dict[str, list[str]], received: list[Received]) -> list[str]:
    """Contacts recorded in state whose action never reached Kafka, other
    than those withheld: a re-issue an opt-out made since turned into a
    suppression of the same trigger (Engine._withheld)."""
    accounted = {a["decision_id"][:16] for a in actions(received)}
    accounted |= {
        decision_id(r.value["trigger_event_id"], candidate["action_id"])[:16]
        for r in received
        if r.kind == "suppressions"
        for candidate in r.value["candidates"]
    }
    return [f"{c}:{d}" for c, ids in contacts.items() for d in ids if d not in accounted]


def check_all(work: Workload, received: list[Received], contacts: dict) -> dict:
    """Every invariant at once, as a dict of findings (all empty when sound)."""
    return {
        "unaccounted": sorted(unaccounted(work, received)),
        "missing_confirmations": sorted(missing_confirmations(work, received)),
        "opt_out_violations": opt_out_violations(received),
        "cap_violations": cap_violations(received),
        "differing_duplicate_ids": duplicate_stats(received)[2],
        "lost_actions": lost_actions(contacts, received),
    }


@dataclass
class Verdict:
    """What a run left behind, judged once its last worker has stopped."""

    received: list[Received]
    findings: dict[str, list]
    action_records: int
    distinct_actions: int

    @property
    def duplicate_actions(self) -> int:
        return self.action_records - self.distinct_actions

    def figures(self) -> dict:
        """The counts a reliability report keeps."""
        counts = {k: len(v) for k, v in self.findings.items()}
        return {"duplicate_actions": self.duplicate_actions, "findings": counts}


def judge(work: Workload, reader: OutputReader, worker: WorkerProcess) -> Verdict:
    """Every invariant over what was published and what the state's changelog
    kept, after the last worker stopped."""
    reader.poll(2.0)  # anything still on its way
    received = list(reader.received)
    findings = check_all(work, received, final_contacts(worker.bootstrap, worker))
    records, distinct, _ = duplicate_stats(received)
    return Verdict(received, findings, records, distinct)
