"""Qontrol Q8iv chain model: the unchanged Qontrol driver drives the emulated chip's heaters through it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from labctl.drivers.errors import InstrumentConnectionError, InstrumentReportedError
from labctl.drivers.qontrol import Qontrol
from labctl.sim import Chip, ChipSpec
from labctl.sim.emulated_bench import EmulatedBench, SimulatedInstrument
from labctl.sim.instruments import MODELS
from labctl.sim.instruments.qontrol_model import QontrolModel
from labctl.sim.profiles import ALL

PROFILE = {p.device: p for p in ALL}["Qontrol Q8iv"]
N_MODULES = 5
N_CHANNELS = 8 * N_MODULES
#: instrument channel k drives heater WIRING[k] (a scrambled harness, so the mapping is really exercised)
WIRING = np.random.default_rng(7).permutation(N_CHANNELS)


class Spy:
    """Counts heater commands to the chip (one per command line is the contract): ``set_heater_drive`` and the
    conversion-free ``command_heaters`` it ends in (what the model calls), each command counted once."""

    def __init__(self, chip: Chip) -> None:
        self.calls: list[dict[str, Any]] = []
        self._orig = chip.command_heaters

        def wrapped(values: np.ndarray, channels: np.ndarray, current: bool) -> None:
            self.calls.append({"values": np.array(values, dtype=float), "mode": "current" if current else "voltage",
                               "channels": np.array(channels)})
            self._orig(values, channels, current)

        chip.command_heaters = wrapped  # type: ignore[method-assign]


def _bench(chip: Chip, wiring: np.ndarray, n_modules: int) -> tuple[EmulatedBench, QontrolModel]:
    model = QontrolModel("heaters", wiring, n_modules)
    bench = EmulatedBench(chip, [SimulatedInstrument("heaters", PROFILE, model, serial=True)])
    return bench, model


@pytest.fixture
def setup() -> Iterator[tuple[Chip, EmulatedBench, Qontrol]]:
    chip = Chip(ChipSpec(), seed=3)
    bench, _ = _bench(chip, WIRING, N_MODULES)
    driver = Qontrol(bench.address("heaters"), name="heaters", clock=bench.chip.clock, quiet_s=0.002, max_voltage_v=7.0)
    try:
        yield chip, bench, driver
    finally:
        driver.close()
        bench.close()


def test_registry_entry() -> None:
    entry = MODELS["qontrol"]
    assert entry.model is QontrolModel and entry.device == PROFILE.device
    assert entry.serial


def test_connect_enumerates_the_whole_chain(setup: tuple[Chip, EmulatedBench, Qontrol]) -> None:
    chip, _, q = setup
    assert q.n_channels == N_CHANNELS and len(q.modules) == N_MODULES
    assert [m.first_channel for m in q.modules] == [0, 8, 16, 24, 32]
    np.testing.assert_allclose(q.max_drive(), 7.0)  # VMAX set and read back through VMAXALL?
    assert q.identity().model == "Q8iv"
    np.testing.assert_array_equal(chip.heater_drive(), 0.0)


def test_vvec_moves_exactly_those_heaters_and_their_resonances(setup: tuple[Chip, EmulatedBench, Qontrol]) -> None:
    chip, _, q = setup
    spy = Spy(chip)
    volts = np.linspace(1.0, 4.5, 8)
    channels = np.arange(8, 16)  # module 1: one VVEC8 line
    lines_before = q.transport.write_count
    q.set_drive(volts, channels=channels)
    assert q.transport.write_count - lines_before == 1

    assert len(spy.calls) == 1 and spy.calls[0]["mode"] == "voltage"
    np.testing.assert_array_equal(spy.calls[0]["channels"], WIRING[channels])
    drive = chip.heater_drive()
    heated = WIRING[channels]
    lsb = chip.spec.heaters.dac_full_scale_v / (2**chip.spec.heaters.dac_bits - 1)
    np.testing.assert_allclose(drive[heated], volts, atol=lsb)
    assert np.all(np.delete(drive, heated) == 0.0)
    assert chip.heater_modes()[heated[0]] == "voltage"

    # resonances move by K @ P, and each heated ring by about its own tuning efficiency x V^2/R
    hot = chip.truth_resonances_m(drive)[0]
    cold = chip.truth_resonances_m(np.zeros_like(drive))[0]  # same instant: the chip temperature drifts
    shift = (hot - cold).reshape(-1)
    np.testing.assert_allclose(shift, chip.truth_crosstalk_m_per_w() @ chip.heater_power_w(), rtol=1e-9,
                               atol=1e-18)  # exact: no drift between the two truth calls
    hs = chip.spec.heaters
    nominal = hs.tuning_efficiency_m_per_w * volts**2 / hs.resistance_ohm
    np.testing.assert_allclose(shift[heated], nominal, rtol=0.25)
    others = np.setdiff1d(np.arange(chip.n_heaters), heated)  # moved by thermal crosstalk only
    assert 0.0 < np.max(np.abs(shift[others])) < 0.2 * np.max(shift[heated])


def test_read_backs_follow_the_chip(setup: tuple[Chip, EmulatedBench, Qontrol]) -> None:
    chip, _, q = setup
    volts = np.random.default_rng(1).uniform(0.0, 5.0, N_CHANNELS)
    volts[3] = 0.0
    q.set_drive(volts)  # one VVEC per module
    power = q.read_power_w()
    assert power is not None
    expected = chip.heater_power_w()[WIRING]
    np.testing.assert_allclose(power, expected, atol=1e-7)  # VIPALL? prints 0.1 uW
    assert power[3] == 0.0
    np.testing.assert_allclose(q.read_drive(), volts, atol=2e-4)  # VALL?: applied, quantised, 4 decimals
    assert q.channel(12).voltage_v == pytest.approx(volts[12], abs=2e-4)
    expected_ma = expected[20] / chip.heater_drive()[WIRING[20]] * 1e3
    assert q.channel(20).current_ma == pytest.approx(expected_ma, abs=1e-4)


def test_value_above_vmax_is_refused_with_E01(setup: tuple[Chip, EmulatedBench, Qontrol]) -> None:
    chip, _, q = setup
    q.channel(5).vmax_v = 3.0  # the firmware limit is lowered behind the driver's back
    assert q.channel(5).vmax_v == pytest.approx(3.0)
    with pytest.raises(InstrumentReportedError) as info:
        q.set_drive(np.array([5.0]), channels=np.array([5]))
    assert info.value.errors[0][0] == 1 and "channel 5" in str(info.value)
    assert info.value.command == "V5=5.0000"
    assert chip.heater_drive()[WIRING[5]] == 0.0  # not applied
    # a vector line with one bad value applies none of its values
    with pytest.raises(InstrumentReportedError, match="channel 5"):
        q.set_drive(np.full(8, 4.0), channels=np.arange(8))
    assert np.all(chip.heater_drive()[WIRING[:8]] == 0.0)
    assert q.error_log() == ["#  0, E01:05, 0 m ago", "#  1, E01:05, 0 m ago"]
    q.set_drive(np.array([2.5]), channels=np.array([5]))  # below the new limit: fine
    assert chip.heater_drive()[WIRING[5]] == pytest.approx(2.5, abs=2e-4)


def test_unknown_command_and_channel_beyond_chain(setup: tuple[Chip, EmulatedBench, Qontrol]) -> None:
    _, _, q = setup
    with pytest.raises(InstrumentReportedError) as info:
        q.query(f"V{N_CHANNELS + 3}?")
    assert info.value.errors[0][0] == 12
    with pytest.raises(InstrumentReportedError) as info:
        q.query("FROB?")
    assert info.value.errors[0][0] == 10
    assert q.query("v2?") == "+0.0000 V"  # commands are case-insensitive


def test_current_mode_and_unconnected_outputs() -> None:
    chip = Chip(ChipSpec(), seed=3)
    wiring = np.array([4, 9, 17, -1, 30, -1, 2, 11])
    bench, _ = _bench(chip, wiring, 1)
    spy = Spy(chip)
    q = Qontrol(bench.address("heaters"), name="heaters", clock=bench.chip.clock, quiet_s=0.002, mode="current", max_current_a=0.02)
    try:
        amps = np.array([1e-3, 2e-3, 3e-3, 4e-3, 5e-3, 6e-3, 7e-3, 8e-3])
        q.set_drive(amps)  # one IVEC0 line in mA
        assert len(spy.calls) == 1 and spy.calls[0]["mode"] == "current"
        np.testing.assert_array_equal(spy.calls[0]["channels"], wiring[wiring >= 0])
        np.testing.assert_allclose(chip.heater_drive()[wiring[wiring >= 0]], amps[wiring >= 0], atol=1e-6)
        power = q.read_power_w()
        assert power is not None
        np.testing.assert_allclose(power[wiring >= 0], chip.heater_power_w()[wiring[wiring >= 0]], atol=1e-7)
        assert np.all(power[wiring < 0] == 0.0)  # open outputs carry no current
        np.testing.assert_allclose(q.read_drive()[wiring < 0], 0.0)
        q.safe_state()  # VVEC 0 V on every channel
        assert np.all(chip.heater_power_w() == 0.0)
    finally:
        q.close()
        bench.close()


def test_clock_advances_one_serial_line_per_command(setup: tuple[Chip, EmulatedBench, Qontrol]) -> None:
    chip, _, q = setup
    per_line = chip.spec.timing.serial_line_s
    assert chip.clock.totals()["serial"] == pytest.approx(q.transport.write_count * per_line)
    before, lines = chip.clock.now_s, q.transport.write_count
    q.set_drive(np.full(N_CHANNELS, 1.0))  # 5 VVEC lines
    q.read_power_w()  # 1 line, 40 reply lines
    assert q.transport.write_count - lines == 6
    assert chip.clock.now_s - before == pytest.approx(6 * per_line)


def test_disconnect_raises_a_connection_error_naming_the_instrument(
        setup: tuple[Chip, EmulatedBench, Qontrol]) -> None:
    _, bench, q = setup
    bench.disconnect("heaters")
    with pytest.raises(InstrumentConnectionError, match="heaters"):
        q.set_drive(np.array([1.0]), channels=np.array([0]))


def test_unused_channels_keep_their_limits_and_the_snapshot_reads_the_chain() -> None:
    chip = Chip(ChipSpec(), seed=3)
    bench, model = _bench(chip, WIRING, N_MODULES)
    model.vmax_v[30:] = 10.0   # another experiment's limits on outputs this bench does not use
    try:
        driver = Qontrol(bench.address("heaters"), name="heaters", quiet_s=0.002, max_voltage_v=7.0,
                         used_channels=range(30))
        assert np.all(model.vmax_v[:30] == 7.0) and np.all(model.vmax_v[30:] == 10.0)
        driver.set_drive(np.array([1.5, 2.5]), np.array([3, 11]))
        snap = driver.snapshot()
        assert snap["vmax_v"][:30] == [7.0] * 30 and snap["vmax_v"][30:] == [10.0] * 10
        assert snap["drive"]["values"][3] == pytest.approx(1.5) and snap["drive"]["values"][11] == pytest.approx(2.5)
        assert snap["used_channels"] == list(range(30)) and len(snap["modules"]) == N_MODULES
        driver.close()
    finally:
        bench.close()
