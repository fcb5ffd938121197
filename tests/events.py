"""Input events the tests publish to real workers, built one way for all of them."""

from __future__ import annotations

from datetime import UTC, datetime


def purchase(customer: str, name: str = "1") -> dict:
    """A purchase: always decided (an order confirmation, transactional)."""
    return {
        "event_id": f"{customer}-{name}",
        "type": "purchase",
        "customer_id": customer,
        "ts": datetime.now(UTC).isoformat(),
        "order_id": f"o-{customer}-{name}",
        "items": [{"product_id": "lamp-1", "category": "lighting", "price": 49.0}],
    }
