"""Bank readouts: every bank's output in one call, from a multiport power meter, source meters or a DAQ.

A weight bank ends in a balanced detector. On an off-chip bench the through and drop ports go to two power
meter ports and the balance is computed here; on a bench with on-chip balanced photodiodes either a source meter
per bank reads the photocurrent directly, or each photocurrent goes through a transimpedance amplifier (TIA) into
one channel of a scanning DAQ and is converted back to amps here with the TIA's gain and offset. All satisfy
:class:`labctl.drivers.interfaces.BankReadout`.
"""

from __future__ import annotations

import numpy as np

from labctl.drivers.errors import InstrumentError, LimitError
from labctl.drivers.interfaces import BankReading, PowerReadout, ScanningVoltmeter, SourceMeter


class PowerMeterBanks:
    """Through and drop ports of every bank on power-meter ports (0-based interface ports)."""

    unit = "W"
    #: Calibration does not probe this readout's noise by default: the meters' averaging is bound by the logging
    #: sweeps (below a step's time) and their noise is far below the signal (probe: 2-5e-5 of it at 100 us, the
    #: setting it would keep); labctl.calibration.readout_noise.
    probe_noise = False

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
        #: One meter reading every bank in bank order (the common wiring): (meter, through ports, drop ports), read
        #: with two gathers; None: the general path
        self._single = (meters[0], self._thr[0], self._drop[0]) if len(meters) == 1 and np.array_equal(
            self._banks[0], np.arange(self.n_banks)) else None

    def configure(self, wavelength_m: float, averaging_time_s: float) -> None:
        for meter in self.meters:
            meter.set_wavelength_m(wavelength_m)
            meter.set_averaging_time_s(averaging_time_s)

    def read(self) -> BankReading:
        if self._single is not None:  # (the values of _reading, without its scatter into new arrays)
            meter, thr, drop = self._single
            values = meter.read_all_w()
            through, dropped = values[thr], values[drop]
            return BankReading(balanced=dropped - through, unit=self.unit, through=through, drop=dropped)
        return self._reading([meter.read_all_w() if self._banks[m].size else None
                              for m, meter in enumerate(self.meters)])

    def _reading(self, per_meter: list[np.ndarray | None]) -> BankReading:
        through = np.empty(self.n_banks)
        drop = np.empty(self.n_banks)
        for m, values in enumerate(per_meter):
            if values is None:
                continue
            through[self._banks[m]] = values[self._thr[m]]
            drop[self._banks[m]] = values[self._drop[m]]
        return BankReading(balanced=drop - through, unit=self.unit, through=through, drop=drop)

    # -- a reading started now and collected later (meters that take a self-triggered all-port query) -----------
    @property
    def can_start_read(self) -> bool:
        """Every meter used can start a reading and answer it later (``start_read_all``/``finish_read_all``)."""
        return all(hasattr(meter, "start_read_all") for m, meter in enumerate(self.meters) if self._banks[m].size)

    def start_read(self) -> None:
        """Every used meter starts one averaging-time measurement now (see :meth:`finish_read`)."""
        for m, meter in enumerate(self.meters):
            if self._banks[m].size:
                meter.start_read_all()  # type: ignore[attr-defined]

    def finish_read(self) -> BankReading:
        """The reading started by :meth:`start_read` (its reply may have been on its way meanwhile)."""
        return self._reading([meter.finish_read_all() if self._banks[m].size else None  # type: ignore[attr-defined]
                              for m, meter in enumerate(self.meters)])


class SourceMeterBanks:
    """One source meter per bank biasing and reading the on-chip balanced photodiode (photocurrent in A).

    With ``trigger_lines`` (the bench file's ``trigger_line`` of every detector: the sweeping laser's trigger output
    is cabled to that Trigger Link input of each meter) the banks can also be read during a continuous laser sweep:
    :meth:`start_logging` arms every meter for one buffered reading per laser step trigger, :meth:`finish_logging`
    reads each meter's buffer in one transfer (``labctl.drivers.keithley_2400``, "Triggered buffered readings").
    """

    unit = "A"
    #: Calibration chooses this readout's integration (NPLC) from a noise probe (labctl.calibration.readout_noise).
    probe_noise = True

    def __init__(self, meters: list[SourceMeter], *, bias_v: float = 0.0, compliance_a: float = 0.01,
                 trigger_lines: list[int] | None = None) -> None:
        self.meters = meters
        self.n_banks = len(meters)
        self.bias_v = bias_v
        self.compliance_a = compliance_a
        if trigger_lines is not None and len(trigger_lines) != len(meters):
            raise LimitError(f"{len(trigger_lines)} trigger lines for {len(meters)} source meters")
        self.trigger_lines = trigger_lines
        self._biased = False
        self._logging = False

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
        """Every bank's photocurrent. Meters that can start a reading and answer it later are all started first
        (each on its own bus address measures when its ``:READ?`` arrives), so the banks integrate at the same time
        and the read costs one reading, not one per bank."""
        if self.can_start_read:
            self.start_read()
            return self.finish_read()
        if not self._biased:
            self._bias()
        self.end_logging()
        return BankReading(balanced=np.array([m.measure_current_a() for m in self.meters]), unit=self.unit)

    def read_repeated(self, n: int) -> np.ndarray:
        """(n, B) readings of every bank at the present settings, one transfer per meter where the meters take
        repeated readings in one ``:READ?`` (``read_repeated_a``), else ``n`` reads."""
        if not all(hasattr(m, "read_repeated_a") for m in self.meters):
            return np.vstack([self.read().balanced for _ in range(n)])
        if not self._biased:
            self._bias()
        self.end_logging()
        return np.column_stack([m.read_repeated_a(n) for m in self.meters])  # type: ignore[attr-defined]

    # -- readings started on every meter at once and collected later ------------------------------------------------
    @property
    def can_start_read(self) -> bool:
        """Every meter can start a reading and answer it later (``start_read_current``/``finish_read_current``)."""
        return all(hasattr(m, "start_read_current") for m in self.meters)

    def reading_time_bound_s(self) -> float | None:
        """Bound on how long a reading started by :meth:`start_read` looks at the chip after its command (s): until
        then nothing may change on the chip (the longest of the meters' bounds). None at the 2400's shortest
        integration (0.01 NPLC), the setting the overlap was designed with: there the reading (auto source delay
        and 0.2 ms) ends before the next configuration's first heater line arrives (on the emulated bench no reading
        is disturbed; not confirmed on hardware), and the bound's margins would only cost bench time. Longer
        integrations, which the noise probe chooses on noisy detectors, are waited for."""
        if all(getattr(m, "shortest_integration", lambda: False)() for m in self.meters):
            return None
        return max(float(m.reading_time_bound_s()) for m in self.meters)  # type: ignore[attr-defined]

    def start_read(self) -> None:
        """Every meter starts one reading now: the banks are read at the same time, not one after the other."""
        if not self._biased:
            self._bias()
        self.end_logging()
        for meter in self.meters:
            meter.start_read_current()  # type: ignore[attr-defined]

    def finish_read(self) -> BankReading:
        """The readings started by :meth:`start_read`; every meter's reply is collected before the first failure
        (a reading at compliance) is raised, so no reply is left waiting in a meter's output queue."""
        values = np.empty(self.n_banks)
        first: Exception | None = None
        for b, meter in enumerate(self.meters):
            try:
                values[b] = meter.finish_read_current()  # type: ignore[attr-defined]
            except InstrumentError as exc:
                first = first or exc
        if first is not None:
            raise first
        return BankReading(balanced=values, unit=self.unit)

    # -- buffered readings, one per laser sweep step (Trigger Link) ---------------------------------------------------
    @property
    def can_log_sweep(self) -> bool:
        """Every meter is cabled to the sweeping laser's trigger output and can take triggered buffered readings."""
        return self.trigger_lines is not None and all(hasattr(m, "arm_triggered") for m in self.meters)

    def min_trigger_period_s(self) -> float:
        """Shortest laser step period at which every meter takes a reading at every step trigger, s."""
        return max(float(m.min_trigger_period_s()) for m in self.meters)  # type: ignore[attr-defined]

    def sample_lag_s(self) -> float:
        """From a step trigger to the middle of the reading it starts, s (source and trigger delays are 0, so half
        the longest integration): the laser moves on meanwhile, and a spectrum's wavelengths are corrected by it."""
        return 0.5 * max(float(m.integration_time_s()) for m in self.meters)  # type: ignore[attr-defined]

    def start_logging(self, n_points: int) -> None:
        """Arm every meter for ``n_points`` readings, one per step trigger on its line (output on, biased)."""
        if not self.can_log_sweep:
            raise LimitError("these source meters are not cabled to a laser trigger (wiring.detectors.trigger_line)")
        if not self._biased:
            self._bias()
        assert self.trigger_lines is not None
        self._logging = True
        for meter, line in zip(self.meters, self.trigger_lines):
            meter.arm_triggered(n_points, line)  # type: ignore[attr-defined]

    def finish_logging(self, n_points: int) -> np.ndarray:
        """(n_points, B) balanced currents of the armed acquisition, A (one buffer transfer per meter)."""
        return np.column_stack([m.fetch_triggered_a(n_points)  # type: ignore[attr-defined]
                                for m in self.meters])

    def end_logging(self) -> None:
        """Every meter back to single immediate readings (what :meth:`read` needs)."""
        if not self._logging:
            return
        self._logging = False
        for meter in self.meters:
            meter.end_triggered()  # type: ignore[attr-defined]


class AdcBanks:
    """Each bank's balanced photocurrent through a TIA into a DAQ channel: ``I = (V - offset) / gain`` (A).

    ``wiring[b] = (DAQ index, channel, gain V/A, offset V)``. The scan lists are set up here, once per DAQ in bank
    order, so a channel missing on the instrument is an error when the bench opens, not at the first reading.
    """

    unit = "A"
    #: Calibration chooses the DAQ's integration from a noise probe (labctl.calibration.readout_noise).
    probe_noise = True

    def __init__(self, adcs: list[ScanningVoltmeter], wiring: list[tuple[int, int, float, float]]) -> None:
        self.adcs = adcs
        self.wiring = wiring
        self.n_banks = len(wiring)
        self.gain_v_per_a = np.array([w[2] for w in wiring], dtype=float)
        self.offset_v = np.array([w[3] for w in wiring], dtype=float)
        if np.any(self.gain_v_per_a == 0) or not np.all(np.isfinite(self.gain_v_per_a)):
            raise LimitError(f"TIA gains must be finite and non-zero, got {self.gain_v_per_a.tolist()}")
        self._banks = [np.array([b for b, w in enumerate(wiring) if w[0] == a], dtype=int) for a in range(len(adcs))]
        for a, adc in enumerate(adcs):
            if self._banks[a].size:
                adc.configure_scan([wiring[b][1] for b in self._banks[a]])
        #: Integration time per bank as last configured, s (the DAQ rounds the request up to what it offers).
        self.integration_time_s = np.full(self.n_banks, np.nan)

    def integration_plan(self, averaging_time_s: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per bank: (integration time s, range V, line frequency Hz) that :meth:`configure` with
        ``averaging_time_s`` sets, computed by the drivers without talking to the instruments."""
        t, r, f = (np.empty(self.n_banks) for _ in range(3))
        for a, adc in enumerate(self.adcs):
            banks = self._banks[a]
            if banks.size:
                t[banks] = adc.integration_for(averaging_time_s)[2]  # type: ignore[attr-defined]
                r[banks] = adc.range_v  # type: ignore[attr-defined]
                f[banks] = adc.line_frequency_hz  # type: ignore[attr-defined]
        return t, r, f

    def configure(self, wavelength_m: float, averaging_time_s: float) -> None:
        """Integration of at least ``averaging_time_s`` on every channel (a DAQ has no wavelength setting)."""
        for a, adc in enumerate(self.adcs):
            if self._banks[a].size:
                self.integration_time_s[self._banks[a]] = adc.set_integration_time_s(averaging_time_s)

    def read(self) -> BankReading:
        volts = np.empty(self.n_banks)
        for a, adc in enumerate(self.adcs):
            if self._banks[a].size:
                volts[self._banks[a]] = adc.read_scan_v()
        return BankReading(balanced=(volts - self.offset_v) / self.gain_v_per_a, unit=self.unit)
