"""Faust's confluent:// driver (faust-streaming 0.15.3) on a real broker: why
nudge stays on aiokafka (docs/performance.md, "Transport: aiokafka or confluent").

The same one-agent Faust app runs twice, once per driver. On aiokafka it gets
its partition and the agent sees a message; on confluent it never gets an
assignment: librdkafka hands one out only inside a poll, and the driver polls
only from Faust's fetcher, which asks for records only once partitions are
assigned. If a Faust upgrade fixes that, the first test fails and the
decision should be made again.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from kafka import KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic

from nudge.ops.local_kafka import free_port

pytestmark = pytest.mark.integration

#: A Faust app with one agent that prints what it reads; no table, so nothing
#: but the driver stands between a message and the agent.
APP = """
import os
import faust

app = faust.App(
    os.environ["PROBE_APP_ID"],
    broker=os.environ["PROBE_BROKER"],
    store="memory://",
    web_port=int(os.environ["PROBE_WEB_PORT"]),
    topic_partitions=1,
)
source = app.topic(os.environ["PROBE_TOPIC"], value_serializer="raw")


@app.agent(source)
async def echo(stream):
    async for value in stream:
        print("GOT " + value.decode(), flush=True)


app.main()
"""
#: Faust logs this (faust/app/base.py, _on_partitions_assigned) when it gets partitions.
ASSIGNED = "Executing _on_partitions_assigned"


def start_app(script: Path, scheme: str, bootstrap: str, name: str, topic: str) -> subprocess.Popen:
    env = {
        **os.environ,
        "PROBE_APP_ID": name,
        "PROBE_BROKER": f"{scheme}://{bootstrap}",
        "PROBE_TOPIC": topic,
        "PROBE_WEB_PORT": str(free_port()),
        "PYTHONUNBUFFERED": "1",
    }
    log = (script.parent / f"{scheme}.log").open("wb")
    return subprocess.Popen(
        [sys.executable, str(script), "worker", "-l", "info"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=script.parent,
        start_new_session=True,
    )


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)


def test_confluent_worker_never_gets_an_assignment(
    kafka_bootstrap: str, unique_prefix: str, tmp_path: Path
) -> None:
    script = tmp_path / "echo_app.py"
    script.write_text(APP)
    apps = {scheme: f"{unique_prefix}{scheme}" for scheme in ("kafka", "confluent")}
    topics = {scheme: f"{name}-in" for scheme, name in apps.items()}
    # The confluent driver's create_topic is a stub (`return  # XXX`) and the test
    # broker does not auto-create: both apps get their topics made for them.
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        admin.create_topics(
            [NewTopic(topic, 1, 1) for topic in topics.values()]
            + [NewTopic(f"{name}-__assignor-__leader", 1, 1) for name in apps.values()]
        )
    finally:
        admin.close()
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    for topic in topics.values():
        producer.send(topic, b"hello")
    producer.flush(30)
    producer.close(10)

    processes = {
        scheme: start_app(script, scheme, kafka_bootstrap, apps[scheme], topics[scheme])
        for scheme in apps
    }
    logs = {scheme: tmp_path / f"{scheme}.log" for scheme in apps}
    try:
        deadline = time.monotonic() + 90
        while "GOT hello" not in logs["kafka"].read_text(errors="replace"):
            assert processes["kafka"].poll() is None, logs["kafka"].read_text()[-3000:]
            assert time.monotonic() < deadline, logs["kafka"].read_text()[-3000:]
            time.sleep(0.5)
        # The aiokafka twin is through; give the confluent one as long again and more.
        time.sleep(20)
        confluent = logs["confluent"].read_text(errors="replace")
        assert processes["confluent"].poll() is None, confluent[-3000:]
        assert "Waiting for tables to be registered" in confluent  # it did start
        assert ASSIGNED not in confluent
        assert "GOT hello" not in confluent
    finally:
        for process in processes.values():
            stop(process)


def test_confluent_producer_has_no_transactional_api() -> None:
    """exactly_once needs the producer's transactions (faust/transport/consumer.py,
    TransactionManager); the confluent driver's Producer inherits the base class's
    NotImplementedError stubs for every one of them."""
    from faust.transport import producer as base
    from faust.transport.drivers import confluent

    for name in (
        "begin_transaction",
        "commit_transaction",
        "abort_transaction",
        "stop_transaction",
        "maybe_begin_transaction",
        "commit_transactions",
    ):
        assert getattr(confluent.Producer, name) is getattr(base.Producer, name), name
