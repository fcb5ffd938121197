"""Train the propensity and persona models from an event log.

The log is replayed first (models.replay): every action that was sent comes
back with the features the engine saw when it decided. The label is whether
the person clicked or converted within a window after the decision. The split
is by time: the last days are held out, and training uses only decisions
whose label window closed before them, so nothing from the held-out period
informs the model. What is evaluated is what gets saved and served, and a
model whose held-out Brier score is no better than a constant predictor's
(the training base rate) has learned nothing worth serving: `beats_constant`
says so, and `nudge train` then does not deploy it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import brier_score_loss, roc_auc_score
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from models.personas import PersonaModel, descriptors, profiled
from models.replay import Example, Replay, read_log, replay
from policy.config import Catalog, ContactPolicy

DAY = 86400.0
RELIABILITY_BINS = 10
HOLDOUT_SHARE = 0.25  # of the days the log has decisions in, by default
MAX_HOLDOUT_DAYS = 7.0


class TrainingError(ValueError):
    """The log cannot train a model (too short, or one class only)."""


@dataclass
class TrainingResult:
    propensity: Pipeline
    personas: PersonaModel | None
    metadata: dict[str, Any]


def split(
    replayed: Replay, holdout_days: float, label_window_days: float
) -> tuple[list[Example], list[Example], float]:
    """Label each example; train on decisions whose label window closed before
    the held-out period, validate on the last `holdout_days` (only decisions
    whose window closed before the log ends, so every label is complete)."""
    window = label_window_days * DAY
    cutoff = replayed.end - holdout_days * DAY
    for example in replayed.examples:
        responded = replayed.responses.get(example.decision_id)
        example.label = responded is not None and example.at <= responded <= example.at + window
    training = [e for e in replayed.examples if e.at + window <= cutoff]
    validation = [e for e in replayed.examples if cutoff <= e.at and e.at + window <= replayed.end]
    return training, validation, cutoff


def default_holdout_days(replayed: Replay, label_window_days: float) -> float:
    """The last quarter of the days the log has decisions in, at most a week, and
    at least one day of decisions whose label window closes inside the log.

    Measured from the first decision, not the first event: a simulated log
    starts with up to two years of imported history and no decisions in it, so
    a fixed 7-day holdout would hold out every decision of a 7-day simulation.
    """
    span_days = (replayed.end - _first_decision(replayed)) / DAY
    return min(MAX_HOLDOUT_DAYS, max(HOLDOUT_SHARE * span_days, label_window_days + 1.0))


def beats_constant(metadata: dict[str, Any]) -> bool:
    """Whether the held-out Brier score is lower than a constant predictor's
    (the training base rate): a model that is not is no better than no model."""
    validation = metadata["metrics"]["validation"]
    return validation["brier"] < validation["constant_brier"]


def fit_propensity(X: np.ndarray, y: np.ndarray, C: float = 1.0) -> Pipeline:
    """Logistic regression on standardised features: its log loss keeps the
    probabilities calibrated, and it folds into one dot product for serving."""
    return make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=2000)).fit(X, y)


def evaluate(y: np.ndarray, p: np.ndarray, base_rate: float, heuristic: np.ndarray) -> dict:
    """Held-out ranking and calibration, next to a constant predictor (the
    training base rate) and the heuristic scorer."""
    constant = np.full_like(p, base_rate)
    order = np.argsort(p, kind="stable")
    table = []
    for chunk in np.array_split(order, min(RELIABILITY_BINS, len(order))):
        table.append(
            {
                "predicted": round(float(p[chunk].mean()), 4),
                "observed": round(float(y[chunk].mean()), 4),
                "count": len(chunk),
            }
        )
    ece = sum(row["count"] * abs(row["predicted"] - row["observed"]) for row in table) / len(y)
    brier, constant_brier = brier_score_loss(y, p), brier_score_loss(y, constant)
    return {
        "examples": len(y),
        "positive_rate": round(float(y.mean()), 4),
        "auc": round(float(roc_auc_score(y, p)), 4),
        "constant_auc": round(float(roc_auc_score(y, constant)), 4),
        "heuristic_auc": round(float(roc_auc_score(y, heuristic)), 4),
        "brier": round(float(brier), 5),
        "constant_brier": round(float(constant_brier), 5),
        # 1 - brier / constant's: > 0 when the model is better than the base rate.
        "brier_skill": round(float(1.0 - brier / constant_brier), 4) if constant_brier else 0.0,
        "expected_calibration_error": round(float(ece), 4),
        "reliability": table,
    }


def train(
    log_path: Path,
    catalog: Catalog,
    policy: ContactPolicy,
    holdout_days: float | None = None,
    label_window_days: float = 2.0,
    n_personas: int = 4,
) -> TrainingResult:
    """Replay, split by time, fit both models, evaluate on the held-out days
    (by default `default_holdout_days` of the log)."""
    replayed = replay(read_log(log_path), catalog, policy)
    if holdout_days is None:
        holdout_days = round(default_holdout_days(replayed, label_window_days), 1)
    train_set, validation, cutoff = split(replayed, holdout_days, label_window_days)
    for name, examples in (("training", train_set), ("held-out", validation)):
        if len({e.label for e in examples}) < 2:
            raise TrainingError(
                f"the {name} set ({len(examples)} decisions) needs both responses and"
                f" non-responses (held out: the last {holdout_days:g} days, label window"
                f" {label_window_days:g} days, decisions from {_iso(_first_decision(replayed))},"
                f" log end {_iso(replayed.end)}): use a longer log or change --holdout-days"
            )
    X, y = _arrays(train_set)
    propensity = fit_propensity(X, y)
    X_val, y_val = _arrays(validation)
    p_val = propensity.predict_proba(X_val)[:, 1]
    heuristic = np.array([e.heuristic for e in validation])
    metrics = {
        "train": {"examples": len(y), "positive_rate": round(float(y.mean()), 4)},
        "validation": evaluate(y_val, p_val, float(y.mean()), heuristic),
    }
    customers = profiled(replayed.states)
    personas = None
    if len(customers) >= n_personas:
        matrix = np.array([descriptors(s, replayed.end) for s in customers])
        personas = PersonaModel(n_personas=n_personas).fit(matrix)
    metadata = {
        "source": {
            "log": log_path.name,
            "log_sha256": hashlib.sha256(log_path.read_bytes()).hexdigest(),
            "replay": replayed.stats,
        },
        "training_window": {
            "log_start": _iso(replayed.start),
            "log_end": _iso(replayed.end),
            "holdout_from": _iso(cutoff),
            "holdout_days": holdout_days,
            "label_window_days": label_window_days,
            "label": "clicked or converted within the label window",
        },
        "model": "StandardScaler -> LogisticRegression",
        "metrics": metrics,
        "personas": personas.personas_ if personas is not None else [],
    }
    return TrainingResult(propensity, personas, metadata)


def report(metadata: dict[str, Any]) -> str:
    """The figures a reviewer needs, as text."""
    window = metadata["training_window"]
    val = metadata["metrics"]["validation"]
    stats = metadata["source"]["replay"]
    lines = [
        f"model {metadata.get('version', '(unsaved)')}: {metadata['model']}",
        f"log {window['log_start']} .. {window['log_end']}: {stats['events']} events,"
        f" {stats['logged_actions']} actions logged, {stats['diverged']} not reproduced",
        f"train {metadata['metrics']['train']['examples']} decisions before"
        f" {window['holdout_from']}; held out {val['examples']}"
        f" (last {window['holdout_days']:g} days, label window {window['label_window_days']:g} d)",
        f"held-out AUC {val['auc']:.3f}   constant {val['constant_auc']:.3f}"
        f"   heuristic {val['heuristic_auc']:.3f}",
        f"held-out Brier {val['brier']:.4f}   constant {val['constant_brier']:.4f}"
        f"   skill {val['brier_skill']:+.1%}"
        f"   ECE {val['expected_calibration_error']:.4f}"
        f"   positive rate {val['positive_rate']:.3f}",
        "reliability (deciles of predicted): predicted -> observed (n)",
    ]
    lines += [
        f"  {row['predicted']:.3f} -> {row['observed']:.3f} ({row['count']})"
        for row in val["reliability"]
    ]
    lines.append(f"personas: {len(metadata['personas'])}")
    lines += [f"  {p['name']} ({p['size']}): {p['description']}" for p in metadata["personas"]]
    return "\n".join(lines)


def _arrays(examples: list[Example]) -> tuple[np.ndarray, np.ndarray]:
    X = np.array([e.features for e in examples], dtype=np.float64)
    y = np.array([e.label for e in examples], dtype=np.int64)
    return X, y


def _first_decision(replayed: Replay) -> float:
    return min((e.at for e in replayed.examples), default=replayed.start)


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()
