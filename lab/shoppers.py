"""The simulated shoppers: their hidden archetypes (how often they buy, what
they tolerate, how they respond to a message on each channel at each hour)
and each person's memory of what they bought and were sent.

The archetype is the ground truth the lab knows and nudge never sees; nudge's
own personas (models/personas.py) are learned clusters, judged against it.
"""

from __future__ import annotations

import math
import zoneinfo
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

from nudge.lab.shop import CATEGORIES
from nudge.policy.clock import DAY, MINUTE


@dataclass(frozen=True)
class Archetype:
    """A simulated person's true, hidden type of behaviour: the policies never
    see it, only what it makes people do. Not a persona (models/personas.py):
    those are learned from behaviour, and may or may not find these."""

    name: str
    share: float
    categories: dict[str, float]  # favourite categories, by weight
    sessions_per_week: float
    cart_rate: float  # chance a visit puts something in the cart
    orders_per_year: float  # before the window (history)
    opens: dict[str, float]  # chance a delivered message is seen, per channel
    click_rate: float  # chance a seen, relevant message is clicked
    buy_rate: float  # chance a click on a relevant offer ends in an order
    purifier_share: float  # owners buy air filters every ~90 days
    patience: float  # scales how many contacts a day/week they tolerate
    touchiness: float  # scales the chance of unsubscribing and complaining


ARCHETYPES: tuple[Archetype, ...] = (
    Archetype(
        "bargain_hunter", 0.25,
        {"decor": 3, "kitchen": 3, "storage": 2, "lighting": 2, "bedding": 1, "tools": 1},
        sessions_per_week=2.5, cart_rate=0.08, orders_per_year=6,
        opens={"email": 0.32, "push": 0.12, "sms": 0.85, "web": 0.55},
        click_rate=0.14, buy_rate=0.10, purifier_share=0.10, patience=1.4, touchiness=0.7,
    ),
    Archetype(
        "loyal_homebody", 0.25,
        {"kitchen": 3, "decor": 2, "bedding": 2, "bathroom": 2, "lighting": 1},
        sessions_per_week=1.3, cart_rate=0.13, orders_per_year=5,
        opens={"email": 0.38, "push": 0.08, "sms": 0.90, "web": 0.50},
        click_rate=0.10, buy_rate=0.15, purifier_share=0.30, patience=1.0, touchiness=0.8,
    ),
    Archetype(
        "gardener", 0.20,
        {"garden": 5, "outdoor": 3, "tools": 2},
        sessions_per_week=1.6, cart_rate=0.11, orders_per_year=4,
        opens={"email": 0.30, "push": 0.07, "sms": 0.85, "web": 0.50},
        click_rate=0.12, buy_rate=0.12, purifier_share=0.10, patience=1.0, touchiness=1.0,
    ),
    Archetype(
        "gadget_fan", 0.15,
        {"appliances": 3, "lighting": 2, "air_purifiers": 2, "tools": 2, "kitchen": 1},
        sessions_per_week=2.0, cart_rate=0.09, orders_per_year=4,
        opens={"email": 0.22, "push": 0.16, "sms": 0.85, "web": 0.60},
        click_rate=0.10, buy_rate=0.08, purifier_share=0.45, patience=0.9, touchiness=1.1,
    ),
    Archetype(
        "one_time_buyer", 0.15,
        {},  # one category, drawn per person
        sessions_per_week=0.35, cart_rate=0.07, orders_per_year=1,
        opens={"email": 0.12, "push": 0.04, "sms": 0.80, "web": 0.40},
        click_rate=0.05, buy_rate=0.05, purifier_share=0.08, patience=0.5, touchiness=1.8,
    ),
)  # fmt: skip

# How a message's timing changes (click, buy, irritation) multipliers.
TIMING = {
    "due": (3.0, 4.0, 0.7),  # replenishment due: the air filter reminder that helps
    "cart": (3.0, 3.5, 0.8),  # about the cart they left
    "checkout": (2.0, 2.0, 0.5),  # help while checking out
    "early": (0.8, 0.5, 1.0),  # replenishment, but not due yet
    "normal": (1.0, 1.0, 1.0),
    "just_bought": (0.2, 0.05, 2.5),  # promoting what they bought days ago
}
# The pull of an abandoned cart fades: the "cart" lifts above 1 halve every
# two days after its first item (a week-old cart is almost an ordinary message).
CART_INTENT_HALF_LIFE = 2 * DAY
CHANNEL_NAMES = ("email", "sms", "push", "web")
CHANNEL_IRRITATION = {"email": 1.0, "push": 1.2, "sms": 1.5, "web": 0.3}
CLICK_BY_CHANNEL = {"email": 1.0, "push": 1.2, "sms": 0.5, "web": 0.6}
UNSUBSCRIBE_BASE = {"email": 0.001, "push": 0.002, "sms": 0.004, "web": 0.0003}
INTERRUPTING = ("push", "sms")  # they buzz the phone
IGNORED_AFTER = {"email": 3 * DAY, "push": DAY, "sms": DAY, "web": 30 * MINUTE}
DELIVERY_DELAY = {"email": 20.0, "push": 2.0, "sms": 8.0, "web": 0.5}
DAY_MEMORY = DAY  # annoyance memories: contacts "today" and "this week"
WEEK_MEMORY = 7 * DAY
# Annoyance a (about 1 at the person's tolerance) divides the chance to see a
# message by 1 + 0.25a and to click it by 1 + 0.15a, and multiplies the chance
# to unsubscribe by 1 + a^2: opt-outs climb steeply once contact is way over
# what someone tolerates.
ATTENTION_FATIGUE = 0.25
CLICK_FATIGUE = 0.15
OPT_OUT_GROWTH = 2.0


@dataclass(slots=True)
class PendingOrder:
    """An order the person will place during the current visit anyway."""

    at: float
    order_id: str
    value: float
    attributed: bool = False


@dataclass(slots=True, eq=False)
class Person:
    """One simulated person: traits fixed at birth, plus what changes as they live."""

    index: int
    customer_id: str
    archetype: Archetype
    zone: zoneinfo.ZoneInfo
    interests: dict[str, float]  # category -> weight, strongest = 1
    opens: dict[str, float]
    sleep: tuple[int, int]  # local minutes: asleep from, until
    sessions_per_week: float
    day_tolerance: float  # contacts a day before annoyance reaches 1
    week_tolerance: float
    touchiness: float
    reachable: list[str]
    life: np.random.Generator  # their own behaviour
    luck: np.random.Generator  # reactions to messages
    bad_email: bool = False
    filter_cycle: float = 0.0  # days between air filters; 0: owns no purifier
    filter_due: float = 0.0
    filter_version: int = 0
    identified: bool = False
    logged_in: bool = False
    anonymous_id: str = ""
    consent: dict[str, str] = field(default_factory=dict)  # channel -> marketing status
    last_bought: dict[str, float] = field(default_factory=dict)
    cart: list[dict[str, Any]] = field(default_factory=list)
    cart_version: int = 0
    cart_since: float = 0.0  # when the open cart got its first item
    pending: PendingOrder | None = None
    in_session_until: float = 0.0
    checkout_until: float = 0.0
    day_load: float = 0.0  # decayed contact counts, weighted by irritation
    week_load: float = 0.0
    load_at: float = 0.0

    def timing_lifts(self, timing: str, t: float) -> tuple[float, float, float]:
        """(click, buy, irritation) multipliers of a message of this timing at
        `t`; a cart's pull fades with its age (`CART_INTENT_HALF_LIFE`)."""
        click, buy, irritation = TIMING[timing]
        if timing == "cart":
            fade = 0.5 ** (max(0.0, t - self.cart_since) / CART_INTENT_HALF_LIFE)
            click, buy = 1 + (click - 1) * fade, 1 + (buy - 1) * fade
        return click, buy, irritation

    def subject(self) -> dict[str, str]:
        if self.logged_in:
            return {"customer_id": self.customer_id}
        return {"anonymous_id": self.anonymous_id}

    def annoyance(self, t: float) -> float:
        """~1 when contacts reach what the person tolerates per day or week."""
        self._decay(t)
        return self.day_load / self.day_tolerance + self.week_load / self.week_tolerance

    def annoy(self, t: float, weight: float) -> None:
        self._decay(t)
        self.day_load += weight
        self.week_load += weight

    def _decay(self, t: float) -> None:
        if t > self.load_at:
            elapsed = t - self.load_at
            self.day_load *= math.exp(-elapsed / DAY_MEMORY)
            self.week_load *= math.exp(-elapsed / WEEK_MEMORY)
            self.load_at = t

    def local(self, t: float) -> datetime:
        return datetime.fromtimestamp(t, self.zone)

    def asleep(self, t: float) -> bool:
        local = self.local(t)
        minute = local.hour * 60 + local.minute
        start, end = self.sleep
        return start <= minute < end if start <= end else minute >= start or minute < end

    def awake_at(self, t: float) -> float:
        """`t`, or when the person wakes up if asleep at `t`."""
        while self.asleep(t):
            t += 15 * MINUTE
        return t

    def relevance(self, category: str | None) -> float:
        if category is None:
            return 0.5
        return self.interests.get(category, 0.0)

    def satiation(self, category: str, t: float) -> float:
        """0 right after buying the category, back towards 1 as the need returns."""
        bought = self.last_bought.get(category)
        if bought is None:
            return 1.0
        return 1.0 - math.exp(-(t - bought) / (CATEGORIES[category].recovery_days * DAY))
