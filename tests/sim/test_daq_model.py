"""DAQ970A model: the unchanged KeysightDAQ970A driver reads the banks' TIA outputs on the emulated chip.

Ground truth (noise-free chip evaluation) appears only in the assertions.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from labctl.drivers.errors import InstrumentReplyError, InstrumentReportedError
from labctl.drivers.keysight_daq970a import NPLC_RESOLUTION, KeysightDAQ970A
from labctl.sim import Chip, ChipSpec
from labctl.sim.emulated_bench import EmulatedBench, SimulatedInstrument
from labctl.sim.instruments import MODELS
from labctl.sim.instruments.daq_model import DAQ970AModel, TiaChannel, daq_reading_v
from labctl.sim.profiles import ALL
from labctl.sim.protocol import yaml_path

PROFILES = {p.device: p for p in ALL}
#: bank b on channel 101 + b (read in reverse wiring order to exercise the mapping); 105 is an unwired channel
GAIN_V_PER_A = 2000.0
TIAS = {101 + b: TiaChannel(bank=3 - b, gain_v_per_a=GAIN_V_PER_A, offset_v=0.01 * (b + 1)) for b in range(4)}
#: the DAQ is the readout (no on-chip quantization); no temperature drift, so readings taken a scan apart compare
SPEC = ChipSpec().with_overrides({"detector": {"readout_bits": 52, "readout_range_a": 0.1},
                                  "thermal": {"drift_rms_k": 0.0}})


class Bench:
    def __init__(self, tias: dict[int, TiaChannel] = TIAS) -> None:
        self.chip = Chip(SPEC, seed=5)
        self.model = DAQ970AModel("adc", tias)
        self.bench = EmulatedBench(self.chip, [SimulatedInstrument("adc", PROFILES["Keysight DAQ970A"], self.model)])
        self.daq = KeysightDAQ970A(self.bench.address("adc"), resource_manager=self.bench.resource_manager,
                                   name="adc", timeout_s=5.0)

    def close(self) -> None:
        self.daq.close()
        self.bench.close()


@pytest.fixture
def bench() -> Iterator[Bench]:
    b = Bench()
    try:
        yield b
    finally:
        b.close()


def _truth_current_a(chip: Chip) -> np.ndarray:
    """TRUTH (test only): noise-free settled balanced current per bank at the chip's present drive and lasers."""
    return chip.evaluate(np.zeros((1, chip.n_heaters)), noise=False).balanced_current_a[0]


def test_registry_entry() -> None:
    entry = MODELS["keysight_daq970a"]
    assert entry.model is DAQ970AModel and entry.device == "Keysight DAQ970A" and not entry.serial


def test_scan_reads_every_bank_through_its_tia(bench: Bench) -> None:
    channels = [104, 101, 103, 102, 105]
    bench.daq.configure_scan(channels)
    assert bench.daq.set_integration_time_s(0.2) == pytest.approx(0.2)          # 10 PLC at 50 Hz
    volts = bench.daq.read_scan_v()
    truth = _truth_current_a(bench.chip)
    expected = np.array([GAIN_V_PER_A * truth[TIAS[ch].bank] + TIAS[ch].offset_v if ch in TIAS else 0.0
                         for ch in channels])
    sigma_v = NPLC_RESOLUTION[10.0][0] * 10.0                                     # 10 uV at the 10 V range
    assert np.all(np.abs(volts - expected) < 6 * sigma_v + 1e-9 * GAIN_V_PER_A), (volts, expected)
    assert abs(volts[-1]) < 6 * sigma_v                                           # nothing wired on 105
    bench.daq.check_errors()


@pytest.mark.parametrize("nplc", [0.02, 1.0])
def test_adc_noise_follows_the_resolution_table(bench: Bench, nplc: float) -> None:
    bench.daq.configure_scan([101, 102])
    bench.daq.set_integration_time_s(nplc / 50.0)
    reads = np.array([bench.daq.read_scan_v() for _ in range(60)])
    sigma = NPLC_RESOLUTION[nplc][0] * 10.0
    # successive differences: the chip temperature drifts over the 60 reads and moves the bank currents slowly;
    # what is left (shot, TIA input noise, RIN) is far below the ADC noise here
    measured = np.diff(reads, axis=0).std(axis=0, ddof=1) / np.sqrt(2.0)
    assert np.all((0.7 * sigma < measured) & (measured < 1.3 * sigma)), (measured, sigma)


def test_quantization_and_overload_of_the_measurement_model() -> None:
    reading, overload = daq_reading_v(np.array([1.234567891, 11.9, 12.1, -12.5]), 10.0, 0.02, None)
    lsb = 20.0 / 2**15
    assert np.allclose(reading / lsb, np.round(reading / lsb)) and abs(reading[0] - 1.234567891) <= lsb / 2
    assert overload.tolist() == [False, False, True, True]


def test_a_sweep_costs_its_channels_and_integration_on_the_clock(bench: Bench) -> None:
    bench.daq.configure_scan([101, 102, 103, 104])
    bench.daq.set_integration_time_s(0.02)                                        # 1 PLC
    t0 = bench.chip.clock.now_s
    bench.daq.read_scan_v()
    elapsed = bench.chip.clock.now_s - t0
    latency = bench.chip.spec.timing.scpi_query_s
    assert elapsed == pytest.approx(4 * (bench.model.channel_overhead_s + 0.02) + latency)


def test_overload_is_an_error_naming_the_channel() -> None:
    b = Bench({101: TiaChannel(bank=0, gain_v_per_a=1e6)})                       # 1 MV/A: far beyond 12 V
    try:
        b.daq.configure_scan([101])
        with pytest.raises(InstrumentReplyError, match="channel 101 overload"):
            b.daq.read_scan_v()
    finally:
        b.close()


def test_channels_without_a_module_and_bad_values_reach_the_error_queue(bench: Bench) -> None:
    with pytest.raises(InstrumentReplyError, match="scan list holds 0 channels"):
        bench.daq.configure_scan([201])                                          # slot 2 is empty
    with pytest.raises(InstrumentReportedError, match="-221"):
        bench.daq.check_errors()
    bench.daq.configure_scan([101])
    bench.daq.write("VOLT:DC:NPLC 3,(@101)")                                     # not one of the PLC values
    with pytest.raises(InstrumentReportedError, match="-222"):
        bench.daq.check_errors()


def test_driver_on_the_plain_yaml(tmp_path: Path) -> None:
    """Without the physics model: the canonical scan of the shipped pyvisa-sim definition."""
    import pyvisa

    profile = PROFILES["Keysight DAQ970A"]
    copy = tmp_path / yaml_path(profile).name
    shutil.copy(yaml_path(profile), copy)
    rm = pyvisa.ResourceManager(f"{copy}@sim")
    daq = KeysightDAQ970A(profile.resources[0], resource_manager=rm, timeout_s=0.5)
    daq.configure_scan([101, 102, 103, 104])
    daq.set_integration_time_s(0.02)
    assert daq.read_scan_v().tolist() == [0.1, 0.2, 0.3, 0.4]
    daq.check_errors()
    daq.close()
