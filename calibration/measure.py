"""Raw measurements for calibration: per-channel balanced readings and swept spectra, through the instruments only.

Two primitives, used by the resonance map, the thermal characterization and the closed-loop refinement:

* :func:`channel_weights_raw` — every bank's balanced output with ONE laser on at a time. A bank's detector sums
  every channel it receives, so per-channel weights need the channels apart; banks are read in parallel (one
  readout call per laser). Switching a laser output on costs its stabilisation wait (about 1 s on the N777xC),
  which dominates the cost: about one second per channel.
* :func:`spectra` — a wavelength scan of one laser with the others off. On a bench whose bank ports go to a
  logging power meter (``hw.power_meter``/``hw.sweep_ports``) it is one continuous sweep with lambda logging and
  triggered meter logging (instruments.md §1.3 through the capability interfaces): every bank's through and drop
  ports in one pass, at the sweep speed. On a bench whose source meters are cabled to the laser's trigger output
  (``hw.readout.can_log_sweep``: on-chip balanced photodiodes, ``wiring.detectors.trigger_line``) it is one
  continuous sweep too, every meter taking one buffered reading per step trigger (balanced only). Otherwise the
  laser is stepped and ``hw.readout`` read at each wavelength (about 0.1 s per point: the laser's tuning time).

:class:`SpectrumSession` keeps the set-up (lasers, meter ranges) across many scans; thermal characterization takes
dozens of them. Nothing here sleeps: the instruments (and ``hw.wait``) charge their own time, on the virtual
clock of an emulated bench.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

import numpy as np

from labctl.drivers.errors import InstrumentError, LimitError
from labctl.drivers.interfaces import SweepSettings
from labctl.drivers.laser_outputs import switch_on_together

from labctl.drivers.interfaces import BenchSession

log = logging.getLogger(__name__)

#: Continuous sweep speed (reference-chip.md: 10 nm/s with logging at 1 pm steps).
SWEEP_SPEED_M_PER_S = 10e-9
#: Seconds a meter may still need after the laser reports the sweep done (on top of one averaging time per point).
LOGGING_GRACE_S = 3.0
#: Finest sweep step of the Keysight lasers; sweep steps are rounded to a multiple of it.
SWEEP_STEP_QUANTUM_M = 1e-13
#: Most readings one triggered sweep takes (the Keithley 2400's buffer holds 2500); longer scans are split.
TRIGGERED_MAX_POINTS = 2500
#: Readouts refuse averaging times below their minimum (a Keithley's 0.01 NPLC); the requested time is doubled
#: up to this many times until the readout accepts it (logged).
AVERAGING_RETRIES = 8


@dataclass
class Spectra:
    """One wavelength scan of every bank (readout units: W for power meters, A for photodiodes)."""

    wavelength_m: np.ndarray             # (W,) as emitted (lambda log) or as commanded (stepped)
    balanced: np.ndarray                 # (W, B) drop - through (NaN when only the through ports were fetched)
    through: np.ndarray | None           # (W, B) when the ports are read apart
    drop: np.ndarray | None              # (W, B)
    unit: str
    laser: int = 0
    laser_power_w: float = float("nan")  # the scanning laser's set power


# -- small helpers -----------------------------------------------------------------------------------------------------
def emit(hw: BenchSession, stream: str, **row: Any) -> None:
    """Raw data for the run's record when the session records one (``Session.emit``); nothing otherwise."""
    tap = getattr(hw, "emit", None)
    if tap is not None:
        tap(stream, **row)


def configure_readout(hw: BenchSession, wavelength_m: float, averaging_time_s: float) -> float:
    """Configure every bank's readout; returns the averaging time actually used.

    A source meter cannot integrate as briefly as a power meter averages; when the requested time is refused the
    next doubling that is accepted is used and a warning logged (a measurement setting, not a safety limit).
    """
    t = float(averaging_time_s)
    for attempt in range(AVERAGING_RETRIES + 1):
        try:
            hw.readout.configure(float(wavelength_m), t)
        except LimitError:
            if attempt == AVERAGING_RETRIES:
                raise
            t *= 2.0
            continue
        if t != averaging_time_s:
            log.warning("readout refused %.3g s averaging; using %.3g s", averaging_time_s, t)
        return t
    raise AssertionError("unreachable")


def _laser_states(hw: BenchSession) -> list[bool]:
    return [bool(laser.get_output()) for laser in hw.lasers]


def _set_outputs(hw: BenchSession, wanted: Sequence[bool], current: list[bool]) -> None:
    """Switch outputs to ``wanted``, offs first (nothing extra reaches the chip), touching only those that differ;
    the ones switched on share one stabilisation wait (``switch_on_together``)."""
    for k in np.flatnonzero([c and not w for c, w in zip(current, wanted)]):
        hw.lasers[k].set_output(False)
        current[k] = False
    on = np.flatnonzero([w and not c for c, w in zip(current, wanted)])
    for k in on:                # marked first: an interrupted wait still finds them to switch off
        current[k] = True
    switch_on_together([hw.lasers[k] for k in on], lambda s: hw.clock.sleep(s, "wait"))


@contextmanager
def lasers_restored(hw: BenchSession) -> Iterator[None]:
    """Every output back to its state at entry when the block ends, on every path: a loop of readings taken with
    ``restore_lasers=False`` restores once instead of after each reading."""
    before = _laser_states(hw)
    try:
        yield
    finally:
        _set_outputs(hw, before, _laser_states(hw))


@contextmanager
def only_laser(hw: BenchSession, laser: int | None) -> Iterator[list[bool]]:
    """Only ``laser`` on (all off when None) for the block; every output restored afterwards, on every path."""
    before = _laser_states(hw)
    current = list(before)
    try:
        wanted = [k == laser for k in range(hw.n_channels)]
        _set_outputs(hw, wanted, current)
        yield current
    finally:
        _set_outputs(hw, before, current)


# -- per-channel readings ----------------------------------------------------------------------------------------------
def channel_weights_raw(hw: BenchSession, channels: np.ndarray | None = None,
                        averaging_time_s: float = 1e-4, *, restore_lasers: bool = True) -> np.ndarray:
    """Balanced readings (B, C) in the readout unit with ONE laser on at a time (all banks read in parallel per
    laser); lasers restored to their previous on/off state afterwards. Uses hw.readout.

    ``channels`` selects (and orders) the columns; the lasers stay at their present wavelengths and powers.
    ``restore_lasers=False`` leaves every output off (a refinement loop calling this repeatedly saves one laser
    stabilisation per channel and call; restore the state once at its end).
    """
    return channel_weights_raw_at(hw, np.zeros((1, 0)), lambda drive: None, channels, averaging_time_s,
                                  restore_lasers=restore_lasers)[0]


def channel_weights_raw_at(hw: BenchSession, drives: np.ndarray, apply: Any, channels: np.ndarray | None = None,
                           averaging_time_s: float = 1e-4, *, restore_lasers: bool = True) -> np.ndarray:
    """Balanced readings (M, B, C) of every bank at each of ``drives`` (M, N), one laser on at a time as in
    :func:`channel_weights_raw`, but each laser switched on once for all M drives (``apply(drive)`` writes one;
    heater writes are cheap next to a laser's stabilisation wait, about 1 s on the N777xC): C laser switches
    instead of M x C. Lasers restored to their previous on/off state afterwards (all off with
    ``restore_lasers=False``)."""
    chans = np.arange(hw.n_channels) if channels is None else np.asarray(channels, dtype=int).reshape(-1)
    if chans.size and (chans.min() < 0 or chans.max() >= hw.n_channels):
        raise LimitError(f"channels must be in 0..{hw.n_channels - 1}, got {chans.tolist()}")
    drives = np.atleast_2d(np.asarray(drives, dtype=float))
    out = np.empty((drives.shape[0], hw.n_banks, chans.size))
    before = _laser_states(hw)
    current = list(before)
    try:
        _set_outputs(hw, [False] * hw.n_channels, current)
        for j, c in enumerate(chans):
            configure_readout(hw, float(hw.wavelengths_m[c]), averaging_time_s)
            _set_outputs(hw, [k == c for k in range(hw.n_channels)], current)
            for m, drive in enumerate(drives):
                apply(drive)
                out[m, :, j] = hw.readout.read().balanced
    finally:
        _set_outputs(hw, before if restore_lasers else [False] * hw.n_channels, current)
    return out


# -- spectra -----------------------------------------------------------------------------------------------------------
def sweep_kind(hw: BenchSession) -> str:
    """How this bench takes a spectrum: ``"logging"`` (laser sweep, power meter logging the bank ports),
    ``"triggered"`` (laser sweep, source meters reading one balanced value per step trigger) or ``"stepped"``."""
    if hw.power_meter is not None and hw.sweep_ports is not None:
        return "logging"
    if getattr(hw.readout, "can_log_sweep", False):
        return "triggered"
    return "stepped"


def scan_point_count(start_m: float, stop_m: float, step_m: float) -> int:
    """Points of a scan from ``start_m`` on ``step_m`` steps up to ``stop_m`` (both ends included when on the grid)."""
    return math.floor((stop_m - start_m) / step_m + 1e-6) + 1


def _grid(start_m: float, stop_m: float, step_m: float) -> np.ndarray:
    return start_m + step_m * np.arange(scan_point_count(start_m, stop_m, step_m))


class SpectrumSession:
    """Repeated scans with one laser: lasers and meter ranges set once, restored on exit.

    Use as a context manager (``with SpectrumSession(hw) as s: s.scan(...)``). Logging sweeps when the bench has a
    logging power meter on the bank ports, stepped scans otherwise.
    """

    def __init__(self, hw: BenchSession, laser: int = 0, *, averaging_time_s: float = 1e-4,
                 speed_m_per_s: float = SWEEP_SPEED_M_PER_S, stepped: bool | None = None,
                 through_only: bool = False) -> None:
        self.hw = hw
        self.laser = int(laser)
        if not 0 <= self.laser < hw.n_channels:
            raise LimitError(f"laser {laser} is not one of 0..{hw.n_channels - 1}")
        self.averaging_time_s = float(averaging_time_s)
        self.speed_m_per_s = float(speed_m_per_s)
        kind = sweep_kind(hw)
        self.stepped = (kind == "stepped") if stepped is None else bool(stepped)
        if not self.stepped and kind == "stepped":
            raise LimitError("this bench has no logging power meter on the bank ports and no source meters on a "
                             "laser trigger: use stepped scans")
        #: Sweeps read by source meters on the laser's step triggers (not a logging power meter).
        self.triggered = not self.stepped and kind == "triggered"
        self._laser_ctx: AbstractContextManager[list[bool]] | None = None
        self._ranged = False
        #: Logging sweeps fetch only the through ports (half the data; what resonance tracking needs).
        self.through_only = bool(through_only)
        self.power_w = float("nan")
        self.scans = 0

    def __enter__(self) -> Self:
        self._laser_ctx = only_laser(self.hw, self.laser)
        self._laser_ctx.__enter__()
        try:
            laser = self.hw.lasers[self.laser]
            self.power_w = float(laser.get_power_w())
            self._home_m = float(laser.get_wavelength_m())
            if self.stepped or self.triggered:
                self.averaging_time_s = configure_readout(self.hw, self._home_m, self.averaging_time_s)
        except BaseException:
            self._laser_ctx.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        try:
            if self.stepped:
                laser = self.hw.lasers[self.laser]
                laser.set_wavelength_m(self._home_m)
            elif self.triggered:
                self.hw.readout.end_logging()  # type: ignore[attr-defined]
            elif self._ranged:
                meter = self.hw.power_meter
                assert meter is not None and self.hw.sweep_ports is not None
                for p in self._ports():
                    meter.set_range_dbm(None, p)      # back to auto range, as the readout expects
        finally:
            assert self._laser_ctx is not None
            self._laser_ctx.__exit__(exc_type, exc, tb)

    def _ports(self) -> list[int]:
        assert self.hw.sweep_ports is not None
        return [p for pair in self.hw.sweep_ports for p in pair]

    def _prepare_meter(self, centre_m: float) -> None:
        """Fixed range that holds the laser power (the chip adds none), calibration wavelength mid-band."""
        meter = self.hw.power_meter
        assert meter is not None
        choices = getattr(meter, "range_choices_dbm", None)
        power_dbm = 10.0 * math.log10(max(self.power_w, 1e-12) / 1e-3)
        if choices:
            fitting = sorted(r for r in choices if r >= power_dbm)
            range_dbm = fitting[0] if fitting else max(choices)
        else:
            range_dbm = 10.0 * math.ceil(power_dbm / 10.0)
        for p in self._ports():
            meter.set_range_dbm(range_dbm, p)
            meter.set_wavelength_m(centre_m, p)
        self._ranged = True

    def scan(self, start_m: float, stop_m: float, step_m: float) -> Spectra:
        """One scan from ``start_m`` to ``stop_m`` (inclusive grid of ``step_m``)."""
        if not (step_m > 0 and stop_m > start_m):
            raise LimitError(f"scan {start_m:g}..{stop_m:g} m with step {step_m:g} m is empty")
        self.scans += 1
        if self.stepped:
            return self.scan_points(_grid(start_m, stop_m, step_m))
        if self.triggered:
            return self._triggered_sweeps(start_m, stop_m, step_m)
        return self._sweep(start_m, stop_m, step_m)

    def scan_points(self, wavelengths_m: np.ndarray) -> Spectra:
        """Stepped scan over arbitrary wavelengths: tune, read every bank, next (one readout call per point)."""
        laser = self.hw.lasers[self.laser]
        wl = np.asarray(wavelengths_m, dtype=float).reshape(-1)
        nb = self.hw.n_banks
        balanced = np.empty((wl.size, nb))
        through = drop = None
        for i, w in enumerate(wl):
            laser.set_wavelength_m(float(w))
            reading = self.hw.readout.read()
            balanced[i] = reading.balanced
            if reading.through is not None and reading.drop is not None:
                if through is None:
                    through, drop = np.empty((wl.size, nb)), np.empty((wl.size, nb))
                through[i] = reading.through
                drop[i] = reading.drop  # type: ignore[index]
        return Spectra(wl, balanced, through, drop, self.hw.readout.unit, self.laser, self.power_w)

    def _sweep(self, start_m: float, stop_m: float, step_m: float) -> Spectra:
        hw = self.hw
        meter = hw.power_meter
        assert meter is not None and hw.sweep_ports is not None
        laser = hw.lasers[self.laser]
        step = max(1, round(step_m / SWEEP_STEP_QUANTUM_M)) * SWEEP_STEP_QUANTUM_M
        settings = SweepSettings(float(start_m), float(start_m + step * math.floor((stop_m - start_m) / step + 1e-6)),
                                 step, self.speed_m_per_s)
        step_time_s = step / self.speed_m_per_s
        if not self.averaging_time_s < step_time_s:
            raise LimitError(f"averaging time {self.averaging_time_s:g} s must be below the step time "
                             f"{step_time_s:g} s (step / speed)")
        if not self._ranged:
            self._prepare_meter(0.5 * (settings.start_m + settings.stop_m))
        timeout_s = 2.0 * (settings.stop_m - settings.start_m) / settings.speed_m_per_s + 10.0
        completed = False
        try:
            n_points = laser.configure_sweep(settings)
            meter.configure_logging(n_points, self.averaging_time_s, triggered=True)
            meter.start_logging()
            laser.start_sweep()
            laser.wait_sweep(timeout_s)
            meter.wait_logging(LOGGING_GRACE_S + n_points * self.averaging_time_s)
            ports = np.asarray(hw.sweep_ports, dtype=int)
            through = np.column_stack([meter.logged_power_w(int(p)) for p in ports[:, 0]])
            drop = None if self.through_only else np.column_stack([meter.logged_power_w(int(p)) for p in ports[:, 1]])
            wavelength_m = laser.logged_wavelengths_m()
            completed = True
        finally:
            for name, target in (("finish_logging", meter), ("finish_sweep", laser)):
                cleanup = getattr(target, name, None)
                if cleanup is None:
                    continue
                try:
                    cleanup(abort=not completed)
                except InstrumentError as exc:
                    log.error("sweep clean-up %s failed: %s", name, exc)
                    if completed:
                        raise
        balanced = np.full_like(through, np.nan) if drop is None else drop - through
        return Spectra(wavelength_m, balanced, through, drop, meter_unit(hw), self.laser, self.power_w)


    def _triggered_sweeps(self, start_m: float, stop_m: float, step_m: float) -> Spectra:
        """Continuous sweeps read by the source meters, one buffered reading per step trigger, split where the
        buffers would overflow. The sweep is slowed where a step would come sooner than every meter can read; the
        wavelengths are the laser's lambda log moved by the distance swept from trigger to mid-reading."""
        step = max(1, round(step_m / SWEEP_STEP_QUANTUM_M)) * SWEEP_STEP_QUANTUM_M
        n_total = math.floor((stop_m - start_m) / step + 1e-6) + 1
        pieces = math.ceil(n_total / TRIGGERED_MAX_POINTS)
        bounds = np.linspace(0, n_total, pieces + 1).round().astype(int)
        parts = [self._triggered_sweep(start_m + step * lo, start_m + step * (hi - 1), step)
                 for lo, hi in itertools.pairwise(bounds) if hi - lo >= 2]
        return Spectra(np.concatenate([p[0] for p in parts]), np.vstack([p[1] for p in parts]), None, None,
                       meter_unit(self.hw), self.laser, self.power_w)

    def _triggered_sweep(self, start_m: float, stop_m: float, step: float) -> tuple[np.ndarray, np.ndarray]:
        hw = self.hw
        readout: Any = hw.readout
        laser = hw.lasers[self.laser]
        speed = min(self.speed_m_per_s, step / readout.min_trigger_period_s())
        if speed < self.speed_m_per_s:
            log.info("sweep slowed to %.3g nm/s: a %.3g pm step must last the meters' %.3g ms reading", speed * 1e9,
                     step * 1e12, readout.min_trigger_period_s() * 1e3)
        settings = SweepSettings(float(start_m), float(stop_m), step, speed)
        timeout_s = 2.0 * (settings.stop_m - settings.start_m) / speed + 10.0
        completed = False
        try:
            n_points = laser.configure_sweep(settings)
            readout.start_logging(n_points)
            laser.start_sweep()
            laser.wait_sweep(timeout_s)
            balanced = readout.finish_logging(n_points)
            logged = laser.logged_wavelengths_m()              # the laser stops at the last step
            wavelength_m = np.minimum(logged + speed * readout.sample_lag_s(), logged[-1])
            completed = True
        finally:
            cleanup = getattr(laser, "finish_sweep", None)
            if cleanup is not None:
                try:
                    cleanup(abort=not completed)
                except InstrumentError as exc:
                    log.error("sweep clean-up finish_sweep failed: %s", exc)
                    if completed:
                        raise
        return wavelength_m, balanced


def meter_unit(hw: BenchSession) -> str:
    return str(getattr(hw.readout, "unit", "W"))


def spectra(hw: BenchSession, start_m: float, stop_m: float, step_m: float, laser: int = 0, *,
            averaging_time_s: float = 1e-4, speed_m_per_s: float = SWEEP_SPEED_M_PER_S) -> Spectra:
    """Every bank's spectrum from ``start_m`` to ``stop_m`` with laser ``laser`` (the others off, restored after).

    A logging sweep when the bench allows (through and drop apart), else a stepped scan (balanced only).
    """
    with SpectrumSession(hw, laser, averaging_time_s=averaging_time_s, speed_m_per_s=speed_m_per_s) as session:
        return session.scan(start_m, stop_m, step_m)
