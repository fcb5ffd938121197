"""Prometheus metrics: what operators need, with bounded, identifier-free labels.

Labels only ever carry topic kinds, event types, reason codes, channels,
catalog action ids, experiment and arm names, table names and partition
numbers: all from closed sets, never a customer id.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily

from nudge.streams.faust_fixes.rocksdb_store import active_dbs

if TYPE_CHECKING:
    import faust

EVENTS = Counter("nudge_events_consumed", "Input messages consumed.", ["topic", "type"])
INVALID = Counter("nudge_invalid_events", "Input messages sent to deadletter.", ["reason"])
DUPLICATES = Counter(
    "nudge_duplicate_events",
    "Input events already processed (event id or order id): skipped, nothing sent again.",
)
REISSUED = Counter(
    "nudge_reissued_actions",
    "Repeated triggers whose action this worker had no record of sending to Kafka "
    "(e.g. after a restart): the action issued again, same decision id.",
)
DECISIONS = Counter("nudge_decisions", "Decisions made.", ["outcome"])
# Both outcomes are exported at 0 from the start, so rate() and the
# "actions stopped" alert have a series before the first decision.
DECISIONS.labels("action")
DECISIONS.labels("suppression")
ACTIONS = Counter("nudge_actions", "Actions emitted.", ["channel", "action"])
# Per experiment arm (config/experiments.toml: a bounded set of names), for
# decisions of people in an experiment; `outcome` is action or suppression.
EXPERIMENT_DECISIONS = Counter(
    "nudge_experiment_decisions",
    "Decisions for people in an experiment, per experiment and arm.",
    ["experiment", "arm", "outcome"],
)
SUPPRESSIONS = Counter(
    "nudge_suppressions", "Suppressions emitted, once per reason named.", ["reason"]
)
ORDER_ENFORCED = Counter(
    "nudge_order_enforced",
    "Events decided while a topic of their partition still had unread messages after "
    "NUDGE_MAX_TASK_IDLE_MS (streams/ordering.py).",
)
DEADLETTERS = Counter("nudge_deadletters", "Records written to the deadletter topic.")
UNDECODABLE_BATCHES = Counter(
    "nudge_undecodable_batches",
    "Record batches the Kafka client could not decode (corrupt, unknown codec): "
    "deadlettered as undecodable_batch and skipped (streams/faust_fixes/undecodable.py).",
    ["topic"],
)
CONSENT_CHANGES = Counter("nudge_consent_changes", "Consent changes logged.", ["applied"])
ERASURES = Counter("nudge_erasures", "Erasure requests carried out.")
DROPPED = Counter(
    "nudge_dropped_events",
    "Valid input events not applied: `erased` (stamped before the person's erasure).",
    ["reason"],
)
FORWARDED = Counter(
    "nudge_identity_forwards",
    "Events of a visitor who has logged in, forwarded to the customer's partition.",
)

_MS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)
DECISION_SECONDS = Histogram(
    "nudge_decision_seconds",
    "In-process time from decoded event to outputs (state load, engine, encode).",
    buckets=(0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05),
)
EVENT_TO_EMIT_SECONDS = Histogram(
    "nudge_event_to_emit_seconds",
    "From the trigger's Kafka timestamp to handing the decision to the producer.",
    buckets=_MS,
)
ONSITE_SECONDS = Histogram(
    "nudge_onsite_decision_seconds",
    "In-process time of one on-site decision (POST /api/onsite): state load and engine.",
    buckets=(0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05),
)

CONSUMER_LAG = Gauge(
    "nudge_consumer_lag",
    "Messages not yet committed by the worker group, per input topic kind and partition "
    "(every worker reports the whole group: aggregate with max).",
    ["topic", "partition"],
)


class TableEntries:
    """Keys per table on this worker's active partitions, read at scrape time.

    RocksDB's `estimate-num-keys` is O(1) where counting would scan every key,
    but it is an estimate: overwrites not yet flushed count again, and deletes
    (erasures) may undercount until compaction. Good for trends and capacity,
    not for exact numbers.
    """

    def __init__(self, tables: Mapping[str, faust.Table]) -> None:
        self.tables = tables

    def describe(self) -> list[GaugeMetricFamily]:
        return [self._family()]

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = self._family()
        for name, table in self.tables.items():
            # One RocksDB per partition; standby copies are not counted.
            dbs = active_dbs(table)
            keys = sum(db.property_int_value("rocksdb.estimate-num-keys") or 0 for db in dbs)
            family.add_metric([name], keys)
        yield family

    def _family(self) -> GaugeMetricFamily:
        return GaugeMetricFamily(
            "nudge_table_entries_estimate",
            "Estimated keys per table on this worker's active partitions (RocksDB estimate).",
            labels=["table"],
        )


def register_table_collector(tables: Mapping[str, faust.Table]) -> None:
    REGISTRY.register(TableEntries(tables))


def register_metrics_page(app: faust.App, faust_sensor: bool = False) -> None:
    """Serve the default registry on GET /metrics. With `faust_sensor`, Faust's
    own Prometheus sensor is installed too (it serves the same registry on the
    same page); without it, no sensor runs on every message and table access."""
    if faust_sensor:
        from faust.sensors.prometheus import setup_prometheus_sensors

        setup_prometheus_sensors(app)
        return
    from aiohttp.web import Response  # Faust's web driver; its `bytes()` rejects the charset
    from faust import web

    @app.page("/metrics")
    async def metrics_page(self: web.View, request: web.Request) -> Response:
        return Response(
            body=generate_latest(REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )
