"""Stop and restart Kafka under traffic: the worker reconnects by itself and
everything produced is processed, nothing lost.

Uses a broker of its own (ops.local_kafka on a fresh data dir), so stopping
it cannot disturb the other tests; the restart keeps its data and ports.
"""

from __future__ import annotations

import time

import pytest
from workload import (
    OUTPUTS,
    TOKEN,
    Traffic,
    build,
    judge,
    publish_grants,
    wait_consumed,
    wait_recorded,
)

from nudge.ops import local_kafka

pytestmark = pytest.mark.reliability

CUSTOMERS = 150
RATE = 300.0
OUTAGE_AFTER = 2.0  # seconds into the stream
OUTAGE = 5.0  # seconds the broker stays down


def test_broker_restart_under_traffic_loses_nothing(own_broker, workers, figures) -> None:
    bootstrap, kafka_dir = own_broker
    port = int(bootstrap.rsplit(":", 1)[1])
    worker = workers.start(bootstrap=bootstrap, env={"NUDGE_API_TOKEN": TOKEN})
    work = build(worker.prefix.replace(".", "-"), CUSTOMERS)
    reader = workers.reader(worker, OUTPUTS)
    publisher = workers.publisher(worker)
    publish_grants(publisher, reader, work)
    traffic = Traffic(publisher, work.stream, RATE)
    traffic.start()
    time.sleep(OUTAGE_AFTER)
    stopping = time.monotonic()
    local_kafka.stop(kafka_dir)
    stopped_s = time.monotonic() - stopping
    time.sleep(OUTAGE)
    local_kafka.start(port=port, data_dir=kafka_dir)
    back = time.monotonic()
    assert worker.process.poll() is None, worker.tail()
    traffic.join()
    wait_recorded(reader, work.must_record, timeout=180)
    caught_up_s = time.monotonic() - back
    wait_consumed(bootstrap, worker.prefix, timeout=60)
    consumed_s = time.monotonic() - back
    assert worker.process.poll() is None, "the worker stopped"
    worker.stop()
    verdict = judge(work, reader, worker)
    figures["broker_restart"] = {
        "events": work.events,
        "broker_stop_s": round(stopped_s, 2),
        "broker_down_s": round(OUTAGE + stopped_s, 2),
        "caught_up_after_broker_back_s": round(caught_up_s, 2),
        "all_input_committed_after_broker_back_s": round(consumed_s, 2),
        **verdict.figures(),
    }
    assert not any(verdict.findings.values()), verdict.findings
    assert "Traceback" not in worker.log_path.read_text(errors="replace")
