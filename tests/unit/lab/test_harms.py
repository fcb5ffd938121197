"""The harm counters on a tiny hand-built log: messages in the person's local
night (their own time zone), and promotions of a category just bought."""

from __future__ import annotations

from zoneinfo import ZoneInfo

from nudge.lab.harms import HarmCounter, at_night

ZONES = {
    "cust-ny": ZoneInfo("America/New_York"),
    "cust-tk": ZoneInfo("Asia/Tokyo"),
    "cust-be": ZoneInfo("Europe/Berlin"),
}


def action(
    customer: str,
    channel: str,
    decided_at: str,
    *,
    category: str | None = None,
    send_after: str | None = None,
    message_class: str = "marketing",
) -> dict:
    return {
        "customer_id": customer,
        "channel": channel,
        "category": category,
        "decided_at": decided_at,
        "send_after": send_after,
        "message_class": message_class,
    }


def purchase(customer: str, ts: str, *categories: str) -> dict:
    items = [
        {"category": c, "product_id": f"sku-{c}", "price": 10.0, "quantity": 1} for c in categories
    ]
    return {"customer_id": customer, "ts": ts, "items": items}


def test_night_is_read_on_each_persons_own_clock() -> None:
    # 04:00 UTC on 3 March 2026: 23:00 in New York, 05:00 in Berlin, 13:00 in Tokyo.
    assert at_night(1772510400.0, ZONES["cust-ny"])
    assert at_night(1772510400.0, ZONES["cust-be"])
    assert not at_night(1772510400.0, ZONES["cust-tk"])


def test_local_night_counter_on_a_hand_built_log() -> None:
    counter = HarmCounter(ZONES)
    for record in [
        action("cust-ny", "email", "2026-03-03T04:00:00Z"),  # 23:00 New York: night
        action("cust-tk", "email", "2026-03-03T04:00:00Z"),  # 13:00 Tokyo: day
        action("cust-tk", "push", "2026-03-03T14:00:00Z"),  # 23:00 Tokyo: night
        action("cust-be", "email", "2026-03-03T12:00:00Z"),  # 13:00 Berlin: day
        # Decided at 13:00 Berlin, held until 23:30: delivered at night.
        action("cust-be", "sms", "2026-03-03T12:00:00Z", send_after="2026-03-03T22:30:00Z"),
        # Decided at night, held until 08:00 Berlin: delivered by day.
        action("cust-be", "push", "2026-03-03T01:00:00Z", send_after="2026-03-03T07:00:00Z"),
        action("cust-be", "web", "2026-03-03T23:30:00Z"),  # on the site at 00:30: not headline
        action("cust-ny", "email", "2026-03-03T04:00:00Z", message_class="transactional"),
        action("anon-1", "email", "2026-03-03T04:00:00Z"),  # nobody we know the clock of
    ]:
        counter.action(record)
    assert counter.local_night == 3
    assert counter.local_night_by_channel == {"email": 1, "push": 1, "sms": 1, "web": 1}


def test_just_bought_counter_on_a_hand_built_log() -> None:
    counter = HarmCounter(ZONES, just_bought_days=7)
    log = [
        # Decided before the purchase, delivered two hours after it: counted.
        ("actions", action("cust-be", "email", "2026-03-01T09:00:00Z", category="kitchen",
                           send_after="2026-03-01T12:00:00Z")),
        ("purchases", purchase("cust-be", "2026-03-01T10:00:00Z", "kitchen", "decor")),
        ("actions", action("cust-be", "email", "2026-03-01T10:00:01Z", category="kitchen",
                           message_class="transactional")),  # the order confirmation
        ("actions", action("cust-be", "push", "2026-03-05T10:00:00Z", category="kitchen")),
        ("actions", action("cust-be", "email", "2026-03-07T10:00:00Z", category="decor")),
        ("actions", action("cust-be", "email", "2026-03-09T10:00:00Z", category="kitchen")),
        ("actions", action("cust-be", "email", "2026-03-05T10:00:00Z", category="garden")),
        ("actions", action("cust-be", "email", "2026-03-05T10:00:00Z")),  # no category
        ("actions", action("cust-ny", "email", "2026-03-05T10:00:00Z", category="kitchen")),
        # Before any purchase of the category: not a just-bought promotion.
        ("actions", action("cust-tk", "email", "2026-02-27T10:00:00Z", category="kitchen")),
        ("purchases", purchase("cust-tk", "2026-02-28T10:00:00Z", "kitchen")),
    ]  # fmt: skip
    for kind, event in log:
        if kind == "purchases":
            counter.purchase(event)
        else:
            counter.action(event)
    # kitchen 2 h after (held), kitchen 4 days after, decor 6 days after; not 8 days after.
    assert counter.just_bought() == 3
