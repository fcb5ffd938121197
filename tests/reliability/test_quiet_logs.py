"""A broker outage writes a few dozen log lines, not tens of thousands.

The Kafka clients retry in a tight loop and log each attempt: a 40 s outage
wrote about 60,000 ERROR lines. With the repeat limiter an outage of about 20 s writes
one line per (logger, message) every 10 s, and a count of the rest. (The
count of an error that has stopped comes from a timer:
tests/unit/streams/test_log_limits.py.) The worker still reconnects and
decides once the broker is back.

Uses a broker of its own (ops.local_kafka on a fresh data dir), so stopping it
cannot disturb the other tests.
"""

from __future__ import annotations

import re
import time
import uuid

import pytest
from workload import TOKEN

from nudge.ops import local_kafka
from nudge.streams.log_limits import REPEAT_INTERVAL_S
from tests.events import purchase

pytestmark = pytest.mark.reliability

#: Longer than the interval, so the first error repeats past it and reports a
#: count; the broker's restart adds about ten more seconds of refused connections.
OUTAGE_S = REPEAT_INTERVAL_S + 2
#: What the outage may write: about ten distinct client errors, each at most
#: once per interval, with its count. Without the limiter: ~1,700 lines.
MAX_OUTAGE_LINES = 60
REPEATED = re.compile(r"\(repeated ([\d,]+) times? in the last (\d+) s\)")


def test_a_broker_outage_logs_a_few_lines_with_counts(own_broker, workers, figures) -> None:
    bootstrap, kafka_dir = own_broker
    port = int(bootstrap.rsplit(":", 1)[1])
    env = {"NUDGE_API_TOKEN": TOKEN, "NUDGE_LOG_LEVEL": "info"}  # production level
    worker = workers.start(bootstrap=bootstrap, env=env)
    before = worker.log_path.stat().st_size
    stopping = time.monotonic()
    local_kafka.stop(kafka_dir)
    time.sleep(OUTAGE_S)
    local_kafka.start(port=port, data_dir=kafka_dir)
    down_s = time.monotonic() - stopping
    assert worker.process.poll() is None, worker.tail()
    # Recovered: an event published after the outage is decided.
    customer = f"quiet-{uuid.uuid4().hex[:8]}"
    publisher = workers.publisher(worker)
    reader = workers.reader(worker, ("actions",))
    publisher.send("purchases", purchase(customer)).get(30)
    reader.wait_for(lambda got: any(r.key == customer.encode() for r in got), 90)
    assert worker.process.poll() is None, "the worker stopped"
    worker.stop()
    with worker.log_path.open("rb") as log:
        log.seek(before)
        lines = log.read().decode(errors="replace").splitlines()
    entries = [line for line in lines if line.startswith("[")]  # not traceback lines
    connect = [line for line in entries if "Unable connect" in line]
    counts = [int(m.group(1).replace(",", "")) for m in map(REPEATED.search, entries) if m]
    figures["quiet_logs"] = {
        "broker_down_s": round(down_s, 1),
        "log_lines": len(lines),
        "unable_connect_lines": len(connect),
        "suppressed_repeats": sum(counts),
    }
    assert 1 <= len(connect) <= 6, "\n".join(connect)
    assert len(lines) <= MAX_OUTAGE_LINES, "\n".join(lines)
    assert counts and max(counts) >= 10, "no line reports its repeats:\n" + "\n".join(lines)
    assert any(REPEATED.search(line) for line in connect), "\n".join(connect)
