"""The policy with learned purchase cycles: cooldown vs floor, due
replenishment, the content an action carries, and the cart reminder."""

from __future__ import annotations

import math
from datetime import timedelta

from nudge.models.cycles import Purchase, PurchaseCycles
from nudge.policy.engine import Engine
from nudge.policy.scoring import HeuristicScorer
from nudge.schemas.outputs import Action
from tests.unit.policy_kit import (
    DAY,
    HOUR,
    T0,
    Person,
    catalog,
    click,
    consent,
    marketing,
    policy,
    purchase,
)

MINUTE = timedelta(minutes=1)


class Cycles:
    """A cycle model with fixed answers per category (the policy's side only)."""

    def __init__(self, **days: tuple[float, float]) -> None:
        self.answers = days

    def days(self, category: str, intervals: float, log_days: float) -> tuple[float, float] | None:
        return self.answers.get(category)


class CycleScorer(HeuristicScorer):
    """The heuristic, serving cycles as a trained artifact's scorer does."""

    def __init__(self, cycles: object) -> None:
        self.cycles = cycles


def engine(*actions: dict, cycles: object = None, **fields: object) -> Engine:
    scorer = CycleScorer(cycles) if cycles is not None else None
    return Engine(catalog(*actions), policy(**fields), scorer)


FIXED = {"purchase_cooldown": {"default_days": 14, "categories": {"garden": 60}}}


def test_a_learned_cooldown_replaces_the_fixed_days() -> None:
    p = Person(engine(marketing(category="$event"), cycles=Cycles(garden=(10.0, 40.0)), **FIXED))
    p.opt_in(T0)
    p.send(purchase(p.id, T0, "garden"))
    s = p.suppress(click(p.id, T0 + 9 * DAY, category="garden"))
    assert s.reasons == ["purchase_cooldown"]
    [note] = s.candidates[0].notes
    assert "learned cycle" in note and "quiet until 2026-03-12" in note
    act = p.act(click(p.id, T0 + 10 * DAY + MINUTE, category="garden"))  # not 60 days
    assert any(r.startswith("cooldown over: garden bought 2026-03-02") for r in act.reasons)


def test_the_floor_holds_under_a_learned_cooldown() -> None:
    p = Person(engine(marketing(category="$event"), cycles=Cycles(garden=(0.5, 20.0)), **FIXED))
    p.opt_in(T0)
    p.send(purchase(p.id, T0, "garden"))
    assert p.suppress(click(p.id, T0 + 2.9 * DAY, category="garden")).reasons == [
        "purchase_cooldown"
    ]
    assert p.act(click(p.id, T0 + 3 * DAY + MINUTE, category="garden")).category == "garden"


def test_without_a_learned_cycle_the_fixed_cooldown_applies() -> None:
    for cycles in (None, Cycles(lighting=(1.0, 5.0))):  # no model, or one that knows no garden
        p = Person(engine(marketing(category="$event"), cycles=cycles, **FIXED))
        p.opt_in(T0)
        p.send(purchase(p.id, T0, "garden"))
        s = p.suppress(click(p.id, T0 + 59 * DAY, category="garden"))
        assert s.candidates[0].notes == [
            "purchase_cooldown: garden bought 2026-03-02: fixed cooldown until 2026-05-01"
        ]


def replenishment(**fields: object) -> dict:
    return marketing(
        "filters",
        category="air_filters",
        triggers=[{"event": "session_start", "replenish_after_days": 80}],
        **fields,
    )


def test_the_replenishment_fires_when_the_learned_due_time_has_come() -> None:
    p = Person(engine(replenishment(), cycles=Cycles(air_filters=(20.0, 40.0))))
    p.opt_in(T0)
    p.send(purchase(p.id, T0, "air_filters"))
    assert p.send(click(p.id, T0 + 39 * DAY, "session_start")).decision is None  # not due
    act = p.act(click(p.id, T0 + 40 * DAY + HOUR, "session_start"))
    assert any(r.startswith("next need due: air_filters bought") for r in act.reasons)
    assert act.content is not None and act.content.category == "air_filters"
    assert act.content.reason.startswith("next need due")


def test_without_a_model_the_replenishment_waits_its_configured_days() -> None:
    p = Person(engine(replenishment()))
    p.opt_in(T0)
    p.send(purchase(p.id, T0, "air_filters"))
    assert p.send(click(p.id, T0 + 79 * DAY, "session_start")).decision is None
    assert p.act(click(p.id, T0 + 80 * DAY + HOUR, "session_start")).action_id == "filters"


def test_own_purchase_intervals_move_the_due_time() -> None:
    """A person who rebuys every 10 days is due sooner than the category's
    40-day cycle says: the real model shrinks their own cycle toward it."""
    rng = [math.exp(math.log(40) + 0.3 * math.sin(i)) for i in range(400)]
    history = [
        Purchase(f"c{i}", "air_filters", T0.timestamp() - 400 * 86400 + k * gap * 86400)
        for i, gap in enumerate(rng)
        for k in range(4)
    ]
    model = PurchaseCycles().fit(history, end=T0.timestamp() - 86400)
    newcomer = model.days("air_filters", 0.0, 0.0)
    assert newcomer is not None
    p = Person(engine(replenishment(), cycles=model))
    p.opt_in(T0)
    for k in range(5):
        p.send(purchase(p.id, T0 + k * 10 * DAY, "air_filters"))
    assert p.state.recency.cycles["air_filters"] == [4.0, math.log(10.0) * 4]
    last = T0 + 40 * DAY
    own = model.days("air_filters", 4.0, 4 * math.log(10.0))
    assert own is not None and own[1] < newcomer[1]
    assert p.send(click(p.id, last + (own[1] - 0.5) * DAY, "session_start")).decision is None
    assert p.act(click(p.id, last + (own[1] + 0.5) * DAY, "session_start")).action_id == "filters"


def test_content_is_never_a_category_just_bought() -> None:
    """An action without a category of its own shows the strongest interest
    that is not inside its purchase cooldown, with products viewed in it."""
    p = Person(engine(marketing("inspire", triggers=[{"event": "search"}]), **FIXED))
    p.opt_in(T0)
    for i in range(3):
        p.send(click(p.id, T0 + i * MINUTE, category="garden", product_id=f"g{i}"))
    p.send(click(p.id, T0 + 5 * MINUTE, category="lighting", product_id="lamp"))
    first = p.act(click(p.id, T0 + 10 * MINUTE, "search"))
    assert first.content is not None and first.content.category == "garden"
    assert first.content.products == ["g2", "g1", "g0"]
    p.send(purchase(p.id, T0 + HOUR, "garden"))
    later = p.act(click(p.id, T0 + 2 * DAY, "search"))
    assert later.content is not None
    assert later.content.category == "lighting" and later.content.products == ["lamp"]
    assert later.content.reason == "the person's strongest interest"


CART = marketing(
    "cart_reminder",
    category="$cart",
    triggers=[{"event": "session_start", "cart_idle_minutes": 30}],
)


def test_the_cart_reminder_carries_the_carts_items_and_category() -> None:
    p = Person(engine(CART))
    p.opt_in(T0)
    p.send(click(p.id, T0, "add_to_cart", product_id="lamp-1", category="lighting", price=20.0))
    p.send(click(p.id, T0 + MINUTE, "add_to_cart", product_id="bulb-2", category="lighting"))
    p.send(click(p.id, T0 + 2 * MINUTE, "add_to_cart", product_id="x-3", category="lighting"))
    p.send(click(p.id, T0 + 3 * MINUTE, "remove_from_cart", product_id="x-3"))
    act = p.act(click(p.id, T0 + HOUR, "session_start", category=None))
    assert act.category == "lighting"
    assert act.content is not None
    assert act.content.category == "lighting" and act.content.products == ["bulb-2", "lamp-1"]
    assert act.content.reason == "the open cart's items"


def test_the_cart_reminder_keeps_the_purchase_cooldown_of_the_carts_category() -> None:
    p = Person(engine(CART, cycles=Cycles(lighting=(10.0, 30.0))))
    p.opt_in(T0)
    p.send(purchase(p.id, T0, "lighting"))
    p.send(click(p.id, T0 + DAY, "add_to_cart", product_id="lamp-2", category="lighting"))
    s = p.suppress(click(p.id, T0 + DAY + HOUR, "session_start", category=None))
    assert s.reasons == ["purchase_cooldown"]
    assert "learned cycle" in s.candidates[0].notes[0]
    act = p.act(click(p.id, T0 + 10 * DAY + HOUR, "session_start", category=None))
    assert act.content is not None and act.content.products == ["lamp-2"]


def test_a_revoked_profiling_consent_drops_own_intervals_and_viewed_products() -> None:
    model = Cycles(air_filters=(20.0, 40.0))
    p = Person(engine(replenishment(), cycles=model))
    p.opt_in(T0)
    p.send(consent(p.id, T0, "all", "revoked", "profiling"))
    p.send(purchase(p.id, T0 + MINUTE, "air_filters"))
    p.send(purchase(p.id, T0 + 10 * DAY, "air_filters"))
    assert p.state.recency.cycles == {}
    act = p.act(click(p.id, T0 + 50 * DAY + HOUR, "session_start", product_id="f-1"))
    assert act.content is not None and act.content.products == []


def test_a_held_action_is_released_under_the_learned_cooldown_not_the_fixed_one() -> None:
    """Bought 5 days ago: the fixed 14 days would still silence the category,
    the learned 4 do not, when the decision is made and again at release."""
    night = {"start": "21:00", "end": "08:00", "tz": "UTC"}
    evening = T0.replace(hour=22) + 5 * DAY
    for cycles in (None, Cycles(lighting=(4.0, 30.0))):
        e = engine(
            marketing(category="$event"),
            cycles=cycles,
            quiet_hours=night,
            purchase_cooldown={"default_days": 14},
        )
        p = Person(e)
        p.opt_in(T0)
        p.send(purchase(p.id, T0, "lighting"))
        view = click(p.id, evening, category="lighting", product_id="lamp")
        if cycles is None:
            assert p.suppress(view).reasons == ["purchase_cooldown"]
            continue
        held = p.hold(view)
        assert held.content is not None and held.content.products == ["lamp"]
        [released] = p.release(evening.replace(hour=8) + DAY)
        assert isinstance(released, Action), released
        assert released.content is not None and released.content.category == "lighting"
