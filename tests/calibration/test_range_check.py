"""Ranges checked by measurement (calibration/range_check.py): the settings it measures."""

from __future__ import annotations

import itertools
from types import SimpleNamespace
from typing import Any

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


def _one_bank_model() -> Any:
    """A 1 x 3 weight model without neighbour terms: w = -1 + 1.9 L(tau) on windows [-200, 0] pm; ring 1 held at
    its mid-window weight."""
    from labctl.calibration.weights import WeightModel

    coef = np.zeros((1, 3, 1, 5))
    coef[..., 0, 0], coef[..., 0, 1] = -1.0, 1.9
    lo, hi = np.full((1, 3), -200e-12), np.zeros((1, 3))
    wm = WeightModel(wavelengths_m=np.array([1550e-9, 1551e-9, 1552e-9]), channel_of_ring=np.array([[0, 1, 2]]),
                     delta_offset_m=np.zeros((1, 3)), width_m=np.full((1, 3), 190e-12), coef=coef,
                     neighbours=np.zeros((1, 3, 0), dtype=int), u_park_m=np.zeros((1, 3, 0)),
                     delta_lo_m=lo, delta_hi_m=hi, slope_sign=np.ones((1, 3)),
                     w_min=np.array([[-0.8, 0.0, -0.8]]), w_max=np.array([[0.8, 0.0, 0.8]]),
                     fit_rmse=np.zeros((1, 3)))
    held = float(wm.predict(wm.park_delta_m())[0, 1])      # as weights._finalize_windows holds it: mid-window
    wm.w_min[0, 1] = wm.w_max[0, 1] = held
    return wm


def test_a_held_ring_takes_its_measured_weight() -> None:
    """A ring held at one weight (no range for every neighbour setting: spread1nm-s3, its sweep disturbed by a
    ring parked 140 pm from its channel) is asked for the model's weight by every target; the chip gives another
    one there. The check reads it in every setting and the held weight becomes the median reading, recorded;
    the ring's model curve moves with it, so the solve for the new held weight drives where it was read."""
    from labctl.calibration.range_check import check_ranges

    wm = _one_bank_model()
    wm_park = wm.park_delta_m()[0, 1]
    applied: dict[str, np.ndarray] = {}
    # the chip: ring 1 reads 0.4 below the model at its hold, a little differently with the neighbours' ends
    truth_offset = np.array([[0.0, -0.4, 0.0]])

    def measure(hw: Any, channels: np.ndarray) -> np.ndarray:
        delta = applied["delta"]
        w = wm.predict(delta) + truth_offset + np.array([[0.0, 0.003, 0.0]]) * (delta[0, 0] > -100e-12)
        return np.where(np.isin(wm.channel_of_ring, channels), w, np.nan)

    cal = SimpleNamespace(
        weights=wm, rmap=SimpleNamespace(center_m=np.array([[1549.5e-9, 1550.2e-9, 1551.5e-9]]),
                                         pole_fwhm_m=np.full((1, 3), 190e-12), fwhm_m=np.full((1, 3), 190e-12)),
        solve_from_detuning=lambda target, delta, limits: SimpleNamespace(drive=np.asarray(delta).ravel()),
        apply=lambda hw, drive: applied.update(delta=np.asarray(drive).reshape(1, 3)),
        measure_weights=measure)
    hw = SimpleNamespace(limits=SimpleNamespace(check=lambda drive: None))
    model_held = float(wm.predict(wm.park_delta_m())[0, 1])
    out = check_ranges(hw, cal)
    assert wm.w_min[0, 1] == wm.w_max[0, 1]
    assert wm.solve(wm.w_min)[0, 1] == pytest.approx(wm_park, abs=1e-15)
    assert abs(wm.w_min[0, 1] - (model_held - 0.4)) < 0.005
    assert [(e["bank"], e["ring"]) for e in out] == [(0, 1)] and "held at one weight" in out[0]["reasons"][0]
    assert wm.w_max[0, 0] == 0.8 and wm.w_min[0, 2] == -0.8          # usable rings far apart: untouched


def test_a_held_ring_the_model_describes_keeps_its_hold() -> None:
    """Readings within the tolerance of the model's held weight change nothing: the window stays open, so the
    solve keeps moving the ring inside it against its neighbours' terms (closing it cost a crosstalk-x2 chip)."""
    from labctl.calibration.range_check import check_ranges

    wm = _one_bank_model()
    lo, hi, w_held = wm.delta_lo_m.copy(), wm.delta_hi_m.copy(), wm.w_min[0, 1]
    applied: dict[str, np.ndarray] = {}
    cal = SimpleNamespace(
        weights=wm, rmap=SimpleNamespace(center_m=np.array([[1549.5e-9, 1550.2e-9, 1551.5e-9]]),
                                         pole_fwhm_m=np.full((1, 3), 190e-12), fwhm_m=np.full((1, 3), 190e-12)),
        solve_from_detuning=lambda target, delta, limits: SimpleNamespace(drive=np.asarray(delta).ravel()),
        apply=lambda hw, drive: applied.update(delta=np.asarray(drive).reshape(1, 3)),
        measure_weights=lambda hw, channels: np.where(np.isin(wm.channel_of_ring, channels),
                                                      np.full((1, 3), w_held + 0.005), np.nan))
    out = check_ranges(SimpleNamespace(limits=SimpleNamespace(check=lambda drive: None)), cal)
    assert out == [] and wm.w_min[0, 1] == wm.w_max[0, 1] == w_held
    np.testing.assert_array_equal(wm.delta_lo_m, lo)
    np.testing.assert_array_equal(wm.delta_hi_m, hi)
