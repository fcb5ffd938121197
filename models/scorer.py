"""The trained propensity model behind the policy's Scorer protocol.

The engine calls `propensities` once per decision with every candidate, so
the cost is one feature matrix and one matrix-vector product. The artifact's
StandardScaler -> LogisticRegression pipeline is folded into a single weight
vector and bias at load time: the result equals the pipeline's predict_proba
(a unit test holds them to 1e-12), without the ~250 µs of input validation
scikit-learn spends on every call, which would dominate a decision.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.special import expit
from sklearn.pipeline import Pipeline

from nudge.models.artifact import Artifact
from nudge.models.features import FeatureBuilder
from nudge.models.personas import FoldedPersonas
from nudge.policy.scoring import ScoringRequest
from nudge.policy.state import CustomerState


class ModelScorer:
    """Scores candidates with one artifact; `version` names it in every action.

    With an uplift model in the artifact it is an UpliftScorer: the uplift is
    the difference of two folded pipelines, computed on the same matrix."""

    def __init__(self, artifact: Artifact, features: FeatureBuilder) -> None:
        self.version = artifact.version
        self.features = features
        self.weights, self.bias = fold(artifact.propensity)
        # (treatment, control) weight and bias: the T-learner's two arms
        self.uplift: tuple[tuple[np.ndarray, float], tuple[np.ndarray, float]] | None = None
        if artifact.uplift is not None:
            self.uplift = (fold(artifact.uplift.treatment), fold(artifact.uplift.control))
        # Learned purchase cycles (policy/cycles.py asks them); None: fixed cooldowns.
        self.cycles = artifact.cycles
        # The persona model, folded for the hot path; None: no persona is assigned.
        self.personas = FoldedPersonas(artifact.personas) if artifact.personas else None

    def persona(self, state: CustomerState, now: float) -> str | None:
        """The person's persona key (policy/personas.py); None without a model."""
        return self.personas.assign(state, now) if self.personas is not None else None

    def propensities(self, requests: Sequence[ScoringRequest]) -> list[float]:
        if not requests:
            return []
        return expit(self.features.matrix(requests) @ self.weights + self.bias).tolist()

    def propensities_and_uplifts(
        self, requests: Sequence[ScoringRequest]
    ) -> tuple[list[float], list[float] | None]:
        if self.uplift is None:
            return self.propensities(requests), None
        if not requests:
            return [], []
        X = self.features.matrix(requests)
        (w_t, b_t), (w_c, b_c) = self.uplift
        uplift = expit(X @ w_t + b_t) - expit(X @ w_c + b_c)
        return expit(X @ self.weights + self.bias).tolist(), uplift.tolist()


def fold(pipeline: Pipeline) -> tuple[np.ndarray, float]:
    """StandardScaler -> LogisticRegression as one weight vector and bias."""
    scaler, logistic = pipeline[0], pipeline[-1]
    mean = scaler.mean_ if scaler.with_mean else 0.0
    scale = scaler.scale_ if scaler.with_std else 1.0
    coef = logistic.coef_[0]
    return coef / scale, float(logistic.intercept_[0] - np.dot(coef, mean / scale))
