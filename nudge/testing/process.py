"""The real-process harness: run a real worker process, publish events to it
and read what it emits, all against a real broker.

Used by the integration tests, the demo (`make run`) and the benchmarks;
nudge.testing.driver is its in-memory counterpart.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.producer.future import FutureRecordMetadata

from nudge.ops.local_kafka import free_port
from nudge.policy.inmemory import event_key
from nudge.streams.topics import topic_name


@dataclass
class WorkerProcess:
    """A `nudge worker` subprocess with its own data dir, port and log file."""

    bootstrap: str
    prefix: str
    data_dir: Path
    web_port: int = field(default_factory=free_port)
    partitions: int = 4
    extra_env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen | None = None

    @property
    def log_path(self) -> Path:
        return self.data_dir / "worker.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
            "NUDGE_TOPIC_PREFIX": self.prefix,
            "NUDGE_APP_ID": f"{self.prefix}nudge",
            "NUDGE_PARTITIONS": str(self.partitions),
            "NUDGE_DATA_DIR": str(self.data_dir / "tables"),
            "NUDGE_WEB_PORT": str(self.web_port),
            "PYTHONUNBUFFERED": "1",
            **self.extra_env,
        }

    def start(self, ready_timeout: float = 90.0) -> WorkerProcess:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "nudge.cli", "worker"],
            env=self.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.data_dir,
            start_new_session=True,
        )
        self.wait_ready(ready_timeout)
        return self

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"worker exited with {self.process.returncode}:\n{self.tail()}")
            if self.get("/ready")[0] == 200:
                return
            time.sleep(0.2)
        raise TimeoutError(f"worker not ready after {timeout}s:\n{self.tail()}")

    def get(self, path: str, token: str | None = None) -> tuple[int, dict]:
        """GET a worker endpoint; (status, JSON body), status 0 if unreachable."""
        return self.request("GET", path, token=token)

    def request(
        self, method: str, path: str, body: bytes | None = None, token: str | None = None
    ) -> tuple[int, dict]:
        req = urllib.request.Request(self.url + path, data=body, method=method)
        if token is not None:
            req.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(req, timeout=5) as response:
                return response.status, _json_or_text(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, _json_or_text(exc.read())
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return 0, {}

    def stop(self, timeout: float = 30.0) -> None:
        """Graceful stop (SIGTERM), then SIGKILL if it will not go."""
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """kill -9: no goodbye, no commit, no flush."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def interruptible() -> None:
    """A subprocess's `preexec_fn`: Ctrl-C (SIGINT) reaches it as it would from
    a terminal. A shell starts background jobs with SIGINT ignored, children
    inherit that, and a test run launched in the background (`make test &`)
    would otherwise send Ctrl-C to processes that never notice it."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class EventPublisher:
    """Publishes events to nudge's input topics, keyed as the contract says."""

    def __init__(self, bootstrap: str, prefix: str, **security: object) -> None:
        """`security`: kafka-python connection options (Settings.kafka_security())."""
        self.prefix = prefix
        self.producer = KafkaProducer(
            bootstrap_servers=bootstrap, linger_ms=0, acks="all", **security
        )

    def send(
        self, kind: str, event: dict | bytes, key: bytes | None = None
    ) -> FutureRecordMetadata:
        """Queue one event; the returned future gives its offset and timestamp."""
        value = event if isinstance(event, bytes) else json.dumps(event).encode()
        if key is None and isinstance(event, dict):
            key = event_key(event)
        return self.producer.send(topic_name(self.prefix, kind), key=key, value=value)

    def send_all(self, items: Iterable[tuple[str, dict | bytes]]) -> None:
        for kind, event in items:
            self.send(kind, event)
        self.flush()

    def flush(self) -> None:
        self.producer.flush(30)

    def close(self) -> None:
        self.producer.close(10)


@dataclass
class Received:
    kind: str
    key: bytes | None
    value: dict
    timestamp_ms: int


class OutputReader:
    """Reads output topics from the beginning, assigned (no group), so a test
    sees everything the worker wrote regardless of when it subscribed."""

    def __init__(
        self,
        bootstrap: str,
        prefix: str,
        kinds: Iterable[str],
        isolation_level: str = "read_uncommitted",
        **security: object,
    ) -> None:
        self.prefix = prefix
        self.consumer = KafkaConsumer(
            bootstrap_servers=bootstrap,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            consumer_timeout_ms=200,
            isolation_level=isolation_level,  # read_committed: what exactly_once promises
            **security,  # Settings.kafka_security() for a SASL or SSL broker
        )
        self.kind_of = {topic_name(prefix, kind): kind for kind in kinds}
        partitions = []
        for topic in self.kind_of:
            ids = _wait_for_partitions(self.consumer, topic)
            partitions += [TopicPartition(topic, p) for p in ids]
        self.consumer.assign(partitions)
        self.consumer.seek_to_beginning()
        self.received: list[Received] = []

    def poll(self, seconds: float = 0.5) -> list[Received]:
        batch = self.consumer.poll(timeout_ms=int(seconds * 1000))
        fresh = [
            Received(self.kind_of[tp.topic], r.key, json.loads(r.value), r.timestamp)
            for tp, records in batch.items()
            for r in records
        ]
        self.received += fresh
        return fresh

    def wait_for(self, predicate, timeout: float = 30.0) -> list[Received]:
        """Poll until predicate(all received so far) is true; return matches."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.poll(0.3)
            if predicate(self.received):
                return self.received
        raise TimeoutError(
            f"condition not met within {timeout}s; received {len(self.received)}: "
            + ", ".join(f"{r.kind}:{r.value.get('trigger_event_id') or ''}" for r in self.received)
        )

    def by_trigger(self, event_id: str) -> list[Received]:
        return [r for r in self.received if r.value.get("trigger_event_id") == event_id]

    def close(self) -> None:
        self.consumer.close()


def _wait_for_partitions(consumer: KafkaConsumer, topic: str, timeout: float = 30.0) -> set[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ids = consumer.partitions_for_topic(topic)
        if ids:
            return ids
        time.sleep(0.2)
    raise TimeoutError(f"topic {topic} has no partitions after {timeout}s")


def _json_or_text(raw: bytes) -> dict:
    try:
        return json.loads(raw)
    except ValueError:
        return {"text": raw.decode(errors="replace")}
