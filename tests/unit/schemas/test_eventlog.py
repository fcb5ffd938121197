"""The event log (schemas/eventlog.py): what is written reads back the same,
a bad line is named by its number, and every event type has its kind."""

from __future__ import annotations

import argparse
import io
import json
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import pytest

from nudge.cli.commands import tail
from nudge.errors import UserError
from nudge.schemas.eventlog import (
    KIND_OF_TYPE,
    EventLogError,
    LoggedEvent,
    Unreadable,
    encode_line,
    read,
    read_log,
    write_log,
)
from nudge.schemas.events import EVENT_TYPES_BY_TOPIC

AT = datetime(2026, 3, 2, 9, 30, 15, 250000, tzinfo=UTC)
VIEW = {
    "event_id": "e-1",
    "type": "product_view",
    "customer_id": "c-1",
    "ts": "2026-03-02T09:30:15Z",
}
ORDER = {"event_id": "e-2", "type": "purchase", "customer_id": "c-1", "ts": "2026-03-02T09:40:00Z"}


def test_what_is_written_reads_back_the_same(tmp_path: Path) -> None:
    events = [
        LoggedEvent("clickstream", VIEW),
        LoggedEvent("purchases", ORDER, AT),
        LoggedEvent("actions", {"decision_id": "d-1", "note": "caf\u00e9"}),
    ]
    path = tmp_path / "log.jsonl"
    assert write_log(events, path) == 3
    back = list(read_log(path))
    assert back == events
    assert [e.line for e in back] == [1, 2, 3]
    assert back[1].at == AT


def test_the_format_on_disk_is_kind_event_and_optional_at(tmp_path: Path) -> None:
    """Logs written before this module (nudge simulate, nudge tail --log) read as they are."""
    path = tmp_path / "log.jsonl"
    write_log([LoggedEvent("clickstream", VIEW), LoggedEvent("purchases", ORDER, AT)], path)
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert lines == [
        {"kind": "clickstream", "event": VIEW},
        {"kind": "purchases", "event": ORDER, "at": "2026-03-02T09:30:15.250Z"},
    ]
    older = tmp_path / "older.jsonl"
    older.write_text(
        json.dumps({"kind": "clickstream", "event": VIEW, "at": "2026-03-02T09:30:15.250Z"}) + "\n"
    )
    assert list(read_log(older)) == [LoggedEvent("clickstream", VIEW, AT)]


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        ("{oops", "not JSON"),
        ("[1, 2]", "not a JSON object"),  # an array only at the start of a file
        ('"text"', "not a JSON object"),
        ('{"kind": "clickstream", "event": null}', "string kind and an object event"),
        ('{"kind": 3, "event": {}}', "string kind and an object event"),
        ('{"kind": "clickstream", "event": {}, "at": "yesterday"}', "RFC 3339"),
        ('{"kind": "clickstream", "event": {}, "at": "2026-03-02T09:30:00"}', "RFC 3339"),
        ('{"type": "teleport"}', "unknown type 'teleport'"),
    ],
)
def test_a_bad_line_is_named_by_file_and_number(tmp_path: Path, bad: str, reason: str) -> None:
    path = tmp_path / "log.jsonl"
    path.write_text(json.dumps({"kind": "clickstream", "event": VIEW}) + "\n\n" + bad + "\n")
    with pytest.raises(EventLogError, match=rf"log\.jsonl:3: .*{reason}"):
        list(read_log(path))


def test_a_bad_line_is_a_user_error_not_a_bug() -> None:
    assert issubclass(EventLogError, UserError)


def test_the_reader_hands_back_unreadable_lines_and_goes_on() -> None:
    stream = io.BytesIO(b'{"kind": "consent", "event": {}}\n{oops\n' + json.dumps(ORDER).encode())
    items = list(read(stream))
    assert [type(i) for i in items] == [LoggedEvent, Unreadable, LoggedEvent]
    assert [i.line for i in items] == [1, 2, 3]


def test_every_event_type_has_exactly_the_kind_of_its_topic() -> None:
    assert set(KIND_OF_TYPE.values()) == set(EVENT_TYPES_BY_TOPIC)
    assert KIND_OF_TYPE["product_view"] == "clickstream"
    assert KIND_OF_TYPE["purchase"] == "purchases"
    assert KIND_OF_TYPE["identify"] == KIND_OF_TYPE["alias"] == "identity"


def test_a_bare_event_takes_its_kind_from_its_type_or_from_the_caller() -> None:
    stream = io.BytesIO(json.dumps(VIEW).encode() + b"\n" + json.dumps(ORDER).encode())
    assert [i.kind for i in read(stream)] == ["clickstream", "purchases"]  # type: ignore[union-attr]
    [forced] = read(io.BytesIO(json.dumps({"type": "teleport"}).encode()), kind="clickstream")
    assert isinstance(forced, LoggedEvent) and forced.kind == "clickstream"


def test_the_kafka_key_is_the_subject_the_event_updates() -> None:
    assert LoggedEvent("clickstream", VIEW).key == b"c-1"
    identify = {"type": "identify", "anonymous_id": "anon-1", "customer_id": "c-1"}
    assert LoggedEvent("identity", identify).key == b"anon-1"
    assert LoggedEvent("clickstream", {"type": "page_view"}).key is None


def test_tail_log_writes_lines_the_reader_takes_back(tmp_path: Path) -> None:
    """`nudge tail --log` and `nudge replay --clock recorded` share the format."""
    args = argparse.Namespace(json=False, log=True)
    millis = int(AT.timestamp() * 1000)
    fetched = [
        SimpleNamespace(value=json.dumps(VIEW).encode(), timestamp=millis, key=b"c-1"),
        SimpleNamespace(value=b"\xff not json", timestamp=millis, key=b"c-1"),
    ]
    lines = [tail._render(args, "clickstream", record) for record in fetched]
    assert lines[0] == encode_line("clickstream", VIEW, AT).decode()
    items = list(read(io.BytesIO("\n".join(lines).encode())))
    assert items[0] == LoggedEvent("clickstream", VIEW, AT)
    assert isinstance(items[1], Unreadable) and items[1].line == 2  # kept, and named
