"""On-site impressions shown but not yet recorded by the agent.

An on-site answer is decided on a copy of the table state, and its
impression reaches the state only after a round trip through Kafka to the
agent (policy/onsite.py). Six requests within that round trip all saw the
state without the first impression, and all showed content: six contacts
against a cap of four and a six-hour cooldown. So the worker keeps the
impressions it returned for a while and lays them over the state before the
next decision for the same person.

Laying one over twice is harmless: `Engine.record_impression` records a
decision id once (the processed-id ring), so an impression the agent has
already recorded changes nothing. Entries expire after `ttl_s` (far longer
than the agent takes) and the total is bounded, oldest first.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

from nudge.policy.engine import Engine
from nudge.policy.onsite import Impression
from nudge.policy.state import CustomerState

#: Far longer than an impression takes to reach the agent; a lagging agent is
#: what the lag metric is for.
TTL_S = 300.0
MAX_PENDING = 100_000


class PendingImpressions:
    """Impressions this worker returned, by subject, until they expire."""

    def __init__(
        self,
        ttl_s: float = TTL_S,
        max_pending: int = MAX_PENDING,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl_s = ttl_s
        self.max_pending = max_pending
        self.clock = clock
        # decision id -> (returned at, impression); insertion order is age order.
        self._pending: OrderedDict[str, tuple[float, Impression]] = OrderedDict()
        self._by_subject: dict[str, list[str]] = {}

    def __len__(self) -> int:
        return len(self._pending)

    def add(self, impression: Impression) -> None:
        """Remember an impression about to be returned (before any await)."""
        self._expire()
        if len(self._pending) >= self.max_pending:
            self._drop_oldest()
        self._pending[impression.decision_id] = (self.clock(), impression)
        self._by_subject.setdefault(impression.customer_id, []).append(impression.decision_id)

    def lay_over(self, engine: Engine, state: CustomerState, subject: str) -> int:
        """Record this subject's pending impressions in `state` (a private
        copy); returns how many were new to it."""
        self._expire()
        laid = 0
        for decision_id in self._by_subject.get(subject, ()):
            _, impression = self._pending[decision_id]
            laid += engine.record_impression(
                state, impression.action_id, impression.channel, impression.at, decision_id
            )
        return laid

    def _expire(self) -> None:
        horizon = self.clock() - self.ttl_s
        while self._pending:
            returned_at, _ = next(iter(self._pending.values()))
            if returned_at > horizon:
                return
            self._drop_oldest()

    def _drop_oldest(self) -> None:
        decision_id, (_, impression) = self._pending.popitem(last=False)
        ids = self._by_subject.get(impression.customer_id, [])
        if decision_id in ids:
            ids.remove(decision_id)
        if not ids:
            self._by_subject.pop(impression.customer_id, None)
