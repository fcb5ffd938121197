"""Off-policy evaluation: how a candidate policy would have done, from logs.

A logged decision is a context (the person's state and the trigger), the
(action, channel) pair the logging policy picked with the probability it
picked it (Engine.choices; nothing sent: probability 1, since nudge suppresses
only when no pair passed every rule), and the reward: 1 if the decision led
to an attributed conversion, else 0. The candidate policy's probabilities of
every pair come from running the candidate engine on the same state
(lab/logged.py). Three estimators of the candidate's conversion rate per
decision:

- IPS: the mean of w * r, with w = pi(logged pair) / mu(logged pair).
  Unbiased where the logging policy gives every pair the candidate may pick a
  positive probability; high variance when weights are large.
- SNIPS: sum(w * r) / sum(w). Slightly biased, far less variance. Where the
  candidate would send nothing but the logging policy always sent, that
  chance joins the denominator as a known reward of 0 (no weight carries it).
- DR (doubly robust): a reward model q predicts each pair's reward; the
  estimate is the mean of sum_a pi(a) q(a) + w * (r - q(logged pair)).
  Unbiased if the probabilities are right, whatever q; lower variance the
  better q is. q here is the mean reward of each pair in the log, fitted on
  the other half of the people (cross-fitting, so no decision predicts
  itself); "nothing sent" has reward 0 by definition.

Intervals: 95%, normal approximation (CLT) with a cluster-robust variance,
one cluster per person, because decisions about the same person are not
independent (SNIPS by the delta method). Diagnostics say when to distrust
them: the effective sample size of the weights, the largest weight, and the
candidate's probability mass on pairs the logging policy never tried there
(no estimator here can see those; IPS and SNIPS count them as no reward;
sending nothing needs no support, its reward is known).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from nudge.policy.ids import hash64

Z95 = 1.959963984540054
#: A pair is "action_id@channel"; None: nothing sent.
Pair = str | None
#: Pseudo-decisions of prior (the log's mean reward of sent pairs) in q.
PRIOR_WEIGHT = 5.0


@dataclass(frozen=True, slots=True)
class LoggedDecision:
    """One decision: what the logging policy did and what the candidate would."""

    person: str  # the cluster: decisions about one person are correlated
    logged: Pair  # the pair the logging policy picked
    logging: dict[Pair, float]  # mu: its chance of every pair (sums to 1)
    target: dict[Pair, float]  # pi: the candidate's chance of every pair (sums to 1)
    reward: float  # 1: the decision led to an attributed conversion

    @property
    def weight(self) -> float:
        return self.target.get(self.logged, 0.0) / self.logging[self.logged]

    @property
    def unsupported(self) -> float:
        """The candidate's mass on sending pairs the logging policy could not
        pick here (nothing sent needs no support: its reward is known, 0)."""
        return sum(
            p for a, p in self.target.items() if a is not None and self.logging.get(a, 0.0) <= 0.0
        )

    @property
    def silent(self) -> float:
        """The candidate's chance of sending nothing where the logging policy
        surely sent something: a known reward of 0 that no weight carries."""
        return self.target.get(None, 0.0) if self.logging.get(None, 0.0) <= 0.0 else 0.0


@dataclass(frozen=True, slots=True)
class Estimate:
    method: str
    value: float
    low: float  # 95% interval
    high: float
    decisions: int

    def covers(self, truth: float) -> bool:
        return self.low <= truth <= self.high


@dataclass(frozen=True, slots=True)
class Diagnostics:
    decisions: int
    people: int
    effective_sample_size: float  # (sum w)^2 / sum w^2
    max_weight: float
    unsupported_mass: float  # mean over decisions

    def as_dict(self) -> dict[str, float]:
        return {
            "decisions": self.decisions,
            "people": self.people,
            "effective_sample_size": round(self.effective_sample_size, 1),
            "max_weight": round(self.max_weight, 2),
            "unsupported_mass": round(self.unsupported_mass, 5),
        }


def ips(decisions: Sequence[LoggedDecision]) -> Estimate:
    """Inverse propensity scoring."""
    terms = np.array([d.weight * d.reward for d in decisions])
    return _mean_estimate("IPS", terms, _people(decisions))


def snips(decisions: Sequence[LoggedDecision]) -> Estimate:
    """Self-normalised IPS, with a delta-method (linearised) variance."""
    _require(decisions)
    w = np.array([d.weight for d in decisions])
    r = np.array([d.reward for d in decisions])
    mass = w + np.array([d.silent for d in decisions])
    total = mass.sum()
    if total <= 0:  # the candidate never does what was logged: nothing to say
        return Estimate("SNIPS", float("nan"), float("nan"), float("nan"), len(decisions))
    value = float((w * r).sum() / total)
    influence = (w * r - mass * value) / mass.mean()
    se = _cluster_se(influence, _people(decisions))
    return Estimate("SNIPS", value, value - Z95 * se, value + Z95 * se, len(decisions))


def doubly_robust(decisions: Sequence[LoggedDecision], folds: int = 2) -> Estimate:
    """Doubly robust, with the cross-fitted mean-reward-per-pair model."""
    _require(decisions)
    q = cross_fitted_rewards(decisions, folds)
    terms = np.array(
        [
            sum(p * q_i(a) for a, p in d.target.items()) + d.weight * (d.reward - q_i(d.logged))
            for d, q_i in zip(decisions, q, strict=True)
        ]
    )
    return _mean_estimate("DR", terms, _people(decisions))


def on_policy(decisions: Sequence[LoggedDecision]) -> Estimate:
    """The plain mean reward: the logging policy's own rate, same interval."""
    terms = np.array([d.reward for d in decisions])
    return _mean_estimate("on-policy", terms, _people(decisions))


def estimate_all(decisions: Sequence[LoggedDecision]) -> list[Estimate]:
    return [ips(decisions), snips(decisions), doubly_robust(decisions)]


def diagnostics(decisions: Sequence[LoggedDecision]) -> Diagnostics:
    _require(decisions)
    w = np.array([d.weight for d in decisions])
    squares = float((w**2).sum())
    return Diagnostics(
        decisions=len(decisions),
        people=len({d.person for d in decisions}),
        effective_sample_size=float(w.sum() ** 2 / squares) if squares else 0.0,
        max_weight=float(w.max()),
        unsupported_mass=float(np.mean([d.unsupported for d in decisions])),
    )


def cross_fitted_rewards(
    decisions: Sequence[LoggedDecision], folds: int = 2
) -> list[Callable[[Pair], float]]:
    """For each decision, q(pair): the mean reward of that pair among the
    other folds' people (shrunk towards their mean reward of sent pairs);
    0 for nothing sent. Folds are drawn by hashing the person."""
    fold_of = [hash64(d.person) % folds for d in decisions]
    tables = []
    for fold in range(folds):
        sums: dict[Pair, list[float]] = defaultdict(lambda: [0.0, 0.0])
        for d, f in zip(decisions, fold_of, strict=True):
            if f != fold and d.logged is not None:
                sums[d.logged][0] += d.reward
                sums[d.logged][1] += 1.0
        reward = sum(s for s, _ in sums.values())
        count = sum(n for _, n in sums.values())
        prior = reward / count if count else 0.0
        table = {a: (s + PRIOR_WEIGHT * prior) / (n + PRIOR_WEIGHT) for a, (s, n) in sums.items()}
        tables.append((table, prior))
    return [_lookup(*tables[f]) for f in fold_of]


def _lookup(table: dict[Pair, float], prior: float) -> Callable[[Pair], float]:
    def q(pair: Pair) -> float:
        return 0.0 if pair is None else table.get(pair, prior)

    return q


def _mean_estimate(method: str, terms: np.ndarray, people: list[str]) -> Estimate:
    if not len(terms):
        raise ValueError("no decisions to estimate from")
    value = float(terms.mean())
    se = _cluster_se(terms - value, people)
    return Estimate(method, value, value - Z95 * se, value + Z95 * se, len(terms))


def _cluster_se(centred: np.ndarray, people: list[str]) -> float:
    """Standard error of a mean whose centred terms are given, clustered by
    person: sum the terms per person, then treat people as independent."""
    n = len(centred)
    sums: dict[str, float] = defaultdict(float)
    for person, term in zip(people, centred, strict=True):
        sums[person] += float(term)
    g = len(sums)
    if g < 2:
        return float("inf")
    totals = np.fromiter(sums.values(), dtype=float, count=g)
    return float(np.sqrt(g / (g - 1) * (totals**2).sum()) / n)


def _people(decisions: Sequence[LoggedDecision]) -> list[str]:
    return [d.person for d in decisions]


def _require(decisions: Sequence[LoggedDecision]) -> None:
    if not decisions:
        raise ValueError("no decisions to estimate from")
