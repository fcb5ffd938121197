"""Do persona-aware decisions add orders? Checked in the simulator.

    python -m nudge.lab.persona_check --customers 2000 --days 30 \\
        --seeds 7 8 9 10 11 12 13 14 15 16 --train-seed 1 --out results/personas

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
  persona eligibility removed;
- `random`: the `aware` catalog, but each person's persona is drawn once at
  random, whatever they do (`RandomPersonas`): persona-blind at about
  `aware`'s message volume, so `aware` minus `random` is what the learned
  persona's information adds at an equal budget;
- `hidden`: a diagnostic ceiling, NOT a policy nudge could run: the `aware`
  catalog with the extra action for the archetypes whose parameters say they
  answer messages best (`HIDDEN_TARGETS`, about the share `aware` targets),
  read from the simulator's hidden truth. It bounds what any persona model
  could add here with this action.

All arms use the same heuristic scorer; `blind`, `aware` and `everyone`
assign the learned persona and differ only in the catalog, `random` and
`hidden` play the `aware` catalog and differ only in how a persona is
assigned. Seeds 2 and 3 were used to calibrate `RANDOM_TARGET_SHARE`;
report on others. The figure that leads is incremental
conversions, all orders in the window minus the control's on the same seed,
with a 95% t-interval over the seeds (lab/incremental.py), as `nudge
evaluate` reports it; also messages, incremental orders per 1,000 messages,
unsubscribes and complaints, and how the learned personas line up with the
hidden archetypes.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from nudge.lab.baselines import CATALOG, POLICY, NudgePolicy, SilentPolicy
from nudge.lab.evaluate import aggregate, play
from nudge.lab.incremental import METHOD, interval_text, paired_difference
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
#: The archetypes (lab/shoppers.py) whose opens x click x buy rates are the
#: highest, about half the people as `TARGET_TRAITS` covers: the `hidden`
#: arm's targets, chosen from the parameters before any arm was played.
HIDDEN_TARGETS = ("bargain_hunter", "loyal_homebody")
#: The share of people the `random` arm makes eligible for the extra action,
#: calibrated on the tuning worlds (seeds 2 and 3, persona model from seed 1)
#: so that `random` sends about as many messages as `aware`; the personas
#: the model assigns are active people, so `aware` reaches more than the
#: training world's share of targeted personas (56%) would.
RANDOM_TARGET_SHARE = 0.67
ARMS = ("blind", "aware", "random", "everyone", "hidden")
CONTROL = "silent"
#: The catalog each arm plays; `random` and `hidden` differ from `aware`
#: only in how a persona is assigned.
CATALOG_OF = {arm: arm for arm in ("blind", "aware", "everyone")} | {
    "random": "aware",
    "hidden": "aware",
}


class PersonaHeuristic(HeuristicScorer):
    """The heuristic scorer with a served persona model, as a worker serving
    an artifact with personas would assign them."""

    version = "heuristic-v1+personas"

    def __init__(self, personas: PersonaModel) -> None:
        self.folded = FoldedPersonas(personas)

    def persona(self, state: CustomerState, now: float) -> str | None:
        return self.folded.assign(state, now)


class RandomPersonas(PersonaHeuristic):
    """Persona-blind with persona machinery: each person gets, once and
    whatever they do, a learned persona the extra action targets with chance
    `RANDOM_TARGET_SHARE`, another one otherwise. It spends about the `aware`
    catalog's message budget on random people instead of those the persona
    model picks."""

    def __init__(self, personas: PersonaModel, seed: int) -> None:
        super().__init__(personas)
        self.draw = random.Random(seed)
        traits = set(TARGET_TRAITS)
        keys = self.folded.keys
        self.targeted = [k for k in keys if not traits.isdisjoint(k.split("+"))]
        self.others = [k for k in keys if k not in self.targeted]

    def persona(self, state: CustomerState, now: float) -> str | None:
        if state.profile.persona is not None:
            return state.profile.persona
        group = self.targeted if self.draw.random() < RANDOM_TARGET_SHARE else self.others
        return self.draw.choice(group or self.folded.keys)


class HiddenPersonas(PersonaHeuristic):
    """The diagnostic ceiling: "attentive" for the people of `HIDDEN_TARGETS`,
    "tuning_out" for the rest, read from the simulator's hidden archetypes
    through `current` (the customer of the event being decided)."""

    def __init__(self, personas: PersonaModel, archetypes: dict[str, str]) -> None:
        super().__init__(personas)
        self.archetypes = archetypes
        self.current: str | None = None

    def persona(self, state: CustomerState, now: float) -> str | None:
        archetype = self.archetypes.get(self.current or "")
        if archetype is None:  # an event addressed otherwise: keep what they had
            return state.profile.persona
        return "attentive" if archetype in HIDDEN_TARGETS else "tuning_out"


class HiddenPolicy(NudgePolicy):
    """nudge with `HiddenPersonas`, told whose event it decides on."""

    def __init__(self, scorer: HiddenPersonas, catalog: Path) -> None:
        super().__init__(scorer, catalog=catalog)
        self.scorer = scorer

    def decide(self, kind: str, event: dict[str, Any], now: datetime) -> list[Any]:
        self.scorer.current = event.get("customer_id")
        return super().decide(kind, event, now)


def arm_policy(arm: str, model: PersonaModel, catalog: Path, seed: int, sim: Simulation) -> Any:
    """The policy an arm plays on world `seed` (`sim`: that world, for `hidden`)."""
    if arm == "random":
        return NudgePolicy(RandomPersonas(model, seed), catalog=catalog)
    if arm == "hidden":
        archetypes = {c: p.archetype.name for c, p in sim.by_id.items()}
        return HiddenPolicy(HiddenPersonas(model, archetypes), catalog)
    return NudgePolicy(PersonaHeuristic(model), catalog=catalog)


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
        world = Simulation(customers, days, seed)  # read for `hidden` and the alignment
        for arm in ARMS:
            policy = arm_policy(arm, model, paths[CATALOG_OF[arm]], seed, world)
            runs[seed][arm] = play(arm, customers, days, seed, make=lambda p=policy: p)
            if arm == "aware":
                _align(alignment, policy, world)
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
        "hidden_targets": list(HIDDEN_TARGETS),
        "extra_action": PICKS,
        "arms": arms,
        "differences": {f"{a} minus {b}": _paired(runs, a, b) for a, b in PAIRS},
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


#: The paired comparisons reported: what the learned persona adds at an
#: equal budget (`random`), against the shipped catalog and against the
#: extra action for everyone, and the ceiling (`hidden`) at an equal budget.
PAIRS = (
    ("aware", "random"),
    ("aware", "blind"),
    ("aware", "everyone"),
    ("hidden", "random"),
)


def _paired(runs: dict[int, dict[str, dict[str, Any]]], a: str, b: str) -> dict[str, Any]:
    """`a`'s orders minus `b`'s on the same worlds, with a 95% t-interval;
    and the differences in messages and unsubscribes per seed."""
    seeds = sorted(runs)
    orders = paired_difference(
        [runs[s][a]["total_conversions"] for s in seeds],
        [runs[s][b]["total_conversions"] for s in seeds],
    )
    return {
        "orders": orders.as_dict(),
        "messages": [runs[s][a]["messages"] - runs[s][b]["messages"] for s in seeds],
        "unsubscribes": [runs[s][a]["unsubscribes"] - runs[s][b]["unsubscribes"] for s in seeds],
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
            f"| {name} | {interval_text(arm['incremental_conversions'])} | {arm['messages']:.0f}"
            f" | {arm['incremental_per_1000_messages']} | {arm['unsubscribes']:.1f} |"
        )
    lines += [
        "",
        "| paired, same worlds | orders (95% interval) | per seed | messages | unsubscribes |",
    ]
    lines.append("|---|---|---|---|---|")
    for key, diff in report["differences"].items():
        seeds = len(diff["messages"])
        lines.append(
            f"| {key} | {interval_text(diff['orders'])} | {diff['orders']['per_seed']}"
            f" | {sum(diff['messages']) / seeds:+.0f} | {sum(diff['unsubscribes']) / seeds:+.1f} |"
        )
    lines.append("\n(messages and unsubscribes: mean difference per seed)")
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
