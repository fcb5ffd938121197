"""The simulated shop: its categories, pages, opening rhythm by local hour and
the time zones its customers live in."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Category:
    low: float  # price range
    high: float
    products: int
    recovery_days: float  # how long one purchase satisfies the need
    queries: tuple[str, ...]


CATEGORIES: dict[str, Category] = {
    "air_filters": Category(12, 45, 40, 90, ("hepa filter", "air filter")),
    "air_purifiers": Category(89, 499, 25, 720, ("air purifier", "allergy")),
    "garden": Category(5, 180, 120, 10, ("garden hose", "seeds", "hedge trimmer")),
    "outdoor": Category(15, 650, 80, 60, ("parasol", "garden chair", "grill")),
    "appliances": Category(49, 899, 90, 365, ("vacuum", "coffee machine")),
    "kitchen": Category(4, 150, 150, 21, ("knife", "pan", "storage jar")),
    "lighting": Category(9, 220, 100, 45, ("led bulb", "floor lamp")),
    "bathroom": Category(6, 300, 70, 60, ("towel", "shower head")),
    "bedding": Category(15, 260, 60, 90, ("duvet", "pillow")),
    "storage": Category(8, 120, 50, 30, ("shelf", "storage box")),
    "tools": Category(7, 390, 110, 60, ("drill", "screwdriver")),
    "decor": Category(5, 140, 130, 21, ("vase", "cushion", "frame")),
}
PAGES = ("/", "/sale", "/inspiration", "/delivery", "/account", "/blog/spring")
# Sessions by local hour: quiet at night, peaks at lunch and in the evening.
HOUR_WEIGHTS = (1, 1, 1, 1, 1, 1, 2, 4, 6, 7, 7, 8, 9, 8, 7, 7, 7, 8, 10, 12, 12, 10, 6, 3)
ZONES = {
    "Europe/Berlin": 0.40,
    "Europe/Paris": 0.15,
    "Europe/London": 0.12,
    "Europe/Madrid": 0.10,
    "Europe/Helsinki": 0.05,
    "America/New_York": 0.18,
}
