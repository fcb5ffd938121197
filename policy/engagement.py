"""What each person responds to: per channel and per local hour, learned only
from messages whose outcome is known.

Why: a channel's rate must not fall just because it was used (then, with no
feedback at all, channels alternate, receipts included), and the hour a
message reaches someone matters as much as where. So a message counts once
its outcome is known (opened, clicked or converted: positive; ignored,
dismissed, unsubscribed or complained: negative), once per message, in two
groups of [known, positive] counters, 20 bytes in all (`Fatigue.outcomes`):
one pair per channel, one per four-hour block of the person's local day.

Rates are smoothed with a Beta prior (`EngagementPolicy`): with no feedback
every channel sits at its prior, so the choice is stable (the policy's
channel order breaks the tie), never alternating.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, tzinfo

from nudge.policy.clock import HOUR
from nudge.policy.config import EngagementPolicy
from nudge.policy.state import CustomerState

CHANNELS = ("email", "sms", "push", "web")
BLOCK_HOURS = 4
BLOCKS = 24 // BLOCK_HOURS
_SIZE = 2 * (len(CHANNELS) + BLOCKS)
LIMIT = 255  # a group is halved when one of its counters would pass this

UNKNOWN, NEGATIVE, POSITIVE = 0, 1, 2
OUTCOMES = {
    "opened": POSITIVE,
    "clicked": POSITIVE,
    "converted": POSITIVE,
    "ignored": NEGATIVE,
    "dismissed": NEGATIVE,
    "unsubscribed": NEGATIVE,
    "complained": NEGATIVE,
}


def outcome_of(feedback_type: str) -> int:
    """POSITIVE, NEGATIVE, or UNKNOWN (delivered, bounced: nothing learned)."""
    return OUTCOMES.get(feedback_type, UNKNOWN)


def block_of(local: datetime) -> int:
    return local.hour // BLOCK_HOURS


def record(state: CustomerState, channel: str, block: int, before: int, outcome: int) -> None:
    """Count one message's outcome on its channel and its local block. `before`
    is what was already counted for it (UNKNOWN if nothing): a message counts
    as known once, and as positive once (an open then a click is one)."""
    if outcome <= before or channel not in CHANNELS:
        return
    counts = bytearray(state.fatigue.outcomes or bytes(_SIZE))
    groups = ((0, len(CHANNELS), CHANNELS.index(channel)), (2 * len(CHANNELS), BLOCKS, block))
    for start, size, index in groups:
        at = start + 2 * index
        if before == UNKNOWN:
            if counts[at] >= LIMIT:  # halve the whole group: recent habits weigh more
                end = start + 2 * size
                counts[start:end] = bytes(c // 2 for c in counts[start:end])
            counts[at] += 1
        if outcome == POSITIVE:
            counts[at + 1] = min(counts[at + 1] + 1, counts[at])
    state.fatigue.outcomes = bytes(counts)
    state.touch("fatigue")


def counts(state: CustomerState) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """([known, positive] per channel in CHANNELS order, per local block)."""
    raw = state.fatigue.outcomes or bytes(_SIZE)
    pairs = [(raw[i], raw[i + 1]) for i in range(0, _SIZE, 2)]
    return pairs[: len(CHANNELS)], pairs[len(CHANNELS) :]


def channel_rate(state: CustomerState, channel: str, policy: EngagementPolicy) -> float:
    """Smoothed share of the channel's messages with a known outcome that got
    a response; the channel's prior when nothing is known."""
    prior = policy.channel_priors.get(channel, policy.prior_rate)  # type: ignore[call-overload]
    if channel not in CHANNELS:
        return prior
    known, positive = counts(state)[0][CHANNELS.index(channel)]
    return (positive + policy.prior_strength * prior) / (known + policy.prior_strength)


def block_rates(state: CustomerState, policy: EngagementPolicy) -> list[float] | None:
    """Smoothed response rate per local block, shrunk toward the person's own
    overall rate; None until `min_observations` outcomes are known."""
    blocks = counts(state)[1]
    known = sum(k for k, _ in blocks)
    if known < policy.min_observations:
        return None
    strength = policy.prior_strength
    overall = (sum(p for _, p in blocks) + strength * policy.prior_rate) / (known + strength)
    return [(p + strength * overall) / (k + strength) for k, p in blocks]


def best_time(
    state: CustomerState,
    earliest: float,
    latest: float,
    zone: tzinfo,
    policy: EngagementPolicy,
    allowed: Callable[[float], float],
) -> tuple[float, float, float] | None:
    """The moment in [earliest, latest) whose local block has the person's
    best response rate, if it beats the block of `earliest`: (when, its rate,
    the rate at `earliest`); None to send at `earliest`. `allowed(t)` is the
    first moment from t a message may reach the person (after quiet hours):
    a block is a candidate only at an allowed moment inside it."""
    rates = block_rates(state, policy)
    if rates is None or latest <= earliest:
        return None
    now_block = block_of(datetime.fromtimestamp(earliest, zone))
    best = (earliest, rates[now_block])
    hour = (earliest // HOUR + 1) * HOUR
    previous = now_block
    while hour < latest:
        block = block_of(datetime.fromtimestamp(hour, zone))
        if block != previous:  # a new block starts: its first allowed moment
            at = allowed(hour)
            inside = at < latest and block_of(datetime.fromtimestamp(at, zone)) == block
            if inside and rates[block] > best[1] + 1e-9:
                best = (at, rates[block])
        previous = block
        hour += HOUR
    if best[0] == earliest:
        return None
    return best[0], best[1], rates[now_block]
