"""Personas: groups of customers who behave alike, named after what sets
each group apart, so a marketer can read them.

KMeans runs on standardised behavioural descriptors of each customer's state;
a cluster centre is then a row of z-scores, and the descriptors furthest from
zero (the average customer) give the persona its name and description.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
from sklearn.base import BaseEstimator, ClusterMixin
from sklearn.cluster import KMeans
from sklearn.preprocessing import StandardScaler

from nudge.policy.clock import DAY
from nudge.policy.personas import key_of
from nudge.policy.state import CustomerState
from nudge.policy.updates import profiling_allowed

DESCRIPTORS: tuple[str, ...] = (
    "orders",  # log(1 + order count)
    "spend",  # log(1 + revenue)
    "basket",  # log(1 + revenue per order)
    "breadth",  # categories with interest or a purchase
    "engagement",  # share of messages that got a response, all channels
    "ignored_streak",
    "days_since_seen",
)

#: (descriptor, above average?) -> how a marketer would say it.
WORDS: dict[tuple[str, bool], str] = {
    ("orders", True): "frequent buyers",
    ("orders", False): "rare buyers",
    ("spend", True): "big spenders",
    ("spend", False): "small spenders",
    ("basket", True): "large baskets",
    ("basket", False): "small baskets",
    ("breadth", True): "explorers",
    ("breadth", False): "specialists",
    ("engagement", True): "responsive",
    ("engagement", False): "unresponsive",
    ("ignored_streak", True): "tuning out",
    ("ignored_streak", False): "attentive",
    ("days_since_seen", True): "lapsing",
    ("days_since_seen", False): "recently active",
}
AVERAGE_NAME = "Average customers"
DISTINCT = 0.5  # a centre this many standard deviations from average is distinctive


def descriptors(state: CustomerState, now: float) -> list[float]:
    """One customer's behaviour, in the order of DESCRIPTORS."""
    recency, fatigue = state.recency, state.fatigue
    sent = sum(fatigue.sent.values())
    engaged = sum(fatigue.engaged.values())
    seen = max(recency.last_seen.values(), default=0.0)
    return [
        math.log1p(recency.orders),
        math.log1p(recency.revenue),
        math.log1p(recency.revenue / recency.orders) if recency.orders else 0.0,
        float(len(set(recency.affinity) | set(recency.last_purchase))),
        (engaged + 1) / (sent + 4),
        float(fatigue.ignored_streak),
        min(365.0, (now - seen) / DAY) if seen else 365.0,
    ]


def profiled(states: Iterable[CustomerState]) -> list[CustomerState]:
    """Customers we may profile: identified, and not revoked profiling."""
    return [s for s in states if s.profile.identified and profiling_allowed(s)]


class PersonaModel(ClusterMixin, BaseEstimator):
    """KMeans on standardised descriptors, with a readable name per cluster."""

    def __init__(self, n_personas: int = 4, random_state: int = 0) -> None:
        self.n_personas = n_personas
        self.random_state = random_state

    def fit(self, X: np.ndarray, y: None = None) -> PersonaModel:
        n_clusters = min(self.n_personas, len(X))
        self.scaler_ = StandardScaler().fit(X)
        self.kmeans_ = KMeans(n_clusters=n_clusters, n_init=10, random_state=self.random_state)
        self.labels_ = self.kmeans_.fit_predict(self.scaler_.transform(X))
        sizes = np.bincount(self.labels_, minlength=n_clusters)
        self.personas_ = _describe(self.kmeans_.cluster_centers_, sizes)
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.kmeans_.predict(self.scaler_.transform(X))


class FoldedPersonas:
    """A fitted PersonaModel as plain lists: the nearest standardised centre in
    pure Python, the same cluster as `predict` (a unit test holds them equal)
    without scikit-learn's per-call validation, cheap enough to run on every
    event that changes someone's behaviour."""

    def __init__(self, model: PersonaModel) -> None:
        self.mean = [float(v) for v in model.scaler_.mean_]
        self.scale = [float(v) for v in model.scaler_.scale_]
        self.centres = [[float(v) for v in c] for c in model.kmeans_.cluster_centers_]
        self.keys = [persona_key(p["name"]) for p in model.personas_]

    def cluster(self, state: CustomerState, now: float) -> int:
        row = zip(descriptors(state, now), self.mean, self.scale, strict=True)
        x = [(v - m) / s for v, m, s in row]
        distances = [sum((a - b) ** 2 for a, b in zip(x, c, strict=True)) for c in self.centres]
        return distances.index(min(distances))

    def assign(self, state: CustomerState, now: float) -> str:
        return self.keys[self.cluster(state, now)]


def persona_key(name: str) -> str:
    """The key the catalog targets (policy/personas.py) of a persona's name,
    "Frequent buyers, big spenders (2)" -> "frequent_buyers+big_spenders"."""
    if name.startswith(AVERAGE_NAME):
        return key_of([])
    return key_of(name.split(" (")[0].lower().split(", "))


def assign(model: PersonaModel, state: CustomerState, now: float) -> dict | None:
    """The persona of one customer, or None when profiling is not allowed."""
    if not profiling_allowed(state):
        return None
    cluster = int(model.predict(np.array([descriptors(state, now)]))[0])
    return model.personas_[cluster]


def _describe(centres: np.ndarray, sizes: np.ndarray) -> list[dict]:
    """Name each centre after its most distinctive descriptors (z-scores)."""
    personas: list[dict] = []
    taken: set[str] = set()
    for cluster, centre in enumerate(centres):
        order = np.argsort(-np.abs(centre))
        standout = [i for i in order if abs(centre[i]) >= DISTINCT][:2]
        words = [WORDS[(DESCRIPTORS[i], bool(centre[i] > 0))] for i in standout]
        name = ", ".join(words).capitalize() if words else AVERAGE_NAME
        if name in taken:
            name = f"{name} ({cluster})"
        taken.add(name)
        detail = ", ".join(f"{DESCRIPTORS[i]} {centre[i]:+.1f} sd" for i in order[:3])
        personas.append(
            {
                "id": cluster,
                "name": name,
                "key": persona_key(name),
                "description": f"{detail} from the average customer",
                "size": int(sizes[cluster]),
                "centre": {DESCRIPTORS[i]: round(float(centre[i]), 3) for i in order},
            }
        )
    return personas
