"""Judge nudge by what its messages add, against naive policies on one world.

Each policy plays the same world (same people, same seed; see
lab/simulation.py), on several seeds, and is scored on what happens inside
the window. The figure that leads is incremental: orders over the no-contact
control (`silent`) on the same world and seed, because most orders happen
without any message and attribution credits messages with some of them.

- incremental conversions: all orders in the window minus `silent`'s on the
  same seed; mean over seeds with a 95% t-interval (lab/incremental.py)
- incremental conversions per 1,000 messages: what a message adds, on average
- messages: marketing actions sent (order confirmations are counted apart)
- attributed conversions: `converted` feedback, i.e. orders a channel credits
  to a message (last touch: an order the person was about to place anyway
  counts if they clicked a message first)
- unsubscribes, complaints; messages in the person's local night and
  promotions of a just-bought category (lab/harms.py)

Targets, on the means over the seeds: nudge's incremental conversions at least
60% of blast's, with at most 15% of blast's messages and at most 15% of its
unsubscribes, and no promotion of a category its person bought within
JUST_BOUGHT_DAYS, on any seed.

nudge serves what a deployment would serve (`scorer="trained"`, the default):
`nudge train`'s artifact (propensity, uplift if it earns serving, purchase
cycles, personas), learned from another world in the month before the window
and loaded as a worker loads it (`trained_scorer`). `scorer="heuristic"`
plays it without any model, as a deployment does before its first training.
The other policies use no model: blast and autopilot do no targeting.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from statistics import fmean
from typing import Any

from nudge.lab.baselines import (
    CATALOG,
    POLICY,
    AutopilotPolicy,
    BlastPolicy,
    DecisionPolicy,
    NudgePolicy,
    SilentPolicy,
)
from nudge.lab.harms import JUST_BOUGHT_DAYS, NIGHT_FROM, NIGHT_UNTIL, HarmCounter
from nudge.lab.incremental import METHOD, paired_difference
from nudge.lab.simulation import START, Simulation
from nudge.models import artifact
from nudge.models.serving import ScorerHolder
from nudge.models.training import TrainingError, beats_constant, train
from nudge.policy.clock import DAY
from nudge.policy.config import load_catalog, load_policy
from nudge.policy.scoring import HeuristicScorer, Scorer
from nudge.schemas.eventlog import write_log

POLICIES: dict[str, Callable[[], DecisionPolicy]] = {
    "nudge": NudgePolicy,
    "blast": BlastPolicy,
    "autopilot": AutopilotPolicy,
    "silent": SilentPolicy,
}
CONTROL = "silent"
SCORERS = ("trained", "heuristic")
#: The world the trained scorer learns from: none of the evaluated seeds.
TRAIN_SEED = 1
DEFINITIONS = {
    "incremental_conversions": "all orders in the window minus those of `silent` (no marketing)"
    " on the same world and seed: what the messages added",
    "incremental_per_1000_messages": "incremental conversions per 1,000 marketing messages"
    " (sums over the seeds)",
    "messages": "marketing actions sent (order confirmations are counted apart)",
    "attributed_conversions": "converted feedback: orders a channel credits to a message",
    "credited_not_added": "attributed minus incremental conversions: credit for orders the"
    " messages did not add",
    "organic_purchases": "orders not credited to any message",
    "total_conversions": "all orders in the window = attributed + organic",
    "local_night_messages": "email, push and SMS delivered"
    f" {NIGHT_FROM:02d}:00-{NIGHT_UNTIL:02d}:00 on the person's own clock"
    " (their time zone); web is shown only on the site",
    "just_bought_promotions": "marketing naming a category the person bought in the"
    f" {JUST_BOUGHT_DAYS} days before it was delivered",
    "people_opted_out": "people who unsubscribed or complained on at least one channel",
}
TARGET_INCREMENTAL_SHARE = 0.6
TARGET_MESSAGE_SHARE = 0.15
TARGET_UNSUBSCRIBE_SHARE = 0.15
#: Per-seed figures averaged over seeds in the report (the rest are breakdowns).
SCALARS = (
    "messages",
    "transactional_messages",
    "attributed_conversions",
    "organic_purchases",
    "total_conversions",
    "unsubscribes",
    "complaints",
    "people_opted_out",
    "local_night_messages",
    "just_bought_promotions",
    "revenue",
    "attributed_revenue",
)
BREAKDOWNS = (
    "messages_by_channel",
    "local_night_by_channel",
    "messages_by_action",
    "attributed_by_action",
    "messages_by_model",
)


@dataclass
class Tally:
    """What one policy caused inside the window, on one seed."""

    messages: int = 0
    messages_by_channel: dict[str, int] = field(default_factory=dict)
    messages_by_action: dict[str, int] = field(default_factory=dict)
    messages_by_category: dict[str, int] = field(default_factory=dict)
    messages_by_archetype: dict[str, int] = field(default_factory=dict)
    messages_by_model: dict[str, int] = field(default_factory=dict)
    transactional_messages: int = 0
    local_night_messages: int = 0
    local_night_by_channel: dict[str, int] = field(default_factory=dict)
    just_bought_promotions: int = 0
    attributed_conversions: int = 0
    attributed_by_action: dict[str, int] = field(default_factory=dict)
    attributed_revenue: float = 0.0
    total_conversions: int = 0
    orders_by_category: dict[str, int] = field(default_factory=dict)
    orders_by_archetype: dict[str, int] = field(default_factory=dict)
    revenue: float = 0.0
    unsubscribes: int = 0
    complaints: int = 0
    people_opted_out: int = 0
    invalid_events: int = 0
    _opted_out: set[str] = field(default_factory=set, repr=False)

    @property
    def organic_purchases(self) -> int:
        return self.total_conversions - self.attributed_conversions

    def count(self, kind: str, event: dict[str, Any], archetype: str) -> None:
        """One record of the window; `archetype` is the hidden type of its person."""
        if kind == "actions":
            self._count_action(event, archetype)
        elif kind == "purchases":
            self.total_conversions += 1
            self.revenue += sum(i["price"] * i["quantity"] for i in event["items"])
            _add(self.orders_by_archetype, archetype)
            for category in {item["category"] for item in event["items"]}:
                _add(self.orders_by_category, category)
        elif kind == "feedback":
            kind_type = event["type"]
            if kind_type == "converted":
                self.attributed_conversions += 1
                self.attributed_revenue += event.get("value") or 0.0
                _add(self.attributed_by_action, event["action_id"])
            elif kind_type in ("unsubscribed", "complained"):
                if kind_type == "unsubscribed":
                    self.unsubscribes += 1
                else:
                    self.complaints += 1
                self._opted_out.add(event["customer_id"])
                self.people_opted_out = len(self._opted_out)

    def _count_action(self, action: dict[str, Any], archetype: str) -> None:
        if action["message_class"] != "marketing":
            self.transactional_messages += 1
            return
        self.messages += 1
        _add(self.messages_by_channel, action["channel"])
        _add(self.messages_by_action, action["action_id"])
        if action.get("category"):  # checkout help names none
            _add(self.messages_by_category, action["category"])
        _add(self.messages_by_archetype, archetype)
        _add(self.messages_by_model, action["model_version"])

    def harms(self, counter: HarmCounter) -> None:
        """Take the local-night and just-bought counts once the log has ended."""
        self.local_night_messages = counter.local_night
        self.local_night_by_channel = dict(counter.local_night_by_channel)
        self.just_bought_promotions = counter.just_bought()

    def summary(self) -> dict[str, Any]:
        data = {k: v for k, v in asdict(self).items() if not k.startswith("_")}
        data["organic_purchases"] = self.organic_purchases
        data["revenue"] = round(self.revenue, 2)
        data["attributed_revenue"] = round(self.attributed_revenue, 2)
        return data


def play(
    name: str,
    customers: int,
    days: float,
    seed: int,
    progress: Callable[[float], None] | None = None,
    make: Callable[[], DecisionPolicy] | None = None,
    world: Simulation | None = None,
) -> dict[str, Any]:
    """Run one policy on the world of `seed` and tally the window. `progress`
    gets the simulated days done, now and then. `make` builds a policy that
    is not one of POLICIES (a catalog variant), tallied under `name`. `world`
    is that world already built, for a lab instrument that reads it while it
    plays (lab/frontier.py); by default a new one is built."""
    policy = (make or POLICIES[name])()
    sim = world or Simulation(customers, days, seed)
    tally = Tally()
    harms = HarmCounter({customer: person.zone for customer, person in sim.by_id.items()})
    for n, record in enumerate(sim.run(policy)):
        kind, event = record.kind, record.event
        if kind == "purchases":
            harms.purchase(event)  # the imported history too: a purchase before the window
        elif kind == "actions":
            harms.action(event)
        if kind == "actions" or sim.clock >= sim.start:  # not the imported history
            person = sim.by_id.get(event.get("customer_id") or "")
            tally.count(kind, event, person.archetype.name if person else "anonymous")
        if progress is not None and n % 2000 == 0:
            progress(max(0.0, (sim.clock - sim.start) / DAY))
    if progress is not None:
        progress(days)
    tally.harms(harms)
    worker = getattr(policy, "worker", None)
    tally.invalid_events = sum(worker.deadletters.values()) if worker else 0
    return tally.summary()


def evaluate(
    customers: int = 2000,
    days: float = 30,
    seeds: Sequence[int] = (7, 8, 9),
    progress: Callable[[int, str], Callable[[float], None]] | None = None,
    scorer: str = "trained",
    train_seed: int = TRAIN_SEED,
    catalog: Path = CATALOG,
    policy: Path = POLICY,
) -> dict[str, Any]:
    """Play every policy on the world of each seed; the report with targets.
    `progress(seed, name)` may return a callback for that run's progress.
    With `scorer="trained"` nudge serves the artifact `trained_scorer` learns
    on world `train_seed`, which must not be one of `seeds`. nudge plays
    `catalog` and `policy` (a variant to try; the baselines keep the shipped ones)."""
    seeds = list(seeds)
    if not seeds:
        raise ValueError("at least one seed")
    if scorer not in SCORERS:
        raise ValueError(f"scorer must be one of {SCORERS}, not {scorer!r}")
    if scorer == "trained" and train_seed in seeds:
        raise ValueError(f"the training world (seed {train_seed}) is one of the evaluated ones")
    started = datetime.now(UTC)
    served: Scorer = HeuristicScorer()
    training = None
    if scorer == "trained":
        with tempfile.TemporaryDirectory(prefix="nudge-evaluate-") as work:
            served, training = trained_scorer(
                customers, days, train_seed, Path(work), catalog=catalog, policy=policy
            )
    policies: dict[str, Callable[[], DecisionPolicy]] = {
        **POLICIES,
        "nudge": lambda: NudgePolicy(served, catalog, policy),
    }
    runs = {
        seed: {
            name: play(
                name,
                customers,
                days,
                seed,
                progress(seed, name) if progress else None,
                make=policies[name],
            )
            for name in POLICIES
        }
        for seed in seeds
    }
    for results in runs.values():
        control = results[CONTROL]["total_conversions"]
        for result in results.values():
            result["incremental_conversions"] = result["total_conversions"] - control
    aggregated = {name: aggregate([runs[seed][name] for seed in seeds]) for name in POLICIES}
    targets = check_targets(aggregated)
    command = f"nudge evaluate --customers {customers} --days {days:g} --seed {seeds[0]}"
    command += f" --seeds {len(seeds)} --scorer {scorer}"
    if scorer == "trained":
        command += f" --train-seed {train_seed}"
    for flag, path, default in (("catalog", catalog, CATALOG), ("policy", policy, POLICY)):
        if Path(path) != Path(default):
            command += f" --{flag} {path}"
    return {
        "evaluation": "what nudge adds over no contact, against naive policies, simulated",
        "command": command,
        "world": {
            "customers": customers,
            "days": days,
            "seeds": seeds,
            "start": START.isoformat(),
            "catalog": _shown(catalog, CATALOG),
            "policy": _shown(policy, POLICY),
            "scorer": served.version,
        },
        "training": training,
        "method": METHOD,
        "definitions": DEFINITIONS,
        "policies": aggregated,
        "gap": {name: where_it_adds(runs, name) for name in POLICIES if name != CONTROL},
        "per_seed": {str(seed): runs[seed] for seed in seeds},
        "targets": targets,
        "all_targets_passed": all(t["passed"] for t in targets),
        "wall_seconds": round((datetime.now(UTC) - started).total_seconds(), 1),
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def _shown(path: Path, shipped: Path) -> str:
    """How the report names a configuration file: the shipped one by its place."""
    return f"config/{Path(shipped).name}" if Path(path) == Path(shipped) else str(path)


def trained_scorer(
    customers: int,
    days: float,
    seed: int,
    work: Path,
    *,
    force: bool = False,
    catalog: Path = CATALOG,
    policy: Path = POLICY,
) -> tuple[Scorer, dict[str, Any]]:
    """What a deployment would serve in the evaluated window, and how it was made.

    nudge (`catalog` and `policy`, with the heuristic as before any training) plays world
    `seed` in the `days` before the window, logging the holdout's would-be
    decisions as `nudge simulate --out` does; `nudge train` learns from that
    log, its rule decides whether the artifact is deployed (a propensity model
    no better than a constant is not), and the scorer is loaded as a worker
    loads it (ScorerHolder: the artifact CURRENT names, else the heuristic);
    `force` deploys it regardless, as `nudge train --force` does.
    Other people, an earlier month: nothing of an evaluated world is seen."""
    start = START - timedelta(days=days)
    history = Simulation(customers, days, seed, start=start)
    log = work / f"history-{seed}.jsonl"
    write_log(history.run(NudgePolicy(None, catalog, policy, log_would_be=True)), log)
    contact = load_policy(policy)
    summary: dict[str, Any] = {
        "history": {
            "seed": seed,
            "customers": customers,
            "days": days,
            "start": start.isoformat(),
            "end": START.isoformat(),
            "played_by": f"nudge with {_shown(catalog, CATALOG)} and {_shown(policy, POLICY)},"
            f" {HeuristicScorer.version}",
        },
        "deployed": False,
    }
    try:
        result = train(log, load_catalog(catalog), contact)
    except TrainingError as exc:
        summary["why_not_deployed"] = f"not trained: {exc}"
        holder = ScorerHolder(work / "artifacts", contact)
        summary["served"] = holder.version
        return holder, summary
    saved = artifact.save(
        work / "artifacts",
        result.propensity,
        result.personas,
        result.metadata,
        uplift=result.uplift,
        cycles=result.cycles,
    )
    summary["deployed"] = force or beats_constant(saved.metadata)
    if summary["deployed"]:
        artifact.set_current(work / "artifacts", saved.version)
    else:
        summary["why_not_deployed"] = "held-out Brier no better than a constant's"
    validation = saved.metadata["metrics"]["validation"]
    summary |= {
        "trained_version": saved.version,
        "log_end": saved.metadata["training_window"]["log_end"],
        "held_out": {
            key: validation[key]
            for key in ("examples", "auc", "heuristic_auc", "brier", "constant_brier")
        },
        "uplift_served": saved.uplift is not None,
        "cycles_served": saved.cycles is not None,
        "personas": [p["name"] for p in saved.metadata["personas"]],
    }
    holder = ScorerHolder(work / "artifacts", contact)
    summary["served"] = holder.version
    return holder, summary


def aggregate(results: list[dict[str, Any]]) -> dict[str, Any]:
    """One policy over the seeds: means of the counts, incremental conversions
    with their interval, and the harms' totals (a harm on any seed counts)."""
    totals = [r["total_conversions"] for r in results]
    controls = [t - r["incremental_conversions"] for t, r in zip(totals, results, strict=True)]
    incremental = paired_difference(totals, controls)
    data: dict[str, Any] = {"incremental_conversions": incremental.as_dict()}
    messages = sum(r["messages"] for r in results)
    added = sum(r["incremental_conversions"] for r in results)
    data["incremental_per_1000_messages"] = (
        round(1000.0 * added / messages, 3) if messages else None
    )
    for key in SCALARS:
        data[key] = round(fmean(r[key] for r in results), 2)
    data["credited_not_added"] = round(data["attributed_conversions"] - incremental.mean, 2)
    data["just_bought_promotions_total"] = sum(r["just_bought_promotions"] for r in results)
    data["invalid_events_total"] = sum(r["invalid_events"] for r in results)
    for key in BREAKDOWNS:
        data[key] = _mean_counts([r[key] for r in results])
    return data


def where_it_adds(runs: dict[int, dict[str, dict[str, Any]]], name: str) -> dict[str, Any]:
    """Where a policy's messages go and what they add, means over the seeds:
    per archetype (the simulator's hidden truth) and per category named, its
    messages next to its orders minus the control's (an order counts once per
    category in it). Same seed, same people: someone no message reaches lives
    as under the control. Per action, only the attributed conversions exist:
    one control cannot tell which action added an order."""
    gap: dict[str, Any] = {
        "by_action": {
            action: {"messages": messages, "attributed_conversions": credited}
            for action, messages, credited in _by_action(runs, name)
        }
    }
    for segment in ("archetype", "category"):
        messages = _mean_counts([r[name][f"messages_by_{segment}"] for r in runs.values()])
        added = _mean_counts(
            [
                _difference(r[name][f"orders_by_{segment}"], r[CONTROL][f"orders_by_{segment}"])
                for r in runs.values()
            ]
        )
        gap[f"by_{segment}"] = {
            key: {"messages": messages.get(key, 0.0), "incremental_orders": added.get(key, 0.0)}
            for key in sorted(set(messages) | set(added))
        }
    return gap


def _by_action(
    runs: dict[int, dict[str, dict[str, Any]]], name: str
) -> list[tuple[str, float, float]]:
    messages = _mean_counts([r[name]["messages_by_action"] for r in runs.values()])
    credited = _mean_counts([r[name]["attributed_by_action"] for r in runs.values()])
    return [(a, messages.get(a, 0.0), credited.get(a, 0.0)) for a in sorted(messages)]


def check_targets(policies: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """PASS/FAIL for nudge's targets, on the means over the seeds."""
    nudge, blast = policies["nudge"], policies["blast"]
    added = TARGET_INCREMENTAL_SHARE * blast["incremental_conversions"]["mean"]
    messages = TARGET_MESSAGE_SHARE * blast["messages"]
    unsubscribes = TARGET_UNSUBSCRIBE_SHARE * blast["unsubscribes"]
    nudge_added = nudge["incremental_conversions"]["mean"]
    return [
        {
            "target": "incremental conversions >= 60% of blast's",
            "nudge": nudge_added,
            "comparison": ">=",
            "threshold": round(added, 2),
            "passed": nudge_added >= added,
        },
        {
            "target": "marketing messages <= 15% of blast's",
            "nudge": nudge["messages"],
            "comparison": "<=",
            "threshold": round(messages, 2),
            "passed": nudge["messages"] <= messages,
        },
        {
            "target": "unsubscribes <= 15% of blast's",
            "nudge": nudge["unsubscribes"],
            "comparison": "<=",
            "threshold": round(unsubscribes, 2),
            "passed": nudge["unsubscribes"] <= unsubscribes,
        },
        {
            "target": f"promotions of a category bought in the last {JUST_BOUGHT_DAYS} days = 0"
            " (all seeds)",
            "nudge": nudge["just_bought_promotions_total"],
            "comparison": "==",
            "threshold": 0,
            "passed": nudge["just_bought_promotions_total"] == 0,
        },
    ]


def _add(counts: dict[str, int], key: str) -> None:
    counts[key] = counts.get(key, 0) + 1


def _difference(mine: dict[str, int], control: dict[str, int]) -> dict[str, int]:
    return {k: mine.get(k, 0) - control.get(k, 0) for k in set(mine) | set(control)}


def _mean_counts(per_seed: list[dict[str, int]]) -> dict[str, float]:
    """Key by key means over the seeds (a key missing on a seed counts 0)."""
    keys = sorted({k for counts in per_seed for k in counts})
    return {k: round(fmean(counts.get(k, 0) for counts in per_seed), 2) for k in keys}


# -- output ------------------------------------------------------------------------------


def _ci(policy: dict[str, Any]) -> str:
    interval = policy["incremental_conversions"]["ci95"]
    return "n/a" if interval is None else f"[{interval[0]:+.1f}, {interval[1]:+.1f}]"


def _per_1000(policy: dict[str, Any]) -> str:
    value = policy["incremental_per_1000_messages"]
    return "-" if value is None else f"{value:.2f}"


ROWS: tuple[tuple[str, Callable[[dict[str, Any]], str]], ...] = (
    ("incremental orders vs no contact", lambda p: f"{p['incremental_conversions']['mean']:+.1f}"),
    ("  95% t-interval over seeds", _ci),
    ("incremental orders / 1,000 messages", _per_1000),
    ("marketing messages", lambda p: f"{p['messages']:,.0f}"),
    ("attributed conversions", lambda p: f"{p['attributed_conversions']:,.1f}"),
    ("  credited but not added", lambda p: f"{p['credited_not_added']:+,.1f}"),
    ("unsubscribes", lambda p: f"{p['unsubscribes']:,.1f}"),
    ("complaints", lambda p: f"{p['complaints']:,.1f}"),
    ("people who opted out", lambda p: f"{p['people_opted_out']:,.1f}"),
    (
        f"local night ({NIGHT_FROM}-{NIGHT_UNTIL}h) email/push/SMS",
        lambda p: f"{p['local_night_messages']:,.1f}",
    ),
    (
        f"just-bought promotions ({JUST_BOUGHT_DAYS} d), all seeds",
        lambda p: f"{p['just_bought_promotions_total']:,}",
    ),
    ("total orders", lambda p: f"{p['total_conversions']:,.1f}"),
    ("order confirmations", lambda p: f"{p['transactional_messages']:,.1f}"),
    ("revenue (EUR)", lambda p: f"{p['revenue']:,.0f}"),
)


def _trained_from(training: dict[str, Any] | None) -> str:
    if training is None:
        return " (no model: --scorer heuristic)"
    history = training["history"]
    made = f" (trained on world {history['seed']}, {history['start'][:10]} to {history['end'][:10]}"
    if not training["deployed"]:
        return f"{made}; not deployed: {training['why_not_deployed']})"
    parts = ["propensity"] + ["uplift"] * training["uplift_served"]
    parts += ["purchase cycles"] * training["cycles_served"]
    parts += [f"{len(training['personas'])} personas"] * bool(training["personas"])
    return f"{made}: {', '.join(parts)})"


def render(report: dict[str, Any]) -> str:
    """The table, the verdicts and where nudge's messages add, as printed."""
    policies = report["policies"]
    seeds = report["world"]["seeds"]
    width = max(len(label) for label, _ in ROWS) + 2
    lines = [
        f"nudge served {report['world']['scorer']}{_trained_from(report.get('training'))}",
        f"means over {len(seeds)} seed(s) {', '.join(map(str, seeds))}",
        f"{'':{width}}" + "".join(f"{name:>16}" for name in policies),
    ]
    for label, cell in ROWS:
        lines.append(f"{label:{width}}" + "".join(f"{cell(p):>16}" for p in policies.values()))
    lines += [
        "",
        "incremental = orders minus those of `silent` (no marketing) on the same world and",
        "seed; the interval is a Student t-interval on the per-seed differences.",
        "",
    ]
    for target in report["targets"]:
        verdict = "PASS" if target["passed"] else "FAIL"
        lines.append(
            f"{verdict}  {target['target']}: nudge {target['nudge']:,}"
            f" (needs {target['comparison']} {target['threshold']:,})"
        )
    lines += ["", "messages and attributed conversions by action (means over seeds)"]
    lines.append(f"{'':26}{'nudge msgs':>12}{'credited':>10}{'blast msgs':>12}{'credited':>10}")
    nudge, blast = (report["gap"][n]["by_action"] for n in ("nudge", "blast"))
    empty = {"messages": 0.0, "attributed_conversions": 0.0}
    for key in sorted(set(nudge) | set(blast)):
        mine, theirs = nudge.get(key, empty), blast.get(key, empty)
        lines.append(
            f"{key:26}{mine['messages']:>12,.0f}{mine['attributed_conversions']:>10.1f}"
            f"{theirs['messages']:>12,.0f}{theirs['attributed_conversions']:>10.1f}"
        )
    for segment in ("archetype", "category"):
        lines += ["", f"where the messages go and what they add, by {segment} (means over seeds)"]
        lines.append(f"{'':18}{'nudge msgs':>12}{'added':>8}{'blast msgs':>12}{'added':>8}")
        nudge, blast = (report["gap"][n][f"by_{segment}"] for n in ("nudge", "blast"))
        for key in sorted(set(nudge) | set(blast)):
            mine = nudge.get(key, {"messages": 0.0, "incremental_orders": 0.0})
            theirs = blast.get(key, {"messages": 0.0, "incremental_orders": 0.0})
            lines.append(
                f"{key:18}{mine['messages']:>12,.0f}{mine['incremental_orders']:>+8.1f}"
                f"{theirs['messages']:>12,.0f}{theirs['incremental_orders']:>+8.1f}"
            )
    return "\n".join(lines)


def write_json(report: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")


def plot(report: dict[str, Any], path: Path) -> None:
    """Four bar charts side by side: what is added (with the interval), volume,
    what each message adds, harm."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    policies = report["policies"]
    names = list(policies)
    colours = {"nudge": "#2a9d8f", "blast": "#e76f51", "autopilot": "#f4a261", "silent": "#8d99ae"}
    colour = [colours.get(name, "#457b9d") for name in names]
    figure, axes = plt.subplots(1, 4, figsize=(16, 4.2))
    titles = (
        "incremental orders vs no contact (95% CI)",
        "marketing messages",
        "incremental orders per 1,000 messages",
        "unsubscribes + complaints",
    )
    for axis, title in zip(axes, titles, strict=True):
        axis.set_title(title, fontsize=11)
        axis.tick_params(axis="x", labelsize=9)
    added = [policies[n]["incremental_conversions"] for n in names]
    means = [a["mean"] for a in added]
    errors = [
        [0.0, 0.0] if a["ci95"] is None else [a["mean"] - a["ci95"][0], a["ci95"][1] - a["mean"]]
        for a in added
    ]
    axes[0].bar(names, means, color=colour, yerr=list(zip(*errors, strict=True)), capsize=4)
    axes[0].axhline(0, color="#333333", linewidth=0.8)
    axes[1].bar(names, [policies[n]["messages"] for n in names], color=colour)
    axes[2].bar(
        names, [policies[n]["incremental_per_1000_messages"] or 0.0 for n in names], color=colour
    )
    unsubscribes = [policies[n]["unsubscribes"] for n in names]
    complaints = [policies[n]["complaints"] for n in names]
    axes[3].bar(names, unsubscribes, color=colour, label="unsubscribes")
    axes[3].bar(names, complaints, bottom=unsubscribes, color="#264653", label="complaints")
    axes[3].legend(fontsize=8)
    world = report["world"]
    seeds = ", ".join(map(str, world["seeds"]))
    figure.suptitle(
        f"{world['customers']:,} simulated customers, {world['days']:g} days, means over seeds"
        f" {seeds}  ({report['command']})",
        fontsize=10,
    )
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
