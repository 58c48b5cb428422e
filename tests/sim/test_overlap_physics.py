"""What the emulator does when the host overlaps instrument work, driven through the real drivers: a laser keeps
settling after its power command while the host goes on, a self-triggered meter reading averages from the moment
it arrives and answers later, a reading taken before the heaters have settled sees a partly settled ring, and a
command that lands inside a reading's averaging window is counted as disturbing it."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from labctl.drivers.keysight_n774xa import KeysightN774xA
from labctl.drivers.keysight_n777xc import KeysightN777xC
from labctl.sim import Chip, ChipSpec
from tests.sim.test_keysight_models import TIMEOUT_S, Bench, build, meter_tolerance_w, most_isolated_ring


@pytest.fixture
def bench() -> Iterator[Bench]:
    chip = Chip(ChipSpec(), seed=0)
    chip.set_lasers(on=np.zeros(chip.n_channels, dtype=bool))  # only channel 0 has a laser on this bench
    emulated = build(chip)
    laser = KeysightN777xC(emulated.address("laser0"), resource_manager=emulated.resource_manager,
                           clock=chip.clock, name="laser0", timeout_s=TIMEOUT_S, poll_interval_s=0)
    meter = KeysightN774xA(emulated.address("pm"), resource_manager=emulated.resource_manager, clock=chip.clock,
                           name="pm", timeout_s=TIMEOUT_S, poll_interval_s=0, read_all="binary")
    laser.set_output(True)
    meter.start_read_all()          # single triggering from here on (its one-off mode change is not under test)
    meter.finish_read_all()
    yield Bench(chip, emulated, laser, meter)
    emulated.close()


def _on_resonance(b: Bench) -> int:
    """Tune the laser to bank 0's most isolated ring; returns that ring's heater."""
    ring, _ = most_isolated_ring(b.resonances_m()[0])
    b.laser.set_wavelength_m(float(b.resonances_m()[0, ring]))
    return ring


def test_a_laser_settles_after_its_power_command_while_the_host_goes_on(bench):
    chip, laser, timing = bench.chip, bench.laser, bench.chip.spec.timing
    laser.set_power_w(1e-3)
    t_send = chip.clock.now_s
    laser.start_power_w(3e-3)
    assert chip.clock.now_s - t_send == pytest.approx(timing.scpi_query_s)       # the command's transfer only
    assert chip.truth_laser_power_w()[0] == pytest.approx(1e-3)                  # not moved yet
    chip.clock.advance(0.5 * (timing.laser_power_change_s - timing.scpi_query_s), "elsewhere")
    assert chip.truth_laser_power_w()[0] == pytest.approx(2e-3)                  # half-way on its ramp
    laser.wait_power_settled()                                                   # *OPC? returns once settled
    assert chip.clock.now_s - t_send == pytest.approx(timing.laser_power_change_s + timing.scpi_query_s)
    assert chip.truth_laser_power_w()[0] == pytest.approx(3e-3)
    # the blocking set still costs what the timing table says: the change, then *OPC? and the error queue
    t0 = chip.clock.now_s
    laser.set_power_w(1e-3)
    assert chip.clock.now_s - t0 == pytest.approx(timing.laser_power_change_s + 2 * timing.scpi_query_s)


def test_a_reading_during_a_power_ramp_sees_the_power_in_between(bench):
    chip, laser, meter = bench.chip, bench.laser, bench.meter
    _on_resonance(bench)

    def read() -> np.ndarray:
        meter.start_read_all()
        return meter.finish_read_all()

    laser.set_power_w(1e-3)
    settled_low = read()
    laser.set_power_w(3e-3)
    settled_high = read()
    laser.set_power_w(1e-3)
    laser.start_power_w(3e-3)
    ramp = chip.spec.timing.laser_power_change_s - chip.spec.timing.scpi_query_s
    chip.clock.advance(0.5 * ramp - 0.5 * 1e-4, "elsewhere")                    # the window's middle: half-way
    meter.start_read_all()
    middle = meter.finish_read_all()
    laser.wait_power_settled()
    expected = 0.5 * (settled_low + settled_high)
    assert np.all(np.abs(middle - expected) <= meter_tolerance_w(expected, 0.0))
    assert middle[1] > 1.5 * settled_low[1]


def test_a_triggered_reading_averages_from_its_arrival_and_answers_later(bench):
    chip, meter, timing = bench.chip, bench.meter, bench.chip.spec.timing
    _on_resonance(bench)
    t0 = chip.clock.now_s
    meter.start_read_all()
    assert chip.clock.now_s == t0                       # the host goes on at once
    chip.clock.advance(0.3e-3, "serial line elsewhere")
    values = meter.finish_read_all()
    assert chip.clock.now_s - t0 == pytest.approx(1e-4 + timing.meter_overhead_s)   # ready after window + overhead
    predicted = chip.read_port_power_w(1e-4).reshape(-1)
    assert np.all(np.abs(values - predicted) <= meter_tolerance_w(predicted, 0.0))
    t1 = chip.clock.now_s                               # a reply already ready costs nothing more
    meter.start_read_all()
    chip.clock.advance(5e-3, "serial lines elsewhere")
    meter.finish_read_all()
    assert chip.clock.now_s - t1 == pytest.approx(5e-3)
    assert chip.disturbed_readings == 0


def test_a_reading_before_the_heaters_settle_sees_a_partly_settled_ring(bench):
    """A reading averaging over [t, t + T] right after a heater command sees the ring on its first-order way (time
    constant 10 us: at the window's middle, T/2 later, a share 1 - exp(-T/2/tau) of the move is done); one taken
    after the bench's settle time sees the settled ring. The laser sits on the slope of the line (FWHM/(2 sqrt 3)
    red of the resonance, where the drop port is nearly linear in the detuning) and the heater step moves the ring
    by about a tenth of a linewidth toward it."""
    chip, meter = bench.chip, bench.meter
    ring, _ = most_isolated_ring(bench.resonances_m()[0])
    fwhm_m = 1.55e-6 / chip.spec.optics.loaded_q
    bench.laser.set_wavelength_m(float(bench.resonances_m()[0, ring]) + fwhm_m / (2 * np.sqrt(3)))
    window_s, tau_s = 1e-5, chip.spec.thermal.time_constant_s
    meter.set_averaging_time_s(window_s)
    meter.start_read_all()
    before = meter.finish_read_all()
    chip.set_heater_drive(0.3, channels=[ring])          # bank 0: heater index = ring
    meter.start_read_all()                               # at once
    early = meter.finish_read_all()
    chip.clock.advance(1e-3, "settle")
    meter.start_read_all()
    settled = meter.finish_read_all()
    drop = 1                                             # bank 0's drop port
    assert settled[drop] > 1.1 * before[drop]            # the ring came closer to the laser
    share = (early[drop] - before[drop]) / (settled[drop] - before[drop])
    assert share == pytest.approx(1 - np.exp(-window_s / 2 / tau_s), abs=0.08), share
    assert chip.disturbed_readings == 0


def test_a_command_landing_inside_an_averaging_window_is_counted(bench):
    chip, meter = bench.chip, bench.meter
    meter.start_read_all()
    chip.set_heater_drive(0.5, channels=[0])             # lands inside the 100 us window that just opened
    meter.finish_read_all()
    assert chip.disturbed_readings == 1
    chip.set_heater_drive(0.0, channels=[0])             # the window is over: nothing to disturb
    bench.laser.start_power_w(2e-3)
    bench.laser.wait_power_settled()
    assert chip.disturbed_readings == 1
    meter.start_read_all()
    bench.laser.start_power_w(1e-3)                      # a laser changes after its command's transfer: 2 ms on
    meter.finish_read_all()
    assert chip.disturbed_readings == 1                  # the 100 us window was over by then
    meter.set_averaging_time_s(5e-3)
    meter.start_read_all()
    bench.laser.start_power_w(2e-3)                      # inside a 5 ms window: disturbed
    meter.finish_read_all()
    assert chip.disturbed_readings == 2
