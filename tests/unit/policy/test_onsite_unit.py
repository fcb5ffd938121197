"""On-site decisions: web-only, the usual rules, impressions recorded once."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from nudge.policy import onsite
from nudge.policy.engine import Engine
from nudge.policy.inmemory import InMemoryWorker
from nudge.policy.processor import Result
from nudge.schemas.codec import InvalidEvent
from nudge.schemas.outputs import Action, Suppression
from tests.unit.policy_kit import T0, catalog, click, consent, marketing, policy

CUSTOMER = "c-1"


def feed(worker: InMemoryWorker, kind: str, key: str, value: bytes, now: datetime) -> Result:
    """One message through the worker's loop (its tables of bytes)."""
    (result,) = worker.feed(kind, key.encode(), value, now)
    return result


def send(worker: InMemoryWorker, kind: str, event: dict, now: datetime | None = None) -> Result:
    at = now or datetime.fromisoformat(event["ts"])
    return feed(worker, kind, event["customer_id"], json.dumps(event).encode(), at)


def engine_for(*actions: dict) -> Engine:
    return Engine(catalog(*actions), policy())


def request(**fields) -> onsite.OnsiteRequest:
    body = {"customer_id": CUSTOMER, "page": "/p/lamp", "product_id": "lamp-1", **fields}
    return onsite.decode_request(json.dumps(body).encode())


def consented(engine: Engine, *channels: str) -> InMemoryWorker:
    worker = InMemoryWorker(engine)
    for channel in channels:
        send(worker, "consent", consent(CUSTOMER, T0 - timedelta(hours=1), channel))
    return worker


def test_the_decision_is_restricted_to_web_even_when_email_is_preferred() -> None:
    engine = engine_for(marketing("ideas", channels=["email", "web"]))
    worker = consented(engine, "email", "web")
    decision, impression = onsite.decide(engine, worker.state(CUSTOMER), request(), T0, "onsite-1")
    assert isinstance(decision, Action)
    assert (decision.action_id, decision.channel) == ("ideas", "web")
    assert impression == onsite.Impression(
        decision_id=decision.decision_id, customer_id=CUSTOMER, action_id="ideas", at=T0
    )
    assert onsite.response_body(decision)["content"]["decision_id"] == decision.decision_id


def test_actions_without_web_are_no_candidates() -> None:
    engine = engine_for(marketing("mail_only", channels=["email"]))
    worker = consented(engine, "email", "web")
    decision, impression = onsite.decide(engine, worker.state(CUSTOMER), request(), T0, "onsite-1")
    assert decision is None and impression is None
    assert onsite.response_body(decision) == {"content": None, "reasons": []}


def test_without_web_consent_the_answer_is_a_suppression_naming_consent() -> None:
    engine = engine_for(marketing("ideas", channels=["email", "web"]))
    worker = consented(engine, "email")
    decision, impression = onsite.decide(engine, worker.state(CUSTOMER), request(), T0, "onsite-1")
    assert isinstance(decision, Suppression) and impression is None
    body = onsite.response_body(decision)
    assert body["content"] is None and body["reasons"] == ["consent"]


def test_a_recorded_impression_counts_once_and_then_holds_the_cooldown() -> None:
    engine = engine_for(marketing("ideas", channels=["web"], cooldown_hours=6))
    worker = consented(engine, "web")
    _, impression = onsite.decide(engine, worker.state(CUSTOMER), request(), T0, "onsite-1")
    assert impression is not None
    value = onsite.encode_impression(impression)
    first = feed(worker, onsite.IMPRESSION_KIND, CUSTOMER, value, T0 + timedelta(seconds=1))
    again = feed(worker, onsite.IMPRESSION_KIND, CUSTOMER, value, T0 + timedelta(seconds=2))
    assert (first.duplicate, again.duplicate) == (False, True)
    contacts = worker.state(CUSTOMER).fatigue.contacts
    assert [(c.channel, c.action_id) for c in contacts] == [("web", "ideas")]
    later = T0 + timedelta(minutes=5)
    decision, impression = onsite.decide(
        engine, worker.state(CUSTOMER), request(), later, "onsite-2"
    )
    assert isinstance(decision, Suppression) and impression is None
    assert decision.reasons == ["action_cooldown"]


def test_an_impression_under_another_key_is_deadlettered() -> None:
    engine = engine_for(marketing("ideas", channels=["web"]))
    worker = consented(engine, "web")
    impression = onsite.Impression(decision_id="d1", customer_id=CUSTOMER, action_id="ideas", at=T0)
    value = onsite.encode_impression(impression)
    assert feed(worker, onsite.IMPRESSION_KIND, "c-2", value, T0).invalid_reason == "key_mismatch"
    assert feed(worker, onsite.IMPRESSION_KIND, CUSTOMER, b"{", T0).invalid_reason == "malformed"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b'{"page": "/"}', "missing_subject"),
        (b'{"customer_id": "c-1"}', "schema_violation"),
        (b'{"customer_id": "c 1", "page": "/"}', "schema_violation"),
        (b"{", "malformed"),
    ],
)
def test_invalid_requests_name_their_reason(body: bytes, reason: str) -> None:
    with pytest.raises(InvalidEvent) as error:
        onsite.decode_request(body)
    assert error.value.reason == reason


def test_the_event_clock_decides_as_of_the_event_time() -> None:
    engine = engine_for(marketing("ideas"))
    view = click(CUSTOMER, T0, event_id="v-1")
    late = T0 + timedelta(days=2)  # past the expiry on the wall clock
    on_wall = send(consented(engine, "email"), "clickstream", view, late)
    on_event = InMemoryWorker(engine, event_clock=True)
    send(on_event, "consent", consent(CUSTOMER, T0 - timedelta(hours=1), "email"), late)
    decided = send(on_event, "clickstream", view, late).outcome.decision
    assert on_wall.outcome.decision.reasons == ["expired"]
    assert isinstance(decided, Action)
    assert decided.decided_at == T0.astimezone(UTC)
