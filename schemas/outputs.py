"""Output records: what nudge publishes for channels, auditors and operators."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from schemas.events import (
    SCHEMA_VERSION,
    Channel,
    ConsentChannel,
    ConsentStatus,
    Purpose,
)

MessageClass = Literal["marketing", "transactional"]
ExperimentArm = Literal["treatment", "holdout"]

#: Why a candidate action (or one of its channels) was ruled out.
ReasonCode = Literal[
    "consent",  # no marketing consent on the channel, or a global opt-out
    "channel_blocked",  # hard block after a bounce or a complaint
    "relationship_level",  # we do not know the person well enough yet
    "not_interested",  # outside the person's stated interests
    "holdout",  # the person is in the global control group
    "purchase_cooldown",  # the category was bought recently
    "action_cooldown",  # the same action was sent recently
    "action_cap",  # the action's own weekly cap is reached
    "channel_cap",  # the channel's hourly/daily/weekly cap is reached
    "global_cap",  # the cross-channel cap is reached
    "fatigue",  # back-off after ignored messages or a complaint
    "quiet_hours",  # inside quiet hours and cannot wait until they end
    "snooze",  # the person snoozed all marketing
    "expired",  # the trigger is too old to act on
    "no_channel",  # the action offers no channel the person is reachable on
]

Reason = Annotated[ReasonCode, Meta(description="A reason code.")]


class DecisionHeader(msgspec.Struct, kw_only=True, frozen=True):
    """Fields shared by actions and suppressions."""

    decision_id: Annotated[
        str,
        Meta(description="Deterministic from trigger event id + action: dedupe key."),
    ]
    customer_id: str
    trigger_event_id: str
    trigger_type: str
    trigger_ts: datetime
    decided_at: datetime
    model_version: str
    experiment_arm: ExperimentArm
    schema_version: int = SCHEMA_VERSION


class Action(DecisionHeader, frozen=True, tag="action", tag_field="kind"):
    """One nudge to deliver on one channel, not before `send_after` and not
    after `expires_at`."""

    action_id: str
    channel: Channel
    message_class: MessageClass
    category: str | None
    score: Annotated[float, Meta(description="propensity x value x lever.")]
    propensity: Annotated[float, Meta(description="Model's chance of a response.")]
    selection_probability: Annotated[
        float,
        Meta(description="Chance the policy picks this action (for offline evaluation)."),
    ]
    explored: bool
    reasons: Annotated[list[str], Meta(description="Why this action and channel won.")]
    send_after: datetime | None
    expires_at: datetime


class CandidateVerdict(msgspec.Struct, kw_only=True, frozen=True):
    """One candidate action and every reason it was ruled out."""

    action_id: str
    reasons: list[Reason]
    channel_reasons: Annotated[
        dict[str, list[Reason]],
        Meta(description="Per channel, why that channel could not be used."),
    ] = {}


class WouldBeAction(msgspec.Struct, kw_only=True, frozen=True):
    """What a holdout customer would have received (for measuring uplift)."""

    action_id: str
    channel: Channel
    score: float


class Suppression(DecisionHeader, frozen=True, tag="suppression", tag_field="kind"):
    """An explicit decision not to contact anyone now, with every reason."""

    reasons: Annotated[list[Reason], Meta(description="Union of candidate reasons.")]
    candidates: list[CandidateVerdict]
    would_be: WouldBeAction | None = None


Decision = Action | Suppression


class DeadLetter(msgspec.Struct, kw_only=True, frozen=True):
    """An input message nudge could not use, kept whole so nothing is lost."""

    source_topic: str
    partition: int
    offset: int
    key: bytes | None
    value: Annotated[bytes | None, Meta(description="Original bytes, base64 in JSON.")]
    reason: Annotated[str, Meta(description="Machine-readable error class.")]
    error: Annotated[str, Meta(description="Human-readable detail.")]
    failed_at: datetime
    schema_version: int = SCHEMA_VERSION


class ConsentLogEntry(msgspec.Struct, kw_only=True, frozen=True):
    """Append-only audit record of one consent change and whether it applied."""

    customer_id: str
    channel: ConsentChannel
    purpose: Purpose
    status: ConsentStatus
    previous_status: ConsentStatus | None
    applied: Annotated[
        bool, Meta(description="False when an older change arrived after a newer one.")
    ]
    source: str
    event_id: str
    event_ts: datetime
    recorded_at: datetime
    schema_version: int = SCHEMA_VERSION


class ErasureConfirmation(msgspec.Struct, kw_only=True, frozen=True):
    """Proof that an erasure request was carried out."""

    customer_id: str
    request_event_id: str
    tables_cleared: list[str]
    erased_at: datetime
    schema_version: int = SCHEMA_VERSION
