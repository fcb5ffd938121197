"""`nudge kafka start|stop|status`: the local broker for development and tests."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "kafka", help="start, stop or check the local Kafka broker (KRaft, from Maven jars)"
    )
    parser.add_argument("action", choices=["start", "stop", "status"])
    parser.add_argument("--port", type=int, default=9092, help="client port (start)")
    parser.add_argument("--data-dir", type=Path, default=Path(".data/kafka"))
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from nudge.ops import local_kafka

    argv = [args.action, "--data-dir", str(args.data_dir)]
    if args.action == "start":
        argv += ["--port", str(args.port)]
    return local_kafka.main(argv)
