"""The action catalog and the contact policy: what marketers configure.

Both are TOML files, validated at load time into typed records so that a
mistake stops the worker at start with a message naming the field, rather
than surfacing as odd decisions later.
"""

from __future__ import annotations

import zoneinfo
from pathlib import Path
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from nudge.errors import UserError
from nudge.policy.clock import DAY, HOUR, WEEK
from nudge.policy.personas import PersonaTrait
from nudge.schemas.events import Channel, ClickType, FeedbackType
from nudge.schemas.outputs import MessageClass

Level = Literal["unknown", "identified", "known", "engaged"]
LEVELS: tuple[Level, ...] = ("unknown", "identified", "known", "engaged")
TriggerEvent = ClickType | Literal["purchase"] | FeedbackType
NonNegative = Annotated[float, Meta(ge=0)]
HHMM = Annotated[str, Meta(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")]


class ConfigError(UserError):
    """Configuration that cannot be used (a catalog, a policy, a setting), with the reason."""


class Trigger(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    """When an action becomes a candidate: an event type plus conditions that
    must all hold on the state after the event."""

    event: TriggerEvent
    cart_idle_minutes: NonNegative | None = None  # open cart untouched this long
    min_cart_value: NonNegative | None = None
    # The action's category was last bought this long ago; with a learned
    # purchase cycle for it, when the person's next need is due instead.
    replenish_after_days: NonNegative | None = None
    # Decayed interest in the event's category: a view adds 1, add-to-cart 3,
    # a purchase 5, halving every 14 days.
    min_category_affinity: Annotated[float, Meta(gt=0)] | None = None
    categories: list[str] = []  # the event's category must be one of these
    # Decide now, send this long after the event if every rule still holds
    # then (held, re-checked at release): an abandoned-cart reminder an hour on.
    send_after_minutes: NonNegative | None = None


class CatalogAction(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    """One thing nudge may send."""

    id: Annotated[str, Meta(pattern=r"^[a-z0-9_]{1,48}$")]
    message_class: MessageClass
    channels: Annotated[list[Channel], Meta(min_length=1)]
    triggers: Annotated[list[Trigger], Meta(min_length=1)]
    value: Annotated[float, Meta(gt=0)]
    description: str = ""
    # A fixed category, "$event" for the category of the triggering item, or
    # "$cart" for the open cart's (so a purchase of it cools the reminder down).
    category: str | None = None
    lever: Annotated[float, Meta(gt=0, le=10)] = 1.0
    min_level: Level = "unknown"
    interests: list[str] = []  # eligible only if the person shares one
    cooldown_hours: NonNegative = 24.0
    max_per_week: Annotated[int, Meta(ge=1)] | None = None
    expiry_hours: Annotated[float, Meta(gt=0)] = 24.0
    # Eligible only for people whose persona has one of these traits
    # (policy/personas.py, e.g. "lapsing", "big_spenders"); [] for everyone.
    personas: list[PersonaTrait] = []
    # The lever for people whose persona has the trait (the first of the
    # persona's traits listed here wins); `lever` for everyone else.
    persona_levers: dict[PersonaTrait, Annotated[float, Meta(gt=0, le=10)]] = {}


class Catalog(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    actions: Annotated[list[CatalogAction], Meta(min_length=1)]


class Caps(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    """Most messages in any rolling hour, day (24 h) and week (7 days)."""

    hour: Annotated[int, Meta(ge=0)] | None = None
    day: Annotated[int, Meta(ge=0)] | None = None
    week: Annotated[int, Meta(ge=0)] | None = None

    def windows(self) -> list[tuple[float, int]]:
        """(window seconds, cap) for each cap that is set."""
        pairs = ((HOUR, self.hour), (DAY, self.day), (WEEK, self.week))
        return [(seconds, cap) for seconds, cap in pairs if cap is not None]


class QuietHoursPolicy(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    """Default quiet hours (the person's own preference wins)."""

    start: HHMM = "21:00"
    end: HHMM = "08:00"
    tz: str = "UTC"
    # Channels that do not interrupt (on-site content): usable in quiet hours.
    silent_channels: list[Channel] = msgspec.field(default_factory=lambda: ["web"])


class FatiguePolicy(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    """Back off exponentially once messages keep being ignored."""

    ignored_threshold: Annotated[int, Meta(ge=1)] = 3
    backoff_hours: Annotated[float, Meta(gt=0)] = 24.0
    max_backoff_hours: Annotated[float, Meta(gt=0)] = 24.0 * 14
    complaint_backoff_hours: NonNegative = 24.0 * 30


class CooldownPolicy(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    """After a purchase, no promotion of the same category for this long:
    the fixed days below when no learned purchase cycle is served (or it does
    not know the category), else until the person's next need is near
    (policy/cycles.py); never less than `floor_days` either way."""

    default_days: NonNegative = 14.0
    categories: dict[str, NonNegative] = {}
    floor_days: NonNegative = 3.0  # never within this many days of buying

    def seconds_for(self, category: str) -> float:
        return self.categories.get(category, self.default_days) * DAY


class HoldoutPolicy(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    share: Annotated[float, Meta(ge=0, le=0.5)] = 0.05
    salt: str = "nudge-holdout-v1"


class ExplorationPolicy(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    epsilon: Annotated[float, Meta(ge=0, le=0.5)] = 0.05


class EngagementPolicy(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    """What each person responds to (policy/engagement.py): the best channel,
    and the best hour to hold marketing to.

    Rates are learned only from messages whose outcome is known, smoothed
    toward a prior response rate (per channel if given) as if
    `prior_strength` messages had been seen at it."""

    prior_rate: Annotated[float, Meta(gt=0, lt=1)] = 0.2
    channel_priors: dict[Channel, Annotated[float, Meta(gt=0, lt=1)]] = {}
    prior_strength: Annotated[float, Meta(gt=0)] = 4.0
    # Hold marketing to the person's best local hours, at most this long and
    # never past the action's expiry; needs `min_observations` known outcomes.
    send_hour: bool = True
    max_delay_hours: NonNegative = 12.0
    min_observations: Annotated[int, Meta(ge=1)] = 6


class ContactPolicy(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    """How often, when and how gently nudge may contact anyone.

    Transactional messages (order confirmations, shipping) skip marketing
    consent, caps, cooldowns, fatigue, snooze and the holdout; they still
    respect hard channel blocks (bounce, complaint), an explicit revocation of
    transactional consent, and quiet hours (deferred, never dropped).
    """

    channel_caps: dict[Channel, Caps] = {}
    global_caps: Caps = Caps()
    quiet_hours: QuietHoursPolicy = QuietHoursPolicy()
    fatigue: FatiguePolicy = FatiguePolicy()
    purchase_cooldown: CooldownPolicy = CooldownPolicy()
    holdout: HoldoutPolicy = HoldoutPolicy()
    exploration: ExplorationPolicy = ExplorationPolicy()
    # A consent change stamped further ahead of the processing clock than this
    # is rejected (deadletter `future_consent`): a clock 23 hours fast must not
    # let a grant outrank a revocation made now.
    consent_max_future_minutes: NonNegative = 5.0
    # How long an erasure marker is kept (policy/erasure.py): events for an
    # erased id stamped before its erasure are dropped while it is kept.
    erasure_marker_days: NonNegative = 400.0
    # Channel preference order when the person states none and engagement ties.
    channel_order: list[Channel] = msgspec.field(
        default_factory=lambda: ["email", "push", "web", "sms"]
    )
    engagement: EngagementPolicy = EngagementPolicy()
    # Channels counted reachable for someone no identify or preferences event
    # has told us the contact details of (an address learned from a consent
    # grant or a delivery counts either way). A shop whose checkout requires
    # an email address lists "email"; [] reaches nobody without details.
    assumed_reachable: list[Channel] = msgspec.field(default_factory=lambda: ["email"])


def _load(path: Path, cls: type) -> object:
    try:
        return msgspec.toml.decode(Path(path).read_bytes(), type=cls)
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise ConfigError(f"{path}: {exc}") from None


def load_catalog(path: Path | str) -> Catalog:
    catalog = _load(Path(path), Catalog)
    assert isinstance(catalog, Catalog)
    seen: set[str] = set()
    for action in catalog.actions:
        if action.id in seen:
            raise ConfigError(f"{path}: action id {action.id!r} appears twice")
        seen.add(action.id)
        waits = [t.send_after_minutes or 0 for t in action.triggers]
        if max(waits) >= action.expiry_hours * 60:
            raise ConfigError(
                f"{path}: action {action.id!r} waits {max(waits):g} minutes (send_after_minutes),"
                f" past its expiry_hours {action.expiry_hours:g}: it could never be sent"
            )
    return catalog


def load_policy(path: Path | str) -> ContactPolicy:
    policy = _load(Path(path), ContactPolicy)
    assert isinstance(policy, ContactPolicy)
    try:
        zoneinfo.ZoneInfo(policy.quiet_hours.tz)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            f"{path}: quiet_hours.tz {policy.quiet_hours.tz!r} is not an IANA zone"
        ) from None
    return policy
