"""What messages cost the people who get them, counted from an event log.

Why a module of its own: these counts are the harms a marketer must see next
to the conversions, and they have to be checkable on a hand-built log, without
running a simulation. Two counts:

- local night: marketing messages delivered between 22:00 and 07:00 on the
  person's own clock (their time zone, not the shop's). Web content is shown
  only while the person is on the site, so it wakes nobody: it is counted per
  channel but not in the headline figure.
- just bought: promotions (marketing messages naming a category) delivered
  within `just_bought_days` after the same person bought that category. The
  check is made at the end, against every purchase in the log, because a
  purchase can happen between the decision and the delivery of a held action.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Mapping
from datetime import datetime, tzinfo
from typing import Any

from nudge.lab.simulation import delivery_time
from nudge.policy.clock import DAY

#: Local hours of the night: from NIGHT_FROM until NIGHT_UNTIL the next morning.
NIGHT_FROM, NIGHT_UNTIL = 22, 7
#: Channels that reach the person off the site, and so can disturb them at night.
OFF_SITE = ("email", "sms", "push")
JUST_BOUGHT_DAYS = 7


def at_night(t: float, zone: tzinfo) -> bool:
    """Whether epoch time `t` falls in the night on a clock in `zone`."""
    hour = datetime.fromtimestamp(t, zone).hour
    return hour >= NIGHT_FROM or hour < NIGHT_UNTIL


class HarmCounter:
    """Counts local-night messages and just-bought promotions over a log fed in
    order: `purchase(event)` for each purchase, `action(action)` for each action,
    then `local_night`, `local_night_by_channel` and `just_bought()`."""

    def __init__(
        self, zones: Mapping[str, tzinfo], just_bought_days: float = JUST_BOUGHT_DAYS
    ) -> None:
        self.zones = zones
        self.window = just_bought_days * DAY
        self.local_night = 0
        self.local_night_by_channel: dict[str, int] = {}
        self._bought: dict[tuple[str, str], list[float]] = {}
        self._promotions: list[tuple[str, str, float]] = []

    def purchase(self, event: dict[str, Any]) -> None:
        at = datetime.fromisoformat(event["ts"]).timestamp()
        customer = event["customer_id"]
        for category in {item["category"] for item in event["items"]}:
            self._bought.setdefault((customer, category), []).append(at)

    def action(self, action: dict[str, Any]) -> None:
        """One action as the `actions` topic carries it; transactional ones are ignored."""
        if action["message_class"] != "marketing":
            return
        at = delivery_time(action)
        customer = action["customer_id"]
        zone = self.zones.get(customer)
        channel = action["channel"]
        if zone is not None and at_night(at, zone):
            by_channel = self.local_night_by_channel
            by_channel[channel] = by_channel.get(channel, 0) + 1
            if channel in OFF_SITE:
                self.local_night += 1
        if action.get("category"):
            self._promotions.append((customer, action["category"], at))

    def just_bought(self) -> int:
        """Promotions delivered within the window after a purchase of their category."""
        for times in self._bought.values():
            times.sort()
        count = 0
        for customer, category, at in self._promotions:
            times = self._bought.get((customer, category))
            if not times:
                continue
            before = bisect_right(times, at)
            if before and at - times[before - 1] < self.window:
                count += 1
        return count
