"""Keysight N7778C laser and N7745A/N7744A power-meter models in front of the emulated chip, driven through the
real drivers (unchanged): swept spectra with lambda logging, static readings that follow resonances and heaters,
virtual-clock latencies, sweep-check codes, limits and disconnects."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pytest

from labctl.drivers.errors import (
    InstrumentConnectionError,
    InstrumentError,
    InstrumentReplyError,
    InstrumentReportedError,
    InstrumentTimeout,
)
from labctl.drivers.interfaces import SweepSettings
from labctl.drivers.keysight_n774xa import KeysightN774xA
from labctl.drivers.keysight_n777xc import KeysightN777xC
from labctl.drivers.keysight_sweep import swept_insertion_loss
from labctl.sim import Chip, ChipSpec
from labctl.sim.emulated_bench import EmulatedBench, SimulatedInstrument
from labctl.sim.instruments import MODELS
from labctl.sim.instruments.keysight_models import (
    OVER_RANGE_MARKER_W,
    KeysightLaserModel,
    KeysightPowerMeterModel,
)
from labctl.sim.profiles.keysight import KEYSIGHT_N7744A, KEYSIGHT_N7745A, KEYSIGHT_N7778C

#: Meter port p = (bank, through/drop): ports 0,1 = bank 0 through/drop, ..., 6,7 = bank 3.
PORT_MAP = [(b, k) for b in range(4) for k in (0, 1)]
TIMEOUT_S = 0.2
#: The band of the 10 channels (1550-1559 nm) with the rings' design detuning and fabrication offsets.
BAND = SweepSettings(start_m=1.548e-6, stop_m=1.561e-6, step_m=10e-12, speed_m_per_s=40e-9)


@dataclass
class Bench:
    chip: Chip
    emulated: EmulatedBench
    laser: KeysightN777xC
    meter: KeysightN774xA

    def resonances_m(self) -> np.ndarray:
        """TRUTH (B, R) at the present heater drive."""
        return self.chip.truth_resonances_m(self.chip.heater_drive()[None, :])[0]


def build(chip: Chip, meter_profile=KEYSIGHT_N7745A, port_map=PORT_MAP) -> EmulatedBench:
    return EmulatedBench(chip, [
        SimulatedInstrument("laser0", KEYSIGHT_N7778C, KeysightLaserModel("laser0", channel=0)),
        SimulatedInstrument("pm", meter_profile, KeysightPowerMeterModel("pm", port_map)),
    ])


@pytest.fixture
def bench() -> Iterator[Bench]:
    chip = Chip(ChipSpec(), seed=0)
    chip.set_lasers(on=np.zeros(chip.n_channels, dtype=bool))  # only channel 0 has a laser on this bench
    emulated = build(chip)
    laser = KeysightN777xC(emulated.address("laser0"), resource_manager=emulated.resource_manager, clock=emulated.chip.clock, name="laser0",
                           timeout_s=TIMEOUT_S, poll_interval_s=0)
    meter = KeysightN774xA(emulated.address("pm"), resource_manager=emulated.resource_manager, clock=emulated.chip.clock, name="pm",
                           timeout_s=TIMEOUT_S, poll_interval_s=0)
    laser.set_output(True)
    yield Bench(chip, emulated, laser, meter)
    emulated.close()


def meter_tolerance_w(reference_w: np.ndarray, range_dbm: float) -> np.ndarray:
    """Meter model bound: +-0.02 dB linearity (+ margin), 16-bit quantization of the range, noise, float32."""
    lsb_w = 1e-3 * 10 ** (range_dbm / 10) / 2**16
    return 0.01 * np.abs(reference_w) + 2 * lsb_w + 1e-10


def test_registry_names_the_profiles():
    assert MODELS["keysight_n777xc"].model is KeysightLaserModel
    assert MODELS["keysight_n777xc"].device == "Keysight N7778C"
    assert MODELS["keysight_n774xa"].model is KeysightPowerMeterModel
    assert MODELS["keysight_n774xa"].device == "Keysight N7745A"


# -- (a) swept insertion loss ------------------------------------------------------------------------------------------
def test_swept_insertion_loss_shows_the_rings_spectra(bench):
    chip = bench.chip
    wavelengths_m, powers_w = swept_insertion_loss(bench.laser, bench.meter, range(8), BAND, 1e-4, 0.0)

    assert wavelengths_m.shape == (BAND.n_points,) and powers_w.shape == (8, BAND.n_points)
    # the lambda log is the emitted grid: commanded steps plus one small sweep error
    repeat = chip.spec.lasers.wavelength_repeatability_m
    grid = BAND.start_m + BAND.step_m * np.arange(BAND.n_points)
    assert np.all(np.abs(wavelengths_m - grid) <= repeat + 1e-15)
    assert np.allclose(np.diff(wavelengths_m), BAND.step_m, rtol=1e-6)

    # the logged spectra are the chip's noise-free spectra through the meter model (range 0 dBm for 1 mW)
    reference = chip.port_spectrum_w(wavelengths_m, 1e-3, channel=0, noise=False)  # (W, B, 2)
    reference = reference.reshape(BAND.n_points, 8).T  # port b*2+k
    assert np.all(np.abs(powers_w - reference) <= meter_tolerance_w(reference, 0.0))

    # the drop peaks sit at the rings' resonances
    resonances = bench.resonances_m()
    window = 5e-11
    offsets = []
    for b in range(chip.n_banks):
        drop, drop_ref = powers_w[2 * b + 1], reference[2 * b + 1]
        for r in range(chip.n_rings):
            near = np.flatnonzero(np.abs(wavelengths_m - resonances[b, r]) <= window)
            peak = near[np.argmax(drop[near])]
            # within one step of where the chip's own spectrum peaks (noise and meter model aside)
            assert abs(peak - near[np.argmax(drop_ref[near])]) <= 1
            gaps = np.abs(np.delete(resonances[b], r) - resonances[b, r])
            if gaps.min() >= 0.5e-9:  # no neighbour within ~2.5 linewidths merging with the line
                offsets.append(abs(wavelengths_m[peak] - resonances[b, r]))
    # The coherent cascade (drop-bus interference with the other rings' tails) pulls a drop peak by up to about
    # a quarter linewidth (~50 pm) from the ring's resonance; typically it sits within a step or two.
    assert len(offsets) >= 10
    assert max(offsets) <= 6 * BAND.step_m
    assert np.median(offsets) <= 2 * BAND.step_m
    # the sweep cleaned up after itself and the instruments accept plain readings again
    assert np.all(np.isfinite(bench.meter.read_all_w()))


def test_a_meter_armed_for_fewer_points_keeps_the_first_ones(bench):
    laser, meter, chip = bench.laser, bench.meter, bench.chip
    sweep = SweepSettings(1.5495e-6, 1.5505e-6, 10e-12, 40e-9)
    n = laser.configure_sweep(sweep)
    assert n == sweep.n_points == 101
    meter.set_range_dbm(0.0)
    meter.configure_logging(40, 1e-4, triggered=True)
    meter.start_logging()
    laser.start_sweep(poll_s=0)
    laser.wait_sweep(1.0, poll_s=0)
    meter.wait_logging(1.0, poll_s=0)
    logged = meter.logged_power_w(1)
    wavelengths = laser.logged_wavelengths_m()
    reference = chip.port_spectrum_w(wavelengths[:40], 1e-3, channel=0, noise=False)[:, 0, 1]
    assert logged.shape == (40,)
    assert np.all(np.abs(logged - reference) <= meter_tolerance_w(reference, 0.0))
    meter.finish_logging()
    laser.finish_sweep()


def test_a_meter_waiting_for_more_triggers_than_the_sweep_gives_stays_in_progress(bench):
    laser, meter = bench.laser, bench.meter
    sweep = SweepSettings(1.5495e-6, 1.5500e-6, 10e-12, 40e-9)
    n = laser.configure_sweep(sweep)
    meter.configure_logging(n + 5, 1e-4, triggered=True)
    meter.start_logging()
    laser.start_sweep(poll_s=0)
    laser.wait_sweep(1.0, poll_s=0)
    with pytest.raises(InstrumentTimeout, match="logging not complete"):
        meter.wait_logging(0.05, poll_s=0.01)
    meter.finish_logging(abort=True)
    laser.finish_sweep(abort=True)


def test_untriggered_logging_samples_the_static_power(bench):
    meter, chip = bench.meter, bench.chip
    bench.laser.set_wavelength_m(float(bench.resonances_m()[0, 0]))
    meter.set_range_dbm(0.0)  # the drop port carries about -7 dBm on resonance
    meter.configure_logging(200, 1e-3, triggered=False)
    t0 = chip.clock.now_s
    meter.start_logging()
    meter.wait_logging(1.0, poll_s=0.05)
    assert chip.clock.now_s - t0 >= 200 * 1e-3  # one sample per averaging time
    logged = meter.logged_power_w(1)
    expected = chip.read_port_power_w(1e-3)[0, 1]
    assert logged.shape == (200,)
    assert np.all(np.abs(logged - expected) <= meter_tolerance_w(expected, 0.0))
    meter.finish_logging()


def test_a_settings_change_stops_a_running_logging(bench):
    meter = bench.meter
    meter.configure_logging(10, 1e-4, triggered=True)
    meter.start_logging()
    meter.set_wavelength_m(1.55e-6, port=3)  # the manual: any settings change stops the logging function
    with pytest.raises(InstrumentReportedError, match="no logging function is active"):
        meter.wait_logging(0.05, poll_s=0)
    meter.finish_logging(abort=True)


# -- (b) static readings follow the resonances ---------------------------------------------------------------------
def most_isolated_ring(resonances_m: np.ndarray) -> tuple[int, float]:
    """The ring of one bank farthest from its neighbours, and a wavelength half-way to its farther neighbour."""
    gaps = np.abs(resonances_m[:, None] - resonances_m[None, :]) + np.eye(resonances_m.size)
    ring = int(np.argmax(gaps.min(axis=1)))
    below = resonances_m[resonances_m < resonances_m[ring]]
    above = resonances_m[resonances_m > resonances_m[ring]]
    gap_below = resonances_m[ring] - below.max() if below.size else 1e-9
    gap_above = above.min() - resonances_m[ring] if above.size else 1e-9
    off = resonances_m[ring] + (gap_above / 2 if gap_above > gap_below else -gap_below / 2)
    return ring, float(off)


def test_readings_follow_resonance_and_heater(bench):
    chip, laser, meter = bench.chip, bench.laser, bench.meter
    resonances = bench.resonances_m()
    ring, off_m = most_isolated_ring(resonances[0])
    on_m = float(resonances[0, ring])
    laser.set_wavelength_m(off_m)
    off = meter.read_all_w()
    laser.set_wavelength_m(on_m)
    on = meter.read_all_w()
    assert on[1] > 5 * off[1]  # drop port of bank 0 rises
    assert on[0] < 0.5 * off[0]  # through port falls
    assert abs(laser.get_wavelength_m() - on_m) < 1e-14  # the driver reads back what it set

    # every reading is the chip's port power through the meter (auto range)
    predicted = chip.read_port_power_w(1e-4).reshape(-1)
    assert np.all(np.abs(on - predicted) <= meter_tolerance_w(predicted, 0.0))

    heater = 0 * chip.n_rings + ring  # bank 0: heater index = bank * n_rings + ring
    chip.set_heater_drive(1.5, channels=[heater])
    shifted = bench.resonances_m()
    assert shifted[0, ring] - resonances[0, ring] > 0.3e-9  # red shift by a few linewidths
    after = meter.read_all_w()
    predicted = chip.read_port_power_w(1e-4).reshape(-1)
    assert after[1] < 0.2 * on[1] and after[0] > 2 * on[0]
    assert np.all(np.abs(after - predicted) <= meter_tolerance_w(predicted, 0.0))
    # single-port reads agree with the bulk read
    assert abs(meter.read_power_w(1) - after[1]) <= meter_tolerance_w(after[1], 0.0)


def test_laser_settings_reach_the_chip_and_limits_are_refused(bench):
    chip, laser = bench.chip, bench.laser
    laser.set_power_w(2e-3)
    assert chip.laser_power_w()[0] == pytest.approx(2e-3)
    laser.set_wavelength_m(1.5523e-6)
    assert chip.laser_wavelength_m()[0] == pytest.approx(1.5523e-6)
    assert abs(chip.truth_laser_wavelength_m()[0] - 1.5523e-6) <= chip.spec.lasers.wavelength_repeatability_m
    assert np.all(chip.laser_wavelength_m()[1:] == ChipSpec().lasers.channel_wavelengths_m()[1:])
    laser.set_output(False)
    assert not chip.laser_on()[0] and not laser.get_output()
    assert np.all(bench.meter.read_all_w() < 1e-9)  # dark

    # 20 mW is within the driver's envelope but above the chip's lasers: the instrument refuses it
    with pytest.raises(InstrumentReportedError) as info:
        laser.set_power_w(0.02)
    assert info.value.errors[0][0] == -222
    assert laser.get_power_w() == pytest.approx(2e-3) and chip.laser_power_w()[0] == pytest.approx(2e-3)


def test_power_read_back_follows_the_unit_the_laser_is_set_to(bench):
    laser = bench.laser
    laser.set_power_w(2e-3)                       # sent as ":SOUR0:POW 2.000000E+00MW"
    laser.write(":SOUR0:POW:UNIT 0")              # somebody switches the display to dBm
    assert laser.query(":SOUR0:POW?").startswith("+3.0103")   # the model answers in dBm now
    assert laser.get_power_w() == pytest.approx(2e-3, rel=1e-5)
    laser.check_errors()


def test_stand_alone_laser_does_not_know_the_mainframe_trigger_routing(bench):
    bench.laser.write(":TRIG:CONF DEF")
    with pytest.raises(InstrumentReportedError, match="-113"):
        bench.laser.check_errors()


def test_csv_and_binary_all_port_reads_agree(bench):
    binary = KeysightN774xA(bench.emulated.address("pm"), resource_manager=bench.emulated.resource_manager,
                            name="pm-binary", timeout_s=TIMEOUT_S, poll_interval_s=0, read_all="binary")
    bench.laser.set_wavelength_m(float(bench.resonances_m()[0, 0]))
    for port in range(8):
        bench.meter.port(port + 1).continuous = False   # FETC returns the last reading: the same for both
    bench.meter.read_all_w()
    csv_w, binary_w = bench.meter.read_all_w(), binary.read_all_w()
    np.testing.assert_allclose(csv_w, binary_w, rtol=1e-6)   # float32 block vs 9-digit text
    assert csv_w[1] > 1e-5


def test_over_range_reaches_the_driver_as_a_refused_reading(bench):
    bench.laser.set_wavelength_m(float(bench.resonances_m()[0, 0]))
    bench.meter.set_range_dbm(-30.0, port=1)  # the drop port carries about -7 dBm on resonance
    with pytest.raises(InstrumentReplyError, match="over-range"):
        bench.meter.read_power_w(1)
    with pytest.raises(InstrumentReplyError, match="over-range"):
        bench.meter.read_all_w()
    reply = bench.meter.query(":READ2:POW?")
    assert float(reply) == pytest.approx(OVER_RANGE_MARKER_W, rel=1e-6) and float(reply) > 1e20


# -- (c) virtual clock -------------------------------------------------------------------------------------------------
def test_clock_charges_instrument_latencies(bench):
    chip, laser, meter = bench.chip, bench.laser, bench.meter
    timing = chip.spec.timing

    meter.set_averaging_time_s(2e-3)
    t0 = chip.clock.now_s
    meter.read_all_w()
    assert chip.clock.now_s - t0 == pytest.approx(2e-3 + timing.meter_overhead_s)  # all ports in parallel
    t0 = chip.clock.now_s
    meter.read_power_w(5)
    assert chip.clock.now_s - t0 == pytest.approx(2e-3 + timing.meter_overhead_s)

    t0 = chip.clock.now_s
    laser.set_wavelength_m(1.551e-6)  # the move, then *OPC? and :SYST:ERR?
    assert chip.clock.now_s - t0 == pytest.approx(timing.laser_wavelength_change_s + 2 * timing.scpi_query_s)
    t0 = chip.clock.now_s
    laser.set_power_w(1.5e-3)
    assert chip.clock.now_s - t0 == pytest.approx(timing.laser_power_change_s + 2 * timing.scpi_query_s)

    before = chip.clock.totals().get("sweep", 0.0)
    t0 = chip.clock.now_s
    swept_insertion_loss(laser, meter, [1], BAND, 1e-4, 0.0)
    duration = (BAND.stop_m - BAND.start_m) / BAND.speed_m_per_s
    assert chip.clock.totals()["sweep"] - before == pytest.approx(duration)
    assert duration < chip.clock.now_s - t0 < duration + 0.5  # plus the set-up and read-out queries


# -- (d) sweep-check codes ---------------------------------------------------------------------------------------------
def _valid_sweep_settings(laser: KeysightN777xC) -> None:
    laser.trigger_output = "STF"
    laser.sweep_mode = "CONT"
    laser.lambda_logging = True
    laser.sweep_start_m = 1.550e-6
    laser.sweep_stop_m = 1.560e-6
    laser.sweep_step_m = 1e-11


@pytest.mark.parametrize("setting, value, code", [
    ("sweep_stop_m", 1.549e-6, 368),
    ("trigger_output", "DIS", 375),
    ("sweep_mode", "STEP", 376),
    ("sweep_step_m", 1.5e-13, 377),
    ("sweep_start_m", 1.45e-6, 380),
    ("sweep_stop_m", 1.65e-6, 381),
])
def test_sweep_check_codes_reach_the_driver(bench, setting, value, code):
    laser = bench.laser
    _valid_sweep_settings(laser)
    laser.check_sweep()
    setattr(laser, setting, value)
    with pytest.raises(InstrumentReportedError) as info:
        laser.check_sweep()
    assert info.value.errors[0][0] == code
    assert str(code) in str(info.value) and "laser0" in str(info.value)


def test_configure_sweep_raises_the_check_code(bench):
    with pytest.raises(InstrumentReportedError) as info:
        bench.laser.configure_sweep(SweepSettings(1.55e-6, 1.551e-6, 1.5e-13, 40e-9))
    assert info.value.errors == [(377, "step is not a multiple of the minimum step")]
    bench.laser.finish_sweep(abort=True)


# -- (e) disconnect ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["laser0", "pm"])
def test_disconnect_gives_a_clear_error_naming_the_instrument(bench, name):
    bench.emulated.disconnect(name)
    with pytest.raises(InstrumentError) as info:
        if name == "laser0":
            bench.laser.get_wavelength_m()
        else:
            bench.meter.read_all_w()
    assert isinstance(info.value, InstrumentConnectionError)   # a write to a gone instrument fails (no listeners)
    assert info.value.instrument == name and name in str(info.value)


# -- the 4-port profile and wiring checks ------------------------------------------------------------------------------
def test_four_port_meter_and_dark_ports():
    chip = Chip(ChipSpec(), seed=1)
    emulated = build(chip, KEYSIGHT_N7744A, [(2, 1), None, (2, 0)])
    try:
        meter = KeysightN774xA(emulated.address("pm"), resource_manager=emulated.resource_manager, clock=emulated.chip.clock, name="pm",
                               timeout_s=TIMEOUT_S)
        assert meter.n_ports == 4
        values = meter.read_all_w()
        predicted = chip.read_port_power_w(1e-4)
        assert values.shape == (4,)
        assert abs(values[0] - predicted[2, 1]) <= meter_tolerance_w(predicted[2, 1], 0.0)
        assert abs(values[2] - predicted[2, 0]) <= meter_tolerance_w(predicted[2, 0], 0.0)
        assert abs(values[1]) < 1e-10 and abs(values[3]) < 1e-10  # dark
    finally:
        emulated.close()
    with pytest.raises(ValueError, match="4 ports"):
        build(Chip(ChipSpec(), seed=1), KEYSIGHT_N7744A, PORT_MAP)
    with pytest.raises(ValueError, match="bank 7"):
        build(Chip(ChipSpec(), seed=1), KEYSIGHT_N7745A, [(7, 0)])
