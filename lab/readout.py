"""The readout of experiments from an event log: what each arm adds over its holdout.

Who counts, and from when. A person enters the readout at their first
decision that sends marketing (treatment) or would have (holdout: a
suppression naming `would_be`). Until that moment a person's history does not
depend on their holdout arm, so the moment of entry is no result of being
treated, and the treated and the held-out people who enter are alike: their
orders after entry differ only by what the messages did. Orders before entry
are not counted. Each arm is compared with its own holdout (holdout people
are drawn independently of the experiment, and their would-be decisions come
from the arm's catalog and policy), which is the control the arm's entry
rule matches. People in no experiment form one more row.

The estimate: incremental conversions = (treated orders per person - holdout
orders per person) x treated people, with a normal (Welch) confidence
interval of the difference in means. With few people, or an interval that
spans zero, the row says the sample is too small to tell.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import datetime
from statistics import NormalDist
from typing import Any

from nudge.schemas.eventlog import LoggedEvent

#: Fewer people than this in an arm or its holdout: the normal interval is
#: not to be trusted, whatever it says.
MIN_PEOPLE = 30
NO_EXPERIMENT = "-"


@dataclass(slots=True)
class Entry:
    """Where and when a person entered the readout."""

    group: tuple[str, str]  # (experiment, arm); NO_EXPERIMENT for neither
    holdout: bool
    at: float


@dataclass(slots=True)
class ArmReadout:
    """One experiment arm against its holdout."""

    experiment: str
    arm: str
    people: int  # treated people who entered
    messages: int  # marketing actions they were sent after entering
    conversions: int  # their orders after entering
    holdout_people: int
    holdout_conversions: int
    incremental: float  # conversions the messages added, over the holdout's rate
    low: float  # confidence interval of `incremental`
    high: float
    confidence: float
    note: str  # empty, or why the figures cannot tell

    def as_dict(self) -> dict[str, Any]:
        """The row for JSON: an estimate that cannot be made is null."""
        return {
            k: None if isinstance(v, float) and math.isnan(v) else v
            for k, v in asdict(self).items()
        }


def difference_interval(
    treated: list[float], control: list[float], confidence: float = 0.95
) -> tuple[float, float, float]:
    """Difference of means (treated - control) and its normal interval, with
    each group's own variance (Welch). Needs two values in each group."""
    n_t, n_c = len(treated), len(control)
    mean_t, mean_c = sum(treated) / n_t, sum(control) / n_c
    var_t = sum((x - mean_t) ** 2 for x in treated) / (n_t - 1)
    var_c = sum((x - mean_c) ** 2 for x in control) / (n_c - 1)
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    half = z * math.sqrt(var_t / n_t + var_c / n_c)
    diff = mean_t - mean_c
    return diff, diff - half, diff + half


class Readout:
    """Reads an event log's records in order (`add`), then reports per arm."""

    def __init__(self) -> None:
        self.entries: dict[str, Entry] = {}
        self.orders: dict[str, list[float]] = {}
        self.messages: dict[str, list[float]] = {}
        self.alias: dict[str, str] = {}  # anonymous id -> customer id
        self.seen_orders: set[tuple[str, str]] = set()

    def add(self, kind: str, event: dict[str, Any]) -> None:
        """One log record; other kinds (clicks, consent, feedback ...) change nothing."""
        if kind == "identity":
            if event.get("anonymous_id") and event.get("customer_id"):
                self.alias[event["anonymous_id"]] = event["customer_id"]
        elif kind == "purchases":
            subject = event.get("customer_id") or event.get("anonymous_id")
            order = event.get("order_id") or event.get("event_id")
            if subject and (subject, order) not in self.seen_orders:  # a resent order counts once
                self.seen_orders.add((subject, order))
                self.orders.setdefault(subject, []).append(_time(event["ts"]))
        elif kind == "actions" and event.get("message_class") == "marketing":
            self._enter(event, holdout=False)
            self.messages.setdefault(event["customer_id"], []).append(_decided(event))
        elif kind == "suppressions" and event.get("would_be"):
            self._enter(event, holdout=True)

    def _enter(self, decision: dict[str, Any], holdout: bool) -> None:
        subject = decision["customer_id"]
        if subject in self.entries:
            return
        ref = decision.get("experiment") or {}
        group = (ref.get("name", NO_EXPERIMENT), ref.get("arm", NO_EXPERIMENT))
        held = holdout or decision.get("experiment_arm") == "holdout"
        self.entries[subject] = Entry(group, held, _decided(decision))

    def report(self, confidence: float = 0.95) -> list[ArmReadout]:
        """One row per (experiment, arm), in name order."""
        people = self._people()
        groups: dict[tuple[str, str], dict[bool, list[str]]] = {}
        for person, entry in people.items():
            groups.setdefault(entry.group, {True: [], False: []})[entry.holdout].append(person)
        rows = []
        for (experiment, arm), members in sorted(groups.items()):
            treated, held = members[False], members[True]
            counts = [self._after(self.orders, p, people[p].at) for p in treated]
            control = [self._after(self.orders, p, people[p].at) for p in held]
            sent = sum(self._after(self.messages, p, people[p].at, inclusive=True) for p in treated)
            rows.append(_row(experiment, arm, counts, control, sent, confidence))
        return rows

    def _people(self) -> dict[str, Entry]:
        """Entries and activity moved from anonymous ids to their customer;
        where a person entered under both, the earlier entry counts."""
        people: dict[str, Entry] = {}
        for subject, entry in sorted(self.entries.items(), key=lambda item: item[1].at):
            people.setdefault(self._customer(subject), entry)
        for table in (self.orders, self.messages):
            for subject in [s for s in table if s in self.alias]:
                table.setdefault(self._customer(subject), []).extend(table.pop(subject))
        return people

    def _customer(self, subject: str) -> str:
        seen = {subject}
        while subject in self.alias and self.alias[subject] not in seen:
            subject = self.alias[subject]
            seen.add(subject)
        return subject

    @staticmethod
    def _after(
        times: dict[str, list[float]], person: str, at: float, inclusive: bool = False
    ) -> int:
        return sum(1 for t in times.get(person, ()) if t > at or (inclusive and t == at))


def _row(
    experiment: str,
    arm: str,
    counts: list[int],
    control: list[int],
    sent: int,
    confidence: float,
) -> ArmReadout:
    n = len(counts)
    row = ArmReadout(
        experiment=experiment,
        arm=arm,
        people=n,
        messages=sent,
        conversions=sum(counts),
        holdout_people=len(control),
        holdout_conversions=sum(control),
        incremental=math.nan,
        low=math.nan,
        high=math.nan,
        confidence=confidence,
        note="",
    )
    if n < 2 or len(control) < 2:
        row.note = "too small to tell: needs people in both the arm and its holdout"
        return row
    diff, low, high = difference_interval(
        [float(c) for c in counts], [float(c) for c in control], confidence
    )
    row.incremental, row.low, row.high = diff * n, low * n, high * n
    if min(n, len(control)) < MIN_PEOPLE:
        row.note = f"too small to tell: fewer than {MIN_PEOPLE} people in the arm or its holdout"
    elif low <= 0 <= high:
        row.note = "too small to tell: the interval includes 0"
    return row


def _time(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def _decided(decision: dict[str, Any]) -> float:
    """When it was decided: an action held for quiet hours was decided at
    `held_at` (its `decided_at` is its release), as the holdout's would-be
    suppression of the same moment is; entering at the release would leave
    the night's orders out for the treated only."""
    return _time(decision.get("held_at") or decision["decided_at"])


def read(log: Iterable[LoggedEvent]) -> Readout:
    """A Readout of an event log's events, in log order."""
    readout = Readout()
    for logged in log:
        readout.add(logged.kind, logged.event)
    return readout
