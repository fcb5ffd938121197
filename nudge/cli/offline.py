"""`nudge evaluate --offline LOG --policy new.toml`: a candidate judged on an event log.

The log's decisions are replayed with the logging configuration (what made
the log: the shipped catalog and policy unless told otherwise); at every
trigger the candidate configuration decides on the same state, and the
off-policy estimators (lab/ope.py) turn both engines' probabilities and
the logged outcomes into the candidate's conversion rate, each with a 95%
interval. Lives apart from nudge/commands/evaluate.py, which only hands over.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from nudge.config import CATALOG, POLICY, shipped
from nudge.errors import UserError

if TYPE_CHECKING:  # the models load when the command runs, not for `nudge --help`
    from nudge.lab.logged import Replayed
    from nudge.lab.ope import Estimate

#: Above this share of logged actions not reproduced, the log was not made by
#: the logging configuration given, and its probabilities cannot be trusted.
MAX_DIVERGED_SHARE = 0.01
REWARDS = ("converted", "clicked")  # models.logged.REWARDS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    offline = parser.add_argument_group(
        "offline (off-policy) evaluation of a candidate on a logged event log"
    )
    offline.add_argument(
        "--offline", type=Path, metavar="LOG", help="event log to evaluate on (nudge simulate)"
    )
    offline.add_argument(
        "--policy",
        type=Path,
        help="the candidate's contact policy (without --offline: the one nudge plays)",
    )
    offline.add_argument(
        "--catalog",
        type=Path,
        help="the candidate's catalog (without --offline: the one nudge plays)",
    )
    offline.add_argument(
        "--logged-policy",
        type=Path,
        default=shipped(POLICY),
        help="the policy that made the log (default: the shipped one)",
    )
    offline.add_argument(
        "--logged-catalog",
        type=Path,
        default=shipped(CATALOG),
        help="the catalog that made the log (default: the shipped one)",
    )
    offline.add_argument(
        "--reward", choices=REWARDS, default="converted", help="feedback counted as success"
    )


def run(args: argparse.Namespace) -> int:
    from nudge.lab.logged import from_log
    from nudge.policy.config import load_catalog, load_policy
    from nudge.policy.engine import Engine
    from nudge.schemas.eventlog import read_log

    if args.policy is None and args.catalog is None:
        raise UserError("--offline needs a candidate: --policy and/or --catalog")
    logging = Engine(load_catalog(args.logged_catalog), load_policy(args.logged_policy))
    target = Engine(
        load_catalog(args.catalog or args.logged_catalog),
        load_policy(args.policy or args.logged_policy),
    )
    replayed = from_log(read_log(args.offline), logging, target, reward=args.reward)
    if replayed.diverged > MAX_DIVERGED_SHARE * replayed.logged_actions:
        raise UserError(
            f"the replay reproduced only {replayed.logged_actions - replayed.diverged:,} of"
            f" {replayed.logged_actions:,} logged actions: the log was made with another"
            " catalog, policy or model (--logged-catalog, --logged-policy)"
        )
    print(render(args, replayed))
    return 0


def render(args: argparse.Namespace, replayed: Replayed) -> str:
    from nudge.lab.logged import SETTLE_HOURS
    from nudge.lab.ope import diagnostics, estimate_all, on_policy

    decisions = replayed.decisions
    if not decisions:
        raise UserError("the log holds no settled decisions with a marketing candidate")
    d = diagnostics(decisions)
    candidate = ", ".join(str(p) for p in (args.catalog, args.policy) if p is not None)
    lines = [
        f"candidate {candidate} on {args.offline}",
        f"{d.decisions:,} decisions about {d.people:,} people (reproduced"
        f" {replayed.logged_actions - replayed.diverged:,} of {replayed.logged_actions:,}"
        f" logged actions; {replayed.left_out:,} decisions in the last {SETTLE_HOURS:g} h"
        " left out)",
        f"reward: `{args.reward}` feedback naming the decision; rate per decision, 95% interval"
        " (normal approximation, clustered by person)",
        "",
        _line("logged policy", on_policy(decisions)),
        *(_line(f"candidate {e.method}", e) for e in estimate_all(decisions)),
        "",
        f"effective sample size {d.effective_sample_size:,.0f}, largest weight"
        f" {d.max_weight:.1f}; the candidate's share of choices the logged policy never"
        f" tried: {d.unsupported_mass:.2%} (IPS and SNIPS count them as no reward)",
    ]
    return "\n".join(lines)


def _line(label: str, e: Estimate) -> str:
    return f"  {label:<17} {e.value:.5f}  [{e.low:.5f}, {e.high:.5f}]"
