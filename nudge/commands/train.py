"""`nudge train`: train the propensity and persona models from an event log,
save a new artifact version and point CURRENT at it."""

from __future__ import annotations

import argparse
from pathlib import Path

from streams.settings import REPO_ROOT


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train models from an event log (JSON Lines) and deploy them as a new version",
        description=(
            "Replay EVENTS through the engine, learn who responds to which action from"
            " features as of each decision, evaluate on the last days held out, save"
            " OUT/<version>/ and point OUT/CURRENT at it (running workers pick it up)."
        ),
    )
    parser.add_argument("events", type=Path, metavar="EVENTS.jsonl")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "models" / "artifacts")
    parser.add_argument("--holdout-days", type=float, default=7.0, help="held out for evaluation")
    parser.add_argument(
        "--label-window-days",
        type=float,
        default=2.0,
        help="a click or conversion counts if this soon",
    )
    parser.add_argument("--personas", type=int, default=4, help="number of personas")
    parser.add_argument("--catalog", type=Path, default=REPO_ROOT / "config" / "catalog.toml")
    parser.add_argument("--policy", type=Path, default=REPO_ROOT / "config" / "policy.toml")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from models import artifact
    from models.training import report, train
    from policy.config import load_catalog, load_policy

    result = train(
        args.events,
        load_catalog(args.catalog),
        load_policy(args.policy),
        holdout_days=args.holdout_days,
        label_window_days=args.label_window_days,
        n_personas=args.personas,
    )
    saved = artifact.save(args.out, result.propensity, result.personas, result.metadata)
    artifact.set_current(args.out, saved.version)
    print(report(saved.metadata))
    print(f"saved {args.out / saved.version}; CURRENT -> {saved.version}")
    return 0
