"""Input events: what upstream systems publish to nudge's input topics.

Every record is a msgspec Struct, so one pass over the bytes both decodes and
validates it. Unknown fields are ignored (producers may add fields before
nudge knows them); unknown event types, wrong types and out-of-range values
are rejected and end up on the deadletter topic.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec
from msgspec import UNSET, Meta, UnsetType

SCHEMA_VERSION = 1

Channel = Literal["email", "sms", "push", "web"]
ConsentChannel = Literal["email", "sms", "push", "web", "all"]
Purpose = Literal["marketing", "transactional", "profiling"]
ConsentStatus = Literal["granted", "revoked", "pending"]

Identifier = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=128,
        pattern=r"^[A-Za-z0-9._:@\-]+$",
        description="Opaque identifier: letters, digits and . _ : @ -, at most 128.",
    ),
]
Label = Annotated[str, Meta(min_length=1, max_length=64, description="A short machine label.")]
TimeZoneName = Annotated[
    str, Meta(min_length=1, max_length=64, description="IANA zone, e.g. America/New_York.")
]
Money = Annotated[float, Meta(ge=0, le=1_000_000, description="Amount, >= 0.")]
UtcTime = Annotated[
    datetime,
    Meta(tz=True, description="RFC 3339 time with an offset; nudge works in UTC."),
]
ClockTime = Annotated[
    str,
    Meta(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$", description="Local time HH:MM."),
]


class Event(msgspec.Struct, kw_only=True, frozen=True):
    """Fields every input event carries."""

    event_id: Annotated[Identifier, Meta(description="Unique per event; idempotency key.")]
    ts: Annotated[UtcTime, Meta(description="When it happened (event time).")]
    customer_id: Annotated[Identifier | None, Meta(description="Known customer, if any.")] = None
    anonymous_id: Annotated[
        Identifier | None, Meta(description="Device or cookie id before login.")
    ] = None
    schema_version: Annotated[
        int, Meta(ge=1, le=SCHEMA_VERSION, description="Version of this contract.")
    ] = SCHEMA_VERSION

    @property
    def subject_id(self) -> str | None:
        """Whose state this event updates; also the Kafka message key."""
        return self.customer_id or self.anonymous_id


ClickType = Literal[
    "session_start",
    "page_view",
    "product_view",
    "search",
    "add_to_cart",
    "remove_from_cart",
    "checkout_started",
]


class ClickEvent(Event, frozen=True):
    """Topic `clickstream`: browsing behaviour on site or app."""

    type: Annotated[ClickType, Meta(description="What the person did.")]
    page: Annotated[
        Annotated[str, Meta(max_length=512)] | None, Meta(description="Page path or screen name.")
    ] = None
    product_id: Annotated[Identifier | None, Meta(description="The product involved.")] = None
    category: Annotated[
        Label | None, Meta(description="The product's category (drives affinity and cooldowns).")
    ] = None
    price: Annotated[Money | None, Meta(description="Unit price of the product.")] = None
    quantity: Annotated[
        int, Meta(ge=1, le=10_000, description="Units added or removed (cart events).")
    ] = 1
    query: Annotated[
        Annotated[str, Meta(max_length=256)] | None, Meta(description="Search text (search).")
    ] = None
    time_zone: Annotated[
        TimeZoneName | None,
        Meta(description="The device's IANA time zone, if the app or browser reports it."),
    ] = None


class OrderItem(msgspec.Struct, kw_only=True, frozen=True):
    """One line of an order."""

    product_id: Annotated[Identifier, Meta(description="The product bought.")]
    category: Annotated[Label, Meta(description="Its category: starts that category's cooldown.")]
    price: Annotated[Money, Meta(description="Unit price paid.")]
    quantity: Annotated[int, Meta(ge=1, le=10_000, description="Units bought.")] = 1


class PurchaseEvent(Event, frozen=True):
    """Topic `purchases`: a completed order."""

    type: Annotated[Literal["purchase"], Meta(description="Always `purchase`.")]
    order_id: Annotated[Identifier, Meta(description="The shop's order number.")]
    items: Annotated[
        list[OrderItem], Meta(min_length=1, max_length=200, description="The order lines.")
    ]
    currency: Annotated[
        str, Meta(pattern=r"^[A-Z]{3}$", description="ISO 4217 code of the prices.")
    ] = "EUR"

    @property
    def total(self) -> float:
        return sum(item.price * item.quantity for item in self.items)


class ConsentEvent(Event, frozen=True):
    """Topic `consent`: a consent change for one channel (or `all`) and purpose."""

    type: Annotated[Literal["consent"], Meta(description="Always `consent`.")]
    channel: Annotated[
        ConsentChannel, Meta(description="The channel, or `all` for every channel at once.")
    ]
    purpose: Annotated[
        Purpose,
        Meta(description="marketing (nudges), transactional (receipts), profiling (tracking)."),
    ]
    status: Annotated[
        ConsentStatus, Meta(description="`pending` means double opt-in not confirmed.")
    ]
    source: Annotated[Label, Meta(description="Where the change came from.")]


class QuietHours(msgspec.Struct, kw_only=True, frozen=True):
    """A daily window in the person's own time zone when nobody should buzz them."""

    start: Annotated[ClockTime, Meta(description="Local time the quiet hours begin.")]
    end: Annotated[ClockTime, Meta(description="Local time they end (may be after midnight).")]
    tz: Annotated[TimeZoneName, Meta(description="IANA zone, e.g. Europe/Berlin.")]


class PreferencesEvent(Event, frozen=True):
    """Topic `preferences`: what the person told us. Absent fields stay as they
    were; an explicit null clears a preference."""

    type: Annotated[Literal["preferences"], Meta(description="Always `preferences`.")]
    preferred_channel: Annotated[
        Channel | UnsetType | None, Meta(description="Used whenever it is allowed and not capped.")
    ] = UNSET
    quiet_hours: Annotated[
        QuietHours | UnsetType | None, Meta(description="Overrides the policy's default window.")
    ] = UNSET
    max_contacts_per_week: Annotated[
        Annotated[int, Meta(ge=0, le=50)] | UnsetType | None,
        Meta(description="The person's own weekly cap across channels (0: none at all)."),
    ] = UNSET
    interests: Annotated[
        Annotated[list[Label], Meta(max_length=20)] | UnsetType | None,
        Meta(description="Stated interests (categories or themes)."),
    ] = UNSET
    snooze_until: Annotated[
        UtcTime | UnsetType | None, Meta(description="No marketing at all before this time.")
    ] = UNSET
    time_zone: Annotated[
        TimeZoneName | UnsetType | None,
        Meta(description="The person's IANA time zone: quiet hours are read in it."),
    ] = UNSET
    reachable_channels: Annotated[
        Annotated[list[Channel], Meta(max_length=4)] | UnsetType | None,
        Meta(
            description="The channels we now hold contact details for (an email address,"
            " a phone number, an app with push on): replaces the list on file; null or []:"
            " none. Only these (and on-site `web`) may carry messages then."
        ),
    ] = UNSET


class IdentityEvent(Event, frozen=True):
    """Topic `identity`: a visitor logs in (`identify`) or two ids are linked
    (`alias`). Keyed by the anonymous id whose state moves to the customer."""

    type: Annotated[
        Literal["identify", "alias"], Meta(description="A login, or a link made elsewhere.")
    ]
    customer_id: Annotated[Identifier, Meta(description="The known customer.")]
    anonymous_id: Annotated[
        Identifier, Meta(description="The visitor id whose state moves to the customer; the key.")
    ]
    reachable_channels: Annotated[
        list[Channel],
        Meta(max_length=4, description="Channels we hold contact details for."),
    ] = []

    @property
    def subject_id(self) -> str:
        return self.anonymous_id


FeedbackType = Literal[
    "delivered",
    "opened",
    "clicked",
    "converted",
    "ignored",
    "dismissed",
    "bounced",
    "unsubscribed",
    "complained",
]


class FeedbackEvent(Event, frozen=True):
    """Topic `feedback`: what a channel saw happen to an action it delivered."""

    type: Annotated[FeedbackType, Meta(description="What happened to the message.")]
    channel: Annotated[Channel, Meta(description="The channel that delivered it.")]
    decision_id: Annotated[Identifier | None, Meta(description="The action's decision id.")] = None
    action_id: Annotated[Label | None, Meta(description="The catalog action it carried.")] = None
    value: Annotated[Money | None, Meta(description="Order value (converted).")] = None


class ErasureEvent(Event, frozen=True):
    """Topic `privacy`: forget this customer everywhere (right to erasure)."""

    type: Annotated[Literal["erasure"], Meta(description="Always `erasure`.")]


InputEvent = (
    ClickEvent
    | PurchaseEvent
    | ConsentEvent
    | PreferencesEvent
    | IdentityEvent
    | FeedbackEvent
    | ErasureEvent
)

#: Input topic kind -> the record its messages must decode to.
EVENT_TYPES_BY_TOPIC: dict[str, type[Event]] = {
    "clickstream": ClickEvent,
    "purchases": PurchaseEvent,
    "consent": ConsentEvent,
    "preferences": PreferencesEvent,
    "identity": IdentityEvent,
    "feedback": FeedbackEvent,
    "privacy": ErasureEvent,
}
