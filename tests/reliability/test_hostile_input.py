"""Hostile input against a real broker and a real worker process.

Every message ends as a deadletter record with the right reason, pointing at
its exact topic, partition and offset, or is processed like any other; the
worker never stops, and garbage costs little throughput. The corpus and the
Hypothesis strategies are in hostile.py, which also notes what the codec
does with the odd ones.
"""

from __future__ import annotations

import base64
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta

import pytest
from hostile import (
    PROCESSED,
    Case,
    Maker,
    corpus,
    draw_messages,
    expected_reason,
    messages,
    recording_event_id,
    utc_now,
)
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import MessageSizeTooLargeError
from kafka.producer.future import FutureRecordMetadata
from prometheus_client.parser import text_string_to_metric_families
from workload import TOKEN, build, wait_recorded

from nudge.policy.engine import REISSUE
from nudge.policy.processor import DEADLETTER_KEEP_BYTES
from nudge.schemas.codec import decode_event
from nudge.streams.admin import ensure_topics
from nudge.streams.settings import Settings
from nudge.streams.topics import INPUT_KINDS, INTERNAL_KINDS, topic_name
from nudge.testing import EventPublisher, OutputReader, Received, WorkerProcess
from tests.workers import Workers

pytestmark = pytest.mark.reliability

OUTPUTS = ("actions", "suppressions", "deadletter", "consent-log", "erasures")
HYPOTHESIS_MESSAGES = 300
#: Customers of the throughput runs: about 3,200 valid events (workload.build).
THROUGHPUT_CUSTOMERS = 300
GARBAGE_EVERY = 9  # one garbage message after every 9 valid ones: 10% of all messages

Coordinates = tuple[str, int, int]


@pytest.fixture(scope="module")
def worker(module_workers: Workers) -> Iterator[WorkerProcess]:
    process = module_workers.start(env={"NUDGE_API_TOKEN": TOKEN})
    yield process
    alive = process.process is not None and process.process.poll() is None
    process.stop()
    log = process.log_path.read_text(errors="replace")
    assert alive, "the worker stopped"
    assert "Traceback" not in log and "Crashed" not in log, process.tail(80)


# -- helpers ------------------------------------------------------------------------


def send_raw(
    publisher: EventPublisher,
    kind: str,
    key: bytes | None,
    value: bytes | None,
    timestamp_ms: int | None = None,
) -> FutureRecordMetadata:
    """Exactly these bytes (None: no key, or a tombstone), as a careless producer sends them."""
    topic = topic_name(publisher.prefix, kind)
    return publisher.producer.send(topic, key=key, value=value, timestamp_ms=timestamp_ms)


def where(future: FutureRecordMetadata) -> Coordinates:
    metadata = future.get(30)
    return metadata.topic, metadata.partition, metadata.offset


def deadletters(received: Iterable[Received]) -> dict[Coordinates, list[dict]]:
    found: dict[Coordinates, list[dict]] = {}
    for r in received:
        if r.kind == "deadletter":
            v = r.value
            found.setdefault((v["source_topic"], v["partition"], v["offset"]), []).append(v)
    return found


def event_time(kind: str, value: bytes, now: datetime) -> float:
    return decode_event(kind, value, None, now, check_key=False).ts.timestamp()


def erasure_times(messages: Iterable[tuple[str, bytes, bytes]], now: datetime) -> dict:
    """Subject key -> the latest time an erasure in `messages` is stamped with."""
    latest: dict[bytes, float] = {}
    for kind, key, value in messages:
        if kind == "privacy":
            latest[key] = max(event_time(kind, value, now), latest.get(key, float("-inf")))
    return latest


def record_ids(received: Iterable[Received]) -> set[str]:
    """Event ids that left a decision, a consent-log entry or an erasure confirmation."""
    fields = {
        "actions": "trigger_event_id",
        "suppressions": "trigger_event_id",
        "consent-log": "event_id",
        "erasures": "request_event_id",
    }
    return {r.value[fields[r.kind]] for r in received if r.kind in fields}


def wait_accounted(
    reader: OutputReader, coordinates: set[Coordinates], ids: set[str], timeout: float = 90
) -> None:
    """Poll until every message in `coordinates` has a deadletter record and
    every event id in `ids` a record."""
    deadline = time.monotonic() + timeout
    while True:
        reader.poll(0.3)
        missing = coordinates - deadletters(reader.received).keys()
        unrecorded = ids - record_ids(reader.received)
        if not missing and not unrecorded:
            return
        if time.monotonic() > deadline:
            raise AssertionError(
                f"{len(missing)} messages without deadletter, e.g. {sorted(missing)[:5]}; "
                f"{len(unrecorded)} events without record, e.g. {sorted(unrecorded)[:5]}"
            )


def wait_committed(bootstrap: str, prefix: str, timeout: float = 60) -> None:
    """Poll until the worker group has committed every message of every topic
    it reads: valid events that leave no record were consumed too."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    group = f"{prefix}nudge"
    try:
        partitions = [
            TopicPartition(topic, p)
            for topic in (topic_name(prefix, k) for k in (*INPUT_KINDS, *INTERNAL_KINDS))
            for p in consumer.partitions_for_topic(topic) or ()
        ]
        deadline = time.monotonic() + timeout
        while True:
            ends = consumer.end_offsets(partitions)
            committed = admin.list_group_offsets(group).get(group, {})
            behind = {
                tp: end
                for tp, end in ends.items()
                if end > (committed[tp].offset if tp in committed else 0)
            }
            if not behind:
                return
            assert time.monotonic() < deadline, f"not committed: {behind}"
            time.sleep(0.5)
    finally:
        consumer.close()
        admin.close()


def scrape(worker: WorkerProcess) -> dict[str, float]:
    """The worker's Prometheus samples as {name{label=value,...}: value}."""
    status, body = worker.get("/metrics")
    assert status == 200, body
    samples = {}
    for family in text_string_to_metric_families(body["text"]):
        for s in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
            samples[f"{s.name}{{{labels}}}"] = s.value
    return samples


def invalid_by_reason(samples: dict[str, float]) -> Counter[str]:
    prefix = "nudge_invalid_events_total{reason="
    return Counter(
        {name[len(prefix) : -1]: int(v) for name, v in samples.items() if name.startswith(prefix)}
    )


def deadletter_count(samples: dict[str, float]) -> int:
    return int(samples.get("nudge_deadletters_total{}", 0))


def consumed_count(samples: dict[str, float]) -> int:
    return int(sum(v for n, v in samples.items() if n.startswith("nudge_events_consumed_total{")))


def assert_serving(worker: WorkerProcess) -> None:
    assert worker.process is not None and worker.process.poll() is None, worker.tail()
    assert worker.get("/ready")[0] == 200, worker.tail()


# -- 1. the corpus ------------------------------------------------------------------


def test_every_corpus_case_has_its_exact_outcome(worker, publisher, outputs, figures) -> None:
    now = utc_now()
    cases = corpus(f"c{uuid.uuid4().hex[:6]}-", now)
    before = scrape(worker)
    sent = [(c, send_raw(publisher, c.kind, c.key, c.value, c.timestamp_ms)) for c in cases]
    publisher.flush()
    at = {c.name: where(future) for c, future in sent}
    dead = [c for c in cases if c.expect != PROCESSED]
    wait_accounted(
        outputs, {at[c.name] for c in dead}, {c.event_id for c in cases if c.event_id}, timeout=90
    )
    wait_committed(worker.bootstrap, worker.prefix)
    found = deadletters(outputs.received)
    outcomes = {
        c.name: (
            "/".join(d["reason"] for d in found[at[c.name]]) if at[c.name] in found else PROCESSED
        )
        for c in cases
    }
    assert outcomes == {c.name: c.expect for c in cases}
    for case in dead:
        [record] = found[at[case.name]]
        assert record["error"], case.name
        assert _unb64(record["key"]) == _cut(case.key), case.name
        assert _unb64(record["value"]) == _cut(case.value), case.name
        if len(case.value or b"") > DEADLETTER_KEEP_BYTES:
            assert f"of {len(case.value)} bytes" in record["error"], record["error"]
    after = scrape(worker)
    expected = Counter(c.expect for c in dead)
    assert invalid_by_reason(after) - invalid_by_reason(before) == expected
    assert deadletter_count(after) - deadletter_count(before) == len(dead)
    assert_serving(worker)
    figures.setdefault("hostile_input", {})["corpus"] = {
        "cases": len(cases),
        "processed": len(cases) - len(dead),
        "deadlettered_by_reason": dict(sorted(expected.items())),
    }


def test_a_message_over_the_broker_limit_never_reaches_the_worker(worker) -> None:
    """2 MB: the broker refuses it (message.max.bytes, about 1 MB by default),
    so this one is the producer's problem; 900 KB is in the corpus."""
    producer = KafkaProducer(bootstrap_servers=worker.bootstrap, max_request_size=4 << 20)
    try:
        future = producer.send(topic_name(worker.prefix, "clickstream"), b"k", b"x" * (2 << 20))
        with pytest.raises(MessageSizeTooLargeError):
            future.get(30)
    finally:
        producer.close(10)


def _unb64(text: str | None) -> bytes | None:
    return None if text is None else base64.b64decode(text)


def _cut(data: bytes | None) -> bytes | None:
    return None if data is None else data[:DEADLETTER_KEEP_BYTES]


# -- 2. Hypothesis ------------------------------------------------------------------


def test_generated_garbage_is_all_accounted_for(worker, publisher, outputs, figures) -> None:
    now = utc_now()
    tag = f"g{uuid.uuid4().hex[:6]}-"
    batch = draw_messages(messages(tag, now), HYPOTHESIS_MESSAGES)
    before = scrape(worker)
    futures = [send_raw(publisher, kind, key, value) for kind, key, value in batch]
    publisher.flush()
    coordinates = [where(f) for f in futures]
    expected = [expected_reason(kind, key, value, now) for kind, key, value in batch]
    valid = [(m, c) for m, c, e in zip(batch, coordinates, expected, strict=True) if e == PROCESSED]
    # A valid event whose id repeats for its subject is a duplicate: whichever
    # copy comes first (topics are not ordered) leaves the record, or none does.
    ids = [recording_event_id(kind, value, now) for (kind, _, value), _ in valid]
    ids_per_subject = Counter((key, i) for ((_, key, _), _), i in zip(valid, ids, strict=True))
    # An event stamped at or before an erasure of its subject in the batch is
    # dropped if the erasure is processed first (policy/erasure.py): it may
    # or may not leave a record.
    erased = erasure_times([m for m, _ in valid], now)
    must_record = {
        i
        for ((kind, key, value), _), i in zip(valid, ids, strict=True)
        if i is not None
        and ids_per_subject[(key, i)] == 1
        and event_time(kind, value, now) > erased.get(key, float("-inf"))
    }
    dead = {c: e for c, e in zip(coordinates, expected, strict=True) if e != PROCESSED}
    wait_accounted(outputs, set(dead), must_record, timeout=90)
    wait_committed(worker.bootstrap, worker.prefix)
    found = deadletters(outputs.received)
    mine = {c: found.get(c, []) for c in coordinates}
    assert {c: [d["reason"] for d in mine[c]] for c in dead} == {c: [e] for c, e in dead.items()}
    wrongly_dead = [c for _, c in valid if mine[c]]
    assert not wrongly_dead, [mine[c] for c in wrongly_dead]
    deadlettered = sum(len(d) for d in mine.values())
    assert deadlettered + len(valid) == len(batch)  # none missing, none twice
    after = scrape(worker)
    assert invalid_by_reason(after) - invalid_by_reason(before) == Counter(dead.values())
    assert deadletter_count(after) - deadletter_count(before) == len(dead)
    assert_serving(worker)
    # ... and the next valid trigger still gets its decision.
    marker = Maker(tag, utc_now()).purchase("after-garbage")
    publisher.send("purchases", marker).get(10)
    outputs.wait_for(lambda got: marker["event_id"] in record_ids(got), timeout=30)
    figures.setdefault("hostile_input", {})["hypothesis"] = {
        "messages": len(batch),
        "distinct": len(set(batch)),
        "processed": len(valid),
        "recorded": len(must_record),
        "deadlettered_by_reason": dict(sorted(Counter(dead.values()).items())),
    }


# -- 3. duplicates and events out of order ------------------------------------------


def test_duplicates_once_and_a_late_old_grant_does_not_reenable(worker, publisher, outputs) -> None:
    """At least once (the default guarantee): a repeated event id changes state
    once; a repeated trigger whose action this worker sent issues nothing
    again (Engine._reissue re-issues only an action that may not have reached
    Kafka, e.g. after a crash), and one that made no contact issues nothing.
    Consent by event time: an older grant that arrives after a newer
    revocation is audited but not applied."""
    m = Maker(f"d{uuid.uuid4().hex[:6]}-", utc_now())
    before = scrape(worker)
    purchase = m.purchase("buyer")
    visit = m.event("visitor", "session_start")
    grant = m.consent("granter")
    for kind, event in [("purchases", purchase), ("clickstream", visit), ("consent", grant)] * 2:
        publisher.send(kind, event).get(10)  # each twice, in order on its partition
    # Out of order: a grant on file, a newer revocation, then an older grant arrives late.
    old_grant = m.consent("optout", ago=timedelta(minutes=30))
    revocation = m.consent("optout", ago=timedelta(minutes=1), status="revoked")
    late_grant = m.consent("optout", ago=timedelta(minutes=10))
    for n, event in enumerate((old_grant, revocation, late_grant)):
        event["event_id"] += str(n)
        publisher.send("consent", event).get(10)
    ids = {e["event_id"] for e in (purchase, visit, grant, old_grant, revocation, late_grant)}
    outputs.wait_for(lambda got: ids <= record_ids(got), timeout=30)
    # A newer-than-all marker on each partition involved proves the copies are behind us.
    markers = [
        ("purchases", m.purchase("buyer", event_id=f"{m.tag}marker-b")),
        ("clickstream", m.event("visitor", "session_start") | {"event_id": f"{m.tag}marker-v"}),
        ("consent", m.consent("granter") | {"event_id": f"{m.tag}marker-g"}),
    ]
    for kind, event in markers:
        publisher.send(kind, event).get(10)
    outputs.wait_for(lambda got: {e["event_id"] for _, e in markers} <= record_ids(got), 30)
    got = outputs.received
    # The purchase: state once, its action once: this worker sent it, so the
    # copy re-issues nothing.
    copies = [
        r.value
        for r in got
        if r.kind == "actions" and r.value["trigger_event_id"] == purchase["event_id"]
    ]
    assert len(copies) == 1, copies
    assert copies[0]["action_id"] == "order_confirmation"
    assert copies[0]["reasons"] != [REISSUE]
    # The visit: a suppression once; no contact was made, so nothing to issue again.
    visits = [r for r in got if r.value.get("trigger_event_id") == visit["event_id"]]
    assert [r.kind for r in visits] == ["suppressions"]
    # The grant: one consent-log entry.
    assert [r.value["event_id"] for r in got if r.kind == "consent-log"].count(
        grant["event_id"]
    ) == 1
    after = scrape(worker)
    assert after["nudge_duplicate_events_total{}"] - before["nudge_duplicate_events_total{}"] == 3
    assert after["nudge_reissued_actions_total{}"] - before["nudge_reissued_actions_total{}"] == 0
    status, summary = worker.get(f"/api/customers/{m.customer('buyer')}", token=TOKEN)
    assert status == 200 and summary["records"]["recency"]["orders"] == 2  # buyer + marker
    # The late, older grant is audited but not applied: still no marketing email.
    log = {r.value["event_id"]: r.value for r in got if r.kind == "consent-log"}
    assert [log[e["event_id"]]["applied"] for e in (old_grant, revocation, late_grant)] == [
        True,
        True,
        False,
    ]
    status, summary = worker.get(f"/api/customers/{m.customer('optout')}", token=TOKEN)
    assert status == 200, summary
    assert summary["marketing_allowed"]["email"] is False
    status_on_file, at = summary["records"]["consent"]["entries"]["email:marketing"][:2]
    assert (status_on_file, at) == ("revoked", datetime.fromisoformat(revocation["ts"]).timestamp())


# -- 4. throughput with 10% garbage --------------------------------------------------


def garbage_rotation() -> list[Case]:
    """Small corpus cases that must be deadlettered, on the input topics."""
    return [
        c
        for c in corpus("x-", utc_now())
        if c.expect != PROCESSED
        and c.kind in INPUT_KINDS
        and len(c.value or b"") + len(c.key or b"") <= 70_000
    ]


def throughput_run(
    workers: Workers, garbage_every: int | None
) -> tuple[dict[str, float], Counter[str]]:
    """Publish the same valid stream (plus garbage) to fresh topics before a
    worker starts, then time how fast that worker gets through it."""
    worker = workers.new(env={"NUDGE_API_TOKEN": TOKEN})
    prefix = worker.prefix
    ensure_topics(
        Settings(
            bootstrap_servers=worker.bootstrap,
            topic_prefix=prefix,
            app_id=f"{prefix}nudge",
            partitions=4,
        )
    )
    work = build("tp-", THROUGHPUT_CUSTOMERS)
    rotation = garbage_rotation() if garbage_every else []
    publisher = workers.publisher(worker)
    garbage: Counter[str] = Counter()
    for n, (kind, event) in enumerate([*work.grants, *work.stream], start=1):
        publisher.send(kind, event)
        if garbage_every and n % garbage_every == 0:
            case = rotation[garbage.total() % len(rotation)]
            send_raw(publisher, case.kind, case.key, case.value)
            garbage[case.expect] += 1
    publisher.flush()
    publisher.close()
    total = work.events + garbage.total()
    spawned = time.monotonic()
    worker.start()
    samples = [(time.monotonic(), consumed_count(scrape(worker)))]
    while samples[-1][1] < total:
        assert time.monotonic() - samples[0][0] < 120, f"consumed {samples[-1][1]} of {total}"
        time.sleep(0.2)
        samples.append((time.monotonic(), consumed_count(scrape(worker))))
    (t0, n0), (t1, n1) = samples[0], samples[-1]
    reader = workers.reader(worker, OUTPUTS)
    wait_recorded(reader, work.must_record, timeout=60)  # no valid event lost
    metrics = scrape(worker)
    assert deadletter_count(metrics) == garbage.total()
    assert invalid_by_reason(metrics) == garbage
    reader.wait_for(lambda got: sum(r.kind == "deadletter" for r in got) >= garbage.total(), 30)
    assert Counter(r.value["reason"] for r in reader.received if r.kind == "deadletter") == (
        garbage
    )
    assert_serving(worker)
    reader.close()
    worker.stop()  # before the next run, which is timed
    measured_s = max(t1 - t0, 1e-3)
    figure = {
        "valid_events": work.events,
        "garbage": garbage.total(),
        "messages": total,
        "consumed_before_first_sample": n0,
        "measured_s": round(measured_s, 2),
        "messages_per_s": round((n1 - n0) / measured_s, 1),
        "valid_events_per_s": round((n1 - n0) / measured_s * work.events / total, 1),
        "start_to_all_consumed_s": round(t1 - spawned, 2),
    }
    assert "Traceback" not in worker.log_path.read_text(errors="replace"), worker.tail(60)
    return figure, garbage


def test_throughput_with_ten_percent_garbage(workers, figures) -> None:
    """Each mix twice, in the order clean, garbage, garbage, clean, and the
    better run of each counts: the machine is shared, and a worker is faster
    on the later part of the stream (the consent grants come first)."""
    runs: dict[str, list[dict]] = {"clean": [], "ten_percent_garbage": []}
    for mix in ("clean", "ten_percent_garbage", "ten_percent_garbage", "clean"):
        every = GARBAGE_EVERY if mix != "clean" else None
        figure, garbage = throughput_run(workers, every)
        assert garbage.total() == (figure["messages"] // (GARBAGE_EVERY + 1) if every else 0)
        runs[mix].append(figure)
    best = {mix: max(r["valid_events_per_s"] for r in measured) for mix, measured in runs.items()}
    ratio = best["ten_percent_garbage"] / best["clean"]
    figures.setdefault("hostile_input", {})["throughput"] = {
        "runs": runs,
        "best_valid_events_per_s": best,
        "valid_events_per_s_ratio": round(ratio, 2),
    }
    # Timings on a shared machine are noisy: only a collapse is a failure.
    assert ratio > 0.5, figures["hostile_input"]["throughput"]
