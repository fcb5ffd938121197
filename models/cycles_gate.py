"""Judge learned purchase cycles on purchases they did not see, and serve
them only if they do no worse than the fixed cooldowns.

Why: a wrong learned cooldown silences people right before they would have
bought again. So the purchase histories are split by time: the cycles are
fitted on the purchases up to a cutoff (gaps still open then are censored
there, `PurchaseCycles.fit` refuses anything later), and every repeat
purchase after it is judged as the worker would have judged it at the
purchase before: the category's cycle from before the cutoff, the person's
own intervals as their state held them then (policy/cycles.py `observe`).

The gate (`serve_cycles`): the learned cycles are served only if, on the
held-out repeat purchases, they silence no larger share than the policy's
fixed cooldowns (`purchase_cooldown`, each with the floor, as the worker
applies them). Cooldowns shorter than the fixed ones pass, and the floor
bounds how soon a category can be promoted again. What is judged is what is
served: the fit before the cutoff. The same judgement, with more figures, is
lab/cycles_check.py's check on real histories.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from nudge.models.cycles import Purchase, PurchaseCycles, histories, purchases_from_log
from nudge.policy.clock import DAY
from nudge.policy.config import CooldownPolicy
from nudge.policy.cycles import MIN_GAP_DAYS, intervals, observe
from nudge.schemas.eventlog import LoggedEvent

#: The last quarter of the purchase history is held out to judge the cycles on.
HELD_OUT_SHARE = 0.25
#: Repeat purchases needed both to fit cycles and to judge them.
MIN_REPEATS = 30
#: The name the gate's tally gives the policy's fixed cooldowns.
CONFIGURED = "configured"

#: A cooldown in days for a category.
Cooldown = Callable[[str], float]


@dataclass
class Tally:
    """What the repeat purchases after the cutoff say about one model."""

    repeats: int = 0
    silenced: dict[str, int] = field(default_factory=dict)  # cooldown -> repeats inside it
    reminded_before: int = 0
    leads: list[float] = field(default_factory=list)  # days a reminder came before
    late_by: list[float] = field(default_factory=list)  # days the repurchase came first
    # Reminders falling due after the cutoff: followed by a repurchase, or not by the end
    reminders_answered: int = 0
    reminders_unanswered: int = 0
    log_density: float = 0.0
    log_density_category: float = 0.0  # the same, ignoring the person's own intervals


def judge(
    model: PurchaseCycles,
    purchases: list[Purchase],
    cutoff: float,
    fixed: Mapping[str, Cooldown],
    floor_days: float = 3.0,
) -> Tally:
    """Judge every repeat purchase after `cutoff` as the worker would have at
    the purchase before it, against the learned cooldown ("learned") and each
    of the `fixed` ones (by name), all with the floor."""
    tally = Tally(silenced={"learned": 0, **dict.fromkeys(fixed, 0)})
    end = max(p.at for p in purchases)
    for category, people in histories(purchases).items():
        for times in people.values():
            own: dict[str, list[float]] = {}
            last: float | None = None
            for ts in times:
                if last is not None and ts > cutoff and ts - last >= MIN_GAP_DAYS * DAY:
                    due = _judge(tally, model, category, own, (ts - last) / DAY, fixed, floor_days)
                    tally.reminders_answered += cutoff < last + due * DAY < ts
                observe(own, category, last, ts)
                last = ts
            assert last is not None
            n, log_days = own.get(category, (0.0, 0.0))
            _, due = _window(model, category, n, log_days, floor_days)
            tally.reminders_unanswered += cutoff < last + due * DAY <= end
    return tally


def _window(
    model: PurchaseCycles, category: str, n: float, log_days: float, floor_days: float
) -> tuple[float, float]:
    days = model.days(category, n, log_days)
    assert days is not None
    quiet = max(floor_days, days[0])
    return quiet, max(quiet, days[1])


def _judge(
    tally: Tally,
    model: PurchaseCycles,
    category: str,
    own: dict[str, list[float]],
    days: float,
    fixed: Mapping[str, Cooldown],
    floor_days: float,
) -> float:
    """Count one repeat purchase `days` after the last; the due time (days)."""
    n, log_days = own.get(category, (0.0, 0.0))
    quiet, due = _window(model, category, n, log_days, floor_days)
    tally.repeats += 1
    tally.silenced["learned"] += days < quiet
    for name, cooldown in fixed.items():
        tally.silenced[name] += days < max(floor_days, cooldown(category))
    if due < days:
        tally.reminded_before += 1
        tally.leads.append(days - due)
    else:
        tally.late_by.append(due - days)
    tally.log_density += model.log_density(category, n, log_days, days)
    tally.log_density_category += model.log_density(category, 0.0, 0.0, days)
    return due


def repeat_count(purchases: Iterable[Purchase]) -> int:
    """Repeat purchases (intervals of at least MIN_GAP_DAYS) in purchase histories."""
    return sum(
        len(intervals(t)) for people in histories(purchases).values() for t in people.values()
    )


def serve_cycles(
    records: Iterable[LoggedEvent],
    end: float,
    cooldown: CooldownPolicy,
    min_repeats: int = MIN_REPEATS,
) -> tuple[PurchaseCycles | None, dict[str, object]]:
    """Cycles fitted on the log's purchases before its last HELD_OUT_SHARE
    (of the time from the first purchase to `end`), and what the metadata
    says of them; None (the policy's fixed cooldowns stay) when too few
    repeat purchases fit or judge them, or when on the held-out ones they
    silence more than the fixed `cooldown` does."""
    purchases = [p for p in purchases_from_log(records) if p.at <= end]
    if not purchases:
        return None, {"served": False, "reason": "no purchases in the log"}
    cutoff = end - HELD_OUT_SHARE * (end - min(p.at for p in purchases))
    before = [p for p in purchases if p.at <= cutoff]
    fitted_on = repeat_count(before)
    if fitted_on < min_repeats:
        reason = (
            f"{fitted_on} repeat purchases before {_day(cutoff)} to fit on,"
            f" fewer than {min_repeats}"
        )
        return None, {"served": False, "reason": reason}
    model = PurchaseCycles(min_intervals=min_repeats).fit(before, end=cutoff)
    fixed = {CONFIGURED: lambda category: cooldown.seconds_for(category) / DAY}
    tally = judge(model, purchases, cutoff, fixed, cooldown.floor_days)
    n = tally.repeats
    learned, configured = tally.silenced["learned"], tally.silenced[CONFIGURED]
    held_out = {
        "from": _day(cutoff),
        "repeat_purchases": n,
        "silenced_learned": learned,
        "silenced_fixed": configured,
        "floor_days": cooldown.floor_days,
    }
    summary: dict[str, object] = {
        "served": False,
        "repeat_purchases": fitted_on,
        "held_out": held_out,
        "categories": model.summary(),
    }
    if n < min_repeats:
        summary["reason"] = (
            f"{n} repeat purchases after {_day(cutoff)} to judge on, fewer than {min_repeats}"
        )
        return None, summary
    if learned > configured:
        summary["reason"] = (
            f"on the {n} repeat purchases after {_day(cutoff)} they silence {learned}"
            f" ({learned / n:.1%}), the fixed cooldowns {configured} ({configured / n:.1%})"
        )
        return None, summary
    summary["served"] = True
    return model, summary


def _day(ts: float) -> str:
    return f"{datetime.fromtimestamp(ts, UTC):%Y-%m-%d}"
