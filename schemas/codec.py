"""Bytes in, records out: decoding with every check an input message must pass.

msgspec validates while it decodes, which is why it is the codec: one pass,
no intermediate dicts, and errors that name the offending field.
"""

from __future__ import annotations

import functools
import zoneinfo
from datetime import UTC, datetime, timedelta

import msgspec

from nudge.errors import UserError
from nudge.schemas.events import EVENT_TYPES_BY_TOPIC, Event, PreferencesEvent

MAX_EVENT_BYTES = 64 * 1024
#: Event times further from the processing clock than this are impossible.
MAX_PAST = timedelta(days=365 * 5)
MAX_FUTURE = timedelta(hours=24)


class InvalidEvent(UserError):
    """An input message that cannot be processed (a user error to the CLI; the
    worker deadletters it); `reason` is a stable code
    (used in deadletter records and as a metric label), `detail` says why."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


INVALID_REASONS = (
    "oversized",
    "empty",
    "malformed",
    "unknown_type",
    "schema_violation",
    "missing_subject",
    "key_mismatch",
    "bad_timestamp",
    "bad_time_zone",
    "future_consent",
    "unknown_topic",
)

_decoders = {kind: msgspec.json.Decoder(cls) for kind, cls in EVENT_TYPES_BY_TOPIC.items()}
_encoder = msgspec.json.Encoder()


def encode(record: msgspec.Struct) -> bytes:
    """JSON bytes of any schema record."""
    return _encoder.encode(record)


def decode_event(
    kind: str, value: bytes | None, key: bytes | None, now: datetime, *, check_key: bool = True
) -> Event:
    """Decode and validate one message from the input topic of `kind`.

    `now` is the processing clock, used to reject impossible event times.
    `check_key=False` skips the key rule, for events that arrive without a
    Kafka message (the dry-run API). Raises InvalidEvent, never anything else.
    """
    decoder = _decoders.get(kind)
    if decoder is None:
        raise InvalidEvent("unknown_topic", f"no input topic kind {kind!r}")
    if not value:
        raise InvalidEvent("empty", "message has no value")
    if len(value) > MAX_EVENT_BYTES:
        raise InvalidEvent("oversized", f"{len(value)} bytes > {MAX_EVENT_BYTES}")
    try:
        event = decoder.decode(value)
    except msgspec.ValidationError as exc:
        message = str(exc)
        if message.endswith("at `$.type`") or "missing required field `type`" in message:
            raise InvalidEvent("unknown_type", message) from None
        raise InvalidEvent("schema_violation", message) from None
    except (msgspec.DecodeError, RecursionError, UnicodeDecodeError) as exc:
        raise InvalidEvent("malformed", str(exc)[:200]) from None
    _check_event(event, key, now, check_key)
    return event


def _check_event(event: Event, key: bytes | None, now: datetime, check_key: bool) -> None:
    """Checks that need more than one field or the clock."""
    subject = event.subject_id
    if subject is None:
        raise InvalidEvent("missing_subject", "neither customer_id nor anonymous_id")
    if check_key and key != subject.encode():
        raise InvalidEvent(
            "key_mismatch",
            "message key must equal the event's subject id "
            "(customer_id, else anonymous_id; anonymous_id for identity events)",
        )
    if not (now - MAX_PAST <= event.ts <= now + MAX_FUTURE):
        raise InvalidEvent("bad_timestamp", f"ts {event.ts.isoformat()} is implausible")
    if isinstance(event, PreferencesEvent):
        if isinstance(event.snooze_until, datetime) and not _in_utc_range(event.snooze_until):
            # e.g. 9999-12-31T23:59:59-23:59: once stored, turning it back into
            # a date raised ValueError (the explain API's summary of the customer).
            raise InvalidEvent("bad_timestamp", "snooze_until is outside the years 1-9999 in UTC")
        quiet = event.quiet_hours
        if quiet and not _is_time_zone(quiet.tz):
            raise InvalidEvent("bad_time_zone", "quiet_hours.tz is not an IANA zone")
    zone = getattr(event, "time_zone", None)
    if isinstance(zone, str) and not _is_time_zone(zone):
        raise InvalidEvent("bad_time_zone", "time_zone is not an IANA zone")


def _in_utc_range(moment: datetime) -> bool:
    """Whether a time with an offset is still a datetime once in UTC."""
    try:
        moment.astimezone(UTC)
    except OverflowError:
        return False
    return True


@functools.lru_cache(maxsize=1024)
def _is_time_zone(name: str) -> bool:
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        return False
    return True
