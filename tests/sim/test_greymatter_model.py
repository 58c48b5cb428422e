"""greymatter model: the unchanged Greymatter driver drives the emulated chip's heaters with currents."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from labctl.drivers.errors import InstrumentConnectionError, InstrumentReportedError
from labctl.drivers.greymatter import LOAD_ALL, Greymatter
from labctl.sim import Chip, ChipSpec
from labctl.sim.emulated_bench import EmulatedBench, SimulatedInstrument
from labctl.sim.instruments import MODELS
from labctl.sim.instruments.greymatter_model import GreymatterModel
from labctl.sim.profiles import ALL

PROFILE = {p.device: p for p in ALL}["greymatter"]
#: current outputs 0..39 (boards 0..3) drive the 40 heaters in reverse order; boards 4..7 are unconnected
WIRING = np.arange(40)[::-1].copy()
SPAN_FULL_SCALE_A = 25e-3  # the driver picks span 4 (25 mA) for a 20 mA limit


class Spy:
    def __init__(self, chip: Chip) -> None:
        self.calls: list[dict[str, Any]] = []
        original = chip.set_heater_drive

        def wrapped(values: Any, mode: str = "voltage", channels: Any = None) -> None:
            self.calls.append({"values": np.array(values, dtype=float), "mode": mode, "channels": np.array(channels),
                               "time": chip.clock.now_s})
            original(values, mode=mode, channels=channels)

        chip.set_heater_drive = wrapped  # type: ignore[method-assign]


@pytest.fixture
def setup() -> Iterator[tuple[Chip, EmulatedBench, Greymatter, Spy]]:
    chip = Chip(ChipSpec(), seed=5)
    spy = Spy(chip)
    bench = EmulatedBench(chip, [SimulatedInstrument("dac", PROFILE, GreymatterModel("dac", WIRING), serial=True)])
    driver = Greymatter(bench.address("dac"), name="dac", clock=bench.chip.clock, max_current_a=0.02)
    try:
        yield chip, bench, driver, spy
    finally:
        driver.close()
        bench.close()


def test_registry_entry() -> None:
    entry = MODELS["greymatter"]
    assert entry.model is GreymatterModel and entry.device == PROFILE.device and entry.serial


def test_connect_leaves_the_heaters_off(setup: tuple[Chip, EmulatedBench, Greymatter, Spy]) -> None:
    chip, _, g, spy = setup
    np.testing.assert_allclose(g.span_full_scale(), SPAN_FULL_SCALE_A)
    assert spy.calls == [] and np.all(chip.heater_drive() == 0.0)
    assert g.read_faults() == []


def test_codes_wait_for_ldac_then_change_together(setup: tuple[Chip, EmulatedBench, Greymatter, Spy]) -> None:
    chip, _, g, spy = setup
    channels = np.array([0, 3, 7, 12, 25, 39])
    amps = np.array([2e-3, 4e-3, 6e-3, 8e-3, 10e-3, 12e-3])
    # pending codes do not move anything
    g.output(3).code = 20000
    assert spy.calls == [] and np.all(chip.heater_drive() == 0.0)
    g.write(LOAD_ALL)
    assert len(spy.calls) == 1
    spy.calls.clear()

    g.set_drive(amps, channels=channels)  # CODE per output, then one LDAC
    assert len(spy.calls) == 1  # all outputs in ONE chip call
    call = spy.calls[0]
    assert call["mode"] == "current"
    np.testing.assert_array_equal(np.sort(call["channels"]), np.sort(WIRING[channels]))
    codes = np.floor(amps / SPAN_FULL_SCALE_A * 65535 + 0.5)
    quantised = codes / 65535 * SPAN_FULL_SCALE_A
    drive = chip.heater_drive()
    lsb = chip.spec.heaters.dac_full_scale_a / (2**chip.spec.heaters.dac_bits - 1)
    np.testing.assert_allclose(drive[WIRING[channels]], quantised, atol=lsb)
    np.testing.assert_allclose(g.read_drive()[channels], quantised)
    assert np.count_nonzero(drive) == channels.size  # output 3 went back from code 20000 to 4 mA
    assert all(m == "current" for m in np.array(chip.heater_modes())[WIRING[channels]])

    # physics: P = I^2 R (+ self-heating) moves the driven rings by about 0.25 nm/mW
    power = chip.heater_power_w()[WIRING[channels]]
    hs = chip.spec.heaters
    np.testing.assert_allclose(power, quantised**2 * hs.resistance_ohm, rtol=0.25)
    shift = (chip.truth_resonances_m(drive, mode="current") - chip.truth_resonances_m(np.zeros_like(drive)))[0]
    np.testing.assert_allclose(shift.reshape(-1)[WIRING[channels]], hs.tuning_efficiency_m_per_w * power, rtol=0.3)


def test_immediate_current_write_and_firmware_errors(setup: tuple[Chip, EmulatedBench, Greymatter, Spy]) -> None:
    chip, _, g, spy = setup
    g.output(10).current_ma = 5.0  # CURR: write-and-update of one output
    assert len(spy.calls) == 1
    assert chip.heater_drive()[WIRING[10]] == pytest.approx(5e-3, abs=1e-6)
    with pytest.raises(InstrumentReportedError, match="Invalid code value"):
        g.query("BOARD0:DAC0:CH1:CODE 70000")
    g.dac(0, 0).resolution = 12  # re-initialises board 0 DAC0 (its outputs back to 0)
    assert g.dac(0, 0).resolution == 12
    with pytest.raises(InstrumentReportedError, match=r"Code exceeds max \(4095 for 12-bit\)"):
        g.query("BOARD0:DAC0:CH1:CODE 5000")
    with pytest.raises(InstrumentReportedError, match="Invalid board number"):
        g.query("BOARD9:DAC0:CH1:CODE 1")
    with pytest.raises(InstrumentReportedError, match="Use VOLT"):
        g.query("BOARD0:DAC2:CH1:CURR 1.0")
    with pytest.raises(InstrumentReportedError, match="Unknown command"):
        g.query("BOARD0:DAC0:FROB")
    assert len(spy.calls) == 1  # nothing refused reached the chip; output 10 (board 1) kept its current
    assert chip.heater_drive()[WIRING[10]] == pytest.approx(5e-3, abs=1e-6)
    g.query("BOARD0:DAC0:CH1:CODE 100")  # 12 bits over span 6 (100 mA, the power-on span after the re-init)
    g.write(LOAD_ALL)
    assert chip.heater_drive()[WIRING[1]] == pytest.approx(100 / 4095 * 0.1, abs=1e-6)


def test_open_output_reports_a_fault(setup: tuple[Chip, EmulatedBench, Greymatter, Spy]) -> None:
    _, _, g, spy = setup
    g.set_drive(np.array([1e-3]), channels=np.array([45]))  # board 4 DAC1 CH0: nothing wired
    assert spy.calls == []
    faults = g.read_faults()
    assert [bit for bit, _ in faults] == [3 * 4 + 1]
    with pytest.raises(InstrumentReportedError, match="board 4 DAC1"):
        g.check_errors()
    g.safe_state()
    assert g.read_faults() == []


def test_reset_zeroes_the_outputs(setup: tuple[Chip, EmulatedBench, Greymatter, Spy]) -> None:
    chip, _, g, _ = setup
    g.set_drive(np.full(40, 3e-3), channels=np.arange(40))
    assert np.all(chip.heater_drive() > 0)
    g.reset()  # *RST, then the driver's configuration again
    assert np.all(chip.heater_drive() == 0.0)
    np.testing.assert_allclose(g.span_full_scale(), SPAN_FULL_SCALE_A)


def test_clock_advances_one_serial_line_per_command(setup: tuple[Chip, EmulatedBench, Greymatter, Spy]) -> None:
    chip, _, g, _ = setup
    per_line = chip.spec.timing.serial_line_s
    assert chip.clock.totals()["serial"] == pytest.approx(g.transport.write_count * per_line)
    before = chip.clock.now_s
    g.set_drive(np.full(5, 1e-3), channels=np.arange(5))  # 5 CODE lines + LDAC
    assert chip.clock.now_s - before == pytest.approx(6 * per_line)


def test_disconnect_raises_a_connection_error_naming_the_instrument(
        setup: tuple[Chip, EmulatedBench, Greymatter, Spy]) -> None:
    _, bench, g, _ = setup
    bench.disconnect("dac")
    with pytest.raises(InstrumentConnectionError, match="dac"):
        g.set_drive(np.array([1e-3]), channels=np.array([0]))


def test_connect_never_latches_a_code_in_a_span_it_did_not_choose() -> None:
    """A voltage DAC left in a unipolar span (0..5 V) by someone else: connect writes the bipolar span before the
    zero (mid-scale) codes, so no heater ever sees the 2.5 V that mid-scale means in the old span."""
    chip = Chip(ChipSpec(), seed=5)
    spy = Spy(chip)
    model = GreymatterModel("dac", [], boards=1, voltage_heater_map=np.arange(4))
    model.vspan_pending[:4] = model.vspan_active[:4] = 0   # 0..5 V, as a previous user left it
    bench = EmulatedBench(chip, [SimulatedInstrument("dac", PROFILE, model, serial=True)])
    try:
        driver = Greymatter(bench.address("dac"), name="dac", mode="voltage", n_boards=1, max_voltage_v=4.0)
        applied = [call["values"] for call in spy.calls]
        assert all(np.all(np.abs(v) < 1e-3) for v in applied), applied
        assert np.all(np.abs(chip.heater_drive()[:4]) < 1e-3)
        driver.set_drive(np.array([2.0]), np.array([1]))
        assert chip.heater_drive()[1] == pytest.approx(2.0, abs=1e-3)
        driver.close()
    finally:
        bench.close()
