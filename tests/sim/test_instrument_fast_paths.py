"""The instrument-side fast paths give the same numbers, noise draws included, as the plain computations they
replaced (so a dry run reads the same for the same seed as before they existed):

* ``Chip.set_heater_drive`` (one compiled pass) against the numpy formulas of :mod:`labctl.sim.heaters` on every
  heater, voltage and current drive, partial and full writes;
* ``Chip.read_port_power_w`` against the one-point ``_simulate`` path it shortcuts (ports and the noise stream
  afterwards);
* ``Chip.meter_reading_groups_w`` against ``meter_reading_w`` called once per (averaging time, range) group in the
  order the groups first appear.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from labctl.sim import Chip, ChipSpec
from labctl.sim import heaters as H


def _reference_power(chip: Chip, drive: np.ndarray, is_current: np.ndarray) -> np.ndarray:
    p = chip.truth_params()
    volt = H.power_from_voltage_w(np.where(is_current, 0.0, drive), p.heater_resistance_ohm, p.self_heating_per_w)
    curr = H.power_from_current_w(np.where(is_current, drive, 0.0), p.heater_resistance_ohm, p.self_heating_per_w)
    return np.where(is_current, curr, volt)


def test_heater_command_is_the_heaters_arithmetic_to_the_bit() -> None:
    chip = Chip(ChipSpec(), seed=4)
    spec = chip.spec.heaters
    rng = np.random.default_rng(9)
    drive = np.zeros(chip.n_heaters)
    is_current = np.zeros(chip.n_heaters, dtype=bool)
    target = np.zeros(chip.n_heaters)
    start = np.zeros(chip.n_heaters)
    t0 = 0.0
    tau = chip.spec.thermal.time_constant_s
    for step in range(60):
        mode = "current" if step % 3 == 0 else "voltage"
        fs = spec.dac_full_scale_a if mode == "current" else spec.dac_full_scale_v
        channels = None if step % 7 == 0 else rng.choice(chip.n_heaters, size=8, replace=False)
        idx = np.arange(chip.n_heaters) if channels is None else channels
        values = rng.uniform(-0.05 * fs, 0.6 * fs, idx.size)
        values[0] = -0.0
        chip.clock.advance(float(rng.uniform(0, 3 * tau)), "test")  # the settling restarts part-way
        chip.set_heater_drive(values, mode=mode, channels=channels)
        # the reference: quantize, recompute every heater's power, restart the settling from the effective power
        now = chip.clock.now_s
        drive[idx] = H.quantize_drive(values, spec.dac_bits, fs)
        is_current[idx] = mode == "current"
        decay = math.exp(-max(now - t0, 0.0) / tau)  # as ThermalSettling computes it
        start = target + (start - target) * decay
        target = _reference_power(chip, drive, is_current)
        t0 = now
        assert np.array_equal(chip.heater_drive(), drive)
        assert np.array_equal(chip.heater_power_w(), target)
        assert np.array_equal(np.signbit(chip.heater_drive()), np.signbit(drive))
    state = chip.state_dict()["settling"]
    assert np.array_equal(np.array(state["start_w"]), start)


def test_port_powers_skip_only_the_unreported_detector() -> None:
    fast, slow = Chip(ChipSpec(), seed=6), Chip(ChipSpec(), seed=6)
    for chip in (fast, slow):
        chip.set_heater_drive(np.linspace(0, 3, chip.n_heaters))
        chip.clock.advance(1e-3, "test")
    for t in (1e-4, 1e-3, 1e-4):
        ports = fast.read_port_power_w(t)
        _, thr, drop = slow._state_simulate(t)
        assert np.array_equal(ports, np.stack([thr[:, 0], drop[:, 0]], axis=1) * slow._output_factor)
    # the noise streams are at the same place afterwards: every later reading is the same
    assert np.array_equal(fast.instrument_normals(5), slow.instrument_normals(5))


def test_meter_groups_draw_and_compute_as_one_call_per_group() -> None:
    fast, slow = Chip(ChipSpec(), seed=8), Chip(ChipSpec(), seed=8)
    rng = np.random.default_rng(1)
    power = rng.uniform(1e-7, 2e-3, 12)
    averaging = np.array([1e-4, 1e-3, 1e-4, 1e-4, 2e-3, 1e-3, 1e-4, 1e-4, 1e-3, 2e-3, 1e-4, 1e-4])
    ranges = np.array([0.0, 0.0, -10.0, 0.0, 10.0, 0.0, -10.0, -30.0, 0.0, 10.0, 0.0, -30.0])
    meters = np.arange(12) % 8
    grouped = fast.meter_reading_groups_w(power, averaging, ranges, meters)
    expected = np.empty(12)
    over = np.zeros(12, dtype=bool)
    groups: dict[tuple[float, float], list[int]] = {}
    for i, key in enumerate(zip(averaging.tolist(), ranges.tolist())):
        groups.setdefault(key, []).append(i)
    for (t, r), idx in groups.items():
        reading = slow.meter_reading_w(power[idx], t, r, meter=meters[idx])
        expected[idx], over[idx] = reading.power_w, reading.over_range
    assert np.array_equal(grouped.power_w, expected) and np.array_equal(grouped.over_range, over)
    assert np.array_equal(fast.instrument_normals(3), slow.instrument_normals(3))


def test_a_refused_heater_command_changes_nothing() -> None:
    """The compiled command validates the whole command before it applies any of it."""
    chip = Chip(ChipSpec(), seed=3)
    chip.set_heater_drive(np.linspace(0.5, 2.0, chip.n_heaters))
    chip.clock.advance(1e-4, "test")
    before = chip.state_dict()
    bad_value = np.array([1.0, math.nan, 2.0])
    with pytest.raises(ValueError, match="finite"):
        chip.set_heater_drive(bad_value, channels=np.array([0, 1, 2]))
    with pytest.raises(ValueError, match=r"heater channels must be in \[0, 40\)"):
        chip.set_heater_drive(np.array([1.0, 2.0]), channels=np.array([3, chip.n_heaters]))
    after = chip.state_dict()
    for key in ("drive", "is_current", "settling", "last_drive_time_s"):
        assert after[key] == before[key], key


def test_meter_plans_repeat_and_single_groups_draw_as_the_plain_model() -> None:
    """A repeated (averaging times, ranges) pattern, and one of a single group, read as the plain meter model."""
    fast, slow = Chip(ChipSpec(), seed=8), Chip(ChipSpec(), seed=8)
    rng = np.random.default_rng(2)
    meters = np.arange(8)
    for averaging, ranges in [(np.full(8, 1e-3), np.full(8, -10.0)),
                              (np.full(8, 1e-3), np.array([0.0, -10.0, 0.0, -20.0, 0.0, 0.0, -10.0, -20.0])),
                              (np.full(8, 1e-3), np.array([0.0, -10.0, 0.0, -20.0, 0.0, 0.0, -10.0, -20.0])),
                              (np.full(8, 1e-3), np.full(8, -10.0))]:
        power = rng.uniform(1e-7, 1e-3, 8)
        got = fast.meter_reading_groups_w(power, averaging, ranges, meters)
        expected, over = np.empty(8), np.zeros(8, dtype=bool)
        groups: dict[tuple[float, float], list[int]] = {}
        for i, key in enumerate(zip(averaging.tolist(), ranges.tolist())):
            groups.setdefault(key, []).append(i)
        for (t, r), idx in groups.items():
            reading = slow.meter_reading_w(power[idx], t, r, meter=meters[idx])
            expected[idx], over[idx] = reading.power_w, reading.over_range
        assert np.array_equal(got.power_w, expected) and np.array_equal(got.over_range, over)
    with pytest.raises(ValueError, match="range_dbm must be one of"):
        fast.meter_reading_groups_w(np.ones(2) * 1e-4, np.full(2, 1e-3), np.array([-10.0, -11.0]), np.arange(2))


def test_port_readings_follow_every_laser_change() -> None:
    """A reading depends only on the chip's state, not on the readings taken before it (the chip keeps the bank
    input powers between laser changes): the same as a chip restored from that state."""
    chips = [Chip(ChipSpec(), seed=11), Chip(ChipSpec(), seed=11)]
    for chip in chips:
        chip.set_heater_drive(np.linspace(0, 3, chip.n_heaters))
        chip.clock.advance(1e-3, "test")
    readings: list[list[np.ndarray]] = [[], []]
    for step, (power_w, ramp_s) in enumerate([(1e-3, 0.0), (2e-3, 0.0), (0.5e-3, 1e-3), (0.5e-3, 0.0)]):
        for which, chip in enumerate(chips):
            if which == 1:
                chip.load_state_dict(chip.state_dict())  # a fresh start from the same state before every change
            chip.set_lasers(power_w=np.full(chip.n_channels, power_w), power_ramp_s=ramp_s)
            readings[which].append(chip.read_port_power_w(1e-3))               # mid-ramp on step 2
            chip.clock.advance(2e-3, "test")
            readings[which].append(chip.read_port_power_w(1e-3))               # settled
            if which == 1:
                chip.load_state_dict(chip.state_dict())
            readings[which].append(chip.read_port_power_w(1e-3))
    for a, b in zip(*readings):
        assert np.array_equal(a, b)
    assert not np.allclose(readings[0][1], readings[0][4], rtol=0.1)  # the laser power change shows


def test_a_reading_formatted_at_once_is_each_value_formatted() -> None:
    from labctl.sim.instruments.keysight_models import keysight_float, keysight_floats

    rng = np.random.default_rng(4)
    values = (rng.uniform(-1, 1, 400) * 10.0 ** rng.integers(-320, 308, 400)).tolist() + [9.91e37, 0.0, -0.0, 1e-5]
    for k in range(0, len(values), 8):
        assert keysight_floats(values[k:k + 8]) == ",".join(map(keysight_float, values[k:k + 8]))
    with pytest.raises(IndexError):  # a non-finite value fails as it always did
        keysight_floats([1.0, math.nan])


def test_an_all_port_reading_gathers_as_the_per_averaging_time_path() -> None:
    """The N774x model's all-port reading (every port wired, one averaging time: one chip read and one gather)
    returns what the general path returns, and leaves the noise stream where it leaves it; with two averaging
    times the general path runs (one chip read per time)."""
    from labctl.sim.emulated_bench import EmulatedBench, SimulatedInstrument
    from labctl.sim.instruments.keysight_models import KeysightPowerMeterModel
    from labctl.sim.profiles.keysight import KEYSIGHT_N7745A

    port_map = [(b, k) for b in range(4) for k in (0, 1)]
    models, benches = [], []
    for _ in range(2):
        chip = Chip(ChipSpec(), seed=5)
        chip.set_heater_drive(np.linspace(0, 3, chip.n_heaters))
        model = KeysightPowerMeterModel("meter", port_map)
        benches.append(EmulatedBench(chip, [SimulatedInstrument("meter", KEYSIGHT_N7745A, model)]))
        models.append(model)
    fast, general = models
    assert fast._all_wired
    general._all_wired = False  # the per-averaging-time path, as before the gather existed
    try:
        for now_s in (False, True):
            for model in models:
                model.chip.clock.advance(1e-4, "test")
            window_start = models[0].chip.clock.now_s if now_s else None  # a window that starts now
            ports = list(range(fast.n_ports))
            a = fast._optical_w(ports, fast._averaging, window_start)
            b = general._optical_w(ports, general._averaging, window_start)
            assert a.dtype == b.dtype and np.array_equal(a, b)
            assert np.array_equal(fast.chip.read_port_power_w(1e-3), general.chip.read_port_power_w(1e-3))
        times = [1e-3] * 4 + [1e-2] * 4
        assert np.array_equal(fast._optical_w(ports, times), general._optical_w(ports, times))
    finally:
        for bench in benches:
            bench.close()
