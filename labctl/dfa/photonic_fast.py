"""The fast path of photonic DFA: the same engine, calibration and schedule, with the readings taken from the
emulator in one vectorized call per batch instead of one instrument exchange per reading.

Same physics: every configuration's settled response at every encoding with laser RIN and the readout's noise and
quantization drawn per reading: ``Chip.meter_readings_configs`` (the N774x meter model in auto range, fused in one
compiled pass) for off-chip meters, ``Chip.evaluate_configs`` (the balanced detector, then the source meter's
compliance) for on-chip photodiodes read by source meters, and the balanced detector through each bank's TIA
into the DAQ model (``daq_reading_v``: ADC noise and bits at the integration the DAQ actually set, overload) for
photodiodes read by a DAQ. The virtual clock is advanced by the batch's projected bench time (unit costs
measured through the instruments times the schedule's operation counts), so the chip drifts as it would on the
bench. Drift checks read their references the same way (one laser at a time at its calibration power, as
``Calibration.measure_weights`` does) and advance the clock by what the first check, made through the instruments,
cost; when a check trips, the confirmation and any recalibration go through the instruments. Heater settling
transients are not modelled here (every reading is settled, as the stack's settle wait makes it).

Only for emulated benches: it needs the :class:`~labctl.sim.chip.Chip` behind the bench.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from labctl.bench.readout import AdcBanks, PowerMeterBanks, SourceMeterBanks
from labctl.dfa.photonic import PhotonicMatVec, PhotonicSetupError
from labctl.drivers.errors import InstrumentReplyError
from labctl.sim.instruments.daq_model import daq_reading_v
from labctl.sim.instruments.keysight_models import AUTO_RANGE_MARGIN_DB
from labctl.dfa.tiling import op_counts


class FastMatVec(PhotonicMatVec):
    """Readings from ``chip.evaluate_configs`` (see the module docstring)."""

    kind = "photonic-fast"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.emulator is None:
            raise PhotonicSetupError("the fast path needs the emulated chip (emulated benches only); use the "
                                     "instrument stack on a real bench")
        readout = self.hw.readout
        if not isinstance(readout, PowerMeterBanks | SourceMeterBanks | AdcBanks):
            raise PhotonicSetupError(f"no fast-path model of readout {type(readout).__name__}")
        self._meter = isinstance(readout, PowerMeterBanks)

    def _readings(self, drives: np.ndarray, powers: np.ndarray, averaging_time_s: float,
                  power_index: np.ndarray | None = None) -> np.ndarray:
        """Balanced readings (T, N, B) of T drives at N laser power settings: powers (N, C), or (K, N, C) of which
        drive t reads ``powers[power_index[t]]``."""
        chip = self.emulator
        if self._meter:
            return chip.meter_readings_configs(drives, powers, averaging_time_s, AUTO_RANGE_MARGIN_DB,
                                               mode=self.hw.mode, power_index=power_index)
        if power_index is not None:
            powers = powers[power_index]
        if isinstance(self.hw.readout, AdcBanks):
            return self._adc_readings(drives, powers, averaging_time_s)
        ev = chip.evaluate_configs(drives, powers, averaging_time_s, mode=self.hw.mode)
        limit = float(self.hw.readout.compliance_a)  # type: ignore[attr-defined]
        return np.clip(ev.balanced_current_a, -limit, limit)

    def _adc_readings(self, drives: np.ndarray, powers: np.ndarray, averaging_time_s: float) -> np.ndarray:
        """What ``AdcBanks.read`` returns: balanced currents through the TIAs, read by the DAQ at the integration
        time it sets for ``averaging_time_s`` (the driver's own rounding, no I/O), converted back to amps."""
        readout: AdcBanks = self.hw.readout  # type: ignore[assignment]
        t_bank, range_v, line_hz = readout.integration_plan(averaging_time_s)
        ev = self.emulator.evaluate_configs(drives, powers, float(t_bank.max()), mode=self.hw.mode)
        volts = ev.balanced_current_a * readout.gain_v_per_a + readout.offset_v
        normals = self.emulator.instrument_normals(volts.shape)
        reading, overload = daq_reading_v(volts, range_v, t_bank * line_hz, normals)
        if overload.any():
            bank = int(np.argwhere(overload)[0][-1])
            adc, channel = readout.adcs[readout.wiring[bank][0]], readout.wiring[bank][1]
            raise InstrumentReplyError(f"channel {channel} overload: beyond the {range_v[bank]:g} V range (TIA output "
                                       "too large?)", instrument=adc.name, address=adc.address)
        return (reading - readout.offset_v) / readout.gain_v_per_a

    def _read_batch(self, powers: np.ndarray, n: int) -> np.ndarray:
        assert self.plan is not None and self.costs is not None
        out = self._readings(self.drives, powers, self.averaging_time_s, self.config_block)
        ops = op_counts(self.order, self.drives.shape[0], self.plan.n_blocks, n)
        projected = ops.time_s(self.costs)
        self._advance_clock(projected, "photonic fast path")
        self._record_ops(ops, projected, ops.transactions(self.costs))
        self._config = None
        return out

    # -- drift checks read the references from the emulator too (confirmations and recalibrations do not) ----------
    def _direct_reference_weights(self) -> bool:
        return True

    def _reference_weights(self, drives: np.ndarray) -> np.ndarray:
        """What ``Calibration.measure_weights`` reads: one laser at a time at its calibration power, every bank."""
        cal = self.cal
        channels = cal.measurement_channels
        p_cal = cal.rmap.laser_power_w
        powers = np.zeros((channels.size, self.hw.n_channels))
        powers[np.arange(channels.size), channels] = (np.asarray(p_cal, dtype=float)[channels]
                                                      if p_cal is not None else self.encoding.high_w)
        t_avg = cal._averaging_time_s if cal._averaging_time_s is not None else self.averaging_time_s
        raw = self._readings(np.asarray(drives, dtype=float), powers, float(t_avg))   # (M, n, B)
        return cal.weights_from_readings(np.swapaxes(raw, 1, 2), channels)

    def _advance_clock(self, time_s: float, what: str) -> None:
        self.emulator.clock.advance(time_s, what)
