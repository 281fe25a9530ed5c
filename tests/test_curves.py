"""The floor a of a power law L(e) = a + b·e^(−c) fitted to a run's held-out
objective per epoch (benchbed.publish.curves), and no floor read off a curve
that has not bent. The page's block is tested in test_leaderboard."""

from __future__ import annotations

import numpy as np
import pytest

from benchbed.publish.curves import fitted_floor

EPOCHS = np.arange(1, 16, dtype=float)


@pytest.mark.parametrize("a,b,c", [(90.0, 15.0, 0.7), (3.0, 40.0, 1.5), (-50.0, 8.0, 0.3)])
def test_the_floor_of_a_noiseless_power_law_is_recovered(a, b, c):
    assert fitted_floor(list(a + b * EPOCHS ** -c)) == pytest.approx(a, abs=0.05 * b)


def test_on_an_exponential_the_power_law_floor_is_the_more_generous_one():
    losses = 90.0 + 20.0 * np.exp(-0.6 * EPOCHS)
    floor = fitted_floor(list(losses))
    assert floor is not None and floor < 90.0 < losses[-1]


def test_no_floor_from_a_curve_still_in_its_straight_part_rising_or_short():
    assert fitted_floor(list(100.0 - 0.5 * EPOCHS)) is None  # a line: any floor is a guess
    assert fitted_floor(list(90.0 + 20.0 * np.exp(-0.1 * EPOCHS))) is None  # most of its fall ahead
    assert fitted_floor([100.0, 101.0, 102.0, 103.0, 104.0, 105.0]) is None
    assert fitted_floor([100.0, 99.0, 98.5, 98.2]) is None  # under five epochs
