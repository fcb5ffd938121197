"""`nudge worker`: run a stream worker."""

from __future__ import annotations

import argparse
import os

from nudge.streams.settings import environment_reference


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "worker",
        help="run a stream worker (settings from the environment)",
        description="Run a stream worker. Every setting comes from the environment.",
        epilog=_environment_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    # uvloop unless F_LOOP says otherwise: about 5% less CPU per event
    # (docs/performance.md). Faust reads it when first imported, just below.
    os.environ.setdefault("F_LOOP", "uvloop")
    from nudge.streams.settings import Settings
    from nudge.streams.worker import run as run_worker

    return run_worker(Settings())


def _environment_help() -> str:
    rows = environment_reference()
    width = max(len(name) for name, _, _ in rows)
    lines = ["environment variables [default]:"]
    lines += [f"  {name:<{width}}  {doc} [{default}]" for name, default, doc in rows]
    return "\n".join(lines)
