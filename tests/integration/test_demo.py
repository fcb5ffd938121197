"""`nudge demo` (what `make run` runs) as a user runs it, on the session's
broker: the story's decisions are printed, and the /metrics address it prints
answers for as long as it is printed, since the worker is kept up for it."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from nudge.testing import interruptible

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def status_of(url: str) -> int:
    """HTTP status, 0 if nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return 0


def test_the_demo_decides_and_its_metrics_address_answers(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    command = [sys.executable, "-m", "nudge.cli", "demo", "--bootstrap", kafka_bootstrap]
    demo = subprocess.Popen(
        [*command, "--data-dir", str(tmp_path), "--keep-running"],
        preexec_fn=interruptible,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    reading = threading.Thread(target=lambda: lines.extend(demo.stdout), daemon=True)
    reading.start()
    try:
        deadline = time.monotonic() + 180
        while not any("Ctrl-C" in line for line in lines):
            assert demo.poll() is None, "".join(lines)
            assert time.monotonic() < deadline, "".join(lines)
            time.sleep(0.2)
        output = "".join(lines)
        metrics = re.search(r"^metrics: +(\S+/metrics)$", output, re.MULTILINE)
        assert metrics, output
        assert status_of(metrics.group(1)) == 200, "the printed /metrics address does not answer"
        demo.send_signal(signal.SIGINT)
        assert demo.wait(60) == 0
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait(10)
    reading.join(10)
    output = "".join(lines)
    assert "decisions arrived" not in output, output  # every decision came back in time
    for outcome, who, what in (
        ("ACTION", "anna", "category_inspiration via email"),
        ("SUPPRESSED", "ben", "consent"),
        ("SUPPRESSED", "cara", "purchase_cooldown"),
        ("ACTION", "dan", "cart_reminder via push"),  # its hour had passed when it arrived
        ("SUPPRESSED", "dan", "action_cooldown"),
        ("ACTION", "fay", "order_confirmation"),
    ):
        assert re.search(rf"ms  {outcome} +{who} +\S+ +{what}", output), (outcome, who, output)
    assert "DEADLETTER" in output
    assert status_of(metrics.group(1)) == 0, "the demo's worker outlived the demo"
