"""Train the propensity and persona models from an event log.

The log is replayed first (models.examples): every action that was sent comes
back with the features the engine saw when it decided. The label is whether
the person clicked or converted within a window after the decision. The split
is by time: the last days are held out, and training uses only decisions
whose label window closed before them, so nothing from the held-out period
informs the model. What is evaluated is what gets saved and served, and a
model whose held-out Brier score is no better than a constant predictor's
(the training base rate) has learned nothing worth serving: `beats_constant`
says so, and `nudge train` then does not deploy it.

When the log holds the holdout's would-be decisions, an uplift model
(models.uplift) is trained on the same time split, with the label both arms
share: an order within the label window. It is kept for serving only if its
held-out Qini coefficient is positive and higher than the propensity model's
ranking of the same decisions, beyond the 95% interval of a paired bootstrap
(a small holdout cannot tell them apart, and then propensity keeps ranking);
the metadata records both either way.
"""

from __future__ import annotations

import bisect
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

from nudge.errors import UserError
from nudge.models.cycles import PurchaseCycles
from nudge.models.cycles_gate import serve_cycles
from nudge.models.examples import Example, ExampleSet, build_examples
from nudge.models.features import FEATURE_NAMES
from nudge.models.personas import PersonaModel, descriptors, profiled
from nudge.models.uplift import UpliftError, UpliftModel, compare, fit_uplift, qini_gain
from nudge.policy.clock import DAY
from nudge.policy.config import Catalog, ContactPolicy
from nudge.schemas.eventlog import read_log

RELIABILITY_BINS = 10
HOLDOUT_SHARE = 0.25  # of the days the log has decisions in, by default
MAX_HOLDOUT_DAYS = 7.0
_TRANSACTIONAL = FEATURE_NAMES.index("transactional")


class TrainingError(UserError):
    """The log cannot train a model (too short, or one class only)."""


@dataclass
class TrainingResult:
    propensity: Pipeline
    personas: PersonaModel | None
    metadata: dict[str, Any]
    uplift: UpliftModel | None = None  # only one worth serving (metadata["uplift"])
    cycles: PurchaseCycles | None = None  # learned purchase cycles (metadata["cycles"])


def split(
    data: ExampleSet, holdout_days: float, label_window_days: float
) -> tuple[list[Example], list[Example], float]:
    """Label each example; train on decisions whose label window closed before
    the held-out period, validate on the last `holdout_days` (only decisions
    whose window closed before the log ends, so every label is complete)."""
    window = label_window_days * DAY
    cutoff = data.end - holdout_days * DAY
    for example in data.examples:
        responded = data.responses.get(example.decision_id)
        example.label = responded is not None and example.at <= responded <= example.at + window
    training, validation = _by_time(data.examples, cutoff, window, data.end)
    return training, validation, cutoff


def _by_time(
    examples: list[Example], cutoff: float, window: float, end: float
) -> tuple[list[Example], list[Example]]:
    """Decisions whose label window closed before `cutoff`, and those after
    it whose window closed before the log ends."""
    training = [e for e in examples if e.at + window <= cutoff]
    validation = [e for e in examples if cutoff <= e.at and e.at + window <= end]
    return training, validation


def label_orders(examples: list[Example], orders: dict[str, list[float]], window: float) -> None:
    """The uplift label: did the person order within `window` seconds after
    the decision (with a message or without one)?"""
    for example in examples:
        times = orders.get(example.subject, [])
        first_after = bisect.bisect_right(times, example.at)
        example.ordered = first_after < len(times) and times[first_after] <= example.at + window


def train_uplift(
    data: ExampleSet, propensity: Pipeline, cutoff: float, label_window_days: float
) -> tuple[UpliftModel | None, dict[str, Any]]:
    """Fit the T-learner on the marketing actions sent and the holdout's
    would-be actions before `cutoff`; compare its held-out ranking with the
    propensity model's. Returns the model only if it is worth serving."""
    window = label_window_days * DAY
    sent = [e for e in data.examples if not e.features[_TRANSACTIONAL]]
    examples = sent + data.withheld
    for times in data.orders.values():
        times.sort()
    label_orders(examples, data.orders, window)
    withheld = {id(e) for e in data.withheld}
    arms = {id(e): id(e) in withheld for e in examples}  # True: the holdout
    train_set, validation = _by_time(examples, cutoff, window, data.end)
    summary: dict[str, Any] = {
        "model": "T-learner: StandardScaler -> LogisticRegression per arm",
        "label": "ordered within the label window",
        "train": _arm_counts(train_set, arms),
        "validation": _arm_counts(validation, arms),
        "served": False,
    }
    X, y = _arrays(train_set, ordered=True)
    treated = np.array([not arms[id(e)] for e in train_set], dtype=bool)
    try:
        model = fit_uplift(X, y, treated)
    except UpliftError as exc:
        summary["why_not_served"] = f"not trained: {exc}"
        return None, summary
    X_val, y_val = _arrays(validation, ordered=True)
    treated_val = np.array([not arms[id(e)] for e in validation], dtype=bool)
    if len(validation) == 0 or treated_val.all() or not treated_val.any():
        summary["why_not_served"] = "the held-out days need decisions of both arms"
        return None, summary
    rankings = {
        "uplift": model.predict(X_val),
        "propensity": propensity.predict_proba(X_val)[:, 1],
        "heuristic": np.array([e.heuristic for e in validation]),
    }
    summary["metrics"] = compare(y_val, treated_val, rankings)
    gain, low, high = (
        round(value, 6)
        for value in qini_gain(y_val, treated_val, rankings["uplift"], rankings["propensity"])
    )
    summary["qini_gain_over_propensity"] = {"gain": gain, "low": low, "high": high}
    if low > 0 and summary["metrics"]["uplift"]["qini"] > 0:
        summary["served"] = True
        return model, summary
    summary["why_not_served"] = (
        f"its held-out Qini is not surely above the propensity model's: the gain is"
        f" {gain:+.5f}, 95% interval [{low:+.5f}, {high:+.5f}] includes or is below 0"
    )
    return None, summary


def _arm_counts(examples: list[Example], arms: dict[int, bool]) -> dict[str, int]:
    holdout = [e for e in examples if arms[id(e)]]
    treated = [e for e in examples if not arms[id(e)]]
    return {
        "treatment": len(treated),
        "treatment_orders": sum(e.ordered for e in treated),
        "holdout": len(holdout),
        "holdout_orders": sum(e.ordered for e in holdout),
    }


def default_holdout_days(data: ExampleSet, label_window_days: float) -> float:
    """The last quarter of the days the log has decisions in, at most a week, and
    at least one day of decisions whose label window closes inside the log.

    Measured from the first decision, not the first event: a simulated log
    starts with up to two years of imported history and no decisions in it, so
    a fixed 7-day holdout would hold out every decision of a 7-day simulation.
    """
    span_days = (data.end - _first_decision(data)) / DAY
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
    """Build the examples, split by time, fit both models, evaluate on the held-out days
    (by default `default_holdout_days` of the log)."""
    records = list(read_log(log_path))
    data = build_examples(records, catalog, policy)
    if holdout_days is None:
        holdout_days = round(default_holdout_days(data, label_window_days), 1)
    train_set, validation, cutoff = split(data, holdout_days, label_window_days)
    for name, examples in (("training", train_set), ("held-out", validation)):
        if len({e.label for e in examples}) < 2:
            raise TrainingError(
                f"the {name} set ({len(examples)} decisions) needs both responses and"
                f" non-responses (held out: the last {holdout_days:g} days, label window"
                f" {label_window_days:g} days, decisions from {_iso(_first_decision(data))},"
                f" log end {_iso(data.end)}): use a longer log or change --holdout-days"
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
    customers = profiled(data.states)
    uplift, uplift_summary = train_uplift(data, propensity, cutoff, label_window_days)
    # Purchase cycles have their own split by time: their intervals are weeks
    # to months, longer than this hold-out (models/cycles_gate.py).
    cycles, cycles_summary = serve_cycles(records, data.end, policy.purchase_cooldown)
    personas = None
    if len(customers) >= n_personas:
        matrix = np.array([descriptors(s, data.end) for s in customers])
        personas = PersonaModel(n_personas=n_personas).fit(matrix)
    metadata = {
        "source": {
            "log": log_path.name,
            "log_sha256": hashlib.sha256(log_path.read_bytes()).hexdigest(),
            "replay": data.stats,
        },
        "training_window": {
            "log_start": _iso(data.start),
            "log_end": _iso(data.end),
            "holdout_from": _iso(cutoff),
            "holdout_days": holdout_days,
            "label_window_days": label_window_days,
            "label": "clicked or converted within the label window",
        },
        "model": "StandardScaler -> LogisticRegression",
        "metrics": metrics,
        "personas": personas.personas_ if personas is not None else [],
        "uplift": uplift_summary,
        "cycles": cycles_summary,
    }
    return TrainingResult(propensity, personas, metadata, uplift, cycles)


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
    lines += uplift_report(metadata.get("uplift"))
    lines += cycles_report(metadata.get("cycles"))
    lines.append(f"personas: {len(metadata['personas'])}")
    lines += [f"  {p['name']} ({p['size']}): {p['description']}" for p in metadata["personas"]]
    return "\n".join(lines)


def cycles_report(summary: dict[str, Any] | None) -> list[str]:
    """Whether purchase cycles are served, how they did on held-out repeat
    purchases against the fixed cooldowns, and each category's."""
    if not summary:
        return []
    if not summary["served"]:
        return [f"purchase cycles: not served ({summary['reason']}): fixed cooldowns apply"]
    held_out = summary["held_out"]
    n = held_out["repeat_purchases"]
    lines = [
        f"purchase cycles: from {summary['repeat_purchases']} repeat purchases before"
        f" {held_out['from']}; of the {n} after it they silence {held_out['silenced_learned']}"
        f" ({held_out['silenced_learned'] / n:.1%}), the fixed cooldowns"
        f" {held_out['silenced_fixed']} ({held_out['silenced_fixed'] / n:.1%}): served"
    ]
    lines += [
        f"  {name}: quiet {row['cooldown_days']:g} d, due {row['due_days']:g} d,"
        f" {row['never_again']:.0%} never again"
        for name, row in summary["categories"].items()
    ]
    return lines


def uplift_report(summary: dict[str, Any] | None) -> list[str]:
    """The uplift model's lines of the report: arms, held-out Qini, served or why not."""
    if summary is None:  # an artifact from before uplift models
        return ["uplift: none"]
    train_arms, val_arms = summary["train"], summary["validation"]
    lines = [
        f"uplift ({summary['label']}): train {train_arms['treatment']} sent"
        f" ({train_arms['treatment_orders']} orders), {train_arms['holdout']} holdout would-be"
        f" ({train_arms['holdout_orders']}); held out {val_arms['treatment']}"
        f" ({val_arms['treatment_orders']}) and {val_arms['holdout']}"
        f" ({val_arms['holdout_orders']})"
    ]
    for name, row in summary.get("metrics", {}).items():
        at = "   ".join(
            f"@{key.removeprefix('uplift_at_')} " + ("n/a" if value is None else f"{value:+.3f}")
            for key, value in row.items()
            if key.startswith("uplift_at_")
        )
        lines.append(
            f"  held-out Qini {row['qini']:+.5f} [{row['qini_low']:+.5f}, {row['qini_high']:+.5f}]"
            f"  uplift {at}   ranked by {name}"
        )
    gain = summary.get("qini_gain_over_propensity")
    if gain is not None:
        lines.append(
            f"  uplift's Qini over propensity's {gain['gain']:+.5f}"
            f" [{gain['low']:+.5f}, {gain['high']:+.5f}] (95%, paired bootstrap)"
        )
    served = "served" if summary["served"] else f"not served: {summary['why_not_served']}"
    lines.append(f"  uplift model {served}")
    return lines


def _arrays(examples: list[Example], ordered: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Features and label: the response label, or with `ordered` the order label."""
    X = np.array([e.features for e in examples], dtype=np.float64).reshape(
        len(examples), len(FEATURE_NAMES)
    )
    y = np.array([e.ordered if ordered else e.label for e in examples], dtype=np.int64)
    return X, y


def _first_decision(data: ExampleSet) -> float:
    return min((e.at for e in data.examples), default=data.start)


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()
