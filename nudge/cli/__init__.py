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
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        if not _is_user_error(exc):
            raise
        print(f"nudge {args.command}: error: {exc}", file=sys.stderr)
        return 1


def _is_user_error(exc: Exception) -> bool:
    """Errors a user can fix get one line, not a traceback."""
    from kafka.errors import KafkaError

    from nudge.ops.local_kafka import LocalKafkaError
    from nudge.policy.config import ConfigError
    from nudge.streams.admin import TopicMismatch, UnmigratedState

    user_errors = (ConfigError, TopicMismatch, UnmigratedState, LocalKafkaError, KafkaError)
    user_errors += (ValueError, OSError)
    return isinstance(exc, user_errors)


if __name__ == "__main__":
    raise SystemExit(main())
