"""The `nudge` commands end to end, as subprocesses, against a real worker:
send -> worker -> tail, invalid input, explain, and Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from nudge.testing import WorkerProcess, interruptible
from tests.workers import Workers

pytestmark = pytest.mark.integration

TOKEN = "cli-test-token"

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def worker(module_workers: Workers) -> WorkerProcess:
    return module_workers.start(env={"NUDGE_API_TOKEN": TOKEN})


def nudge(worker: WorkerProcess, *args: str, token: str = TOKEN, timeout: float = 60):
    """Run `nudge ARGS` with a shell set up for this worker."""
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": worker.bootstrap,
        "NUDGE_TOPIC_PREFIX": worker.prefix,
        "NUDGE_WORKER_URL": worker.url,
        "NUDGE_API_TOKEN": token,
    }
    return subprocess.run(
        [sys.executable, "-m", "nudge.cli", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def events(customer: str) -> list[dict]:
    now = datetime.now(UTC)

    def at(minutes_ago: float) -> str:
        return (now - timedelta(minutes=minutes_ago)).isoformat()

    item = {"product_id": "filter-1", "category": "air_filters", "price": 29.9}
    return [
        {"event_id": f"{customer}-1", "type": "page_view", "customer_id": customer,
         "ts": at(3), "page": "/"},
        {"event_id": f"{customer}-2", "type": "purchase", "customer_id": customer,
         "ts": at(2), "order_id": f"o-{customer}", "items": [item]},
    ]  # fmt: skip


@pytest.fixture(scope="module")
def customer(worker: WorkerProcess, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A customer whose events were published with `nudge send` (an event log file)."""
    name = f"sam-{uuid.uuid4().hex[:6]}"
    path = tmp_path_factory.mktemp("send") / "events.jsonl"
    kinds = ("clickstream", "purchases")
    lines = [json.dumps({"kind": k, "event": e}) for k, e in zip(kinds, events(name), strict=True)]
    path.write_text("\n".join(lines) + "\n")
    done = nudge(worker, "send", str(path))
    assert done.returncode == 0, done.stderr
    assert "sent 2 events" in done.stdout
    return name


def test_send_then_tail_shows_the_action(worker: WorkerProcess, customer: str) -> None:
    done = nudge(worker, "tail", "actions", "--from-beginning", "--limit", "1")
    assert done.returncode == 0, done.stderr
    [line] = done.stdout.splitlines()
    assert customer in line and "ACTION" in line and "order_confirmation via" in line
    raw = nudge(worker, "tail", "actions", "--from-beginning", "--limit", "1", "--json")
    assert json.loads(raw.stdout)["customer_id"] == customer


def test_send_reports_an_invalid_event_and_does_not_send_it(
    worker: WorkerProcess, tmp_path: Path
) -> None:
    good, bad = events(f"val-{uuid.uuid4().hex[:6]}")
    bad = {**bad, "items": []}
    path = tmp_path / "events.jsonl"  # bare events: the kind follows from the type
    path.write_text(f"{json.dumps(good)}\n{json.dumps(bad)}\n")
    done = nudge(worker, "send", str(path))
    assert done.returncode == 1
    assert "line 2: schema_violation" in done.stderr
    assert "sent 1 events; 1 invalid not sent" in done.stdout

    forced = nudge(worker, "send", "--force", json.dumps(bad))
    assert forced.returncode == 0, forced.stderr
    dead = nudge(worker, "tail", "deadletter", "--from-beginning", "--limit", "1")
    assert "DEADLETTER" in dead.stdout and "schema_violation" in dead.stdout


def test_explain_summarises_a_customer_and_traces_a_dry_run(
    worker: WorkerProcess, customer: str, tmp_path: Path
) -> None:
    deadline = time.monotonic() + 20
    while "1 orders" not in (done := nudge(worker, "explain", customer)).stdout:
        assert time.monotonic() < deadline, (done.stdout, done.stderr)
        time.sleep(0.3)
    assert done.returncode == 0
    assert f"customer {customer}" in done.stdout

    view = tmp_path / "view.json"
    view.write_text(json.dumps({"type": "product_view", "category": "lighting"}))
    trace = nudge(worker, "explain", customer, "--event", str(view))
    assert trace.returncode == 0, trace.stderr
    assert "dry run" in trace.stdout

    wrong = nudge(worker, "explain", customer, token="wrong")
    assert wrong.returncode == 1 and "refused the token" in wrong.stderr
    unknown = nudge(worker, "explain", "nobody-at-all")
    assert unknown.returncode == 1 and "no state for 'nobody-at-all'" in unknown.stderr


def test_tail_stops_cleanly_on_ctrl_c(worker: WorkerProcess) -> None:
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": worker.bootstrap,
           "NUDGE_TOPIC_PREFIX": worker.prefix}  # fmt: skip
    tail = subprocess.Popen(
        [sys.executable, "-m", "nudge.cli", "tail", "suppressions"],
        preexec_fn=interruptible,
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert tail.stderr is not None
    started = tail.stderr.readline()  # once it follows: a loaded machine may take seconds
    assert started.startswith(b"following suppressions"), started
    tail.send_signal(signal.SIGINT)
    _, err = tail.communicate(timeout=20)
    assert tail.returncode == 0, err
    assert b"Traceback" not in err
