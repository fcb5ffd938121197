"""Events from files, stdin and the command line, each with the line it came from.

`nudge send`, `nudge replay` and `nudge explain` accept the same inputs: the
event log (JSON Lines of `{"kind": ..., "event": {...}}`, as `nudge simulate`
writes it; an optional `"at"` holds when the event was processed, e.g. its
Kafka timestamp), bare events one per line, a JSON array of either, or a
single event, pretty-printed or not. Every item keeps its line number, so a
bad one can be pointed at. A bare event's kind comes from `--kind`, else from
its type (every event type belongs to exactly one input topic).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import IO, Any

import msgspec

from nudge.schemas.events import EVENT_TYPES_BY_TOPIC


def _kind_of_type() -> dict[str, str]:
    """Event type -> input topic kind, from the records' `type` literals."""
    kinds = {}
    for kind, cls in EVENT_TYPES_BY_TOPIC.items():
        info = msgspec.inspect.type_info(cls)
        [field] = [f for f in info.fields if f.name == "type"]
        literal = field.type
        while isinstance(literal, msgspec.inspect.Metadata):  # Annotated[..., Meta(...)]
            literal = literal.type
        for value in literal.values:
            kinds[value] = kind
    return kinds


KIND_OF_TYPE: dict[str, str] = _kind_of_type()


@dataclass(slots=True)
class Item:
    """One event as read: `error` says why it cannot be used at all."""

    line: int
    kind: str | None = None
    event: dict[str, Any] | None = None
    at: datetime | None = None
    error: str | None = None

    @property
    def value(self) -> bytes:
        """The event as JSON bytes, as a producer would publish it."""
        return msgspec.json.encode(self.event)

    @property
    def key(self) -> bytes | None:
        """The Kafka key the contract asks for (None if the event has no subject)."""
        return contract_key(self.event or {})


def contract_key(event: dict[str, Any]) -> bytes | None:
    """The anonymous id for identity events, else the customer id, else the
    anonymous id: the subject whose state the event updates."""
    if event.get("type") in ("identify", "alias"):
        subject = event.get("anonymous_id")
    else:
        subject = event.get("customer_id") or event.get("anonymous_id")
    return subject.encode() if isinstance(subject, str) and subject else None


@dataclass(slots=True)
class _Unreadable:
    """A value that could not even be parsed, and why."""

    reason: str


def parse(data: bytes | str, kind: str | None = None) -> list[Item]:
    """Every item of a whole document: a JSON array, JSON Lines, or one or
    more (pretty-printed) JSON values one after another."""
    text = data.decode("utf-8", errors="replace") if isinstance(data, bytes) else data
    return list(_items(_values(text), kind))


def read(stream: IO[bytes], kind: str | None = None) -> Iterator[Item]:
    """Items of a file, streamed line by line (a JSON array is read whole)."""
    first = stream.readline()
    if first.lstrip().startswith(b"["):
        yield from parse(first + stream.read(), kind)
        return
    yield from _items(_lines(first, stream), kind)


def _lines(first: bytes, rest: Iterable[bytes]) -> Iterator[tuple[int, Any]]:
    for number, line in enumerate(itertools.chain([first], rest), 1):
        if not line.strip():
            continue
        try:
            yield number, msgspec.json.decode(line)
        except msgspec.DecodeError as exc:
            yield number, _Unreadable(f"not JSON ({exc})")


def _values(text: str) -> Iterator[tuple[int, Any]]:
    """(line, value) of each top-level JSON value; a top-level array yields
    its elements. After a syntax error, reading resumes on the next line."""
    decoder = json.JSONDecoder()
    pos, line, counted = 0, 1, 0
    in_array = text.lstrip().startswith("[")
    if in_array:
        pos = text.index("[") + 1
    while True:
        while pos < len(text) and (text[pos].isspace() or (in_array and text[pos] == ",")):
            pos += 1
        if pos >= len(text) or (in_array and text[pos] == "]"):
            return
        line += text.count("\n", counted, pos)
        counted = pos
        try:
            value, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            yield line, _Unreadable(f"not JSON ({exc.msg})")
            if in_array:
                return  # no safe place to resume inside an array
            newline = text.find("\n", pos)
            pos = len(text) if newline == -1 else newline + 1
            continue
        yield line, value


def _items(values: Iterable[tuple[int, Any]], kind: str | None) -> Iterator[Item]:
    for line, value in values:
        yield _item(line, value, kind)


def _item(line: int, value: Any, kind: str | None) -> Item:
    if isinstance(value, _Unreadable):
        return Item(line, error=value.reason)
    if not isinstance(value, dict):
        return Item(line, error="not a JSON object")
    if "kind" in value and "event" in value:  # an event-log line
        event, logged_kind = value["event"], value["kind"]
        if not isinstance(logged_kind, str) or not isinstance(event, dict):
            return Item(line, error="an event-log line needs a string kind and an object event")
        try:
            at = _time(value.get("at"))
        except ValueError:
            return Item(line, error=f"`at` is not an RFC 3339 time: {value['at']!r}")
        return Item(line, logged_kind, event, at)
    guessed = kind or KIND_OF_TYPE.get(value.get("type"))  # type: ignore[arg-type]
    if guessed is None:
        return Item(line, event=value, error=f"unknown type {value.get('type')!r}: pass --kind")
    return Item(line, guessed, value)


def _time(text: Any) -> datetime | None:
    if text is None:
        return None
    if not isinstance(text, str):
        raise ValueError(text)
    at = datetime.fromisoformat(text)
    if at.tzinfo is None:
        raise ValueError(text)
    return at
