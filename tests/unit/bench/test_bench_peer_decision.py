"""The peers' minimal decision (bench/peers/decision.py): consent, the 24 h
cap, the 7-day category cooldown, and what the latency reader needs."""

from __future__ import annotations

from bench.peers.decision import CAP_SECONDS, COOLDOWN_SECONDS, decide

NOW = 1_800_000_000.0


def consent(channel: str, status: str, purpose: str = "marketing") -> dict:
    return {"type": "consent", "channel": channel, "purpose": purpose, "status": status}


def view(event_id: str = "v1", category: str | None = "garden") -> dict:
    return {"type": "product_view", "event_id": event_id, "category": category,
            "ts": "2027-01-15T08:00:00.000Z"}  # fmt: skip


def run(events: list[dict], now: float = NOW, state: dict | None = None) -> tuple[dict, list]:
    decisions = []
    for event in events:
        state, decision = decide(state, event, now)
        if decision is not None:
            decisions.append(decision)
    return state, decisions


def test_no_consent_suppresses_and_a_grant_allows_an_action_on_the_first_channel() -> None:
    _, [first] = run([view()])
    assert (first["kind"], first["reason"]) == ("suppression", "consent")
    state, [action] = run([consent("sms", "granted"), consent("push", "granted"), view()])
    assert (action["kind"], action["channel"]) == ("action", "push")
    assert action["trigger_event_id"] == "v1" and action["trigger_ts"] == view()["ts"]
    assert state["contact"] == NOW


def test_revocation_of_the_only_channel_suppresses_and_other_purposes_do_not_count() -> None:
    _, [decision] = run([consent("all", "granted"), consent("all", "revoked"), view()])
    assert decision["reason"] == "consent"
    _, [decision] = run([consent("email", "granted", purpose="profiling"), view()])
    assert decision["reason"] == "consent"
    _, [decision] = run([consent("email", "granted"), consent("email", "pending"), view()])
    assert decision["reason"] == "consent"


def test_one_action_per_24_hours() -> None:
    state, [action, capped] = run([consent("all", "granted"), view("a"), view("b", "kitchen")])
    assert action["kind"] == "action"
    assert (capped["kind"], capped["reason"]) == ("suppression", "contact_cap")
    _, [later] = run([view("c", "kitchen")], now=NOW + CAP_SECONDS, state=state)
    assert later["kind"] == "action"


def test_a_purchase_cools_its_category_for_seven_days_only() -> None:
    bought = {"type": "purchase", "items": [{"category": "garden", "price": 3.0}]}
    state, [cooled, other] = run([consent("all", "granted"), bought, view("a"), view("b", "tools")])
    assert cooled["reason"] == "category_cooldown" and other["kind"] == "action"
    state["contact"] = None  # the tools action aside, only the cooldown is left
    _, [after] = run([view("c")], now=NOW + COOLDOWN_SECONDS, state=state)
    assert after["kind"] == "action"


def test_only_triggers_decide_and_state_is_not_modified_in_place() -> None:
    state, decisions = run([consent("all", "granted")])
    before = {**state, "consent": list(state["consent"])}
    for event in ({"type": "add_to_cart"}, {"type": "delivered"}, {"type": "identify"}):
        new, decision = decide(state, event, NOW)
        assert decision is None and new == state
    decide(state, view(), NOW)
    assert state == before and decisions == []
