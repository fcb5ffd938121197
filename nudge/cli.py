"""The `nudge` command: one entry point for every role."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from streams.settings import REPO_ROOT, environment_reference

DEFAULT_KAFKA_DIR = REPO_ROOT / ".data" / "kafka"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="nudge", description="Real-time next-best-action engine that knows when to stop."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    worker = commands.add_parser(
        "worker",
        help="run a stream worker (settings from the environment)",
        epilog=_environment_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    worker.set_defaults(handler=_worker)

    kafka = commands.add_parser("kafka", help="start, stop or check the local Kafka broker")
    kafka.add_argument("action", choices=["start", "stop", "status"])
    kafka.add_argument("--port", type=int, default=9092)
    kafka.add_argument("--data-dir", type=Path, default=DEFAULT_KAFKA_DIR)
    kafka.set_defaults(handler=_kafka)

    demo = commands.add_parser(
        "demo", help="start Kafka and a worker, feed a scripted story, show the decisions"
    )
    demo.add_argument("--port", type=int, default=9092, help="Kafka port")
    demo.add_argument("--data-dir", type=Path, default=REPO_ROOT / ".data")
    demo.set_defaults(handler=_demo)

    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a clear message and a non-zero exit, not a traceback
        if getattr(args, "command", "") == "worker" and not _is_user_error(exc):
            raise
        print(f"nudge {args.command}: error: {exc}", file=sys.stderr)
        return 1


def _is_user_error(exc: Exception) -> bool:
    from kafka.errors import KafkaError

    from ops.local_kafka import LocalKafkaError
    from policy.config import ConfigError
    from streams.admin import TopicMismatch

    return isinstance(exc, ConfigError | TopicMismatch | LocalKafkaError | KafkaError | ValueError)


def _environment_help() -> str:
    rows = environment_reference()
    width = max(len(name) for name, _, _ in rows)
    lines = ["environment variables (default):"]
    for name, default, doc in rows:
        lines.append(f"  {name:<{width}}  {doc} [{default}]")
    return "\n".join(lines)


def _worker(args: argparse.Namespace) -> int:
    from streams.settings import Settings
    from streams.worker import run

    return run(Settings())


def _kafka(args: argparse.Namespace) -> int:
    from ops import local_kafka

    argv = [args.action, "--data-dir", str(args.data_dir)]
    if args.action == "start":
        argv += ["--port", str(args.port)]
    return local_kafka.main(argv)


def _demo(args: argparse.Namespace) -> int:
    from nudge.demo import run_demo

    return run_demo(args.port, args.data_dir)


if __name__ == "__main__":
    raise SystemExit(main())
