"""The `nudge` command: one entry point for every role.

Each subcommand lives in its own module under `nudge/commands/` with two
functions, `register(subparsers)` and `run(args) -> int`; this file only
lists them and turns errors into clear messages and exit codes.
"""

from __future__ import annotations

import argparse
import importlib
import sys

#: Subcommand modules, in the order `nudge --help` shows them.
COMMANDS = (
    "worker",
    "topics",
    "send",
    "tail",
    "explain",
    "replay",
    "kafka",
    "demo",
    "train",
    "simulate",
    "evaluate",
    "experiments",
    "state",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nudge", description="Real-time next-best-action engine that knows when to stop."
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        module = importlib.import_module(f"nudge.cli.commands.{name}")
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    prog = "nudge"
    try:
        # Inside the try: help texts read the settings, and a bad variable is
        # a user error even before a command runs.
        args = build_parser().parse_args(argv)
        prog = f"nudge {args.command}"
        return args.run(args)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        if not _is_user_error(exc):
            raise
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 1


def _is_user_error(exc: Exception) -> bool:
    """Errors a user can fix get one line, not a traceback; a bug keeps its
    traceback (a ValueError from nudge's own code is a bug, not a user error)."""
    from kafka.errors import KafkaError

    from nudge.errors import UserError

    # A broker that cannot be reached or refuses, a path that is not there:
    # the environment the user gave, not nudge's code.
    environment = (KafkaError, ConnectionError, FileNotFoundError, PermissionError)
    return isinstance(exc, (UserError, *environment))
