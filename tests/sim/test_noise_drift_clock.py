"""Noise scaling with averaging time, power-meter model, drift random walk, virtual clock, determinism."""

from __future__ import annotations

import numpy as np
import pytest

from labctl.sim import Chip, ChipSpec, VirtualClock
from labctl.sim.drift import TemperatureDrift


def test_balanced_noise_scales_inverse_sqrt_time() -> None:
    spec = ChipSpec().with_overrides({"detector": {"readout_bits": 40}})  # resolve noise below the 16-bit LSB
    chip = Chip(spec, seed=5)
    drive = np.tile(np.full(chip.n_heaters, 2.0), (4000, 1))
    s1 = chip.evaluate(drive, averaging_time_s=1e-4).balanced_current_a.std(axis=0)
    s2 = chip.evaluate(drive, averaging_time_s=1e-2).balanced_current_a.std(axis=0)
    assert np.allclose(s1 / s2, 10.0, rtol=0.1)


def test_port_power_noise_scales_inverse_sqrt_time(fresh_chip: Chip) -> None:
    a = np.array([fresh_chip.read_port_power_w(1e-5) for _ in range(1500)])
    b = np.array([fresh_chip.read_port_power_w(1e-3) for _ in range(1500)])
    assert np.allclose(a.std(axis=0) / b.std(axis=0), 10.0, rtol=0.12)


def test_meter_noise_nonlinearity_quantization(fresh_chip: Chip) -> None:
    p = np.full(20000, 5e-12)
    r1 = fresh_chip.meter_reading_w(p, 1e-4, -80.0).power_w
    r2 = fresh_chip.meter_reading_w(p, 1e-2, -80.0).power_w
    assert r1.std() == pytest.approx(1e-12, rel=0.05)
    assert r1.std() / r2.std() == pytest.approx(10.0, rel=0.1)
    big = np.full((4, 2), 5e-4)
    reading = fresh_chip.meter_reading_w(big, 1e-4, 0.0)
    err_db = 10 * np.log10(reading.power_w / big)
    assert np.all(np.abs(err_db) <= 0.02 + 1e-3) and np.std(err_db) > 0  # fixed per meter, within +-0.02 dB
    lsb = 1e-3 / 2**16
    assert np.allclose(reading.power_w / lsb, np.round(reading.power_w / lsb))
    over = fresh_chip.meter_reading_w(np.array([2e-3, 5e-4]), 1e-4, 0.0)
    assert over.over_range.tolist() == [True, False]
    with pytest.raises(ValueError):
        fresh_chip.meter_reading_w(big, 1e-4, 3.0)


def test_drift_moves_all_resonances_together_and_grows() -> None:
    chip = Chip(seed=11)
    zero = np.zeros((1, chip.n_heaters))
    r0 = chip.truth_resonances_m(zero)
    chip.clock.advance(600.0, "wait")
    shift = chip.truth_resonances_m(zero) - r0
    assert np.allclose(shift, shift.flat[0], rtol=0, atol=1e-18) and shift.flat[0] != 0
    finals = {}
    for horizon in (60.0, 600.0):
        offsets = []
        for seed in range(600):
            clock = VirtualClock()
            drift = TemperatureDrift(0.010, 600.0, np.random.default_rng(seed), clock)
            for _ in range(6):
                clock.advance(horizon / 6)
            offsets.append(drift.offset_k)
        finals[horizon] = np.std(offsets)
    assert finals[600.0] == pytest.approx(0.010, rel=0.1)
    assert finals[600.0] / finals[60.0] == pytest.approx(np.sqrt(10), rel=0.15)


def test_drift_drawn_when_read_is_the_walk_drawn_at_every_advance() -> None:
    """The walk's normals are drawn when the temperature is read; the offsets are the eager walk's, to the bit."""
    steps = np.random.default_rng(3).uniform(0.0, 2e-3, 300)
    steps[::7] = 0.0  # advances of zero draw nothing
    clock_a, clock_b = VirtualClock(), VirtualClock()
    lazy = TemperatureDrift(0.010, 600.0, np.random.default_rng(5), clock_a)
    read = TemperatureDrift(0.010, 600.0, np.random.default_rng(5), clock_b)
    eager_rng, offset = np.random.default_rng(5), 0.0
    scale = 0.010 / np.sqrt(600.0)
    for k, dt in enumerate(steps):
        clock_a.advance(float(dt))
        clock_b.advance(float(dt))
        if dt > 0:
            offset += scale * np.sqrt(dt) * float(eager_rng.standard_normal())
        assert read.offset_k == offset
        if k == 150:
            state = lazy.state_dict()  # a checkpoint mid-way sees every advance so far
            assert state["offset_k"] == offset
    assert lazy.offset_k == offset


def test_clock_totals_and_monotonic() -> None:
    clock = VirtualClock()
    clock.advance(0.002, "scpi_query")
    clock.advance(0.002, "scpi_query")
    clock.advance(0.1, "laser_wavelength")
    assert clock.now_s == pytest.approx(0.104)
    assert clock.totals() == pytest.approx({"scpi_query": 0.004, "laser_wavelength": 0.1})
    assert clock.counts()["scpi_query"] == 2
    with pytest.raises(ValueError):
        clock.advance(-1.0)


def test_same_seed_same_chip_and_noise() -> None:
    a, b, c = Chip(seed=7), Chip(seed=7), Chip(seed=8)
    drive = np.random.default_rng(0).uniform(0, 4, (50, 40))
    assert np.array_equal(a.truth_crosstalk_m_per_w(), b.truth_crosstalk_m_per_w())
    ea, eb = a.evaluate(drive), b.evaluate(drive)
    assert np.array_equal(ea.through_power_w, eb.through_power_w)
    assert np.array_equal(ea.balanced_current_a, eb.balanced_current_a)
    assert not np.array_equal(a.truth_params().fabrication_offset_m, c.truth_params().fabrication_offset_m)
    a.clock.advance(100.0)
    b.clock.advance(100.0)
    assert a.truth_temperature_offset_k() == b.truth_temperature_offset_k()


def test_noise_free_evaluate_is_repeatable(chip: Chip) -> None:
    drive = np.random.default_rng(1).uniform(0, 4, (10, 40))
    e1, e2 = chip.evaluate(drive, noise=False), chip.evaluate(drive, noise=False)
    assert np.array_equal(e1.drop_power_w, e2.drop_power_w)
