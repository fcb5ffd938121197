"""Per-customer state: five small records, one per table.

Each record is bounded (ring buffers and capped maps, never growing lists): a
typical customer costs well under a kilobyte, the worst case about two.
The records are msgpack arrays (no field names on disk; trailing defaults
omitted), so fields may only ever be appended at the end of a record, with a
default, never removed or reordered.
"""

from __future__ import annotations

import msgspec

from nudge.policy.clock import DAY

RECENT_VIEWS = 8
CART_PRODUCTS = 5
MAX_CATEGORIES = 16
MAX_CONTACTS = 32
MAX_PROCESSED_IDS = 32
MAX_ORDER_IDS = 32
MAX_TRANSACTIONAL = 4
_ID_BYTES = 4
CONTACT_HORIZON = 8 * DAY  # contacts older than this answer no window


class Recency(msgspec.Struct, kw_only=True, omit_defaults=True, array_like=True):
    """What the person did and when: drives triggers, cooldowns and RFM."""

    last_seen: dict[str, float] = {}  # event type -> time
    recent_views: list[str] = []  # product ids, newest last
    affinity: dict[str, float] = {}  # category -> score decayed to affinity_at
    affinity_at: float = 0.0
    last_purchase: dict[str, float] = {}  # category -> time
    forgotten_purchase_at: float = 0.0  # newest purchase evicted from last_purchase
    orders: int = 0
    revenue: float = 0.0
    cart_items: int = 0
    cart_value: float = 0.0
    cart_category: str | None = None
    cart_updated_at: float = 0.0
    # Ring of recent order id hashes (uint32): an order resent with a new event
    # id, or after the event id left `Profile.processed`, is counted once.
    order_ids: bytes = b""
    # Own purchase intervals per category, [count, sum of log days]
    # (policy/cycles.py): the person's cycle, shrunk toward the category's.
    cycles: dict[str, list[float]] = {}
    # Product ids in the open cart, newest last (at most CART_PRODUCTS), so a
    # cart reminder can show them.
    cart_products: list[str] = []
    # The category of each of `recent_views`, aligned from the newest ("" if
    # unknown), so content can show viewed products of a category.
    view_categories: list[str] = []


class Contact(msgspec.Struct, array_like=True, omit_defaults=True):
    """One message sent (or scheduled): `at` is when it will reach the person,
    `deferred_s` how long after the decision that is (quiet hours), so a
    redelivered trigger can re-issue the same action (Engine._reissue)."""

    at: float
    channel: str
    action_id: str
    decision_id: str  # first 16 hex digits
    converted: bool = False
    deferred_s: int = 0
    # What is known of how it landed (policy/engagement.py): 0 nothing yet,
    # 1 negative, 2 positive; so each message is learned from once.
    outcome: int = 0


class Fatigue(msgspec.Struct, kw_only=True, omit_defaults=True, array_like=True):
    """How much we have contacted the person and how they reacted."""

    contacts: list[Contact] = []  # oldest first, within CONTACT_HORIZON
    last_action: dict[str, float] = {}  # action id -> last contact time
    ignored_streak: int = 0
    backoff_until: float = 0.0
    last_complaint: float = 0.0
    last_engaged: float = 0.0
    sent: dict[str, int] = {}  # channel -> messages delivered (halved at 64)
    engaged: dict[str, int] = {}  # channel -> opened/clicked/converted (halved too)
    conversions: int = 0
    # The last MAX_TRANSACTIONAL transactional messages, newest last: they are
    # no marketing contacts, but a redelivered trigger must find them too.
    transactional: list[Contact] = []
    # [known, positive] outcome counters per channel and per four-hour block
    # of the person's local day, 20 bytes (policy/engagement.py).
    outcomes: bytes = b""


class ConsentEntry(msgspec.Struct, array_like=True, omit_defaults=True):
    """The change in force for one channel and purpose. Where it came from is
    in the consent-log topic, the audit trail; keeping it here too would
    double the size of the record."""

    status: str  # granted | revoked | pending
    at: float  # event time of the change
    source: str = ""  # optional; the engine leaves it empty


class Consent(msgspec.Struct, kw_only=True, omit_defaults=True, array_like=True):
    """What the person allowed, per channel and purpose; authoritative."""

    entries: dict[str, ConsentEntry] = {}  # "channel:purpose" -> entry ("all:...")
    blocked: dict[str, str] = {}  # channel -> "bounced" | "complained"
    blocked_at: dict[str, float] = {}  # channel -> event time of the block


class QuietWindow(msgspec.Struct, array_like=True):
    start_minute: int  # minutes after local midnight
    end_minute: int
    tz: str


class Enrolment(msgspec.Struct, array_like=True):
    """The experiment and arm a person is in (policy/experiments.py)."""

    experiment: str
    arm: str


class Profile(msgspec.Struct, kw_only=True, omit_defaults=True, array_like=True):
    """Preferences, identity and bookkeeping."""

    identified: bool = False
    reachable: list[str] = []
    preferred_channel: str | None = None
    quiet_hours: QuietWindow | None = None
    max_per_week: int | None = None
    interests: list[str] = []
    snooze_until: float = 0.0
    persona: str | None = None
    merged_ids: int = 0  # anonymous ids merged into this customer
    processed: bytes = b""  # ring of recent event id hashes (uint32), for dedupe
    # The person's own clock (policy/locality.py): a stated and a device zone,
    # and 24 counters of the UTC hours they are active in.
    time_zone: str | None = None
    device_zone: str | None = None
    active_hours: bytes = b""
    # Identity (policy/identity.py): on an anonymous id that logged in, the
    # customer its later events go to; on a customer, the anonymous ids merged
    # into it (newest last, bounded), so an erasure reaches them too.
    alias_of: str | None = None
    linked_ids: list[str] = []
    # The experiment arm, fixed at the first decision and kept across a
    # login (a merged visitor's arm wins over none), so it never flips.
    arm: str | None = None
    # When this person was last erased: events stamped before it are dropped.
    erased_at: float = 0.0
    # The experiment and arm (policy/experiments.py), stored at the first
    # decision and kept across a login like `arm`; None: in no experiment.
    experiment: Enrolment | None = None
    # An identify or preferences event told us which channels have contact
    # details (`reachable`): then no channel is assumed reachable.
    reachable_stated: bool = False


def seen(profile: Profile, event_hash: int) -> bool:
    """Was this event (by its 64-bit hash) processed recently?"""
    return _in_ring(profile.processed, event_hash)


def remember(profile: Profile, event_hash: int) -> None:
    """Add an event to the ring; 32-bit hashes keep it at 128 bytes, and a
    false match among 32 recent ids is a one-in-a-hundred-million event."""
    profile.processed = _pushed(profile.processed, event_hash, MAX_PROCESSED_IDS)


def ordered(recency: Recency, order_hash: int) -> bool:
    """Was this order (by its 64-bit hash) among the person's recent orders?"""
    return _in_ring(recency.order_ids, order_hash)


def remember_order(recency: Recency, order_hash: int) -> None:
    """Add an order to its ring: MAX_ORDER_IDS orders, 128 bytes at most.
    Resends come within hours or days; 32 orders by one person span far longer."""
    recency.order_ids = _pushed(recency.order_ids, order_hash, MAX_ORDER_IDS)


def merge_orders(mine: Recency, theirs: Recency) -> None:
    """Take in a merged visitor's orders; where the ring overflows, theirs go first."""
    mine.order_ids = (theirs.order_ids + mine.order_ids)[-MAX_ORDER_IDS * _ID_BYTES :]


def _in_ring(ring: bytes, value: int) -> bool:
    needle = (value & 0xFFFFFFFF).to_bytes(_ID_BYTES, "big")
    at = ring.find(needle)
    while at != -1:
        if at % _ID_BYTES == 0:
            return True
        at = ring.find(needle, at + 1)
    return False


def _pushed(ring: bytes, value: int, size: int) -> bytes:
    return (ring + (value & 0xFFFFFFFF).to_bytes(_ID_BYTES, "big"))[-size * _ID_BYTES :]


class Hold(msgspec.Struct, array_like=True, omit_defaults=True):
    """An action decided but not yet due (quiet hours): kept here, not on the
    channel topics, until `due`, then re-checked (Engine.release_due). Its
    decision id is derived (trigger event id + action id), not stored; its
    contact is reserved at `due` in `Fatigue.contacts`, so caps count it."""

    due: float
    trigger_event_id: str
    trigger_type: str
    trigger_ts: float
    decided_at: float
    action_id: str
    channel: str
    category: str | None
    score: float
    propensity: float
    selection_probability: float
    explored: bool
    model_version: str
    why: list[str] = []  # why it won (the decision's reasons, without the score line)
    uplift: float | None = None  # what the score was based on, if an uplift model scored it
    persona: str | None = None  # the person's persona when decided (its lever scored it)


class Holds(msgspec.Struct, kw_only=True, omit_defaults=True, array_like=True):
    """Held actions, earliest due first. A table of its own: only people with
    something held have an entry, so a worker finds every due time after a
    restart by reading this table alone (streams/holds.py)."""

    pending: list[Hold] = []


#: Held actions per person. Marketing waits only while fewer than
#: MAX_MARKETING_HOLDS are held (else it is ruled out: `quiet_hours`); a
#: transactional message waits while fewer than MAX_HOLDS are, and beyond
#: that goes out at once rather than be dropped.
MAX_MARKETING_HOLDS = 4
MAX_HOLDS = 8

TABLES = ("recency", "fatigue", "consent", "profile", "holds")


class CustomerState:
    """The five records of one customer, with a note of which ones changed
    so the worker writes back only those."""

    __slots__ = ("changed", "consent", "fatigue", "holds", "profile", "recency")

    def __init__(
        self,
        recency: Recency | None = None,
        fatigue: Fatigue | None = None,
        consent: Consent | None = None,
        profile: Profile | None = None,
        holds: Holds | None = None,
    ) -> None:
        self.recency = recency or Recency()
        self.fatigue = fatigue or Fatigue()
        self.consent = consent or Consent()
        self.profile = profile or Profile()
        self.holds = holds or Holds()
        self.changed: set[str] = set()

    def touch(self, *tables: str) -> None:
        self.changed.update(tables)


_encoder = msgspec.msgpack.Encoder()
_decoders = {
    "recency": msgspec.msgpack.Decoder(Recency),
    "fatigue": msgspec.msgpack.Decoder(Fatigue),
    "consent": msgspec.msgpack.Decoder(Consent),
    "profile": msgspec.msgpack.Decoder(Profile),
    "holds": msgspec.msgpack.Decoder(Holds),
}


def decode_state(parts: dict[str, bytes | None]) -> CustomerState:
    """Build a CustomerState from the stored bytes of each table (None: absent)."""
    state = CustomerState()
    for table in TABLES:
        raw = parts.get(table)
        if raw:
            setattr(state, table, _decoders[table].decode(raw))
    return state


def encode_profile(profile: Profile) -> bytes:
    """The profile table's bytes for one record."""
    return _encoder.encode(profile)


def encode_state(state: CustomerState, tables: set[str] | None = None) -> dict[str, bytes]:
    """Bytes for the given tables (default: the changed ones)."""
    names = state.changed if tables is None else tables
    return {table: _encoder.encode(getattr(state, table)) for table in TABLES if table in names}
