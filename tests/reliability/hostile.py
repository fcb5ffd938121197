"""Hostile input for a worker: a named corpus and Hypothesis strategies.

Every case is a raw Kafka message (topic kind, key, value bytes, optionally a
record timestamp) with the outcome it must have: the deadletter reason the
worker gives it, or PROCESSED (it leaves a decision, a consent-log entry or
an erasure confirmation). What the codec does with the odd ones, found out
with schemas.codec and asserted as such:

- unknown fields are ignored (forward compatibility, schemas/events.py), and
  msgspec skips their contents unchecked: invalid UTF-8 inside an unknown
  field is accepted, but nesting deep enough to exhaust the recursion limit
  there is `malformed`;
- a top-level array is `schema_violation` however deep it goes, because the
  type is checked before the contents; past MAX_EVENT_BYTES (64 KB) anything
  is `oversized` before it is parsed;
- the NaN and Infinity literals are not JSON (`malformed`); 1e400 is valid
  JSON but out of range for a float (`schema_violation`);
- a JSON object with a repeated key keeps the last value;
- an event of another topic's kind is `unknown_type` (its `type` is not one
  of this topic's), as are a missing or non-string `type`;
- control characters are fine in free text (a search query) but not in ids.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from nudge.schemas.codec import MAX_EVENT_BYTES, InvalidEvent, decode_event

PROCESSED = "processed"
#: Event types that always leave a record when valid and new: a decision
#: (purchase: the order confirmation; session_start and search: the
#: unconditional garden_seasonal candidate), a consent-log entry, a confirmation.
RECORDING_TYPES = frozenset({"purchase", "session_start", "search", "consent", "erasure"})
#: Under the broker's default message.max.bytes (about 1 MB): accepted, so it
#: reaches the worker. A 2 MB value is refused by the broker itself.
HUGE = 900_000


@dataclass(frozen=True)
class Case:
    """One hostile message and the outcome it must have."""

    name: str
    kind: str  # topic kind, without prefix
    key: bytes | None
    value: bytes | None
    expect: str  # a deadletter reason, or PROCESSED
    event_id: str | None = None  # for PROCESSED: the id its record carries
    timestamp_ms: int | None = None  # Kafka record timestamp (None: now)


class Maker:
    """Events for one customer per case name, all valid until spoiled."""

    def __init__(self, tag: str, now: datetime) -> None:
        self.tag = tag
        self.now = now

    def customer(self, name: str) -> str:
        return f"{self.tag}{name}"

    def event(
        self, name: str, type_: object, ago: timedelta = timedelta(0), **fields: object
    ) -> dict:
        return {
            "event_id": f"{self.tag}{name}-e",
            "type": type_,
            "customer_id": self.customer(name),
            "ts": (self.now - ago).isoformat(),
            **fields,
        }

    def purchase(self, name: str, ago: timedelta = timedelta(0), **fields: object) -> dict:
        """An order of its own unless `fields` names one: a repeated order is a duplicate."""
        items = [{"product_id": "p1", "category": "garden", "price": 12.5}]
        order_id = f"o-{fields.get('event_id', name)}"
        return self.event(name, "purchase", ago, order_id=order_id, items=items) | fields

    def consent(self, name: str, ago: timedelta = timedelta(0), **fields: object) -> dict:
        grant = {"channel": "email", "purpose": "marketing", "status": "granted"}
        return self.event(name, "consent", ago, source="hostile", **grant) | fields


def dumps(event: object) -> bytes:
    return json.dumps(event).encode()


def corpus(tag: str, now: datetime) -> list[Case]:
    """Every category of hostile input, each case with its exact outcome."""
    m = Maker(tag, now)
    cases: list[Case] = []

    def bad(
        name: str, kind: str, value: bytes | None, reason: str, key: bytes | None = None
    ) -> None:
        cases.append(
            Case(name, kind, m.customer(name).encode() if key is None else key, value, reason)
        )

    def good(
        name: str, kind: str, event: dict, value: bytes | None = None, **extra: object
    ) -> None:
        value = dumps(event) if value is None else value
        key = extra.pop("key", m.customer(name).encode())
        cases.append(Case(name, kind, key, value, PROCESSED, event["event_id"], **extra))  # type: ignore[arg-type]

    def spoiled(name: str, **fields: object) -> bytes:
        return dumps(m.purchase(name, **fields))

    valid = dumps(m.purchase("truncated"))
    # -- random bytes, truncation, framing ---------------------------------------------
    bad("all_byte_values", "purchases", bytes(range(256)) * 4, "malformed")
    bad("nul_bytes", "clickstream", b"\x00" * 1000, "malformed")
    bad("truncated_half", "purchases", valid[: len(valid) // 2], "malformed")
    bad("truncated_last_byte", "purchases", valid[:-1], "malformed")
    bad("whitespace_only", "clickstream", b" \n\t\r ", "malformed")
    bad("utf8_bom", "purchases", b"\xef\xbb\xbf" + spoiled("utf8_bom"), "malformed")
    bad("trailing_garbage", "purchases", spoiled("trailing_garbage") + b"x", "malformed")
    bad("two_documents", "purchases", spoiled("two_documents") * 2, "malformed")
    bad("empty_value", "clickstream", b"", "empty")
    bad("tombstone", "consent", None, "empty")
    # -- size --------------------------------------------------------------------------
    exact = spoiled("exactly_max_size")
    good(
        "exactly_max_size",
        "purchases",
        m.purchase("exactly_max_size"),
        exact[:-1] + b" " * (MAX_EVENT_BYTES - len(exact)) + b"}",
    )
    over = spoiled("one_byte_over")
    bad(
        "one_byte_over",
        "purchases",
        over[:-1] + b" " * (MAX_EVENT_BYTES + 1 - len(over)) + b"}",
        "oversized",
    )
    # Its deadletter record keeps the first 64 KB: holding all of it, the record
    # was over the producer's limit and crashed the agent (policy.processor).
    page = m.event("huge_900kb", "page_view", page="x" * HUGE)
    bad("huge_900kb", "clickstream", dumps(page)[:HUGE], "oversized")
    # -- deep nesting ------------------------------------------------------------------
    bad("deep_nesting_100k", "clickstream", b"[" * 100_000, "oversized")
    bad("deep_array_30k_levels", "clickstream", b"[" * 30_000 + b"]" * 30_000, "schema_violation")
    deep = b"[" * 20_000 + b"]" * 20_000
    bad(
        "deep_array_in_unknown_field",
        "purchases",
        spoiled("deep_array_in_unknown_field")[:-1] + b', "extra": ' + deep + b"}",
        "malformed",
    )
    nested = b'{"a":' * 8_000 + b"1" + b"}" * 8_000
    bad(
        "deep_object_in_unknown_field",
        "purchases",
        spoiled("deep_object_in_unknown_field")[:-1] + b', "extra": ' + nested + b"}",
        "malformed",
    )
    bad(
        "deep_array_in_items",
        "purchases",
        spoiled("deep_array_in_items").replace(
            b'"items": [', b'"items": [' + b"[" * 5_000 + b"]" * 5_000 + b","
        ),
        "schema_violation",
    )
    # -- wrong types -------------------------------------------------------------------
    for name, value in [
        ("top_level_array", b"[1, 2]"),
        ("top_level_string", b'"purchase"'),
        ("top_level_number", b"42"),
        ("top_level_null", b"null"),
        ("top_level_true", b"true"),
    ]:
        bad(name, "purchases", value, "schema_violation")
    for name, fields in [
        ("price_as_string", {"items": [{"product_id": "p", "category": "c", "price": "9"}]}),
        ("price_as_bool", {"items": [{"product_id": "p", "category": "c", "price": True}]}),
        ("price_negative", {"items": [{"product_id": "p", "category": "c", "price": -1}]}),
        (
            "quantity_float",
            {"items": [{"product_id": "p", "category": "c", "price": 1, "quantity": 1.5}]},
        ),
        (
            "quantity_10e30",
            {"items": [{"product_id": "p", "category": "c", "price": 1, "quantity": 10**30}]},
        ),
        ("items_as_object", {"items": {"product_id": "p"}}),
        ("items_empty", {"items": []}),
        ("customer_id_as_int", {"customer_id": 5}),
        ("event_id_as_list", {"event_id": ["e"]}),
        ("event_id_129_chars", {"event_id": "e" * 129}),
        ("ts_as_epoch_int", {"ts": int(now.timestamp())}),
        ("ts_not_a_date", {"ts": "yesterday"}),
        ("ts_without_offset", {"ts": now.replace(tzinfo=None).isoformat()}),
        ("schema_version_2", {"schema_version": 2}),
        ("price_as_string_nan", {"items": [{"product_id": "p", "category": "c", "price": "NaN"}]}),
    ]:
        bad(name, "purchases", spoiled(name, **fields), "schema_violation")
    # -- NaN, Infinity, out-of-range numbers -------------------------------------------
    for name, literal, reason in [
        ("price_nan_literal", b"NaN", "malformed"),
        ("price_infinity_literal", b"Infinity", "malformed"),
        ("price_minus_infinity_literal", b"-Infinity", "malformed"),
        ("price_1e400", b"1e400", "schema_violation"),
    ]:
        bad(name, "purchases", spoiled(name).replace(b"12.5", literal), reason)
    # -- not UTF-8 -----------------------------------------------------------------------
    search = m.event("invalid_utf8_in_query", "search", query="AAAA")
    bad(
        "invalid_utf8_in_query",
        "clickstream",
        dumps(search).replace(b"AAAA", b"\xff\xfe"),
        "malformed",
    )
    search = m.event("latin1_in_query", "search", query="AAAA")
    bad("latin1_in_query", "clickstream", dumps(search).replace(b"AAAA", b"caf\xe9"), "malformed")
    search = m.event("overlong_utf8_in_query", "search", query="AAAA")
    bad(
        "overlong_utf8_in_query",
        "clickstream",
        dumps(search).replace(b"AAAA", b"\xc0\xaf"),
        "malformed",
    )
    search = m.event("lone_surrogate_in_query", "search", query="AAAA")
    bad(
        "lone_surrogate_in_query",
        "clickstream",
        dumps(search).replace(b"AAAA", b"\\ud800"),
        "malformed",
    )
    event = m.purchase("invalid_utf8_in_unknown_field", note="AAAA")
    good(
        "invalid_utf8_in_unknown_field",
        "purchases",
        event,
        dumps(event).replace(b"AAAA", b"\xff\xfe\xc0"),
    )
    bad("key_not_utf8", "purchases", spoiled("key_not_utf8"), "key_mismatch", key=b"\xff\xfe")
    # -- control characters --------------------------------------------------------------
    search = m.event("raw_control_char", "search", query="AAAA")
    bad("raw_control_char", "clickstream", dumps(search).replace(b"AAAA", b"a\x01b"), "malformed")
    bad(
        "nul_in_event_id",
        "purchases",
        spoiled("nul_in_event_id", event_id="e\x00"),
        "schema_violation",
    )
    escape = "\x1b[31m\u202e"
    bad(
        "escape_in_customer_id",
        "purchases",
        spoiled("escape_in_customer_id", customer_id=f"c{escape}"),
        "schema_violation",
        key=f"c{escape}".encode(),
    )
    good(
        "control_chars_in_query",
        "clickstream",
        m.event("control_chars_in_query", "search", query="\x00\x07\x1b[2J\u202e\ufeff"),
    )
    # -- timestamps ----------------------------------------------------------------------
    for name, ts in [
        ("ts_1970", "1970-01-01T00:00:00Z"),
        ("ts_2999", "2999-01-01T00:00:00Z"),
        ("ts_year_10000_in_utc", "9999-12-31T23:59:59-23:59"),
        ("ts_25h_ahead", (now + timedelta(hours=25)).isoformat()),
        ("ts_6_years_ago", (now - timedelta(days=6 * 365)).isoformat()),
    ]:
        bad(name, "purchases", spoiled(name, ts=ts), "bad_timestamp")
    good(
        "ts_4_years_ago",
        "purchases",
        m.purchase("ts_4_years_ago", ts=(now - timedelta(days=4 * 365)).isoformat()),
    )
    good(
        "ts_23h_ahead",
        "purchases",
        m.purchase("ts_23h_ahead", ts=(now + timedelta(hours=23)).isoformat()),
    )
    good(
        "kafka_timestamp_1970", "purchases", m.purchase("kafka_timestamp_1970"), timestamp_ms=1_000
    )
    prefs = m.event(
        "snooze_past_year_9999", "preferences", snooze_until="9999-12-31T23:59:59-23:59"
    )
    bad("snooze_past_year_9999", "preferences", dumps(prefs), "bad_timestamp")
    # -- unknown fields and kinds ----------------------------------------------------------
    good(
        "unknown_fields",
        "purchases",
        m.purchase("unknown_fields", coupon={"code": "X", "nested": [1, [2, [3]]]}, _v=None),
    )
    good(
        "unknown_fields_on_consent",
        "consent",
        m.consent("unknown_fields_on_consent", legal_basis="art6", extra=[None, 1.5]),
    )
    bad("unknown_type", "clickstream", dumps(m.event("unknown_type", "teleport")), "unknown_type")
    no_type = {k: v for k, v in m.event("missing_type", "search").items() if k != "type"}
    bad("missing_type", "clickstream", dumps(no_type), "unknown_type")
    bad("type_as_number", "clickstream", dumps(m.event("type_as_number", 42)), "unknown_type")
    bad("type_null", "clickstream", dumps(m.event("type_null", None)), "unknown_type")
    # -- the wrong topic ------------------------------------------------------------------
    bad(
        "consent_on_clickstream",
        "clickstream",
        dumps(m.consent("consent_on_clickstream")),
        "unknown_type",
    )
    bad("purchase_on_consent", "consent", dumps(m.purchase("purchase_on_consent")), "unknown_type")
    bad(
        "search_on_purchases",
        "purchases",
        dumps(m.event("search_on_purchases", "search")),
        "unknown_type",
    )
    bad(
        "erasure_on_feedback",
        "feedback",
        dumps(m.event("erasure_on_feedback", "erasure")),
        "unknown_type",
    )
    bad("garbage_on_identity_merges", "identity-merges", b"\x93\xc4\x00", "malformed")
    bad("garbage_on_onsite_impressions", "onsite-impressions", b"{}", "malformed")
    # -- keys and subjects ---------------------------------------------------------------
    cases.append(Case("key_none", "purchases", None, spoiled("key_none"), "key_mismatch"))
    bad("key_empty", "purchases", spoiled("key_empty"), "key_mismatch", key=b"")
    bad(
        "key_of_another_customer",
        "purchases",
        spoiled("key_of_another_customer"),
        "key_mismatch",
        key=m.customer("someone_else").encode(),
    )
    # The same for a huge key, in the record and as the deadletter message key.
    bad("key_huge_900kb", "purchases", spoiled("key_huge_900kb"), "key_mismatch", key=b"k" * HUGE)
    login = m.event("identify_keyed_by_customer", "identify", anonymous_id=f"{tag}anon")
    bad("identify_keyed_by_customer", "identity", dumps(login), "key_mismatch")
    twice = spoiled("repeated_json_key")[:-1] + b', "customer_id": "' + tag.encode() + b'x"}'
    bad("repeated_json_key", "purchases", twice, "key_mismatch")  # the last value wins
    bad(
        "no_subject",
        "purchases",
        dumps({k: v for k, v in m.purchase("no_subject").items() if k != "customer_id"}),
        "missing_subject",
    )
    bad(
        "customer_id_null",
        "purchases",
        spoiled("customer_id_null", customer_id=None),
        "missing_subject",
    )
    anonymous = {
        **m.event("anonymous_visitor", "session_start"),
        "customer_id": None,
        "anonymous_id": m.customer("anonymous_visitor"),
    }
    good("anonymous_visitor", "clickstream", anonymous)
    for name, zone in [
        ("tz_unknown", "Mars/Olympus"),
        ("tz_path_traversal", "../../etc/passwd"),
        ("tz_absolute_path", "/etc/localtime"),
        ("tz_nul", "Europe/\x00Berlin"),
    ]:
        quiet = {"start": "22:00", "end": "07:00", "tz": zone}
        bad(
            name,
            "preferences",
            dumps(m.event(name, "preferences", quiet_hours=quiet)),
            "bad_time_zone",
        )
    return cases


# -- Hypothesis ------------------------------------------------------------------------

Message = tuple[str, bytes | None, bytes | None]  # (topic kind, key, value)

KINDS = ("clickstream", "purchases", "consent", "preferences", "identity", "feedback", "privacy")
TEMPLATES: dict[str, dict] = {
    "clickstream": {"type": "search", "query": "lamp"},
    "purchases": {
        "type": "purchase",
        "order_id": "o1",
        "items": [{"product_id": "p1", "category": "garden", "price": 3.0}],
    },
    "consent": {
        "type": "consent",
        "channel": "email",
        "purpose": "marketing",
        "status": "granted",
        "source": "h",
    },
    "preferences": {
        "type": "preferences",
        "preferred_channel": "email",
        "quiet_hours": {"start": "22:00", "end": "07:00", "tz": "Europe/Berlin"},
    },
    "identity": {"type": "identify", "anonymous_id": "anon", "reachable_channels": ["email"]},
    "feedback": {"type": "opened", "channel": "email", "decision_id": "d1"},
    "privacy": {"type": "erasure"},
}
FIELDS = (
    "event_id",
    "type",
    "customer_id",
    "anonymous_id",
    "ts",
    "items",
    "price",
    "channel",
    "status",
    "purpose",
    "quiet_hours",
    "snooze_until",
    "query",
    "schema_version",
)


def _json_values() -> st.SearchStrategy:
    odd_strings = st.sampled_from(
        [
            "",
            "\x00",
            "\u202e",
            "9999-12-31T23:59:59-23:59",
            "1970-01-01T00:00:00Z",
            "email",
            "all",
            "revoked",
            "purchase",
            "consent",
            "x" * 300,
            "Europe/Berlin",
            "24:00",
        ]
    )
    scalars = (
        st.none()
        | st.booleans()
        | st.integers(min_value=-(2**70), max_value=2**70)
        | st.floats()  # NaN and infinities too: json.dumps writes them as literals
        | st.text(max_size=12)
        | odd_strings
    )
    return st.recursive(
        scalars,
        lambda inner: (
            st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
        ),
        max_leaves=10,
    )


def messages(tag: str, now: datetime) -> st.SearchStrategy[Message]:
    """Random bytes, random JSON, and valid events with fields, keys and bytes spoiled."""
    kinds = st.sampled_from(KINDS)
    customers = st.sampled_from([f"{tag}h{n}" for n in range(12)])
    keys = st.none() | st.binary(max_size=16) | customers.map(str.encode)
    random_bytes = st.tuples(kinds, keys, st.binary(max_size=300))
    random_json = st.tuples(kinds, keys, _json_values().map(_dumps_loose))

    serial = itertools.count()  # unique event ids, unless a spoiled field says otherwise

    @st.composite
    def spoiled_event(draw: st.DrawFn) -> Message:
        kind = draw(kinds)
        customer = draw(customers)
        ago = draw(st.integers(min_value=0, max_value=3600))
        event = {
            "event_id": f"{tag}{next(serial)}",
            "customer_id": customer,
            "ts": (now - timedelta(seconds=ago)).isoformat(),
            **TEMPLATES[kind],
        }
        if kind == "identity":
            event["anonymous_id"] = f"{customer}-anon"
        if kind == "purchases":  # one order per event: a repeated order is a duplicate
            event["order_id"] = f"o-{event['event_id']}"
        for field, value in draw(
            st.lists(st.tuples(st.sampled_from(FIELDS), _json_values()), max_size=2)
        ):
            event[field] = value
        subject = (
            event.get("anonymous_id")
            if kind == "identity"
            else (event.get("customer_id") or event.get("anonymous_id"))
        )
        key = subject.encode() if isinstance(subject, str) else b""
        if draw(st.integers(0, 9)) == 0:
            key = draw(keys)
        value = _dumps_loose(event)
        cut = draw(st.integers(0, 4))
        if cut == 1:  # truncated
            value = value[: draw(st.integers(0, max(0, len(value) - 1)))]
        elif cut == 2 and value:  # one byte replaced
            at = draw(st.integers(0, len(value) - 1))
            value = value[:at] + bytes([draw(st.integers(0, 255))]) + value[at + 1 :]
        return kind, key, value

    return st.one_of(random_bytes, random_json, spoiled_event(), spoiled_event())


def _dumps_loose(value: object) -> bytes:
    """JSON as a careless producer writes it: NaN literals, non-ASCII as is."""
    return json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")


def draw_messages(strategy: st.SearchStrategy[Message], count: int) -> list[Message]:
    """`count` examples, the same on every run (derandomized, no example database)."""
    drawn: list[Message] = []

    @settings(
        max_examples=count,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def collect(message: Message) -> None:
        drawn.append(message)

    collect()
    return drawn


def expected_reason(kind: str, key: bytes | None, value: bytes | None, now: datetime) -> str:
    """What the worker's codec makes of a message: a reason, or PROCESSED."""
    try:
        decode_event(kind, value, key, now)
    except InvalidEvent as exc:
        return exc.reason
    return PROCESSED


def recording_event_id(kind: str, value: bytes, now: datetime) -> str | None:
    """The event id a valid message's record will carry, if its type always leaves one."""
    event = decode_event(kind, value, None, now, check_key=False)
    return event.event_id if getattr(event, "type", None) in RECORDING_TYPES else None


def utc_now() -> datetime:
    return datetime.now(UTC)
