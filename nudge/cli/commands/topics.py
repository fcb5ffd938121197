"""`nudge topics`: create every topic nudge uses, co-partitioned, and check them."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "topics",
        help="create missing topics (inputs, outputs, changelogs) and check partition counts",
        description=(
            "Create every topic nudge uses with NUDGE_PARTITIONS partitions, using the "
            "worker's settings from the environment; exit 1 if an input topic exists with "
            "another partition count. Workers do the same at start; run it ahead of them "
            "when topic creation is a deployment step."
        ),
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from nudge.streams.admin import ensure_topics
    from nudge.streams.settings import Settings

    settings = Settings()
    created = ensure_topics(settings)
    print(f"{len(created)} topics created, all co-partitioned ({settings.partitions} partitions)")
    for name in created:
        print(f"  + {name}")
    return 0
