"""The vectorized float32 kernel and the float64 truth path agree with the plain scalar reference (a linear solve
of the per-ring scattering relations); process-parallel evaluation is bit-identical to in-process."""

from __future__ import annotations

import numpy as np
import pytest
from labctl.sim import Chip, ChipSpec
from labctl.sim import chip as chip_module

from .scalar_reference import bank_fields, port_powers_w, resonances_m

CLOSE_BANK = {  # rings one FWHM apart: strong drop-bus -> through-bus re-coupling between neighbours
    "layout": {"n_banks": 1, "n_rings": 3},
    "lasers": {"n_channels": 3, "channel_spacing_m": 0.2e-9},
    "fabrication": {"resonance_offset_m": 0.0},
}


@pytest.mark.parametrize(
    "seed, overrides",
    [(0, None), (1, None), (2, None), (3, CLOSE_BANK), (4, CLOSE_BANK)],
)
def test_evaluate_matches_scalar_reference(seed: int, overrides: dict | None) -> None:
    base = {"layout": {"n_banks": 2, "n_rings": 4}, "lasers": {"n_channels": 5}}
    spec = ChipSpec().with_overrides(overrides or base)
    chip = Chip(spec, seed=seed)
    rng = np.random.default_rng(100 + seed)
    drive = rng.uniform(0, 5, (6, chip.n_heaters))
    pin = rng.uniform(1e-4, 2e-3, (6, chip.n_channels))
    ev = chip.evaluate(drive, pin, noise=False)
    lsb = 2 * spec.detector.readout_range_a / 2**spec.detector.readout_bits
    for n in range(6):
        cur, thr, drop = port_powers_w(chip, drive[n].tolist(), pin[n].tolist())
        np.testing.assert_allclose(ev.through_power_w[n], thr, rtol=1e-5, atol=1e-12)
        np.testing.assert_allclose(ev.drop_power_w[n], drop, rtol=1e-5, atol=1e-12)
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


@pytest.mark.parametrize("n_points, shared_arena", [(5000, True), (2048 + 7, True), (5000, False)])
def test_process_parallel_evaluate_is_bit_identical(
    n_points: int, shared_arena: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """workers=2 splits the batch on block boundaries and draws all noise in the parent: identical arrays, whether
    the shares travel through the shared arena or pickled, and whatever the layout of the caller's arrays."""
    if not shared_arena:
        monkeypatch.setattr(chip_module, "ARENA_BYTES", 0)
    rng = np.random.default_rng(3)
    drive = rng.uniform(0, 5, (n_points, 40))
    pins = [rng.uniform(1e-4, 2e-3, (n_points, 10)), np.full(10, 1e-3), np.asfortranarray(np.full((n_points, 10), 7e-4))]
    ser, par = Chip(ChipSpec(), seed=7), Chip(ChipSpec(), seed=7, workers=2)
    try:
        for noise, pin in ((True, pins[0]), (False, pins[0]), (True, pins[1]), (True, pins[2])):
            a = ser.evaluate(drive, pin, noise=noise)
            b = par.evaluate(drive, pin, noise=noise)
            for field in ("balanced_current_a", "through_power_w", "drop_power_w"):
                np.testing.assert_array_equal(getattr(b, field), getattr(a, field))
        # the noise streams stay in step: the next reading is identical too
        np.testing.assert_array_equal(par.read_balanced_current_a(1e-4), ser.read_balanced_current_a(1e-4))
    finally:
        par.close()
        ser.close()


def test_process_pool_shuts_down_on_close_and_on_collection() -> None:
    import gc

    chip = Chip(ChipSpec(), seed=0, workers=2)
    chip.evaluate(np.zeros((3000, 40)))
    procs = list(chip._proc_pool._processes.values())
    assert procs and all(p.is_alive() for p in procs)
    chip.close()
    assert chip._proc_pool is None and not any(p.is_alive() for p in procs)
    chip.close()  # idempotent
    chip2 = Chip(ChipSpec(), seed=0, workers=2)
    chip2.evaluate(np.zeros((3000, 40)))
    procs = list(chip2._proc_pool._processes.values())
    del chip2
    gc.collect()
    for p in procs:
        p.join(timeout=10)
    assert not any(p.is_alive() for p in procs)


def test_dead_worker_falls_back_in_process_and_pool_restarts() -> None:
    rng = np.random.default_rng(8)
    drive = rng.uniform(0, 5, (3000, 40))
    ser, par = Chip(ChipSpec(), seed=2), Chip(ChipSpec(), seed=2, workers=2)
    try:
        np.testing.assert_array_equal(par.evaluate(drive).through_power_w, ser.evaluate(drive).through_power_w)
        for proc in par._proc_pool._processes.values():
            proc.kill()
            proc.join(timeout=10)
        np.testing.assert_array_equal(par.evaluate(drive).drop_power_w, ser.evaluate(drive).drop_power_w)
        np.testing.assert_array_equal(par.evaluate(drive).balanced_current_a, ser.evaluate(drive).balanced_current_a)
        assert par._proc_pool is not None and all(p.is_alive() for p in par._proc_pool._processes.values())
    finally:
        par.close()
        ser.close()


def test_worker_dying_during_a_batch_is_recomputed_in_process(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    def die(*args: object) -> None:  # the forked worker inherits this: it dies in the middle of its share
        os._exit(3)

    rng = np.random.default_rng(9)
    drive = rng.uniform(0, 5, (5000, 40))
    ser = Chip(ChipSpec(), seed=4)
    monkeypatch.setattr(chip_module, "_share_transmissions", die)
    par = Chip(ChipSpec(), seed=4, workers=2)
    try:
        got = par.evaluate(drive)
        assert par._proc_pool is None  # discarded; the next parallel batch starts a fresh pool
        want = ser.evaluate(drive)
        for field in ("balanced_current_a", "through_power_w", "drop_power_w"):
            np.testing.assert_array_equal(getattr(got, field), getattr(want, field))
    finally:
        par.close()
        ser.close()
