"""The incremental estimate and its interval, on numbers worked out by hand."""

from __future__ import annotations

import math

import pytest

from nudge.lab.incremental import paired_difference, t_interval


def test_t_interval_on_known_numbers() -> None:
    # Differences 1, 2, 3: mean 2, sample sd 1, t(0.975, 2 df) = 4.302653.
    estimate = t_interval([1.0, 2.0, 3.0])
    half = 4.302653 / math.sqrt(3)
    assert estimate.mean == 2.0
    assert estimate.low == pytest.approx(2.0 - half, abs=1e-5)
    assert estimate.high == pytest.approx(2.0 + half, abs=1e-5)


def test_paired_difference_subtracts_the_control_seed_by_seed() -> None:
    # Orders under a policy and under no contact on the same three seeds:
    # differences 34, 33, 30 -> mean 32.333, sd 2.0817, t(0.975, 2) = 4.302653.
    estimate = paired_difference([671, 689, 637], [637, 656, 607])
    assert estimate.per_seed == (34, 33, 30)
    assert estimate.mean == pytest.approx(32.3333, abs=1e-4)
    half = 4.302653 * 2.081666 / math.sqrt(3)
    assert (estimate.low, estimate.high) == pytest.approx((32.3333 - half, 32.3333 + half), 1e-4)
    assert estimate.as_dict()["ci95"] == [round(estimate.low, 3), round(estimate.high, 3)]


def test_a_constant_difference_has_no_width_and_one_seed_has_no_interval() -> None:
    assert paired_difference([5, 6], [3, 4]).as_dict()["ci95"] == [2.0, 2.0]
    single = paired_difference([5], [3])
    assert (single.mean, single.low, single.high) == (2.0, None, None)
    assert single.as_dict()["ci95"] is None


def test_paired_difference_needs_one_control_per_seed() -> None:
    with pytest.raises(ValueError):
        paired_difference([1, 2], [1])
    with pytest.raises(ValueError):
        paired_difference([], [])
