"""Test your catalog and policy without Kafka: events in, outputs and state out.

`Driver` runs the worker's own per-message loop (policy.inmemory.InMemoryWorker,
around the same `Processor` the Faust agent calls) on in-memory tables, with
a processing clock the test moves. What a worker would publish comes back as
decoded records, tagged with the output topic (without prefix) they would go
to; invalid input comes back as a deadletter record with its reason, as live.
No broker, no Faust, no threads: the same calls give the same outputs.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec

from nudge.config import CATALOG, EXPERIMENTS, POLICY, shipped
from nudge.policy.config import Catalog, ContactPolicy, load_catalog, load_policy
from nudge.policy.engine import Engine
from nudge.policy.experiments import load_experiments
from nudge.policy.inmemory import LOOPBACK_KINDS, InMemoryWorker, event_key
from nudge.policy.processor import Result
from nudge.policy.scoring import Scorer
from nudge.policy.state import CustomerState
from nudge.schemas.outputs import (
    Action,
    ConsentLogEntry,
    DeadLetter,
    ErasureConfirmation,
    Suppression,
)

#: Where a driver's clock starts unless told: a Monday at noon UTC (13:00 in
#: Berlin, outside the shipped quiet hours). Fixed, so a test's run is too.
START = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)

Record = Action | Suppression | DeadLetter | ConsentLogEntry | ErasureConfirmation

_types: dict[str, type[Record]] = {
    "actions": Action,
    "suppressions": Suppression,
    "deadletter": DeadLetter,
    "consent-log": ConsentLogEntry,
    "erasures": ErasureConfirmation,
}
_decoders = {kind: msgspec.json.Decoder(cls) for kind, cls in _types.items()}
_json = msgspec.json.Encoder()


@dataclass(frozen=True, slots=True)
class Output:
    """One message the worker would publish: `kind` is its topic without the
    prefix (`actions`, `actions.email`, `suppressions`, `deadletter`, ...)."""

    kind: str
    key: bytes | None
    value: Record


class Outputs(list[Output]):
    """Messages in the order the worker would publish them. `results` are
    the Processor's results they came from, for what is not published
    (Result.dropped, .duplicate, .outcome.held ...)."""

    def __init__(self, outputs: Iterable[Output] = (), results: Iterable[Result] = ()) -> None:
        super().__init__(outputs)
        self.results = list(results)

    def of(self, kind: str) -> list[Record]:
        """The records published to one output topic."""
        return [output.value for output in self if output.kind == kind]

    @property
    def actions(self) -> list[Action]:
        return self.of("actions")  # type: ignore[return-value]

    @property
    def suppressions(self) -> list[Suppression]:
        return self.of("suppressions")  # type: ignore[return-value]

    @property
    def deadletters(self) -> list[DeadLetter]:
        return self.of("deadletter")  # type: ignore[return-value]

    @property
    def consent_log(self) -> list[ConsentLogEntry]:
        return self.of("consent-log")  # type: ignore[return-value]

    @property
    def erasures(self) -> list[ErasureConfirmation]:
        return self.of("erasures")  # type: ignore[return-value]


class Driver:
    """A nudge worker in memory, for tests of a catalog, a policy or a scorer.

    `catalog`, `policy`: files or loaded objects, the shipped ones if None;
    `experiments`: an experiments file, none if None; `scorer`: the heuristic
    one if None; `erasure_key`: keys erasure markers (NUDGE_ERASURE_KEY). The
    clock starts at `start` and moves only by `advance`.
    """

    def __init__(
        self,
        catalog: Catalog | Path | str | None = None,
        policy: ContactPolicy | Path | str | None = None,
        scorer: Scorer | None = None,
        *,
        experiments: Path | str | None = None,
        start: datetime = START,
        erasure_key: bytes | None = None,
    ) -> None:
        if not isinstance(catalog, Catalog):
            catalog = load_catalog(catalog or shipped(CATALOG))
        if not isinstance(policy, ContactPolicy):
            policy = load_policy(policy or shipped(POLICY))
        arms = load_experiments(experiments or shipped(EXPERIMENTS), catalog, policy)
        engine = Engine(catalog, policy, scorer, arms)
        self.worker = InMemoryWorker(engine, erasure_key=erasure_key)
        self.emitted = Outputs()
        self._now = start.astimezone(UTC)
        self._ids = itertools.count(1)

    @property
    def now(self) -> datetime:
        """The worker's processing clock (UTC)."""
        return self._now

    def advance(self, by: timedelta | float) -> Outputs:
        """Move the clock forward by `by` (seconds, if a number). Held actions
        that fall due on the way are released, each as of its due time, as
        the worker's hold timer releases them: their outputs are returned."""
        return self.advance_to(
            self._now + (by if isinstance(by, timedelta) else timedelta(seconds=by))
        )

    def advance_to(self, moment: datetime) -> Outputs:
        """Move the clock forward to `moment`, as `advance` does."""
        if moment < self._now:
            raise ValueError(f"the clock only moves forward: it is {self._now}, not {moment}")
        self._now = moment.astimezone(UTC)
        return self._publish(self.worker.release_due(self._now, as_of_due=True))

    def send(self, kind: str, event: dict[str, Any] | bytes, key: bytes | None = None) -> Outputs:
        """Process one message of input topic `kind` (without prefix) at `now`,
        as a worker reads it: an event dict, or raw bytes as they would arrive.
        `key` defaults to the one the contract asks for (`event_key`).
        Returns what it led to, including the outputs of what it sent to the
        worker's own topics (an identity merge, a logged-in visitor's event,
        erasures of linked ids). Input nudge rejects comes back as a
        deadletter record; an unexpected exception (a bug, which the worker
        would deadletter as `internal_error`) is raised, for the test to see."""
        if isinstance(event, bytes):
            value = event
        else:
            value = _json.encode(event)
            key = event_key(event) if key is None else key
        return self._publish(self.worker.feed(kind, key, value, self._now))

    def event(self, type: str, customer_id: str | None = None, **fields: Any) -> dict[str, Any]:
        """An event dict of `type` stamped `now`, with a fresh event id
        (`e1`, `e2`, ...); `fields` add to or override it."""
        event: dict[str, Any] = {"event_id": f"e{next(self._ids)}", "type": type}
        if customer_id is not None:
            event["customer_id"] = customer_id
        event["ts"] = self._now.isoformat().replace("+00:00", "Z")
        event.update(fields)
        return event

    def outputs(self, kind: str) -> list[Record]:
        """Every record published to output topic `kind` so far."""
        return self.emitted.of(kind)

    def state(self, customer_id: str) -> CustomerState:
        """The customer's state as the worker's tables hold it (empty if none)."""
        return self.worker.state(customer_id)

    def stored(self, key: str) -> dict[str, bytes]:
        """The bytes the worker's tables hold under `key` (table -> value):
        nothing, for a customer who was erased."""
        return {table: raw for table, raw in self.worker.load(key).items() if raw is not None}

    def _publish(self, results: list[Result]) -> Outputs:
        outputs = Outputs(
            (
                Output(e.kind, e.key, _decoders[e.kind.partition(".")[0]].decode(e.value))
                for result in results
                for e in result.emits
                if e.kind not in LOOPBACK_KINDS
            ),
            results,
        )
        self.emitted += outputs
        self.emitted.results += outputs.results
        return outputs
