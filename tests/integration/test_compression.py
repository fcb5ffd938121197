"""Every codec Kafka defines, from a real producer to a real worker and back
out through the tools that read topics (issue #12: one lz4 batch used to crash
the worker on every restart)."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kafka.admin import KafkaAdminClient, NewTopic

from nudge.streams.topics import topic_name
from nudge.testing import OutputReader, WorkerProcess
from tests.events import purchase
from tests.integration.batches import CODEC_IDS, produce, stored_batches
from tests.workers import Workers

pytestmark = pytest.mark.integration

CODECS = tuple(CODEC_IDS)  # none, gzip, snappy, lz4, zstd
OUTPUTS = ("actions", "suppressions")

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def worker(module_workers: Workers) -> WorkerProcess:
    return module_workers.start(no_traceback=True)


def test_an_event_in_every_codec_is_decided(worker: WorkerProcess, outputs: OutputReader) -> None:
    customer = f"zoe-{uuid.uuid4().hex[:6]}"
    topic = topic_name(worker.prefix, "purchases")
    sent = {}
    for codec in CODECS:
        event = purchase(customer, codec)
        sent[codec] = (event["event_id"], *produce(worker.bootstrap, topic, event, codec))
    # The broker keeps what the producer sent: each batch really is in its codec.
    [partition] = {partition for _, partition, _ in sent.values()}  # one customer, one partition
    stored = {b.base_offset: b.codec for b in stored_batches(worker.bootstrap, topic, partition)}
    assert {codec: stored[offset] for codec, (_, _, offset) in sent.items()} == {
        c: c for c in CODECS
    }

    triggers = {event_id for event_id, _, _ in sent.values()}
    got = outputs.wait_for(
        lambda got: triggers <= {r.value.get("trigger_event_id") for r in got}, timeout=60
    )
    decided = {r.value["trigger_event_id"]: r.value["action_id"] for r in got}
    assert all(decided[event_id] == "order_confirmation" for event_id in triggers)
    assert "Traceback" not in worker.tail(400)


@pytest.fixture
def topics(kafka_bootstrap: str, unique_prefix: str) -> Iterator[str]:
    """An output and an input topic of a fresh prefix, no worker needed."""
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    names = [topic_name(unique_prefix, kind) for kind in ("actions", "clickstream")]
    try:
        admin.create_topics([NewTopic(name, 1, 1) for name in names])
        yield unique_prefix
    finally:
        admin.close()


def test_output_reader_and_nudge_tail_decode_every_codec(kafka_bootstrap: str, topics: str) -> None:
    prefix = topics
    for codec in CODECS:
        record = {"decision_id": f"d-{codec}", "action_id": "a", "channel": "email"}
        produce(kafka_bootstrap, topic_name(prefix, "actions"), record, codec, key=b"c")
        view = {"event_id": f"v-{codec}", "type": "page_view", "customer_id": "c"}
        produce(kafka_bootstrap, topic_name(prefix, "clickstream"), view, codec)

    reader = OutputReader(kafka_bootstrap, prefix, ("actions", "clickstream"))
    try:
        got = reader.wait_for(lambda got: len(got) >= 2 * len(CODECS))
    finally:
        reader.close()
    assert {r.value.get("decision_id") for r in got if r.kind == "actions"} == {
        f"d-{c}" for c in CODECS
    }
    assert {r.value["event_id"] for r in got if r.kind == "clickstream"} == {
        f"v-{c}" for c in CODECS
    }

    tail = subprocess.run(
        [sys.executable, "-m", "nudge.cli", "tail", "actions", "clickstream",
         "--from-beginning", "--limit", str(2 * len(CODECS)), "--json",
         "--bootstrap", kafka_bootstrap, "--prefix", prefix],
        capture_output=True, text=True, cwd=ROOT, timeout=60,
    )  # fmt: skip
    assert tail.returncode == 0, tail.stderr
    shown = [json.loads(line) for line in tail.stdout.splitlines()]
    assert {r.get("decision_id") or r.get("event_id") for r in shown} == {
        f"{p}-{c}" for p in ("d", "v") for c in CODECS
    }
