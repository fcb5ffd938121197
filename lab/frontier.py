"""How far could any policy get? An upper bound in the simulator, not a policy.

    python -m nudge.lab.frontier --customers 2000 --days 30 --seeds 7 8 9 \\
        --train-seeds 1 2 3 --out results/frontier

Issue #16 asks nudge for 60% of blast's incremental orders with at most 15%
of its messages. This asks whether anything could: `oracle` decides like
blast (every triggered action on every consented channel) and then sends only
the messages that the simulator's hidden truth says are most likely to make
the person order, up to 15% of blast's messages on the same world.

THE ORACLE READS THE HIDDEN TRUTH. At each decision it reads the person's
archetype, their own open rates and interests, what they bought and when,
their cart, a pending order, whether they are on the site or asleep, and
their annoyance, and computes the chance the message ends in a new order
(`order_chance`, the simulator's own formulas). No deployed policy can see
any of that, so its figures bound what a policy could do with blast's
messages at this budget; they are not something nudge could reach.

- Selection: per trigger, each action on its best channel only; never a
  category the person bought within JUST_BOUGHT_DAYS (the issue's harm
  target); only messages whose order chance is at least a threshold; at most
  the budget (15% of blast's messages on that world), first come first served.
- The threshold is fitted on the training worlds (`--train-seeds`), so that
  the oracle sends about the budget there; the judged worlds (`--seeds`)
  only apply it.
- `cart_due`: blast's messages about the person's open cart, or a filter
  reminder when the filter is due (the simulator's timing class), one channel
  per action, the same cap: the oracle's main source of orders, without its
  per-person truth.
- `random`: blast's messages kept at random with chance 15% (the same cap):
  what the budget buys without any selection.
- `nudge`: nudge as `nudge evaluate` serves it (the artifact trained on
  world `TRAIN_SEED` before the window), for where its messages go.

Every arm is judged as `nudge evaluate` judges: all orders in the window minus
the no-contact control's on the same world, with a 95% t-interval over seeds
(lab/incremental.py). Each marketing message delivered is also classified by
its action, channel, the person's archetype and the simulator's timing class
(cart, due, checkout, early, normal, just_bought), with whether it made a new
order itself (a click-through order, not an order credited to it that the
person was placing anyway): which messages carry the orders.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from hashlib import blake2b
from pathlib import Path
from statistics import fmean
from typing import Any

from nudge.lab.baselines import ActionDict, BlastPolicy, DecisionPolicy, NudgePolicy
from nudge.lab.evaluate import (
    TARGET_INCREMENTAL_SHARE,
    TARGET_MESSAGE_SHARE,
    TRAIN_SEED,
    aggregate,
    play,
    trained_scorer,
)
from nudge.lab.harms import JUST_BOUGHT_DAYS
from nudge.lab.incremental import METHOD, interval_text, paired_difference, t_interval
from nudge.lab.shop import CATEGORIES
from nudge.lab.shoppers import (
    ATTENTION_FATIGUE,
    CHANNEL_IRRITATION,
    CLICK_BY_CHANNEL,
    CLICK_FATIGUE,
    DAY_MEMORY,
    INTERRUPTING,
    WEEK_MEMORY,
    Person,
)
from nudge.lab.simulation import Simulation
from nudge.policy.clock import DAY

CONTROL = "silent"
ARMS = ("blast", "oracle", "cart_due", "random", "nudge")
#: The `cart_due` arm's channel for an action, first that blast chose: email
#: and web content make most of blast's orders, push and SMS few.
CHANNEL_ORDER = ("email", "web", "push", "sms")
#: How a delivered marketing message is classified (see `TracedSimulation`).
KIND_FIELDS = ("action", "channel", "archetype", "timing", "cart_age")
#: Ages of the open cart a "cart" message is about (days since its first item).
CART_AGES = ((1.0, "<1d"), (7.0, "1-7d"), (math.inf, ">7d"))


def order_chance(sim: Simulation, action: ActionDict, t: float) -> float:
    """The chance that `action`, reaching its person at `t`, makes them place a
    new order right away: seen x clicked x bought, as Simulation._react and
    _click_through draw them, from the person's hidden state. 0 where no new
    order can follow (a transactional message, a bounced email, web content
    for someone not on the site, an order the person is placing anyway)."""
    person = sim.by_id.get(action.get("customer_id") or "")
    if person is None or action.get("message_class") != "marketing":
        return 0.0
    channel = action["channel"]
    if channel == "email" and person.bad_email:
        return 0.0
    if channel == "web" and t > person.in_session_until:
        return 0.0
    if person.pending is not None and person.pending.at > t:
        return 0.0  # the message would only take the credit for it
    category = action.get("category")
    timing = sim._timing(person, action, t)  # the oracle reads the truth
    if timing != "cart" and category not in CATEGORIES:
        return 0.0  # nothing to put in a basket (checkout help names no category)
    click_lift, buy_lift, irritation = person.timing_lifts(timing, t)
    relevance = 1.0 if timing == "due" else person.relevance(category)
    asleep = person.asleep(t)
    woken = channel in INTERRUPTING and asleep
    weight = CHANNEL_IRRITATION[channel] * irritation * (1.6 - relevance)
    weight *= 2.5 if woken else 1.2 if asleep else 1.0
    level = _annoyance_after(person, t, weight)
    seen = person.opens[channel] / (1.0 + ATTENTION_FATIGUE * level) * (0.6 if woken else 1.0)
    archetype = person.archetype
    click = archetype.click_rate * CLICK_BY_CHANNEL[channel] * (0.15 + 0.85 * relevance)
    click = min(0.9, click * click_lift / (1.0 + CLICK_FATIGUE * level))
    fresh = timing == "due" or category not in CATEGORIES
    satiation = 1.0 if fresh else person.satiation(category, t)
    buy = min(0.8, archetype.buy_rate * buy_lift * satiation)
    return seen * click * buy


def _annoyance_after(person: Person, t: float, weight: float) -> float:
    """Person.annoyance(t) with this message's weight added, without decaying
    the person's own loads (the oracle only looks)."""
    elapsed = max(0.0, t - person.load_at)
    day = person.day_load * math.exp(-elapsed / DAY_MEMORY) + weight
    week = person.week_load * math.exp(-elapsed / WEEK_MEMORY) + weight
    return day / person.day_tolerance + week / person.week_tolerance


def just_bought(sim: Simulation, action: ActionDict, t: float) -> bool:
    """Whether the action names a category its person bought within JUST_BOUGHT_DAYS."""
    person = sim.by_id.get(action.get("customer_id") or "")
    category = action.get("category")
    if person is None or not category:
        return False
    return t - person.last_bought.get(category, -math.inf) < JUST_BOUGHT_DAYS * DAY


class TracedSimulation(Simulation):
    """The same world, which also notes each marketing message it delivers:
    its kind (`KIND_FIELDS`) and whether it made a new order itself. Only
    reads; the people live exactly as in a plain Simulation of the seed."""

    def __init__(self, population_size: int, days: float, seed: int) -> None:
        super().__init__(population_size, days, seed)
        self.kinds: dict[str, tuple[str, ...]] = {}
        self.caused: set[str] = set()

    def _react(self, action: dict[str, Any], t: float) -> None:
        person = self.by_id.get(action.get("customer_id", ""))
        if person is not None and action.get("message_class") == "marketing":
            timing = self._timing(person, action, t)
            age = "-"
            if timing == "cart":
                days = (t - person.cart_since) / DAY
                age = next(label for limit, label in CART_AGES if days < limit)
            kind = (action["action_id"], action["channel"], person.archetype.name, timing, age)
            self.kinds[action["decision_id"]] = kind
        super()._react(action, t)

    def _click_through(
        self, person: Person, action: dict[str, Any], t: float, timing: str, buy_lift: float
    ) -> None:
        orders = self._order_ids
        super()._click_through(person, action, t, timing, buy_lift)
        if self._order_ids > orders:
            self.caused.add(action["decision_id"])

    def by_kind(self) -> dict[str, dict[str, int]]:
        """Messages delivered and new orders they made, per kind ("a|b|c|d")."""
        table: dict[str, dict[str, int]] = {}
        for decision, kind in self.kinds.items():
            row = table.setdefault("|".join(kind), {"messages": 0, "caused_orders": 0})
            row["messages"] += 1
            row["caused_orders"] += decision in self.caused
        return dict(sorted(table.items()))


class ThinnedBlast(BlastPolicy, ABC):
    """Blast's decisions, of which only the marketing messages `select` keeps
    are sent, at most `budget` of them (order confirmations always go)."""

    name = "thinned"

    def __init__(self, budget: int | None = None) -> None:
        super().__init__()
        self.budget = budget
        self.sent = 0

    def decide(self, kind: str, event: dict[str, Any], now: datetime) -> list[ActionDict]:
        actions = super().decide(kind, event, now)
        marketing = [a for a in actions if a["message_class"] == "marketing"]
        kept = [a for a in actions if a["message_class"] != "marketing"]
        for action in self.select(marketing, now.timestamp()):
            if self.budget is not None and self.sent >= self.budget:
                break
            self.sent += 1
            kept.append(action)
        return kept

    @abstractmethod
    def select(self, marketing: list[ActionDict], t: float) -> list[ActionDict]:
        """The marketing actions to send, best first (the budget cuts the rest)."""


class OraclePolicy(ThinnedBlast):
    """THE BOUND, NOT A POLICY: blast's messages whose order chance, read from
    the simulator's hidden truth (`order_chance`), is at least `threshold`;
    each action on its best channel, never a just-bought category. `scores`
    keeps every candidate's chance, sent or not (to fit the threshold)."""

    name = "oracle"

    def __init__(self, world: Simulation, threshold: float, budget: int | None = None) -> None:
        super().__init__(budget)
        self.world = world
        self.threshold = threshold
        self.scores: list[float] = []

    def select(self, marketing: list[ActionDict], t: float) -> list[ActionDict]:
        if stale(self.world):
            return []
        best: dict[str, tuple[float, ActionDict]] = {}
        for action in marketing:
            if just_bought(self.world, action, t):
                continue
            chance = order_chance(self.world, action, t)
            if action["action_id"] not in best or chance > best[action["action_id"]][0]:
                best[action["action_id"]] = (chance, action)
        self.scores += [chance for chance, _ in best.values()]
        ranked = sorted(best.values(), key=lambda pair: -pair[0])
        return [action for chance, action in ranked if chance >= self.threshold]


class CartDuePolicy(ThinnedBlast):
    """Blast's messages at the two moments the simulator rewards: about what
    is in the person's open cart, or a filter reminder when it is due (its
    timing class, read from the world); each action on one channel
    (`CHANNEL_ORDER`), never a just-bought category. A policy sees the cart;
    the due date it can only estimate (purchase cycles)."""

    name = "cart_due"

    def __init__(self, world: Simulation, budget: int | None = None) -> None:
        super().__init__(budget)
        self.world = world

    def select(self, marketing: list[ActionDict], t: float) -> list[ActionDict]:
        if stale(self.world):
            return []
        chosen: dict[str, ActionDict] = {}
        for action in sorted(marketing, key=lambda a: CHANNEL_ORDER.index(a["channel"])):
            person = self.world.by_id.get(action["customer_id"])
            if (
                person is None
                or action["action_id"] in chosen
                or just_bought(self.world, action, t)
            ):
                continue
            if self.world._timing(person, action, t) in ("cart", "due"):  # read from the world
                chosen[action["action_id"]] = action
        return list(chosen.values())


def stale(world: Simulation) -> bool:
    """Whether the world is still replaying the imported history: a decision
    on it is delivered at the window's start, when the person has moved on."""
    return world.clock < world.start


class RandomPolicy(ThinnedBlast):
    """Blast's messages, each kept with chance `share` (a hash of its decision
    id): what the budget buys without any selection."""

    name = "random"

    def __init__(self, share: float, budget: int | None = None) -> None:
        super().__init__(budget)
        self.share = share

    def select(self, marketing: list[ActionDict], t: float) -> list[ActionDict]:
        return [a for a in marketing if _uniform(a["decision_id"]) < self.share]


def _uniform(text: str) -> float:
    """A number in [0, 1) fixed by `text`."""
    return int.from_bytes(blake2b(text.encode(), digest_size=8).digest(), "big") / 2**64


def play_traced(
    name: str,
    customers: int,
    days: float,
    seed: int,
    make: Callable[[TracedSimulation], DecisionPolicy],
) -> tuple[dict[str, Any], DecisionPolicy]:
    """Play a policy built on (and able to read) a traced world of `seed`; its
    tally, with the messages and new orders they made per kind."""
    world = TracedSimulation(customers, days, seed)
    policy = make(world)
    tally = play(name, customers, days, seed, make=lambda: policy, world=world)
    tally["by_kind"] = world.by_kind()
    tally["caused_orders"] = len(world.caused)
    return tally, policy


def fit_threshold(
    customers: int, days: float, seeds: Sequence[int], share: float = TARGET_MESSAGE_SHARE
) -> dict[str, Any]:
    """The order chance above which the oracle sends about `share` of blast's
    messages, fitted world after world: on each training world blast is
    played, then the oracle with the threshold so far; the next threshold is
    the one that would have sent the budget among the candidates it saw."""
    steps = []
    threshold = 0.0
    for seed in seeds:
        blast = play("blast", customers, days, seed)
        budget = int(share * blast["messages"])
        tally, oracle = play_traced(
            "oracle", customers, days, seed, lambda w, t=threshold: OraclePolicy(w, t)
        )
        scores = sorted(oracle.scores, reverse=True)  # type: ignore[attr-defined]
        fitted = scores[budget - 1] if 0 < budget <= len(scores) else 0.0
        steps.append(
            {
                "seed": seed,
                "blast_messages": blast["messages"],
                "budget": budget,
                "threshold_played": threshold,
                "messages_sent": tally["messages"],
                "threshold_fitted": fitted,
            }
        )
        threshold = fitted
    return {"threshold": threshold, "steps": steps}


def play_world(
    customers: int, days: float, seed: int, threshold: float, nudge_make: Callable[[], Any]
) -> dict[str, dict[str, Any]]:
    """Every arm and the control on world `seed`; the budget is 15% of
    blast's messages there."""
    results = {CONTROL: play(CONTROL, customers, days, seed)}
    results["blast"], _ = play_traced("blast", customers, days, seed, lambda w: BlastPolicy())
    budget = int(TARGET_MESSAGE_SHARE * results["blast"]["messages"])
    makers: dict[str, Callable[[TracedSimulation], DecisionPolicy]] = {
        "oracle": lambda w: OraclePolicy(w, threshold, budget),
        "cart_due": lambda w: CartDuePolicy(w, budget),
        "random": lambda w: RandomPolicy(TARGET_MESSAGE_SHARE, budget),
        "nudge": lambda w: nudge_make(),
    }
    for arm, make in makers.items():
        results[arm], _ = play_traced(arm, customers, days, seed, make)
        results[arm]["budget"] = budget
    control = results[CONTROL]["total_conversions"]
    for result in results.values():
        result["incremental_conversions"] = result["total_conversions"] - control
    return results


def run(
    customers: int,
    days: float,
    seeds: Sequence[int],
    train_seeds: Sequence[int],
    work: Path,
    progress: Callable[[str], None] = lambda _: None,
) -> dict[str, Any]:
    """Fit the threshold on the training worlds, play every arm on the judged ones."""
    if set(seeds) & set(train_seeds):
        raise ValueError("the judged worlds must not be training worlds")
    started = datetime.now(UTC)
    progress(f"fitting the threshold on worlds {list(train_seeds)}")
    fitted = fit_threshold(customers, days, train_seeds)
    progress(f"threshold {fitted['threshold']:.5f}; training nudge's scorer on world {TRAIN_SEED}")
    served, _ = trained_scorer(customers, days, TRAIN_SEED, work)
    runs = {}
    for seed in seeds:
        progress(f"world {seed}")
        runs[seed] = play_world(
            customers, days, seed, fitted["threshold"], lambda: NudgePolicy(served)
        )
    arms = {name: aggregate([runs[s][name] for s in seeds]) for name in (*ARMS, CONTROL)}
    return {
        "check": "how far could any policy get with 15% of blast's messages? (simulated)",
        "warning": "oracle READS THE SIMULATOR'S HIDDEN TRUTH: an upper bound, not a policy",
        "command": (
            f"python -m nudge.lab.frontier --customers {customers} --days {days:g}"
            f" --seeds {' '.join(map(str, seeds))}"
            f" --train-seeds {' '.join(map(str, train_seeds))}"
        ),
        "world": {"customers": customers, "days": days, "seeds": list(seeds)},
        "method": METHOD,
        "nudge_served": served.version,
        "threshold": fitted,
        "arms": arms,
        "shares_of_blast": {arm: shares(runs, arm) for arm in ARMS if arm != "blast"},
        "where": {arm: where(runs, arm) for arm in ARMS},
        "per_seed": {
            str(seed): {arm: _without(r, "by_kind") for arm, r in runs[seed].items()}
            for seed in seeds
        },
        "by_kind": {arm: _mean_kinds([runs[s][arm]["by_kind"] for s in seeds]) for arm in ARMS},
        "wall_seconds": round((datetime.now(UTC) - started).total_seconds(), 1),
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def shares(runs: dict[int, dict[str, dict[str, Any]]], arm: str) -> dict[str, Any]:
    """An arm's incremental orders, messages and unsubscribes as shares of
    blast's on the same worlds (t-intervals over the per-seed ratios), and its
    margin over the target (orders minus 60% of blast's, per seed)."""
    seeds = sorted(runs)

    def ratio(key: str) -> dict[str, Any]:
        values = [_ratio(runs[s][arm][key], runs[s]["blast"][key]) for s in seeds]
        return t_interval(values).as_dict()

    margin = paired_difference(
        [runs[s][arm]["incremental_conversions"] for s in seeds],
        [
            round(TARGET_INCREMENTAL_SHARE * runs[s]["blast"]["incremental_conversions"], 1)
            for s in seeds
        ],
    )
    return {
        "incremental_conversions": ratio("incremental_conversions"),
        "messages": ratio("messages"),
        "unsubscribes": ratio("unsubscribes"),
        "orders_over_target": margin.as_dict(),
    }


def _ratio(mine: float, theirs: float) -> float:
    return round(mine / theirs, 4) if theirs else math.nan


def where(runs: dict[int, dict[str, dict[str, Any]]], arm: str) -> dict[str, Any]:
    """Per value of each kind field: an arm's messages and the new orders they
    made, means over the seeds."""
    seeds = sorted(runs)
    table: dict[str, Any] = {}
    for position, field in enumerate(KIND_FIELDS):
        totals: dict[str, list[float]] = {}
        for seed in seeds:
            for kind, row in runs[seed][arm]["by_kind"].items():
                value = kind.split("|")[position]
                cell = totals.setdefault(value, [0.0, 0.0])
                cell[0] += row["messages"] / len(seeds)
                cell[1] += row["caused_orders"] / len(seeds)
        table[field] = {
            value: {"messages": round(m, 1), "caused_orders": round(c, 2)}
            for value, (m, c) in sorted(totals.items(), key=lambda item: -item[1][1])
        }
    return table


def _mean_kinds(per_seed: list[dict[str, dict[str, int]]]) -> dict[str, dict[str, float]]:
    kinds = sorted({kind for table in per_seed for kind in table})
    empty = {"messages": 0, "caused_orders": 0}
    return {
        kind: {
            key: round(fmean(table.get(kind, empty)[key] for table in per_seed), 2) for key in empty
        }
        for kind in kinds
    }


def _without(result: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in result.items() if k != key}


LEGEND = """\
Incremental orders: all orders in the window minus the no-contact control's on
the same world (95% t-interval over seeds); the shares of blast's are means of
the per-seed ratios with their t-intervals. In the tables by kind, "orders" are
the new orders the messages made themselves (a click that led to an order the
person was not already placing): gross, before any later purchase they replace.
`cart_age` is the age of the open cart a "cart" message is about ("-" for the
other timings). Arms: see lab/frontier.py."""


def render(report: dict[str, Any]) -> str:
    """A plain-text summary for the terminal and results/frontier/README.md."""
    lines = [f"# {report['check']}", "", f"    {report['command']}", ""]
    lines += [f"**{report['warning']}.**", "", LEGEND, ""]
    lines.append(f"Order-chance threshold fitted on the training worlds: {_threshold(report)}")
    lines += [
        "",
        "| arm | incremental orders (95% interval) | % of blast's | messages | % of blast's"
        " | unsubscribes | % of blast's | just-bought promotions (all seeds) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in ARMS:
        arm = report["arms"][name]
        share = report["shares_of_blast"].get(name)
        lines.append(
            f"| {name} | {interval_text(arm['incremental_conversions'])}"
            f" | {_percent(share, 'incremental_conversions')} | {arm['messages']:,.0f}"
            f" | {_percent(share, 'messages')} | {arm['unsubscribes']:,.1f}"
            f" | {_percent(share, 'unsubscribes')} | {arm['just_bought_promotions_total']} |"
        )
    lines += ["", "Orders over the target (arm minus 60% of blast's, per seed, 95% interval):"]
    for name, share in report["shares_of_blast"].items():
        margin = share["orders_over_target"]
        per_seed = ", ".join(f"{value:+.1f}" for value in margin["per_seed"])
        lines.append(f"- {name}: {interval_text(margin)}, per seed {per_seed}")
    for field in KIND_FIELDS:
        lines += ["", f"Messages and the new orders they made, by {field} (means over seeds):", ""]
        lines.append(
            "| " + field + " | " + " | ".join(f"{a} msgs | {a} orders" for a in ARMS) + " |"
        )
        lines.append("|---" * (1 + 2 * len(ARMS)) + "|")
        values = sorted({v for arm in ARMS for v in report["where"][arm][field]})
        for value in values:
            cells = []
            for arm in ARMS:
                row = report["where"][arm][field].get(value, {"messages": 0, "caused_orders": 0})
                cells.append(f"{row['messages']:,.0f} | {row['caused_orders']:.1f}")
            lines.append(f"| {value} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _threshold(report: dict[str, Any]) -> str:
    fitted = report["threshold"]
    steps = ", ".join(
        f"world {s['seed']} played {s['threshold_played']:.4f} sent {s['messages_sent']:,}"
        f" (budget {s['budget']:,}) -> {s['threshold_fitted']:.4f}"
        for s in fitted["steps"]
    )
    return f"{fitted['threshold']:.4f} ({steps})"


def _percent(share: dict[str, Any] | None, key: str) -> str:
    if share is None:
        return "100%"
    figure = share[key]
    spread = f" ({figure['ci95'][0]:.0%} to {figure['ci95'][1]:.0%})" if figure["ci95"] else ""
    return f"{figure['mean']:.0%}{spread}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=2000)
    parser.add_argument("--days", type=float, default=30)
    parser.add_argument("--seeds", type=int, nargs="+", default=[7, 8, 9])
    parser.add_argument("--train-seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--out", type=Path, default=None, help="directory for result.json")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="nudge-frontier-") as tmp:
        report = run(
            args.customers,
            args.days,
            args.seeds,
            args.train_seeds,
            Path(tmp),
            progress=lambda text: print(text, flush=True),
        )
    text = render(report)
    print(text)
    if args.out is not None:
        publish(report, text, args.out)
    return 0


def publish(report: dict[str, Any], text: str, out: Path) -> None:
    """The report as result.json and its summary as README.md in `out`."""
    out.mkdir(parents=True, exist_ok=True)
    for name, content in (("result.json", json.dumps(report, indent=2)), ("README.md", text)):
        (out / name).write_text(content.rstrip("\n") + "\n")


if __name__ == "__main__":
    raise SystemExit(main())
