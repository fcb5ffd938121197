"""Scale out, then lose a worker, while traffic flows.

A second worker (own data dir, same app id) joins, the partitions are split,
then the first worker is killed with kill -9 and the second takes over all
partitions with their state (standby replicas keep warm copies). Consent
given before the moves is honoured after them, opt-outs and caps hold
throughout, and every contact in the final state has its action on Kafka.

Faust 0.15.3 skipped messages where a partition resumed after a rebalance
until streams/seek_race.py: this test found it (docs/reliability.md).
"""

from __future__ import annotations

import time

import pytest
from kafka import KafkaAdminClient
from workload import (
    OUTPUTS,
    TOKEN,
    Traffic,
    build,
    judge,
    publish_grants,
    wait_consumed,
    wait_settled,
)

from nudge.testing import WorkerProcess

pytestmark = pytest.mark.reliability

CUSTOMERS = 300
RATE = 100.0  # about 30 s of traffic: it flows through the join and the failover
#: NUDGE_SESSION_TIMEOUT (10 s) for the group to notice the kill, and a rebalance.
FAILOVER_NOTICED_S = 40.0


def test_scale_out_then_failover_keeps_state_and_loses_nothing(workers, figures) -> None:
    env = {"NUDGE_API_TOKEN": TOKEN, "NUDGE_STANDBY_REPLICAS": "1"}
    first = workers.new(env=env)
    second = workers.new(prefix=first.prefix, env=env)
    bootstrap, prefix = first.bootstrap, first.prefix
    work = build(prefix.replace(".", "-"), CUSTOMERS, seed=11)
    first.start()
    reader = workers.reader(first, OUTPUTS)
    publisher = workers.publisher(first)
    publish_grants(publisher, reader, work)
    traffic = Traffic(publisher, work.stream, RATE)
    traffic.start()
    time.sleep(2.0)
    joining = time.monotonic()
    second.start()  # ready once the rebalance gave it partitions and their state
    scale_out_s = time.monotonic() - joining
    split = _clickstream_split(bootstrap, prefix)
    time.sleep(1.0)
    first.kill()
    killed = time.monotonic()
    traffic.join()
    complete = wait_settled(reader, work.must_record, timeout=120, quiet=30)
    failover_s = round(time.monotonic() - killed, 2) if complete else None
    wait_consumed(bootstrap, prefix, timeout=60)
    for customer in work.customers:  # state moved with its partitions
        status, summary = _answer_after_failover(second, f"/api/customers/{customer}")
        assert status == 200, customer
        consent = summary["records"]["consent"]
        assert summary["marketing_allowed"]["email"] or customer in work.opted_out, consent
    second.stop()
    verdict = judge(work, reader, second)
    figures["scale_out_and_failover"] = {
        "events": work.events,
        "second_worker_ready_s": round(scale_out_s, 2),
        "partitions_after_scale_out": split,
        "caught_up_after_kill_s": failover_s,
        **verdict.figures(),
    }
    assert len(split) == 2 and min(split) > 0, f"the second worker got no share: {split}"
    assert not any(verdict.findings.values()), {k: v[:5] for k, v in verdict.findings.items()}


def _answer_after_failover(worker: WorkerProcess, path: str) -> tuple[int, dict]:
    """The API answer once the group has noticed the kill: until then the dead
    worker still owns its partitions, and the survivor forwards their customers
    to it (502) or is rebalancing (503; streams/routing.py)."""
    deadline = time.monotonic() + FAILOVER_NOTICED_S
    while True:
        status, body = worker.get(path, token=TOKEN)
        if status not in (502, 503, 504) or time.monotonic() > deadline:
            return status, body
        time.sleep(0.5)


def _clickstream_split(bootstrap: str, prefix: str) -> list[int]:
    """How many clickstream partitions each group member holds, from the broker."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        group = admin.describe_groups([f"{prefix}nudge"])[f"{prefix}nudge"]
    finally:
        admin.close()
    counts = []
    for member in group["members"]:
        assignment = member["member_assignment"]["assigned_partitions"]
        counts += [
            len(item["partitions"])
            for item in assignment
            if item["topic"] == f"{prefix}clickstream"
        ]
    return sorted(counts)
