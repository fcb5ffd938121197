"""Consumer lag per input partition, measured from outside the event loop.

Faust's Prometheus sensor has no lag metric, and a stalled consumer
(faust-streaming #629/#175) cannot be trusted to report on itself. So a
thread with its own admin client asks the broker, every few seconds, how far
the group's committed offsets are behind the end of each partition the agent
reads. Every worker reports the whole group (not only its own partitions), so
the lag of a dead worker's partitions stays visible: aggregate with `max`.
"""

from __future__ import annotations

import atexit
import logging
import threading

from kafka import KafkaAdminClient, TopicPartition
from kafka.admin import OffsetSpec
from kafka.protocol.consumer import IsolationLevel

from nudge.streams import metrics
from nudge.streams.settings import Settings
from nudge.streams.topics import INPUT_KINDS, INTERNAL_KINDS, topic_name

log = logging.getLogger("nudge.lag")

INTERVAL_S = 5.0
#: Bounds each broker call, so the thread stops (and reports failure) promptly.
TIMEOUT_MS = 5000


class LagMonitor:
    """Polls the broker in a daemon thread and sets `nudge_consumer_lag`."""

    def __init__(self, settings: Settings, interval_s: float = INTERVAL_S) -> None:
        self.settings = settings
        self.interval_s = interval_s
        self.group = settings.app_id  # Faust's consumer group id (app version 1)
        self.kind_of = {
            topic_name(settings.topic_prefix, kind): kind
            for kind in (*INPUT_KINDS, *INTERNAL_KINDS)
        }
        self.partitions = [
            TopicPartition(topic, p) for topic in self.kind_of for p in range(settings.partitions)
        ]
        # A read_committed consumer cannot see past the last stable offset.
        self.isolation = (
            IsolationLevel.READ_COMMITTED
            if settings.processing_guarantee == "exactly_once"
            else IsolationLevel.READ_UNCOMMITTED
        )
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="nudge-lag", daemon=True)

    def start(self) -> LagMonitor:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(TIMEOUT_MS / 1000 + 1)

    def measure(self, admin: KafkaAdminClient) -> dict[TopicPartition, int]:
        """End offset minus committed offset; a partition the group never
        committed counts from its earliest offset (auto_offset_reset)."""
        committed = admin.list_group_offsets({self.group: self.partitions})[self.group]
        ends = admin.list_partition_offsets(
            dict.fromkeys(self.partitions, OffsetSpec.LATEST), isolation_level=self.isolation
        )
        positions = {tp: meta.offset for tp, meta in committed.items() if meta.offset >= 0}
        uncommitted = [tp for tp in self.partitions if tp not in positions]
        if uncommitted:
            earliest = admin.list_partition_offsets(dict.fromkeys(uncommitted, OffsetSpec.EARLIEST))
            positions.update({tp: earliest[tp].offset for tp in uncommitted})
        return {tp: max(0, ends[tp].offset - positions[tp]) for tp in self.partitions}

    def _run(self) -> None:
        admin: KafkaAdminClient | None = None
        failing = False
        while not self._stopping.is_set():
            try:
                if admin is None:
                    admin = KafkaAdminClient(
                        bootstrap_servers=self.settings.bootstrap_servers,
                        client_id=f"{self.settings.app_id}-lag",
                        bootstrap_timeout_ms=TIMEOUT_MS,
                        request_timeout_ms=TIMEOUT_MS,
                        **self.settings.kafka_security(),
                    )
                for tp, lag in self.measure(admin).items():
                    metrics.CONSUMER_LAG.labels(self.kind_of[tp.topic], str(tp.partition)).set(lag)
                failing = False
            except Exception as exc:  # the broker may be away: report nothing rather than stale
                metrics.CONSUMER_LAG.clear()
                if not failing:
                    log.warning("consumer lag unknown: %r", exc)
                failing = True
            self._stopping.wait(self.interval_s)
        if admin is not None:
            admin.close()


def start_lag_monitor(settings: Settings) -> LagMonitor:
    """Start measuring; stops at interpreter exit (the worker's own shutdown)."""
    monitor = LagMonitor(settings).start()
    atexit.register(monitor.stop)
    return monitor
