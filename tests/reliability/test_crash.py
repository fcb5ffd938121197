"""kill -9 a worker in the middle of a stream and restart it on the same data dir.

At least once: nothing is lost (every event accounted for, every recorded
contact's action on Kafka, every order confirmed), no opt-out or cap is
broken by the replay, and the duplicates it makes carry the original decision
id. Exactly once: the same crash leaves no duplicate for read_committed
readers. The figures (duplicates, recovery times) go to the reliability report.
"""

from __future__ import annotations

import re
import time

import msgspec
import pytest
from workload import (
    OUTPUTS,
    TOKEN,
    Traffic,
    Workload,
    build,
    changelog,
    judge,
    local_table,
    publish_grants,
    wait_settled,
)

from nudge.policy.engine import REISSUE
from nudge.policy.stored import STATE_TABLE
from nudge.testing import Received, WorkerProcess
from tests.workers import Workers

pytestmark = pytest.mark.reliability

CUSTOMERS = 300
RATE = 400.0  # events per second, published while the worker runs, dies and restarts
KILL_AFTER = 3.0  # seconds into the stream


def crash_and_recover(workers: Workers, guarantee: str) -> tuple[Workload, list[Received], dict]:
    """Run the workload, kill -9 the worker mid-stream, restart it, let it
    catch up; return the workload, everything it wrote, and the figures."""
    env = {"NUDGE_API_TOKEN": TOKEN, "NUDGE_PROCESSING_GUARANTEE": guarantee}
    worker = workers.new(env=env)
    isolation = "read_committed" if guarantee == "exactly_once" else "read_uncommitted"
    work = build(worker.prefix.replace(".", "-"), CUSTOMERS)
    worker.start()
    reader = workers.reader(worker, OUTPUTS, isolation)
    publisher = workers.publisher(worker)
    publish_grants(publisher, reader, work)
    traffic = Traffic(publisher, work.stream, RATE)
    traffic.start()
    time.sleep(KILL_AFTER)
    worker.kill()
    killed = time.monotonic()
    published_at_kill = traffic.sent
    worker.start()
    ready_s = time.monotonic() - killed
    traffic.join()
    complete = wait_settled(reader, work.must_record, timeout=120, quiet=30)
    caught_up_s = round(time.monotonic() - killed, 2) if complete else None
    _assert_tables_recovered(worker, work, reader.received)
    skipped = _counter(worker, "nudge_duplicate_events_total")
    worker.stop()
    verdict = judge(work, reader, worker)
    received = verdict.received
    diverged = {
        table: _differences(local_table(worker, table), changelog(worker.bootstrap, worker, table))
        for table in (STATE_TABLE,)
    }
    log = worker.log_path.read_text(errors="replace")
    recovery = "rebuilding the tables" if guarantee == "exactly_once" else "rolled back"
    assert f"the last run did not stop cleanly: {recovery}" in log
    # The restarted worker's tables end up exactly what its changelogs say:
    # what it kept after the crash could be rebuilt by any other worker.
    assert not any(diverged.values()), diverged
    figures = {
        "events": work.events,
        "published_when_killed": published_at_kill,
        "recovery_to_ready_s": round(ready_s, 2),
        "recovery_to_caught_up_s": caught_up_s,
        "action_records": verdict.action_records,
        "distinct_actions": verdict.distinct_actions,
        "duplicate_actions": verdict.duplicate_actions,
        "reissued_actions": sum(1 for r in received if REISSUE in r.value.get("reasons", ())),
        "duplicate_suppressions": _duplicates(received, "suppressions", "decision_id"),
        "duplicate_consent_log": _duplicates(received, "consent-log", "event_id"),
        "redelivered_events_skipped": skipped,
        "findings": verdict.findings,
    }
    return work, received, figures


def summary(report: dict) -> dict:
    """The report with each finding cut to its count and a few examples."""
    findings = {k: {"count": len(v), "e.g.": v[:3]} for k, v in report["findings"].items() if v}
    return {**report, "findings": findings}


def test_kill_9_at_least_once_loses_nothing(workers, figures) -> None:
    work, _, report = crash_and_recover(workers, "at_least_once")
    figures["crash_at_least_once"] = summary(report)
    findings = report["findings"]
    assert not any(findings.values()), findings
    assert report["action_records"] >= len(work.purchases)


def test_kill_9_exactly_once_leaves_no_duplicate(workers, figures) -> None:
    """read_committed readers see each output once, and nothing is lost."""
    _, _, report = crash_and_recover(workers, "exactly_once")
    figures["crash_exactly_once"] = summary(report)
    assert report["duplicate_actions"] == 0
    assert report["duplicate_suppressions"] == 0
    assert report["duplicate_consent_log"] == 0
    assert not any(report["findings"].values()), report["findings"]


def _assert_tables_recovered(
    worker: WorkerProcess, work: Workload, received: list[Received]
) -> None:
    """Consent given before the crash is in the restarted worker's tables, and
    so is every opt-out whose consent-log entry was published."""
    logged_opt_outs = {
        r.value["customer_id"]
        for r in received
        if r.kind == "consent-log" and r.value["status"] == "revoked"
    }
    for customer in work.customers:
        status, summary = worker.get(f"/api/customers/{customer}", token=TOKEN)
        assert status == 200, (customer, status)
        assert summary["marketing_allowed"]["email"] or customer in work.opted_out, customer
        if customer in logged_opt_outs:
            assert summary["global_opt_out"], customer


def _counter(worker: WorkerProcess, name: str) -> float:
    """A label-free counter from the worker's /metrics page."""
    text = worker.get("/metrics")[1].get("text", "")
    match = re.search(rf"^{name} ([0-9.e+]+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def _duplicates(received: list[Received], kind: str, key: str) -> int:
    values = [r.value[key] for r in received if r.kind == kind]
    return len(values) - len(set(values))


def _differences(local: dict[bytes, bytes], changelog: dict[bytes, bytes]) -> list[str]:
    """Keys whose local value is not the changelog's (a few, decoded)."""

    def shown(value: bytes | None) -> object:
        if value is None:
            return None
        return [v.hex() if isinstance(v, bytes) else v for v in msgspec.msgpack.decode(value)]

    keys = sorted(k for k in local.keys() | changelog.keys() if local.get(k) != changelog.get(k))
    return [f"{k!r}: local {shown(local.get(k))} != {shown(changelog.get(k))}" for k in keys[:5]]
