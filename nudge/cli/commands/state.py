"""`nudge state migrate`: upgrade stored state to one record per customer."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "state",
        help="upgrade the workers' stored state (stop every worker first)",
        description=(
            "migrate: copy the changelogs of the table-per-part state layout (before "
            "2026-12) into the one-record-per-customer changelog, with every worker "
            "stopped; the workers then rebuild their tables from it. Settings come from "
            "the environment, as for the worker. docs/operators.md, 'Upgrading state'."
        ),
    )
    parser.add_argument("action", choices=["migrate"])
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from nudge.streams.migrate import migrate
    from nudge.streams.settings import Settings

    done = migrate(Settings())
    print(
        f"read {done.records_read} keys from {len(done.topics_read)} old changelogs, "
        f"wrote {done.keys_written} customer records"
    )
    return 0
