"""`nudge train`: train the propensity and persona models from an event log,
save a new artifact version and point CURRENT at it if it is worth serving."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

EPILOG = """\
The held-out period is by default the last quarter of the days the log has
decisions in (at most 7, at least the label window plus one), so the log of
`nudge simulate --out FILE` trains as it is.

When the log holds the holdout's would-be decisions (`nudge simulate --out`
logs them), an uplift model is trained too and saved beside the propensity
model if its held-out Qini coefficient beats the propensity model's ranking;
workers serving that version then rank on uplift x value x lever.

Purchase cycles are fitted on the purchases before the last quarter of the
log's purchase history and judged on the repeat purchases in it, each as the
worker would have judged it at the purchase before. They are saved with the
version only if they silence no larger share of those repeat purchases than
the policy's fixed cooldowns (purchase_cooldown, floor included), with at
least 30 repeat purchases to fit on and 30 to judge on. Otherwise the version
carries none (its workers use the fixed cooldowns) and the report says why.

A model whose held-out Brier score is not lower than a constant predictor's
(the training base rate) is saved but not deployed: CURRENT keeps naming what
the workers serve, and a warning says why. --force deploys it anyway. The exit
status is 0 in both cases; the last line says which. --force decides only
where CURRENT points: it does not add refused purchase cycles or a refused
uplift model to the version.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train models from an event log (JSON Lines) and deploy them as a new version",
        description=(
            "Replay EVENTS through the engine, learn who responds to which action from"
            " features as of each decision, evaluate on the last days held out, save"
            " OUT/<version>/ and point OUT/CURRENT at it (running workers pick it up)."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("events", type=Path, metavar="EVENTS.jsonl")
    parser.add_argument(
        "--out", type=Path, help="artifact directory (default: $NUDGE_MODEL_DIR, the workers')"
    )
    parser.add_argument(
        "--holdout-days",
        type=float,
        default=None,
        help="held out for evaluation (default: the last quarter of the log's decisions)",
    )
    parser.add_argument(
        "--label-window-days",
        type=float,
        default=2.0,
        help="a click or conversion counts if this soon",
    )
    parser.add_argument("--personas", type=int, default=4, help="number of personas")
    parser.add_argument("--catalog", type=Path, help="action catalog (default: $NUDGE_CATALOG)")
    parser.add_argument("--policy", type=Path, help="contact policy (default: $NUDGE_POLICY)")
    parser.add_argument(
        "--force",
        action="store_true",
        help="point CURRENT at the new version even if it is no better than a constant",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from nudge.models import artifact
    from nudge.models.training import beats_constant, report, train
    from nudge.policy.config import load_catalog, load_policy
    from nudge.streams.settings import Settings

    settings = Settings()
    out = args.out or settings.model_dir
    result = train(
        args.events,
        load_catalog(args.catalog or settings.catalog_path),
        load_policy(args.policy or settings.policy_path),
        holdout_days=args.holdout_days,
        label_window_days=args.label_window_days,
        n_personas=args.personas,
    )
    saved = artifact.save(
        out,
        result.propensity,
        result.personas,
        result.metadata,
        uplift=result.uplift,
        cycles=result.cycles,
    )
    print(report(saved.metadata))
    useful = beats_constant(saved.metadata)
    if not useful:
        val = saved.metadata["metrics"]["validation"]
        print(
            f"WARNING: held-out Brier {val['brier']:.5f} is not better than a constant"
            f" predictor's {val['constant_brier']:.5f} (the training base rate): this model"
            " has learned nothing worth serving. Train on a longer or larger log.",
            file=sys.stderr,
        )
    if useful or args.force:
        artifact.set_current(out, saved.version)
        forced = "" if useful else " (--force)"
        print(f"saved {out / saved.version}; CURRENT -> {saved.version}{forced}")
        return 0
    current = _current(out)
    print(
        f"saved {out / saved.version}; NOT deployed: CURRENT unchanged"
        f" ({current or 'none: workers serve the heuristic'}); --force deploys it"
    )
    return 0


def _current(root: Path) -> str | None:
    from nudge.models import artifact
    from nudge.models.artifact import ArtifactError

    try:
        return artifact.current_version(root)
    except ArtifactError:
        return None
