"""What an action shows: a category, up to MAX_PRODUCTS products, and why.

A catalog action names what to send, not what to show. The content comes from
the person: the open cart for a cart reminder, else the action's category with
products of it the person viewed, else (an action without a category of its
own) a category whose next need is due, then their strongest interest. A
category inside its purchase cooldown is never shown (the rules already rule
out an action whose own category is; here the same check guards the choice).
"""

from __future__ import annotations

from nudge.policy import rules
from nudge.policy.config import CatalogAction, ContactPolicy
from nudge.policy.cycles import CycleModel, purchase_window
from nudge.policy.state import CART_PRODUCTS, CustomerState
from nudge.policy.updates import profiling_allowed, viewed
from nudge.schemas.outputs import Content

MAX_PRODUCTS = CART_PRODUCTS


def choose(
    action: CatalogAction,
    category: str | None,
    channel: str,
    state: CustomerState,
    policy: ContactPolicy,
    cycles: CycleModel | None,
    now: float,
) -> Content | None:
    """The content of `action` (its category resolved to `category`) on
    `channel` at `now`; None for transactional messages or when nothing fits."""
    if action.message_class != "marketing":
        return None
    recency = state.recency
    if action.category == "$cart":
        items = list(reversed(recency.cart_products))[:MAX_PRODUCTS]
        return Content(category=category, products=items, reason="the open cart's items")
    profiled = profiling_allowed(state, channel)
    if category is not None:
        return Content(
            category=category,
            products=_viewed_in(state, category) if profiled else [],
            reason=_why(action, category, state, policy, cycles, now),
        )
    for chosen, reason in _candidates(state, policy, cycles, now, profiled):
        if not rules.in_purchase_cooldown(state, policy, chosen, now, cycles):
            products = _viewed_in(state, chosen) if profiled else []
            return Content(category=chosen, products=products, reason=reason)
    return None


def _why(
    action: CatalogAction,
    category: str,
    state: CustomerState,
    policy: ContactPolicy,
    cycles: CycleModel | None,
    now: float,
) -> str:
    window = purchase_window(state, policy, cycles, category, profiling_allowed(state))
    if window is not None and window.due_at is not None and now >= window.due_at:
        return f"next need due: {window.explain()}"
    if action.category == "$event":
        return "the category of the item that triggered it"
    return "the action's own category"


def _candidates(
    state: CustomerState,
    policy: ContactPolicy,
    cycles: CycleModel | None,
    now: float,
    profiled: bool,
) -> list[tuple[str, str]]:
    """Categories to show, best first: next needs due (the most overdue
    first), then the strongest interests (profiling allowed only)."""
    due = []
    for category in state.recency.last_purchase:
        window = purchase_window(state, policy, cycles, category, profiling_allowed(state))
        if window is not None and window.due_at is not None and now >= window.due_at:
            due.append((window.due_at, category, f"next need due: {window.explain()}"))
    found = [(category, reason) for _, category, reason in sorted(due)]
    if profiled:
        affinity = state.recency.affinity
        for category in sorted(affinity, key=lambda c: (-affinity[c], c)):
            found.append((category, "the person's strongest interest"))
    return found


def _viewed_in(state: CustomerState, category: str) -> list[str]:
    """Products of `category` the person viewed, newest first."""
    found = [product for product, seen_in in reversed(viewed(state.recency)) if seen_in == category]
    return found[:MAX_PRODUCTS]
