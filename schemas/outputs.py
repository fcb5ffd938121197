"""Output records: what nudge publishes for channels, auditors and operators."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from nudge.schemas.events import (
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
    "persona",  # meant for other personas (the catalog's `personas`), or none is known
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
    "erased",  # a held action: the person asked to be forgotten before it was due
    "withdrawn",  # a held action: the catalog no longer has it when it is due
    "cart_closed",  # a held reminder about the cart: the cart was emptied or bought
    "preempted",  # a held action: a worthier one needed the contact it reserved
]

Reason = Annotated[ReasonCode, Meta(description="A reason code.")]


class ExperimentRef(msgspec.Struct, kw_only=True, frozen=True):
    """An experiment and one of its arms (config/experiments.toml)."""

    name: Annotated[str, Meta(description="The experiment.")]
    arm: Annotated[str, Meta(description="The person's arm in it, fixed for the experiment.")]


class Content(msgspec.Struct, kw_only=True, frozen=True):
    """What an action shows: a category and products chosen for the person,
    never a category inside its purchase cooldown."""

    category: Annotated[str | None, Meta(description="The category to show, if any.")]
    products: Annotated[
        list[str],
        Meta(
            description="Up to 5 product ids to show, best first: the cart's items for a cart"
            " reminder, else products of the category the person viewed recently."
        ),
    ] = []
    reason: Annotated[str, Meta(description="Why this category and these products.")]


class DecisionHeader(msgspec.Struct, kw_only=True, frozen=True):
    """Fields shared by actions and suppressions."""

    decision_id: Annotated[
        str,
        Meta(description="Deterministic from trigger event id + action: dedupe key."),
    ]
    customer_id: Annotated[str, Meta(description="Whom it concerns (the message key too).")]
    trigger_event_id: Annotated[str, Meta(description="The input event that led to it.")]
    trigger_type: Annotated[str, Meta(description="That event's type.")]
    trigger_ts: Annotated[datetime, Meta(description="That event's time.")]
    decided_at: Annotated[datetime, Meta(description="When nudge decided.")]
    model_version: Annotated[str, Meta(description="The scorer that ranked the candidates.")]
    experiment_arm: Annotated[
        ExperimentArm, Meta(description="`holdout` for the control group, else `treatment`.")
    ]
    schema_version: Annotated[int, Meta(description="Version of this contract.")] = SCHEMA_VERSION
    experiment: Annotated[
        ExperimentRef | None,
        Meta(
            description="The experiment and arm whose catalog and policy decided; null: the"
            " person is in no experiment. Independent of `experiment_arm` (the holdout)."
        ),
    ] = None


class Action(DecisionHeader, frozen=True, tag="action", tag_field="kind"):
    """One nudge to deliver on one channel now, not after `expires_at`. An
    action that must wait (quiet hours) is held by nudge and published only
    when it is due and still allowed (docs/channels.md)."""

    action_id: Annotated[str, Meta(description="The catalog action to deliver.")]
    channel: Annotated[Channel, Meta(description="Where to deliver it.")]
    message_class: Annotated[
        MessageClass, Meta(description="marketing, or transactional (receipts, notices).")
    ]
    category: Annotated[str | None, Meta(description="The category it promotes, if any.")]
    score: Annotated[
        float,
        Meta(
            description="propensity x value x lever; uplift x value x lever when the"
            " served model has an uplift model (the first reason says which)."
        ),
    ]
    propensity: Annotated[float, Meta(description="Model's chance of a response.")]
    selection_probability: Annotated[
        float,
        Meta(
            description="Chance the policy picks this action on this channel (for offline"
            " evaluation); a suppression's is always 1: nudge never explores into one."
        ),
    ]
    explored: Annotated[bool, Meta(description="Picked by exploration, not the best score.")]
    reasons: Annotated[list[str], Meta(description="Why this action and channel won.")]
    send_after: Annotated[
        datetime | None,
        Meta(
            description="Null on the action topics: deliver on receipt. Set only in a"
            " dry-run decision (the explain API) for an action nudge would hold until then."
        ),
    ]
    expires_at: Annotated[datetime, Meta(description="Do not deliver after: drop it then.")]
    held_at: Annotated[
        datetime | None,
        Meta(
            description="When nudge decided it and held it until due (quiet hours); it was"
            " released at `decided_at` after the rules ran again. Null: never held."
        ),
    ] = None
    content: Annotated[
        Content | None,
        Meta(description="What to show; null for transactional messages and when none fits."),
    ] = None
    persona: Annotated[
        str | None,
        Meta(
            description="The person's persona when decided (traits joined by `+`, e.g."
            " `frequent_buyers+big_spenders`); null: none served, or profiling not allowed."
        ),
    ] = None


Version = Annotated[int, Meta(description="Version of this contract.")]


class CandidateVerdict(msgspec.Struct, kw_only=True, frozen=True):
    """One candidate action and every reason it was ruled out."""

    action_id: Annotated[str, Meta(description="The catalog action considered.")]
    reasons: Annotated[list[Reason], Meta(description="Why it was ruled out.")]
    channel_reasons: Annotated[
        dict[str, list[Reason]],
        Meta(description="Per channel, why that channel could not be used."),
    ] = {}
    notes: Annotated[
        list[str],
        Meta(
            description="Reasons in words where a code needs a date, e.g. until when a"
            " purchase cooldown runs and whether it is learned or fixed."
        ),
    ] = []


class WouldBeAction(msgspec.Struct, kw_only=True, frozen=True):
    """What a holdout customer would have received (for measuring uplift)."""

    action_id: Annotated[str, Meta(description="The action that would have won.")]
    channel: Annotated[Channel, Meta(description="On this channel.")]
    score: Annotated[float, Meta(description="With this score.")]


class Suppression(DecisionHeader, frozen=True, tag="suppression", tag_field="kind"):
    """An explicit decision not to contact anyone now, with every reason."""

    reasons: Annotated[list[Reason], Meta(description="Union of candidate reasons.")]
    candidates: Annotated[
        list[CandidateVerdict], Meta(description="Every candidate and why it lost.")
    ]
    would_be: Annotated[
        WouldBeAction | None, Meta(description="Holdout only: what would have been sent.")
    ] = None


Decision = Action | Suppression


class DeadLetter(msgspec.Struct, kw_only=True, frozen=True):
    """An input message nudge could not use, with where to find it so nothing is lost."""

    source_topic: Annotated[str, Meta(description="The topic it was read from.")]
    partition: Annotated[int, Meta(description="Its partition there.")]
    offset: Annotated[int, Meta(description="Its offset there.")]
    key: Annotated[bytes | None, Meta(description="Original key (first 64 KiB), base64 in JSON.")]
    value: Annotated[bytes | None, Meta(description="Original bytes (first 64 KiB), base64.")]
    reason: Annotated[str, Meta(description="Machine-readable error class.")]
    error: Annotated[str, Meta(description="Human-readable detail.")]
    failed_at: Annotated[datetime, Meta(description="When nudge gave up on it.")]
    schema_version: Version = SCHEMA_VERSION


NotApplied = Literal["older_than_current", "global_opt_out"]


class ConsentLogEntry(msgspec.Struct, kw_only=True, frozen=True):
    """Append-only audit record of one consent change and whether it applied."""

    customer_id: Annotated[str, Meta(description="Whose consent changed.")]
    channel: Annotated[ConsentChannel, Meta(description="The channel, or `all`.")]
    purpose: Annotated[Purpose, Meta(description="The purpose.")]
    status: Annotated[ConsentStatus, Meta(description="The new status.")]
    previous_status: Annotated[
        ConsentStatus | None, Meta(description="The status on file before, if any.")
    ]
    applied: Annotated[
        bool, Meta(description="Whether the change is now in force (see `not_applied`).")
    ]
    not_applied: Annotated[
        NotApplied | None,
        Meta(
            description="Why not: `older_than_current` (an older change arrived after a newer"
            " one) or `global_opt_out` (a grant for one channel while an opt-out of `all`"
            " stands: only a grant for `all` lifts it)."
        ),
    ] = None
    source: Annotated[str, Meta(description="Where the change came from.")]
    event_id: Annotated[str, Meta(description="The consent (or feedback) event.")]
    event_ts: Annotated[datetime, Meta(description="When the person made the change.")]
    recorded_at: Annotated[datetime, Meta(description="When nudge processed it.")]
    schema_version: Version = SCHEMA_VERSION


class ErasureConfirmation(msgspec.Struct, kw_only=True, frozen=True):
    """Proof that an erasure request was carried out."""

    customer_id: Annotated[str, Meta(description="Who was forgotten.")]
    request_event_id: Annotated[str, Meta(description="The erasure request.")]
    tables_cleared: Annotated[list[str], Meta(description="Tables whose entries were deleted.")]
    erased_at: Annotated[datetime, Meta(description="When.")]
    schema_version: Version = SCHEMA_VERSION
