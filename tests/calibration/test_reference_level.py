"""The reference level on balanced-only benches (calibration/reference_level.py), against the emulator's truth.

The method's premise on the full reference chip (ten rings per bank, nearly a free spectral range): no heater
setting clears a bank's band, every balanced reading is a lower bound on the level (passivity), and in the gap the
heaters open the largest reading comes within a percent of it, the tail estimate correcting most of the rest. The
drives and predictions come from reference_level's own functions fed with the truth's heater model (no
instrument noise, no calibration run: cheap), so what is checked is the optics of the method. The small-chip
calibration on the source-meter bench, end to end, is in test_verify (honesty bound).
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from labctl.calibration.reference_level import (
    DEFICIT_FRACTION,
    DEFICIT_UNCERTAINTY,
    GAP_MARGIN_M,
    _largest_gap,
    _peak,
    gap_drive,
    tail_sum,
)
from labctl.calibration.resonances import ResonanceMap
from labctl.calibration.thermal import ThermalModel
from labctl.sim.chip import Chip

from .test_thermal import truth_per_unit_heat


@pytest.mark.parametrize("seed", [1, 2])
def test_the_gap_reading_bounds_the_level_and_the_tail_estimate_covers_its_deficit(seed: int) -> None:
    chip = Chip(seed=seed)
    try:
        nb, nr = chip.n_banks, chip.n_rings
        p = chip.truth_params()
        level = p.bus_loss_amplitude ** (2 * nr)                  # weight -1: the through level, rings absent
        k, gamma = truth_per_unit_heat(chip, "current")
        thermal = ThermalModel(mode="current", efficiency_m_per_unit=np.diag(k).copy(), crosstalk=k,
                               nonlinearity=gamma, fit_rmse_m=np.zeros(nb * nr), max_drive=np.full(nb * nr, 5.8e-3),
                               heat_unit="A^2")
        centre = chip.truth_resonances_m(np.zeros((1, nb * nr)), "current")[0]
        width = np.full((nb, nr), 1550e-9 / chip.spec.optics.loaded_q)
        rmap = ResonanceMap(center_m=centre, fwhm_m=width, extinction_db=np.full((nb, nr), np.nan),
                            drop_peak=np.full((nb, nr), np.nan), channel_of_ring=np.tile(np.arange(nr), (nb, 1)),
                            fit_rmse=np.zeros(nb), baseline=-np.ones((nb, nr)), pole_fwhm_m=width)
        hw = SimpleNamespace(limits=SimpleNamespace(check=lambda d: d))
        drive, predicted, fraction = gap_drive(rmap, thermal, hw, 1e-9)
        assert fraction == 1.0 and np.all(drive <= 5.8e-3)
        truly = chip.truth_resonances_m(drive[None], "current")[0]
        assert np.max(np.abs(truly - predicted)) < 20e-12        # the heater model places the rings
        # no setting clears the band: at zero drive and in the gap, readings stay below the level
        band = np.arange(1548.5e-9, 1562.9e-9, 20e-12)
        for d in (np.zeros(nb * nr), drive):
            assert np.all(-chip.truth_weights(d[None], "current", band)[0] < level)
        allowed = (1548.5e-9, 1562.9e-9)
        for b in range(nb):
            lo, hi = _largest_gap(predicted[b], allowed, None)
            assert hi - lo > 4e-9                                  # over a third of the FSR opened
            assert np.min(np.abs(truly[b][:, None] - np.array([lo, hi])[None, :])) > 0.8 * GAP_MARGIN_M
            wl = np.arange(lo, hi, 40e-12)
            raw, at = _peak(wl, -chip.truth_weights(drive[None], "current", wl)[0, b] / level)
            deficit = 1.0 - raw
            assert 0.0 < deficit < 0.01, (b, deficit)              # a lower bound, within a percent
            tails = tail_sum(at, predicted[b], width[b], None, allowed)
            u = DEFICIT_UNCERTAINTY * tails
            assert abs(deficit - DEFICIT_FRACTION * tails) < max(2.0 * u, 0.002), (b, deficit, u)   # within 2 sigma
    finally:
        chip.close()
