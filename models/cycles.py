"""Learned purchase cycles: when a person's next need for a category falls.

Per category, the days between one purchase and the next are log-normal
among the people who buy again; some never do within the history (a cure
fraction). The fit is by maximum likelihood over every observed interval and
every open one (bought, not yet again by the end of the history: right-
censored), so people who have not come back yet pull the cycle longer
instead of being ignored. Every interval weighs the same, so frequent
buyers weigh more: they also make more of the purchases the policy judges.
Categories with fewer than `min_intervals` intervals take the cycle of all
categories pooled.

A person's own cycle is the category's, shrunk toward it by how many own
intervals they have (empirical Bayes on the log scale): the between-person
spread `tau` and the within-person spread `sigma` come from people with two
or more intervals. Their predictive interval is log-normal with mean

    mu_p = (mu / tau^2 + sum(log own) / sigma^2) / (1 / tau^2 + n / sigma^2)

and variance sigma^2 + 1 / (1 / tau^2 + n / sigma^2); with no own history
that is the category's. The policy asks for two quantiles of it: the
cooldown (`cooldown_quantile`: few repeat orders come sooner) and the due
time of a replenishment (`due_quantile`). Both are of the interval of those
who buy again: whether someone will is the propensity model's question.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from statistics import NormalDist

import msgspec
import numpy as np
from scipy import optimize, stats
from scipy.special import expit, log_expit
from sklearn.base import BaseEstimator

from nudge.policy.clock import DAY
from nudge.policy.cycles import MIN_GAP_DAYS, intervals
from nudge.schemas.eventlog import LoggedEvent
from nudge.schemas.events import PurchaseEvent

#: The pooled fit's key in `categories_`: every category together.
POOLED = "*"
_MIN_SIGMA = 0.05
_STANDARD = NormalDist()


@dataclass(frozen=True, slots=True)
class Purchase:
    """One purchase of one category by one person (several items of a
    category in one order are one purchase)."""

    customer: str
    category: str
    at: float  # epoch seconds


def purchases_from_log(records: Iterable[LoggedEvent]) -> list[Purchase]:
    """The purchases in an event log (schemas.eventlog.read_log), each order
    once however often it was sent, per category it holds."""
    seen: set[str] = set()
    found: list[Purchase] = []
    for record in records:
        if record.kind != "purchases":
            continue
        try:
            event = msgspec.convert(record.event, PurchaseEvent)
        except msgspec.ValidationError:
            continue  # the worker deadletters it; it bought nothing
        who = event.subject_id
        if who is None or event.order_id in seen:
            continue
        seen.add(event.order_id)
        at = event.ts.timestamp()
        for category in dict.fromkeys(item.category for item in event.items):
            found.append(Purchase(who, category, at))
    return found


def histories(purchases: Iterable[Purchase]) -> dict[str, dict[str, list[float]]]:
    """category -> customer -> sorted purchase times."""
    found: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for purchase in purchases:
        found[purchase.category][purchase.customer].append(purchase.at)
    for people in found.values():
        for times in people.values():
            times.sort()
    return found


class PurchaseCycles(BaseEstimator):
    """Per-category purchase cycles, with per-person shrinkage.

    Parameters: `cooldown_quantile` and `due_quantile` of the person's
    predictive interval (the cooldown ends, a replenishment is due),
    `min_intervals` a category needs for a fit of its own.
    Fitted: `categories_` maps a category (and POOLED) to its
    [mu, sigma, tau, never, intervals, open] (log-days location, within- and
    between-person spread, share of purchases no other one follows, counts); `end_` is the
    time the history was censored at."""

    def __init__(
        self,
        cooldown_quantile: float = 0.1,
        due_quantile: float = 0.5,
        min_intervals: int = 30,
    ) -> None:
        self.cooldown_quantile = cooldown_quantile
        self.due_quantile = due_quantile
        self.min_intervals = min_intervals

    def fit(self, purchases: Sequence[Purchase], end: float | None = None) -> PurchaseCycles:
        """Fit from purchases up to `end` (default: the last one). Anything
        after `end` is refused, not ignored: a cutoff must be honest."""
        if not 0 < self.cooldown_quantile < self.due_quantile < 1:
            raise ValueError("need 0 < cooldown_quantile < due_quantile < 1")
        if not purchases:
            raise ValueError("no purchases to fit a cycle from")
        last = max(p.at for p in purchases)
        end = last if end is None else end
        if last > end:
            raise ValueError("purchases after the end of the history: fit on those before it")
        by_category = histories(purchases)
        pooled: tuple[list[float], list[float], list[list[float]]] = ([], [], [])
        categories: dict[str, list[float]] = {}
        for category, people in sorted(by_category.items()):
            observed, open_gaps, own = _intervals(people, end)
            pooled[0].extend(observed)
            pooled[1].extend(open_gaps)
            pooled[2].extend(own)
            if len(observed) >= self.min_intervals:
                categories[category] = _fit(observed, open_gaps, own)
        if len(pooled[0]) < 2:
            raise ValueError("fewer than 2 repeat purchases: no cycle to learn")
        categories[POOLED] = _fit(*pooled)
        self.categories_ = categories
        self.end_ = float(end)
        return self

    def days(self, category: str, intervals: float, log_days: float) -> tuple[float, float] | None:
        """(cooldown, due) in days after a purchase of `category` by a person
        with `intervals` own intervals whose log-days sum to `log_days`."""
        params = self.categories_.get(category) or self.categories_[POOLED]
        mu, scale = predictive(params, intervals, log_days)
        # On the decision path: NormalDist takes about a microsecond, scipy's ppf 50.
        z_quiet = _STANDARD.inv_cdf(self.cooldown_quantile)
        z_due = _STANDARD.inv_cdf(self.due_quantile)
        return math.exp(mu + z_quiet * scale), math.exp(mu + z_due * scale)

    def predict(self, X: Sequence[tuple[str, float, float]]) -> np.ndarray:
        """Rows of (category, own intervals, own log-days sum) -> [cooldown, due] days."""
        return np.array([self.days(*row) for row in X], dtype=float).reshape(-1, 2)

    def log_density(self, category: str, intervals: float, log_days: float, days: float) -> float:
        """Log predictive density of a repeat purchase `days` after the last:
        how well the model foresaw it (higher is better)."""
        params = self.categories_.get(category) or self.categories_[POOLED]
        mu, scale = predictive(params, intervals, log_days)
        return float(stats.norm.logpdf(math.log(days), mu, scale) - math.log(days))

    def summary(self) -> dict[str, dict[str, float]]:
        """Per category: the cycle in days, for reports and metadata."""
        rows = {}
        for category, params in sorted(self.categories_.items()):
            quiet, due = self.days(category, 0.0, 0.0)
            rows[category] = {
                "cooldown_days": round(quiet, 1),
                "due_days": round(due, 1),
                "median_days": round(math.exp(params[0]), 1),
                "never_again": round(params[3], 3),
                "intervals": int(params[4]),
                "open": int(params[5]),
            }
        return rows


def predictive(params: Sequence[float], n: float, log_days: float) -> tuple[float, float]:
    """Location and scale (log days) of a person's next interval."""
    mu, sigma, tau = params[0], params[1], params[2]
    precision = 1.0 / tau**2 + n / sigma**2
    mean = (mu / tau**2 + log_days / sigma**2) / precision
    return mean, math.sqrt(sigma**2 + 1.0 / precision)


def _intervals(
    people: dict[str, list[float]], end: float
) -> tuple[list[float], list[float], list[list[float]]]:
    """Observed intervals and open gaps (days) of one category, and each
    person's own log intervals."""
    observed: list[float] = []
    open_gaps: list[float] = []
    own: list[list[float]] = []
    for times in people.values():
        mine = intervals(times)
        observed.extend(mine)
        own.append([math.log(days) for days in mine])
        gap = (end - times[-1]) / DAY
        if gap >= MIN_GAP_DAYS:
            open_gaps.append(gap)
    return observed, open_gaps, own


def _fit(observed: list[float], open_gaps: list[float], own: list[list[float]]) -> list[float]:
    """[mu, sigma, tau, never, intervals, open] by maximum likelihood of a
    log-normal with a never-again share, and the within/between split."""
    x = np.log(np.asarray(observed, dtype=float))
    c = np.log(np.asarray(open_gaps, dtype=float))

    def loss(theta: np.ndarray) -> float:
        a, mu, log_s = theta
        s = math.exp(log_s)
        again = log_expit(-a)  # log(1 - never)
        seen = again + stats.norm.logpdf(x, mu, s)
        still_open = np.logaddexp(log_expit(a), again + stats.norm.logsf(c, mu, s))
        return float(-(seen.sum() + still_open.sum()))

    start = np.array([0.0, float(x.mean()), math.log(max(float(x.std()), 0.3))])
    fitted = optimize.minimize(loss, start, method="L-BFGS-B")
    a, mu, log_s = fitted.x
    total = max(math.exp(log_s), _MIN_SIGMA)
    repeaters = [row for row in own if len(row) >= 2]
    dof = sum(len(row) - 1 for row in repeaters)
    within = (
        math.sqrt(sum(float(np.var(row)) * len(row) for row in repeaters) / dof) if dof else total
    )
    sigma = min(max(within, _MIN_SIGMA), total)
    tau = max(math.sqrt(max(total**2 - sigma**2, 0.0)), 0.1 * total)
    return [float(mu), sigma, tau, float(expit(a)), float(len(x)), float(len(c))]
