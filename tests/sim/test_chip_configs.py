"""The configuration-batch paths of the chip (photonic DFA's fast path) against the point path, and chip state
checkpoints."""

from __future__ import annotations

import numpy as np
import pytest
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


def test_meter_readings_with_a_power_index_equal_the_expanded_powers() -> None:
    drive, power = _inputs(3)
    blocks = power[:2]                                   # K = 2 settings shared by 5 configurations
    index = np.array([0, 1, 1, 0, 1])
    by_index = Chip(seed=4).meter_readings_configs(drive, blocks, 1e-4, 0.2, power_index=index)
    expanded = Chip(seed=4).meter_readings_configs(drive, blocks[index], 1e-4, 0.2)
    np.testing.assert_array_equal(by_index, expanded)
    shared = Chip(seed=4).meter_readings_configs(drive, power[0], 1e-4, 0.2)
    np.testing.assert_array_equal(shared, Chip(seed=4).meter_readings_configs(drive, np.repeat(power[:1], 5, 0),
                                                                               1e-4, 0.2))


def test_meter_readings_in_chunks_depend_on_the_seed_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """More configurations than one chunk: every chunk has its own noise stream, so one thread or several give the
    same readings, and a chip with the same seed repeats them."""
    import labctl.sim.chip as chip_module

    rng = np.random.default_rng(7)
    n_cfg = 2 * chip_module.METER_CHUNK_CONFIGS + 22
    drive, power = rng.uniform(0.0, 2.5, (n_cfg, 40)), rng.uniform(1e-4, 1e-3, (3, 10))
    results = []
    for threads in (1, 2, 3):
        monkeypatch.setattr(chip_module, "METER_THREADS", threads)
        chip = Chip(seed=6)
        results.append(chip.meter_readings_configs(drive, power, 1e-4, 0.2))
        second = chip.meter_readings_configs(drive, power, 1e-4, 0.2)
        chip.close()
    for r in results[1:]:
        np.testing.assert_array_equal(r, results[0])
    assert not np.array_equal(second, results[0])          # the next call draws new noise
    # chunks do not share noise: the same configuration in every chunk reads differently in each
    noisy = Chip(ChipSpec().with_overrides({"power_meter": {"noise_w": 1e-6}}), seed=6)
    same = noisy.meter_readings_configs(np.repeat(drive[:1], n_cfg, axis=0), power, 1e-4, 0.2)
    step = chip_module.METER_CHUNK_CONFIGS
    assert not np.array_equal(same[0], same[step]) and not np.array_equal(same[step], same[2 * step])


def test_meter_readings_reject_a_bad_power_index() -> None:
    drive, power = _inputs(4)
    with pytest.raises(ValueError, match="power_index"):
        Chip(seed=1).meter_readings_configs(drive, power[:2], 1e-4, 0.2, power_index=np.array([0, 1, 2, 0, 1]))


@pytest.mark.parametrize("noise_lsb", [0.05, 0.3, 3.0])
def test_fused_meter_noise_has_the_meter_models_statistics(noise_lsb: float) -> None:
    """With meter noise from well below to well above the readout step, the fused pass's quantized readings have
    the statistics of the instruments' meter model (chunked noise streams included)."""
    lsb = 1e-3 / 2**16                                     # most readings here are on the 0 dBm range
    spec = ChipSpec().with_overrides({"power_meter": {"noise_w": noise_lsb * lsb},
                                      "lasers": {"rin_db_per_hz": -400.0}})
    chip = Chip(spec, seed=8)
    drive, power = _inputs(5)
    reps = 600
    d, p = np.repeat(drive[:2], reps, axis=0), power[:2, :3].repeat(reps, axis=0)
    fused = chip.meter_readings_configs(d, p, 1e-4, AUTO_RANGE_MARGIN_DB).reshape(2, reps, 3, 4)
    ev = chip.evaluate_configs(d, p, noise=False)
    ports = np.stack([ev.through_power_w, ev.drop_power_w], axis=-1)
    ranges = auto_range_dbm(ports, spec.power_meter.ranges_dbm, AUTO_RANGE_MARGIN_DB)
    assert np.mean(ranges == 0.0) > 0.5
    model = chip.meter_reading_w(ports, 1e-4, ranges).power_w
    model = (model[..., 1] - model[..., 0]).reshape(2, reps, 3, 4)
    # per reading position: mean and spread over the repetitions agree within their sampling error
    se = np.sqrt((fused.var(axis=1) + model.var(axis=1)) / reps) + 1e-3 * lsb
    assert np.all(np.abs(fused.mean(axis=1) - model.mean(axis=1)) < 5 * se)
    np.testing.assert_allclose(fused.std(axis=1).mean(), model.std(axis=1).mean(), rtol=0.1, atol=0.02 * lsb)
