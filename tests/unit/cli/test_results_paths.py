"""`nudge evaluate` and the benchmarks write where git does not look unless told
otherwise: a casual run must not overwrite the published, tracked figures."""

from __future__ import annotations

import importlib
import subprocess
from pathlib import Path

import pytest

from nudge.cli import build_parser

ROOT = Path(__file__).resolve().parents[3]


def git(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=30)


def ignored(path: Path) -> bool:
    done = git("check-ignore", "-q", str(path))
    assert done.returncode in (0, 1), done.stderr
    return done.returncode == 0


@pytest.mark.parametrize(
    ("argv", "written", "published"),
    [
        (["evaluate"], "evaluation.json", "results/evaluation/evaluation.json"),
        (["evaluate"], "evaluation.png", "results/evaluation/evaluation.png"),
    ],
)
def test_default_results_are_git_ignored_and_published_ones_are_not(
    argv: list[str], written: str, published: str
) -> None:
    out = build_parser().parse_args(argv).out
    assert ROOT in out.resolve().parents, out
    assert ignored(out / written), f"{out / written} would show up in git status"
    assert git("ls-files", "--error-unmatch", published).returncode == 0, published
    assert not ignored(ROOT / published)
    assert (out / written).resolve() != (ROOT / published).resolve()


@pytest.mark.parametrize(
    "name", ["engine", "pipeline", "million", "model_latency", "soak", "transport"]
)
def test_a_bare_benchmark_run_leaves_the_published_figures_alone(name: str) -> None:
    default = importlib.import_module(f"bench.{name}").DEFAULT_OUT
    published = f"bench/results/{name}.json"
    assert ignored(default), f"{default} would show up in git status"
    assert default.resolve() != (ROOT / published).resolve()
