"""One input message in, table writes and output messages out.

This is the whole per-message pipeline minus the transport: decode and
validate (bad input becomes a deadletter record), load state, run the engine,
encode what changed. The Faust agent, the offline replay and the tests share
it, so they cannot disagree about a decision.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import msgspec

from nudge.policy.clock import DAY
from nudge.policy.engine import Engine, Outcome, Produced
from nudge.policy.erasure import (
    MARKER_TABLE,
    ErasureMarker,
    encode_marker,
    live_marker,
    marker_key,
)
from nudge.policy.identity import pointer
from nudge.policy.onsite import IMPRESSION_KIND, decode_impression
from nudge.policy.state import TABLES, CustomerState, decode_state, encode_profile, encode_state
from nudge.schemas.codec import MAX_EVENT_BYTES, InvalidEvent, decode_event, encode
from nudge.schemas.events import ConsentEvent, ErasureEvent, Event, IdentityEvent
from nudge.schemas.outputs import (
    Action,
    ConsentLogEntry,
    DeadLetter,
    ErasureConfirmation,
    Suppression,
)

#: Internal topic kind carrying an anonymous visitor's state to the customer.
MERGE_KIND = "identity-merges"
#: Internal topic kind carrying a logged-in visitor's later events to the
#: customer (policy/identity.py).
FORWARD_KIND = "identity-forwards"
#: Internal topic kind asking to release a customer's due held actions
#: (streams/holds.py sends it; nudge/replay.py feeds it in-process).
HOLDS_KIND = "holds-due"
#: The most of an input message's key and value a deadletter record keeps.
#: The broker accepts messages of up to about 1 MB, but a deadletter record
#: holding one whole (base64 adds a third) is over the producer's 1 MB limit:
#: its send failed, the agent crashed, and the message was neither
#: deadlettered nor committed. Anything valid is far smaller (an event is at
#: most MAX_EVENT_BYTES, an id 128 bytes), and the whole message stays at its
#: source topic, partition and offset.
DEADLETTER_KEEP_BYTES = MAX_EVENT_BYTES

StateLoader = Callable[[str], dict[str, bytes | None]]


class StateTransfer(msgspec.Struct, kw_only=True):
    """An anonymous visitor's state on its way to the customer's partition."""

    event: bytes  # the identity event, JSON
    parts: dict[str, bytes]


class ForwardedEvent(msgspec.Struct, kw_only=True):
    """An event of a visitor who has logged in, on its way to the customer."""

    kind: str  # the input topic kind it arrived on
    event: bytes  # as it arrived, JSON


@dataclass(slots=True)
class Emit:
    """A message to publish: `kind` names the output topic without prefix."""

    kind: str
    key: bytes | None
    value: bytes


@dataclass(slots=True)
class Result:
    """Everything the transport must do for one input message, and what
    happened, for metrics."""

    writes: dict[str, bytes | None] = field(default_factory=dict)  # table -> value (None: delete)
    # Writes to keys other than `subject` (an erasure marker): key -> table -> value.
    other_writes: dict[str, dict[str, bytes | None]] = field(default_factory=dict)
    dropped: str | None = None  # not applied (`erased`), counted
    forwarded: bool = False  # a logged-in visitor's event, sent on to the customer
    emits: list[Emit] = field(default_factory=list)
    event_type: str | None = None
    invalid_reason: str | None = None
    duplicate: bool = False
    outcome: Outcome | None = None
    decide_seconds: float = 0.0
    subject: str | None = None
    # When the subject's next held action is due (epoch seconds), None if
    # nothing is held: the worker's timer (streams/holds.py) and a replay
    # release it then. `event_time` is the input event's own time.
    next_due: float | None = None
    event_time: float | None = None


class HoldsDue(msgspec.Struct, kw_only=True):
    """Release the key's held actions due by `at` (epoch seconds): the time
    a worker with the event clock, or a replay, releases them at."""

    at: float


_transfer_encoder = msgspec.msgpack.Encoder()
_transfer_decoder = msgspec.msgpack.Decoder(StateTransfer)
_holds_due_decoder = msgspec.msgpack.Decoder(HoldsDue)
_holds_due_encoder = msgspec.msgpack.Encoder()
_identity_decoder = msgspec.json.Decoder(IdentityEvent)
_forward_decoder = msgspec.msgpack.Decoder(ForwardedEvent)
_forward_encoder = msgspec.msgpack.Encoder()


class Processor:
    """Turns raw messages into writes and emits, using an Engine.

    With `event_clock`, each event is decided as of its own time (`now` only
    judges whether that time is plausible): an offline replay and a worker
    with NUDGE_CLOCK=event then make the same decisions on the same events."""

    def __init__(
        self, engine: Engine, *, event_clock: bool = False, erasure_key: bytes | None = None
    ) -> None:
        self.engine = engine
        self.event_clock = event_clock
        self.erasure_key = erasure_key  # keys the erasure markers (policy/erasure.py)

    def process(
        self,
        kind: str,
        key: bytes | None,
        value: bytes | None,
        source: tuple[str, int, int],
        load: StateLoader,
        now: datetime,
        produced: Produced | None = None,
    ) -> Result:
        """`source` is (topic, partition, offset) for deadletter records;
        `produced` tells which actions reached Kafka (Engine.process)."""
        if kind == MERGE_KIND:
            return self._merge(key, value, source, load, now)
        if kind == IMPRESSION_KIND:
            return self._impression(key, value, source, load, now)
        if kind == HOLDS_KIND:
            return self._release(key, value, source, load, now)
        forwarded = kind == FORWARD_KIND
        try:
            if forwarded:
                event = self._forwarded_event(key, value, now)
            else:
                event = decode_event(kind, value, key, now)
        except InvalidEvent as exc:
            return self.deadletter(key, value, source, exc.reason, exc.detail, now)
        except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError) as exc:
            return self.deadletter(key, value, source, "malformed", str(exc)[:200], now)
        skew = self._consent_from_the_future(event, now)
        if skew is not None:
            return self.deadletter(key, value, source, "future_consent", skew, now)
        if self.event_clock:
            now = event.ts.astimezone(UTC)
        subject = event.subject_id or ""
        started = time.perf_counter()
        parts = load(subject)
        state = decode_state(parts)
        if not parts.get("profile"):  # no state: perhaps erased (policy/erasure.py)
            marker = self._marker(subject, load, now.timestamp())
            if marker is not None:
                state.profile.erased_at = marker.erased_at
        outcome = self.engine.process(
            state, event, now, subject, produced=produced, release_as_of_due=self.event_clock
        )
        result = Result(
            event_type=getattr(event, "type", None),
            duplicate=outcome.duplicate,
            outcome=outcome,
            subject=subject,
            event_time=event.ts.timestamp(),
            dropped=outcome.dropped,
        )
        if outcome.dropped:
            return result
        if outcome.forward_to:
            forward = ForwardedEvent(kind=kind, event=value or b"")
            result.forwarded = True
            result.emits.append(
                Emit(FORWARD_KIND, outcome.forward_to.encode(), _forward_encoder.encode(forward))
            )
            return result
        if outcome.erase:
            result.writes = dict.fromkeys(TABLES)
            self._leave_marker(subject, event, outcome, result)
        elif outcome.transfer_to:
            result.writes = dict.fromkeys(TABLES)
            result.writes["profile"] = encode_profile(pointer(state.profile, outcome.transfer_to))
        else:
            result.writes = _writes(state)
            result.next_due = _next_due(state)
        if outcome.transfer_to:
            transfer = StateTransfer(event=encode(event), parts=encode_state(state, set(TABLES)))
            result.emits.append(
                Emit(MERGE_KIND, outcome.transfer_to.encode(), _transfer_encoder.encode(transfer))
            )
        self._emit_outcome(outcome, subject.encode(), result)
        result.decide_seconds = time.perf_counter() - started
        return result

    def _forwarded_event(self, key: bytes | None, value: bytes | None, now: datetime) -> Event:
        """A logged-in visitor's event, as the customer's (the key)."""
        forward = _forward_decoder.decode(value or b"")
        event = decode_event(forward.kind, forward.event, None, now, check_key=False)
        customer = (key or b"").decode()
        if not customer:
            raise InvalidEvent("missing_subject", "forwarded event without a customer key")
        return msgspec.structs.replace(event, customer_id=customer)

    def _marker(self, subject: str, load: StateLoader, at: float) -> ErasureMarker | None:
        raw = load(marker_key(subject, self.erasure_key)).get(MARKER_TABLE)
        return live_marker(raw, at)

    def _leave_marker(self, subject: str, event: Event, outcome: Outcome, result: Result) -> None:
        """What an erasure leaves: a marker under a keyed hash of the id, and
        an erasure request for every id linked to the person."""
        erased_at = event.ts.timestamp()
        days = self.engine.policy.erasure_marker_days
        marker = ErasureMarker(erased_at=erased_at, expires_at=erased_at + days * DAY)
        key = marker_key(subject, self.erasure_key)
        result.other_writes[key] = {MARKER_TABLE: encode_marker(marker)}
        for n, linked in enumerate(outcome.erased_linked):
            request = ErasureEvent(
                event_id=f"{event.event_id}.linked{n}",
                type="erasure",
                anonymous_id=linked,
                ts=event.ts,
            )
            result.emits.append(Emit("privacy", linked.encode(), encode(request)))

    def _consent_from_the_future(self, event: Event, now: datetime) -> str | None:
        """Why a consent change is stamped too far ahead to be trusted, if it is."""
        if not isinstance(event, ConsentEvent):
            return None
        ahead = (event.ts - now).total_seconds()
        bound = self.engine.policy.consent_max_future_minutes * 60
        if ahead <= bound:
            return None
        return f"ts is {ahead / 60:.0f} min ahead of the clock (at most {bound / 60:g} allowed)"

    def _merge(
        self,
        key: bytes | None,
        value: bytes | None,
        source: tuple[str, int, int],
        load: StateLoader,
        now: datetime,
    ) -> Result:
        try:
            transfer = _transfer_decoder.decode(value or b"")
            event = _identity_decoder.decode(transfer.event)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            return self.deadletter(key, value, source, "malformed", str(exc)[:200], now)
        if key != event.customer_id.encode():
            return self.deadletter(key, value, source, "key_mismatch", "merge key", now)
        target = decode_state(load(event.customer_id))
        merged = self.engine.merge(target, decode_state(transfer.parts), event)
        result = Result(event_type="merge", duplicate=not merged, subject=event.customer_id)
        result.writes = _writes(target)
        result.next_due = _next_due(target)
        return result

    def _release(
        self,
        key: bytes | None,
        value: bytes | None,
        source: tuple[str, int, int],
        load: StateLoader,
        now: datetime,
    ) -> Result:
        """Release the key's due held actions (Engine.release_due). A repeated
        or early request finds nothing due and changes nothing."""
        try:
            request = _holds_due_decoder.decode(value or b"")
            subject = (key or b"").decode()
        except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError) as exc:
            return self.deadletter(key, value, source, "malformed", str(exc)[:200], now)
        if not subject:
            return self.deadletter(key, value, source, "missing_subject", "release key", now)
        if self.event_clock:
            now = datetime.fromtimestamp(request.at, UTC)
        started = time.perf_counter()
        state = decode_state(load(subject))
        outcome = Outcome(released=self.engine.release_due(state, now, subject))
        result = Result(event_type="release", outcome=outcome, subject=subject)
        result.writes = _writes(state)
        result.next_due = _next_due(state)
        self._emit_outcome(outcome, key or b"", result)
        result.decide_seconds = time.perf_counter() - started
        return result

    def _impression(
        self,
        key: bytes | None,
        value: bytes | None,
        source: tuple[str, int, int],
        load: StateLoader,
        now: datetime,
    ) -> Result:
        """On-site content was shown (streams/onsite.py): count it as a contact."""
        try:
            impression = decode_impression(value or b"")
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            return self.deadletter(key, value, source, "malformed", str(exc)[:200], now)
        subject = impression.customer_id
        if key != subject.encode():
            return self.deadletter(key, value, source, "key_mismatch", "impression key", now)
        state = decode_state(load(subject))
        recorded = self.engine.record_impression(
            state, impression.action_id, impression.channel, impression.at, impression.decision_id
        )
        result = Result(event_type="impression", duplicate=not recorded, subject=subject)
        result.writes = _writes(state)
        return result

    def _emit_outcome(self, outcome: Outcome, key: bytes, result: Result) -> None:
        for decision in (*outcome.released, outcome.decision):
            if isinstance(decision, Action):
                payload = encode(decision)
                result.emits.append(Emit("actions", key, payload))
                result.emits.append(Emit(f"actions.{decision.channel}", key, payload))
            elif isinstance(decision, Suppression):
                result.emits.append(Emit("suppressions", key, encode(decision)))
        for record in outcome.records:
            if isinstance(record, ConsentLogEntry):
                result.emits.append(Emit("consent-log", key, encode(record)))
            elif isinstance(record, ErasureConfirmation):
                result.emits.append(Emit("erasures", key, encode(record)))

    @staticmethod
    def release_request(at: float) -> bytes:
        """The value of a HOLDS_KIND message: release what is due by `at`."""
        return _holds_due_encoder.encode(HoldsDue(at=at))

    @staticmethod
    def deadletter(
        key: bytes | None,
        value: bytes | None,
        source: tuple[str, int, int],
        reason: str,
        detail: str,
        now: datetime,
    ) -> Result:
        topic, partition, offset = source
        cut = [
            f"{name} cut to its first {DEADLETTER_KEEP_BYTES} of {len(data)} bytes"
            for name, data in (("key", key), ("value", value))
            if data is not None and len(data) > DEADLETTER_KEEP_BYTES
        ]
        if cut:
            key = key[:DEADLETTER_KEEP_BYTES] if key is not None else None
            value = value[:DEADLETTER_KEEP_BYTES] if value is not None else None
            detail = f"{detail} ({', '.join(cut)}; the whole message is at the source offset)"
        record = DeadLetter(
            source_topic=topic,
            partition=partition,
            offset=offset,
            key=key,
            value=value,
            reason=reason,
            error=detail,
            failed_at=now,
        )
        return Result(invalid_reason=reason, emits=[Emit("deadletter", key, encode(record))])


def _writes(state: CustomerState) -> dict[str, bytes | None]:
    """The changed tables' bytes; an emptied holds record is deleted, so the
    holds table holds only people with something held."""
    writes: dict[str, bytes | None] = dict(encode_state(state))
    if "holds" in writes and not state.holds.pending:
        writes["holds"] = None
    return writes


def _next_due(state: CustomerState) -> float | None:
    pending = state.holds.pending
    return pending[0].due if pending else None
