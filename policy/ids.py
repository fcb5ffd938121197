"""Deterministic ids and draws: the same input must give the same decision,
so nothing in a decision comes from a random generator or the wall clock."""

from __future__ import annotations

from collections.abc import Mapping
from hashlib import blake2b
from typing import Any

_TWO_64 = float(2**64)


def hash64(text: str) -> int:
    """A stable 64-bit hash (Python's hash() is salted per process)."""
    return int.from_bytes(blake2b(text.encode(), digest_size=8).digest(), "big")


def unit_draw(*parts: str) -> float:
    """A number in [0, 1) fixed by its inputs: randomness that replays."""
    return hash64("\x1f".join(parts)) / _TWO_64


def decision_id(trigger_event_id: str, action_id: str) -> str:
    """Same trigger + same action -> same id, so a replay cannot make a
    duplicate that downstream could not recognise."""
    return blake2b(f"{trigger_event_id}\x1f{action_id}".encode(), digest_size=16).hexdigest()


def withdrawn_action(suppression: Mapping[str, Any]) -> str | None:
    """The action a suppression (as JSON) withdrew if it ends a held action:
    its decision id is that action's, not a suppression's own. Else None."""
    candidates = suppression.get("candidates") or []
    if len(candidates) != 1:
        return None
    action_id = candidates[0]["action_id"]
    held = decision_id(suppression["trigger_event_id"], action_id)
    return action_id if suppression.get("decision_id") == held else None


def in_holdout(customer_id: str, share: float, salt: str) -> bool:
    """Stable per customer: the same people stay in the control group."""
    return unit_draw(salt, customer_id) < share
