"""Off-policy evaluation checked where the truth is known: in the simulator.

For each seed, the same simulated world is played twice:

1. the logging policy (the shipped catalog and policy, exploring with
   --epsilon) decides, while the candidate engine is asked on the same state
   at every trigger (models.logged.DecisionRecorder); IPS, SNIPS and DR then
   estimate the candidate's conversion rate per decision from that log alone;
2. the candidate itself decides, and its real (on-policy) rate is measured
   the same way.

The check passes for an estimate when its 95% interval holds the real rate.
The event log of run 1 is also replayed from its records (models.logged.
from_log, what `nudge evaluate --offline` does) to show the replay reproduces
the logged decisions. Run with `python -m nudge.lab.ope_check`; the result goes
to .results/ope/check.json unless --out says otherwise.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec

from nudge.lab.baselines import CATALOG, POLICY, emitted_actions
from nudge.lab.logged import REWARDS, SETTLE_HOURS, DecisionRecorder, from_log
from nudge.lab.ope import diagnostics, estimate_all, on_policy
from nudge.lab.simulation import Simulation
from nudge.policy.clock import HOUR
from nudge.policy.config import Catalog, ContactPolicy, load_catalog, load_policy
from nudge.policy.engine import Engine
from nudge.schemas.eventlog import LoggedEvent

DEFAULT_OUT = Path(".results/ope/check.json")
Config = tuple[Catalog, ContactPolicy]


def push_first(catalog: Catalog, policy: ContactPolicy) -> Config:
    """A policy variant: push before email when engagement ties."""
    return catalog, msgspec.structs.replace(policy, channel_order=["push", "email", "web", "sms"])


def inspiration_without_email(catalog: Catalog, policy: ContactPolicy) -> Config:
    """A catalog variant: category inspiration on push and web only."""
    actions = [
        msgspec.structs.replace(a, channels=[c for c in a.channels if c != "email"])
        if a.id == "category_inspiration"
        else a
        for a in catalog.actions
    ]
    return Catalog(actions=actions), policy


VARIANTS: dict[str, Callable[[Catalog, ContactPolicy], Config]] = {
    "push_first": push_first,
    "inspiration_without_email": inspiration_without_email,
}


class _Recording:
    """The simulator's view of a recorder: a policy that returns actions."""

    name = "nudge"

    def __init__(self, recorder: DecisionRecorder) -> None:
        self.recorder = recorder

    def decide(self, kind: str, event: dict[str, Any], now: datetime) -> list[dict[str, Any]]:
        return emitted_actions(self.recorder.process(kind, event, now))


def play(
    customers: int, days: float, seed: int, logging: Config, target: Config
) -> tuple[DecisionRecorder, list[LoggedEvent], float]:
    """One world under `logging`, `target` asked beside it; the recorder, the
    event log and the time up to which outcomes have settled."""
    recorder = DecisionRecorder(Engine(*logging), Engine(*target))
    sim = Simulation(customers, days, seed)
    records = list(sim.run(_Recording(recorder)))
    return recorder, records, sim.end - SETTLE_HOURS * HOUR


def check_seed(
    customers: int, days: float, seed: int, logging: Config, variant: Config
) -> dict[str, Any]:
    """Both runs of one world; per reward, the estimates against the truth."""
    recorder, records, until = play(customers, days, seed, logging, variant)
    truth_recorder, _, truth_until = play(customers, days, seed, variant, variant)
    replayed = from_log(records, Engine(*logging), Engine(*variant))
    row: dict[str, Any] = {
        "seed": seed,
        "log_replay": {"logged_actions": replayed.logged_actions, "diverged": replayed.diverged},
    }
    for reward in REWARDS:
        logged = recorder.decisions(until, reward)
        truth = on_policy(truth_recorder.decisions(truth_until, reward))
        row[reward] = {
            "logging_rate": _row(on_policy(logged)),
            "variant_true_rate": _row(truth),
            "estimates": [
                _row(e) | {"covers_truth": e.covers(truth.value)} for e in estimate_all(logged)
            ],
            "diagnostics": diagnostics(logged).as_dict(),
        }
    return row


def run(customers: int, days: float, seeds: list[int], epsilon: float) -> dict[str, Any]:
    shipped = (load_catalog(CATALOG), load_policy(POLICY))
    exploring = msgspec.structs.replace(
        shipped[1], exploration=msgspec.structs.replace(shipped[1].exploration, epsilon=epsilon)
    )
    logging = (shipped[0], exploring)
    started = time.monotonic()
    variants = {}
    for name, make in VARIANTS.items():
        rows = [check_seed(customers, days, s, logging, make(*shipped)) for s in seeds]
        summary = {reward: _summary([r[reward] for r in rows]) for reward in REWARDS}
        summary["replay_diverged"] = sum(r["log_replay"]["diverged"] for r in rows)
        variants[name] = {"description": make.__doc__, "summary": summary, "seeds": rows}
    return {
        "check": "off-policy estimates of a variant's conversion rate vs its real rate",
        "command": (
            f"python -m nudge.lab.ope_check --customers {customers} --days {days:g}"
            f" --seeds {' '.join(map(str, seeds))} --epsilon {epsilon:g}"
        ),
        "definitions": {
            "decision": "a trigger at which the logging or the variant engine had a marketing"
            " candidate",
            "rate": "share of decisions followed by a `converted` (or `clicked`) feedback"
            f" naming the decision (decisions in the last {SETTLE_HOURS:g} h left out)",
            "interval": "95%, normal approximation, variance clustered by person",
            "logging policy": f"shipped catalog and policy, exploration epsilon {epsilon:g}",
            "variants": "the shipped catalog and policy (epsilon 0.05) with one change each",
        },
        "variants": variants,
        "seconds": round(time.monotonic() - started, 1),
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def _row(estimate) -> dict[str, Any]:
    data = asdict(estimate)
    for key in ("value", "low", "high"):
        data[key] = round(data[key], 5)
    return data


def _summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over seeds, and how many seeds' intervals held the truth."""
    methods = [e["method"] for e in rows[0]["estimates"]]
    return {
        "true_rate_median": statistics.median(r["variant_true_rate"]["value"] for r in rows),
        "logging_rate_median": statistics.median(r["logging_rate"]["value"] for r in rows),
        "covered": {
            m: sum(e["covers_truth"] for r in rows for e in r["estimates"] if e["method"] == m)
            for m in methods
        },
        "seeds": len(rows),
        "estimate_median": {
            m: statistics.median(
                e["value"] for r in rows for e in r["estimates"] if e["method"] == m
            )
            for m in methods
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nudge.lab.ope_check", description=__doc__)
    parser.add_argument("--customers", type=int, default=2000)
    parser.add_argument("--days", type=float, default=21.0)
    parser.add_argument("--seeds", type=int, nargs="+", default=[7, 8, 9])
    parser.add_argument("--epsilon", type=float, default=0.3, help="the logging exploration")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    report = run(args.customers, args.days, args.seeds, args.epsilon)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    for name, variant in report["variants"].items():
        print(name, json.dumps(variant["summary"]))
    print(f"written: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
