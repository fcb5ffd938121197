"""`nudge evaluate` and `nudge bench` write where git does not look unless told
otherwise: a casual run must not overwrite the published, tracked figures."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from nudge.cli import build_parser
from nudge.commands.bench import command

ROOT = Path(__file__).resolve().parents[2]


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
        (["bench"], "engine.json", "bench/results/engine.json"),
        (["bench"], "pipeline.json", "bench/results/pipeline.json"),
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


def test_bench_sends_each_result_to_its_out_directory_unless_told_otherwise(
    tmp_path: Path,
) -> None:
    args = build_parser().parse_args(["bench", "--out", str(tmp_path), "engine"])
    assert args.out == tmp_path and args.which == "engine"
    assert command("engine", ["--quiet"], tmp_path) == [
        sys.executable,
        *("-m", "bench.engine", "--quiet", "--out", str(tmp_path / "engine.json")),
    ]
    # A --out passed through to the benchmark is the benchmark's own.
    assert command("engine", ["--out", "x.json"], tmp_path)[3:] == ["--out", "x.json"]
    assert command("pipeline", ["--out=y.json"], tmp_path)[3:] == ["--out=y.json"]
