"""Upgrading from a table per part to one record per customer, on a real
broker with a real worker: the state of the old layout (its changelogs) is
refused until migrated, and after `nudge state migrate` the worker finds
every person's consent and preferences where they were."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewTopic

from nudge.policy.config import load_catalog, load_policy
from nudge.policy.engine import Engine
from nudge.policy.processor import Processor
from nudge.streams.admin import changelog_topic
from nudge.streams.settings import Settings
from nudge.testing import WorkerProcess
from tests.workers import TEST_POLICY, Workers

pytestmark = pytest.mark.integration

PARTITIONS = 4
TOKEN = "migration-test-token"

ROOT = Path(__file__).resolve().parents[2]


def old_layout_parts(customer: str, at: datetime) -> dict[str, bytes]:
    """A person's parts as the old worker stored them: email marketing
    granted, preferred channel email (the real engine's bytes)."""
    engine = Engine(load_catalog(Settings().catalog_path), load_policy(TEST_POLICY))
    processor = Processor(engine)
    parts: dict[str, bytes] = {}
    events = [
        ("consent", {"type": "consent", "channel": "email", "purpose": "marketing",
                     "status": "granted", "source": "preference_centre"}),
        ("preferences", {"type": "preferences", "preferred_channel": "email"}),
    ]  # fmt: skip
    for n, (kind, body) in enumerate(events):
        event = {**body, "event_id": f"{customer}-{n}", "customer_id": customer,
                 "ts": (at + timedelta(seconds=n)).isoformat()}  # fmt: skip
        result = processor.process(
            kind, customer.encode(), json.dumps(event).encode(), (kind, 0, n),
            lambda _: dict(parts), at + timedelta(seconds=n),
        )  # fmt: skip
        assert result.invalid_reason is None, result.invalid_reason
        parts.update({k: v for k, v in result.writes.items() if v is not None})
    return parts


def write_old_changelogs(bootstrap: str, settings: Settings, people: list[str]) -> None:
    at = datetime.now(UTC) - timedelta(days=1)
    stored = {person: old_layout_parts(person, at) for person in people}
    parts = sorted({part for person_parts in stored.values() for part in person_parts})
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    admin.create_topics(
        [NewTopic(changelog_topic(settings, part), PARTITIONS, 1) for part in parts]
    )
    admin.close()
    # Keyed like the customer's events (the default partitioner), as Faust
    # wrote each part to the partition of the event that changed it.
    producer = KafkaProducer(bootstrap_servers=bootstrap)
    for person, person_parts in stored.items():
        for part, value in person_parts.items():
            producer.send(changelog_topic(settings, part), key=person.encode(), value=value)
    producer.flush()
    producer.close()


def migrate(worker: WorkerProcess) -> subprocess.CompletedProcess:
    """`nudge state migrate` as an operator runs it: the workers' environment."""
    return subprocess.run(
        [sys.executable, "-m", "nudge.cli", "state", "migrate"],
        env=worker.env(), cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_old_state_is_refused_until_migrated_then_found_by_the_worker(workers: Workers) -> None:
    worker = workers.new(partitions=PARTITIONS, env={"NUDGE_API_TOKEN": TOKEN})
    settings = Settings(
        bootstrap_servers=worker.bootstrap, app_id=f"{worker.prefix}nudge",
        topic_prefix=worker.prefix, partitions=PARTITIONS,
    )  # fmt: skip
    people = [f"mig-{n}" for n in range(12)]
    write_old_changelogs(worker.bootstrap, settings, people)

    with pytest.raises(RuntimeError, match="worker exited with 1"):
        worker.start()
    assert "run `nudge state migrate` first" in worker.tail()

    done = migrate(worker)
    assert done.returncode == 0, done.stderr
    assert "wrote 12 customer records" in done.stdout, done.stdout
    again = migrate(worker)  # once only: the new changelog exists now
    assert again.returncode == 1 and "was migrated" in again.stderr, again.stderr

    worker.start()
    for person in people:
        status, summary = worker.get(f"/api/customers/{person}", token=TOKEN)
        assert status == 200, (person, status, summary)
        assert summary["marketing_allowed"]["email"] is True, person
        assert summary["records"]["profile"]["preferred_channel"] == "email", person
