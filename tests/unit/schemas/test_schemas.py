"""The contract: examples decode, schemas stay in sync, bad input is classified."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import jsonschema
import msgspec
import pytest

from nudge.schemas.codec import MAX_EVENT_BYTES, InvalidEvent, decode_event
from nudge.schemas.events import EVENT_TYPES_BY_TOPIC
from nudge.schemas.jsonschema import RECORDS, SCHEMA_DIR, generate, normalise_descriptions

EXAMPLES = Path(__file__).parents[3] / "schemas" / "examples"
NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def examples(kind: str) -> list[dict]:
    return json.loads((EXAMPLES / f"{kind}.json").read_text())


def key_of(event: dict) -> bytes:
    if event["type"] in ("identify", "alias"):
        return event["anonymous_id"].encode()
    return (event.get("customer_id") or event["anonymous_id"]).encode()


def test_checked_in_json_schemas_match_the_records() -> None:
    generated = generate()
    on_disk = {p.name: p.read_text() for p in SCHEMA_DIR.glob("*.schema.json")}
    assert on_disk == generated, "run `python -m nudge.schemas.jsonschema` and commit the result"


def test_descriptions_do_not_depend_on_how_a_docstring_is_indented() -> None:
    # msgspec 0.23 started dedenting docstrings; the checked-in files must not care.
    indented = {"description": "Line one\n    line two.", "items": [{"description": " a\n\tb "}]}
    dedented = {"description": "Line one\nline two.", "items": [{"description": "a b"}]}
    assert normalise_descriptions(indented) == normalise_descriptions(dedented)
    assert normalise_descriptions(indented)["description"] == "Line one line two."


def test_the_drift_check_still_sees_a_changed_record(monkeypatch: pytest.MonkeyPatch) -> None:
    class Changed(msgspec.Struct):
        """A record with a field the checked-in schema lacks."""

        extra: int

    monkeypatch.setitem(RECORDS, "out.action", Changed)
    on_disk = (SCHEMA_DIR / "out.action.schema.json").read_text()
    assert generate()["out.action.schema.json"] != on_disk


@pytest.mark.parametrize("kind", list(EVENT_TYPES_BY_TOPIC))
def test_every_example_decodes_and_matches_its_json_schema(kind: str) -> None:
    schema = json.loads((SCHEMA_DIR / f"in.{kind}.schema.json").read_text())
    events = examples(kind)
    assert events, f"no examples for {kind}"
    for raw in events:
        jsonschema.validate(raw, schema)
        event = decode_event(kind, json.dumps(raw).encode(), key_of(raw), NOW)
        assert event.event_id == raw["event_id"]
        assert event.subject_id == key_of(raw).decode()


def reason_for(kind: str, value: bytes | None, key: bytes | None = b"c1") -> str:
    with pytest.raises(InvalidEvent) as caught:
        decode_event(kind, value, key, NOW)
    return caught.value.reason


VALID = {"event_id": "e1", "type": "page_view", "customer_id": "c1", "ts": "2026-11-22T11:00:00Z"}


def variant(**changes: object) -> bytes:
    event = {**VALID, **changes}
    return json.dumps({k: v for k, v in event.items() if v is not None}).encode()


@pytest.mark.parametrize(
    ("value", "key", "reason"),
    [
        (b"", b"c1", "empty"),
        (None, b"c1", "empty"),
        (b"\xff\xfe\x00garbage", b"c1", "malformed"),
        (b'{"event_id": "e1", "type": ', b"c1", "malformed"),
        (b"[" * 10_000 + b"]" * 10_000, b"c1", "schema_violation"),
        (b" " * (MAX_EVENT_BYTES + 1), b"c1", "oversized"),
        (variant(type="teleport"), b"c1", "unknown_type"),
        (variant(type=None), b"c1", "unknown_type"),
        (variant(price="cheap"), b"c1", "schema_violation"),
        (variant(ts="2026-11-22T11:00:00"), b"c1", "schema_violation"),
        (b'{"event_id":"e1","type":"page_view","customer_id":"c1",'
         b'"ts":"2026-11-22T11:00:00Z","price":NaN}', b"c1", "malformed"),
        (variant(customer_id=None), b"c1", "missing_subject"),
        (variant(), b"someone-else", "key_mismatch"),
        (variant(), None, "key_mismatch"),
        (variant(ts="1970-01-01T00:00:00Z"), b"c1", "bad_timestamp"),
        (variant(ts="2099-01-01T00:00:00Z"), b"c1", "bad_timestamp"),
        (variant(event_id="has spaces and \u0000"), b"c1", "schema_violation"),
    ],
)  # fmt: skip
def test_invalid_input_is_classified(value: bytes | None, key: bytes | None, reason: str) -> None:
    assert reason_for("clickstream", value, key) == reason


def test_bad_time_zone_in_preferences_is_rejected() -> None:
    raw = {
        "event_id": "f1",
        "type": "preferences",
        "customer_id": "c1",
        "ts": "2026-11-22T11:00:00Z",
        "quiet_hours": {"start": "22:00", "end": "07:00", "tz": "Mars/Olympus"},
    }
    assert reason_for("preferences", json.dumps(raw).encode()) == "bad_time_zone"


def test_identity_events_are_keyed_by_the_anonymous_id() -> None:
    raw = examples("identity")[0]
    assert reason_for("identity", json.dumps(raw).encode(), raw["customer_id"].encode()) == (
        "key_mismatch"
    )


def test_unknown_fields_are_ignored_for_forward_compatibility() -> None:
    event = decode_event("clickstream", variant(brand_new_field={"x": 1}), b"c1", NOW)
    assert event.type == "page_view"


def test_times_are_normalised_to_utc_instants() -> None:
    event = decode_event("clickstream", variant(ts="2026-11-22T13:00:00+02:00"), b"c1", NOW)
    assert event.ts.timestamp() == datetime(2026, 11, 22, 11, 0, tzinfo=UTC).timestamp()


def test_every_field_of_the_contract_is_documented() -> None:
    """Teams outside Python read the JSON Schemas: no field without a description
    (the `kind` tag of actions and suppressions is self-explanatory)."""
    undocumented = []
    for path in sorted(SCHEMA_DIR.glob("*.schema.json")):
        for record, definition in json.loads(path.read_text())["$defs"].items():
            for name, spec in definition.get("properties", {}).items():
                described = "description" in spec or any(
                    "description" in option for option in spec.get("anyOf", [])
                )
                if not described and name != "kind":
                    undocumented.append(f"{path.name}: {record}.{name}")
    assert not undocumented


@pytest.mark.parametrize("moment", ["9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+23:59"])
def test_a_snooze_that_is_no_date_in_utc_is_rejected(moment: str) -> None:
    """Accepted, it made the explain API fail on that customer for good
    (datetime.fromtimestamp beyond year 9999)."""
    raw = {**VALID, "type": "preferences", "snooze_until": moment}
    assert reason_for("preferences", json.dumps(raw).encode()) == "bad_timestamp"


def test_a_snooze_at_the_end_of_time_in_utc_is_still_fine() -> None:
    raw = {**VALID, "type": "preferences", "snooze_until": "9999-12-31T23:59:59Z"}
    event = decode_event("preferences", json.dumps(raw).encode(), b"c1", NOW)
    assert event.snooze_until.year == 9999
