"""Closed-loop refinement: measure the weights actually obtained and correct the request until they match.

Why: the model leaves errors of a few 1e-3 (line-shape residuals, thermal-model errors, neighbour terms beyond
first order) and the chip drifts; a measurement of the real weights removes what the model cannot know.

Update rule: the model is asked for a corrected weight ``request <- request - damping * (measured - target)``.
Because the model inverts its own curve, this is a Newton step on each ring's detuning with the model's local slope
(delta_new = delta - error / slope), evaluated jointly with the neighbour and crosstalk terms, and it stays well
defined near the peak where the slope vanishes. Stopping rule: RMSE below ``tol``, or no improvement by at least
``min_gain`` (relative), or ``max_iter`` corrections; the better of the last two settings is the one left applied.
Stopping and the setting kept are judged on the rings a correction can move (``movable``): a ring whose operating
window is closed (held at one detuning) keeps its error whatever is requested, and where one such ring was 0.39 off
(emulated +-1 nm spread chip, seed 3) the chip's rmse hardly changed while the others improved, so every setting
stopped after one or two corrections. The reported rmse is still the whole chip's. Each iteration costs one
``channel_weights_raw`` (C laser switches) and one heater write.

Per-ring step. The model's slope can be off by a factor on a ring whose line shape or heater efficiency it fits
poorly (emulated ADC bench, seed 7: one ring's corrections covered a third of its error each, and the loop
stopped on "no improvement" with it 0.02 off). Each ring's step is therefore scaled by its own observed response,
``step = (request change) / (measured change)``, re-estimated only where the request moved by at least
``SECANT_MIN_MOVE`` (so reading noise does not steer it) and clipped to ``STEP_RANGE`` (a secant, not a free
gain: it can at most triple or halve the model's Newton step).

Bracket. Each ring's weight rises with its request (the model maps a request onto one side of the resonance), so the
closest requests seen below and above the target bracket it; once bracketed, a ring's next request is the bracket's
interpolation to its target (regula falsi, which cannot leave the bracket). Near a resonance's peak a ring's weight
barely moves with its request and the secant step grows to its clip: that stepped past the target (emulated ADC
bench, seed 7: one setting left 0.09 off) where the bracket's interpolation lands on it.

Halving. A correction that does not gain ``min_gain`` on the best reading so far is not the end: the next one goes
with half the step, at most ``MAX_HALVINGS`` times in a row (a damped Newton step). Where two close rings pull on
each other's weights a full step can overshoot; stopping there left one setting of a close pair 0.09 off (emulated
ADC bench, seed 7) while a shorter step converges. Each step starts from the latest reading, not from the best one
seen, and the setting left applied is the better of the last two (the best seen only if it read
``BACK_TO_BEST_FACTOR`` times better): on a drifting chip an older reading is stale (with drift x5 the true weights
move 0.005-0.007 rms at a fixed drive in the 20 s of bench time one reading of ten channels took then,
bench/drift_floor.py), and returning to it kept that error. Measured (refined true accuracy bits, ``labctl verify
--n 8 --refine`` with seeds 1, 2, 3 pooled, on the calibrations of bench/calibration_report.py): drift x5 seeds 0-2
7.86 / 7.50 / 7.57 stepping from and returning to the best reading, 7.92 / 7.80 / 8.10 as here; the close pairs of
the current and ADC benches (current 2, 11, 15, ADC 7, 18, 19) within 0.08 bit (ADC 7: 8.38 -> 8.30, ADC 19: 8.39 ->
8.42), the default chip's seeds 0 and 1 unchanged.

Drift. The chip's temperature moves every resonance together, and the channels are read one after another (about
1 s each), so each reading carries a common shift per channel, different from one channel to the next. With drift
x5 that shift moved a ring's weight by up to 0.02 between readings (emulated drift x5 chip, seed 0), larger than
the model errors the loop is there for, and the loop chased it: every step took the last reading's shift into the
request and the next reading showed a new one. So the error of each reading is split (``drift_slope``,
``reading_group``): per group of rings read at one moment (one channel, every bank), the least-squares common
shift along the rings' model slopes (``_drift_part``) is the drift part; the rest is the rings' own error. The
drift part is corrected with the model's Newton step (a shift is what the model's slope describes best), the rest
with the secant and halvings; stopping and the setting kept are judged on the rest, and the setting left applied
carries the drift part of its own reading corrected (unverified: the next reading would carry a new shift). A group
needs ``MIN_GROUP_RINGS`` movable rings (one bank cannot tell a shift from a ring's own error), and a ring far off
for its own reasons is left out of its group's estimate (``OUTLIER_FACTOR``): with least squares alone one ring 0.2
off moved its group's other rings by 0.05 (emulated ADC bench, seed 18). Measured (refined true accuracy bits,
``labctl verify --n 16 --refine`` with seeds 12345, 1, 2 pooled, the calibrations of bench/calibration_report.py,
laser readings already at one stabilisation per channel): drift x5 seeds 0-2 7.43 / 7.43 / 7.44 without the split,
8.57 / 8.87 / 8.74 with it; the default chip's seed 0 9.35 both.

Gaps. The model's inverse can jump: where a ring's fixed point over a close neighbour switches branch, requests
0.93 and 0.94 were solved 42 pm apart, and the chip's weight between them went from 0.58 to 0.93 (emulated ADC
bench, seed 18, bank 0 ring 2, whose model is 0.3 off there): no request gives a target between, and two settings
of 16 stayed 0.2-0.3 off. A bracketed ring whose measured weights differ by more than ``GAP_GAIN`` times the
requests that gave them is therefore interpolated in detuning between its bracket's detunings (``detuning``,
``drive_for_detuning``); the chip's weight is continuous there. The unverified final drift correction is withheld
on a ring whose corrected request lands far from the detuning the shift asks for (the other side of a gap: it
took one setting from 0.2 off to 0.3 off). Measured as above (with the outlier trim): that chip 7.33 -> 8.79
(at seed 12345 all 16 settings of that ring within 0.02 of their targets), the ADC bench's seed 7 8.22 -> 8.28,
drift x5 seeds 0-2 8.59 / 8.71 / 8.87, the default chip's seeds 0 and 1 9.36 and 9.59, the current bench's seeds 2
and 15 9.30 and 7.53.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

log = logging.getLogger(__name__)

#: The request must move by at least this (weight units) for a ring's response to be re-estimated from it.
SECANT_MIN_MOVE = 5e-3
#: A ring's step, relative to the model's Newton step, stays within this range.
STEP_RANGE = (0.5, 3.0)
#: Corrections without gain followed by half steps from the latest reading, at most this many times in a row.
MAX_HALVINGS = 2
#: The best setting seen is left applied instead of the better of the last two only when it read this many times
#: better: the corrections went astray (an overshoot the halvings did not catch), which drift alone does not do.
BACK_TO_BEST_FACTOR = 2.0
#: A reading group (rings read at one moment) needs this many movable rings for its common shift to be told apart
#: from the rings' own errors.
MIN_GROUP_RINGS = 2
#: In a reading group (``OUTLIER_MIN_RINGS``), a ring whose misfit to the common shift exceeds this many times the
#: rms of the others' is left out of the shift's estimate (its own error, not the group's drift).
OUTLIER_FACTOR = 4.0
#: A group needs this many usable rings for one to be left out: the others keep two degrees of freedom for their
#: own misfit's rms (with fewer, reading noise alone trimmed about half of the groups of three).
OUTLIER_MIN_RINGS = 4
#: A bracketed ring whose measured weights differ by more than this many times the requests that gave them (the
#: model's own slope is 1) is bracketed in detuning instead: the model's inverse jumps inside the bracket.
GAP_GAIN = 4.0
#: Detuning moves below this are never a jump (the neighbours' fixed point moves a ring's detuning this much).
JUMP_FLOOR_M = 0.1e-12


@dataclass
class _Reading:
    """One setting's reading: its rmse judged on the movable rings, drive, weights, whole-chip rmse, the request
    that gave it and its error."""

    judged_rmse: float
    drive: np.ndarray
    measured: np.ndarray
    rmse: float
    request: np.ndarray
    err: np.ndarray
    drift: np.ndarray                # the part of err a common resonance shift per reading group explains
    delta: np.ndarray | None = None  # the detunings (B, R) the drive was solved for, where known


class _Bracket:
    """Per ring, the closest requests seen on either side of its target (a ring's weight rises with its request
    on its window's side of the resonance), the detunings they were solved to, and the safeguard that keeps a step
    inside them."""

    def __init__(self, target: np.ndarray) -> None:
        self.target = target
        self.lo_r, self.lo_m = np.full(target.shape, -np.inf), np.zeros(target.shape)
        self.hi_r, self.hi_m = np.full(target.shape, np.inf), np.zeros(target.shape)
        self.lo_d, self.hi_d = np.full(target.shape, np.nan), np.full(target.shape, np.nan)

    def update(self, request: np.ndarray, measured: np.ndarray, delta: np.ndarray | None = None) -> None:
        d = np.full(self.target.shape, np.nan) if delta is None else delta
        below = (measured < self.target) & (request > self.lo_r)
        above = (measured > self.target) & (request < self.hi_r)
        self.lo_r, self.lo_m = np.where(below, request, self.lo_r), np.where(below, measured, self.lo_m)
        self.hi_r, self.hi_m = np.where(above, request, self.hi_r), np.where(above, measured, self.hi_m)
        self.lo_d, self.hi_d = np.where(below, d, self.lo_d), np.where(above, d, self.hi_d)
        crossed = self.lo_r >= self.hi_r        # not monotonic here (a neighbour moved it): forget the bracket
        self.lo_r, self.hi_r = np.where(crossed, -np.inf, self.lo_r), np.where(crossed, np.inf, self.hi_r)

    def safeguard(self, request: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``request`` for rings not yet bracketed, the bracket's linear interpolation to the target (regula
        falsi) for the others; and the rings whose bracket is a gap of the request space (``GAP_GAIN``) with the
        interpolation of their bracket's detunings instead."""
        both = np.isfinite(self.lo_r) & np.isfinite(self.hi_r)
        if not both.any():
            return request, np.zeros(request.shape, dtype=bool), np.full(request.shape, np.nan)
        frac = np.divide(self.target - self.lo_m, self.hi_m - self.lo_m, out=np.zeros(request.shape),
                         where=both & (self.hi_m != self.lo_m))
        lo_r, hi_r = np.where(both, self.lo_r, 0.0), np.where(both, self.hi_r, 0.0)
        inside = np.where(both, lo_r + frac * (hi_r - lo_r), request)
        gap = both & np.isfinite(self.lo_d) & np.isfinite(self.hi_d) \
            & (self.hi_m - self.lo_m > GAP_GAIN * (hi_r - lo_r))
        return inside, gap, np.where(gap, self.lo_d + frac * (self.hi_d - self.lo_d), np.nan)


@dataclass
class RefineResult:
    """Outcome of one closed-loop setting."""

    target: np.ndarray               # (B, R)
    drive: np.ndarray                # (N,) drive left applied (the kept setting, its drift part corrected)
    measured: np.ndarray             # (B, R) weights measured at the kept setting (before that drift correction)
    rmse: float                      # measured RMSE at the kept setting
    history: list[float] = field(default_factory=list)   # measured RMSE per measurement
    iterations: int = 0              # corrections applied
    reason: str = ""                 # why it stopped: "tolerance", "no improvement", "max iterations"


def refine_weights(target: np.ndarray, *, solve: Callable[[np.ndarray], np.ndarray],
                   apply: Callable[[np.ndarray], None], measure: Callable[[], np.ndarray],
                   first_drive: np.ndarray | None = None, tol: float = 1e-3, max_iter: int = 6,
                   damping: float = 1.0, min_gain: float = 0.05, movable: np.ndarray | None = None,
                   drift_slope: Callable[[np.ndarray], np.ndarray] | None = None,
                   reading_group: np.ndarray | None = None,
                   detuning: Callable[[np.ndarray], np.ndarray] | None = None,
                   drive_for_detuning: Callable[[np.ndarray], np.ndarray] | None = None) -> RefineResult:
    """Closed loop around ``solve`` (request -> drive, non-strict), ``apply`` (write) and ``measure`` ((B, R)).

    ``first_drive``: the drive already applied for ``target`` (skips the first solve and write). ``movable``
    ((B, R) bool, default all): the rings whose error the stopping rule and the choice of the drive kept judge.
    ``drift_slope(request)`` ((B, R), the model's d weight / d detuning at a request) and ``reading_group`` ((B, R)
    int, the rings read at one moment share a group: their channel) split each reading's common resonance shift
    from the rings' own errors (module docstring, Drift); without them the whole error is the rings' own.
    ``detuning(request)`` ((B, R), the model's detunings for a request) and ``drive_for_detuning(delta)`` (drive;
    ValueError where not reachable) let a ring whose bracket is a gap of the request space, and the final drift
    correction, work in detuning (module docstring, Gaps); without them both stay in request space.
    """
    w = np.asarray(target, dtype=float)
    judged = np.ones(w.shape, dtype=bool) if movable is None else np.broadcast_to(np.asarray(movable, bool), w.shape)
    fixed = ~judged                  # held rings: their request stays the target (a correction only winds up)
    if not judged.any():
        judged = np.ones(w.shape, dtype=bool)
    request = w.copy()
    step = np.ones(w.shape)
    in_detuning = detuning is not None and drive_for_detuning is not None
    if first_drive is None:
        drive = solve(request)
        apply(drive)
    else:
        drive = np.asarray(first_drive, dtype=float)
    delta = np.asarray(detuning(request), dtype=float) if in_detuning else None
    history: list[float] = []
    bracket = _Bracket(w)
    last: _Reading | None = None            # the reading before this one
    kept: _Reading | None = None            # the better of the last two: left applied at the end ...
    best: _Reading | None = None            # ... unless the best seen is far better (the loop went astray)
    halvings = 0
    reason = "max iterations"
    iterations = 0
    group = None if drift_slope is None or reading_group is None else \
        np.broadcast_to(np.asarray(reading_group, dtype=int), w.shape)
    while True:
        measured = measure()
        err = measured - w
        rmse = float(np.sqrt(np.mean(err**2)))
        drift = np.zeros(w.shape) if group is None or drift_slope is None else \
            _drift_part(err, np.asarray(drift_slope(request), dtype=float), group, judged & ~fixed, tol)
        judged_rmse = float(np.sqrt(np.mean((err - drift)[judged] ** 2)))
        history.append(rmse)
        bracket.update(request, measured, delta)
        log.debug("refine: iteration %d rmse %.3g (movable rings %.3g)", iterations, rmse, judged_rmse)
        now = _Reading(judged_rmse, drive.copy(), measured.copy(), rmse, request.copy(), err.copy(), drift,
                       None if delta is None else delta.copy())
        gained = best is None or judged_rmse <= best.judged_rmse * (1.0 - min_gain)
        kept = now if last is None or judged_rmse < last.judged_rmse else last
        if best is None or judged_rmse < best.judged_rmse:
            best = now
        if judged_rmse < tol:
            reason = "tolerance"
            break
        if iterations >= max_iter:
            break
        if last is not None:
            moved = request - last.request
            response = measured - last.measured
            ok = (np.abs(moved) >= SECANT_MIN_MOVE) & (np.abs(response) > 0) & (moved * response > 0)
            step = np.where(ok, np.clip(moved / np.where(ok, response, 1.0), *STEP_RANGE), step)
        last = now
        if gained:
            halvings = 0
        elif halvings < MAX_HALVINGS:
            halvings += 1
        else:
            reason = "no improvement"
            break
        correction = np.where(fixed, 0.0, damping * (drift + 0.5 ** halvings * step * (now.err - drift)))
        request, gap, gap_delta = bracket.safeguard(now.request - correction)
        drive, delta = _solved(request, gap & ~fixed, gap_delta, solve, detuning, drive_for_detuning)
        apply(drive)
        iterations += 1
    assert kept is not None and best is not None
    if best.judged_rmse * BACK_TO_BEST_FACTOR < kept.judged_rmse:
        kept = best
    final_drive = kept.drive
    if np.any(kept.drift != 0):
        final_drive = _drift_corrected(kept, damping, solve, detuning, drive_for_detuning, drift_slope)
        log.debug("refine: final drift correction %.3g rms (unverified)", float(np.sqrt(np.mean(kept.drift**2))))
    if not np.array_equal(final_drive, drive):
        apply(final_drive)
    log.info("refine: %s after %d correction(s), rmse %.3g -> %.3g", reason, iterations, history[0], kept.rmse)
    return RefineResult(target=w, drive=final_drive, measured=kept.measured, rmse=kept.rmse, history=history,
                        iterations=iterations, reason=reason)


def _solved(request: np.ndarray, gap: np.ndarray, gap_delta: np.ndarray, solve: Callable[[np.ndarray], np.ndarray],
            detuning: Callable[[np.ndarray], np.ndarray] | None,
            drive_for_detuning: Callable[[np.ndarray], np.ndarray] | None) -> tuple[np.ndarray, np.ndarray | None]:
    """Drive and detunings for ``request``, the ``gap`` rings at ``gap_delta`` (the rest as the model solves
    them); the request's own drive where that is not reachable."""
    if detuning is None or drive_for_detuning is None:
        return solve(request), None
    delta = np.asarray(detuning(request), dtype=float)
    if gap.any():
        wanted = np.where(gap, gap_delta, delta)
        try:
            drive = np.asarray(drive_for_detuning(wanted), dtype=float)
        except ValueError as exc:    # LimitError, a heat no heater gives, a resonance blue of its zero drive
            log.info("refine: detuning bracket not reachable (%s); request space instead", exc)
        else:
            log.debug("refine: %d ring(s) bracketed in detuning", int(gap.sum()))
            return drive, wanted
    return solve(request), delta


def _drift_corrected(kept: _Reading, damping: float, solve: Callable[[np.ndarray], np.ndarray],
                     detuning: Callable[[np.ndarray], np.ndarray] | None,
                     drive_for_detuning: Callable[[np.ndarray], np.ndarray] | None,
                     drift_slope: Callable[[np.ndarray], np.ndarray] | None) -> np.ndarray:
    """The kept setting with its reading's drift part corrected (unverified). Where the corrected request's
    detuning lands far from the small move the shift asks for (the model's inverse jumps there, or the ring was set
    in detuning across such a jump), the ring keeps its detuning: a correction there would land on the other side
    of a gap. A correction the heaters cannot give leaves the kept setting as it is: it was read, this is not."""
    request = kept.request - damping * kept.drift
    try:
        if detuning is None or drive_for_detuning is None or kept.delta is None or drift_slope is None:
            return solve(request)
        delta = np.asarray(detuning(request), dtype=float)
        slope = np.abs(np.asarray(drift_slope(kept.request), dtype=float))
        asked = np.divide(np.abs(damping * kept.drift), slope, out=np.full(slope.shape, np.inf), where=slope > 0)
        jumped = (kept.drift != 0) & (np.abs(delta - kept.delta) > GAP_GAIN * asked + JUMP_FLOOR_M)
        if not jumped.any():
            return solve(request)
        drive = np.asarray(drive_for_detuning(np.where(jumped, kept.delta, delta)), dtype=float)
    except ValueError as exc:        # LimitError, a heat no heater gives, a resonance blue of its zero drive
        log.warning("refine: final drift correction not reachable (%s); the kept setting is left as read", exc)
        return kept.drive
    log.debug("refine: drift correction withheld on %d ring(s) across a gap", int(jumped.sum()))
    return drive


def _drift_part(err: np.ndarray, slope: np.ndarray, group: np.ndarray, use: np.ndarray,
                floor: float = 0.0) -> np.ndarray:
    """The part of ``err`` a common resonance shift per reading group explains: per group (the rings read at one
    moment; negative: none), the least-squares shift along the rings' slopes, and its effect on each ring (0
    outside ``use``).

    A ring far off its target for its own reasons would pull its group's shift onto the others (least squares
    spreads its error over them, so their misfits hide it). So in a group of ``OUTLIER_MIN_RINGS`` or more, the one
    ring whose removal leaves the others fitting best is left out of the estimate when its misfit to their shift
    exceeds ``OUTLIER_FACTOR`` times their rms misfit, or ``floor`` where that is larger (reading noise alone must
    not trim); it still gets the shift (its own error is the rest).
    """
    g = np.asarray(group, dtype=int).reshape(-1)
    m = np.where(use & np.isfinite(slope) & np.isfinite(err), slope, 0.0).reshape(-1)
    m = np.where(g >= 0, m, 0.0)
    e = np.where(m != 0, err.reshape(-1), 0.0)
    g = np.maximum(g, 0)
    n = int(g.max()) + 1 if g.size else 0
    inc = m != 0

    def sums(mask: np.ndarray) -> tuple[np.ndarray, ...]:
        w = mask.astype(float)
        return tuple(np.bincount(g, weights=v * w, minlength=n) for v in (m * m, m * e, e * e, np.ones_like(m)))

    smm, sme, see, rings = sums(inc)
    lmm, lme, lee = smm[g] - m * m, sme[g] - m * e, see[g] - e * e      # each group's fit without the ring
    a_out = np.divide(lme, lmm, out=np.zeros(g.shape), where=lmm > 0)
    sse_out = np.maximum(lee - a_out * lme, 0.0)
    cand = inc & (rings[g] >= OUTLIER_MIN_RINGS) & (lmm > 0)
    best = np.full(n, np.inf)
    np.minimum.at(best, g[cand], sse_out[cand])
    rest_rms = np.sqrt(sse_out / np.maximum(rings[g] - 2.0, 1.0))
    drop = cand & (sse_out == best[g]) & (np.abs(e - a_out * m) > OUTLIER_FACTOR * np.maximum(rest_rms, floor))
    idx = np.flatnonzero(drop)
    _, first = np.unique(g[idx], return_index=True)                    # one ring per group (ties)
    inc[idx[first]] = False
    smm, sme, _, rings = sums(inc)
    a = np.divide(sme, smm, out=np.zeros(n), where=(smm > 0) & (rings >= MIN_GROUP_RINGS))
    return (a[g] * m).reshape(err.shape)
