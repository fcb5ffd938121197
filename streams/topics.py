"""Topic names: one place that knows every topic, with the configurable prefix."""

from __future__ import annotations

from nudge.schemas.events import EVENT_TYPES_BY_TOPIC

INPUT_KINDS: tuple[str, ...] = tuple(EVENT_TYPES_BY_TOPIC)
CHANNELS: tuple[str, ...] = ("email", "sms", "push", "web")
OUTPUT_KINDS: tuple[str, ...] = (
    "actions",
    *(f"actions.{channel}" for channel in CHANNELS),
    "suppressions",
    "deadletter",
    "consent-log",
    "erasures",
)
#: Consumed by the agent like inputs: visitor state moving to the customer,
#: a logged-in visitor's later events following it (policy/identity.py),
#: on-site impressions (policy.onsite) to record as contacts, and requests to
#: release a customer's due held actions (streams/holds.py).
INTERNAL_KINDS: tuple[str, ...] = (
    "identity-merges",
    "identity-forwards",
    "onsite-impressions",
    "holds-due",
)


def topic_name(prefix: str, kind: str) -> str:
    return f"{prefix}{kind}"


def all_kinds() -> tuple[str, ...]:
    return INPUT_KINDS + INTERNAL_KINDS + OUTPUT_KINDS
