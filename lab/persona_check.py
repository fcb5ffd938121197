"""Do persona-aware decisions add orders? Checked in the simulator.

    python -m nudge.lab.persona_check --customers 2000 --days 30 --seeds 7 8 9 \\
        --out results/personas

The simulator's people have hidden archetypes (lab/simulation.py) that no
policy sees. Here a persona model is trained (`nudge train`'s KMeans) on the
history of another simulated world (`--train-seed`), played by nudge as
shipped; the worker then assigns each person the nearest learned persona as
their behaviour changes, and the catalog targets learned traits only.

Arms, each played on the same worlds (seeds) as the no-contact control:

- `blind`: the shipped catalog (config/catalog.toml);
- `aware`: the shipped catalog plus `PICKS`, an extra inspiration action
  eligible only for people whose learned persona has one of `TARGET_TRAITS`;
- `everyone`: the same extra action for everyone, i.e. `aware` with its
  persona eligibility removed.

All arms use the same scorer (the heuristic, plus the learned persona model),
so the only difference is the catalog. The figure that leads is incremental
conversions, all orders in the window minus the control's on the same seed,
with a 95% t-interval over the seeds (lab/incremental.py), as `nudge
evaluate` reports it; also messages, incremental orders per 1,000 messages,
unsubscribes and complaints, and how the learned personas line up with the
hidden archetypes.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from nudge.lab.baselines import CATALOG, POLICY, NudgePolicy, SilentPolicy
from nudge.lab.evaluate import aggregate, play
from nudge.lab.incremental import METHOD, paired_difference
from nudge.lab.simulation import Simulation
from nudge.models.personas import FoldedPersonas, PersonaModel
from nudge.models.training import train
from nudge.policy.config import load_catalog, load_policy
from nudge.policy.scoring import HeuristicScorer
from nudge.policy.state import CustomerState
from nudge.schemas.eventlog import write_log

#: Traits of the learned personas the extra action is for: people who answer
#: messages and buy. Chosen from the trait vocabulary after seeing which
#: personas a trained model finds, before any arm was evaluated.
TARGET_TRAITS = ["attentive", "responsive", "frequent_buyers", "big_spenders"]
PICKS = """
[[actions]]
id = "picks_for_regulars"
description = "More picks from a category the person is browsing, for people who respond."
message_class = "marketing"
channels = ["email", "push", "web"]
category = "$event"
value = 8.0
min_level = "identified"
cooldown_hours = 24
max_per_week = 2
expiry_hours = 12
triggers = [{ event = "product_view", min_category_affinity = 1.5 }]
"""
ARMS = ("blind", "aware", "everyone")
CONTROL = "silent"


class PersonaHeuristic(HeuristicScorer):
    """The heuristic scorer with a served persona model, as a worker serving
    an artifact with personas would assign them."""

    version = "heuristic-v1+personas"

    def __init__(self, personas: PersonaModel) -> None:
        self.folded = FoldedPersonas(personas)

    def persona(self, state: CustomerState, now: float) -> str:
        return self.folded.assign(state, now)


def learn_personas(customers: int, days: float, seed: int, work: Path) -> PersonaModel:
    """The persona model `nudge train` fits on a simulated history played by
    nudge as shipped."""
    log = work / f"history-{seed}.jsonl"
    write_log(Simulation(customers, days, seed).run(NudgePolicy()), log)
    result = train(log, load_catalog(CATALOG), load_policy(POLICY))
    if result.personas is None:
        raise SystemExit("the training history had too few customers for personas")
    return result.personas


def catalogs(work: Path) -> dict[str, Path]:
    """The catalog file of each arm: the shipped one, with the extra action
    for the targeted traits, or for everyone."""
    shipped = Path(CATALOG).read_text()
    targeted = f"{PICKS}personas = {json.dumps(TARGET_TRAITS)}\n"
    texts = {"blind": shipped, "aware": shipped + targeted, "everyone": shipped + PICKS}
    paths = {}
    for arm, text in texts.items():
        paths[arm] = work / f"catalog-{arm}.toml"
        paths[arm].write_text(text)
        load_catalog(paths[arm])  # refuses a mistake before anything is played
    return paths


def run(
    customers: int, days: float, seeds: Sequence[int], train_seed: int, work: Path
) -> dict[str, Any]:
    """Train the personas, play every arm and the control on every seed."""
    started = datetime.now(UTC)
    model = learn_personas(customers, days, train_seed, work)
    paths = catalogs(work)
    runs: dict[int, dict[str, dict[str, Any]]] = {}
    alignment: dict[str, Counter[str]] = {}
    for seed in seeds:
        runs[seed] = {CONTROL: play(CONTROL, customers, days, seed, make=SilentPolicy)}
        for arm in ARMS:
            policy = NudgePolicy(PersonaHeuristic(model), catalog=paths[arm])
            runs[seed][arm] = play(arm, customers, days, seed, make=lambda p=policy: p)
            if arm == "aware":
                _align(alignment, policy, Simulation(customers, days, seed))
        control = runs[seed][CONTROL]["total_conversions"]
        for result in runs[seed].values():
            result["incremental_conversions"] = result["total_conversions"] - control
    arms = {name: aggregate([runs[s][name] for s in seeds]) for name in (*ARMS, CONTROL)}
    return {
        "check": "persona-aware against persona-blind decisions, simulated",
        "command": (
            f"python -m nudge.lab.persona_check --customers {customers} --days {days:g}"
            f" --seeds {' '.join(map(str, seeds))} --train-seed {train_seed}"
        ),
        "world": {"customers": customers, "days": days, "seeds": list(seeds)},
        "method": METHOD,
        "personas_learned": [
            {k: p[k] for k in ("key", "size", "description")} for p in model.personas_
        ],
        "target_traits": TARGET_TRAITS,
        "extra_action": PICKS,
        "arms": arms,
        "aware_minus_everyone": _paired(runs, "aware", "everyone"),
        "aware_minus_blind": _paired(runs, "aware", "blind"),
        "learned_by_hidden": {k: dict(v) for k, v in sorted(alignment.items())},
        "per_seed": {str(seed): runs[seed] for seed in seeds},
        "wall_seconds": round((datetime.now(UTC) - started).total_seconds(), 1),
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def _align(table: dict[str, Counter[str]], policy: NudgePolicy, sim: Simulation) -> None:
    """Count each person's learned persona at the end under their hidden archetype."""
    for customer, person in sim.by_id.items():
        learned = policy.worker.state(customer).profile.persona or "none"
        table.setdefault(person.archetype.name, Counter())[learned] += 1


def _paired(runs: dict[int, dict[str, dict[str, Any]]], a: str, b: str) -> dict[str, Any]:
    """`a`'s orders minus `b`'s on the same worlds, with a 95% t-interval;
    and the difference in messages per seed."""
    seeds = sorted(runs)
    orders = paired_difference(
        [runs[s][a]["total_conversions"] for s in seeds],
        [runs[s][b]["total_conversions"] for s in seeds],
    )
    return {
        "orders": orders.as_dict(),
        "messages": [runs[s][a]["messages"] - runs[s][b]["messages"] for s in seeds],
    }


def render(report: dict[str, Any]) -> str:
    """A plain-text summary for the terminal and results/personas/README."""
    lines = [f"# {report['check']}", "", f"    {report['command']}", ""]
    lines.append("Learned personas (training world):")
    lines += [f"- {p['key']} ({p['size']}): {p['description']}" for p in report["personas_learned"]]
    lines += [
        "",
        "| arm | incremental orders (95% interval) | messages | per 1,000 | unsubscribes |",
    ]
    lines.append("|---|---|---|---|---|")
    for name in ARMS:
        arm = report["arms"][name]
        lines.append(
            f"| {name} | {_interval(arm['incremental_conversions'])} | {arm['messages']:.0f}"
            f" | {arm['incremental_per_1000_messages']} | {arm['unsubscribes']:.1f} |"
        )
    for key in ("aware_minus_everyone", "aware_minus_blind"):
        diff = report[key]
        lines.append(
            f"\n{key.replace('_', ' ')}: orders {_interval(diff['orders'])},"
            f" per seed {diff['orders']['per_seed']}; messages per seed {diff['messages']}"
        )
    lines += ["", "Learned persona at the end (aware arm, all seeds) by hidden archetype:"]
    for hidden, learned in report["learned_by_hidden"].items():
        total = sum(learned.values())
        shares = ", ".join(
            f"{key} {count / total:.0%}" for key, count in sorted(learned.items(), key=_by_count)
        )
        lines.append(f"- {hidden} ({total}): {shares}")
    return "\n".join(lines) + "\n"


def _by_count(item: tuple[str, int]) -> tuple[int, str]:
    return -item[1], item[0]


def _interval(figure: dict[str, Any]) -> str:
    ci = figure["ci95"]
    spread = f" ({ci[0]:+.1f} to {ci[1]:+.1f})" if ci else ""
    return f"{figure['mean']:+.1f}{spread}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=2000)
    parser.add_argument("--days", type=float, default=30)
    parser.add_argument("--seeds", type=int, nargs="+", default=[7, 8, 9])
    parser.add_argument("--train-seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None, help="directory for result.json")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        report = run(args.customers, args.days, args.seeds, args.train_seed, Path(tmp))
    text = render(report)
    print(text)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "result.json").write_text(json.dumps(report, indent=2) + "\n")
        (args.out / "README.md").write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
