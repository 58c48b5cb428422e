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
cost; when a check trips, the first confirmation and every recalibration go through the instruments. Heater
settling transients are not modelled here (every reading is settled, as the stack's settle wait makes it), nor the
chip's temperature walk within a batch: the batch is read at one instant and the clock advanced after it. Through
the instruments a mnist5k batch spans 2.6 min of bench time with its reference encoding read at the start: measured
on the default bench (``bench/bench_time.py``), the stack's product error std is 0.074 (units of max|e|) against
the fast path's 0.023, and 0.026 against 0.023 with the chip's drift switched off.

Only for emulated benches: the readings come from the bench session's vectorized batch, which only the emulation
root supplies (``Session.vectorized``); nothing here knows the chip or an instrument model.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from labctl.dfa.photonic import PhotonicMatVec, PhotonicSetupError
from labctl.dfa.tiling import op_counts


class FastMatVec(PhotonicMatVec):
    """Readings from ``chip.evaluate_configs`` (see the module docstring)."""

    kind = "photonic-fast"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.hw.vectorized is None:
            raise PhotonicSetupError("the fast path needs the emulated chip (emulated benches only); use the "
                                     "instrument stack on a real bench")

    def _readings(self, drives: np.ndarray, powers: np.ndarray, averaging_time_s: float,
                  power_index: np.ndarray | None = None) -> np.ndarray:
        """Balanced readings (T, N, B) of T drives at N laser power settings: powers (N, C), or (K, N, C) of which
        drive t reads ``powers[power_index[t]]``."""
        return self.hw.vectorized.read(drives, powers, averaging_time_s, power_index)

    def _read_batch(self, powers: np.ndarray, n: int) -> np.ndarray:
        assert self.plan is not None and self.costs is not None
        out = self._readings(self.drives, powers, self.averaging_time_s, self.config_block)
        ops = op_counts(self.order, self.drives.shape[0], self.plan.n_blocks, n)
        projected = ops.time_s(self.costs)
        self._advance_clock(projected, "photonic fast path")
        c = self.costs
        self._record_ops(ops, projected, ops.transactions(c), ops.time_by_kind_s(c),
                         {"configure": ops.configs * c.config_tx, "encode": ops.encodings * c.encode_tx,
                          "read": ops.readings * c.read_tx, "batch": c.batch_tx})
        self._config = None
        return out

    def _read_probe(self, powers: np.ndarray, sequence: np.ndarray) -> np.ndarray:
        """From the emulator, the clock advanced by what the same pass costs through the instruments."""
        assert self.costs is not None
        out = self._readings(self.drives[sequence], powers, self.averaging_time_s)
        ops = op_counts(self._probe_order(), len(sequence), 1, powers.shape[0] - 1)
        self._advance_clock(ops.time_s(self.costs), "photonic fast path: refining the configurations")
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
