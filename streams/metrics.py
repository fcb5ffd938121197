"""Prometheus metrics: what operators need, with bounded, identifier-free labels.

Labels only ever carry topic kinds, event types, reason codes, channels and
catalog action ids: all from closed sets, never a customer id.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

EVENTS = Counter("nudge_events_consumed", "Input messages consumed.", ["topic", "type"])
INVALID = Counter("nudge_invalid_events", "Input messages sent to deadletter.", ["reason"])
DUPLICATES = Counter("nudge_duplicate_events", "Input events already processed (skipped).")
DECISIONS = Counter("nudge_decisions", "Decisions made.", ["outcome"])
ACTIONS = Counter("nudge_actions", "Actions emitted.", ["channel", "action"])
SUPPRESSIONS = Counter(
    "nudge_suppressions", "Suppressions emitted, once per reason named.", ["reason"]
)
DEADLETTERS = Counter("nudge_deadletters", "Records written to the deadletter topic.")
CONSENT_CHANGES = Counter("nudge_consent_changes", "Consent changes logged.", ["applied"])
ERASURES = Counter("nudge_erasures", "Erasure requests carried out.")

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
