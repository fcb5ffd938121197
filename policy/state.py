"""Per-customer state: four small records, one per table.

Each record is bounded (ring buffers and capped maps, never growing lists) so
a customer costs well under a kilobyte on disk. Times are epoch seconds (UTC).
The records are msgpack-encoded with default values omitted.
"""

from __future__ import annotations

import msgspec

RECENT_VIEWS = 8
MAX_CATEGORIES = 16
MAX_CONTACTS = 32
MAX_PROCESSED_IDS = 32
CONTACT_HORIZON = 8 * 86400.0  # contacts older than this answer no window


class Recency(msgspec.Struct, kw_only=True, omit_defaults=True):
    """What the person did and when: drives triggers, cooldowns and RFM."""

    last_seen: dict[str, float] = {}  # event type -> time
    recent_views: list[str] = []  # product ids, newest last
    affinity: dict[str, float] = {}  # category -> score decayed to affinity_at
    affinity_at: float = 0.0
    last_purchase: dict[str, float] = {}  # category -> time
    orders: int = 0
    revenue: float = 0.0
    cart_items: int = 0
    cart_value: float = 0.0
    cart_category: str | None = None
    cart_updated_at: float = 0.0


class Contact(msgspec.Struct, array_like=True):
    """One message sent (or scheduled): `at` is when it will reach the person."""

    at: float
    channel: str
    action_id: str
    decision_id: str
    converted: bool = False


class Fatigue(msgspec.Struct, kw_only=True, omit_defaults=True):
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


class ConsentEntry(msgspec.Struct, array_like=True):
    status: str  # granted | revoked | pending
    at: float  # event time of the change
    source: str


class Consent(msgspec.Struct, kw_only=True, omit_defaults=True):
    """What the person allowed, per channel and purpose; authoritative."""

    entries: dict[str, ConsentEntry] = {}  # "channel:purpose" -> entry ("all:...")
    blocked: dict[str, str] = {}  # channel -> "bounced" | "complained"


class QuietWindow(msgspec.Struct, array_like=True):
    start_minute: int  # minutes after local midnight
    end_minute: int
    tz: str


class Profile(msgspec.Struct, kw_only=True, omit_defaults=True):
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
    processed: list[int] = []  # hashes of recent event ids, for dedupe


TABLES = ("recency", "fatigue", "consent", "profile")


class CustomerState:
    """The four records of one customer, with a note of which ones changed
    so the worker writes back only those."""

    __slots__ = ("changed", "consent", "fatigue", "profile", "recency")

    def __init__(
        self,
        recency: Recency | None = None,
        fatigue: Fatigue | None = None,
        consent: Consent | None = None,
        profile: Profile | None = None,
    ) -> None:
        self.recency = recency or Recency()
        self.fatigue = fatigue or Fatigue()
        self.consent = consent or Consent()
        self.profile = profile or Profile()
        self.changed: set[str] = set()

    def touch(self, *tables: str) -> None:
        self.changed.update(tables)


_encoder = msgspec.msgpack.Encoder()
_decoders = {
    "recency": msgspec.msgpack.Decoder(Recency),
    "fatigue": msgspec.msgpack.Decoder(Fatigue),
    "consent": msgspec.msgpack.Decoder(Consent),
    "profile": msgspec.msgpack.Decoder(Profile),
}


def decode_state(parts: dict[str, bytes | None]) -> CustomerState:
    """Build a CustomerState from the stored bytes of each table (None: absent)."""
    state = CustomerState()
    for table in TABLES:
        raw = parts.get(table)
        if raw:
            setattr(state, table, _decoders[table].decode(raw))
    return state


def encode_state(state: CustomerState, tables: set[str] | None = None) -> dict[str, bytes]:
    """Bytes for the given tables (default: the changed ones)."""
    names = state.changed if tables is None else tables
    return {table: _encoder.encode(getattr(state, table)) for table in TABLES if table in names}
