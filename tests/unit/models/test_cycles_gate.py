"""The held-out gate on learned purchase cycles (models/cycles_gate.py): they
are served only if, on repeat purchases they were not fitted on, they silence
no more of them than the fixed cooldowns do."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import numpy as np
import pytest

from nudge.models.cycles import Purchase, PurchaseCycles, purchases_from_log
from nudge.models.cycles_gate import CONFIGURED, judge, serve_cycles
from nudge.models.training import cycles_report
from nudge.policy.clock import DAY
from nudge.policy.config import CooldownPolicy
from nudge.schemas.eventlog import LoggedEvent

START = datetime(2025, 1, 1, tzinfo=UTC).timestamp()
HORIZON_DAYS = 400.0
END = START + HORIZON_DAYS * DAY
#: The gate's cutoff for these logs: the first purchase is on day 0.
CUTOFF = END - 0.25 * HORIZON_DAYS * DAY


def histories(
    median_days: float, later_median_days: float | None = None, people: int = 300, seed: int = 1
) -> list[Purchase]:
    """Coffee every `median_days` (log-normal, each person a little off it);
    after the gate's cutoff every `later_median_days` when given. Everyone
    buys on day 0 first, so the gate's cutoff is CUTOFF."""
    found = []
    for i in range(people):
        rng = np.random.default_rng([seed, i])  # the same life up to the cutoff either way
        own = rng.normal(0.0, 0.2)
        t = 0.0
        while t <= HORIZON_DAYS:
            found.append(Purchase(f"c{i}", "coffee", START + t * DAY))
            later = later_median_days and START + t * DAY > CUTOFF
            median = later_median_days if later else median_days
            t += math.exp(math.log(median) + own + rng.normal(0.0, 0.2))
    return found


def log(purchases: list[Purchase]) -> list[LoggedEvent]:
    """Each purchase as the purchase event of a one-item order."""
    return [
        LoggedEvent(
            "purchases",
            {
                "event_id": f"e{n}",
                "type": "purchase",
                "customer_id": p.customer,
                "ts": datetime.fromtimestamp(p.at, UTC).isoformat(),
                "order_id": f"o{n}",
                "items": [{"product_id": "p1", "category": p.category, "price": 5.0}],
            },
        )
        for n, p in enumerate(purchases)
    ]


def test_cycles_that_foresee_the_held_out_repeats_are_served() -> None:
    """Coffee every ~30 days, a fixed 60-day cooldown: the fixed one silences
    nearly every repeat purchase, the learned one about a tenth."""
    cooldown = CooldownPolicy(default_days=60.0, floor_days=3.0)
    model, summary = serve_cycles(log(histories(30.0)), END, cooldown)
    assert summary["served"] is True and model is not None
    held_out = summary["held_out"]
    assert held_out["from"] == f"{datetime.fromtimestamp(CUTOFF, UTC):%Y-%m-%d}"
    assert held_out["repeat_purchases"] > 500
    assert held_out["silenced_learned"] < 0.2 * held_out["repeat_purchases"]
    assert held_out["silenced_fixed"] > 0.9 * held_out["repeat_purchases"]
    assert model.days("coffee", 0.0, 0.0)[1] == pytest.approx(30.0, rel=0.1)
    assert "served" in cycles_report(summary)[0]


def test_cycles_that_would_silence_more_repeats_than_the_fixed_cooldown_are_refused() -> None:
    """People bought coffee every ~60 days, then every ~15: the cycle learned
    before the change silences most of the later repeat purchases, a fixed
    7-day cooldown almost none. Not served, and the report says why."""
    cooldown = CooldownPolicy(default_days=7.0, floor_days=3.0)
    model, summary = serve_cycles(log(histories(60.0, later_median_days=15.0)), END, cooldown)
    assert model is None and summary["served"] is False
    held_out = summary["held_out"]
    assert held_out["silenced_learned"] > 0.5 * held_out["repeat_purchases"]
    assert held_out["silenced_fixed"] < held_out["silenced_learned"]
    assert "fixed cooldowns" in summary["reason"] and "silence" in summary["reason"]
    assert cycles_report(summary) == [
        f"purchase cycles: not served ({summary['reason']}): fixed cooldowns apply"
    ]


def test_the_floor_counts_for_the_fixed_cooldowns_as_the_worker_applies_it() -> None:
    """A 0-day fixed cooldown still silences everything inside the floor, so
    a learned cycle no shorter than the floor is not refused for it."""
    purchases = histories(30.0)
    model = PurchaseCycles().fit([p for p in purchases if p.at <= CUTOFF], end=CUTOFF)
    tally = judge(model, purchases, CUTOFF, {CONFIGURED: lambda _category: 0.0}, floor_days=40.0)
    assert tally.silenced[CONFIGURED] == tally.silenced["learned"] > 0


def test_the_fit_never_sees_the_judged_purchases() -> None:
    """Two logs equal up to the cutoff and different after it: the same
    cycles are fitted from both, only the judgement differs."""
    steady, changed = histories(30.0), histories(30.0, later_median_days=10.0)
    assert [p for p in steady if p.at <= CUTOFF] == [p for p in changed if p.at <= CUTOFF]
    assert len(steady) != len(changed)
    cooldown = CooldownPolicy(default_days=60.0, floor_days=3.0)
    model, first = serve_cycles(log(steady), END, cooldown)
    _, second = serve_cycles(log(changed), END, cooldown)
    assert first["categories"] == second["categories"]
    assert first["repeat_purchases"] == second["repeat_purchases"]
    assert first["held_out"] != second["held_out"]
    # what was judged is what is served: the fit on the purchases up to the cutoff
    before = [p for p in purchases_from_log(log(steady)) if p.at <= CUTOFF]
    honest = PurchaseCycles().fit(before, end=CUTOFF)
    assert model is not None and model.categories_ == honest.categories_


def test_too_few_held_out_repeats_serve_no_cycles() -> None:
    """A history that ends long before the log does leaves nothing to judge on."""
    purchases = [p for p in histories(30.0) if p.at <= START + 250 * DAY]
    model, summary = serve_cycles(log(purchases), END, CooldownPolicy())
    assert model is None and summary["served"] is False
    assert summary["held_out"]["repeat_purchases"] == 0
    assert summary["reason"].startswith("0 repeat purchases after")
    assert "to judge on, fewer than 30" in summary["reason"]


def test_too_short_a_log_serves_no_cycles() -> None:
    purchases = [Purchase("a", "coffee", START), Purchase("a", "coffee", START + 9 * DAY)]
    model, summary = serve_cycles(log(purchases), START + 30 * DAY, CooldownPolicy())
    assert model is None and summary["served"] is False
    assert "to fit on, fewer than 30" in summary["reason"]
    model, summary = serve_cycles([], START, CooldownPolicy())
    assert model is None and summary == {"served": False, "reason": "no purchases in the log"}
