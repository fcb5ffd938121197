"""The event log: one record type, one reader, one writer.

An event log is JSON Lines of `{"kind": ..., "event": {...}}`, optionally with
`"at"`: when the event was processed (e.g. its Kafka timestamp, as `nudge tail
--log` writes it). `kind` is an input topic kind, or an output kind such as
`actions` or `suppressions`. `nudge simulate --out` and `nudge tail --log`
write it; `nudge replay`, `nudge train`, `nudge evaluate --offline`, `nudge
experiments report` and the models read it.

The reader also takes what people paste into `nudge send` and `nudge explain`:
bare events one per line, a JSON array of either, or a single event,
pretty-printed or not. A bare event's kind comes from `--kind`, else from its
type (every event type belongs to exactly one input topic). Every item keeps
its line number, so a bad one can be pointed at.

Why here, in the contract: a log holds the contract's events, and reading one
needs nothing but the contract (the event types per topic). The pure core
(policy, models) and the CLI both read logs, so the module sits below both.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import msgspec

from nudge.errors import UserError
from nudge.schemas.events import EVENT_TYPES_BY_TOPIC


class EventLogError(UserError):
    """A line of a log that is not an event: the message names its line."""


def _kind_of_type() -> dict[str, str]:
    """Event type -> input topic kind, from the records' `type` literals."""
    kinds = {}
    for kind, cls in EVENT_TYPES_BY_TOPIC.items():
        info = msgspec.inspect.type_info(cls)
        [field_info] = [f for f in info.fields if f.name == "type"]
        literal = field_info.type
        while isinstance(literal, msgspec.inspect.Metadata):  # Annotated[..., Meta(...)]
            literal = literal.type
        for value in literal.values:
            kinds[value] = kind
    return kinds


KIND_OF_TYPE: dict[str, str] = _kind_of_type()


@dataclass(frozen=True, slots=True)
class LoggedEvent:
    """One event of a log: its kind, the event, when it was processed if
    known, and the line it was read from (0: not read from a file)."""

    kind: str
    event: dict[str, Any]
    at: datetime | None = None
    line: int = field(default=0, compare=False)  # where it was, not what it is

    @property
    def value(self) -> bytes:
        """The event as JSON bytes, as a producer would publish it."""
        return msgspec.json.encode(self.event)

    @property
    def key(self) -> bytes | None:
        """The Kafka key the contract asks for (None if the event has no subject)."""
        return contract_key(self.event)


@dataclass(frozen=True, slots=True)
class Unreadable:
    """A line that is no usable event, and why; `event` is set when it is a
    JSON object whose kind could not be told."""

    line: int
    error: str
    event: dict[str, Any] | None = None


def contract_key(event: dict[str, Any]) -> bytes | None:
    """The anonymous id for identity events, else the customer id, else the
    anonymous id: the subject whose state the event updates."""
    if event.get("type") in ("identify", "alias"):
        subject = event.get("anonymous_id")
    else:
        subject = event.get("customer_id") or event.get("anonymous_id")
    return subject.encode() if isinstance(subject, str) and subject else None


# -- reading ----------------------------------------------------------------------------


def parse(data: bytes | str, kind: str | None = None) -> list[LoggedEvent | Unreadable]:
    """Every item of a whole document: a JSON array, JSON Lines, or one or
    more (pretty-printed) JSON values one after another."""
    text = data.decode("utf-8", errors="replace") if isinstance(data, bytes) else data
    return list(_items(_values(text), kind))


def read(stream: IO[bytes], kind: str | None = None) -> Iterator[LoggedEvent | Unreadable]:
    """Items of a file, streamed line by line (a JSON array is read whole)."""
    first = stream.readline()
    if first.lstrip().startswith(b"["):
        yield from parse(first + stream.read(), kind)
        return
    yield from _items(_lines(first, stream), kind)


def read_log(path: Path | str) -> Iterator[LoggedEvent]:
    """The events of a log file; the first unreadable line raises
    EventLogError naming the file and the line."""
    with Path(path).open("rb") as stream:
        for item in read(stream):
            if isinstance(item, Unreadable):
                raise EventLogError(f"{path}:{item.line}: {item.error}")
            yield item


@dataclass(slots=True)
class _NotJson:
    """A value that could not even be parsed, and why."""

    reason: str


def _lines(first: bytes, rest: Iterable[bytes]) -> Iterator[tuple[int, Any]]:
    for number, line in enumerate(itertools.chain([first], rest), 1):
        if not line.strip():
            continue
        try:
            yield number, msgspec.json.decode(line)
        except msgspec.DecodeError as exc:
            yield number, _NotJson(f"not JSON ({exc})")


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
            yield line, _NotJson(f"not JSON ({exc.msg})")
            if in_array:
                return  # no safe place to resume inside an array
            newline = text.find("\n", pos)
            pos = len(text) if newline == -1 else newline + 1
            continue
        yield line, value


def _items(
    values: Iterable[tuple[int, Any]], kind: str | None
) -> Iterator[LoggedEvent | Unreadable]:
    for line, value in values:
        yield _item(line, value, kind)


def _item(line: int, value: Any, kind: str | None) -> LoggedEvent | Unreadable:
    if isinstance(value, _NotJson):
        return Unreadable(line, value.reason)
    if not isinstance(value, dict):
        return Unreadable(line, "not a JSON object")
    if "kind" in value and "event" in value:  # an event-log line
        event, logged_kind = value["event"], value["kind"]
        if not isinstance(logged_kind, str) or not isinstance(event, dict):
            return Unreadable(line, "an event-log line needs a string kind and an object event")
        try:
            at = _time(value.get("at"))
        except ValueError:
            return Unreadable(line, f"`at` is not an RFC 3339 time: {value['at']!r}")
        return LoggedEvent(logged_kind, event, at, line)
    guessed = kind or KIND_OF_TYPE.get(value.get("type"))  # type: ignore[arg-type]
    if guessed is None:
        return Unreadable(line, f"unknown type {value.get('type')!r}: pass --kind", value)
    return LoggedEvent(guessed, value, None, line)


def _time(text: Any) -> datetime | None:
    if text is None:
        return None
    if not isinstance(text, str):
        raise ValueError(text)
    at = datetime.fromisoformat(text)
    if at.tzinfo is None:
        raise ValueError(text)
    return at


# -- writing ----------------------------------------------------------------------------

_encoder = msgspec.json.Encoder()


def encode_line(kind: str, event: Any, at: datetime | None = None) -> bytes:
    """One log line, without its newline. `event` is what was there: `nudge
    tail --log` writes a value that is not JSON as null, which reading then
    reports as an unreadable line rather than dropping it unseen."""
    line: dict[str, Any] = {"kind": kind, "event": event}
    if at is not None:
        line["at"] = at.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return _encoder.encode(line)


def write_log(events: Iterable[LoggedEvent], path: Path | str) -> int:
    """Write a log file, one line per event; returns how many."""
    count = 0
    with Path(path).open("wb") as out:
        for logged in events:
            out.write(encode_line(logged.kind, logged.event, logged.at))
            out.write(b"\n")
            count += 1
    return count
