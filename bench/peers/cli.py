"""The command line bench.pipeline starts a peer with (PeerProcess)."""

from __future__ import annotations

import argparse
from pathlib import Path


def arguments(
    prog: str, doc: str | None, state_option: str, argv: list[str] | None
) -> argparse.Namespace:
    """--bootstrap, --prefix, `state_option` (the peer's own state directory),
    --partitions, --metrics-port (bench.peers.counting), --ready-file, --log-level."""
    parser = argparse.ArgumentParser(prog=prog, description=doc)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--prefix", required=True)
    parser.add_argument(state_option, type=Path, required=True)
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--metrics-port", type=int, required=True)
    parser.add_argument("--ready-file", type=Path, help="written once the peer can process")
    parser.add_argument("--log-level", default="WARNING")
    return parser.parse_args(argv)
