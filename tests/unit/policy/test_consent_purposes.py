"""Consent purposes per channel: profiling revoked on one channel is honoured,
and a grant after a global opt-out does what the consent log says it did."""

from __future__ import annotations

from datetime import UTC, datetime

from nudge.policy import rules
from nudge.policy.engine import Engine
from nudge.policy.explain import summarize_state
from nudge.schemas.outputs import Action, ConsentLogEntry
from tests.unit.policy_kit import (
    HOUR,
    Person,
    catalog,
    click,
    consent,
    marketing,
    policy,
)

T = datetime(2026, 3, 2, 11, 0, tzinfo=UTC)
#: Inspiration from what profiling learned: three views of a category.
INSPIRATION = marketing(
    "inspiration",
    channels=["email", "push"],
    category="$event",
    triggers=[{"event": "product_view", "min_category_affinity": 2.5}],
)
#: Not profiling-based: any product view.
PLAIN = marketing("plain", channels=["email"])


def person(*actions: dict) -> Person:
    p = Person(Engine(catalog(*actions), policy()))
    p.opt_in(T - HOUR, "email", "push")
    return p


def views(p: Person, n: int = 4):
    return [p.send(click(p.id, T + i * HOUR, category="lamps")) for i in range(n)]


def test_browsing_is_not_profiled_once_web_profiling_is_revoked() -> None:
    p = person(INSPIRATION)
    p.send(consent(p.id, T - HOUR, "web", "revoked", "profiling"))
    outcomes = views(p)
    assert p.state.recency.affinity == {}
    assert p.state.recency.recent_views == []
    assert p.state.profile.active_hours == b""
    assert not any(isinstance(o.decision, Action) for o in outcomes)


def test_what_profiling_learned_is_not_used_on_a_channel_it_was_revoked_for() -> None:
    p = person(INSPIRATION)
    p.send(consent(p.id, T - HOUR, "email", "revoked", "profiling"))
    actions = [o.decision for o in views(p) if isinstance(o.decision, Action)]
    assert actions, "inspiration should still go out on push"
    assert {a.channel for a in actions} == {"push"}


def test_profiling_revoked_on_a_channel_does_not_stop_other_messages_on_it() -> None:
    p = person(PLAIN)
    p.send(consent(p.id, T - HOUR, "email", "revoked", "profiling"))
    assert p.act(click(p.id, T)).channel == "email"


def test_a_channel_grant_under_a_global_opt_out_is_logged_as_not_applied() -> None:
    p = person(PLAIN)
    p.send(consent(p.id, T, "all", "revoked"))
    outcome = p.send(consent(p.id, T + HOUR, "email", "granted"))
    (log,) = [r for r in outcome.records if isinstance(r, ConsentLogEntry)]
    assert (log.applied, log.not_applied) == (False, "global_opt_out")
    assert "consent" in p.suppress(click(p.id, T + 2 * HOUR)).reasons
    summary = summarize_state(p.state, p.id, p.engine.policy, T + 2 * HOUR)
    assert not any(summary["marketing_allowed"].values())
    # Granting `all` again lifts it, and that is logged as applied.
    outcome = p.send(consent(p.id, T + 3 * HOUR, "all", "granted"))
    (log,) = [r for r in outcome.records if isinstance(r, ConsentLogEntry)]
    assert (log.applied, log.not_applied) == (True, None)
    assert p.act(click(p.id, T + 4 * HOUR)).channel == "email"


def test_an_older_change_arriving_late_says_why_it_did_not_apply() -> None:
    p = person(PLAIN)
    p.send(consent(p.id, T, "email", "revoked"))
    outcome = p.send(consent(p.id, T - HOUR, "email", "granted"), now=T + HOUR)
    (log,) = [r for r in outcome.records if isinstance(r, ConsentLogEntry)]
    assert (log.applied, log.not_applied) == (False, "older_than_current")
    assert not rules.marketing_allowed(p.state, "email")
