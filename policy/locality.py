"""The person's own clock: which time zone their quiet hours are read in.

A New York shopper must not get an email at 02:00 New York time because the
policy's default zone is Berlin. So the zone is, in order of trust:

1. `stated`: what the person told us (a preferences event's `time_zone`, or
   the zone of the quiet hours they set);
2. `device`: the zone their device reported on a clickstream event;
3. `inferred`: from the hours at which they browse (while profiling is
   allowed). Nobody browses in their sleep, so the middle of the longest
   quiet stretch of their day is taken as 03:30 local, which fixes a
   whole-hour UTC offset;
4. `policy`: the policy's default zone, only when nothing is known.

The activity record is 24 one-byte counters of event-time UTC hours: bounded,
and no timestamps are kept.
"""

from __future__ import annotations

from typing import Literal

from nudge.policy.clock import HOUR
from nudge.policy.state import Profile

ZoneSource = Literal["stated", "device", "inferred", "policy"]

HOURS = 24
#: Events, over at least MIN_ACTIVE_HOURS distinct hours, before activity speaks.
MIN_EVENTS = 12
MIN_ACTIVE_HOURS = 4
#: Hours in a window when looking for the quietest part of the day, and the
#: local time the middle of a night falls on.
QUIET_WINDOW = 5
NIGHT_CENTRE_LOCAL = 3.5
#: Counters are halved when one reaches this, so old habits fade.
COUNTER_LIMIT = 255


def observe_activity(profile: Profile, ts: float, device_zone: str | None) -> None:
    """Count one browsing event at UTC time `ts`. Only called while profiling
    is allowed: the hours someone is active are behaviour, not a statement."""
    counts = bytearray(profile.active_hours or bytes(HOURS))
    hour = int(ts // HOUR) % HOURS
    if counts[hour] >= COUNTER_LIMIT:
        counts = bytearray(c // 2 for c in counts)
    counts[hour] += 1
    profile.active_hours = bytes(counts)
    if device_zone:
        profile.device_zone = device_zone


def merge_clocks(target: Profile, source: Profile) -> None:
    """An anonymous visitor's clock folded into the customer's: zones the
    customer lacks, and the activity of both."""
    target.time_zone = target.time_zone or source.time_zone
    target.device_zone = target.device_zone or source.device_zone
    if not source.active_hours:
        return
    mine = target.active_hours or bytes(HOURS)
    total = [a + b for a, b in zip(mine, source.active_hours, strict=True)]
    while max(total) > COUNTER_LIMIT:
        total = [count // 2 for count in total]
    target.active_hours = bytes(total)


def inferred_offset_hours(active_hours: bytes) -> int | None:
    """The whole-hour UTC offset (-11..+12) that centres the person's longest
    quiet stretch on 03:30 local; None until there is enough evidence.

    The stretch is the longest run of QUIET_WINDOW-hour windows with the least
    activity, so one late-night visit does not move someone's night."""
    if len(active_hours) != HOURS or sum(active_hours) < MIN_EVENTS:
        return None
    if sum(1 for count in active_hours if count) < MIN_ACTIVE_HOURS:
        return None
    sums = [sum(active_hours[(s + i) % HOURS] for i in range(QUIET_WINDOW)) for s in range(HOURS)]
    quietest = min(sums)
    best_start, best_length = 0, 0
    for start in range(HOURS):
        if sums[start] != quietest or sums[(start - 1) % HOURS] == quietest:
            continue  # not the first start of a run
        length = 1
        while length < HOURS and sums[(start + length) % HOURS] == quietest:
            length += 1
        if length > best_length:
            best_start, best_length = start, length
    # The run's windows cover [start, start + length - 1 + QUIET_WINDOW) hours.
    centre_utc = best_start + (best_length - 1 + QUIET_WINDOW) / 2
    offset = round(NIGHT_CENTRE_LOCAL - centre_utc) % HOURS
    return offset - HOURS if offset > 12 else offset


def offset_zone(offset_hours: int) -> str:
    """The IANA fixed-offset zone for a UTC offset (POSIX signs: Etc/GMT+5 is UTC-5)."""
    if offset_hours == 0:
        return "Etc/UTC"
    return f"Etc/GMT{'-' if offset_hours > 0 else '+'}{abs(offset_hours)}"


def person_zone(profile: Profile, default_zone: str) -> tuple[str, ZoneSource]:
    """The zone to read this person's quiet hours in, and where it came from."""
    if profile.time_zone:
        return profile.time_zone, "stated"
    if profile.device_zone:
        return profile.device_zone, "device"
    offset = inferred_offset_hours(profile.active_hours)
    if offset is not None:
        return offset_zone(offset), "inferred"
    return default_zone, "policy"
