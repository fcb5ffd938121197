"""Persona keys: what the catalog can target, stable across retrainings.

Why: a persona model is retrained and its clusters renumbered, so neither a
cluster number nor a generated name can be written into the catalog. What
stays is the vocabulary a persona is described in (models/personas.py names
each cluster after its one or two most distinctive traits): a persona's key
is its traits joined by "+", e.g. "frequent_buyers+big_spenders", or
"average" when nothing stands out. Catalog eligibility (`personas`) and
per-persona levers (`persona_levers`) name traits, and match any persona
that has one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, get_args

if TYPE_CHECKING:
    from nudge.policy.config import CatalogAction

PersonaTrait = Literal[
    "frequent_buyers",
    "rare_buyers",
    "big_spenders",
    "small_spenders",
    "large_baskets",
    "small_baskets",
    "explorers",
    "specialists",
    "responsive",
    "unresponsive",
    "tuning_out",
    "attentive",
    "lapsing",
    "recently_active",
    "average",
]
TRAITS: tuple[str, ...] = get_args(PersonaTrait)
AVERAGE = "average"


def key_of(words: list[str]) -> str:
    """The key of a persona described by these words ("frequent buyers", ...)."""
    traits = [word.strip().lower().replace(" ", "_") for word in words]
    return "+".join(t for t in traits if t in TRAITS) or AVERAGE


def traits_of(persona: str | None) -> list[str]:
    """A persona key's traits, most distinctive first; [] for no persona."""
    return persona.split("+") if persona else []


def eligible(action: CatalogAction, persona: str | None) -> bool:
    """Is the action for this persona? Everyone is, unless it names traits."""
    return not action.personas or not set(action.personas).isdisjoint(traits_of(persona))


def lever(action: CatalogAction, persona: str | None) -> tuple[float, str | None]:
    """The action's lever for this persona, and the trait that set it (None:
    the action's own lever)."""
    for trait in traits_of(persona):
        if trait in action.persona_levers:
            return action.persona_levers[trait], trait  # type: ignore[index]
    return action.lever, None
