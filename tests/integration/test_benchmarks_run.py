"""The benchmarks still run after a refactor: each is started as an operator
starts it (`python -m bench.X`), with settings small enough for CI, and must
write its JSON result with its figures. The published figures come from full
runs (`make bench`); this only proves the code behind them is not broken.

bench.million and bench.soak take minutes even when small; `make bench-smoke`
runs them with the rest."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]

SMALL = {
    "engine": ["--customers", "200", "--events", "3000", "--quiet", "--no-pin"],
    "model_latency": ["--customers", "100", "--events", "2000", "--triggers", "500", "--no-pin"],
    "pipeline": [
        "--systems",
        "nudge,echo",
        "--rates",
        "100",
        "--seconds",
        "3",
        "--runs",
        "1",
        "--no-max",
    ],
}
#: Keys of each result that hold measured figures (not only parameters).
FIGURES = {
    "engine": "mixed",
    "model_latency": "with_model",
    "pipeline": "trials",
    "transport": "runs",
}


def run(name: str, args: list[str], out: Path) -> dict:
    done = subprocess.run(
        [sys.executable, "-m", f"bench.{name}", *args, "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return json.loads(out.read_text())


@pytest.mark.parametrize("name", list(SMALL))
def test_a_benchmark_runs_and_writes_its_figures(name: str, tmp_path: Path) -> None:
    result = run(name, SMALL[name], tmp_path / f"{name}.json")
    assert result["benchmark"] == name
    assert result[FIGURES[name]], f"bench.{name} wrote no figures"
    assert result["machine"]


def test_the_transport_benchmark_runs_against_the_broker(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    args = ["--bootstrap", kafka_bootstrap, "--messages", "2000", "--runs", "1"]
    result = run("transport", args, tmp_path / "transport.json")
    assert result[FIGURES["transport"]]
