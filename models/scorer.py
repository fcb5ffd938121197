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

from models.artifact import Artifact
from models.features import FeatureBuilder
from policy.scoring import ScoringRequest


class ModelScorer:
    """Scores candidates with one artifact; `version` names it in every action."""

    def __init__(self, artifact: Artifact, features: FeatureBuilder) -> None:
        self.version = artifact.version
        self.features = features
        scaler, logistic = artifact.propensity[0], artifact.propensity[-1]
        mean = scaler.mean_ if scaler.with_mean else 0.0
        scale = scaler.scale_ if scaler.with_std else 1.0
        coef = logistic.coef_[0]
        self.weights: np.ndarray = coef / scale
        self.bias = float(logistic.intercept_[0] - np.dot(coef, mean / scale))

    def propensities(self, requests: Sequence[ScoringRequest]) -> list[float]:
        if not requests:
            return []
        return expit(self.features.matrix(requests) @ self.weights + self.bias).tolist()
