"""Keithley 2400 model, triggered buffered readings: a N7778C sweep's step triggers on the Trigger Link fill the
2400's buffer (one reading per step, read in one transfer) through the unchanged drivers."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from labctl.drivers.errors import InstrumentReplyError
from labctl.drivers.interfaces import SweepSettings
from labctl.drivers.keithley_2400 import Keithley2400
from labctl.drivers.keysight_n777xc import KeysightN777xC
from labctl.sim import Chip, ChipSpec
from labctl.sim.emulated_bench import EmulatedBench, SimulatedInstrument
from labctl.sim.instruments.keithley_model import Keithley2400Model
from labctl.sim.instruments.keysight_models import KeysightLaserModel
from labctl.sim.profiles import ALL

PROFILES = {p.device: p for p in ALL}
BANKS = (0, 2)


class Bench:
    """Chip with only channel 0 lit, its N7778C, and 2400s on banks 0 and 2 (Trigger Link line 1 cabled)."""

    def __init__(self) -> None:
        self.chip = Chip(ChipSpec(), seed=3)
        self.chip.set_lasers(on=np.zeros(self.chip.n_channels, dtype=bool))
        self.models = [Keithley2400Model(f"smu{b}", b) for b in BANKS]
        self.bench = EmulatedBench(self.chip, [
            SimulatedInstrument("laser0", PROFILES["Keysight N7778C"], KeysightLaserModel("laser0", channel=0)),
            *(SimulatedInstrument(m.name, PROFILES["Keithley 2400"], m) for m in self.models)])
        clock = self.chip.clock
        self.laser = KeysightN777xC(self.bench.address("laser0"), resource_manager=self.bench.resource_manager,
                                    clock=clock, name="laser0", timeout_s=0.1, poll_interval_s=0)
        self.smus = [Keithley2400(self.bench.address(m.name), resource_manager=self.bench.resource_manager,
                                  clock=clock, name=m.name, timeout_s=0.1) for m in self.models]
        for smu in self.smus:
            smu.set_nplc(0.01)
            smu.set_voltage_v(0.0)
            smu.set_output(True)
        self.laser.set_output(True)

    def sweep(self, settings: SweepSettings, n_arm: int | None = None, line: int = 1) -> tuple[int, list]:
        n = self.laser.configure_sweep(settings)
        for smu in self.smus:
            smu.arm_triggered(n if n_arm is None else n_arm, line)
        self.laser.start_sweep(poll_s=0)
        self.laser.wait_sweep(5.0, poll_s=0)
        return n, self.smus

    def close(self) -> None:
        for smu in self.smus:
            smu.close()
        self.laser.close()
        self.bench.close()


@pytest.fixture
def bench() -> Iterator[Bench]:
    b = Bench()
    try:
        yield b
    finally:
        b.close()


def test_a_sweep_fills_every_buffer_with_the_balanced_spectrum(bench: Bench) -> None:
    chip = bench.chip
    centre = float(chip.truth_resonances_m(chip.heater_drive()[None, :])[0][0, 0])
    settings = SweepSettings(centre - 0.5e-9, centre + 0.5e-9, 10e-12, 10e-9)   # 1 ms per step
    t0 = chip.clock.now_s
    n, smus = bench.sweep(settings)
    assert n == 101
    sweep_s = chip.clock.now_s - t0
    currents = np.column_stack([smu.fetch_triggered_a(n) for smu in smus])
    assert currents.shape == (n, len(BANKS))
    # TRUTH (test only): the noise-free spectrum at the mid-reading wavelengths (0.1 ms after each trigger)
    logged = bench.laser.logged_wavelengths_m()
    wl = np.minimum(logged + settings.speed_m_per_s * 0.5 * smus[0].integration_time_s(), logged[-1])
    truth = chip.balanced_spectrum_a(wl, float(bench.laser.get_power_w()), channel=0, averaging_time_s=2e-4,
                                     noise=False)[:, list(BANKS)]
    scale = float(np.max(np.abs(truth)))
    assert np.max(np.abs(currents - truth)) < 2e-3 * scale
    assert np.argmin(currents[:, 0]) == np.argmin(truth[:, 0])      # the ring's dip where the truth has it
    # the whole spectrum cost one sweep plus a handful of commands, not a laser step per point
    assert sweep_s < 0.2 + (settings.stop_m - settings.start_m) / settings.speed_m_per_s


def test_the_buffer_is_read_in_one_transfer_and_each_meter_returns_to_single_readings(bench: Bench) -> None:
    chip = bench.chip
    n, smus = bench.sweep(SweepSettings(1.5495e-6, 1.5500e-6, 10e-12, 10e-9))
    before = [smu.transport.write_count for smu in smus]
    for smu in smus:
        smu.fetch_triggered_a(n)
        smu.end_triggered()
    assert [smu.transport.write_count - b for smu, b in zip(smus, before)] == [5, 5]   # :TRAC:DATA? + 4 to end
    assert [m.trigger_source for m in bench.models] == ["IMM", "IMM"]
    reading = smus[0].measure_current_a()                                            # immediate readings again
    assert np.isfinite(reading) and chip.clock.now_s > 0


def test_steps_faster_than_a_reading_lose_triggers_and_the_driver_says_so(bench: Bench) -> None:
    for smu in bench.smus:
        smu.set_nplc(1.0)                                          # 20 ms per reading against 1 ms per step
    n, smus = bench.sweep(SweepSettings(1.5495e-6, 1.5500e-6, 10e-12, 10e-9))
    with pytest.raises(InstrumentReplyError, match="pulses were lost"):
        smus[0].fetch_triggered_a(n)
    assert 0 < len(bench.models[0].buffer) < n
    assert smus[0].min_trigger_period_s() > 20e-3                  # what the session checks before sweeping


def test_a_meter_armed_on_another_line_sees_no_trigger(bench: Bench) -> None:
    n, smus = bench.sweep(SweepSettings(1.5495e-6, 1.5500e-6, 10e-12, 10e-9), line=2)
    assert all(not m.buffer for m in bench.models) and all(m.armed == n for m in bench.models)
    with pytest.raises(Exception, match=r"TRAC:DATA"):
        smus[0].fetch_triggered_a(n)


def test_source_delay_commands_set_the_reading_lag(bench: Bench) -> None:
    model, smu = bench.models[0], bench.smus[0]
    assert model.delay_s == pytest.approx(1e-3)                    # the auto delay
    smu.write(":SOUR:DEL 0.004")
    assert model.delay_s == pytest.approx(4e-3)
    assert smu.query(":SOUR:DEL:AUTO?") == "0"
    smu.write(":SOUR:DEL:AUTO 1")
    assert model.delay_s == pytest.approx(1e-3)
