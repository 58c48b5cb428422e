"""Bank readouts: every bank's output in one call, from a multiport power meter or from source meters.

A weight bank ends in a balanced detector. On an off-chip bench the through and drop ports go to two power
meter ports and the balance is computed here; on a bench with on-chip balanced photodiodes a source meter per
bank reads the photocurrent directly. Both satisfy :class:`labctl.drivers.interfaces.BankReadout`.
"""

from __future__ import annotations

import numpy as np

from labctl.drivers.errors import LimitError
from labctl.drivers.interfaces import BankReading, PowerReadout, SourceMeter


class PowerMeterBanks:
    """Through and drop ports of every bank on power-meter ports (0-based interface ports)."""

    unit = "W"

    def __init__(self, meters: list[PowerReadout], ports: list[tuple[int, int, int]]) -> None:
        """``ports[b] = (meter index, through port, drop port)``."""
        self.meters = meters
        self.ports = ports
        self.n_banks = len(ports)
        for b, (m, thr, drop) in enumerate(ports):
            n = meters[m].n_ports
            if not (0 <= thr < n and 0 <= drop < n):
                raise LimitError(f"bank {b}: ports {thr}, {drop} not on {meters[m].name} (0..{n - 1})")
        self._thr = [np.array([p[1] for p in ports if p[0] == m], dtype=int) for m in range(len(meters))]
        self._drop = [np.array([p[2] for p in ports if p[0] == m], dtype=int) for m in range(len(meters))]
        self._banks = [np.array([b for b, p in enumerate(ports) if p[0] == m], dtype=int)
                       for m in range(len(meters))]

    def configure(self, wavelength_m: float, averaging_time_s: float) -> None:
        for meter in self.meters:
            meter.set_wavelength_m(wavelength_m)
            meter.set_averaging_time_s(averaging_time_s)

    def read(self) -> BankReading:
        through = np.empty(self.n_banks)
        drop = np.empty(self.n_banks)
        for m, meter in enumerate(self.meters):
            if self._banks[m].size == 0:
                continue
            values = meter.read_all_w()
            through[self._banks[m]] = values[self._thr[m]]
            drop[self._banks[m]] = values[self._drop[m]]
        return BankReading(balanced=drop - through, unit=self.unit, through=through, drop=drop)


class SourceMeterBanks:
    """One source meter per bank biasing and reading the on-chip balanced photodiode (photocurrent in A)."""

    unit = "A"

    def __init__(self, meters: list[SourceMeter], *, bias_v: float = 0.0, compliance_a: float = 0.01) -> None:
        self.meters = meters
        self.n_banks = len(meters)
        self.bias_v = bias_v
        self.compliance_a = compliance_a
        self._biased = False

    def _bias(self) -> None:
        """Photodiodes are read at a fixed bias with the source output on (the 2400 reads nothing when off)."""
        for meter in self.meters:
            meter.set_compliance_a(self.compliance_a)
            meter.set_voltage_v(self.bias_v)
            meter.set_output(True)
        self._biased = True

    def configure(self, wavelength_m: float, averaging_time_s: float) -> None:
        for meter in self.meters:
            meter.set_integration_time_s(averaging_time_s)
        if not self._biased:
            self._bias()

    def read(self) -> BankReading:
        if not self._biased:
            self._bias()
        return BankReading(balanced=np.array([m.measure_current_a() for m in self.meters]), unit=self.unit)
