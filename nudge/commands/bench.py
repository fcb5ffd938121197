"""`nudge bench`: run the benchmarks (they print figures and write JSON results)."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from streams.settings import REPO_ROOT

BENCHMARKS = ("engine", "pipeline")
#: Git-ignored: a casual run must not overwrite the figures the docs publish
#: (bench/results/, written only when asked with --out).
DEFAULT_OUT = REPO_ROOT / ".results" / "bench"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="run the benchmarks: the pure engine, and the Kafka pipeline where present",
        description=(
            "Run `python -m bench.engine` and, if it exists, `python -m bench.pipeline`, "
            "passing any arguments after -- through to each. Each writes OUT/<name>.json."
        ),
        epilog="examples:\n  nudge bench\n  nudge bench engine -- --events 50000 --quiet\n"
        "  nudge bench --out bench/results engine   # update the published figures\n"
        "  nudge bench engine -- --help",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        metavar="DIR",
        help="where each benchmark writes <name>.json (default: .results/bench, git-ignored;"
        " bench/results holds the published figures)",
    )
    parser.add_argument(
        "which", nargs="?", choices=(*BENCHMARKS, "all"), default="all", help="(default: all)"
    )
    parser.add_argument("args", nargs=argparse.REMAINDER, help="passed through (after --)")
    parser.set_defaults(run=run)


def command(name: str, passed: list[str], out: Path) -> list[str]:
    """The benchmark's command line: its result goes to OUT/<name>.json unless
    the arguments passed through name their own --out."""
    if not any(arg == "--out" or arg.startswith("--out=") for arg in passed):
        passed = [*passed, "--out", str(out / f"{name}.json")]
    return [sys.executable, "-m", f"bench.{name}", *passed]


def run(args: argparse.Namespace) -> int:
    passed = args.args[1:] if args.args[:1] == ["--"] else args.args
    names = BENCHMARKS if args.which == "all" else (args.which,)
    present = [name for name in names if (REPO_ROOT / "bench" / f"{name}.py").is_file()]
    if not present:
        raise ValueError(f"no benchmark bench/{args.which}.py in {REPO_ROOT}")
    for name in present:
        print(f"== bench.{name}", flush=True)
        done = subprocess.run(command(name, passed, args.out.resolve()), cwd=REPO_ROOT)
        if done.returncode != 0:
            print(f"nudge bench: bench.{name} failed ({done.returncode})", file=sys.stderr)
            return done.returncode
    return 0
