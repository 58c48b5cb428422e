"""Ranges checked by measurement (calibration/range_check.py): the settings it measures."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from labctl.calibration.range_check import end_patterns


@pytest.mark.parametrize("n_rings", [4, 5, 10, 11])
def test_every_ring_meets_every_combination_of_its_neighbours_ends(n_rings: int) -> None:
    """A ring's range end is judged by its worst reading; the neighbour terms that can cut it are its two nearest
    neighbours', so the eight settings give every ring, at each of its ends, all four combinations of theirs."""
    p = end_patterns(n_rings)
    assert p.shape == (8, n_rings)
    for r in range(1, n_rings - 1):
        for own, left, right in itertools.product([True, False], repeat=3):
            rows = (p[:, r] == own) & (p[:, r - 1] == left) & (p[:, r + 1] == right)
            assert rows.any(), (n_rings, r, own, left, right)
    assert np.all(p[0]) and not np.any(p[1])
