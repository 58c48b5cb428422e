"""Achievable ranges checked by measurement: every ring at its window's ends, its neighbours at theirs.

Why. The weight model gives each ring the range of weights it reaches for *any* setting of its neighbours
(weights._finalize_windows), evaluated with the model. Where two rings of a bank sit within a couple of linewidths
of each other the neighbour terms, linear in 1/distance, describe them poorly, and the model can promise a range
end that the chip does not reach with some neighbour settings (current bench, seed 3: a ring promised up to
-0.24 stopped at -0.41 whenever its close neighbour was set high, and refinement could not help: 5.5e-2 rms
error on that ring, 7.5 bits for the chip). A target there is not reachable; the range must say so.

Which rings. Only rings within ``CLOSE_LINEWIDTHS`` linewidths of another ring of their bank, and rings held at
one weight, and only their channels are lit: elsewhere the model holds (about 2e-3 at unseen settings), and a
check of every channel costs eight full weight readings. On balanced-only benches "within" also counts in
operation (the operating windows of two rings that close to each other): there the thermal model follows poles,
tens of pm off where rings pass each other.

Held rings. A ring with no weight reachable for every setting of its neighbours is held at one detuning, and
every target asks it for one weight: the model's value there (or, for a ring whose range the window-end readings
below cut to nothing, the middle of its worst end readings). Where a close neighbour disturbed its sweep that
value can be far from the chip's (emulated +-1 nm spread chip, seed 3: held at 0.288 by the model, 0.39 away on
the chip, alone 4.7 bits for the chip, and refinement cannot move a ring whose window is closed). Its weight
still follows its neighbours, so it is read in ``HELD_SETTINGS`` settings of random targets inside every ring's
range (the settings a verification or a user makes), and the MEAN reading becomes the held weight: the one that
minimises its rms error over such targets; the ring's model curve is shifted by the difference (recorded, with
the spread of the readings). Reading it with the neighbours at their window ends instead (the first version)
biased it: emulated default chip seed 7, held at -0.438 from the median of those readings, -0.507 on average over
random targets, 0.072 rms on that ring, 92 % of the chip's error (7.0 bits, refinement gaining nothing). A ring
cut to one weight is read the same way (emulated harsh chip, seed 0: cut to 0.256 between its end readings 0.214 and
0.298, 0.29-0.30 in use, 0.037 rms on that ring, a quarter to a third of the chip's squared error).

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
#: Settings of random targets in which the held rings are read (their mean reading becomes the held weight).
HELD_SETTINGS = 16
#: A held ring's mean reading must differ from its held weight by more than this (weight units) to replace it:
#: about the model's accuracy at unseen settings (weights.py), far above the mean's reading noise.
HELD_TOLERANCE = 2e-3


def close_rings(rmap: ResonanceMap, linewidths: float) -> np.ndarray:
    """(B, R) bool: rings with another ring of their bank within ``linewidths`` linewidths at zero drive."""
    c = np.asarray(rmap.center_m, dtype=float)
    w = float(np.median(np.asarray(rmap.pole_fwhm_m if rmap.pole_fwhm_m is not None else rmap.fwhm_m)))
    d = np.abs(c[:, :, None] - c[:, None, :])
    d[:, np.arange(c.shape[1]), np.arange(c.shape[1])] = np.inf
    return d.min(axis=2) < linewidths * w


def close_in_operation(wm: Any, linewidths: float) -> np.ndarray:
    """(B, R) bool: rings whose operating window (the wavelengths their detuning window puts them at) comes within
    ``linewidths`` of another ring's window in their bank, ``wm`` a WeightModel."""
    lam = np.asarray(wm.ring_wavelength_m, dtype=float)
    lo_pos = lam - np.asarray(wm.delta_hi_m, dtype=float)       # detuning = channel - resonance
    hi_pos = lam - np.asarray(wm.delta_lo_m, dtype=float)
    gap = np.maximum(lo_pos[:, None, :] - hi_pos[:, :, None], lo_pos[:, :, None] - hi_pos[:, None, :])   # (B, R, R)
    n = lam.shape[1]
    gap[:, np.arange(n), np.arange(n)] = np.inf
    width = float(np.median(np.asarray(wm.width_m, dtype=float)))
    return gap.min(axis=2) < linewidths * width


def end_patterns(n_rings: int) -> np.ndarray:
    """(8, R) bool, True = ring at its top end: all top, all bottom, alternating, and top-top-bottom-bottom in
    its four shifts (every ring meets every combination of its two neighbours' ends at both of its own ends)."""
    r = np.arange(n_rings)
    rows = [np.ones(n_rings, bool), np.zeros(n_rings, bool), r % 2 == 0, r % 2 == 1]
    rows += [((r + s) % 4) < 2 for s in range(4)]
    return np.array(rows)


def check_ranges(hw: BenchSession, cal: Calibration, *, tolerance: float = TOLERANCE, margin: float = MARGIN,
                 held_settings: int = HELD_SETTINGS, seed: int = 0,
                 progress: Callable[[str, int, int], None] | None = None) -> list[dict[str, Any]]:
    """Measure every ring at its window ends (see the module docstring), cut ``cal.weights``' ranges where the
    chip falls short, read the held rings in ``held_settings`` settings of random targets (``seed``) and hold them
    at their mean reading, and return one restriction entry per ring cut or re-held. The heaters are left at the
    last setting (the calibration returns them to zero)."""
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
    top_d, bot_d = np.where(was_held, park, top_d), np.where(was_held, park, bot_d)   # held: mid-window
    close = close_rings(cal.rmap, CLOSE_LINEWIDTHS)
    if not getattr(cal.rmap, "measured_ports", True):
        # balanced only: the thermal model tracked poles, not the rings' own resonances (tens of pm off where
        # rings pass each other, against a few pm from the through ports), so rings that come close in operation
        # are checked too (adc-s8: a ring 2.9 linewidths from its neighbour at zero drive, 1.1 in operation, was
        # promised 0.74 and reached 0.45 with some neighbour settings, 73 % of the chip's error)
        close |= close_in_operation(wm, CLOSE_LINEWIDTHS)
    close &= usable
    if not (close | was_held).any():
        wm.meta["range_check"] = {"settings": 0, "tolerance": tolerance, "cut": 0, "rings": 0}
        return []
    channels = np.unique(np.asarray(wm.channel_of_ring, dtype=int)[close])
    channels = channels[channels >= 0]
    patterns = end_patterns(nr) if close.any() else np.zeros((0, nr), dtype=bool)
    n_steps = patterns.shape[0] + int(was_held.any())
    worst_top = np.full((nb, nr), np.inf)
    worst_bot = np.full((nb, nr), -np.inf)
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
        done += 1
        if progress is not None:
            progress("range check: rings at their window ends", k + 1, n_steps)
    span = np.abs(wm.w_max - wm.w_min)
    cut_top = close & np.isfinite(worst_top) & (worst_top < wm.w_max - tolerance)
    cut_bot = close & np.isfinite(worst_bot) & (worst_bot > wm.w_min + tolerance)
    new_max = np.where(cut_top, worst_top - margin * span, wm.w_max)
    new_min = np.where(cut_bot, worst_bot + margin * span, wm.w_min)
    held = (cut_top | cut_bot) & ~(new_max > new_min)
    with np.errstate(invalid="ignore"):         # inf - inf where no end was read: never used
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
    hold = was_held | held                      # held by the model, or cut to one weight just now
    held_readings = _read_held(hw, cal, hold, held_settings, seed, progress, n_steps)
    done += len(held_readings)
    out = _merge_entries(out + _measured_holds(wm, hold, held_readings, HELD_TOLERANCE, cut_held=held))
    wm.meta["range_check"] = {"settings": done, "tolerance": tolerance, "cut": n_cut, "rings": int(close.sum()),
                              "held_rings": int(hold.sum()), "channels": channels.tolist()}
    if out:
        log.info("range check: %d ring(s) cut: %s", len(out),
                 "; ".join(f"bank {e['bank']} ring {e['ring']}: {e['reasons'][0]}" for e in out))
    return out


def _merge_entries(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per ring: a ring cut to one weight and then re-held at its mean reading keeps both reasons and
    the later range."""
    merged: dict[tuple[int, int], dict[str, Any]] = {}
    for e in entries:
        key = (e["bank"], e["ring"])
        earlier = merged.get(key)
        if earlier is None:
            merged[key] = e
        else:
            merged[key] = {**earlier, **e, "reasons": earlier["reasons"] + e["reasons"],
                           "range_model": earlier.get("range_model", e.get("range_model"))}
    return list(merged.values())


def _read_held(hw: BenchSession, cal: Calibration, held: np.ndarray, n_settings: int, seed: int,
               progress: Callable[[str, int, int], None] | None, n_steps: int) -> list[np.ndarray]:
    """Readings (B, R), NaN off the held rings, of the held rings' channels in ``n_settings`` settings of random
    targets inside every ring's (checked) range, solved by the model as any target is; each held channel's laser
    is switched on once for all settings."""
    if not held.any() or n_settings < 1:
        return []
    wm = cal.weights
    channels = np.unique(np.asarray(wm.channel_of_ring, dtype=int)[held])
    channels = channels[channels >= 0]
    rng = np.random.default_rng(seed)
    w_min, w_max = np.asarray(wm.w_min, dtype=float), np.asarray(wm.w_max, dtype=float)
    targets = w_min + (w_max - w_min) * rng.uniform(0.0, 1.0, (n_settings,) + w_min.shape)
    deltas = wm.solve(targets, strict=True)
    drives = []
    for k in range(n_settings):
        try:
            drive = cal.solve_from_detuning(targets[k], deltas[k], hw.limits).drive
            hw.limits.check(drive)
        except ValueError as exc:                # LimitError is a ValueError: a setting the limits refuse
            log.info("range check: held-ring setting %d skipped (%s)", k, exc)
            continue
        drives.append(drive)
    if not drives:
        return []
    measured = cal.measure_weights_at(hw, np.array(drives), channels=channels)   # one laser switch per channel
    if progress is not None:
        progress("range check: held rings at random targets", n_steps, n_steps)
    return [np.where(held, m, np.nan) for m in measured]


def _measured_holds(wm: Any, held: np.ndarray, readings: list[np.ndarray], tolerance: float,
                    cut_held: np.ndarray | None = None) -> list[dict[str, Any]]:
    """Held rings whose mean reading (over settings of random targets) differs by more than ``tolerance`` from the
    held weight take it as their one weight, and their model curve is shifted by the difference (its constant
    term), so the solve still moves the ring inside its window against the neighbours' terms as before and
    refinement can still correct it; one entry per such ring. (Closing the window at the middle instead lost 2.7
    bits on the +-1 nm spread chip, seed 3: a held ring's neighbour then moved across its channel unanswered;
    closing every held window lost 1.7 bits on a crosstalk-x2 chip.)"""
    if not held.any() or not readings:
        return []
    stack = np.array(readings)
    ok = np.isfinite(stack).any(axis=0) & held
    if not ok.any():
        return []
    seen = np.isfinite(stack) & ok[None]
    count = np.maximum(seen.sum(axis=0), 1)
    vals = np.where(seen, stack, 0.0)
    mean = vals.sum(axis=0) / count
    spread = np.sqrt(np.where(seen, (stack - mean[None]) ** 2, 0.0).sum(axis=0) / count)
    old = np.asarray(wm.w_min, dtype=float).copy()
    moved = ok & (np.abs(mean - old) > tolerance)
    coef = np.array(wm.coef, dtype=float)
    coef[..., 0, 0] += np.where(moved, mean - old, 0.0)       # the constant term: the ring's curve, shifted
    wm.coef = coef
    wm.w_min = np.where(moved, mean, wm.w_min)
    wm.w_max = np.where(moved, mean, wm.w_max)
    was = np.where(np.zeros(held.shape, bool) if cut_held is None else cut_held, "its window-end readings gave",
                   "the model said")
    out = []
    for b, r in np.argwhere(moved):              # a handful at most
        b, r = int(b), int(r)
        out.append({"bank": b, "ring": r, "range": [float(mean[b, r])] * 2, "range_model": [float(old[b, r])] * 2,
                    "reasons": [f"held at one weight: measured {mean[b, r]:.3f} on average where "
                                f"{was[b, r]} {old[b, r]:.3f} (readings spread {spread[b, r]:.3f} rms over "
                                f"{len(readings)} settings of random targets)"]})
    if out:
        log.info("range check: %d held ring(s) take their mean measured weight", len(out))
    return out
