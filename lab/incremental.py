"""Incremental effect over a control, with a confidence interval over seeds.

Why: a policy's orders mean little alone (most orders happen without any
message). What a policy adds is its orders minus the control's on the same
world and seed. Seeds are independent replications of the whole world, so the
per-seed differences are i.i.d. draws; their mean gets a two-sided Student
t-interval with n - 1 degrees of freedom (paired design: the world's own noise
cancels within a seed).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from scipy.stats import t as student_t

METHOD = (
    "mean over seeds of (policy - no-contact control) on the same world and seed, with a"
    " two-sided 95% Student t-interval on the per-seed differences (n - 1 degrees of freedom)"
)


@dataclass(frozen=True)
class Estimate:
    """Mean of per-seed differences, and its interval (None with fewer than 2 seeds)."""

    mean: float
    low: float | None
    high: float | None
    per_seed: tuple[float, ...]

    def as_dict(self) -> dict:
        def rounded(x: float | None) -> float | None:
            return None if x is None else round(x, 3)

        return {
            "mean": round(self.mean, 3),
            "ci95": None if self.low is None else [rounded(self.low), rounded(self.high)],
            "per_seed": list(self.per_seed),
        }


def paired_difference(
    treated: Sequence[float], control: Sequence[float], level: float = 0.95
) -> Estimate:
    """The mean of `treated[i] - control[i]` over seeds i, with a t-interval."""
    if len(treated) != len(control) or not treated:
        raise ValueError("one treated and one control figure per seed, at least one seed")
    differences = tuple(a - b for a, b in zip(treated, control, strict=True))
    return t_interval(differences, level)


def t_interval(values: Sequence[float], level: float = 0.95) -> Estimate:
    """Mean of `values` with a two-sided Student t-interval at `level`."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return Estimate(mean, None, None, tuple(values))
    variance = sum((v - mean) ** 2 for v in values) / (n - 1)
    half = float(student_t.ppf(0.5 + level / 2, n - 1)) * math.sqrt(variance / n)
    return Estimate(mean, mean - half, mean + half, tuple(values))


def interval_text(figure: dict) -> str:
    """An `Estimate.as_dict()` as "+29.0 (+22.4 to +35.6)", for the lab's tables."""
    ci = figure["ci95"]
    spread = f" ({ci[0]:+.1f} to {ci[1]:+.1f})" if ci else ""
    return f"{figure['mean']:+.1f}{spread}"
