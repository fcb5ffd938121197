"""Learned purchase cycles (models/cycles.py), their honest split and their
check on purchase histories (lab/cycles_check.py)."""

from __future__ import annotations

import itertools
import json
import math
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from nudge.lab.cycles_check import main as check_main
from nudge.lab.cycles_check import read_transactions, report
from nudge.models import artifact
from nudge.models.cycles import POOLED, Purchase, PurchaseCycles, purchases_from_log
from nudge.models.features import FEATURE_NAMES
from nudge.models.serving import ScorerHolder
from nudge.policy.clock import DAY
from nudge.policy.config import ContactPolicy
from nudge.schemas.eventlog import LoggedEvent

START = datetime(2025, 1, 1, tzinfo=UTC).timestamp()


def simulate(
    people: int = 1500,
    median_days: float = 30.0,
    within: float = 0.4,
    between: float = 0.4,
    never: float = 0.3,
    horizon_days: float = 360.0,
    seed: int = 1,
    later_median_days: float | None = None,
    change_at_days: float = 1e9,
) -> list[Purchase]:
    """Purchase histories with a known cycle: each person's own median is
    log-normal around `median_days`; a share `never` stops after one
    purchase. After `change_at_days` the cycle becomes `later_median_days`."""
    rng = np.random.default_rng(seed)
    found = []
    for i in range(people):
        own = rng.normal(0.0, between)
        t = rng.uniform(0, 60)
        found.append(Purchase(f"c{i}", "coffee", START + t * DAY))
        if rng.uniform() < never:
            continue
        while True:
            median = later_median_days if t > change_at_days and later_median_days else median_days
            t += max(1.0, math.exp(math.log(median) + own + rng.normal(0.0, within)))
            if t > horizon_days:
                break
            found.append(Purchase(f"c{i}", "coffee", START + t * DAY))
    return found


def test_the_fit_recovers_a_known_cycle_with_people_who_never_come_back() -> None:
    purchases = simulate(between=0.0)
    model = PurchaseCycles().fit(purchases, end=START + 360 * DAY)
    mu, sigma, _tau, never = model.categories_["coffee"][:4]
    assert math.exp(mu) == pytest.approx(30.0, rel=0.1)
    assert sigma == pytest.approx(0.4, abs=0.1)
    # `never` is per purchase: the share of purchases no other one follows
    buyers = [p.customer for p in purchases]
    once = sum(1 for who in set(buyers) if buyers.count(who) == 1)
    assert never == pytest.approx(once / len(purchases), abs=0.02)


def test_people_differ_and_the_fit_splits_within_from_between() -> None:
    """Frequent buyers have more intervals, so the per-interval location
    leans toward them: the population of purchases the policy judges."""
    model = PurchaseCycles().fit(simulate(between=0.5), end=START + 360 * DAY)
    mu, sigma, tau = model.categories_["coffee"][:3]
    assert 18.0 < math.exp(mu) < 32.0
    assert sigma == pytest.approx(0.4, abs=0.1)
    assert tau > 0.2


def test_open_gaps_are_censored_not_ignored() -> None:
    """Long cycles seen through a short window: most second purchases are
    still to come. Ignoring the open gaps would learn only the short ones."""
    purchases = simulate(median_days=60, never=0.0, horizon_days=90, seed=2)
    end = START + 90 * DAY
    model = PurchaseCycles().fit(purchases, end=end)
    naive = [
        (b.at - a.at) / DAY for a, b in itertools.pairwise(purchases) if a.customer == b.customer
    ]
    assert float(np.median(naive)) < 45
    assert math.exp(model.categories_["coffee"][0]) == pytest.approx(60, rel=0.25)


def test_own_intervals_shrink_toward_the_category() -> None:
    model = PurchaseCycles().fit(simulate(), end=START + 360 * DAY)
    newcomer = model.days("coffee", 0.0, 0.0)
    assert newcomer is not None
    fast = model.days("coffee", 1.0, math.log(10.0))
    faster = model.days("coffee", 8.0, 8 * math.log(10.0))
    assert fast is not None and faster is not None
    # one own interval of 10 days moves the due time part of the way, eight nearly all of it
    assert 10.0 < faster[1] < fast[1] < newcomer[1]
    assert faster[1] == pytest.approx(10.0, rel=0.25)
    assert all(quiet < due for quiet, due in (newcomer, fast, faster))
    # an unknown category takes the pooled cycle
    assert model.days("tea", 0.0, 0.0) == model.days(POOLED, 0.0, 0.0)


def test_the_fit_refuses_purchases_after_the_end_it_is_told() -> None:
    """The leakage guard at the source: a cutoff that is not honoured is an error."""
    purchases = simulate(people=200)
    with pytest.raises(ValueError, match="after the end"):
        PurchaseCycles().fit(purchases, end=START + 100 * DAY)


def test_the_check_fits_before_the_cutoff_and_a_whole_history_fit_would_flatter() -> None:
    """Cycles get longer after the cutoff. The honest pipeline fits only on
    what came before it; a fit that saw the judged period scores better on
    it, which is exactly why the check does not use it."""
    purchases = simulate(later_median_days=50.0, change_at_days=240.0, seed=3)
    cutoff = START + 240 * DAY
    result = report(purchases, cutoff, "simulated")
    assert result["fitted_on"]["purchases"] == sum(p.at <= cutoff for p in purchases)
    assert result["fitted_on"]["end"] == result["cutoff"]
    density = result["mean_log_density"]
    assert density["whole_history_fit"] > density["honest"]
    # the honest cycle is the one from before the change
    assert result["model"]["categories"]["coffee"]["median_days"] == pytest.approx(30, rel=0.15)
    assert result["judged_repeats"] > 500
    shares = result["silenced_share"]
    assert shares["learned"] < shares["fixed_14d"] < shares["fixed_60d"]
    assert 0 < result["reminder_before_repurchase_share"] < 1


def test_the_check_reads_cdnow_transactions_and_writes_its_figures(tmp_path: Path) -> None:
    rows = ["customer_id date number_of_cds dollar_value"]
    for p in simulate(people=400, seed=4):
        day = datetime.fromtimestamp(p.at, UTC)
        rows.append(f"{p.customer} {day:%Y%m%d} 1 10.00")
    path = tmp_path / "CDNOW_like.txt"
    path.write_text("\n".join(rows) + "\n")
    assert len(read_transactions(path)) == len(rows) - 1
    out = tmp_path / "out"
    assert (
        check_main(["--transactions", str(path), "--cutoff", "2025-09-01", "--out", str(out)]) == 0
    )
    result = json.loads((out / "result.json").read_text())
    assert result["cutoff"] == "2025-09-01"
    assert set(result["silenced_share"]) == {"learned", "fixed_14d", "fixed_60d"}
    assert "repeat purchases that came while it silenced" in (out / "README.md").read_text()


def _order(customer: str, order: str, day: float, *categories: str) -> LoggedEvent:
    event = {
        "event_id": f"e-{order}-{day}",
        "type": "purchase",
        "customer_id": customer,
        "ts": datetime.fromtimestamp(START + day * DAY, UTC).isoformat(),
        "order_id": order,
        "items": [{"product_id": f"p-{c}", "category": c, "price": 5.0} for c in categories],
    }
    return LoggedEvent("purchases", event)


def test_purchases_from_a_log_count_each_order_once_per_category() -> None:
    records = [
        _order("a", "o1", 0, "coffee", "coffee", "tea"),
        _order("a", "o1", 0.5, "coffee"),  # the same order sent again
        _order("a", "o2", 20, "coffee"),
    ]
    found = purchases_from_log(records)
    assert [(p.category, (p.at - START) / DAY) for p in found] == [
        ("coffee", 0.0),
        ("tea", 0.0),
        ("coffee", 20.0),
    ]


def test_cycles_are_saved_with_the_served_model_and_reach_the_engine(tmp_path: Path) -> None:
    X = np.random.default_rng(0).normal(size=(40, len(FEATURE_NAMES)))
    y = np.arange(40) % 2
    propensity = make_pipeline(StandardScaler(), LogisticRegression()).fit(X, y)
    cycles = PurchaseCycles().fit(simulate(people=300), end=START + 360 * DAY)
    saved = artifact.save(tmp_path, propensity, None, {}, version="v1", cycles=cycles)
    artifact.set_current(tmp_path, saved.version)
    loaded = artifact.load(tmp_path)
    assert loaded.cycles is not None
    assert loaded.cycles.days("coffee", 2.0, 5.0) == cycles.days("coffee", 2.0, 5.0)
    holder = ScorerHolder(tmp_path, ContactPolicy())
    assert holder.cycles is not None
    assert holder.cycles.days("coffee", 0.0, 0.0) == cycles.days("coffee", 0.0, 0.0)
    # an artifact without cycles: the policy's fixed cooldowns
    artifact.save(tmp_path, propensity, None, {}, version="v2")
    artifact.set_current(tmp_path, "v2")
    assert artifact.load(tmp_path).cycles is None
    holder.maybe_reload()
    assert holder.cycles is None
