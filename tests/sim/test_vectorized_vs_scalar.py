"""The vectorized float32 kernel and the float64 truth path agree with the plain scalar reference."""

from __future__ import annotations

import numpy as np
import pytest

from labctl.sim import Chip, ChipSpec

from .scalar_reference import bank_fields, port_powers_w, resonances_m


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_evaluate_matches_scalar_reference(seed: int) -> None:
    spec = ChipSpec().with_overrides({"layout": {"n_banks": 2, "n_rings": 4}, "lasers": {"n_channels": 5}})
    chip = Chip(spec, seed=seed)
    rng = np.random.default_rng(100 + seed)
    drive = rng.uniform(0, 5, (6, chip.n_heaters))
    pin = rng.uniform(1e-4, 2e-3, (6, chip.n_channels))
    ev = chip.evaluate(drive, pin, noise=False)
    lsb = 2 * spec.detector.readout_range_a / 2**spec.detector.readout_bits
    for n in range(6):
        cur, thr, drop = port_powers_w(chip, drive[n].tolist(), pin[n].tolist())
        np.testing.assert_allclose(ev.through_power_w[n], thr, rtol=2e-5, atol=1e-12)
        np.testing.assert_allclose(ev.drop_power_w[n], drop, rtol=2e-5, atol=1e-12)
        np.testing.assert_allclose(ev.balanced_current_a[n], cur, rtol=0, atol=lsb)


def test_default_chip_fields_match_scalar(chip: Chip) -> None:
    rng = np.random.default_rng(9)
    drive = rng.uniform(0, 4, (3, chip.n_heaters))
    wl = np.array([1549.7e-9, 1553.2e-9, 1558.9e-9])
    e_t, e_d = chip.truth_fields(drive, wavelength_m=wl)
    for n in range(3):
        res = resonances_m(chip, drive[n].tolist())
        np.testing.assert_allclose(chip.truth_resonances_m(drive)[n].reshape(-1), res, rtol=0, atol=1e-18)
        for b in range(chip.n_banks):
            for w in range(3):
                st, sd = bank_fields(chip, res, float(wl[w]), b)
                assert e_t[n, b, w] == pytest.approx(st, abs=1e-10)
                assert e_d[n, b, w] == pytest.approx(sd, abs=1e-10)


def test_port_spectrum_matches_truth(fresh_chip: Chip) -> None:
    fresh_chip.set_lasers(on=np.zeros(fresh_chip.n_channels, dtype=bool))
    fresh_chip.set_heater_drive(np.full(40, 1.5))
    fresh_chip.clock.advance(1e-3)
    wl = np.linspace(1549e-9, 1552e-9, 301)
    spec = fresh_chip.port_spectrum_w(wl, 1e-3, noise=False)
    e_t, e_d = fresh_chip.truth_fields(fresh_chip.heater_drive()[None, :], wavelength_m=wl)
    scale = 1e-3 * 10 ** (-2 * fresh_chip.spec.optics.facet_loss_db / 10)
    np.testing.assert_allclose(spec[:, :, 0], scale * np.abs(e_t[0].T) ** 2, rtol=1e-4, atol=1e-10)
    np.testing.assert_allclose(spec[:, :, 1], scale * np.abs(e_d[0].T) ** 2, rtol=1e-4, atol=1e-10)
