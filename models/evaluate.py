"""Judge nudge against naive policies on the same simulated population.

Each policy plays the same world (same people, same seed; see
models/simulator.py) and is scored on what happens inside the window:

- messages: marketing actions sent (order confirmations are counted apart)
- attributed conversions: `converted` feedback, i.e. orders a channel credits
  to a message (last touch: an order the person was about to place anyway
  counts if they clicked a message first)
- organic purchases: every other order
- total conversions: all orders in the window, attributed + organic. This is
  the number a marketer's revenue report shows; attribution alone credits
  messages with orders that would have happened without them.
- incremental orders: total conversions minus those with no marketing at all
  (the `silent` policy on the same world): what the messages really added.

Targets: nudge converts at least 2x as many messages as blast, causes at most
a quarter of blast's unsubscribes, and keeps at least 80% of blast's total
conversions.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from models.baselines import (
    AutopilotPolicy,
    BlastPolicy,
    DecisionPolicy,
    NudgePolicy,
    SilentPolicy,
)
from models.simulator import DAY, START, Simulation, delivery_time

POLICIES: dict[str, Callable[[], DecisionPolicy]] = {
    "nudge": NudgePolicy,
    "blast": BlastPolicy,
    "autopilot": AutopilotPolicy,
    "silent": SilentPolicy,
}
DEFINITIONS = {
    "messages": "marketing actions sent (order confirmations are counted apart)",
    "attributed_conversions": "converted feedback: orders a channel credits to a message",
    "organic_purchases": "orders not credited to any message",
    "total_conversions": "all orders in the window = attributed + organic",
    "conversions_per_1000_messages": "attributed conversions per 1,000 marketing messages",
    "incremental_orders": "total conversions minus those of `silent` (no marketing, same world)",
    "night_interruptions": "push and SMS delivered while the person sleeps",
    "just_bought_messages": "marketing for a category the person bought in the last 7 days",
    "people_opted_out": "people who unsubscribed or complained on at least one channel",
}
TARGET_RATE_MULTIPLE = 2.0
TARGET_UNSUBSCRIBE_SHARE = 0.25
TARGET_TOTAL_SHARE = 0.8
JUST_BOUGHT_DAYS = 7


@dataclass
class Tally:
    """What one policy caused inside the window."""

    messages: int = 0
    messages_by_channel: dict[str, int] = field(default_factory=dict)
    transactional_messages: int = 0
    night_interruptions: int = 0
    just_bought_messages: int = 0
    attributed_conversions: int = 0
    attributed_revenue: float = 0.0
    total_conversions: int = 0
    revenue: float = 0.0
    unsubscribes: int = 0
    complaints: int = 0
    people_opted_out: int = 0
    invalid_events: int = 0
    _opted_out: set[str] = field(default_factory=set, repr=False)

    @property
    def organic_purchases(self) -> int:
        return self.total_conversions - self.attributed_conversions

    @property
    def conversions_per_1000_messages(self) -> float:
        return 1000.0 * self.attributed_conversions / self.messages if self.messages else 0.0

    def count(self, kind: str, event: dict[str, Any], sim: Simulation) -> None:
        if kind == "actions":
            self._count_action(event, sim)
        elif kind == "purchases":
            self.total_conversions += 1
            self.revenue += sum(i["price"] * i["quantity"] for i in event["items"])
        elif kind == "feedback":
            kind_type = event["type"]
            if kind_type == "converted":
                self.attributed_conversions += 1
                self.attributed_revenue += event.get("value") or 0.0
            elif kind_type in ("unsubscribed", "complained"):
                if kind_type == "unsubscribed":
                    self.unsubscribes += 1
                else:
                    self.complaints += 1
                self._opted_out.add(event["customer_id"])
                self.people_opted_out = len(self._opted_out)

    def _count_action(self, action: dict[str, Any], sim: Simulation) -> None:
        if action["message_class"] != "marketing":
            self.transactional_messages += 1
            return
        channel = action["channel"]
        self.messages += 1
        self.messages_by_channel[channel] = self.messages_by_channel.get(channel, 0) + 1
        person = sim.by_id.get(action["customer_id"])
        if person is None:
            return
        at = delivery_time(action)
        if channel in ("push", "sms") and person.asleep(at):
            self.night_interruptions += 1
        bought = person.last_bought.get(action.get("category") or "")
        if bought is not None and at - bought < JUST_BOUGHT_DAYS * DAY:
            self.just_bought_messages += 1

    def summary(self) -> dict[str, Any]:
        data = {k: v for k, v in asdict(self).items() if not k.startswith("_")}
        data["organic_purchases"] = self.organic_purchases
        data["conversions_per_1000_messages"] = round(self.conversions_per_1000_messages, 3)
        data["revenue"] = round(self.revenue, 2)
        data["attributed_revenue"] = round(self.attributed_revenue, 2)
        return data


def play(
    name: str,
    customers: int,
    days: float,
    seed: int,
    progress: Callable[[float], None] | None = None,
) -> dict[str, Any]:
    """Run one policy on the world and tally the window. `progress` gets the
    simulated days done, now and then."""
    policy = POLICIES[name]()
    sim = Simulation(customers, days, seed)
    tally = Tally()
    for n, (kind, event) in enumerate(sim.run(policy)):
        if kind == "actions" or sim.clock >= sim.start:  # not the imported history
            tally.count(kind, event, sim)
        if progress is not None and n % 2000 == 0:
            progress(max(0.0, (sim.clock - sim.start) / DAY))
    if progress is not None:
        progress(days)
    worker = getattr(policy, "worker", None)
    tally.invalid_events = sum(worker.deadletters.values()) if worker else 0
    return tally.summary()


def evaluate(
    customers: int = 2000,
    days: float = 30,
    seed: int = 7,
    progress: Callable[[str], Callable[[float], None]] | None = None,
) -> dict[str, Any]:
    """Play every policy on the same world; the report with targets.
    `progress(name)` may return a callback for that policy's progress."""
    results = {
        name: play(name, customers, days, seed, progress(name) if progress else None)
        for name in POLICIES
    }
    silent = results["silent"]["total_conversions"]
    for result in results.values():
        result["incremental_orders"] = result["total_conversions"] - silent
    targets = check_targets(results)
    return {
        "evaluation": "nudge vs naive policies on a simulated population",
        "command": f"nudge evaluate --customers {customers} --days {days:g} --seed {seed}",
        "world": {
            "customers": customers,
            "days": days,
            "seed": seed,
            "start": START.isoformat(),
            "catalog": "config/catalog.toml",
            "policy": "config/policy.toml",
            "scorer": "heuristic-v1",
        },
        "definitions": DEFINITIONS,
        "policies": results,
        "targets": targets,
        "all_targets_passed": all(t["passed"] for t in targets),
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def check_targets(results: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    nudge, blast = results["nudge"], results["blast"]
    rate = TARGET_RATE_MULTIPLE * blast["conversions_per_1000_messages"]
    unsubscribes = TARGET_UNSUBSCRIBE_SHARE * blast["unsubscribes"]
    total = TARGET_TOTAL_SHARE * blast["total_conversions"]
    return [
        {
            "target": "conversions per 1,000 messages >= 2x blast's",
            "nudge": nudge["conversions_per_1000_messages"],
            "comparison": ">=",
            "threshold": round(rate, 3),
            "passed": nudge["conversions_per_1000_messages"] >= rate,
        },
        {
            "target": "unsubscribes <= 1/4 of blast's",
            "nudge": nudge["unsubscribes"],
            "comparison": "<=",
            "threshold": round(unsubscribes, 2),
            "passed": nudge["unsubscribes"] <= unsubscribes,
        },
        {
            "target": "total conversions (all orders: attributed + organic) >= 80% of blast's",
            "nudge": nudge["total_conversions"],
            "comparison": ">=",
            "threshold": round(total, 2),
            "passed": nudge["total_conversions"] >= total,
        },
    ]


# -- output ------------------------------------------------------------------------------

ROWS = (
    ("marketing messages", "messages", "{:,}"),
    ("  push/SMS at night", "night_interruptions", "{:,}"),
    ("  promoting what was just bought", "just_bought_messages", "{:,}"),
    ("order confirmations", "transactional_messages", "{:,}"),
    ("attributed conversions", "attributed_conversions", "{:,}"),
    ("organic purchases", "organic_purchases", "{:,}"),
    ("total conversions (orders)", "total_conversions", "{:,}"),
    ("incremental orders vs silent", "incremental_orders", "{:+,}"),
    ("conversions / 1,000 messages", "conversions_per_1000_messages", "{:.2f}"),
    ("unsubscribes", "unsubscribes", "{:,}"),
    ("complaints", "complaints", "{:,}"),
    ("people who opted out", "people_opted_out", "{:,}"),
    ("revenue (EUR)", "revenue", "{:,.0f}"),
    ("attributed revenue (EUR)", "attributed_revenue", "{:,.0f}"),
)


def render(report: dict[str, Any]) -> str:
    """The table and the verdicts, as the command prints them."""
    policies = report["policies"]
    width = max(len(label) for label, _, _ in ROWS) + 2
    lines = [f"{'':{width}}" + "".join(f"{name:>12}" for name in policies)]
    for label, key, fmt in ROWS:
        cells = "".join(f"{fmt.format(result[key]):>12}" for result in policies.values())
        lines.append(f"{label:{width}}" + cells)
    lines += [
        "",
        "total conversions = every order in the window (attributed + organic): the number",
        "a revenue report shows; attribution alone credits messages with orders that",
        "would have happened anyway. `silent` sends no marketing (the control).",
        "",
    ]
    for target in report["targets"]:
        verdict = "PASS" if target["passed"] else "FAIL"
        lines.append(
            f"{verdict}  {target['target']}: nudge {target['nudge']:,}"
            f" (needs {target['comparison']} {target['threshold']:,})"
        )
    return "\n".join(lines)


def write_json(report: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")


def plot(report: dict[str, Any], path: Path) -> None:
    """Four bar charts side by side: volume, efficiency, harm, outcome."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    policies = report["policies"]
    names = list(policies)
    colours = {"nudge": "#2a9d8f", "blast": "#e76f51", "autopilot": "#f4a261", "silent": "#8d99ae"}
    colour = [colours.get(name, "#457b9d") for name in names]
    figure, axes = plt.subplots(1, 4, figsize=(16, 4.2))
    panels = (
        ("marketing messages", "messages"),
        ("conversions per 1,000 messages", "conversions_per_1000_messages"),
        ("unsubscribes + complaints", None),
        ("orders: attributed + organic", None),
    )
    for axis, (title, key) in zip(axes, panels, strict=True):
        axis.set_title(title, fontsize=11)
        if key is not None:
            axis.bar(names, [policies[n][key] for n in names], color=colour)
        axis.tick_params(axis="x", labelsize=9)
    unsubscribes = [policies[n]["unsubscribes"] for n in names]
    complaints = [policies[n]["complaints"] for n in names]
    axes[2].bar(names, unsubscribes, color=colour, label="unsubscribes")
    axes[2].bar(names, complaints, bottom=unsubscribes, color="#264653", label="complaints")
    axes[2].legend(fontsize=8)
    organic = [policies[n]["organic_purchases"] for n in names]
    attributed = [policies[n]["attributed_conversions"] for n in names]
    axes[3].bar(names, organic, color="#cfd8dc", label="organic")
    axes[3].bar(names, attributed, bottom=organic, color=colour, label="attributed")
    axes[3].legend(fontsize=8, loc="lower right")
    world = report["world"]
    figure.suptitle(
        f"{world['customers']:,} simulated customers, {world['days']:g} days, seed {world['seed']}"
        f"  ({report['command']})",
        fontsize=10,
    )
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
