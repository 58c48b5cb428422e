"""Achievable ranges checked by measurement: every ring at its window's ends, its neighbours at theirs.

Why. The weight model gives each ring the range of weights it reaches for *any* setting of its neighbours
(weights._finalize_windows), evaluated with the model. Where two rings of a bank sit within a couple of linewidths
of each other the neighbour terms, linear in 1/distance, describe them poorly, and the model can promise a range
end that the chip does not reach with some neighbour settings (current bench, seed 3: a ring promised up to
-0.24 stopped at -0.41 whenever its close neighbour was set high, and refinement could not help: 5.5e-2 rms
error on that ring, 7.5 bits for the chip). A target there is not reachable; the range must say so.

Which rings. Only rings within ``CLOSE_LINEWIDTHS`` linewidths of another ring of their bank, and rings held at
one weight, and only their channels are lit: elsewhere the model holds (about 2e-3 at unseen settings), and a
check of every channel costs eight full weight readings.

Held rings. A ring with no weight reachable for every setting of its neighbours is held at one detuning, and
every target asks it for one weight: the model's value there. Where a close neighbour disturbed its sweep that
value can be far from the chip's (emulated +-1 nm spread chip, seed 3: held at 0.288 by the model, 0.39 away on
the chip, alone 4.7 bits for the chip, and refinement cannot move a ring whose window is closed). Its weight is
read, at the middle of its window, in all eight settings; where the median reading is more than ``tolerance``
from the model's weight it becomes the held weight and the ring's model curve is shifted by the difference
(recorded, with the spread over the neighbours' settings).

What is measured. Each ring has a top end and a bottom end of its window (the detunings of its largest and
smallest weight). Eight settings of the whole chip put every ring at one of its ends, in patterns that give every
ring each combination of its two neighbours' ends (all top, all bottom, alternating both ways, and the four shifts
of top-top-bottom-bottom), and the weights of every ring are read at once (one weight reading per setting). A
ring's range end is then cut back to the worst measured value at that end (less ``margin`` of its span) when the
readings fall short of the model's by more than ``tolerance``: model errors of a few 1e-3 are refinement's job,
not a restriction. Restricted rings are recorded with the reason, like the model's own restrictions.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from labctl.calibration.calibrate import Calibration
    from labctl.calibration.resonances import ResonanceMap
    from labctl.drivers.interfaces import BenchSession

log = logging.getLogger(__name__)

#: Readings must fall short of the model's range end by more than this (weight units) to cut the range.
TOLERANCE = 0.02
#: Only rings within this many linewidths of another ring of their bank (at zero drive) are checked: there the
#: model's neighbour terms are weak; elsewhere it predicts unseen settings to about 2e-3 (weights.py), and the
#: check would cost eight weight readings of every channel (84 s of bench time on the default bench).
CLOSE_LINEWIDTHS = 2.5
#: A cut range end keeps this fraction of the ring's span inside the worst reading.
MARGIN = 0.01


def close_rings(rmap: ResonanceMap, linewidths: float) -> np.ndarray:
    """(B, R) bool: rings with another ring of their bank within ``linewidths`` linewidths at zero drive."""
    c = np.asarray(rmap.center_m, dtype=float)
    w = float(np.median(np.asarray(rmap.pole_fwhm_m if rmap.pole_fwhm_m is not None else rmap.fwhm_m)))
    d = np.abs(c[:, :, None] - c[:, None, :])
    d[:, np.arange(c.shape[1]), np.arange(c.shape[1])] = np.inf
    return d.min(axis=2) < linewidths * w


def end_patterns(n_rings: int) -> np.ndarray:
    """(8, R) bool, True = ring at its top end: all top, all bottom, alternating, and top-top-bottom-bottom in
    its four shifts (every ring meets every combination of its two neighbours' ends at both of its own ends)."""
    r = np.arange(n_rings)
    rows = [np.ones(n_rings, bool), np.zeros(n_rings, bool), r % 2 == 0, r % 2 == 1]
    rows += [((r + s) % 4) < 2 for s in range(4)]
    return np.array(rows)


def check_ranges(hw: BenchSession, cal: Calibration, *, tolerance: float = TOLERANCE, margin: float = MARGIN,
                 progress: Callable[[str, int, int], None] | None = None) -> list[dict[str, Any]]:
    """Measure every ring at its window ends (see the module docstring), cut ``cal.weights``' ranges where the
    chip falls short, and return one restriction entry per ring cut. The heaters are left at the last setting
    (the calibration returns them to zero)."""
    wm = cal.weights
    nb, nr = wm.shape
    lo, hi = np.asarray(wm.delta_lo_m, dtype=float), np.asarray(wm.delta_hi_m, dtype=float)
    park = wm.park_delta_m()
    coef = wm.effective_coef(park)
    w_lo, w_hi = wm.predict_own(lo, coef), wm.predict_own(hi, coef)
    top_d = np.where(w_lo >= w_hi, lo, hi)
    bot_d = np.where(w_lo >= w_hi, hi, lo)
    usable = wm.w_max > wm.w_min
    was_held = ~usable
    top_d, bot_d = np.where(was_held, park, top_d), np.where(was_held, park, bot_d)   # held: read mid-window
    close = close_rings(cal.rmap, CLOSE_LINEWIDTHS) & usable
    if not (close | was_held).any():
        wm.meta["range_check"] = {"settings": 0, "tolerance": tolerance, "cut": 0, "rings": 0}
        return []
    channels = np.unique(np.asarray(wm.channel_of_ring, dtype=int)[close | was_held])
    channels = channels[channels >= 0]
    patterns = end_patterns(nr)
    worst_top = np.full((nb, nr), np.inf)
    worst_bot = np.full((nb, nr), -np.inf)
    held_readings: list[np.ndarray] = []
    done = 0
    for k, top in enumerate(patterns):           # eight settings of the whole chip
        delta = np.where(top[None, :], top_d, bot_d)
        target = wm.predict(delta)
        try:
            drive = cal.solve_from_detuning(target, delta, hw.limits).drive
            hw.limits.check(drive)
        except ValueError as exc:                # LimitError is a ValueError: a pattern the limits refuse
            log.info("range check: setting %d skipped (%s)", k, exc)
            continue
        cal.apply(hw, drive)
        measured = cal.measure_weights(hw, channels=channels)
        worst_top = np.where(top[None, :], np.minimum(worst_top, measured), worst_top)
        worst_bot = np.where(top[None, :], worst_bot, np.maximum(worst_bot, measured))
        held_readings.append(np.where(was_held, measured, np.nan))
        done += 1
        if progress is not None:
            progress("range check: rings at their window ends", k + 1, patterns.shape[0])
    span = np.abs(wm.w_max - wm.w_min)
    cut_top = close & np.isfinite(worst_top) & (worst_top < wm.w_max - tolerance)
    cut_bot = close & np.isfinite(worst_bot) & (worst_bot > wm.w_min + tolerance)
    new_max = np.where(cut_top, worst_top - margin * span, wm.w_max)
    new_min = np.where(cut_bot, worst_bot + margin * span, wm.w_min)
    held = (cut_top | cut_bot) & ~(new_max > new_min)
    mid = 0.5 * (worst_top + worst_bot)
    new_max, new_min = np.where(held, mid, new_max), np.where(held, mid, new_min)
    out: list[dict[str, Any]] = []
    for b, r in np.argwhere(cut_top | cut_bot):  # the rings cut: a handful
        b, r = int(b), int(r)
        ends = [f"{name} {old:.3f} measured {got:.3f}" for name, cut, old, got in (
            ("top", cut_top[b, r], wm.w_max[b, r], worst_top[b, r]),
            ("bottom", cut_bot[b, r], wm.w_min[b, r], worst_bot[b, r])) if cut]
        why = ("at its window's ends with its neighbours at theirs the chip falls short of the model's range ("
               + ", ".join(ends) + ")" + ("; held at one weight" if held[b, r] else ""))
        out.append({"bank": b, "ring": r, "reasons": [why], "range": [float(new_min[b, r]), float(new_max[b, r])],
                    "range_model": [float(wm.w_min[b, r]), float(wm.w_max[b, r])]})
    wm.w_max, wm.w_min = new_max, new_min
    n_cut = len(out)
    out += _measured_holds(wm, was_held, held_readings, tolerance)
    wm.meta["range_check"] = {"settings": done, "tolerance": tolerance, "cut": n_cut, "rings": int(close.sum()),
                              "held_rings": int(was_held.sum()), "channels": channels.tolist()}
    if out:
        log.info("range check: %d ring(s) cut: %s", len(out),
                 "; ".join(f"bank {e['bank']} ring {e['ring']}: {e['reasons'][0]}" for e in out))
    return out


def _measured_holds(wm: Any, held: np.ndarray, readings: list[np.ndarray], tolerance: float) -> list[dict[str, Any]]:
    """Held rings whose readings (mid-window) fall more than ``tolerance`` from the model's weight take the median
    reading as their one weight, and their model curve is shifted by the difference (its constant term), so the
    solve still moves the ring inside its window against the neighbours' terms and refinement can still correct
    it; one entry per such ring. (Closing the window at the middle instead lost 2.7 bits on the +-1 nm spread chip,
    seed 3: a held ring's neighbour then moved across its channel unanswered; closing every held window lost 1.7
    bits on a crosstalk-x2 chip.)"""
    if not held.any() or not readings:
        return []
    stack = np.array(readings)
    ok = np.isfinite(stack).any(axis=0) & held
    if not ok.any():
        return []
    with np.errstate(all="ignore"):
        median = np.nanmedian(np.where(ok[None], stack, 0.0), axis=0)
        spread = np.nanmax(np.where(ok[None], stack, 0.0), axis=0) - np.nanmin(np.where(ok[None], stack, 0.0), axis=0)
    old = np.asarray(wm.w_min, dtype=float).copy()
    moved = ok & (np.abs(median - old) > tolerance)
    coef = np.array(wm.coef, dtype=float)
    coef[..., 0, 0] += np.where(moved, median - old, 0.0)     # the constant term: the ring's curve, shifted
    wm.coef = coef
    wm.w_min = np.where(moved, median, wm.w_min)
    wm.w_max = np.where(moved, median, wm.w_max)
    out = []
    for b, r in np.argwhere(moved):              # a handful at most
        b, r = int(b), int(r)
        out.append({"bank": b, "ring": r, "range": [float(median[b, r])] * 2, "range_model": [float(old[b, r])] * 2,
                    "reasons": [f"held at one weight: measured {median[b, r]:.3f} where the model said "
                                f"{old[b, r]:.3f} (readings spread {spread[b, r]:.3f} over its neighbours' settings)"]})
    if out:
        log.info("range check: %d held ring(s) take their measured weight", len(out))
    return out
