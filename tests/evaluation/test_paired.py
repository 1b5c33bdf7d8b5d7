"""Paired per-seed differences: the Student-t interval and its verdict."""

import pytest

from oxnet.evaluation.paired import interval_text, paired_t_interval, verdict


def test_paired_t_interval_values():
    mean, low, high = paired_t_interval([1.0, 2.0, 3.0, None])
    # sd 1, n 3, t(0.975, 2) = 4.302653
    assert mean == 2.0
    assert (low, high) == pytest.approx((2 - 4.302653 / 3**0.5, 2 + 4.302653 / 3**0.5), abs=1e-5)
    assert paired_t_interval([1.0]) is None and paired_t_interval([None, 2.0]) is None


def test_verdicts_follow_the_direction_of_better():
    assert verdict((1.0, 0.5, 1.5)) == "better"
    assert verdict((1.0, 0.5, 1.5), higher_is_better=False) == "worse"
    assert verdict((-1.0, -1.5, -0.5), higher_is_better=False) == "better"
    assert verdict((0.1, -0.5, 0.7)) == "not resolved"
    assert verdict(None) == "n/a"
    assert interval_text((-0.2, -1.36, 0.93)) == "-0.20 [-1.36, +0.93] not resolved"
