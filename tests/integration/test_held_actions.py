"""Held actions through a real broker and real worker processes.

An action decided inside the person's quiet hours is kept in the worker's
state, not published. When it is due the partition's owner re-runs the rules
and publishes the action, or a suppression naming what changed meanwhile.

Quiet hours have minute granularity: each test gives its people a window
ending at the next minute boundary at least LEAD seconds away (UTC), so the
holds fall due within about a minute and a half.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from nudge.policy.ids import decision_id
from nudge.testing import EventPublisher, OutputReader, WorkerProcess
from tests.integration.test_worker import TOKEN, Story, processed, publish, wait_state
from tests.workers import Workers

pytestmark = pytest.mark.integration

OUTPUTS = ("actions", "actions.email", "suppressions", "consent-log")
ACTION = "category_inspiration"  # three views of a category, email only: waits for quiet hours
#: Seconds at least between the start of a test's setup and the holds' due time.
LEAD = 25


ENV = {"NUDGE_API_TOKEN": TOKEN}


@pytest.fixture(scope="module")
def worker(module_workers: Workers) -> WorkerProcess:
    return module_workers.start(env=ENV, no_traceback=True)


def quiet_until_soon() -> tuple[dict, datetime]:
    """Quiet hours (UTC) from two hours ago until the next minute boundary at
    least LEAD seconds away, and that boundary: when the holds fall due."""
    now = datetime.now(UTC)
    due = now.replace(second=0, microsecond=0) + timedelta(minutes=1)
    if (due - now).total_seconds() < LEAD:
        due += timedelta(minutes=1)
    start = due - timedelta(hours=2)
    return {"start": start.strftime("%H:%M"), "end": due.strftime("%H:%M"), "tz": "UTC"}, due


def hold(publisher: EventPublisher, worker: WorkerProcess, name: str, quiet: dict) -> dict:
    """A fresh person with email consent, two lighting views and quiet hours;
    then the view that decides category_inspiration. Returns that trigger once
    its action is held in the worker's state."""
    story = Story(name)
    publish(
        publisher,
        ("consent", story.consent("email")),
        ("clickstream", story.view("lighting", 2)),
        ("clickstream", story.view("lighting", 1)),
        ("preferences", story.event("preferences", 0.5, quiet_hours=quiet)),
    )
    wait_state(worker, story.customer, lambda s: s["records"]["profile"].get("quiet_hours"))
    trigger = story.view("lighting")
    publish(publisher, ("clickstream", trigger))
    wait_state(worker, story.customer, lambda s: s["records"]["holds"].get("pending"))
    trigger["story"] = story
    return trigger


def records_of(outputs: OutputReader, trigger: dict, kind: str) -> list:
    return [
        r
        for r in outputs.received
        if r.kind == kind and r.value["trigger_event_id"] == trigger["event_id"]
    ]


def test_a_revocation_or_a_purchase_before_the_due_time_stops_the_held_action(
    worker: WorkerProcess, publisher: EventPublisher, outputs: OutputReader
) -> None:
    quiet, due = quiet_until_soon()
    revoked = hold(publisher, worker, "ann", quiet)
    bought = hold(publisher, worker, "bob", quiet)
    kept = hold(publisher, worker, "cid", quiet)  # the control: nothing changes

    ann, bob = revoked["story"], bought["story"]
    revocation = ann.event("consent", 0, channel="email", purpose="marketing",
                           status="revoked", source="test")  # fmt: skip
    lamp = {"product_id": "lamp", "category": "lighting", "price": 40.0}
    order = bob.event("purchase", 0, order_id=f"o-{bob.customer}", items=[lamp])
    publish(publisher, ("consent", revocation), ("purchases", order))
    processed(outputs, revocation)
    wait_state(
        worker, bob.customer, lambda s: "lighting" in s["records"]["recency"]["last_purchase"]
    )
    assert datetime.now(UTC) < due, "setup took longer than the lead: the test proves nothing"

    outputs.poll(1.0)  # held: nothing of the three triggers is published before it is due
    for trigger in (revoked, bought, kept):
        assert not records_of(outputs, trigger, "actions"), trigger["event_id"]
        assert not records_of(outputs, trigger, "suppressions"), trigger["event_id"]

    def ended(got: list) -> bool:
        return all(
            records_of(outputs, t, "actions") or records_of(outputs, t, "suppressions")
            for t in (revoked, bought, kept)
        )

    outputs.wait_for(ended, timeout=(due - datetime.now(UTC)).total_seconds() + 30)
    outputs.poll(3.0)  # anything that would follow a first release

    [action] = records_of(outputs, kept, "actions")
    assert action.value["decision_id"] == decision_id(kept["event_id"], ACTION)
    assert action.value["send_after"] is None and action.value["held_at"] is not None
    assert datetime.fromisoformat(action.value["decided_at"]) >= due
    assert len(records_of(outputs, kept, "actions.email")) == 1
    assert not records_of(outputs, kept, "suppressions")

    for trigger, reason in ((revoked, "consent"), (bought, "purchase_cooldown")):
        assert not records_of(outputs, trigger, "actions"), trigger["event_id"]
        assert not records_of(outputs, trigger, "actions.email"), trigger["event_id"]
        [withdrawn] = records_of(outputs, trigger, "suppressions")
        assert withdrawn.value["decision_id"] == decision_id(trigger["event_id"], ACTION)
        assert withdrawn.value["reasons"] == [reason]
        assert datetime.fromisoformat(withdrawn.value["decided_at"]) >= due
    for trigger in (revoked, bought, kept):  # gone from state once released
        customer = trigger["story"].customer
        wait_state(worker, customer, lambda s: not s["records"]["holds"].get("pending"))


def test_a_hold_survives_kill_9_and_is_released_exactly_once(workers: Workers) -> None:
    first = workers.start(env=ENV)
    publisher = workers.publisher(first)
    outputs = workers.reader(first, OUTPUTS)
    quiet, due = quiet_until_soon()
    trigger = hold(publisher, first, "dan", quiet)
    first.kill()  # kill -9 with the action held and not yet due
    assert datetime.now(UTC) < due
    second = workers.start(prefix=first.prefix, data_dir=first.data_dir, env=ENV)
    did = decision_id(trigger["event_id"], ACTION)
    timeout = max(0.0, (due - datetime.now(UTC)).total_seconds()) + 30
    outputs.wait_for(lambda _: records_of(outputs, trigger, "actions"), timeout=timeout)
    time.sleep(3)
    outputs.poll(2.0)  # a second release would have arrived by now
    [action] = records_of(outputs, trigger, "actions")
    assert action.value["decision_id"] == did
    assert datetime.fromisoformat(action.value["decided_at"]) >= due
    assert len(records_of(outputs, trigger, "actions.email")) == 1
    assert not records_of(outputs, trigger, "suppressions")
    customer = trigger["story"].customer
    wait_state(second, customer, lambda s: not s["records"]["holds"].get("pending"))
    assert "Traceback" not in second.tail(400), second.tail(80)
