"""Uplift: how much a message changes the chance of an order, not how likely
the person is to respond anyway.

A propensity model learns who responds to messages; the people most likely
to respond are often those who were about to order without one, so ranking
by propensity spends messages where they add least. The holdout answers the
question a propensity model cannot: its members get no marketing, and for
each trigger the engine logs what they would have been sent (`would_be`).
Both arms are labelled the same way (an order within the label window) and a
two-model T-learner estimates the uplift as

    P(order | x, message) - P(order | x, no message)

with one StandardScaler -> LogisticRegression per arm, like the propensity
model, so each folds into one dot product for serving (models.scorer).

Qini and uplift-at-k measure how well a ranking finds the people a message
moves, on held-out decisions of both arms; the same measure applied to the
propensity model's ranking says whether uplift is worth serving.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.pipeline import Pipeline

from nudge.errors import UserError

#: Each arm needs this many examples, with both outcomes, to fit a model.
MIN_ARM_EXAMPLES = 30
UPLIFT_AT = (0.1, 0.3, 1.0)  # shares of the ranking for uplift-at-k
#: Uplift-at-k is reported only where the slice holds this many of each arm.
MIN_SLICE_ARM = 20
BOOTSTRAP = 200  # resamples for the Qini coefficient's interval


class UpliftError(UserError):
    """The examples cannot train an uplift model (an arm is too small or one-class)."""


@dataclass(frozen=True)
class UpliftModel:
    """Two response models, with a message (treatment) and without (control)."""

    treatment: Pipeline
    control: Pipeline

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Estimated change in the chance of an order, in [-1, 1], per row."""
        return self.treatment.predict_proba(X)[:, 1] - self.control.predict_proba(X)[:, 1]


def fit_uplift(X: np.ndarray, y: np.ndarray, treated: np.ndarray, C: float = 1.0) -> UpliftModel:
    """T-learner: fit one logistic regression per arm on the same features."""
    from nudge.models.training import fit_propensity  # the same pipeline, one per arm

    models = {}
    for name, mask in (("treatment", treated), ("control", ~treated)):
        labels = y[mask]
        if len(labels) < MIN_ARM_EXAMPLES or len(set(labels.tolist())) < 2:
            raise UpliftError(
                f"the {name} arm has {len(labels)} examples with"
                f" {int(labels.sum())} orders: at least {MIN_ARM_EXAMPLES} with both"
                " outcomes are needed"
            )
        models[name] = fit_propensity(X[mask], labels, C=C)
    return UpliftModel(models["treatment"], models["control"])


def qini_curve(
    score: np.ndarray, y: np.ndarray, treated: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Points (k, Q(k)) of the Qini curve, highest score first.

    Q(k) = orders of the treated among the top k, minus the control's orders
    among them scaled to the treated count: the incremental orders of treating
    the top k. Tied scores form one point, so a ranking gains nothing from
    the order of its ties; the curve starts at (0, 0).
    """
    order = np.argsort(-score, kind="stable")
    s, y_sorted, t = score[order], y[order].astype(float), treated[order].astype(bool)
    n_t, n_c = np.cumsum(t), np.cumsum(~t)
    y_t, y_c = np.cumsum(y_sorted * t), np.cumsum(y_sorted * ~t)
    ends = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # last index of each tie group
    with np.errstate(divide="ignore", invalid="ignore"):
        scaled = np.where(n_c[ends] > 0, y_c[ends] * n_t[ends] / n_c[ends], 0.0)
    q = y_t[ends] - scaled
    return np.r_[0.0, ends + 1.0], np.r_[0.0, q]


def qini_coefficient(score: np.ndarray, y: np.ndarray, treated: np.ndarray) -> float:
    """Area between the Qini curve and random targeting's straight line, over
    N squared: the average gain, per person, of targeting by this ranking
    over targeting at random, across all depths. 0 is random, higher is better."""
    k, q = qini_curve(score, y, treated)
    n = k[-1]
    area = float(np.sum((k[1:] - k[:-1]) * (q[1:] + q[:-1]) / 2.0))
    return float((area - n * q[-1] / 2.0) / n**2)


def uplift_at(
    score: np.ndarray, y: np.ndarray, treated: np.ndarray, share: float, min_arm: int = 1
) -> float | None:
    """Order rate of the treated minus the control's, among the top `share`
    by score; None when that slice has fewer than `min_arm` of an arm."""
    top = np.argsort(-score, kind="stable")[: max(1, round(share * len(score)))]
    t, outcome = treated[top].astype(bool), y[top].astype(float)
    if min(t.sum(), (~t).sum()) < min_arm:
        return None
    return float(outcome[t].mean() - outcome[~t].mean())


def _resamples(n: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, n, n) for _ in range(BOOTSTRAP)]


def qini_gain(
    y: np.ndarray, treated: np.ndarray, better: np.ndarray, than: np.ndarray, seed: int = 0
) -> tuple[float, float, float]:
    """How much higher one ranking's Qini coefficient is than another's on the
    same examples, with a 95% paired bootstrap interval: (gain, low, high)."""
    spread = [
        qini_coefficient(better[i], y[i], treated[i]) - qini_coefficient(than[i], y[i], treated[i])
        for i in _resamples(len(y), seed)
    ]
    low, high = np.percentile(spread, [2.5, 97.5])
    gain = qini_coefficient(better, y, treated) - qini_coefficient(than, y, treated)
    return gain, float(low), float(high)


def compare(
    y: np.ndarray, treated: np.ndarray, rankings: dict[str, np.ndarray], seed: int = 0
) -> dict[str, dict[str, float | None]]:
    """Qini coefficient (with a 95% bootstrap interval, the same resamples for
    every ranking) and uplift-at-k of each ranking on the same examples."""
    resamples = _resamples(len(y), seed)
    table: dict[str, dict[str, float | None]] = {}
    for name, score in rankings.items():
        spread = [qini_coefficient(score[i], y[i], treated[i]) for i in resamples]
        low, high = np.percentile(spread, [2.5, 97.5])
        row: dict[str, float | None] = {
            "qini": round(qini_coefficient(score, y, treated), 6),
            "qini_low": round(float(low), 6),
            "qini_high": round(float(high), 6),
        }
        for share in UPLIFT_AT:
            value = uplift_at(score, y, treated, share, MIN_SLICE_ARM)
            row[f"uplift_at_{share:g}"] = None if value is None else round(value, 4)
        table[name] = row
    return table
