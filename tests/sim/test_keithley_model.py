"""Keithley 2400 model: the unchanged Keithley2400 driver reads a bank's balanced detector on the emulated chip,
while the unchanged Qontrol driver heats its rings."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from labctl.drivers.errors import ComplianceError, InstrumentConnectionError, InstrumentTimeout
from labctl.drivers.keithley_2400 import READ_QUERY, Keithley2400
from labctl.drivers.qontrol import Qontrol
from labctl.sim import Chip, ChipSpec
from labctl.sim.emulated_bench import EmulatedBench, SimulatedInstrument
from labctl.sim.instruments import MODELS
from labctl.sim.instruments.keithley_model import DEFAULT_ELEMENTS, Keithley2400Model
from labctl.sim.instruments.qontrol_model import QontrolModel
from labctl.sim.profiles import ALL

PROFILES = {p.device: p for p in ALL}
BANK = 2
NPLC = 0.5
LINE_HZ = 50.0


class Bench:
    """Chip, emulated bench, Qontrol on all 40 heaters and a 2400 on bank BANK, through their drivers."""

    def __init__(self) -> None:
        self.chip = Chip(ChipSpec(), seed=11)
        self.smu_model = Keithley2400Model("smu", BANK)
        self.bench = EmulatedBench(self.chip, [
            SimulatedInstrument("smu", PROFILES["Keithley 2400"], self.smu_model),
            SimulatedInstrument("heaters", PROFILES["Qontrol Q8iv"], QontrolModel("heaters", np.arange(40), 5),
                                serial=True),
        ])
        self.smu = Keithley2400(self.bench.address("smu"), resource_manager=self.bench.resource_manager, clock=self.bench.chip.clock, name="smu",
                                timeout_s=0.1)
        self.smu.set_compliance_a(10e-3)
        self.smu.set_nplc(NPLC)
        self.smu.set_voltage_v(-1.0)
        self.heaters = Qontrol(self.bench.address("heaters"), name="heaters", clock=self.bench.chip.clock, quiet_s=0.002, max_voltage_v=7.0)

    def close(self) -> None:
        self.smu.close()
        self.heaters.close()
        self.bench.close()


@pytest.fixture
def bench() -> Iterator[Bench]:
    b = Bench()
    try:
        yield b
    finally:
        b.close()


def _voltage_onto(chip: Chip, heater: int, ring: tuple[int, int], target_m: float) -> float:
    """TRUTH (test only): heater voltage that puts ``ring``'s resonance on ``target_m`` (bisection)."""
    lo, hi = 0.0, 7.0
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        drive = np.zeros((1, chip.n_heaters))
        drive[0, heater] = mid
        if chip.truth_resonances_m(drive)[0][ring] < target_m:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def test_registry_entry() -> None:
    entry = MODELS["keithley_2400"]
    assert entry.model is Keithley2400Model and entry.device == "Keithley 2400" and not entry.serial


def test_heating_a_ring_onto_its_laser_changes_the_bank_current(bench: Bench) -> None:
    chip = bench.chip
    aperture = NPLC / LINE_HZ
    wavelengths = chip.truth_laser_wavelength_m()
    cold = chip.truth_resonances_m(np.zeros((1, chip.n_heaters)))[0]
    fwhm = 1550e-9 / chip.spec.optics.loaded_q
    needed = wavelengths - cold[BANK]  # red shift each ring of the bank needs to reach its channel
    ring = int(np.flatnonzero((needed > 2 * fwhm) & (needed < 3e-9))[0])
    on = np.zeros(chip.n_channels, dtype=bool)
    on[ring] = True
    chip.set_lasers(on=on)  # only the ring's own channel lit
    bench.smu.set_output(True)

    before = bench.smu.measure_current_a()
    direct = chip.read_balanced_current_a(aperture)
    assert before == pytest.approx(direct[BANK], abs=1e-6)
    assert before < 0  # off resonance: the light stays on the through bus

    heater = BANK * chip.n_rings + ring
    volts = _voltage_onto(chip, heater, (BANK, ring), float(wavelengths[ring]))
    bench.heaters.set_drive(np.array([volts]), channels=np.array([heater]))
    after = bench.smu.measure_current_a()
    direct_after = chip.read_balanced_current_a(aperture)
    assert after == pytest.approx(direct_after[BANK], abs=1e-6)
    # on resonance most of the light goes to the drop bus: the balanced current turns positive
    det = chip.spec.detector
    bus_in = chip.laser_power_w()[ring] * 10 ** (-chip.spec.optics.facet_loss_db / 10)
    weight = chip.truth_weights(chip.heater_drive()[None, :])[0, BANK, ring]
    assert after > 0 and after - before > 0.5 * det.responsivity_a_per_w * bus_in
    assert after == pytest.approx(det.responsivity_a_per_w * bus_in * weight, rel=0.05, abs=2e-6)
    # the other banks' detectors barely notice (inter-bank thermal crosstalk only)
    others = np.arange(chip.n_banks) != BANK
    assert np.max(np.abs(direct_after[others] - direct[others])) < 0.05 * (after - before)


def test_reading_advances_the_clock_by_message_and_integration(bench: Bench) -> None:
    chip = bench.chip
    bench.smu.set_output(True)
    timing = chip.spec.timing
    before = chip.clock.now_s
    bench.smu.measure_current_a()
    expected = timing.scpi_query_s + bench.smu_model.source_delay_s + NPLC / LINE_HZ
    assert chip.clock.now_s - before == pytest.approx(expected)


def test_list_sweep_reads_every_point(bench: Bench) -> None:
    chip = bench.chip
    voltages = np.linspace(-2.0, 0.0, 150)  # two :SOUR:LIST:VOLT commands (100 + :APP 50)
    messages, before = bench.smu.transport.write_count, chip.clock.now_s
    currents = bench.smu.list_sweep_current_a(voltages)
    assert currents.shape == (150,)
    reference = chip.read_balanced_current_a(NPLC / LINE_HZ)[BANK]
    np.testing.assert_allclose(currents, reference, atol=1e-6)  # same light at every bias point
    assert bench.smu.get_output() is False  # restored
    sent = bench.smu.transport.write_count - messages
    point = bench.smu_model.source_delay_s + NPLC / LINE_HZ
    assert chip.clock.now_s - before == pytest.approx(sent * chip.spec.timing.scpi_query_s + 150 * point)
    assert bench.smu_model.list_mode is False and bench.smu_model.trigger_count == 1


def test_compliance_clamps_the_reading_and_the_driver_refuses_it(bench: Bench) -> None:
    bench.smu.set_output(True)
    current, at_compliance = bench.smu.read_current()
    assert not at_compliance
    limit = abs(current) / 4
    bench.smu.set_compliance_a(limit)
    clamped, at_compliance = bench.smu.read_current()
    assert clamped == pytest.approx(np.sign(current) * limit, rel=1e-6) and at_compliance
    with pytest.raises(ComplianceError):
        bench.smu.measure_current_a()   # the limit is never returned as a photocurrent
    with pytest.raises(ComplianceError, match="point"):
        bench.smu.list_sweep_current_a(np.array([-1.0, -0.5]))
    bench.smu.set_compliance_a(10e-3)
    assert bench.smu.measure_current_a() == pytest.approx(current, rel=0.2)


def test_default_elements_before_form_elem(bench: Bench) -> None:
    bench.smu.set_output(True)
    bench.smu_model.elements = DEFAULT_ELEMENTS  # as after power-on, before the driver's :FORM:ELEM CURR,STAT
    fields = [float(f) for f in bench.smu.query(READ_QUERY).split(",")]
    assert len(fields) == 5
    assert fields[0] == pytest.approx(-1.0) and fields[2] == 9.91e37
    assert fields[3] == pytest.approx(bench.chip.clock.now_s)


def test_read_with_output_off_queues_error_803(bench: Bench) -> None:
    bench.smu.set_output(False)
    with pytest.raises(InstrumentTimeout, match="smu"):
        bench.smu.measure_current_a()
    codes = {code for code, _ in bench.smu.read_errors()}
    assert codes == {803}


def test_disconnect_times_out_naming_the_instrument(bench: Bench) -> None:
    bench.smu.set_output(True)
    bench.bench.disconnect("smu")
    with pytest.raises(InstrumentConnectionError, match="smu"):   # the query's write finds no listener
        bench.smu.measure_current_a()


def test_a_started_reading_measures_from_its_arrival_while_the_host_goes_on(bench: Bench) -> None:
    """``:READ?`` in fixed mode: the reading (source delay, then the integration) starts when the command arrives and
    the reply is ready after it and the query's transfer; the host's other work meanwhile costs nothing extra, and
    a heater command landing inside the integration window is counted as disturbing it."""
    chip, smu, timing = bench.chip, bench.smu, bench.chip.spec.timing
    smu.set_output(True)
    aperture = NPLC / LINE_HZ
    reading_s = bench.smu_model.source_delay_s + aperture + timing.scpi_query_s
    t0 = chip.clock.now_s
    smu.start_read_current()
    assert chip.clock.now_s == t0
    chip.clock.advance(0.5 * reading_s, "elsewhere")
    smu.finish_read_current()
    assert chip.clock.now_s - t0 == pytest.approx(reading_s)          # waits only for the rest
    t1 = chip.clock.now_s
    smu.start_read_current()
    chip.clock.advance(2 * reading_s, "elsewhere")
    smu.finish_read_current()
    assert chip.clock.now_s - t1 == pytest.approx(2 * reading_s)      # ready long since: no wait
    assert chip.disturbed_readings == 0
    smu.start_read_current()
    chip.clock.advance(bench.smu_model.source_delay_s + 0.5 * aperture, "elsewhere")
    bench.heaters.set_drive(np.array([1.0]), np.array([0]))           # lands inside the integration window
    smu.finish_read_current()
    assert chip.disturbed_readings == 1
