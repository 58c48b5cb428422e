"""Heaters: monotonic shift, self-heating, DAC quantization, crosstalk decay, settling, runaway."""

from __future__ import annotations

import math

import numpy as np
import pytest

from labctl.sim import Chip
from labctl.sim.heaters import HeaterRunawayError, power_from_current_w, power_from_voltage_w


def test_shift_grows_monotonically_with_power(chip: Chip) -> None:
    v = np.linspace(0, 7, 50)
    drive = np.zeros((50, chip.n_heaters))
    drive[:, 5] = v
    res = chip.truth_resonances_m(drive)[:, 0, 5]
    power = chip.truth_heater_power_w(drive)[:, 5]
    assert np.all(np.diff(res) > 0) and np.all(np.diff(power) > 0)


def test_self_heating_makes_shift_nonlinear_in_v2(chip: Chip) -> None:
    drive = np.zeros((2, chip.n_heaters))
    drive[0, 3], drive[1, 3] = 2.0, 4.0
    shift = chip.truth_resonances_m(drive)[:, 0, 3] - chip.truth_resonances_m(np.zeros((1, 40)))[0, 0, 3]
    assert shift[1] / shift[0] < 4 * 0.99  # pure V^2 would give 4
    r0 = chip.truth_params().heater_resistance_ohm[3]
    gamma = chip.truth_params().self_heating_per_w
    p = float(power_from_voltage_w(np.array(3.0), r0, gamma))
    assert r0 * (1 + gamma * p) * p == pytest.approx(9.0, rel=1e-12)  # V^2 = R(P) P
    assert 1 + gamma * 0.030 == pytest.approx(1.04)


def test_current_drive_and_runaway(chip: Chip) -> None:
    r0 = np.array(1000.0)
    p = power_from_current_w(np.array(5e-3), r0, 1.333)
    assert float(p) == pytest.approx(25e-3 / (1 - 1.333 * 25e-3))
    with pytest.raises(HeaterRunawayError):
        power_from_current_w(np.array(0.03), r0, 1.333)


def test_dac_quantization_visible(fresh_chip: Chip) -> None:
    lsb = fresh_chip.spec.heaters.dac_full_scale_v / (2**16 - 1)
    fresh_chip.set_heater_drive(np.full(40, 1.2345678))
    applied = fresh_chip.heater_drive()
    assert np.allclose(applied / lsb, np.round(applied / lsb))
    assert not np.allclose(applied, 1.2345678, rtol=0, atol=1e-9)
    drive = np.full((2, 40), 10000 * lsb)  # on the DAC grid
    drive[1] += 0.3 * lsb  # below half an LSB: no effect
    ev = fresh_chip.truth_resonances_m(drive)
    assert np.array_equal(ev[0], ev[1])
    drive[1] += 0.4 * lsb  # past half an LSB: one step
    ev = fresh_chip.truth_resonances_m(drive)
    assert not np.array_equal(ev[0], ev[1])


def test_crosstalk_decays_with_distance(chip: Chip) -> None:
    k = chip.truth_crosstalk_m_per_w()
    eta = np.diag(k)
    frac = k / eta[None, :]
    nr = chip.n_rings
    same_bank = [np.mean([frac[b * nr + i, b * nr + i + d] for b in range(4) for i in range(nr - d)])
                 for d in range(1, 5)]
    assert all(a > b for a, b in zip(same_bank, same_bank[1:]))
    assert 0.04 < same_bank[0] < 0.16
    adjacent = frac[0:nr, nr : 2 * nr].mean()
    far = frac[0:nr, 3 * nr : 4 * nr].mean()
    assert same_bank[-1] > 0 and adjacent < same_bank[0] and far < adjacent
    assert np.all(k > 0)  # full matrix: every heater reaches every ring


def test_settling_follows_time_constant(fresh_chip: Chip) -> None:
    tau = fresh_chip.spec.thermal.time_constant_s
    fresh_chip.set_heater_drive(np.full(40, 3.0))
    target = fresh_chip.heater_power_w()
    assert np.allclose(fresh_chip.truth_effective_heater_power_w(), 0.0)
    fresh_chip.clock.advance(tau, "settle")
    assert np.allclose(fresh_chip.truth_effective_heater_power_w() / target, 1 - math.exp(-1))
    early = fresh_chip.read_port_power_w(1e-3)
    fresh_chip.clock.advance(10 * tau, "settle")
    assert np.allclose(fresh_chip.truth_effective_heater_power_w(), target, rtol=1e-4)
    late = fresh_chip.read_port_power_w(1e-3)
    assert np.max(np.abs(late - early) / late) > 0.01  # reading too early gives a wrong value


def test_subset_drive(fresh_chip: Chip) -> None:
    fresh_chip.set_heater_drive([1.0, 2.0], channels=[3, 7])
    d = fresh_chip.heater_drive()
    assert d[3] == pytest.approx(1.0, abs=1e-3) and d[7] == pytest.approx(2.0, abs=1e-3) and d[0] == 0
    fresh_chip.set_heater_drive([0.005], mode="current", channels=[0])
    assert fresh_chip.heater_modes()[0] == "current" and fresh_chip.heater_modes()[3] == "voltage"
    assert fresh_chip.heater_power_w()[0] == pytest.approx(25e-3, rel=0.1)
