"""The fast path of photonic DFA: the same engine, calibration and schedule, with the readings taken from the
emulator in one vectorized call per batch instead of one instrument exchange per reading.

Same physics: every configuration's settled response at every encoding with laser RIN and the readout's noise and
quantization drawn per reading: ``Chip.meter_readings_configs`` (the N774x meter model in auto range, fused in one
compiled pass) for off-chip meters, ``Chip.evaluate_configs`` (the balanced detector, then the source meter's
compliance) for on-chip photodiodes. The virtual
clock is advanced by the batch's projected bench time (unit costs measured through the instruments times the
schedule's operation counts), so the chip drifts as it would on the bench, and drift checks and recalibrations
still go through the instruments. Heater settling transients are not modelled here (every reading is settled, as
the stack's settle wait makes it).

Only for emulated benches: it needs the :class:`~labctl.sim.chip.Chip` behind the bench.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from labctl.bench_readout import PowerMeterBanks, SourceMeterBanks
from labctl.photonic import PhotonicMatVec, PhotonicSetupError
from labctl.sim.instruments.keysight_models import AUTO_RANGE_MARGIN_DB
from labctl.tiling import op_counts


class FastMatVec(PhotonicMatVec):
    """Readings from ``chip.evaluate_configs`` (see the module docstring)."""

    kind = "photonic-fast"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.emulator is None:
            raise PhotonicSetupError("the fast path needs the emulated chip (emulated benches only); use the "
                                     "instrument stack on a real bench")
        readout = self.hw.readout
        if not isinstance(readout, PowerMeterBanks | SourceMeterBanks):
            raise PhotonicSetupError(f"no fast-path model of readout {type(readout).__name__}")
        self._meter = isinstance(readout, PowerMeterBanks)

    def _read_batch(self, powers: np.ndarray, n: int) -> np.ndarray:
        assert self.plan is not None and self.costs is not None
        chip = self.emulator
        cfg_powers = powers[self.config_block]                                   # (n_cfg, N + 1, C)
        if self._meter:
            out = chip.meter_readings_configs(self.drives, cfg_powers, self.averaging_time_s, AUTO_RANGE_MARGIN_DB,
                                              mode=self.hw.mode)
        else:
            ev = chip.evaluate_configs(self.drives, cfg_powers, self.averaging_time_s, mode=self.hw.mode)
            limit = float(self.hw.readout.compliance_a)  # type: ignore[attr-defined]
            out = np.clip(ev.balanced_current_a, -limit, limit)
        ops = op_counts(self.order, self.drives.shape[0], self.plan.n_blocks, n)
        projected = ops.time_s(self.costs)
        chip.clock.advance(projected, "photonic fast path")
        self._record_ops(ops, projected, ops.transactions(self.costs))
        self._config = None
        return out
