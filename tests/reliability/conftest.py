"""Reliability tier: faults against a real broker and real worker processes.

Each test records its measured figures in `figures`; they are printed at the
end of the run and, when NUDGE_RELIABILITY_REPORT names a file (`make
reliability` does), written there as JSON.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from nudge.ops import local_kafka

FIGURES: dict[str, dict] = {}


@pytest.fixture(scope="session")
def figures() -> dict[str, dict]:
    return FIGURES


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A broker of the test's own, (bootstrap, data dir), for a test that stops
    it: stopping the session's broker would disturb every other test."""
    data_dir = tmp_path / "kafka"
    handle = local_kafka.start(port=local_kafka.free_port(), data_dir=data_dir)
    try:
        yield handle.bootstrap_servers, data_dir
    finally:
        local_kafka.stop(data_dir)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not FIGURES:
        return
    terminalreporter.section("reliability figures")
    for name, values in FIGURES.items():
        terminalreporter.write_line(f"{name}: {json.dumps(values, default=str)}")
    target = os.environ.get("NUDGE_RELIABILITY_REPORT")
    if target:
        Path(target).write_text(json.dumps(FIGURES, indent=2, default=str) + "\n")
