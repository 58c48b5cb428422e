"""Compiled kernels: the same bits as the numpy maths they replace, one compiled variant each (a second variant
would cost seconds of compilation in every fresh process), and in-process threads give the same arrays as one
thread."""

from __future__ import annotations

import numpy as np
from labctl.sim import Chip, ChipSpec
from labctl.sim.optics import kernels


def test_voltage_heater_power_matches_the_numpy_maths(chip: Chip) -> None:
    p = chip.truth_params()
    rng = np.random.default_rng(1)
    fs = chip.spec.heaters.dac_full_scale_v
    lsb = fs / (2**chip.spec.heaters.dac_bits - 1)
    drive = rng.uniform(-1.0, fs + 1.0, (300, chip.n_heaters))
    r0 = np.ascontiguousarray(p.heater_resistance_ohm, dtype=np.float64)
    got = np.empty_like(drive)
    kernels().voltage_heater_power(drive, fs, 1.0 / lsb, lsb, r0, r0 * r0, 4.0 * p.self_heating_per_w * r0, got)
    v = np.minimum(np.maximum(drive, 0.0), fs)  # the numpy path this kernel replaced, operation by operation
    v *= 1.0 / lsb
    np.rint(v, out=v)
    v *= lsb
    np.square(v, out=v)
    root = v * (4.0 * p.self_heating_per_w * r0)
    root += r0 * r0
    np.sqrt(root, out=root)
    root += r0
    v *= 2.0
    v /= root
    np.testing.assert_array_equal(got, v)


def test_half_phase_args_match_the_numpy_maths(chip: Chip) -> None:
    rng = np.random.default_rng(2)
    res = chip.truth_resonances_m(rng.uniform(0, 4, (50, chip.n_heaters))).reshape(50, -1).T.copy()
    coef, ref = rng.uniform(1e-3, 2e-3, res.shape[0]), rng.uniform(1e6, 2e6, res.shape[0])
    got = np.empty(res.shape, np.float32)
    kernels().half_phase_args(res, coef, ref, got)
    np.testing.assert_array_equal(got, (ref[:, None] - coef[:, None] / res).astype(np.float32))


def test_one_compiled_variant_per_kernel() -> None:
    """Every emulator path passes the kernels the same argument types (C-contiguous, writable, fixed dtypes)."""
    chip = Chip(ChipSpec(), seed=3)
    rng = np.random.default_rng(3)
    drive = rng.uniform(0, 4, (700, chip.n_heaters))
    chip.evaluate(drive)
    chip.evaluate(np.asfortranarray(drive), rng.uniform(1e-4, 2e-3, (700, chip.n_channels)), noise=False)
    ro = drive[:5].copy()
    ro.flags.writeable = False
    chip.evaluate(ro)
    chip.set_heater_drive(np.full(chip.n_heaters, 1.0))
    chip.read_port_power_w(1e-4)
    chip.port_spectrum_w(np.linspace(1549e-9, 1552e-9, 101), 1e-3)
    k = kernels()
    k.warm_up()
    for f in (k.bank_powers, k.voltage_heater_power, k.half_phase_args):
        assert len(f.signatures) == 1, (f.__name__, f.signatures)


def test_threads_give_the_same_arrays_as_one_thread() -> None:
    rng = np.random.default_rng(4)
    drive = rng.uniform(0, 5, (3000, 40))
    one, two = Chip(ChipSpec(), seed=5), Chip(ChipSpec(), seed=5, threads=2)
    try:
        for noise in (True, False):
            a, b = one.evaluate(drive, noise=noise), two.evaluate(drive, noise=noise)
            for field in ("balanced_current_a", "through_power_w", "drop_power_w"):
                np.testing.assert_array_equal(getattr(b, field), getattr(a, field))
    finally:
        one.close()
        two.close()
