"""Readout settings chosen from measured noise: a short probe at the start of a calibration.

Why: a fixed averaging time is either wasted bench time (a quiet detector averaged for long) or too noisy a
reading (a noisy one averaged briefly), and which one a bench has is only known by measuring it. The probe lights
one laser (heaters at zero), and for each candidate averaging time, cheapest first, configures the readout (a
readout rounds a request up to what it offers: a Keithley 2400 integrates at least 0.01 power-line cycles,
:func:`labctl.calibration.measure.configure_readout`) and takes ``n_repeats`` readings of every bank, in one
transfer per meter where the readout offers it (``read_repeated``: the 2400's ``:TRIG:COUN N`` + ``:READ?``). The
noise is the sample standard deviation per bank, the signal scale the largest mean |reading| (with the rings off
resonance at zero drive, the bank's full balanced level: a weight of about -1). A bank's setting is good enough when
its relative noise ``std_b / scale`` meets ``target_relative_noise``, or when the noise is below what the readout
resolves: a spread under half the reading step (the smallest difference between two distinct readings of the
bank; readings that never differ have no spread at all) means the readings sit on one quantization level with
rare flips, and averaging longer would only remove the flips, not the rounding. The first setting good enough for
every bank is chosen; if none is, the quietest, with a warning. Everything measured goes into the calibration
artifact (``info["readout"]``).

The default target, 1e-4 of the signal scale per reading (a weight span of 2 resolved to about 14 bits), keeps the
readout's noise well below the 9-10 bit accuracy the calibration aims at, so the model, not the readout, sets it.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from labctl.calibration.measure import configure_readout, only_laser
from labctl.drivers.interfaces import BenchSession

log = logging.getLogger(__name__)

#: Averaging times tried, cheapest first, s (each rounded up by the readout to a setting it offers).
CANDIDATES_S = (1e-4, 1e-3, 1e-2, 1e-1)
#: Reading noise rms allowed, relative to the bank's signal scale (module docstring).
TARGET_RELATIVE_NOISE = 1e-4
#: Readings per candidate (a standard deviation from 16 readings is good to about 18 %).
N_REPEATS = 16
#: Reading noise rms allowed for photonic DFA's readings, relative to the signal scale: about the refined
#: configurations' weight error (0.0016 rms on the current bench), so the readout does not set the product error
#: and DFA does not pay for the calibration's 14-bit readings at every one of its many readings.
DFA_TARGET_RELATIVE_NOISE = 1e-3


def averaging_for(record: dict[str, Any] | None, target_relative_noise: float) -> float | None:
    """From a calibration's readout record (``info["readout"]``): the cheapest averaging its probe measured that
    meets ``target_relative_noise`` (or is resolution-limited), else the averaging the calibration chose; None
    without a record. Only what was measured is used: settings the probe did not reach are not guessed."""
    if not isinstance(record, dict) or not record.get("averaging_time_s"):
        return None
    for point in sorted(record.get("probe") or [], key=lambda p: float(p["averaging_time_s"])):
        if point.get("resolution_limited") or float(point["relative_noise"]) <= target_relative_noise:
            return float(point["averaging_time_s"])
    return float(record["averaging_time_s"])


@dataclass
class ProbePoint:
    """One candidate as measured: the averaging time the readout took, the noise rms and signal scale (readout
    unit, A or W), their ratio, and the bench time the probe readings of this candidate took (s)."""

    requested_s: float
    averaging_time_s: float
    noise_rms: float
    signal_scale: float
    relative_noise: float
    bench_time_s: float | None
    #: Smallest step between two distinct readings of a bank (NaN where every reading was the same).
    reading_step: float = float("nan")
    #: Every bank's spread is below half its reading step: longer averaging cannot improve the reading.
    resolution_limited: bool = False
    #: Every bank meets the target or is resolution-limited.
    good: bool = False


@dataclass
class ReadoutChoice:
    """The averaging time chosen, the target it was chosen against and every candidate measured."""

    averaging_time_s: float
    target_relative_noise: float
    met_target: bool
    unit: str
    probe: list[ProbePoint] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["probe"] = [asdict(p) for p in self.probe]
        return out


def repeated_readings(hw: BenchSession, n: int) -> np.ndarray:
    """(n, B) balanced readings of every bank at the present settings: one bulk transfer per meter where the
    readout offers it (``read_repeated``), else ``n`` readout calls."""
    bulk = getattr(hw.readout, "read_repeated", None)
    if bulk is not None:
        return np.asarray(bulk(n), dtype=float)
    return np.vstack([np.asarray(hw.readout.read().balanced, dtype=float) for _ in range(n)])


def reading_steps(readings: np.ndarray) -> np.ndarray:
    """(B,) smallest difference between two distinct readings of each bank (inf where all readings are equal):
    the readout's resolution as the readings show it."""
    out = np.full(readings.shape[1], np.inf)
    for b in range(readings.shape[1]):                 # a handful of banks
        diffs = np.diff(np.unique(readings[:, b]))
        if diffs.size:
            out[b] = float(np.min(diffs))
    return out


def choose_averaging(hw: BenchSession, *, channel: int = 0, candidates_s: tuple[float, ...] = CANDIDATES_S,
                     target_relative_noise: float = TARGET_RELATIVE_NOISE, n_repeats: int = N_REPEATS
                     ) -> ReadoutChoice:
    """Probe the readout noise at each candidate averaging time (cheapest first) and choose the first that meets
    the target (module docstring). Laser ``channel`` is on during the probe (restored after); heaters at zero."""
    if n_repeats < 2:
        raise ValueError(f"n_repeats must be at least 2, got {n_repeats}")
    hw.set_ring_drive(np.zeros(hw.n_banks * hw.n_rings))
    wavelength_m = float(hw.wavelengths_m[channel])
    points: list[ProbePoint] = []
    chosen: ProbePoint | None = None
    with only_laser(hw, channel):
        for requested in sorted(candidates_s):
            used = configure_readout(hw, wavelength_m, requested)
            if any(np.isclose(p.averaging_time_s, used) for p in points):
                continue                                   # the readout rounded two requests to one setting
            t0 = hw.elapsed_s()
            readings = repeated_readings(hw, n_repeats)
            t1 = hw.elapsed_s()
            std = np.std(readings, axis=0, ddof=1)
            scale = float(np.max(np.abs(np.mean(readings, axis=0))))
            steps = reading_steps(readings)
            limited = std <= 0.5 * steps                  # inf step (one level): no spread, limited
            good = bool(scale > 0 and np.all((std <= target_relative_noise * scale) | limited))
            noise = float(np.max(std))
            finite = steps[np.isfinite(steps)]
            points.append(ProbePoint(requested, used, noise, scale, noise / scale if scale > 0 else float("inf"),
                                     None if t0 is None or t1 is None else t1 - t0,
                                     float(np.min(finite)) if finite.size else float("nan"), bool(np.all(limited)),
                                     good))
            log.info("readout probe: %.3g s averaging, noise %.3g of a %.3g %s signal (relative %.2g, reading step "
                     "%.3g): %s", used, noise, scale, getattr(hw.readout, "unit", ""), points[-1].relative_noise,
                     points[-1].reading_step, "good enough" if good else "too noisy")
            if good:
                chosen = points[-1]
                break
    met = chosen is not None
    if chosen is None:
        chosen = min(points, key=lambda p: p.relative_noise)
        log.warning("no readout setting reaches a relative noise of %.2g (quietest: %.2g at %.3g s averaging); "
                    "using that one", target_relative_noise, chosen.relative_noise, chosen.averaging_time_s)
    return ReadoutChoice(averaging_time_s=chosen.averaging_time_s, target_relative_noise=target_relative_noise,
                         met_target=met, unit=str(getattr(hw.readout, "unit", "")), probe=points)
