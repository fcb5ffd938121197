"""The Faust app: topics, the one RocksDB table, and the one agent.

One agent reads every input topic, so a customer's events are processed
strictly one after another whatever topic they come from, in the time order
of their records (streams/ordering.py), and the read -> decide -> write of
their state never interleaves with another event. Events are decided in
batches of whatever is ready: each customer's record is read once and
written once per batch (streams/batch.py), and the batch's outputs are
handed to Kafka together (streams/delivery.py).
"""

from __future__ import annotations

import logging
import ssl
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

import faust

from nudge.policy.engine import Engine, Produced
from nudge.policy.processor import Processor, Result
from nudge.policy.stored import STATE_TABLE
from nudge.schemas.outputs import Action
from nudge.streams import faust_fixes, holds, metrics, ordering
from nudge.streams.batch import BatchState
from nudge.streams.crash_journal import CrashJournal
from nudge.streams.delivery import Outbox
from nudge.streams.faust_fixes import current_event
from nudge.streams.holds import HoldTimer
from nudge.streams.produced import ProducedActions
from nudge.streams.settings import Settings
from nudge.streams.topics import INPUT_KINDS, INTERNAL_KINDS, OUTPUT_KINDS, topic_name

log = logging.getLogger("nudge.worker")

#: Changelog messages waiting in Faust's producer buffer before the consumer
#: pauses. Faust's 100 is three or four events' worth of table writes, so the
#: worker stalled every few events (docs/performance.md); this bounds memory
#: (about 1 KB a message) without stalling.
PRODUCER_BUFFER_MESSAGES = 10_000
#: Acks between inline commits: so many that the commit timer always comes first.
COMMIT_EVERY_DISABLED = 1_000_000_000


@dataclass
class NudgeApp:
    """The Faust app plus the handles the agent and the views need."""

    app: faust.App
    settings: Settings
    processor: Processor
    tables: dict[str, faust.Table]
    outputs: dict[str, faust.TopicT]
    outbox: Outbox
    journal: CrashJournal | None = None  # at_least_once: see streams/crash_journal.py
    produced: ProducedActions = field(default_factory=ProducedActions)
    holds: HoldTimer | None = None  # releases held actions when due (streams/holds.py)
    kind_of: dict[str, str] = field(default_factory=dict)  # topic name -> kind


@dataclass(slots=True)
class Decided:
    """One event of a batch and what deciding it gave."""

    event: faust.EventT
    kind: str
    result: Result


def faust_credentials(settings: Settings) -> faust.auth.Credentials | None:
    protocol = settings.security_protocol
    if protocol == "PLAINTEXT":
        return None
    context = None
    if protocol.endswith("SSL"):
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=settings.ssl_cafile)
    if protocol == "SSL":
        return faust.SSLCredentials(context)
    return faust.SASLCredentials(
        username=settings.sasl_username,
        password=settings.sasl_password,
        mechanism=settings.sasl_mechanism,
        ssl_context=context,
    )


def create_app(settings: Settings, engine: Engine) -> NudgeApp:
    brokers = ";".join(f"kafka://{server}" for server in settings.bootstrap_servers.split(","))
    app = faust.App(
        settings.app_id,
        broker=brokers,
        broker_credentials=faust_credentials(settings),
        store="rocksdb://",
        datadir=str(settings.data_dir),
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        table_standby_replicas=settings.standby_replicas,
        # Faust's 60 s default would stall a crashed worker's partitions for a minute.
        broker_session_timeout=settings.session_timeout,
        processing_guarantee=settings.processing_guarantee,
        consumer_auto_offset_reset="earliest",
        web_bind=settings.web_host,
        web_port=settings.web_port,
        # Advertised in the assignment: where other workers forward API requests.
        canonical_url=settings.canonical_url(),
        web_tables_enabled=False,  # would expose raw customer state without auth
        web_router_enabled=False,
        producer_linger=settings.producer_linger_ms / 1000,
        # Commit on the 2.8 s timer only: Faust's inline commit every 10,000 acks
        # runs inside the fetch loop and holds every message back while it
        # flushes the producer buffer (seconds under load; docs/performance.md).
        broker_commit_every=COMMIT_EVERY_DISABLED,
    )
    # Faust's own sensor costs a counter update on every table get/set and
    # message; NUDGE_FAUST_METRICS=false leaves it out (docs/performance.md).
    metrics.register_metrics_page(app, faust_sensor=settings.faust_metrics)
    app.producer.buffer.max_messages = PRODUCER_BUFFER_MESSAGES
    rocksdb_options = {
        "driver": "rocksdict",
        "block_cache_size": settings.block_cache_mb * 1024 * 1024,
        "write_buffer_size": 4 * 1024 * 1024,
        "max_write_buffer_number": 2,
    }
    tables = {
        STATE_TABLE: app.Table(
            STATE_TABLE,  # one record per customer (policy/stored.py)
            default=None,
            key_type=bytes,
            value_type=bytes,
            partitions=settings.partitions,
            options=rocksdb_options,
        )
    }
    kind_of = {topic_name(settings.topic_prefix, k): k for k in (*INPUT_KINDS, *INTERNAL_KINDS)}
    # Raw bytes both ways: decoding is ours (schemas.codec), so a malformed
    # message reaches the agent and the deadletter topic instead of being
    # dropped inside Faust's deserializer.
    raw = {"key_serializer": "raw", "value_serializer": "raw"}
    sources = app.topic(*kind_of, **raw)
    outputs = {
        kind: app.topic(topic_name(settings.topic_prefix, kind), **raw)
        # `privacy`: an erasure also erases the ids linked to the person.
        for kind in (*OUTPUT_KINDS, *INTERNAL_KINDS, "privacy")
    }
    erasure_key = settings.erasure_key.encode() if settings.erasure_key else None
    if erasure_key is None:
        log.warning("NUDGE_ERASURE_KEY is unset: erasure markers use unkeyed hashes")
    processor = Processor(engine, event_clock=settings.clock == "event", erasure_key=erasure_key)
    exactly_once = settings.processing_guarantee == "exactly_once"
    outbox = Outbox(app, outputs, exactly_once)
    nudge = NudgeApp(app, settings, processor, tables, outputs, outbox, kind_of=kind_of)
    faust_fixes.install(nudge)  # every Faust/aiokafka workaround, for the tested versions only
    nudge.holds = holds.install(nudge)  # held actions: released by the agent when due

    order = ordering.for_topics(app, kind_of, INPUT_KINDS, settings.max_task_idle_ms / 1000)

    @app.agent(sources, concurrency=1)
    async def decide(stream: faust.StreamT) -> None:
        batches = ordering.batches_in_time_order(app, stream, order, settings.batch_max_events)
        budget = settings.batch_max_ms / 1000
        async for batch in batches:  # acked when done
            while batch:  # in slices of at most `budget` seconds of deciding
                async with outbox.batch() as handed_over:  # one transaction (exactly_once)
                    decided, state, batch = decide_batch(nudge, batch, budget)
                    await deliver(nudge, decided, state)
                    handed_over.extend(item.event for item in decided)
                for item in decided:
                    record_metrics(item.kind, item.result)

    return nudge


def decide_batch(
    nudge: NudgeApp, batch: list[faust.EventT], budget: float
) -> tuple[list[Decided], BatchState, list[faust.EventT]]:
    """Decide a batch's events in order, each on the state the ones before it
    left (BatchState), until `budget` seconds have gone on it: a large
    backlog's outputs go out in slices instead of all at its end. Nothing is
    written or sent yet. Returns the events left for the next slice."""
    state = BatchState(nudge.tables[STATE_TABLE])
    sent_before = produced_record(nudge)
    in_batch: set[str] = set()  # actions this batch sends: a later copy is no re-issue

    def produced(decision_id: str) -> bool:
        return decision_id in in_batch or sent_before(decision_id)

    decided = []
    started = time.perf_counter()
    for n, event in enumerate(batch):
        if n and time.perf_counter() - started > budget:
            return decided, state, batch[n:]
        message = event.message
        current_event.make_current(event)  # its partition's store
        kind = nudge.kind_of.get(message.topic, message.topic)
        source = (message.topic, message.partition, message.offset)
        # The processing clock; with NUDGE_CLOCK=event the processor decides
        # as of each event's own time instead (Processor.event_clock).
        now = datetime.now(UTC)
        try:
            result = nudge.processor.process(
                kind, message.key, message.value, source, state.load, now, produced
            )
        except Exception as exc:  # never stall a partition on one message
            log.exception("unexpected error processing a %s message", kind)
            result = Processor.deadletter(
                message.key, message.value, source, "internal_error",
                f"{type(exc).__name__}: {exc}"[:300], now,
            )  # fmt: skip
        else:
            state.apply(result, event)
        if result.outcome is not None:
            for decision in (*result.outcome.released, result.outcome.decision):
                if isinstance(decision, Action):
                    in_batch.add(decision.decision_id)
        if nudge.holds is not None:
            nudge.holds.observe(message.partition, result)
        decided.append(Decided(event, kind, result))
    return decided, state, []


def produced_record(nudge: NudgeApp) -> Produced:
    """Which actions reached Kafka (policy.engine.Produced). With exactly_once a
    duplicate's state was committed in the transaction that carried its
    action: that action reached Kafka, and is never re-issued."""
    return _committed if nudge.outbox.exactly_once else nudge.produced


def _committed(decision_id: str) -> bool:
    return True


async def deliver(nudge: NudgeApp, decided: list[Decided], state: BatchState) -> None:
    """A batch's outputs to Kafka and its state to the table, in the Outbox's
    order; a failed send of an action forgets it was sent, so a copy of its
    trigger re-issues it."""
    journal = nudge.journal

    def write_state() -> None:
        state.flush(journal, nudge.tables)

    emits = [(emit, item.event.message.tp) for item in decided for emit in item.result.emits]
    sends = await nudge.outbox.deliver(emits, write_state)
    if not nudge.outbox.exactly_once:
        nudge.produced.record([emit for emit, _ in emits], sends)
    now = time.time()
    for item in decided:
        result = item.result
        decided_one = result.outcome is not None and result.outcome.decision is not None
        timestamp = item.event.message.timestamp
        if decided_one and not result.duplicate and timestamp:
            metrics.EVENT_TO_EMIT_SECONDS.observe(max(0.0, now - timestamp))


def record_metrics(kind: str, result: Result) -> None:
    metrics.EVENTS.labels(kind, result.event_type or "invalid").inc()
    if result.invalid_reason is not None:
        metrics.INVALID.labels(result.invalid_reason).inc()
        metrics.DEADLETTERS.inc()
        log.warning("deadletter: %s message rejected (%s)", kind, result.invalid_reason)
        return
    if result.dropped is not None:
        metrics.DROPPED.labels(result.dropped).inc()
        return
    if result.forwarded:
        metrics.FORWARDED.inc()
        return
    if result.duplicate:
        copy = result.outcome.decision if result.outcome is not None else None
        if copy is None:
            metrics.DUPLICATES.inc()
        elif isinstance(copy, Action):
            metrics.REISSUED.inc()
        else:  # a re-issue consent no longer allows: withheld, as a suppression
            for reason in copy.reasons:
                metrics.SUPPRESSIONS.labels(reason).inc()
        return
    outcome = result.outcome
    if outcome is None:  # an identity merge: state moved, nothing was decided
        return
    metrics.DECISION_SECONDS.observe(result.decide_seconds)
    if outcome.held is not None:  # counted as what it becomes when released
        log.debug("decision %s held", outcome.held.decision_id)
    # One DEBUG line per decision: ids and reason codes only, never personal data.
    for decision in (*outcome.released, outcome.decision):
        if decision is not None and decision.experiment is not None:
            outcome_label = "action" if isinstance(decision, Action) else "suppression"
            ref = decision.experiment
            metrics.EXPERIMENT_DECISIONS.labels(ref.name, ref.arm, outcome_label).inc()
        if isinstance(decision, Action):
            metrics.DECISIONS.labels("action").inc()
            metrics.ACTIONS.labels(decision.channel, decision.action_id).inc()
            log.debug(
                "decision %s on %s: action %s via %s reasons=%s",
                decision.decision_id,
                decision.trigger_type,
                decision.action_id,
                decision.channel,
                decision.reasons,
            )
        elif decision is not None:
            metrics.DECISIONS.labels("suppression").inc()
            for reason in decision.reasons:
                metrics.SUPPRESSIONS.labels(reason).inc()
            log.debug(
                "decision %s on %s: suppression reasons=%s",
                decision.decision_id,
                decision.trigger_type,
                decision.reasons,
            )
    for record in outcome.records:
        if hasattr(record, "applied"):
            metrics.CONSENT_CHANGES.labels(str(record.applied).lower()).inc()
    if outcome.erase:
        metrics.ERASURES.inc()
