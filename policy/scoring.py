"""Scorers estimate the chance that a nudge helps, for several options at once.

The policy depends only on the `Scorer` protocol, so a trained model
(models/) and this transparent heuristic are interchangeable.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from nudge.policy.config import CatalogAction
from nudge.policy.state import CustomerState
from nudge.policy.updates import profiling_allowed
from nudge.schemas.events import Event


@dataclass(frozen=True, slots=True)
class ScoringRequest:
    """One (action, channel) option for one person at one moment."""

    state: CustomerState
    event: Event
    action: CatalogAction
    category: str | None
    channel: str
    now: float


class Scorer(Protocol):
    """Anything that turns options into response probabilities, in one call."""

    version: str

    def propensities(self, requests: Sequence[ScoringRequest]) -> list[float]: ...


class UpliftScorer(Scorer, Protocol):
    """A scorer that may also estimate how much a message changes the chance
    of an order (its uplift). The engine then ranks candidates on expected
    incremental value, uplift x value x lever, instead of propensity x value
    x lever, and asks for both in one call. The uplifts are None when the
    scorer has no uplift model (then propensity ranks, as for any Scorer)."""

    def propensities_and_uplifts(
        self, requests: Sequence[ScoringRequest]
    ) -> tuple[list[float], list[float] | None]: ...


TRIGGER_BASE = {
    "checkout_started": 0.12,
    "add_to_cart": 0.08,
    "product_view": 0.04,
    "session_start": 0.03,
    "page_view": 0.02,
    "search": 0.03,
    "purchase": 0.05,
}


class HeuristicScorer:
    """A readable stand-in for a model: base rate of the trigger, lifted by
    interest in the category and by how the person engages on the channel,
    damped by ignored messages. Used until a model is trained, and as the
    fallback when a model cannot be loaded."""

    version = "heuristic-v1"

    def propensities(self, requests: Sequence[ScoringRequest]) -> list[float]:
        return [self._one(r) for r in requests]

    def _one(self, request: ScoringRequest) -> float:
        state = request.state
        fatigue = state.fatigue
        base = TRIGGER_BASE.get(getattr(request.event, "type", ""), 0.02)
        interest = 0.0
        if request.category and profiling_allowed(state, request.channel or None):
            score = state.recency.affinity.get(request.category, 0.0)
            interest = score / (score + 3.0)
        sent = fatigue.sent.get(request.channel, 0)
        engagement = (fatigue.engaged.get(request.channel, 0) + 1) / (sent + 4)
        propensity = base * (1 + 2 * interest) * (0.5 + 2 * engagement)
        propensity *= 0.8**fatigue.ignored_streak
        return min(0.95, max(0.001, propensity))
