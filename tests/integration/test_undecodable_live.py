"""A record batch the client cannot decode, on a real broker, read by a real
worker: deadlettered with its offsets and skipped, counted, logged, and
never a crash, before or after a restart (streams/undecodable.py).

The batches are damaged in the broker's segment files (tests/integration/
batches.py): a compressed batch whose payload is garbage under a valid CRC,
and a plain batch whose CRC no longer matches.
"""

from __future__ import annotations

import base64
import uuid
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from nudge.streams.topics import topic_name
from nudge.testing import Received, WorkerProcess
from tests.events import purchase
from tests.integration.batches import batch_at, damage, produce
from tests.workers import Workers

pytestmark = pytest.mark.integration


def metric(worker: WorkerProcess, name: str, **labels: str) -> float:
    status, body = worker.get("/metrics")
    assert status == 200, body
    return sum(
        sample.value
        for family in text_string_to_metric_families(body["text"])
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    )


def undecodable(got: list[Received]) -> list[Received]:
    return [r for r in got if r.kind == "deadletter" and r.value["reason"] == "undecodable_batch"]


def decided(got: list[Received]) -> set[str]:
    return {r.value["trigger_event_id"] for r in got if r.kind in ("actions", "suppressions")}


@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
def test_undecodable_batches_are_deadlettered_and_skipped_across_restarts(
    kafka_bootstrap: str, workers: Workers, guarantee: str
) -> None:
    worker = workers.new(env={"NUDGE_PROCESSING_GUARANTEE": guarantee})
    worker.start().stop()  # creates the topics; stopped, it cannot read a batch before the damage
    topic = topic_name(worker.prefix, "purchases")
    customer = f"uma-{uuid.uuid4().hex[:6]}"
    events = {name: purchase(customer, name) for name in ("lz4", "ok-1", "crc", "ok-2", "ok-3")}
    partition, lz4_offset = produce(kafka_bootstrap, topic, events["lz4"], "lz4")
    produce(kafka_bootstrap, topic, events["ok-1"])
    _, crc_offset = produce(kafka_bootstrap, topic, events["crc"])
    produce(kafka_bootstrap, topic, events["ok-2"], "gzip")
    garbage_lz4 = damage(
        batch_at(kafka_bootstrap, topic, partition, lz4_offset), keep_crc_valid=True
    )
    bad_crc = damage(batch_at(kafka_bootstrap, topic, partition, crc_offset), keep_crc_valid=False)

    isolation = "read_committed" if guarantee == "exactly_once" else "read_uncommitted"
    reader = workers.reader(worker, ("actions", "suppressions", "deadletter"), isolation)
    worker.start()
    good = {events["ok-1"]["event_id"], events["ok-2"]["event_id"]}
    got = reader.wait_for(lambda got: len(undecodable(got)) >= 2 and good <= decided(got), 60)
    assert worker.process is not None and worker.process.poll() is None
    dead = {r.value["offset"]: r.value for r in undecodable(got)}
    assert set(dead) == {lz4_offset, crc_offset}
    for offset, raw, error in (
        (lz4_offset, garbage_lz4, "DecompressionError"),
        (crc_offset, bad_crc, "CorruptRecordException"),
    ):
        record = dead[offset]
        assert (record["source_topic"], record["partition"]) == (topic, partition)
        assert base64.b64decode(record["value"]) == raw  # the batch as the broker has it
        assert error in record["error"]
        assert f"offsets {offset}-{offset} skipped" in record["error"]
    assert not decided(got) & {events["lz4"]["event_id"], events["crc"]["event_id"]}
    assert metric(worker, "nudge_undecodable_batches_total", topic="purchases") == 2
    assert metric(worker, "nudge_invalid_events_total", reason="undecodable_batch") == 2
    log = worker.tail(2000)
    assert log.count("fetching it again") == 2  # each fetched once more before the skip
    assert log.count("undecodable record batch at") == 2
    assert customer not in log
    assert "Drain messages raised" not in log and "Traceback" not in log

    worker.stop()  # a restart reads on from its commits: the worker stays up
    worker.start()
    produce(kafka_bootstrap, topic, events["ok-3"])
    got = reader.wait_for(lambda got: events["ok-3"]["event_id"] in decided(got), 60)
    assert worker.process.poll() is None
    # The commits went past the skipped batches: not read, nor deadlettered, again.
    assert len(undecodable(got)) == 2
    assert metric(worker, "nudge_undecodable_batches_total", topic="purchases") == 0
    assert worker.tail(2000).count("fetching it again") == 2


def test_a_worker_without_codec_libraries_refuses_to_start(
    workers: Workers, tmp_path: Path
) -> None:
    """It would have to skip valid compressed events: a failed deploy instead, saying why."""
    stub = tmp_path / "no-codecs" / "cramjam"
    stub.mkdir(parents=True)
    (stub / "__init__.py").write_text('raise ImportError("cramjam left out for this test")\n')
    worker = workers.new(policy=None, env={"PYTHONPATH": str(stub.parent)})
    with pytest.raises(RuntimeError, match="worker exited") as failed:
        worker.start(ready_timeout=60)
    assert "cannot decode snappy, lz4, zstd-compressed records" in str(failed.value)
