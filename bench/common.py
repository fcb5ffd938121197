"""What every benchmark shares: where its result goes, percentiles, the
machine it ran on, the JSON result, the chart and the options they all take.

One definition each, so the figures of different benchmarks are computed and
described the same way (one nearest-rank percentile, one machine record).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import psutil

from nudge.config import CATALOG as SHIPPED_CATALOG
from nudge.config import POLICY as SHIPPED_POLICY
from nudge.config import shipped

REPO_ROOT = Path(__file__).resolve().parent.parent
CATALOG = shipped(SHIPPED_CATALOG)
POLICY = shipped(SHIPPED_POLICY)
#: The shipped policy without quiet hours, holdout or exploration: decisions
#: are immediate at any hour (the worker benchmarks run on the real clock).
INTEGRATION_POLICY = REPO_ROOT / "tests" / "integration" / "policy.toml"


def default_out(name: str) -> Path:
    """Where a bare run writes: git ignores it, so a casual run leaves the
    published figures (`--out bench/results/...`) alone."""
    return REPO_ROOT / ".results" / "bench" / f"{name}.json"


def parser(
    prog: str, doc: str | None, out: Path | None, out_help: str | None = None
) -> argparse.ArgumentParser:
    """An argument parser showing the module docstring as help, with `--out`
    (default `out`; None: the module picks one after parsing, as `out_help` says)."""
    made = argparse.ArgumentParser(
        prog=f"python -m {prog}",
        description=doc,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    made.add_argument(
        "--out", type=Path, default=out, help=out_help or f"the JSON result (default {out})"
    )
    return made


def add_pinning(made: argparse.ArgumentParser) -> None:
    """`--core` and `--no-pin`, for benchmarks that time one process on one core."""
    made.add_argument("--core", type=int, default=None, help="CPU to pin to (default: last)")
    made.add_argument("--no-pin", action="store_true", help="do not pin to one core")


# -- figures ------------------------------------------------------------------------------


def percentile(ordered: Sequence[float], p: float, digits: int | None = None) -> float | None:
    """Nearest-rank percentile of already sorted values (None if there are
    none), rounded to `digits` if given."""
    if not ordered:
        return None
    rank = max(1, -(-len(ordered) * p // 100))
    value = float(ordered[int(rank) - 1])
    return value if digits is None else round(value, digits)


def summary(ordered: Sequence[float], digits: int = 1) -> dict[str, float | None]:
    """p50, p95, p99, max and count of sorted values (latencies in ms)."""
    return {
        "p50": percentile(ordered, 50, digits),
        "p95": percentile(ordered, 95, digits),
        "p99": percentile(ordered, 99, digits),
        "max": percentile(ordered, 100, digits),
        "count": len(ordered),
    }


POINTS = {"p50": 50, "p95": 95, "p99": 99, "max": 100}


def latency_summary(
    values_ns: Sequence[int], which: Sequence[str] = ("p50", "p95", "p99", "max")
) -> dict[str, float | None]:
    """Nanosecond timings summarised in microseconds (0.1 µs); with "max", the
    mean too. None where there is nothing to measure."""
    ordered = sorted(values_ns)
    out: dict[str, float | None] = {}
    for name in which:
        value = percentile(ordered, POINTS[name])
        out[name] = None if value is None else round(value / 1000, 1)
    if "max" in which:
        out["mean"] = round(sum(ordered) / len(ordered) / 1000, 1) if ordered else None
    return out


def rate(count: int, seconds: float) -> float:
    return round(count / seconds, 1) if seconds > 0 else 0.0


# -- the machine ------------------------------------------------------------------------


def machine_info(
    pinned: int | None = None, load_before: tuple[float, float, float] | None = None
) -> dict:
    """The machine and software the figures come from; with `load_before`
    (os.getloadavg() at the start), the load average before and now: on a
    shared box the neighbours' load moves every figure."""
    cpu_model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        commit = (
            subprocess.run(
                ["git", "rev-parse", "--short", "HEAD"],
                cwd=REPO_ROOT,
                capture_output=True,
                text=True,
                timeout=5,
                check=False,
            ).stdout.strip()
            or None
        )
    except (OSError, subprocess.SubprocessError):
        commit = None
    info: dict[str, Any] = {
        "nproc": os.cpu_count(),
        "pinned_core": pinned,
        "cpu_model": cpu_model,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "msgspec": msgspec.__version__,
        "git_commit": commit,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    if load_before is not None:
        info["memory_gb"] = round(psutil.virtual_memory().total / 2**30, 1)
        info["load_average"] = [round(x, 2) for x in load_before]
        info["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    return info


def pin_to_one_core(core: int | None) -> int | None:
    """Pin this process to one core (default: the last one it may use)."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    allowed = sorted(os.sched_getaffinity(0))
    chosen = allowed[-1] if core is None else core
    try:
        os.sched_setaffinity(0, {chosen})
    except OSError:
        return None
    return chosen


# -- writing ------------------------------------------------------------------------------


def write_json(result: dict, path: Path) -> None:
    """The result as indented JSON, replaced atomically (a reader never sees half)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(result, indent=2, sort_keys=False) + "\n")
    os.replace(tmp, path)


@contextmanager
def chart(path: Path, size: tuple[float, float] = (8, 5)) -> Iterator[Any]:
    """A matplotlib figure's axes, saved to `path` (PNG) when the block ends;
    headless (Agg), and matplotlib is imported only by benchmarks that draw."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=size)
    try:
        yield ax
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110)
    finally:
        plt.close(fig)
