"""Reference level (weight -1) on balanced-only benches: read in a gap the heaters open, not extrapolated.

Why. A weight is a balanced reading divided by the bank's level with every ring absent (``|baseline|``). With both
ports read apart, through + drop leaves only the rings' own loss and the map's far-level fit is good to 0.3 %
(``resonances._far_level``). With the balanced photocurrent alone (drop - through) every ring is a full-depth
feature, and the coherent coupling of the rings through the two buses gives their tails dispersive, rippling terms
that no sum of pole terms describes: that extrapolation was off by up to 5 % of the level on emulated chips, a
common scale of the bank's weights that no later reading checks (about 6 bits).

What the instruments can observe. Passivity bounds every balanced reading: ``-balanced = through - drop <=
through <= level``, so any reading is a lower bound on the level, and it is close to the level where every ring
is far from the laser. Heaters only red-shift, and a bank's rings fill nearly a free spectral range, so no single
setting clears the band; but heating the blue half of a bank's rings by half the bank's span bunches all rings
into half the range and opens a gap of about 6-7 nm (over half the FSR) blue of them. Far from every ring the
drop field is the coherent sum of the rings' tails (each about ``w / 2 delta``) and ripples with the bus phases;
the largest reading in the gap is where they best cancel. One stepped scan over the gap (every bank in parallel)
gives that maximum, parabola-refined.

Its deficit. The gap's maximum is a lower bound on the level; how far below depends on how well the rings' tails
cancel at its best point, which no reading shows. It is scaled by an observable, the incoherent sum of the rings'
Lorentzian tails at the chosen wavelength ``T = 2 sum_j (w_j / 2 delta_j)^2`` (rings and their neighbouring orders
where the FSR is known; 1-3 % there). Scored against the emulator's truth (noise-free traces of 128 banks: the
embedded ``current`` and ``adc`` benches, seeds 0-15 each) the deficit is 0.10-1.29 ``T``, median 0.25 ``T``: a
long tail on one side only, where the tails of the gap's two edges happen not to cancel anywhere in it. A resonance
found inside the scanned gap (:func:`stray_resonances`: 10 of those 128 banks, mostly another order of a ring near
the scan's end) enters ``T`` where it was read; left out, the worst bank was 1.39 ``T``.
``DEFICIT_FRACTION`` (0.3) is the correction that minimises the rms error over that family (0.37 % of the level);
``DEFICIT_UNCERTAINTY`` (0.7 ``T``) is the relative standard uncertainty returned with it, wider than the
family's rms: a chip's figure rests on its few banks, so its honesty rests on the tail, not the rms. The worst bank
of that family (1.29 ``T``) lies 1.4 of these from the correction. 0.25 ``T`` (the rms alone) left a bank of the
current bench's seed 15 four sigma off and its measured accuracy 0.95 bit above the truth; 0.5 ``T`` still left
the adc bench's seed 15 (that worst bank, -1.55 % against 0.61 % stated) 0.72 bit above; with 0.7 ``T`` and the
resonances found in the gap counted, the 64-chip study of these two benches (seeds 0-31 each) is at most 0.01 bit
above the truth, at the price of a figure 1-1.6 bits below it on a typical chip: a low figure, never a high
one. Both stay stated in the calibration's fit quality; ``bench/calibration_report.py`` checks them on seeds
16-31, which they were not derived from.

Cost on the current bench: one heater write and about 130 laser steps (about 15 s of bench time).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from labctl.calibration.measure import SpectrumSession
from labctl.calibration.resonances import ResonanceMap, band_m
from labctl.calibration.thermal import ThermalModel, UnreachableHeatError
from labctl.calibration.weights import heat_limits
from labctl.drivers.errors import LimitError
from labctl.drivers.interfaces import BenchSession

log = logging.getLogger(__name__)

#: Scan step in the gap: the ripple of the rings' tails has a period of about 1.5 nm; the maximum is refined by a
#: parabola through the three highest points.
GAP_STEP_M = 40e-12
#: The gap's scan keeps this far from every predicted resonance (several linewidths: the tails there are steep).
GAP_MARGIN_M = 1.5e-9
#: Calibration tunes the lasers this far red of the map's band (the heater steps reach about as far).
RED_REACH_M = 3.0e-9
#: Fraction of the incoherent tail sum taken as the expected deficit of the gap's maximum (see the docstring).
DEFICIT_FRACTION = 0.3
#: Fraction of the incoherent tail sum stated as the relative standard uncertainty of the level (see the docstring).
DEFICIT_UNCERTAINTY = 0.7
#: A reading this far (fraction) below the gap's largest marks a resonance in it (see :func:`stray_resonances`).
STRAY_DEPTH = 0.2
#: Heating the blue half by less than this fraction of the planned shift opens too small a gap to be worth it.
MIN_SHIFT_FRACTION = 0.5
#: Progress is reported after every piece of the scan.
SCAN_PIECES = 6


@dataclass
class GapLevel:
    """What :func:`measure_gap_level` found, per bank (B,)."""

    level: np.ndarray            # corrected level with every ring absent, readout units at the scan laser's power
    uncertainty: np.ndarray      # relative standard uncertainty of it
    raw_max: np.ndarray          # the gap's largest -balanced reading (a lower bound on the level)
    wavelength_m: np.ndarray     # where it was read
    tail_sum: np.ndarray         # 2 sum_j (w_j / 2 delta_j)^2 there
    gap_m: np.ndarray            # (B, 2) the scanned gap
    shift_fraction: float        # of the planned shift actually applied (1: all of it)
    laser_power_w: float
    stray_m: list[list[float]] = dataclasses.field(default_factory=list)   # per bank: resonances found in the gap


def gap_drive(rmap: ResonanceMap, thermal: ThermalModel, hw: BenchSession, spacing_m: float
              ) -> tuple[np.ndarray, np.ndarray, float]:
    """(drive (N,), predicted resonances (B, R), fraction of the planned shift): the blue half of every bank's rings
    heated by the span from its bluest ring to its middle ring plus half a channel spacing, so they sit between the
    red half's; the largest fraction (1, 0.85, ... 0.5) that the heater model and the bench limits allow. A heater
    whose share is beyond its limit gives what it can (``weights.heat_limits``): one ring short of its place
    narrows its bank's gap, where giving up the gap altogether left every bank with the map's extrapolated level
    (current bench, chip seed 21: one heater out of reach, 5-7 % uncertain levels, 1.4 bits below the truth
    elsewhere)."""
    nb, nr = rmap.center_m.shape
    c = np.asarray(rmap.center_m, dtype=float)
    srt = np.sort(c, axis=1)
    mid = srt[:, nr // 2]
    shift = np.where(c < mid[:, None], (mid - srt[:, 0] + 0.5 * spacing_m)[:, None], 0.0).reshape(-1)
    k = np.asarray(thermal.crosstalk, dtype=float)
    h_lim = heat_limits(thermal)
    for fraction in np.linspace(1.0, MIN_SHIFT_FRACTION, 4):
        heat = np.clip(np.linalg.solve(k, fraction * shift), 0.0, h_lim)    # rings left alone may not be cooled
        try:
            drive = thermal.drive_for_heat(heat)
            hw.limits.check(drive)
        except (UnreachableHeatError, LimitError) as exc:
            log.info("reference gap: %.0f %% of the shift is out of reach (%s)", 100 * fraction, exc)
            continue
        return drive, c + thermal.shift_m(drive).reshape(nb, nr), float(fraction)
    raise LimitError("no heater setting within the limits opens a gap in the band")


def tail_sum(wavelength_m: float, resonances_m: np.ndarray, width_m: np.ndarray, fsr_m: float | None,
             unknown_beyond: tuple[float, float] | None = None) -> float:
    """2 sum_j (w_j / 2 delta_j)^2 at ``wavelength_m``: the rings' Lorentzian tails added incoherently (their
    neighbouring orders too, where the FSR is known; where it is not, a ring of median width is assumed at each
    end of ``unknown_beyond``, the range scanned, beyond which the other orders lie unseen: conservative)."""
    pos = np.asarray(resonances_m, dtype=float).reshape(-1)
    w = np.asarray(width_m, dtype=float).reshape(-1)
    if fsr_m:
        pos, w = np.r_[pos, pos - fsr_m, pos + fsr_m], np.r_[w, w, w]
    delta = np.abs(wavelength_m - pos)
    if not fsr_m and unknown_beyond is not None:     # at least a gap margin beyond the end (else unbounded)
        edge = np.maximum(np.abs(wavelength_m - np.asarray(unknown_beyond, dtype=float)), GAP_MARGIN_M)
        delta, w = np.r_[delta, edge], np.r_[w, np.full(2, np.median(w))]
    return float(2.0 * np.sum((0.5 * w / delta) ** 2))


def _largest_gap(predicted_m: np.ndarray, allowed: tuple[float, float], fsr_m: float | None) -> tuple[float, float]:
    """The longest interval of ``allowed`` (the laser range calibration scans) at least ``GAP_MARGIN_M`` from every
    predicted resonance (and its neighbouring orders where the FSR is known; where it is not, an order may sit
    just beyond either end of ``allowed``, so the ends bound the gap without a margin)."""
    pos = np.asarray(predicted_m, dtype=float).reshape(-1)
    if fsr_m:
        pos = np.r_[pos, pos - fsr_m, pos + fsr_m]
    lo_edge, hi_edge = allowed
    starts = np.r_[lo_edge, np.sort(pos) + GAP_MARGIN_M]
    stops = np.r_[np.sort(pos) - GAP_MARGIN_M, hi_edge]
    starts, stops = np.clip(starts, lo_edge, hi_edge), np.clip(stops, lo_edge, hi_edge)
    k = int(np.argmax(stops - starts))
    return float(starts[k]), float(stops[k])


def _peak(wl: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Largest value of a sampled trace and where, refined by a parabola through the highest point's neighbours."""
    k = int(np.argmax(y))
    if 0 < k < y.size - 1:
        a, b, c = y[k - 1], y[k], y[k + 1]
        den = a - 2 * b + c
        if den < 0:
            t = float(np.clip(0.5 * (a - c) / den, -0.5, 0.5))
            return float(b - 0.25 * (a - c) * t), float(wl[k] + t * (wl[k + 1] - wl[k]))
    return float(y[k]), float(wl[k])


def measure_gap_level(hw: BenchSession, rmap: ResonanceMap, thermal: ThermalModel, *, laser: int = 0,
                      averaging_time_s: float = 1e-4, step_m: float = GAP_STEP_M,
                      progress: Callable[[str, int, int], None] | None = None) -> GapLevel:
    """Open a gap in every bank's band with the heaters, scan it with one laser and return each bank's level (see
    the module docstring). ``rmap`` and ``thermal`` in ring order. The heaters are left as found by the caller's
    guard (the calibration returns them to zero)."""
    nb = rmap.center_m.shape[0]
    grid_wl = np.asarray(hw.wavelengths_m, dtype=float)
    spacing = float(np.median(np.diff(np.sort(grid_wl)))) if grid_wl.size > 1 else 1e-9
    drive, predicted, fraction = gap_drive(rmap, thermal, hw, spacing)
    width = np.asarray(rmap.pole_fwhm_m if rmap.pole_fwhm_m is not None else rmap.fwhm_m, dtype=float)
    fsr = thermal.stats.get("fsr_m") if isinstance(thermal.stats, dict) else None
    allowed = band_m(hw, 1.5e-9, 0.9e-9 + RED_REACH_M)
    gaps = np.array([_largest_gap(predicted[b], allowed, fsr) for b in range(nb)])     # (B, 2)
    lo, hi = gaps[:, 0], gaps[:, 1]
    if np.any(hi - lo < 10 * step_m):
        raise LimitError(f"the heaters open no gap in bank(s) {np.flatnonzero(hi - lo < 10 * step_m).tolist()}")
    grid = np.arange(float(lo.min()), float(hi.max()) + step_m / 2, step_m)
    grid = grid[np.any((grid[:, None] >= lo[None, :] - step_m / 2) & (grid[:, None] <= hi[None, :] + step_m / 2),
                       axis=1)]
    hw.set_ring_drive(drive)
    parts = []
    with SpectrumSession(hw, laser, averaging_time_s=averaging_time_s, stepped=True) as session:
        for k, piece in enumerate(np.array_split(grid, SCAN_PIECES)):
            parts.append(session.scan_points(piece).balanced)
            if progress is not None:
                progress("reference level: laser steps in the gap", k + 1, SCAN_PIECES)
        power = session.power_w
    y = -np.vstack(parts)                                               # (W, B) through - drop
    raw, at, tails = np.empty(nb), np.empty(nb), np.empty(nb)
    strays: list[list[float]] = []
    for b in range(nb):                                                 # a handful of banks
        sel = (grid >= lo[b] - step_m / 2) & (grid <= hi[b] + step_m / 2)
        g, yb = grid[sel], y[sel, b]
        found = stray_resonances(g, yb)
        strays.append(found.tolist())
        if found.size:
            nearest = float(np.min(np.abs(found[:, None] - predicted[b][None, :])))
            log.warning("reference level: bank %d has a resonance in its gap at %s nm, where the heater model put "
                        "none (the nearest predicted %.0f pm away: another order of a ring, or a ring the heater "
                        "model misplaces); its tail enters the level's correction and uncertainty", b,
                        np.round(found * 1e9, 3).tolist(), 1e12 * nearest)
        raw[b], at[b] = _peak(g, yb)
        w_b = np.r_[width[b], np.full(found.size, np.median(width[b]))]
        tails[b] = tail_sum(at[b], np.r_[predicted[b], found], w_b, fsr, None if fsr else allowed)
    if np.any(raw <= 0):
        raise LimitError(f"bank(s) {np.flatnonzero(raw <= 0).tolist()}: no light in the reference gap")
    deficit, u = DEFICIT_FRACTION * tails, DEFICIT_UNCERTAINTY * tails
    log.info("reference level from the gap (%.0f %% of the planned shift): %s at %s nm, expected deficit %s %% "
             "(uncertainty %s %%)", 100 * fraction, np.round(raw, 6).tolist(), np.round(at * 1e9, 2).tolist(),
             np.round(100 * deficit, 2).tolist(), np.round(100 * u, 2).tolist())
    return GapLevel(level=raw * (1.0 + deficit), uncertainty=u, raw_max=raw, wavelength_m=at, tail_sum=tails,
                    gap_m=np.column_stack([lo, hi]), shift_fraction=fraction, laser_power_w=float(power),
                    stray_m=strays)


def stray_resonances(wavelength_m: np.ndarray, level_trace: np.ndarray) -> np.ndarray:
    """Resonances inside a scanned gap (m): where ``level_trace`` (-balanced) falls below ``1 - STRAY_DEPTH`` of its
    largest value, the lowest point of each such stretch, unless that is an end of the scan (a resonance beyond
    the scan: the neighbouring orders, which :func:`tail_sum` counts already). Only a ring within about a
    linewidth does that; the rings' tails elsewhere take a few percent. A ring there means the heater model
    placed it wrong (adc bench, chip seed 19: a ring of a close pair 2 nm from its prediction, the gap's maximum
    3.6 % below the level where the correction took 0.4 %)."""
    y = np.asarray(level_trace, dtype=float)
    low = y < (1.0 - STRAY_DEPTH) * float(np.max(y))
    runs = np.flatnonzero(np.diff(np.r_[0, low.astype(int), 0])).reshape(-1, 2)    # [start, stop) of each
    at = np.array([a + int(np.argmin(y[a:z])) for a, z in runs], dtype=int)
    return np.asarray(wavelength_m, dtype=float)[at[(at > 0) & (at < y.size - 1)]]


def with_gap_level(rmap: ResonanceMap, gap: GapLevel) -> ResonanceMap:
    """The map with its baseline and reference uncertainty from the gap (channels scaled by their lasers' power as
    the map's own baseline is)."""
    powers = np.asarray(rmap.laser_power_w, dtype=float) if rmap.laser_power_w is not None \
        else np.full(rmap.baseline.shape[1], gap.laser_power_w)
    baseline = -gap.level[:, None] * (powers / gap.laser_power_w)[None, :]
    stats = {**rmap.stats, "reference_level": {
        "method": "gap", "map_baseline": np.asarray(rmap.baseline, dtype=float)[:, 0].tolist(),
        "map_uncertainty": None if rmap.baseline_uncertainty is None
        else np.asarray(rmap.baseline_uncertainty, dtype=float).tolist(),
        "raw_max": gap.raw_max.tolist(), "wavelength_m": gap.wavelength_m.tolist(), "tail_sum": gap.tail_sum.tolist(),
        "gap_m": gap.gap_m.tolist(), "shift_fraction": gap.shift_fraction, "stray_m": gap.stray_m}}
    return dataclasses.replace(rmap, baseline=baseline, baseline_uncertainty=gap.uncertainty.copy(), stats=stats)
