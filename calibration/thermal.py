"""Thermal model of the heaters: how far each heater moves every ring, measured through the instruments.

Model (per heater j, drive u in V or A): heat ``h_j = u^2 / (1 - gamma_j u^2)`` in drive units squared (V^2 or A^2;
not watts: the greymatter bench cannot measure power, and V^2 or A^2 is what the inverse must produce anyway). This
covers self-heating R = R0 (1 + c P) for both drives to first order: voltage drive gives gamma < 0 (hotter heater,
higher resistance, less power), current drive gamma > 0. Ring i moves by ``shift_i = sum_j K[i, j] h_j``; the
diagonal of ``K`` is each heater's tuning efficiency, the rest is thermal crosstalk (within a bank and across
banks).

Measurement design (the expensive step, so built for bench time):

* **Shifts from bare resonances.** Every scan is fitted with the bank model of :mod:`~labctl.calibration.resonances`
  started from the predicted positions. On a power-meter bench the through zeros are the rings' own resonances,
  so a ring passing its neighbour is not mistaken for the pull of the bus coupling; on a balanced-only bench the
  poles are tracked (coarser).
* **One heater per bank at a time, all banks together.** Group g drives one heater in every bank (rings at
  alternating ends of neighbouring banks, as far apart as the layout allows) and the scans of all banks run in
  parallel. Thermal crosstalk between banks is small but real; it is *separated by linearity*, not neglected:
  within a group each heater steps through the heat levels in its own order, so the heat columns are
  independent and a least-squares fit per ring recovers every heater's column; the orders are chosen so that
  each heater's nonlinearity stays visible to the fit (:func:`level_schedule`), and there are two scans more
  than heaters per group. Per group: a zero-drive reference, a probe scan (all group heaters at a small level,
  a fraction of a linewidth of own shift, so every resonance is tracked from where it was) and one scan per
  level. The probe decides the ring order: the resonance a heater moves most is its ring, wherever the design
  put it (fabrication offsets of a few tenths of a nanometre swap neighbours on a 1 nm grid). Only what no
  order explains is refused (:class:`RingOrderError`: a heater that moves no resonance of its bank, two
  heaters on one resonance). The probe also predicts every resonance's move for the tracking and each
  heater's drive for the target shift.
* **Drift.** The zero-drive references at every group boundary measure the common-mode drift of the chip
  temperature, interpolated linearly in time and removed from the shifts.
* **Fit.** Per group, variable projection: for given nonlinearities the crosstalk columns are a linear
  least-squares problem (all rings at once), the nonlinearities are fitted around it.

Limits: drives never exceed ``drive_margin * hw.max_drive`` nor, where the heater driver measures power, the per-
heater power limit with that margin (resistance from the probe); every write still goes through ``hw.heaters``,
which refuses anything outside the bench limits.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.optimize import least_squares

from labctl.drivers.interfaces import BenchSession
from labctl.calibration.drive_writes import DriveWriter
from labctl.calibration.measure import SpectrumSession, emit
from labctl.calibration.resonances import NM, ResonanceMap, analyze_spectra

log = logging.getLogger(__name__)

#: Heat levels are nudged so that a heated ring is predicted at least this many linewidths from every other ring
#: of its bank (coinciding resonances are not separable; the schedule tolerates any distinct levels).
MIN_SEPARATION_LINEWIDTHS = 2.0


class RingOrderError(ValueError):
    """Heater steps that no ring order explains: a heater that moves no resonance of its bank, one that moves two
    alike, or two heaters that move the same resonance (the wiring, not the chip). The message is one line naming
    the bank, heater (and its driver channel) and resonance, and what to check."""


class UnreachableHeatError(ValueError):
    """A requested heat needs a drive beyond the model's range or the bench limit."""


@dataclass
class ThermalModel:
    """Resonance shifts of every ring as a function of every heater's drive (see the module docstring)."""

    mode: str                                   # 'voltage' | 'current'
    efficiency_m_per_unit: np.ndarray           # (N,) own-ring shift per unit heat (m/V^2 or m/A^2)
    crosstalk: np.ndarray                       # (N, N) K[i, j]: shift of ring i per unit heat on heater j
    nonlinearity: np.ndarray                    # (N,) gamma in h = u^2 / (1 - gamma u^2), 1/V^2 or 1/A^2
    fit_rmse_m: np.ndarray                      # (N,) rms residual of ring i's shifts over all scans
    max_drive: np.ndarray | None = None         # (N,) drive limit the inverse respects (bench limit)
    heat_unit: str = "V^2"
    stats: dict[str, Any] = field(default_factory=dict)
    #: (B, R) which resonance of the map (index in its wavelength order) heater r of bank b moves: ring r is that
    #: resonance (:meth:`ResonanceMap.in_ring_order`). None in files written before the heaters identified it.
    resonance_of_ring: np.ndarray | None = None
    #: (B, R) ring order: each ring's own zero-drive resonance minus the map's centre, where the heater steps
    #: resolved it (balanced-only maps report poles, which pull two close rings towards each other; see
    #: :func:`_resolve_pairs`), else 0; None where no pair was resolved (and in older files).
    zero_drive_correction_m: np.ndarray | None = None

    def heat(self, drive: np.ndarray) -> np.ndarray:
        """Heat of a drive vector (N,) or batch (M, N)."""
        u = np.asarray(drive, dtype=float)
        u2 = u * u
        den = 1.0 - self.nonlinearity * u2
        if np.any(den <= 0):
            raise UnreachableHeatError("drive beyond the range of the self-heating model (1 - gamma u^2 <= 0)")
        return u2 / den

    def drive_for_heat(self, heat: np.ndarray) -> np.ndarray:
        """Drive giving ``heat`` (N,) or (M, N); raises :class:`UnreachableHeatError` for negative heat (heaters
        only heat) or a heat beyond the model's range or the drive limit."""
        h = np.asarray(heat, dtype=float)
        if not np.all(np.isfinite(h)):
            raise UnreachableHeatError("heat must be finite")
        if np.any(h < 0):
            idx = np.argwhere(h < 0)[0].tolist()
            raise UnreachableHeatError(f"negative heat {h[tuple(idx)]:.4g} at {idx}: heaters can only heat")
        den = 1.0 + self.nonlinearity * h
        if np.any(den <= 0):
            idx = np.argwhere(den <= 0)[0].tolist()
            raise UnreachableHeatError(f"heat {h[tuple(idx)]:.4g} at {idx} is beyond the self-heating model")
        u = np.sqrt(h / den)
        if self.max_drive is not None:
            over = u > self.max_drive * (1 + 1e-12)
            if np.any(over):
                idx = np.argwhere(over)[0].tolist()
                raise UnreachableHeatError(f"heat {h[tuple(idx)]:.4g} at {idx} needs {u[tuple(idx)]:.4g}, over the "
                                           f"drive limit {np.broadcast_to(self.max_drive, u.shape)[tuple(idx)]:.4g}")
        return u

    def shift_m(self, drive: np.ndarray) -> np.ndarray:
        """Resonance shift of every ring (N,) or (M, N) for a drive (N,) or (M, N): K @ heat(drive)."""
        return self.heat(drive) @ self.crosstalk.T


# -- design ------------------------------------------------------------------------------------------------------------
def heater_groups(n_banks: int, n_rings: int, group_size: int) -> list[np.ndarray]:
    """Heater indices (row-major bank, ring) driven together: one ring per bank, neighbouring banks at opposite
    ends (ring g in even banks, ring g + R/2 in odd ones), banks taken ``group_size`` at a time."""
    groups: list[np.ndarray] = []
    for first in range(0, n_banks, group_size):
        banks = np.arange(first, min(first + group_size, n_banks))
        for g in range(n_rings):
            rings = (g + (banks % 2) * (n_rings // 2)) % n_rings
            groups.append(banks * n_rings + rings)
    return groups


def level_schedule(levels: tuple[float, ...], group_size: int, *, max_condition: float = 8.0,
                   trials: int = 4000, seed: int = 0) -> np.ndarray:
    """(M, G) heat fractions: the probe level for every heater, then every other level once per heater, in an
    order per heater chosen for the fit.

    Each ring's shifts are fitted as a combination of the group's heat columns, and each heater's nonlinearity is
    seen as the part of its column's square that the columns cannot explain. Orders are drawn (seeded, so the
    schedule is reproducible) and the one kept maximises the smallest such part over the heaters while the
    columns stay well conditioned (condition number <= ``max_condition``); a cyclic Latin square, whose shifted
    ramps hide much of the curvature, is the fallback.
    """
    probe, rest = levels[0], np.asarray(levels[1:], dtype=float)
    cyclic = np.column_stack([np.r_[probe, np.roll(rest, -k)] for k in range(group_size)])
    if group_size == 1:
        return cyclic
    rng = np.random.default_rng(seed)
    order = np.argsort(rng.random((trials, group_size, rest.size)), axis=2)            # random permutations
    cand = np.concatenate([np.full((trials, 1, group_size), probe),
                           np.swapaxes(rest[order], 1, 2)], axis=1)                   # (trials, M, G)
    score = _schedule_scores(cand, max_condition)
    best = int(np.argmax(score))
    if score[best] > _schedule_scores(cyclic[None], max_condition)[0]:
        return cand[best]
    return cyclic


def _schedule_scores(fractions: np.ndarray, max_condition: float) -> np.ndarray:
    """Smallest unexplained norm of a column's square, per candidate (T, M, G); -inf if ill-conditioned."""
    q, _ = np.linalg.qr(fractions)
    sq = fractions ** 2
    resid = sq - q @ (np.swapaxes(q, 1, 2) @ sq)
    score = np.min(np.linalg.norm(resid, axis=1), axis=1)
    return np.where(np.linalg.cond(fractions) <= max_condition, score, -np.inf)


def drive_ceiling(hw: BenchSession, margin: float, resistance_ohm: np.ndarray | None) -> np.ndarray:
    """Largest drive characterization will use per ring: the margin times the bench drive limit and, with a
    measured resistance, times the drive at the per-heater power limit."""
    ceiling = margin * np.asarray(hw.max_drive, dtype=float)
    if resistance_ohm is not None:
        r = np.asarray(resistance_ohm, dtype=float)
        ok = np.isfinite(r) & (r > 0)
        p_max = margin * np.asarray(hw.max_power_w, dtype=float)
        power_drive = np.sqrt(p_max * r) if hw.mode == "voltage" else np.sqrt(p_max / np.where(ok, r, 1.0))
        ceiling = np.where(ok, np.minimum(ceiling, power_drive), ceiling)
    return ceiling


# -- measurement -------------------------------------------------------------------------------------------------------
class _Scanner:
    """Scans the band around predicted positions and fits every bank, started from the predictions."""

    def __init__(self, hw: BenchSession, rmap: ResonanceMap, session: SpectrumSession, step_m: float,
                 margin_m: float, stepped_step_m: float, max_shift_m: float, stepped_window_fwhm: float = 3.0
                 ) -> None:
        self.hw, self.rmap, self.session = hw, rmap, session
        self.writer = DriveWriter(hw)          # a heater step changes a group's heaters: only those are sent
        self.step_m, self.margin_m, self.stepped_step_m = step_m, margin_m, stepped_step_m
        lo = float(np.min(rmap.center_m)) - margin_m
        hi = float(np.max(rmap.center_m)) + max_shift_m + margin_m
        self.band = (lo, hi)
        width = rmap.pole_fwhm_m if rmap.pole_fwhm_m is not None else rmap.fwhm_m
        self.max_width_m = float(np.max(width))
        self.half_window_m = stepped_window_fwhm * self.max_width_m
        self.scans = 0
        self.times_s: list[float] = []
        #: features of the zero-drive scan that are no ring (other orders of the rings), per bank
        self.extra_m: list[np.ndarray] = [np.empty(0)] * rmap.n_banks
        #: free spectral range, estimated from those features (None until seen)
        self.fsr_m: float | None = None
        self._ref_m = rmap.center_m.copy()

    def uncovered(self, centres_m: np.ndarray, predicted_m: np.ndarray, slack_m: np.ndarray | float = 0.0
                  ) -> np.ndarray:
        """Where a fitted resonance lies outside the wavelengths the scan covered around its prediction (stepped
        benches scan only ``half_window_m`` plus the resonance's ``slack_m`` around each predicted resonance):
        there the fit extrapolates, or has taken another ring's pole (a balanced-only trace shows poles, not each
        ring's own zero), and its value is no measurement of that ring. Always False on swept benches (the whole
        band is scanned)."""
        if not self.session.stepped:
            return np.zeros(np.shape(centres_m), dtype=bool)
        reach = self.half_window_m + np.broadcast_to(np.asarray(slack_m, dtype=float), np.shape(centres_m))
        return ~(np.abs(np.asarray(centres_m) - np.asarray(predicted_m)) <= reach)

    def measure(self, drive: np.ndarray, predicted_m: np.ndarray, slack_m: np.ndarray | float = 0.0
                ) -> np.ndarray:
        """Apply ``drive`` (all rings), scan, and return the fitted ring resonances (B, R). ``slack_m`` (B, R) or
        scalar: how much wider than ``half_window_m`` a stepped scan's window around each prediction is (a
        prediction known to be uncertain)."""
        hw = self.hw
        self.writer.write(drive)
        t = hw.elapsed_s()
        if self.session.stepped:
            grid = self._windows(predicted_m, slack_m)
            sp = self.session.scan_points(grid)
        else:    # a triggered sweep (balanced only) on the stepped grid: the poles' fits need no finer one
            step = self.stepped_step_m if getattr(self.session, "triggered", False) else self.step_m
            sp = self.session.scan(self.band[0], self.band[1], step)
        self.scans += 1
        self.times_s.append(float(t) if t is not None else float(self.scans))
        guesses = [self.rmap.guess(b, predicted_m[b]) for b in range(self.rmap.n_banks)]
        for b, g in enumerate(guesses):
            g["extra_m"] = self.other_orders(b, predicted_m[b])
        fits = analyze_spectra(sp, self.rmap.n_rings, guesses)
        centres = np.vstack([f.center_m for f in fits])
        if not np.any(drive):
            self.extra_m = [f.extra_m for f in fits]
            self._ref_m = centres
            if self.fsr_m is None:
                self.fsr_m = estimate_fsr(centres, self.extra_m)
                if self.fsr_m is not None:
                    log.info("free spectral range from the rings' other orders in the band: %.4f nm",
                             self.fsr_m * 1e9)
        return centres

    def other_orders(self, bank: int, predicted_m: np.ndarray) -> np.ndarray:
        """Expected positions of features that are no ring of the bank at its order: the rings' neighbouring
        orders (they move with their heaters) and any other feature of the zero-drive scan."""
        extra = np.asarray(self.extra_m[bank], dtype=float)
        if self.fsr_m is None:
            return extra
        ref = self._ref_m[bank]
        copies = np.r_[ref - self.fsr_m, ref + self.fsr_m]
        tol = 2.0 * self.max_width_m
        unexplained = extra[np.all(np.abs(extra[:, None] - copies[None, :]) > tol, axis=1)] if extra.size else extra
        moved = np.r_[predicted_m - self.fsr_m, predicted_m + self.fsr_m]
        lo, hi = self.band
        return np.r_[unexplained, moved[(moved > lo - tol) & (moved < hi + tol)]]

    def _windows(self, predicted_m: np.ndarray, slack_m: np.ndarray | float = 0.0) -> np.ndarray:
        """Stepped benches: only wavelengths of the band's grid near a predicted resonance (each point costs a laser
        retune and a reading of every bank), ``half_window_m`` plus ``slack_m`` either side."""
        step = self.stepped_step_m
        reach = self.half_window_m + np.broadcast_to(np.asarray(slack_m, dtype=float), predicted_m.shape).ravel()
        lo = predicted_m.ravel() - reach
        hi = predicted_m.ravel() + reach
        grid = np.arange(self.band[0], self.band[1] + step / 2, step)
        keep = np.any((grid[:, None] >= lo[None, :]) & (grid[:, None] <= hi[None, :]), axis=1)
        return grid[keep]


#: Balanced-only maps, close pairs: a pair ring's prediction is scanned with this share of the heated ring's
#: predicted move as slack until a scan has found the two apart (:class:`_PairTracking`): the heated ring's move is
#: known to its crosstalk onto the partner (about a tenth), the partner's is that crosstalk.
PAIR_SLACK_SHARE = 0.3


class _PairTracking:
    """Predictions for the rings of close pairs (balanced-only maps) during one group's level scans.

    The probe step of one ring of a close pair moves both poles: they attract, so a ring moving through its
    partner drags the partner's pole along and is held back itself (ADC bench, seed 19: rings 69 pm apart, the
    heated ring's pole moved 46 pm of its 70, the partner's 27 pm of 5). Predicted from those moves, the larger
    steps put the heated ring 1.3 nm from where it was and the partner's window beside it: the stepped scans lost
    both, and the pair's thermal rows were garbage. A ring moving away from its partner errs the other way, its
    pole gaining the released pull (current bench, seed 2, rings 174 pm apart: the heated pole moved 99 pm of its
    67, the partner's 22 pm blue, and the largest step landed the ring on the next one). What the probe does tell
    is the sum of the two poles' moves: the trace of the pair's coupled-mode matrix moves as the rings' own
    resonances do, the own move plus the crosstalk onto the partner. So the heated ring is predicted from that sum,
    the partner from half its pole's move (none if it moved blue) up to a quarter of the heated ring's, and both are
    scanned with a slack of ``PAIR_SLACK_SHARE`` of the heated ring's predicted move plus half the map's separation
    (the pull that parting them releases). Once a scan finds the two apart (``RESOLVED_LINEWIDTHS``), their moves
    per unit heat are taken from it (the largest such heat so far), and the slack is what the released pull can
    still do at another heat.
    """

    def __init__(self, partner: np.ndarray, mine: np.ndarray, assumed: np.ndarray, per_heat: np.ndarray,
                 probe_shift: np.ndarray, u_probe: np.ndarray, ref: np.ndarray, linewidth_m: float) -> None:
        """``partner`` (N,) each resonance's partner in a close pair, -1 if none; ``mine`` (G,) the group heaters'
        resonances (``assumed``: taken as an assumption, whose probe says nothing); ``per_heat`` (N,) the probe's
        moves per unit heat, corrected in place for the pairs; ``probe_shift`` (N,) and ``u_probe`` (G,) the probe
        step; ``ref`` (N,) the zero-drive positions."""
        n = partner.size
        self.rings: list[tuple[int, int]] = []         # (heated, partner)
        self.heated = np.arange(n)                     # whose predicted move sizes each resonance's slack
        self.share = np.zeros(n)
        self.half_sep_m = np.zeros(n)
        self.heat_found = np.zeros(n)                  # heat of the scan the prediction came from (0: the probe)
        self.resolve_m = RESOLVED_LINEWIDTHS * linewidth_m
        for k, r in enumerate(np.asarray(mine, dtype=int)):     # one heater per bank: a handful
            p = int(partner[r])
            if p < 0:
                continue
            self.rings.append((int(r), p))
            self.heated[[r, p]] = r
            self.share[[r, p]] = PAIR_SLACK_SHARE
            self.half_sep_m[[r, p]] = 0.5 * abs(float(ref[r] - ref[p]))
            u2 = float(u_probe[k]) ** 2
            pole_sum = float(probe_shift[r] + probe_shift[p])
            if not assumed[k] and np.isfinite(pole_sum) and pole_sum > 0:
                per_heat[r] = pole_sum / u2
                log.info("resonance %d (pair with %d, %.0f pm apart on the map): its probe moved the poles by %.1f "
                         "and %.1f pm; predicted from their sum", r, p, 2 * self.half_sep_m[r] * 1e12,
                         probe_shift[r] * 1e12, probe_shift[p] * 1e12)
            pole_p = float(probe_shift[p]) / u2 if np.isfinite(probe_shift[p]) else 0.0
            cap = 0.25 * float(per_heat[r]) if np.isfinite(per_heat[r]) else 0.0
            per_heat[p] = min(max(0.5 * pole_p, 0.0), max(cap, 0.0))

    def slack_m(self, predicted_move_m: np.ndarray, heat: np.ndarray) -> np.ndarray:
        """(N,) slack of every resonance's window for a scan whose predicted moves are ``predicted_move_m`` (N,) at
        the heats ``heat`` (N,) of the group heater in each resonance's bank: 0 off the pairs."""
        move = np.nan_to_num(np.abs(np.asarray(predicted_move_m, dtype=float)))[self.heated]
        unsure = self.heat_found == 0
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.abs(np.asarray(heat, dtype=float) / np.where(unsure, 1.0, self.heat_found) - 1.0)
        return np.where(unsure, self.share * move + self.half_sep_m, self.half_sep_m * ratio)

    def update(self, centres: np.ndarray, predicted: np.ndarray, ref: np.ndarray, heat: np.ndarray,
               uncovered: np.ndarray, per_heat: np.ndarray) -> None:
        """After a scan: a pair found apart at a heat at least as large as before gives both rings' moves per unit
        heat (``per_heat``, in place). Apart, the heated ring is red of its partner (it passed it if it was blue:
        heaters only heat, and its own move is several times its crosstalk), and each fit is nearer its own
        prediction than the other's: else the fit may have swapped them, and the scan is no evidence."""
        for r, p in self.rings:                          # a pair or two per group
            h = float(heat[r])
            c = centres[[r, p]]
            if not (h > 0 and np.all(np.isfinite(c)) and not uncovered[[r, p]].any() and h >= self.heat_found[r]
                    and float(c[0] - c[1]) >= self.resolve_m):
                continue
            guess = predicted[[r, p]]
            if abs(c[0] - guess[0]) > abs(c[0] - guess[1]) or abs(c[1] - guess[1]) > abs(c[1] - guess[0]):
                continue
            per_heat[[r, p]] = (c - ref[[r, p]]) / h
            self.heat_found[[r, p]] = h


def heater_group_size(n_banks: int, levels: tuple[float, ...], banks_per_group: int | None = None) -> int:
    """Heaters driven together (one per bank): at most ``len(levels) - 2`` banks, and ``banks_per_group``."""
    return max(1, min(n_banks, len(levels) - 2, banks_per_group or n_banks))


def heater_scan_count(n_banks: int, n_rings: int, levels: tuple[float, ...],
                      banks_per_group: int | None = None) -> int:
    """Scans :func:`characterize_heaters` plans with ``levels`` (its progress total): two before the groups and
    ``len(levels) + 1`` per group of heaters driven together."""
    groups = heater_groups(n_banks, n_rings, heater_group_size(n_banks, levels, banks_per_group))
    return 2 + len(groups) * (len(levels) + 1)


def characterize_heaters(hw: BenchSession, rmap: ResonanceMap, *,
                         levels: tuple[float, ...] = (0.03, 0.2, 0.3, 0.44, 0.58, 0.72, 0.86, 1.0),
                         target_shift_m: float = 2.0e-9, drive_margin: float = 0.8, step_m: float = 10e-12,
                         margin_m: float = 0.6e-9, stepped_step_m: float = 25e-12, stepped_window_fwhm: float = 1.2,
                         stepped_levels: tuple[float, ...] = (0.03, 0.25, 0.45, 0.65, 0.85, 1.0), laser: int = 0,
                         averaging_time_s: float = 1e-4, bootstrap_fraction: float = 0.05,
                         banks_per_group: int | None = None,
                         progress: Callable[[str, int, int], None] | None = None) -> ThermalModel:
    """Measure every heater's effect on every resonance and fit the :class:`ThermalModel` (see the module
    docstring); the model is in ring order, ring r of bank b being the resonance heater r moves
    (``resonance_of_ring``).

    ``levels`` are fractions of ``target_shift_m`` (own shift of the highest level, about the largest operating
    shift); ``stepped_levels`` replace them on benches whose spectra are balanced readings only (stepped point by
    point, each point a laser retune and a reading of every bank, or swept with source meters on the laser's step
    triggers); stepped scans are also confined to ``stepped_window_fwhm`` linewidths around every predicted
    resonance on a ``stepped_step_m`` grid (a triggered sweep covers the whole band on that grid in about a second:
    the same points per linewidth, so the same fits, at a quarter of the CPU of a ``step_m`` grid). There the poles, not the rings'
    own resonances, are tracked (tens of pm of coupling pull that moves with the neighbours), so the finer
    scans of a logging bench buy nothing: 72 scans of ~400 points each, where 92 scans of ~1200 points took
    three times as long. The first is the probe, small enough (a fraction of a linewidth) that every resonance is tracked from
    where it was: the probe shows which resonance each heater moves. Heaters driven together: one per bank, at
    most ``len(levels) - 2`` banks (and at most ``banks_per_group``) at a time, so that every ring's fit keeps
    spare scans for the nonlinearity. The first group is preceded by one bootstrap scan at ``bootstrap_fraction``
    of the drive ceiling, which fixes the probe drive from a measured efficiency. ``progress(step, done, total)``
    is called after every scan.
    """
    balanced_only = hw.power_meter is None or hw.sweep_ports is None    # stepped, or swept on source meters
    if balanced_only:
        levels = stepped_levels
    total_scans = heater_scan_count(hw.n_banks, hw.n_rings, levels, banks_per_group)
    if len(levels) < 2 or not all(0 < f <= 1 for f in levels):
        raise ValueError(f"levels must be at least two fractions in (0, 1], got {levels}")
    nb, nr = hw.n_banks, hw.n_rings
    n = nb * nr
    if rmap.center_m.shape != (nb, nr):
        raise ValueError(f"resonance map is {rmap.center_m.shape}, the bench has {(nb, nr)}")
    if len(levels) < 3:
        raise ValueError(f"levels need a probe and at least two more, got {levels}")
    group_size = heater_group_size(nb, levels, banks_per_group)
    groups = heater_groups(nb, nr, group_size)
    schedule_full = level_schedule(levels, group_size)
    t0, n0 = hw.elapsed_s(), hw.transaction_count()
    zero = np.zeros(n)
    width = rmap.pole_fwhm_m if rmap.pole_fwhm_m is not None else rmap.fwhm_m
    min_sep_m = MIN_SEPARATION_LINEWIDTHS * float(np.median(width))
    ceiling = drive_ceiling(hw, drive_margin, None)
    center0 = rmap.center_m.reshape(-1)

    shifts_rows: list[np.ndarray] = []          # per scan: (N,) shift of every resonance after drift removal
    drives_rows: list[np.ndarray] = []          # per scan: (N,) drive
    group_of_row: list[int] = []
    own = np.full(n, -1)                        # heater -> resonance it moves (global index b * R + k)
    probe_rows = np.full((n, nr), np.nan)       # heater -> its probe step's shift of every resonance of its bank
    probe_expected = np.full(n, np.nan)         # ... and the own shift that probe was sized for
    lw = float(np.median(width))
    # balanced only: the map's poles of two close rings are pulled towards each other (by up to tens of pm, both
    # ways); such pairs are tracked apart through the steps (_PairTracking) and resolved from those that part them
    # (_resolve_pairs). partner: each resonance's partner in such a pair, else -1
    pairs = [] if rmap.measured_ports else close_pairs(center0.reshape(nb, nr), PAIR_LINEWIDTHS * lw)
    partner = np.full(n, -1)
    for a, b in pairs:
        partner[a], partner[b] = b, a
    with SpectrumSession(hw, laser, averaging_time_s=averaging_time_s, through_only=True) as session, \
            _heaters_to_zero(hw):
        scanner = _Scanner(hw, rmap, session, step_m, margin_m, stepped_step_m, target_shift_m, stepped_window_fwhm)
        ref_times: list[float] = []
        ref_offsets: list[float] = []
        # (group, time, centres, drive, resonances the scan did not cover around their prediction)
        pending: list[tuple[int, float, np.ndarray, np.ndarray, np.ndarray]] = []

        def measure(drive: np.ndarray, predicted: np.ndarray, slack: np.ndarray | float = 0.0) -> np.ndarray:
            slack = np.broadcast_to(np.asarray(slack, dtype=float), predicted.shape).reshape(nb, nr)
            centres = scanner.measure(drive, predicted.reshape(nb, nr), slack).reshape(-1)
            if progress is not None:
                progress("heater steps (scans)", scanner.scans, total_scans)
            return centres

        def reference() -> np.ndarray:
            centres = measure(zero, rmap.center_m)
            ref_times.append(scanner.times_s[-1])
            ref_offsets.append(float(np.median(centres - center0)))
            return centres

        ref = reference()
        eta_guess: float | None = None
        resistance: np.ndarray | None = None
        for gi, heaters in enumerate(groups):
            g = heaters.size
            schedule = schedule_full[:, :g]
            if gi > 0:
                ref = reference()
            if eta_guess is None:
                # bootstrap: a small, safe drive measures the efficiency scale (m per unit drive^2)
                u_boot = bootstrap_fraction * ceiling[heaters]
                drive = zero.copy()
                drive[heaters] = u_boot
                centres = measure(drive, ref)
                boot = (centres - ref).reshape(nb, nr).max(axis=1)[heaters // nr]    # whichever resonance moved
                resistance = _resistance(hw, drive)
                if resistance is not None:
                    ceiling = drive_ceiling(hw, drive_margin, resistance)
                eta_guess = float(np.median(boot / u_boot ** 2))
                if not eta_guess > 0:
                    raise RingOrderError(f"heaters {[_heater_name(hw, int(j)) for j in heaters]} moved no resonance "
                                         "red: are the heaters connected and the driver's outputs on?")
                log.info("bootstrap: efficiency about %.4g nm per %s^2", eta_guess * 1e9,
                         "V" if hw.mode == "voltage" else "A")
            # probe: all group heaters at the first, small level; every resonance tracked from where it was, and
            # the one that moves most is the heater's ring
            u_probe = np.minimum(np.sqrt(levels[0] * target_shift_m / eta_guess), ceiling[heaters])
            drive = zero.copy()
            drive[heaters] = u_probe
            centres = measure(drive, ref)
            pending.append((gi, scanner.times_s[-1], centres, drive.copy(), scanner.uncovered(centres, ref)))
            probe_shift = centres - ref
            expected = eta_guess * u_probe ** 2
            mine, assumed = _identify(hw, heaters, probe_shift, expected, center0, close_m=float(np.median(width)),
                                      own=own)
            own[heaters] = mine
            for k, j in enumerate(heaters):             # one heater per bank: a handful
                b = int(j) // nr
                probe_rows[j] = probe_shift[b * nr:(b + 1) * nr]
                probe_expected[j] = expected[k]
                if assumed[k]:                          # a coincident pair held still: assume the expected move
                    probe_shift[mine[k]] = probe_rows[j, mine[k] - b * nr] = expected[k]
            # every resonance's move per unit heat of the group heater in its own bank (tracking prediction)
            own_heater = _own_bank_heater(heaters, nb, nr)
            has = own_heater >= 0
            per_heat = np.zeros(n)
            per_heat[has] = probe_shift[has] / (u_probe[own_heater[has]] ** 2)
            pair_track = _PairTracking(partner, mine, assumed, per_heat, probe_shift, u_probe, ref, lw)
            eta_own = per_heat[mine]
            u_top = np.minimum(np.sqrt(target_shift_m / eta_own), ceiling[heaters])
            bank_res = [np.arange((j // nr) * nr, (j // nr + 1) * nr) for j in heaters]
            copies = (0.0,) if scanner.fsr_m is None else (0.0, -scanner.fsr_m, scanner.fsr_m)
            for m in range(1, schedule.shape[0]):
                f_top = (u_top / np.sqrt(target_shift_m / eta_own)) ** 2         # < 1 where the ceiling binds
                f = np.empty(g)
                for k, (j, res) in enumerate(zip(heaters, bank_res)):          # one heater per bank: a handful
                    k_own = mine[k] - res[0]
                    moved = ref[res] + per_heat[res] * (schedule[m, k] * u_top[k] ** 2)
                    static = moved.copy()
                    static[k_own] = ref[mine[k]]
                    others = np.r_[moved, scanner.other_orders(j // nr, static)]
                    f[k] = _clear_fraction(schedule[m, k] * f_top[k], ref[mine[k]], target_shift_m, others, k_own,
                                           min_sep_m, upper=f_top[k], copies=copies)
                u = np.sqrt(f / f_top) * u_top
                drive = zero.copy()
                drive[heaters] = u
                heat_of_res = np.zeros(n)
                heat_of_res[has] = u[own_heater[has]] ** 2
                predicted = ref + per_heat * heat_of_res
                slack = pair_track.slack_m(per_heat * heat_of_res, heat_of_res)
                centres = measure(drive, predicted, slack)
                uncovered = scanner.uncovered(centres, predicted, slack)
                pending.append((gi, scanner.times_s[-1], centres, drive.copy(), uncovered))
                pair_track.update(centres, predicted, ref, heat_of_res, uncovered, per_heat)
        reference()
        # drift: common-mode offset of the references, linear in time between them
        for gi, t, centres, drive, uncovered in pending:
            drift = float(np.interp(t, ref_times, ref_offsets))
            shifts_rows.append(np.where(uncovered, np.nan, centres - center0 - drift))   # NaN: not measured
            drives_rows.append(drive)
            group_of_row.append(gi)
        scans = scanner.scans
    provisional = own.copy()
    own = _assign_rings(hw, probe_rows, probe_expected, center0, close_m=float(np.median(width)))
    if not np.array_equal(own, provisional):
        log.info("ring order: the joint assignment over the bank's probe steps moved heaters %s off their single-step "
                 "choice", np.flatnonzero(own != provisional).tolist())
    shifts = np.vstack(shifts_rows)
    drives = np.vstack(drives_rows)
    rows = np.asarray(group_of_row)
    for drive_row, shift_row, group in zip(drives, shifts, rows):
        emit(hw, "heater_steps", drive=drive_row, shift_m=shift_row, group=group)
    pair_fit: dict[str, Any] = {} if rmap.measured_ports else dict(
        pairs=pairs, centres=shifts + center0[None, :], resolve_m=RESOLVED_LINEWIDTHS * lw)
    model, correction, resolved = _fit(hw, groups, shifts, drives, rows, own, **pair_fit)
    settled = _settle_pairs(hw, model.crosstalk, own, center0 + correction, lw)
    if not np.array_equal(settled, own):
        own = settled
        model, correction, resolved = _fit(hw, groups, shifts, drives, rows, own, **pair_fit)
    centre_fit = center0 + correction                   # map order: the rings' own zero-drive resonances
    model.max_drive = np.asarray(hw.max_drive, dtype=float).copy()
    model.resonance_of_ring = (own % nr).reshape(nb, nr)
    if pairs:
        model.zero_drive_correction_m = correction[own].reshape(nb, nr)
    _share_coincident(model, centre_fit[own].reshape(nb, nr), COINCIDENT_LINEWIDTHS * lw,
                      resolved[own].reshape(nb, nr))
    stood_in = _stand_in_untracked(model, nb, nr, UNTRACKED_LINEWIDTHS * lw)
    _verify_order(hw, model.crosstalk, nb, nr, centre_fit[own].reshape(nb, nr), lw,
                  fit_rmse_m=model.fit_rmse_m.reshape(nb, nr), stood_in=stood_in)
    swapped = int(np.sum(model.resonance_of_ring != np.arange(nr)[None, :]))
    if swapped:
        log.info("ring order: %d heater(s) move a resonance other than the one at their design place "
                 "(resonance of ring, per bank: %s)", swapped, model.resonance_of_ring.tolist())
    elapsed = None if t0 is None else float(hw.elapsed_s() or 0.0) - float(t0)
    model.stats = {"scans": scans, "transactions": hw.transaction_count() - n0, "bench_time_s": elapsed,
                   "groups": len(groups), "group_size": group_size,
                   "max_drive_used": float(np.max(drives)), "drift_m": float(np.ptp(ref_offsets)),
                   "rings_off_design_order": swapped, "fsr_m": scanner.fsr_m}
    log.info("thermal characterization: %d scans, %d transactions, %s s of bench time", scans,
             model.stats["transactions"], elapsed)
    return model


def _clear_fraction(f_nominal: float, own_m: float, target_m: float, others_m: np.ndarray, own_index: int,
                    min_sep_m: float, upper: float = 1.0, copies: tuple[float, ...] = (0.0,)) -> float:
    """A heat fraction near ``f_nominal`` whose predicted own position (``own_m + f * target_m``, and its other
    orders ``+ copies``) stays at least ``min_sep_m`` from every other feature of the bank (``others_m``; entry
    ``own_index`` is the ring itself): two resonances on top of each other cannot be told apart, and the level's
    exact value does not matter."""
    cand = np.clip(f_nominal + np.linspace(-0.12, 0.12, 49), 0.05, upper)
    others = np.delete(np.asarray(others_m, dtype=float), own_index)
    if others.size == 0:
        return float(np.clip(f_nominal, 0.05, upper))
    pos = own_m + cand[:, None] * target_m + np.asarray(copies)[None, :]          # (candidates, copies)
    gap = np.min(np.abs(pos[:, :, None] - others[None, None, :]), axis=(1, 2))
    score = np.minimum(gap, min_sep_m) - 1e-3 * min_sep_m * np.abs(cand - f_nominal)
    return float(cand[int(np.argmax(score))])


def estimate_fsr(centres_m: np.ndarray, extra_m: list[np.ndarray], tol_m: float = 30e-12) -> float | None:
    """Free spectral range from features of a zero-drive scan that are no ring.

    The rings of a bank span nearly one FSR, so a feature red of the reddest ring is taken as the next order of
    the bluest ring (and one blue of the bluest as the previous order of the reddest). Candidates of all banks
    are pooled; the largest agreeing cluster wins. None when no such feature is in the band.
    """
    cands = []
    for b, extra in enumerate(extra_m):                          # one entry per bank
        e = np.asarray(extra, dtype=float)
        c = centres_m[b]
        cands.append(e[e > c.max()] - c.min())
        cands.append(c.max() - e[e < c.min()])
    d = np.concatenate(cands) if cands else np.empty(0)
    if d.size == 0:
        return None
    close = np.abs(d[:, None] - d[None, :]) < tol_m
    best = int(np.argmax(close.sum(axis=1)))
    return float(np.median(d[close[best]]))


@contextmanager
def _heaters_to_zero(hw: BenchSession) -> Iterator[None]:
    """Every ring heater back to 0 when the block ends, however it ends."""
    try:
        yield
    finally:
        hw.set_ring_drive(np.zeros(hw.n_banks * hw.n_rings))


def _own_bank_heater(heaters: np.ndarray, n_banks: int, n_rings: int) -> np.ndarray:
    """For every ring, the index (into ``heaters``) of the group heater in its bank, -1 if none."""
    out = np.full(n_banks * n_rings, -1)
    banks = heaters // n_rings
    for k, b in enumerate(banks):                       # one entry per bank of the group (a handful)
        out[b * n_rings:(b + 1) * n_rings] = k
    return out


def _resistance(hw: BenchSession, drive: np.ndarray) -> np.ndarray | None:
    """Per-ring heater resistance from the driver's power read-back (u^2/P or P/u^2), None if not measured."""
    try:
        power = hw.heaters.read_power_w()
    except (NotImplementedError, AttributeError):
        return None
    if power is None:
        return None
    p = np.asarray(power, dtype=float)[hw.ring_channels]
    u = np.asarray(drive, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = u * u / p if hw.mode == "voltage" else p / (u * u)
    return np.where((u > 0) & (p > 0), r, np.nan)


#: Rings closer than this many linewidths at zero drive are one feature to the tracking (their crosstalk rows
#: are shared out, :func:`_share_coincident`); pairs a linewidth apart are still separated by the bank fit.
COINCIDENT_LINEWIDTHS = 0.3
#: Balanced-only maps: two rings of a bank closer than this many linewidths at zero drive are a pair whose poles
#: pull each other (current-s2: rings 174 pm apart, 0.9 linewidth, fitted 30 pm apart; 1.1-2 linewidths apart:
#: 7-30 pm each) ...
PAIR_LINEWIDTHS = 1.5
#: ... and a pair is resolved in a scan where its rings are at least this many linewidths apart and from every
#: other resonance of the bank (at 1.5 linewidths the poles were still pulled by 20-30 pm, beyond 3 by < 10 pm).
RESOLVED_LINEWIDTHS = 2.0
#: ... and from the bank's other resonances at least this share of it (a third ring 1.5 linewidths from one of the
#: pair pulled it by < 10 pm on the emulator; the stricter bound left 5 resolving scans instead of 7 on current-s2)
OTHERS_RESOLVED_SHARE = 0.75
#: A scan in which some resonance of a bank moved blue by more than this fraction of ``RESOLVED_LINEWIDTHS``
#: lost it (heaters only heat; a pair's poles sit up to tens of pm from the rings): that scan is no evidence on any
#: resonance of the bank, whose rows are then fitted over all groups at once (:func:`_joint_row`).
LOST_BLUE_FRACTION = 0.5
#: The poles of a pair were pulled by at most 0.4 linewidth each on the emulator (current-s2: 76 pm of 190); a fit
#: that moves a ring by more than this share of ``RESOLVED_LINEWIDTHS`` (1 linewidth) failed, and the map is kept.
MAX_PAIR_PULL_SHARE = 0.5
#: A pair is resolved from at least this many such scans (else its poles are tracked as they are).
MIN_RESOLVED_SCANS = 3
#: A ring whose tracked shifts the fitted model misses by more than this many linewidths (rms) was not tracked.
UNTRACKED_LINEWIDTHS = 0.1
#: The heater's own resonance must move at least this fraction of the expected own shift ...
MIN_OWN_FRACTION = 0.3
#: ... and the next-largest move in its bank must stay below this fraction of it (else: one heater on two rings).
MAX_SECOND_FRACTION = 0.6
#: A stood-in crosstalk entry is at most this share of the own efficiency (nearest neighbours couple ~0.16-0.32).
MAX_STAND_IN_SHARE = 0.5
#: A ring's normal equations in a group conditioned worse than this (after scaling the columns to unit norm) cannot
#: tell the group's heats apart; well-measured rings stay below about 150 (heat columns of condition <= 8-12).
MAX_COLUMN_CONDITION = 1e3
#: A fitted coupling from a heater of another bank above this share of that heater's own efficiency is no thermal
#: coupling (adjacent banks couple 0.005-0.01 of it on the emulated chips, a few % at most on real ones).
MAX_CROSS_BANK_SHARE = 0.1


def _heater_name(hw: BenchSession, j: int) -> str:
    nr = hw.n_rings
    return f"bank {j // nr} heater {j % nr} (driver channel {int(np.asarray(hw.ring_channels)[j])})"


def _plausibility_cost(shift: np.ndarray, expected: np.ndarray) -> np.ndarray:
    """Cost of "this resonance is the heater's own" from probe shifts (..., R) and the expected own shift (...):
    |log(shift / expected)|, +inf for a shift that is not red. A probe is sized for the own shift (efficiency
    within a few tens of %), crosstalk moves neighbours by a fraction of it, and a resonance the fit cannot hold
    (within a linewidth of another, noisy) jumps by several times it in either direction: closeness to the
    expected shift tells the own ring from both, where the largest shift is fooled by the jumps."""
    s = np.asarray(shift, dtype=float)
    e = np.asarray(expected, dtype=float)[..., None]
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(s > 0, np.abs(np.log(np.where(s > 0, s, 1.0) / e)), np.inf)


def _identify(hw: BenchSession, heaters: np.ndarray, shift: np.ndarray, expected: np.ndarray,
              center_m: np.ndarray, close_m: float = 0.0, own: np.ndarray | None = None
              ) -> tuple[np.ndarray, np.ndarray]:
    """Provisional resonance (global index) of each of ``heaters`` from its probe step: the resonance of its bank
    whose shift is closest to the expected own shift (:func:`_plausibility_cost`). Which heater has which resonance
    is settled jointly over the whole bank afterwards (:func:`_assign_rings`); refused here, in one line
    (:class:`RingOrderError`), only what no order explains: a heater that moves no resonance of its bank, or one
    that moves two alike (two resonances closer than ``close_m``, or in such a pair, are one feature whose shifts
    the tracking cannot share out, and are not taken as evidence of that).

    A heater whose probe moves nothing while its bank has two resonances closer than ``close_m`` that no heater
    has yet (``own``: heater -> resonance so far) takes one of them, as an assumption (second array True; logged):
    a coincident pair is one feature that the bank fit may hold still through a small step; the larger steps and
    the joint fit decide (:func:`_settle_pairs`)."""
    nr = hw.n_rings
    out = np.empty(heaters.size, dtype=int)
    assumed = np.zeros(heaters.size, dtype=bool)
    c_all = np.asarray(center_m, dtype=float)
    for k, j in enumerate(heaters):                          # one heater per bank: a handful
        b = int(j) // nr
        bank = shift[b * nr:(b + 1) * nr]
        c = c_all[b * nr:(b + 1) * nr]
        cost = _plausibility_cost(bank, np.asarray(expected[k]))
        best = int(np.argmin(cost))
        floor = MIN_OWN_FRACTION * float(expected[k])
        top = float(np.max(bank))
        near = np.abs(c[:, None] - c[None, :]) < close_m
        np.fill_diagonal(near, False)
        in_pair = near.any(axis=1)
        if not top > floor or not np.isfinite(cost[best]):
            taken = np.zeros(nr, dtype=bool) if own is None else np.isin(b * nr + np.arange(nr), own)
            free = np.flatnonzero(in_pair & ~taken)
            if free.size:
                log.warning("%s moves no resonance in its probe step (largest red shift %.2f pm of the %.1f pm "
                            "expected) while resonances %s of its bank coincide (one feature): it takes resonance %d "
                            "as an assumption, the larger steps decide", _heater_name(hw, int(j)), top * 1e12,
                            float(expected[k]) * 1e12, free.tolist(), int(free[0]))
                out[k], assumed[k] = b * nr + int(free[0]), True
                continue
            raise RingOrderError(f"{_heater_name(hw, int(j))} moves no resonance of its bank (largest red shift "
                                 f"{top * 1e12:.2f} pm of the {float(expected[k]) * 1e12:.1f} pm expected): check "
                                 "that this channel is connected to a ring heater of that bank")
        rival = (bank > MAX_SECOND_FRACTION * bank[best]) & (cost < np.log(1 / MAX_SECOND_FRACTION) + cost[best])
        rival &= ~in_pair & ~near[best]
        rival[best] = False
        if rival.any() and not in_pair[best]:
            other = int(np.flatnonzero(rival)[np.argmax(bank[rival])])
            raise RingOrderError(f"{_heater_name(hw, int(j))} moves resonances {best} and {other} of its bank alike "
                                 f"({bank[best] * 1e12:.2f} and {bank[other] * 1e12:.2f} pm): one channel on two "
                                 "heaters? check the heater wiring of that bank")
        out[k] = b * nr + best
    return out, assumed


def _assign_rings(hw: BenchSession, probe: np.ndarray, expected: np.ndarray, center_m: np.ndarray,
                  close_m: float = 0.0) -> np.ndarray:
    """Heater -> resonance (global index), jointly per bank: the assignment (Hungarian) of the bank's heaters to
    its resonances that minimises the summed :func:`_plausibility_cost` of all probe steps (``probe`` (N, R): every
    heater's probe shift of its bank's resonances; ``expected`` (N,)). Refused (:class:`RingOrderError`, one line)
    where the best order still gives a heater a resonance it hardly moves: two heaters on one ring (or a ring
    without heater), unless that resonance lies within ``close_m`` of the one the heater moved (a coincident pair
    is one feature whose labels the tracking may swap; :func:`_settle_pairs` decides from the larger steps)."""
    from scipy.optimize import linear_sum_assignment

    nr = hw.n_rings
    nb = probe.shape[0] // nr
    out = np.empty(nb * nr, dtype=int)
    for b in range(nb):              # one small assignment per bank
        rows = slice(b * nr, (b + 1) * nr)
        cost = _plausibility_cost(probe[rows], expected[rows])
        c = np.asarray(center_m, dtype=float)[b * nr:(b + 1) * nr]
        near = (np.abs(c[:, None] - c[None, :]) < close_m) | np.eye(nr, dtype=bool)      # (R, R)
        # the labels of a coincident pair are interchangeable evidence: each takes the pair's best cost
        cost = np.min(np.where(near[None, :, :], cost[:, None, :], np.inf), axis=2)
        big = 1e3 + np.where(np.isfinite(cost), cost, 0.0).max(initial=0.0) * nr
        heater_idx, res = linear_sum_assignment(np.where(np.isfinite(cost), cost, big))
        shift = probe[rows][heater_idx, res]
        bad = shift <= MIN_OWN_FRACTION * expected[rows][heater_idx]
        wanted = np.argmin(np.where(np.isfinite(cost), cost, big), axis=1)[heater_idx]
        pair = bad & (np.abs(c[res] - c[wanted]) < close_m)     # one feature: its labels may be swapped
        for k in np.flatnonzero(pair):                           # a coincident pair at most
            log.info("%s: resonances %d and %d of its bank are %.1f pm apart (one feature); it takes %d, the larger "
                     "steps decide", _heater_name(hw, b * nr + int(heater_idx[k])), int(wanted[k]), int(res[k]),
                     abs(c[res[k]] - c[wanted[k]]) * 1e12, int(res[k]))
        bad &= ~pair
        if bad.any():
            k = int(heater_idx[np.flatnonzero(bad)[0]])
            want = int(np.argmin(cost[k]))
            holder = int(heater_idx[res == want][0])
            raise RingOrderError(f"{_heater_name(hw, b * nr + holder)} and {_heater_name(hw, b * nr + k)} both move "
                                 f"resonance {want} of the bank ({center_m[b * nr + want] * 1e9:.3f} nm) most: two "
                                 "channels on one ring, or a ring without heater? check the heater wiring of that bank")
        out[b * nr + heater_idx] = b * nr + res
    return out


def _settle_pairs(hw: BenchSession, k_matrix: np.ndarray, own: np.ndarray, center_m: np.ndarray,
                  close_m: float) -> np.ndarray:
    """Heater -> resonance after the fit: within each bank the assignment that gives every heater the largest
    own shift (``k_matrix`` rows in ring order by ``own``). It may differ from the probes' only within a pair of
    resonances closer than ``close_m`` (one feature, whose labels the tracking may have swapped); elsewhere the
    probes stand and :func:`_verify_order` judges."""
    from scipy.optimize import linear_sum_assignment

    nb, nr = hw.n_banks, hw.n_rings
    out = own.copy()
    for b in range(nb):              # one small assignment per bank
        idx = np.arange(b * nr, (b + 1) * nr)
        block = k_matrix[np.ix_(idx, idx)]                  # (ring, heater)
        ring_of_heater = linear_sum_assignment(-block.T)[1]
        moved = np.flatnonzero(ring_of_heater != np.arange(nr))
        if moved.size and np.all(np.abs(center_m[own[idx[ring_of_heater[moved]]]] - center_m[own[idx[moved]]])
                                 < close_m):
            out[idx] = own[idx[ring_of_heater]]
            log.info("bank %d: heaters %s take the other resonance of their pair (one feature)", b, moved.tolist())
    return out


def _stand_in_untracked(model: ThermalModel, n_banks: int, n_rings: int, max_rmse_m: float) -> np.ndarray:
    """Rings whose tracked shifts the fit misses by more than ``max_rmse_m`` rms (a resonance the bank fit could not
    hold, next to another under strong crosstalk), or whose fitted own efficiency is below ``MIN_OWN_FRACTION`` of
    the bank's median (the probes showed every heater moving its ring), have a row of the crosstalk matrix that is no measurement: it can
    make the matrix near-singular and every window derived from it absurd. Their row is stood in for: the heat of
    heater j reaches ring i about as heater i's reaches ring j (thermal crosstalk falls with distance both ways;
    those columns were tracked on the other rings), the own efficiency and nonlinearity the bank's median. Logged;
    refinement corrects what this misses. Returns the rings stood in for (indices into the model's rows)."""
    k = model.crosstalk
    diag = np.diag(k).reshape(n_banks, n_rings)
    weak = (diag < MIN_OWN_FRACTION * np.median(diag, axis=1, keepdims=True)).reshape(-1)   # no own move either
    bad = np.flatnonzero((np.asarray(model.fit_rmse_m) > max_rmse_m) | weak)
    is_bad = np.zeros(k.shape[0], dtype=bool)
    is_bad[bad] = True
    fitted = k.copy()                # the stand-ins read the fit, never each other
    for i in bad:                    # a ring or a few on the hardest chips
        b = int(i) // n_rings
        bank = np.arange(b * n_rings, (b + 1) * n_rings)
        good = np.setdiff1d(bank, bad)
        if good.size == 0:
            continue
        own = float(np.median(np.diag(fitted)[good]))
        row = fitted[:, i].copy()
        # heater i onto another lost ring j: fitted[j, i] is that ring's garbage row too, no measurement either
        # way; it takes the bank's typical coupling at that distance (the good pairs' median, as a share of own)
        dist = np.abs(bank - i)
        both = is_bad[bank] & (bank != i)
        if both.any():
            gi, gj = np.meshgrid(good, good, indexing="ij")
            share = fitted[gi, gj] / np.diag(fitted)[gj]          # coupling of heater gj onto ring gi, per own
            gd = np.abs(gi - gj)
            typical = np.array([float(np.median(share[gd == d])) if np.any(gd == d) else 0.0 for d in dist[both]])
            row[bank[both]] = typical * own
        # thermal coupling only heats and is weaker than the own heater's (one stood-in row must not make the
        # matrix singular: a row of garbage crosstalk made a window 1e51 pm wide, harsh-s3)
        row = np.clip(row, 0.0, MAX_STAND_IN_SHARE * own)
        row[i] = own
        ratio = float(fitted[i, i] / own)
        k[i, :] = row
        model.nonlinearity[i] = float(np.median(model.nonlinearity[good]))
        log.warning("bank %d ring %d: its shifts could not be tracked (fit residual %.0f pm, own efficiency %.2f "
                    "of the bank's median); its thermal row is stood in for by its heater's column and the bank's "
                    "median efficiency", b, int(i) % n_rings, float(model.fit_rmse_m[i]) * 1e12,
                    ratio)
    model.efficiency_m_per_unit = np.diag(k).copy()
    return bad


def _share_coincident(model: ThermalModel, center_m: np.ndarray, close_m: float,
                      resolved: np.ndarray | None = None) -> None:
    """Rings of one bank closer than ``close_m`` at zero drive (ring-order centres, (B, R)) are one feature: the
    tracking cannot share their shifts out, and their rows of the crosstalk matrix come out mixed (nearly equal
    rows make it singular). Each heater of such a pair gets the larger of the pair's moves as its own and the
    smaller (within 0 and half of it) as its crosstalk onto the partner, the self-heating of the bank's other
    heaters; the other heaters' crosstalk onto the pair is split evenly. Rings ``resolved`` ((B, R) bool) by the
    steps that part them (:func:`_resolve_pairs`) have rows measured apart and are left as they are."""
    nb, nr = center_m.shape
    k = model.crosstalk
    done = np.zeros((nb, nr), dtype=bool) if resolved is None else np.asarray(resolved, dtype=bool)
    for b in range(nb):              # a pair at most every few banks
        c = center_m[b]
        close = np.abs(c[:, None] - c[None, :]) < close_m
        close &= ~(done[b][:, None] & done[b][None, :])
        for i, j in zip(*np.nonzero(np.triu(close, 1))):
            gi, gj = b * nr + int(i), b * nr + int(j)
            col_i, col_j = k[[gi, gj], gi], k[[gi, gj], gj]
            rest = np.ones(k.shape[0], dtype=bool)
            rest[[gi, gj]] = False
            mean = 0.5 * (k[gi, rest] + k[gj, rest])
            k[gi, rest] = k[gj, rest] = mean
            k[gi, gi], k[gj, gi] = col_i.max(), np.clip(col_i.min(), 0.0, 0.5 * col_i.max())
            k[gj, gj], k[gi, gj] = col_j.max(), np.clip(col_j.min(), 0.0, 0.5 * col_j.max())
            others = np.setdiff1d(np.arange(b * nr, (b + 1) * nr), [gi, gj])
            model.nonlinearity[[gi, gj]] = float(np.median(model.nonlinearity[others])) if others.size else 0.0
            log.warning("bank %d: rings %d and %d coincide within %.0f pm at zero drive; their heaters' shifts "
                        "cannot be told apart (thermal model approximate for them)", b, i, j,
                        abs(c[i] - c[j]) * 1e12)
    model.efficiency_m_per_unit = np.diag(k).copy()


def _verify_order(hw: BenchSession, k_matrix: np.ndarray, n_banks: int, n_rings: int,
                  center_m: np.ndarray | None = None, close_m: float = 0.0, fit_rmse_m: np.ndarray | None = None,
                  stood_in: np.ndarray | None = None) -> None:
    """The fitted model (ring order) must have every heater moving its own ring most within its bank, except
    within a pair of rings closer than ``close_m`` (ring-order centres ``center_m``, (B, R)): one feature, whose
    shifts the tracking cannot share out (the model is approximate there; logged), and except onto a ring whose
    tracked shifts the model does not explain (``fit_rmse_m`` (B, R) above ``UNTRACKED_LINEWIDTHS`` of
    ``close_m``: a resonance the bank fit could not hold, whose fitted row is no evidence; logged), and except a
    heater whose own ring was ``stood_in`` for (its shifts were not tracked, so its column is no evidence either: the
    probe step showed the heater moving a resonance, which is all the wiring check can ask; logged)."""
    blocks = k_matrix.reshape(n_banks, n_rings, n_banks, n_rings)
    own = blocks[np.arange(n_banks), :, np.arange(n_banks), :]       # (B, R ring, R heater)
    most = np.argmax(own, axis=1)
    wrong = most != np.arange(n_rings)[None, :]
    if wrong.any() and stood_in is not None and len(stood_in):
        untracked = np.zeros(n_banks * n_rings, dtype=bool)
        untracked[np.asarray(stood_in, dtype=int)] = True
        excused = wrong & untracked.reshape(n_banks, n_rings)
        for b, r in np.argwhere(excused):                # a ring or two on the hardest chips
            log.warning("%s moves ring %d more than its own ring %d, whose shifts could not be tracked: its thermal "
                        "model is approximate (not a wiring error)", _heater_name(hw, b * n_rings + r),
                        int(most[b, r]), int(r))
        wrong &= ~excused
    if wrong.any() and fit_rmse_m is not None and close_m > 0:
        b_idx, r_idx = np.nonzero(wrong)
        lost = np.asarray(fit_rmse_m)[b_idx, most[b_idx, r_idx]] > UNTRACKED_LINEWIDTHS * close_m
        for b in np.unique(b_idx[lost]):                 # a bank or two at most
            rings = np.unique(most[b_idx[lost & (b_idx == b)], r_idx[lost & (b_idx == b)]])
            log.warning("bank %d: the shifts of ring(s) %s could not be tracked (fit residual %s pm): their thermal "
                        "model is approximate", b, rings.tolist(),
                        np.round(np.asarray(fit_rmse_m)[b, rings] * 1e12, 1).tolist())
        wrong[b_idx[lost], r_idx[lost]] = False
    if wrong.any() and center_m is not None:
        b_idx, r_idx = np.nonzero(wrong)
        pair = np.abs(center_m[b_idx, most[b_idx, r_idx]] - center_m[b_idx, r_idx]) < close_m
        for b, r in zip(b_idx[pair], r_idx[pair]):       # the coincident pairs: a handful at most
            log.warning("bank %d: rings %d and %d coincide within %.0f pm: their heaters' shifts cannot be told "
                        "apart, the thermal model is approximate for them", b, r, most[b, r],
                        abs(center_m[b, most[b, r]] - center_m[b, r]) * 1e12)
        wrong[b_idx[pair], r_idx[pair]] = False
    if wrong.any():
        b, r = (int(v) for v in np.argwhere(wrong)[0])
        raise RingOrderError(f"{_heater_name(hw, b * n_rings + r)} moves ring {int(np.argmax(own[b, :, r]))} more "
                             "than the resonance it moved in its probe step: check that the wiring did not change "
                             "during the characterization")


# -- the fit ---------------------------------------------------------------------------------------------------------
def _heat(u: np.ndarray, gamma: np.ndarray) -> np.ndarray:
    u2 = u * u
    return u2 / (1.0 - gamma * u2)


def close_pairs(center_m: np.ndarray, close_m: float) -> list[tuple[int, int]]:
    """Disjoint pairs (flat indices b * R + k) of resonances of one bank closer than ``close_m`` (centres (B, R)),
    the closest first; a resonance close to two others joins the closer one only."""
    nb, nr = center_m.shape
    d = np.abs(center_m[:, :, None] - center_m[:, None, :])             # (B, R, R)
    b, i, j = np.nonzero(np.triu(d < close_m, 1))
    out: list[tuple[int, int]] = []
    used: set[int] = set()
    for k in np.argsort(d[b, i, j], kind="stable"):                     # a few pairs per chip
        gi, gj = int(b[k] * nr + i[k]), int(b[k] * nr + j[k])
        if gi not in used and gj not in used:
            out.append((gi, gj))
            used.update((gi, gj))
    return out


def _robust_lstsq(a: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Least squares, then once more with outliers down-weighted as in the groups' fits (1 within 4 robust sigma);
    returns (solution, residuals, weights)."""
    wts = np.ones(y.size)
    for _ in range(2):
        sol = np.linalg.lstsq(a * np.sqrt(wts)[:, None], y * np.sqrt(wts), rcond=None)[0]
        r = a @ sol - y
        scale = 1.4826 * float(np.median(np.abs(r))) + 1e-15
        wts = 1.0 / np.maximum(1.0, np.abs(r) / (4.0 * scale))
    return sol, r, wts


def _joint_row(k_row: np.ndarray, y: np.ndarray, good: np.ndarray, bank: np.ndarray, heat: np.ndarray,
               groups: list[np.ndarray], rows: np.ndarray, *, intercept: bool
               ) -> tuple[np.ndarray, float, np.ndarray, np.ndarray]:
    """One resonance's row refitted over all groups at once on its bank's heaters (y (M,) its shifts, ``good``
    the scans that count): a group's own fit has as many columns as the resonance has good scans there, and fits
    anything when its bank lost scans. The other banks' heaters keep ``k_row``'s columns where their group saw the
    resonance in all but one scan, else 0 (they are far). Returns (row, zero-drive offset (0 without
    ``intercept``), residuals, weights)."""
    n = k_row.size
    ok = good & np.isfinite(y)
    other = np.setdiff1d(np.arange(n), bank)
    k_other = np.zeros(other.size)
    for g, heaters in enumerate(groups):                                # ten groups
        if int(np.sum(ok & (rows == g))) >= int(np.sum(rows == g)) - 1:
            pick = np.isin(other, heaters)
            k_other[pick] = k_row[other[pick]]
    a = heat[np.ix_(ok, bank)]
    if intercept:
        a = np.c_[a, np.ones(int(ok.sum()))]
    sol, r, w = _robust_lstsq(a, y[ok] - heat[np.ix_(ok, other)] @ k_other)
    row = np.zeros(n)
    row[other], row[bank] = k_other, sol[:bank.size]
    return row, float(sol[-1]) if intercept else 0.0, r, w


def _fit_pair_separation(heat: np.ndarray, diff: np.ndarray, map_separation_m: float, linewidth_m: float
                         ) -> tuple[np.ndarray, float, np.ndarray, np.ndarray]:
    """The own separation of a close pair's rings from scans that part them: ``diff`` (S,) the tracked poles'
    separation minus the map's (``map_separation_m``, signed), ``heat`` (S, H) the bank's heats in those scans.

    Two rings on one bus are coupled through it, dissipatively: the pair's poles attract, and sit
    ``sign(d) sqrt(d^2 - 4 k^2)`` apart for an own separation ``d`` and a coupling ``k`` (they merge within
    ``2 k``), so parted rings are still pulled together by about ``2 k^2 / d`` (current bench, seed 2: 22 pm at
    2.7 linewidths, 8 pm at 7). A straight line through the parted scans put that pair's zero-drive separation
    30 pm off; here ``d = map_separation + gap + heat @ row`` is fitted with ``k`` (at most a linewidth), outliers
    down-weighted (soft L1 at four robust sigma of the straight line). With too few scans for ``k``, a map
    separation that is no number, or a fit that fails, the straight line stands (``k`` = 0). Returns (row (H,),
    gap, residuals, weights as in :func:`_robust_lstsq`)."""
    a = np.c_[heat, np.ones(diff.size)]
    sol, r, w = _robust_lstsq(a, diff)
    if diff.size < a.shape[1] + 2 or not np.isfinite(map_separation_m):
        return sol[:-1], float(sol[-1]), r, w
    scale_m = max(1.4826 * float(np.median(np.abs(r))), 1e-12)            # 1 pm: below any reading

    def model(x: np.ndarray) -> np.ndarray:
        d = map_separation_m + a @ x[:-1]
        return np.sign(d) * np.sqrt(np.maximum(d * d - 4.0 * x[-1] ** 2, 0.0)) - map_separation_m

    x0 = np.r_[sol, 0.2 * linewidth_m]
    lo = np.r_[np.full(sol.size, -np.inf), 0.0]
    hi = np.r_[np.full(sol.size, np.inf), linewidth_m]
    try:
        fit = least_squares(lambda x: (model(x) - diff) / NM, x0, bounds=(lo, hi), loss="soft_l1",
                            f_scale=4.0 * scale_m / NM, x_scale=np.r_[np.abs(sol) + 1e-12, 0.2 * linewidth_m])
    except ValueError as exc:                                           # non-finite residuals: the line stands
        log.info("pair separation: the coupled-pair fit failed (%s); a straight line is kept", exc)
        return sol[:-1], float(sol[-1]), r, w
    r = model(fit.x) - diff
    w = 1.0 / np.maximum(1.0, np.abs(r) / (4.0 * scale_m))
    return fit.x[:-2], float(fit.x[-2]), r, w


def _resolve_pairs(k_matrix: np.ndarray, resid_sq: np.ndarray, counts: np.ndarray, shifts: np.ndarray,
                   drives: np.ndarray, gamma: np.ndarray, pairs: list[tuple[int, int]], centres: np.ndarray,
                   resolve_m: float, groups: list[np.ndarray], rows: np.ndarray, corrupt: np.ndarray,
                   n_rings: int, fallback: tuple[np.ndarray, np.ndarray, np.ndarray]
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Rows of close pairs and the rings' own zero-drive places, on a map of poles (balanced only).

    Two rings on the same buses closer than about a linewidth are one coupled system: its two poles attract (the
    map put rings 174 pm apart 30 pm apart) and move with the pair's separation, not with either heater alone, so
    their shifts from the map are no ring's. What stays linear: the mean of the two poles (the trace of the pair's
    coupled-mode matrix: the mean of the rings' own resonances, within a few pm on the emulator), tracked in every
    scan; and the difference of the two poles where the rings stand apart (``resolve_m`` from each other and from
    the bank's other resonances: a heater step that moves one of them away). Scans flagged in ``corrupt`` (M, B),
    where the bank's fit lost a resonance, are left out. Both are fitted over all groups at once with their
    zero-drive value free, on the bank's own heaters (least squares, outliers down-weighted as in the groups'
    fits; :func:`_joint_row`): a group's own fit has as many columns as the pair has good scans there. The other
    banks' heaters move both rings alike, as do the bank's heaters that never part the pair. A pair that too few
    steps part (or whose fit moves a ring beyond any pull) keeps its poles' own rows (``fallback``: crosstalk,
    squared residual sums and weights of the plain fit) and the map's centres. Rows in
    ``k_matrix`` (map order) are replaced in place, with their ``resid_sq``/``counts``; returns (N,) own resonance
    minus map centre (0 off pairs) and (N,) bool, the rings of the pairs resolved."""
    n = shifts.shape[1]
    correction = np.zeros(n)
    resolved_rings = np.zeros(n, dtype=bool)
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)                # a column never tracked: NaN
        map_m = np.nanmedian(centres - shifts, axis=0)                  # the map's centres (shifts are from them)
    with np.errstate(invalid="ignore"):
        heat = np.nan_to_num(_heat(drives, gamma[None, :]))            # (M, N): drives are 0 off each group
    for gi, gj in pairs:                                                # a pair or two per bank at most
        b = gi // n_rings
        bank = np.arange(b * n_rings, (b + 1) * n_rings)
        rest = np.setdiff1d(bank, [gi, gj])
        good = ~corrupt[:, b]
        # mean: the bank's own heaters fitted with the mean's zero-drive offset
        mean = 0.5 * (shifts[:, gi] + shifts[:, gj])
        mean_row, offset, r_m, w_m = _joint_row(k_matrix[gi], mean, good, bank, heat, groups, rows, intercept=True)
        # difference: where the pair stands apart
        pos = centres[:, [gi, gj]]                                      # (M, 2) tracked
        apart = np.abs(pos[:, 0] - pos[:, 1]) >= resolve_m
        if rest.size:
            others_m = np.min(np.abs(pos[:, :, None] - centres[:, None, rest]), axis=(1, 2))
            apart &= others_m >= OTHERS_RESOLVED_SHARE * resolve_m
        diff = shifts[:, gi] - shifts[:, gj]
        ok = apart & np.isfinite(diff) & good
        diff_row = np.zeros(n)
        gap = 0.0
        r_d, w_d = np.zeros(0), np.zeros(0)
        cols = bank[np.any(heat[np.ix_(ok, bank)] > 0, axis=0)]
        resolved = int(ok.sum()) >= max(MIN_RESOLVED_SCANS, cols.size + 2)
        if resolved:
            sol_d, gap, r_d, w_d = _fit_pair_separation(heat[np.ix_(ok, cols)], diff[ok],
                                                        float(map_m[gi] - map_m[gj]),
                                                        resolve_m / RESOLVED_LINEWIDTHS)
            diff_row[cols] = sol_d
            if abs(gap) > 2.0 * MAX_PAIR_PULL_SHARE * resolve_m:        # beyond any pull seen: a failed fit
                log.warning("resonances %d and %d of bank %d: the steps that part them put them %.0f pm from the "
                            "map's poles, more than a pair pulls; their poles are tracked as they are",
                            gi % n_rings, gj % n_rings, b, 0.5 * abs(gap) * 1e12)
                resolved = False
        if resolved:
            log.info("bank %d: resonances %d and %d (%.0f pm apart on the map) resolved from %d scans that part "
                     "them: %.0f pm apart at zero drive", b, gi % n_rings, gj % n_rings,
                     abs(map_m[gi] - map_m[gj]) * 1e12, int(ok.sum()), abs(map_m[gi] - map_m[gj] + gap) * 1e12)
        elif gap == 0.0:
            log.warning("resonances %d and %d of bank %d are %.0f pm apart at zero drive and the heater steps parted "
                        "them in %d scans only: their poles are tracked as they are (thermal model approximate for "
                        "them)", gi % n_rings, gj % n_rings, b, abs(map_m[gi] - map_m[gj]) * 1e12,
                        int(ok.sum()))
        if not resolved:
            for g in (gi, gj):
                k_matrix[g], resid_sq[g], counts[g] = fallback[0][g], fallback[1][g], fallback[2][g]
            continue
        k_matrix[gi], k_matrix[gj] = mean_row + 0.5 * diff_row, mean_row - 0.5 * diff_row
        correction[gi], correction[gj] = offset + 0.5 * gap, offset - 0.5 * gap
        resolved_rings[[gi, gj]] = True
        ms = float(np.sum(w_m * r_m * r_m)) + 0.25 * float(np.sum(w_d * r_d * r_d))
        cnt = float(np.sum(w_m)) + 0.25 * float(np.sum(w_d))
        resid_sq[gi] = resid_sq[gj] = ms
        counts[gi] = counts[gj] = max(cnt, 1e-12)
    return correction, resolved_rings


def _fit(hw: BenchSession, groups: list[np.ndarray], shifts: np.ndarray, drives: np.ndarray,
         rows: np.ndarray, resonance_of_heater: np.ndarray | None = None, *,
         pairs: list[tuple[int, int]] | None = None, centres: np.ndarray | None = None, resolve_m: float = 0.0
         ) -> tuple[ThermalModel, np.ndarray, np.ndarray]:
    """Per group: gamma by variable projection around the linear least-squares crosstalk columns (all resonances
    at once), then once more with outlying (scan, resonance) points down-weighted (a resonance that could not be
    told apart from another one in one scan must not bend a whole column). ``shifts`` are per resonance (the map's
    order); the model's rows are put in ring order with ``resonance_of_heater`` (ring j = what heater j moves).
    ``pairs`` (map order, with the tracked ``centres`` (M, N) of every scan): close pairs of a map of poles, fitted
    by their mean and resolved apart (:func:`_resolve_pairs`). Returns the model and, (N,) in map order, each
    resonance's own zero-drive place minus the map's (0 but in resolved pairs) and which pairs' rings were resolved."""
    pairs = pairs or []
    shifts_raw = shifts
    plain = np.array(shifts, dtype=float)
    n = plain.shape[1]
    correction = np.zeros(n)
    resolved = np.zeros(n, dtype=bool)
    corrupt = None
    nr = int(getattr(hw, "n_rings", n))
    if centres is not None:
        # balanced only: a scan in which the bank's fit lost some resonance (another ring came within a linewidth
        # of it: the fitted poles jumped by up to nanometres, some of them blue, which no heater does) is no
        # evidence on any resonance of that bank
        with np.errstate(invalid="ignore"):
            lost = np.isfinite(shifts_raw) & ~(shifts_raw >= -LOST_BLUE_FRACTION * resolve_m)
        corrupt = lost.reshape(lost.shape[0], -1, nr).any(axis=2)                 # (M, B)
        plain[np.repeat(corrupt, nr, axis=1)] = np.nan
        if corrupt.any():
            log.info("heater steps: %d (scan, bank) fits lost a resonance (moved blue by more than %.0f pm); left out",
                     int(corrupt.sum()), LOST_BLUE_FRACTION * resolve_m * 1e12)
    merged = plain.copy()
    for gi, gj in pairs:             # the pair's mean is tracked in every scan; its first row fits it
        merged[:, gi] = 0.5 * (plain[:, gi] + plain[:, gj])
        merged[:, gj] = np.nan
    k_matrix, gamma, resid_sq, counts = _fit_groups(groups, merged, drives, rows, nr)
    # a pair the steps cannot resolve keeps the rows its poles' own tracking gives (two equal rows would make the
    # matrix singular)
    fb_k, _, fb_sq, fb_counts = (_fit_groups(groups, plain, drives, rows, nr) if pairs
                                 else (k_matrix, gamma, resid_sq, counts))
    if corrupt is not None and corrupt.any():
        with np.errstate(invalid="ignore"):
            heat = np.nan_to_num(_heat(drives, gamma[None, :]))
        in_pair = {g for pair in pairs for g in pair}
        for b in np.flatnonzero(corrupt.any(axis=0)):                  # the banks that lost a scan: one or two
            bank = np.arange(b * nr, (b + 1) * nr)
            for i in bank:                                              # their rings, a handful
                k, sq, cnt = (fb_k, fb_sq, fb_counts) if int(i) in in_pair else (k_matrix, resid_sq, counts)
                k[i], _, r_i, w_i = _joint_row(k[i], plain[:, i], ~corrupt[:, b], bank, heat, groups, rows,
                                               intercept=False)
                sq[i], cnt[i] = float(np.sum(w_i * r_i * r_i)), max(float(np.sum(w_i)), 1e-12)
    if pairs:
        assert centres is not None and corrupt is not None
        correction, resolved = _resolve_pairs(k_matrix, resid_sq, counts, shifts_raw, drives, gamma, pairs,
                                              centres, resolve_m, groups, rows, corrupt, nr,
                                              (fb_k, fb_sq, fb_counts))
    if resonance_of_heater is not None:
        k_matrix, resid_sq, counts = (k_matrix[resonance_of_heater], resid_sq[resonance_of_heater],
                                      counts[resonance_of_heater])
    return ThermalModel(mode=hw.mode, efficiency_m_per_unit=np.diag(k_matrix).copy(), crosstalk=k_matrix,
                        nonlinearity=gamma, fit_rmse_m=np.sqrt(resid_sq / np.maximum(counts, 1e-12)),
                        heat_unit="V^2" if hw.mode == "voltage" else "A^2"), correction, resolved


def _fit_groups(groups: list[np.ndarray], shifts: np.ndarray, drives: np.ndarray, rows: np.ndarray, n_rings: int
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The per-group fits of :func:`_fit`: (crosstalk (N, N) in the shifts' order, gamma (N,), weighted squared
    residual sums and weights per resonance (N,)); ``n_rings`` per bank tells a heater's bank from a row's."""
    n = shifts.shape[1]
    k_matrix = np.zeros((n, n))
    gamma = np.zeros(n)
    resid_sq = np.zeros(n)
    counts = np.zeros(n)
    bank_of_row = np.arange(n) // n_rings
    for gi, heaters in enumerate(groups):                 # a loop over groups: one bulk fit each
        sel = rows == gi
        measured = np.isfinite(shifts[sel])               # NaN: the scan did not cover that resonance
        s = np.where(measured, shifts[sel], 0.0)          # (M, N)
        u = drives[sel][:, heaters]                       # (M, G)
        u2max = float(np.max(u * u))
        weights = measured.astype(float)
        same = bank_of_row[:, None] == (heaters // n_rings)[None, :]     # (N, G) the heater in the row's bank
        keep = _fitted_columns(u, weights, same)
        sol_x = np.zeros(heaters.size)
        for _ in range(2):
            sol_x = _fit_group(s, u, weights, u2max, sol_x, keep)
            kt, r = _columns(s, u, weights, sol_x, keep)
            # coupling from another bank of a sizeable share of a heater's own efficiency is no thermal coupling but
            # a tracking that followed another ring (a pair under a linewidth apart, adc-s7: 230 pm/V^2 onto a ring
            # of another bank from a heater of own efficiency 250): that ring's columns come from its own bank
            eff = np.max(kt, axis=1)                                      # (G,) each heater moves its ring most
            share = np.abs(kt.T) / np.maximum(eff, 1e-300)[None, :]       # (N, G)
            implausible = np.any(~same & keep & (share > MAX_CROSS_BANK_SHARE), axis=1)
            if implausible.any():
                keep = np.where(implausible[:, None], same, keep)
                sol_x = _fit_group(s, u, weights, u2max, sol_x, keep)
                kt, r = _columns(s, u, weights, sol_x, keep)
            scale = 1.4826 * np.median(np.abs(r[measured])) + 1e-15
            weights = measured / np.maximum(1.0, np.abs(r) / (4.0 * scale))   # Huber-like: 1 within 4 robust sigma
        k_matrix[:, heaters] = kt.T
        gamma[heaters] = sol_x
        resid_sq += np.sum(weights * r * r, axis=0)
        counts += np.sum(weights, axis=0)
    return k_matrix, gamma, resid_sq, counts


def _fitted_columns(u: np.ndarray, weights: np.ndarray, same: np.ndarray) -> np.ndarray:
    """(N, G) bool: the group's columns each ring's scans can fit. A ring whose scans of the group cannot tell the
    group's heats apart (fewer scans measured than columns + 1, or normal equations conditioned worse than
    ``MAX_COLUMN_CONDITION``: it left the stepped scan's window where its own heater moved it furthest) keeps only
    the column of the heater in its own bank (``same``), the other banks' columns at 0. Solving its near-singular
    equations instead shared its own shift out among the other banks' heaters, which move with the same levels:
    151 and 178 pm/V^2 of "crosstalk" from two other banks onto one ring (adc-s4; true about 1), an own efficiency of
    a third, and a result that depended on the machine's rounding. Those entries pushed the neighbours' operating
    windows 0.7 nm red, onto the next channel (joint windows take every positive coupling at full heat), and the
    chip to 3.6 bits."""
    h = u * u
    g = h.shape[1]
    keep = np.ones(same.shape, dtype=bool)
    if g < 2:
        return keep
    a = np.einsum("mg,mi,mh->igh", h, weights, h)                      # (N, G, G)
    d = np.sqrt(np.maximum(np.einsum("igg->ig", a), 1e-300))
    ev = np.linalg.eigvalsh(a / (d[:, :, None] * d[:, None, :]))      # (N, G) ascending, columns at unit norm
    ill = (np.sum(weights > 0, axis=0) < g + 1) | ~(ev[:, 0] * MAX_COLUMN_CONDITION > ev[:, -1])
    return np.where(ill[:, None], same, keep)


def _columns(s: np.ndarray, u: np.ndarray, weights: np.ndarray, gam: np.ndarray, keep: np.ndarray | None = None
             ) -> tuple[np.ndarray, np.ndarray]:
    """Weighted least-squares crosstalk columns (G, N) for every ring at once, and the residuals (M, N).
    ``keep`` ((N, G) bool, :func:`_fitted_columns`): the columns fitted per ring, the others held at 0."""
    h = _heat(u, gam)                                                  # (M, G)
    a = np.einsum("mg,mi,mh->igh", h, weights, h)                      # (N, G, G)
    b = np.einsum("mg,mi,mi->ig", h, weights, s)                       # (N, G)
    if keep is not None and not keep.all():
        g = h.shape[1]
        a = np.where(keep[:, :, None] & keep[:, None, :], a, 0.0)
        b = np.where(keep, b, 0.0)
        diag = np.einsum("igg->ig", a)
        a[:, np.arange(g), np.arange(g)] = np.where(diag > 0, diag, 1.0)    # dropped or unseen columns: 0
    try:
        kt = np.linalg.solve(a + 1e-30 * np.eye(h.shape[1]), b[..., None])[..., 0].T
    except np.linalg.LinAlgError:
        # some resonance's normal equations are singular (no scan of the group saw it, or the group's heats were
        # collinear where it was seen): the least-norm columns leave what the scans cannot tell at 0, for the
        # untracked-ring checks downstream to stand in for
        kt = (np.linalg.pinv(a) @ b[..., None])[..., 0].T
    return kt, s - h @ kt


def _fit_group(s: np.ndarray, u: np.ndarray, weights: np.ndarray, u2max: float, start: np.ndarray,
               keep: np.ndarray | None = None) -> np.ndarray:
    # the nonlinearities are judged on the rings whose every column is fitted (a ring fitted with one column would
    # bend them to explain the others' share of its shifts)
    root_w = np.sqrt(weights) if keep is None else np.sqrt(weights) * keep.all(axis=1)[None, :]

    def residual(gam: np.ndarray) -> np.ndarray:
        return (root_w * _columns(s, u, weights, gam, keep)[1]).ravel() / NM

    bound = 0.9 / u2max
    sol = least_squares(residual, np.clip(start, -0.5 * bound, 0.5 * bound), bounds=(-bound, bound), method="trf",
                        x_scale=np.full(start.size, 0.1 / u2max))
    return sol.x
