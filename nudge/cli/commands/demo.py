"""`nudge demo`: the main job of `make run`."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo", help="start Kafka and a worker, play a short story, show the decisions"
    )
    parser.add_argument("--port", type=int, default=9092, help="Kafka port")
    parser.add_argument("--data-dir", type=Path, default=Path(".data"))
    parser.add_argument(
        "--bootstrap",
        metavar="HOST:PORT",
        help="use this running broker instead of starting a local one",
    )
    parser.add_argument(
        "--keep-running",
        action="store_true",
        help="keep the worker up after the story (for its /metrics) until Ctrl-C",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from nudge.cli.demo import run_demo

    return run_demo(args.port, args.data_dir, args.keep_running, args.bootstrap)
