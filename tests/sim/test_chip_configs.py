"""The configuration-batch paths of the chip (photonic DFA's fast path) against the point path, and chip state
checkpoints."""

from __future__ import annotations

import numpy as np
from labctl.sim.chip import Chip
from labctl.sim.chip_spec import ChipSpec
from labctl.sim.detection import auto_range_dbm
from labctl.sim.instruments.keysight_models import AUTO_RANGE_MARGIN_DB


def _inputs(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.uniform(0.0, 2.5, (5, 40)), rng.uniform(1e-4, 1e-3, (5, 7, 10))


def test_evaluate_configs_equals_evaluate_on_the_expanded_points() -> None:
    chip = Chip(seed=3)
    drive, power = _inputs()
    batch = chip.evaluate_configs(drive, power, noise=False)
    points = chip.evaluate(np.repeat(drive, 7, axis=0), power.reshape(-1, 10), noise=False)
    for name in ("balanced_current_a", "through_power_w", "drop_power_w"):
        np.testing.assert_allclose(getattr(batch, name).reshape(-1, 4), getattr(points, name), rtol=1e-12,
                                   atol=1e-18)


def test_fused_meter_readings_equal_the_meter_model_of_the_port_powers() -> None:
    spec = ChipSpec().with_overrides({"power_meter": {"noise_w": 0.0}, "lasers": {"rin_db_per_hz": -400.0}})
    chip = Chip(spec, seed=5)
    drive, power = _inputs(1)
    fused = chip.meter_readings_configs(drive, power, 1e-4, AUTO_RANGE_MARGIN_DB)
    ev = chip.evaluate_configs(drive, power, noise=False)
    ports = np.stack([ev.through_power_w, ev.drop_power_w], axis=-1)
    ranges = auto_range_dbm(ports, spec.power_meter.ranges_dbm, AUTO_RANGE_MARGIN_DB)
    reading = chip.meter_reading_w(ports, 1e-4, ranges).power_w
    np.testing.assert_allclose(fused, reading[..., 1] - reading[..., 0], rtol=0, atol=1e-12)
    assert np.abs(fused).max() > 1e-6


def test_state_dict_restores_noise_drift_clock_and_lasers() -> None:
    chip = Chip(seed=2)
    chip.set_lasers(wavelength_m=chip.laser_wavelength_m() + 1e-12, power_w=np.full(10, 2e-3))
    chip.clock.advance(100.0, "idle")
    state = chip.state_dict()
    drive, power = _inputs(2)
    first = chip.meter_readings_configs(drive, power, 1e-4, 0.2)
    chip.clock.advance(50.0, "idle")
    chip.load_state_dict(state)
    np.testing.assert_array_equal(chip.meter_readings_configs(drive, power, 1e-4, 0.2), first)
    assert chip.clock.now_s == 100.0
