"""The right channel and the right hour per person (issue #17, point 2):
reachable channels only, learning only from known outcomes, no alternation
without feedback, and marketing held to the person's best hours, re-checked
when released."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from nudge.policy import engagement
from nudge.policy.engine import BEST_HOUR, Engine
from nudge.policy.explain import summarize_state
from nudge.schemas.outputs import Action, Suppression
from tests.unit.policy_kit import (
    DAY,
    HOUR,
    T0,
    Person,
    catalog,
    click,
    consent,
    feedback,
    marketing,
    policy,
    preferences,
    purchase,
    transactional,
)

MINUTE = timedelta(minutes=1)


def engine(*actions: dict, **policy_fields: object) -> Engine:
    return Engine(catalog(*actions), policy(**policy_fields))


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


# -- reachable channels ----------------------------------------------------------------


def test_a_receipt_never_goes_by_sms_to_someone_with_no_phone_on_file() -> None:
    receipt = transactional(channels=["sms", "email"])
    p = Person(engine(receipt, channel_order=["sms", "email"]))
    assert p.act(purchase(p.id, T0)).channel == "email"  # the assumed address, not sms
    p.send(preferences(p.id, T0 + MINUTE, reachable_channels=["sms"]))
    assert p.act(purchase(p.id, T0 + 2 * MINUTE)).channel == "sms"
    # Contact details stated without email: email is no longer assumed.
    q = Person(engine(transactional(channels=["email"])), "c-2")
    q.send(preferences(q.id, T0, reachable_channels=["push"]))
    s = q.suppress(purchase(q.id, T0 + MINUTE))
    assert s.candidates[0].channel_reasons == {"email": ["no_channel"]}


def test_with_nothing_assumed_nobody_without_details_is_messaged() -> None:
    p = Person(engine(transactional(channels=["email", "sms"]), assumed_reachable=[]))
    s = p.suppress(purchase(p.id, T0))
    assert s.reasons == ["no_channel"]
    # A marketing grant on a channel means an address was given for it.
    p.send(consent(p.id, T0 + MINUTE, "sms"))
    assert p.act(purchase(p.id, T0 + 2 * MINUTE)).channel == "sms"


def test_a_bounce_forgets_the_address_and_a_grant_for_all_gives_none() -> None:
    p = Person(engine(marketing(channels=["email", "sms"]), assumed_reachable=[]))
    p.send(consent(p.id, T0, "all"))
    assert p.suppress(click(p.id, T0 + MINUTE)).reasons == ["no_channel"]
    p.send(consent(p.id, T0 + 2 * MINUTE, "sms"))
    assert p.state.profile.reachable == ["sms"]
    p.send(feedback(p.id, T0 + 3 * MINUTE, "bounced", "sms"))
    assert p.state.profile.reachable == []


# -- learning the channel ----------------------------------------------------------------


def test_no_feedback_means_the_same_channel_every_time() -> None:
    """Sending alone never lowers a channel's rate: receipts and marketing
    stay on the policy's first reachable channel, never alternating."""
    actions = (marketing(channels=["email", "push"]), transactional(channels=["email", "sms"]))
    p = Person(engine(*actions))
    p.opt_in(T0)  # grants on every channel: addresses for email, sms and push
    channels = []
    for day in range(8):
        at = T0 + day * DAY
        channels.append(p.act(click(p.id, at)).channel)
        channels.append(p.act(purchase(p.id, at + HOUR)).channel)
    assert set(channels) == {"email"}
    assert p.state.fatigue.outcomes == b""  # nothing learned from sending


def test_only_known_outcomes_count_and_each_message_once() -> None:
    p = Person(engine(marketing(channels=["email", "push"])))
    p.opt_in(T0)
    action = p.act(click(p.id, T0))
    did = action.decision_id
    p.send(feedback(p.id, T0 + MINUTE, "delivered", "email", decision_id=did))
    assert engagement.counts(p.state)[0][0] == (0, 0)  # delivered: outcome still unknown
    for kind in ("opened", "clicked", "converted"):
        p.send(feedback(p.id, T0 + 2 * MINUTE, kind, "email", decision_id=did))
    assert engagement.counts(p.state)[0][0] == (1, 1)  # one message, one response
    other = p.act(click(p.id, T0 + DAY)).decision_id
    p.send(feedback(p.id, T0 + DAY + HOUR, "ignored", "email", decision_id=other))
    assert engagement.counts(p.state)[0][0] == (2, 1)


def test_the_channel_that_gets_responses_wins() -> None:
    p = Person(engine(marketing(channels=["email", "push"]), engagement={"send_hour": False}))
    p.opt_in(T0)
    for day in range(3):  # email is ignored, push answered
        did = p.act(click(p.id, T0 + day * DAY)).decision_id
        p.send(feedback(p.id, T0 + day * DAY + HOUR, "ignored", "email", decision_id=did))
        p.send(feedback(p.id, T0 + day * DAY + HOUR, "clicked", "push"))
    action = p.act(click(p.id, T0 + 3 * DAY))
    assert action.channel == "push"
    assert any(r.startswith("channel push: best engagement") for r in action.reasons)


def test_a_receipt_open_teaches_nothing_about_marketing() -> None:
    p = Person(engine(transactional(channels=["email"])))
    receipt = p.act(purchase(p.id, T0))
    p.send(feedback(p.id, T0 + MINUTE, "opened", "email", decision_id=receipt.decision_id))
    assert p.state.fatigue.outcomes == b""


# -- the best hour -----------------------------------------------------------------------


def _evening_person(**policy_fields: object) -> Person:
    """Ignores messages at 11:00 UTC, clicks those at 17:00, three days running:
    six known outcomes, the policy's minimum for using hours."""
    p = Person(
        engine(
            marketing(channels=["email"], expiry_hours=24),
            transactional(channels=["email"]),
            **policy_fields,
        )
    )
    p.opt_in(T0 - DAY, "email")
    for day in range(3):
        morning = p.act(click(p.id, T0 + day * DAY))
        assert morning.send_after is None
        p.send(feedback(p.id, T0 + day * DAY + HOUR, "ignored", decision_id=morning.decision_id))
        evening = p.act(click(p.id, T0 + day * DAY + 6 * HOUR))
        assert evening.send_after is None
        p.send(
            feedback(p.id, T0 + day * DAY + 7 * HOUR, "clicked", decision_id=evening.decision_id)
        )
    return p


def test_marketing_is_held_to_the_best_hour_and_released_then() -> None:
    p = _evening_person()
    at = T0 + 3 * DAY  # 11:00 UTC, the person's worst block
    held = p.hold(click(p.id, at))
    assert held.send_after == utc(2026, 3, 5, 16, 0)  # the 16:00-20:00 block starts
    assert any(r.startswith(BEST_HOUR) for r in held.reasons)
    assert p.release(utc(2026, 3, 5, 15, 59)) == []
    [released] = p.release(utc(2026, 3, 5, 16, 0))
    assert isinstance(released, Action) and released.send_after is None
    assert released.decision_id == held.decision_id
    assert any("(best hour); consent" in r for r in released.reasons)
    rates = summarize_state(p.state, p.id, p.engine.policy, at)["engagement"]
    assert rates["local_hour_rates"]["16-20"] > rates["local_hour_rates"]["08-12"]


def test_a_held_message_is_rechecked_when_its_best_hour_comes() -> None:
    p = _evening_person()
    held = p.hold(click(p.id, T0 + 3 * DAY))
    p.send(consent(p.id, T0 + 3 * DAY + HOUR, "email", "revoked"))
    [withdrawn] = p.release(utc(2026, 3, 5, 16, 0))
    assert isinstance(withdrawn, Suppression)
    assert withdrawn.decision_id == held.decision_id and withdrawn.reasons == ["consent"]


def test_receipts_are_never_delayed_for_the_best_hour() -> None:
    p = _evening_person()
    receipt = p.act(purchase(p.id, T0 + 3 * DAY))
    assert receipt.message_class == "transactional" and receipt.send_after is None


def test_the_best_hour_waits_no_longer_than_allowed_and_can_be_off() -> None:
    # 16:00 is 5 h away; within 4 h, the unknown 12:00-16:00 block (shrunk to
    # the person's average) still beats the morning they ignore.
    short = _evening_person(engagement={"max_delay_hours": 4})
    assert short.hold(click(short.id, T0 + 3 * DAY)).send_after == utc(2026, 3, 5, 12, 0)
    soon = _evening_person(engagement={"max_delay_hours": 0.5})
    assert soon.act(click(soon.id, T0 + 3 * DAY)).send_after is None
    off = _evening_person(engagement={"send_hour": False})
    assert off.act(click(off.id, T0 + 3 * DAY)).send_after is None


def test_no_best_hour_once_profiling_is_revoked() -> None:
    p = _evening_person()
    p.send(consent(p.id, T0 + 3 * DAY - HOUR, "all", "revoked", "profiling"))
    assert p.act(click(p.id, T0 + 3 * DAY)).send_after is None


def test_the_best_hour_is_never_inside_quiet_hours() -> None:
    """Quiet hours 12:00-17:00 UTC cover the start of the best block: the
    message is held to the first allowed moment inside it, 17:00."""
    p = _evening_person()
    p.send(
        preferences(
            p.id, T0 + 3 * DAY - HOUR, quiet_hours={"start": "12:00", "end": "17:00", "tz": "UTC"}
        )
    )
    held = p.hold(click(p.id, T0 + 3 * DAY))
    assert held.send_after == utc(2026, 3, 5, 17, 0)
