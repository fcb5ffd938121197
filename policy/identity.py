"""Identity that follows the visitor across a login.

Anonymous events are keyed by the anonymous id, so they live on another
partition than the customer's. At identify/alias the visitor's state moves
to the customer (an internal topic), and the anonymous key keeps only a
pointer (`Profile.alias_of`): its later events are forwarded to the customer
instead of building a second, forgotten profile. The customer remembers the
anonymous ids merged into it (`Profile.linked_ids`), so that erasing the
customer erases them too, and takes the visitor's holdout arm and experiment
arm (policy/experiments.py) where it had none, so neither flips at login.
"""

from __future__ import annotations

from nudge.policy.state import Profile

#: Anonymous ids remembered per customer (devices and browsers); the oldest
#: goes first. An id pushed out is no longer erased with the customer.
MAX_LINKED_IDS = 8


def link(customer: Profile, visitor: Profile, anonymous_id: str) -> None:
    """The customer's side of a merge."""
    linked = [i for i in customer.linked_ids if i != anonymous_id]
    customer.linked_ids = [*linked, anonymous_id][-MAX_LINKED_IDS:]
    if customer.arm is None:
        customer.arm = visitor.arm
    if customer.experiment is None:
        customer.experiment = visitor.experiment


def pointer(visitor: Profile, customer_id: str) -> Profile:
    """What stays on the anonymous key after a merge: where its events go, and
    what still recognises a redelivered identify or an erased past."""
    return Profile(alias_of=customer_id, processed=visitor.processed, erased_at=visitor.erased_at)
