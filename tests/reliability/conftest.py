"""Reliability tier: faults against a real broker and real worker processes.

Each test records its measured figures in `figures`; they are printed at the
end of the run and, when NUDGE_RELIABILITY_REPORT names a file (`make
reliability` does), written there as JSON.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

FIGURES: dict[str, dict] = {}


@pytest.fixture(scope="session")
def figures() -> dict[str, dict]:
    return FIGURES


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not FIGURES:
        return
    terminalreporter.section("reliability figures")
    for name, values in FIGURES.items():
        terminalreporter.write_line(f"{name}: {json.dumps(values, default=str)}")
    target = os.environ.get("NUDGE_RELIABILITY_REPORT")
    if target:
        Path(target).write_text(json.dumps(FIGURES, indent=2, default=str) + "\n")
