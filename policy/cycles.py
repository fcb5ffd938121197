"""Purchase cycles in the policy: how long a purchase silences its category,
and when the next need for it is due.

A fixed cooldown per category is wrong both ways: people rebuy at their own
pace. With a learned cycle model (models/cycles.py, served with the scorer)
the cooldown lasts until the next need is plausibly near (a low quantile of
the person's interval, shrunk toward the category's) and a replenishment is
due at a higher one; the configured floor ("never within N days of buying")
always holds. Without a model the configured fixed cooldowns apply as before.

The person's own intervals live in `Recency.cycles` as (count, sum of log
days) per category: two numbers, enough for the model's shrinkage, and the
same bookkeeping (`observe`, `intervals`) the model is fitted with.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from nudge.policy.clock import DAY
from nudge.policy.config import ContactPolicy
from nudge.policy.state import CustomerState

#: Purchases of a category closer together than this are one need (a split
#: order, a second order the same day), not a cycle.
MIN_GAP_DAYS = 1.0
#: The person's own history weighs at most this many intervals: older ones
#: fade, so a changed habit shows within a few cycles.
MAX_OWN_INTERVALS = 8.0


class CycleModel(Protocol):
    """What the policy asks a fitted cycle model (models.cycles.PurchaseCycles)."""

    def days(self, category: str, intervals: float, log_days: float) -> tuple[float, float] | None:
        """(cooldown, due) in days after a purchase of `category`, for a
        person with `intervals` own intervals summing to `log_days` (natural
        log of days); None if the model knows no cycle for the category."""
        ...


def observe(own: dict[str, list[float]], category: str, last: float | None, ts: float) -> None:
    """Count the interval from the previous purchase of `category` (at
    `last`) to this one at `ts` in the person's own history."""
    if last is None or ts - last < MIN_GAP_DAYS * DAY:
        return
    n, total = own.get(category, (0.0, 0.0))
    n, total = n + 1.0, total + math.log((ts - last) / DAY)
    if n > MAX_OWN_INTERVALS:
        total *= MAX_OWN_INTERVALS / n
        n = MAX_OWN_INTERVALS
    own[category] = [n, total]


def intervals(times: Sequence[float]) -> list[float]:
    """The intervals in days between sorted purchase times of one person and
    category, counted as `observe` counts them."""
    found: list[float] = []
    for last, ts in itertools.pairwise(times):
        if ts - last >= MIN_GAP_DAYS * DAY:
            found.append((ts - last) / DAY)
    return found


@dataclass(frozen=True, slots=True)
class PurchaseWindow:
    """What a purchase of one category means for promoting it."""

    category: str
    bought: float
    cooldown_until: float
    due_at: float | None  # learned next need; None without a learned cycle
    own_intervals: float  # the person's own intervals the estimate leans on

    @property
    def learned(self) -> bool:
        return self.due_at is not None

    def explain(self) -> str:
        """One line for a reason list: which cooldown, until when."""
        bought = f"{self.category} bought {_day(self.bought)}"
        if not self.learned:
            return f"{bought}: fixed cooldown until {_day(self.cooldown_until)}"
        basis = (
            f"{self.own_intervals:g} own intervals shrunk toward the category"
            if self.own_intervals
            else "the category's cycle"
        )
        return (
            f"{bought}: learned cycle ({basis}) quiet until {_day(self.cooldown_until)},"
            f" next need due {_day(self.due_at or 0.0)}"
        )


def purchase_window(
    state: CustomerState,
    policy: ContactPolicy,
    cycles: CycleModel | None,
    category: str,
    profiled: bool = True,
) -> PurchaseWindow | None:
    """The cooldown (and, with a learned cycle, the due time) after the
    person's last purchase of `category`; None if they never bought it.
    Not `profiled` (profiling revoked): the category's cycle, not their own."""
    recency = state.recency
    # A category missing from the bounded map may have been evicted: the
    # newest evicted purchase is then the safe guess for when it was bought.
    bought = recency.last_purchase.get(category, recency.forgotten_purchase_at or None)
    if bought is None:
        return None
    cooldown = policy.purchase_cooldown
    floor = cooldown.floor_days * DAY
    n, log_days = recency.cycles.get(category, (0.0, 0.0)) if profiled else (0.0, 0.0)
    learned = cycles.days(category, n, log_days) if cycles is not None else None
    if learned is None:
        until = bought + max(floor, cooldown.seconds_for(category))
        return PurchaseWindow(category, bought, until, None, n)
    quiet_days, due_days = learned
    until = bought + max(floor, quiet_days * DAY)
    return PurchaseWindow(category, bought, until, max(until, bought + due_days * DAY), n)


def _day(ts: float) -> str:
    return f"{datetime.fromtimestamp(ts, UTC):%Y-%m-%d}"
