"""The person's own clock: quiet hours are read in their zone, never Berlin by default."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from nudge.policy import locality, rules
from nudge.policy.engine import Engine
from nudge.policy.state import Profile
from nudge.schemas.codec import InvalidEvent
from nudge.schemas.outputs import Action
from tests.unit.policy_kit import (
    Person,
    catalog,
    click,
    consent,
    decode,
    marketing,
    policy,
    preferences,
)

NEW_YORK, TOKYO, BERLIN = (ZoneInfo(z) for z in ("America/New_York", "Asia/Tokyo", "Europe/Berlin"))
#: The shipped policy's default: 21:00-08:00 in Berlin.
BERLIN_NIGHT = {"start": "21:00", "end": "08:00", "tz": "Europe/Berlin"}


def person() -> Person:
    engine = Engine(catalog(marketing()), policy(quiet_hours=BERLIN_NIGHT))
    p = Person(engine)
    p.opt_in(datetime(2026, 1, 1, tzinfo=UTC), "email")
    return p


def quiet_until(p: Person, at: datetime) -> datetime:
    """When a message decided at `at` may reach the person (`at` itself if not quiet)."""
    window = rules.quiet_window(p.state, p.engine.policy.quiet_hours)
    return datetime.fromtimestamp(rules.quiet_hours_end(window, at.timestamp()), UTC)


def local(zone: ZoneInfo, *args: int) -> datetime:
    return datetime(*args, tzinfo=zone).astimezone(UTC)


@pytest.mark.parametrize(
    ("day", "why"),
    [((2026, 1, 14), "winter: EST"), ((2026, 3, 16), "US on EDT, Berlin still on CET")],
)
def test_a_new_yorker_at_4pm_is_not_held_to_the_berlin_night(day: tuple, why: str) -> None:
    p = person()
    p.send(preferences(p.id, datetime(2026, 1, 2, tzinfo=UTC), time_zone="America/New_York"))
    afternoon = local(NEW_YORK, *day, 16, 0)
    assert afternoon.astimezone(BERLIN).hour >= 21, "the old bug: Berlin's night"
    assert quiet_until(p, afternoon) == afternoon, why
    decision = p.send(click(p.id, afternoon)).decision
    assert isinstance(decision, Action)
    assert "deferred to the end of quiet hours" not in decision.reasons


@pytest.mark.parametrize(
    ("evening", "morning"),
    [
        # The night the US springs forward (2026-03-08 02:00 EST -> 03:00 EDT).
        ((2026, 3, 7, 23, 30), (2026, 3, 8, 8, 0)),
        # The night it falls back (2026-11-01 02:00 EDT -> 01:00 EST).
        ((2026, 10, 31, 23, 30), (2026, 11, 1, 8, 0)),
    ],
)
def test_a_new_yorkers_night_ends_at_8am_new_york_across_dst(evening, morning) -> None:
    p = person()
    p.send(preferences(p.id, datetime(2026, 1, 2, tzinfo=UTC), time_zone="America/New_York"))
    assert quiet_until(p, local(NEW_YORK, *evening)) == local(NEW_YORK, *morning)


def test_tokyo_has_no_dst_and_its_own_night() -> None:
    p = person()
    p.send(preferences(p.id, datetime(2026, 1, 2, tzinfo=UTC), time_zone="Asia/Tokyo"))
    for month in (1, 7):
        early = local(TOKYO, 2026, month, 10, 7, 30)
        assert quiet_until(p, early) == local(TOKYO, 2026, month, 10, 8, 0)
        noon = local(TOKYO, 2026, month, 10, 12, 0)  # 04:00 or 05:00 in Berlin: night there
        assert quiet_until(p, noon) == noon


def test_nothing_known_falls_back_to_the_policy_zone_across_berlins_dst_end() -> None:
    p = person()
    assert locality.person_zone(p.state.profile, "Europe/Berlin") == ("Europe/Berlin", "policy")
    # 2026-10-25 03:00 CEST -> 02:00 CET: that night is 12 hours of wall time, 13 real.
    late = local(BERLIN, 2026, 10, 24, 21, 0)
    ends = quiet_until(p, late)
    assert ends == local(BERLIN, 2026, 10, 25, 8, 0)
    assert ends - late == timedelta(hours=12)


def test_a_device_zone_from_clickstream_is_used_when_nothing_is_stated() -> None:
    p = person()
    p.send(click(p.id, datetime(2026, 2, 1, 3, tzinfo=UTC), time_zone="Asia/Tokyo"))
    assert locality.person_zone(p.state.profile, "Europe/Berlin") == ("Asia/Tokyo", "device")
    p.send(preferences(p.id, datetime(2026, 2, 2, tzinfo=UTC), time_zone="America/New_York"))
    assert locality.person_zone(p.state.profile, "Europe/Berlin") == ("America/New_York", "stated")


def test_the_zone_of_a_stated_quiet_window_is_the_persons_zone() -> None:
    p = person()
    window = {"start": "22:00", "end": "07:00", "tz": "Asia/Tokyo"}
    p.send(preferences(p.id, datetime(2026, 2, 2, tzinfo=UTC), quiet_hours=window))
    assert locality.person_zone(p.state.profile, "Europe/Berlin") == ("Asia/Tokyo", "stated")
    assert quiet_until(p, local(TOKYO, 2026, 2, 10, 6, 0)) == local(TOKYO, 2026, 2, 10, 7, 0)


def browse_new_york_days(p: Person, days: int = 4) -> None:
    """Someone who browses between 09:00 and 22:00 New York time, saying nothing."""
    for day in range(days):
        for hour in (9, 12, 13, 18, 20, 21):
            p.send(click(p.id, local(NEW_YORK, 2026, 2, 2 + day, hour, 15), kind="page_view"))


def test_the_zone_is_inferred_from_the_hours_someone_is_active() -> None:
    p = person()
    browse_new_york_days(p)
    zone, source = locality.person_zone(p.state.profile, "Europe/Berlin")
    assert source == "inferred"
    offset = datetime(2026, 2, 10, tzinfo=ZoneInfo(zone)).utcoffset()
    assert offset in (timedelta(hours=-5), timedelta(hours=-4), timedelta(hours=-6))
    # 16:00 in New York (22:00 in Berlin): not their night.
    afternoon = local(NEW_YORK, 2026, 2, 10, 16, 0)
    assert quiet_until(p, afternoon) == afternoon
    # 02:00 in New York: their night.
    assert quiet_until(p, local(NEW_YORK, 2026, 2, 10, 2, 0)) > local(NEW_YORK, 2026, 2, 10, 2, 0)


def test_too_little_activity_infers_nothing() -> None:
    p = person()
    for hour in (9, 12, 18):
        p.send(click(p.id, local(NEW_YORK, 2026, 2, 2, hour, 0), kind="page_view"))
    assert locality.person_zone(p.state.profile, "Europe/Berlin")[1] == "policy"


def test_no_inference_once_profiling_is_revoked() -> None:
    p = person()
    p.send(consent(p.id, datetime(2026, 2, 1, tzinfo=UTC), "all", "revoked", "profiling"))
    browse_new_york_days(p)
    assert p.state.profile.active_hours == b""
    assert locality.person_zone(p.state.profile, "Europe/Berlin")[1] == "policy"


@pytest.mark.parametrize("offset", [-11, -5, -3, 0, 1, 5, 9, 12])
def test_inference_recovers_any_offset_from_a_daytime_pattern(offset: int) -> None:
    profile = Profile()
    for day in range(3):
        for local_hour in range(8, 23):
            utc_hour = (local_hour - offset) % 24
            locality.observe_activity(profile, day * 86400 + utc_hour * 3600.0, None)
    assert locality.inferred_offset_hours(profile.active_hours) == offset


def test_activity_counters_stay_bounded() -> None:
    profile = Profile()
    for _ in range(1000):
        locality.observe_activity(profile, 3600.0, None)
    assert len(profile.active_hours) == 24
    assert max(profile.active_hours) <= locality.COUNTER_LIMIT


def test_merging_a_visitor_keeps_the_customers_stated_zone_and_adds_activity() -> None:
    mine, theirs = Profile(time_zone="Asia/Tokyo"), Profile(device_zone="Europe/Berlin")
    for hour in range(24):
        locality.observe_activity(theirs, hour * 3600.0, None)
    locality.merge_clocks(mine, theirs)
    assert (mine.time_zone, mine.device_zone) == ("Asia/Tokyo", "Europe/Berlin")
    assert sum(mine.active_hours) == 24


def test_an_unknown_zone_is_rejected_by_the_contract() -> None:
    at = datetime(2026, 2, 1, tzinfo=UTC)
    for event in (
        preferences("c-1", at, time_zone="Mars/Olympus_Mons"),
        click("c-1", at, time_zone="Nowhere/Land"),
    ):
        with pytest.raises(InvalidEvent) as caught:
            decode(event, at + timedelta(seconds=1))
        assert caught.value.reason == "bad_time_zone"
