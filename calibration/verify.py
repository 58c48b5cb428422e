"""Verification: random targets inside each ring's achievable range, set, measured, compared; accuracy and precision.

The two figures of the MRR-control literature (Zhang et al., Optica 2022; García Echeverría et al., 2024), each in
bits over the span, ``bits = log2(span / rms)``:

* **accuracy**: rms deviation of the weight set from the weight asked for, over ``n`` random target vectors (each
  weight uniform in its ring's achievable range);
* **precision**: rms spread of repeated settings of one target (set, read; other targets in between; again), over
  a few targets set ``repeats`` times. It includes the reading noise: it is what telling two settings apart takes.

Why a verification cannot simply score its readings against the targets. A weight is a balanced reading divided
by the bank's reading at weight -1 (``|baseline|``), and the same readout and the same reference serve the
calibration, the refinement and the verification. Whatever is common to them cancels in ``measured - target``:

* with closed-loop refinement the loop drives exactly ``measured - target`` to the noise, so the readings alone
  report the precision (about 10.6 bits on the reference chip where the truth was 8.55);
* the reference level is never read as such (no heater setting clears the band): with both ports it is a
  model's extrapolation (``resonances._far_level``), on balanced-only benches the largest reading in a gap the
  heaters open, corrected by the rings' estimated tails (``reference_level``). A relative error ``e`` of it
  scales every weight of the bank: ``w e``. No later reading separates it from a loss (a test shows this on the
  emulator); its standard uncertainty (``ResonanceMap.baseline_uncertainty``: the far-level model's misfit, or
  the gap's tail estimate) enters the accuracy as ``u_b * |target|`` and is reported apart (``reference_rms``);
* the reading noise of the verification's own readings is no error of the weight set, but adds to
  ``measured - target``; it is measured (two readings of one setting) and removed in quadrature.

* the readout's own nonlinearity cancels the same way (one meter cannot check itself). A power meter's
  data-sheet linearity (``POWER_METER_LINEARITY_DB``: +-0.02 dB for the N774x class, reference-chip.md; not
  confirmed here from Keysight's data sheet) enters as a type-B term: a weight is (drop - through) / level, each
  reading off by up to that bound (uniform) relative to the level's, so with drop ~ (1 + w)/2 and through
  ~ (1 - w)/2 of the level its standard uncertainty is ``s sqrt((1 + 3 w^2) / 2)``, s = bound / sqrt(3).
  Source meters on on-chip photodiodes are linear far below this and get none. A bench file states its readout's
  own bound as ``wiring.readout_linearity_db`` (meters worse than 0.02 dB would otherwise be overclaimed: 0.05 dB
  meters took the default chip's measured figure to 0.39 bit above the truth).

So ``accuracy^2 = mean((measured - target)^2) - noise^2 + mean((u_b target)^2) + linearity^2`` (observable part,
reference part, readout part).

Confidence intervals (95 %) come from the number of vectors: the accuracy's observable part and the precision are
resampled over vectors (targets) with replacement (bootstrap, seeded); the reference part is held fixed.
The true error (emulator ground truth) is computed by the procedure layer through ``on_applied``; calibration
code never sees the emulator.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from labctl.calibration.measure import emit

if TYPE_CHECKING:
    from labctl.calibration.calibrate import Calibration
    from labctl.drivers.interfaces import BenchSession

log = logging.getLogger(__name__)

#: Bootstrap resamples for the confidence intervals, and their level.
BOOTSTRAP = 2000
CONFIDENCE = 0.95
#: Data-sheet linearity bound of the power meters that read the bank ports (see the module docstring).
POWER_METER_LINEARITY_DB = 0.02


@dataclass
class VerifyResult:
    n: int
    refine: bool
    rmse: float                      # accuracy estimate (rms, weight units): the headline, see the module docstring
    max_error: float                 # max |measured - target| over the n vectors (readings, noise included)
    span: float
    bits: float                      # log2(span / rmse): accuracy in bits
    targets: np.ndarray              # (n, B, R)
    measured: np.ndarray             # (n, B, R) first setting of each target
    drives: np.ndarray               # (n, N)
    refine_iterations: list[int] = field(default_factory=list)
    elapsed_s: float | None = None   # projected bench time (emulated) of the verification
    wall_s: float = 0.0
    transactions: int = 0
    calibration_sha256: str = ""
    raw_rmse: float = float("nan")              # rms(measured - target), reading noise included
    noise_rms: float = float("nan")             # reading noise of one weight reading (two readings of a setting)
    observable_rms: float = float("nan")        # accuracy seen by the readings (noise removed)
    reference_rms: float = 0.0                  # accuracy part from the reference level's uncertainty
    linearity_rms: float = 0.0                  # accuracy part from the readout's data-sheet nonlinearity
    accuracy_bits_ci: tuple[float, float] = (float("nan"), float("nan"))
    precision_rms: float = float("nan")
    precision_bits: float = float("nan")
    precision_bits_ci: tuple[float, float] = (float("nan"), float("nan"))
    #: every setting in order: which target it set, its measurement and drive (first n: one per target; then the
    #: repeats of the precision targets)
    setting_target: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=int))
    setting_measured: np.ndarray = field(default_factory=lambda: np.empty(0))
    setting_drives: np.ndarray = field(default_factory=lambda: np.empty(0))

    def summary(self) -> dict[str, Any]:
        return {"n": self.n, "refine": self.refine, "rmse": self.rmse, "max_error": self.max_error,
                "span": self.span, "bits": self.bits, "accuracy_rms": self.rmse, "accuracy_bits": self.bits,
                "accuracy_bits_ci95": list(self.accuracy_bits_ci), "raw_rmse": self.raw_rmse,
                "raw_bits": bits(self.span, self.raw_rmse), "noise_rms": self.noise_rms,
                "observable_rms": self.observable_rms, "observable_bits": bits(self.span, self.observable_rms),
                "reference_rms": self.reference_rms, "linearity_rms": self.linearity_rms,
                "precision_rms": self.precision_rms,
                "precision_bits": self.precision_bits, "precision_bits_ci95": list(self.precision_bits_ci),
                "precision_targets": int(np.unique(self.setting_target[self.n:]).size),
                "settings": int(self.setting_target.size), "elapsed_s": self.elapsed_s, "wall_s": self.wall_s,
                "transactions": self.transactions, "calibration_sha256": self.calibration_sha256,
                "mean_refine_iterations": float(np.mean(self.refine_iterations)) if self.refine_iterations else 0.0}


def bits(span: float, rmse: float) -> float:
    if not np.isfinite(rmse):
        return float("nan")
    return float(np.log2(span / rmse)) if rmse > 0 else float("inf")


def random_targets(w_min: np.ndarray, w_max: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """n target matrices, each weight uniform within its ring's achievable range."""
    rng = np.random.default_rng(seed)
    return w_min + (w_max - w_min) * rng.uniform(0.0, 1.0, (n,) + np.shape(w_min))


def setting_order(n: int, precision_targets: int | None = None, repeats: int = 3) -> list[int]:
    """Target index of every setting verify makes: the n targets once, then the first ``precision_targets``
    (default: a quarter, at least 2) ``repeats - 1`` more times, in turn."""
    k_rep = min(n, max(2, n // 4) if precision_targets is None else int(precision_targets))
    return list(range(n)) + [t for _ in range(max(repeats, 1) - 1) for t in range(k_rep)]


def reference_uncertainty(cal: Calibration) -> np.ndarray:
    """(B,) relative standard uncertainty of each bank's reference level (0 where the calibration has none)."""
    u = getattr(cal.rmap, "baseline_uncertainty", None)
    nb = cal.shape[0]
    return np.zeros(nb) if u is None else np.nan_to_num(np.asarray(u, dtype=float).reshape(nb), nan=0.0)


def linearity_rms(targets: np.ndarray, linearity_db: float) -> float:
    """rms weight error of a readout whose readings are each within +-``linearity_db`` (uniform), see the module
    docstring."""
    s = (10.0 ** (abs(linearity_db) / 10.0) - 1.0) / np.sqrt(3.0)
    return float(s * np.sqrt(np.mean((1.0 + 3.0 * np.asarray(targets) ** 2) / 2.0)))


def accuracy_estimate(measured: np.ndarray, targets: np.ndarray, noise_rms: float, reference_u: np.ndarray,
                      linearity: float = 0.0) -> tuple[float, float, float]:
    """(accuracy rms, observable rms, reference rms) from readings of n settings (n, B, R) and the readout's
    linearity part (rms): see the module docstring. The observable part is floored at zero (never negative
    variance)."""
    mse_obs = float(np.mean((measured - targets) ** 2)) - noise_rms ** 2
    ref_ms = float(np.mean((reference_u[None, :, None] * targets) ** 2))
    obs = float(np.sqrt(max(mse_obs, 0.0)))
    return float(np.sqrt(max(mse_obs, 0.0) + ref_ms + linearity ** 2)), obs, float(np.sqrt(ref_ms))


def precision_estimate(measured: np.ndarray, target_of: np.ndarray) -> float:
    """rms spread of repeated settings: pooled (unbiased) variance over targets set more than once, per weight."""
    groups = [measured[target_of == t] for t in np.unique(target_of)]
    groups = [g for g in groups if g.shape[0] > 1]
    if not groups:
        return float("nan")
    ss = sum(float(np.sum((g - g.mean(axis=0)) ** 2)) for g in groups)
    dof = sum((g.shape[0] - 1) * g[0].size for g in groups)
    return float(np.sqrt(ss / dof))


def _interval(samples: np.ndarray, span: float) -> tuple[float, float]:
    """Central CONFIDENCE interval in bits of bootstrap rms samples (low bits = high rms)."""
    s = np.asarray(samples, dtype=float)
    s = s[np.isfinite(s)]
    if s.size == 0:
        return float("nan"), float("nan")
    a = (1.0 - CONFIDENCE) / 2
    hi_rms, lo_rms = np.quantile(s, [1.0 - a, a])
    return bits(span, float(hi_rms)), bits(span, float(lo_rms))


def verify(hw: BenchSession, cal: Calibration, *, n: int = 20, seed: int = 12345, refine: bool = False,
           precision_targets: int | None = None, repeats: int = 3, noise_pairs: int = 2,
           readout_linearity_db: float | None = None,
           progress: Callable[[str, int, int], None] | None = None,
           on_applied: Callable[[int, np.ndarray, np.ndarray], None] | None = None) -> VerifyResult:
    """Set ``n`` random weight matrices with ``cal`` through the bench session, measure each, report accuracy and
    precision (module docstring).

    Then ``precision_targets`` of them (default: a quarter, at least 2) are set again ``repeats - 1`` more times,
    the targets taken in turn so that every setting starts from another one. The first ``noise_pairs`` settings
    are read twice (reading noise). ``readout_linearity_db``: the readout's linearity bound (default: the bench
    file's ``wiring.readout_linearity_db``, else the power meters' data-sheet value when the bank ports are read
    by power meters, else 0). ``on_applied(k, drive, target)`` is called while setting k is applied (before
    it is measured), for a procedure that wants ground truth at that moment; settings are numbered as
    ``setting_target`` lists them.
    """
    w_min, w_max = cal.achievable_range
    targets = random_targets(w_min, w_max, n, seed)
    order = setting_order(n, precision_targets, repeats)
    n_set = len(order)
    measured = np.empty((n_set,) + targets.shape[1:])
    drives = np.empty((n_set, hw.n_banks * hw.n_rings))
    pairs: list[np.ndarray] = []
    iters: list[int] = []
    t0, n0, wall0 = hw.elapsed_s(), hw.transaction_count(), time.perf_counter()
    for k, i in enumerate(order):    # one bulk exchange per step (write, then C channel readings)
        result = cal.set_weights(hw, targets[i], refine=refine, details=True)
        drives[k] = result.drive
        if on_applied is not None:
            on_applied(k, result.drive, targets[i])
        measured[k] = cal.measure_weights(hw)    # a fresh measurement, also after refinement (no selection bias)
        if k < n:                    # one row per target; the repeats (precision) in a stream of their own
            iters.append(result.iterations)
            emit(hw, "verification", index=i, target=targets[i], measured=measured[k], drive=result.drive)
        else:
            emit(hw, "verification_repeats", setting=k, target_index=i, target=targets[i], measured=measured[k],
                 drive=result.drive)
        if k < noise_pairs:
            again = cal.measure_weights(hw)
            pairs.append(again - measured[k])
            emit(hw, "verification_noise", setting=k, measured=measured[k], measured_again=again)
        if progress is not None:
            progress("verify: set and read weight vectors", k + 1, n_set)
    first = measured[:n]
    err = first - targets
    noise = float(np.sqrt(np.mean(np.square(pairs)) / 2.0)) if pairs else 0.0
    ref_u = reference_uncertainty(cal)
    if readout_linearity_db is None:
        readout_linearity_db = getattr(hw, "readout_linearity_db", None)     # the bench file's data-sheet bound
    if readout_linearity_db is None:
        readout_linearity_db = POWER_METER_LINEARITY_DB if hw.power_meter is not None else 0.0
    lin = linearity_rms(targets, readout_linearity_db)
    acc, obs, ref = accuracy_estimate(first, targets, noise, ref_u, lin)
    target_of = np.asarray(order)
    prec = precision_estimate(measured, target_of)
    span = cal.span
    rng = np.random.default_rng(seed + 1)
    boot_acc = np.empty(BOOTSTRAP)
    boot_prec = np.full(BOOTSTRAP, np.nan)
    rep = np.unique(target_of[n:])
    for m in range(BOOTSTRAP):       # resampling only (no instrument): vectors with replacement
        pick = rng.integers(0, n, n)
        boot_acc[m] = accuracy_estimate(first[pick], targets[pick], noise, ref_u, lin)[0]
        if rep.size:
            chosen = rng.choice(rep, rep.size)
            rows = np.concatenate([np.flatnonzero(target_of == t) for t in chosen])
            relabel = np.concatenate([np.full(np.sum(target_of == t), j) for j, t in enumerate(chosen)])
            boot_prec[m] = precision_estimate(measured[rows], relabel)
    t1 = hw.elapsed_s()
    out = VerifyResult(n=n, refine=refine, rmse=acc, max_error=float(np.max(np.abs(err))), span=span,
                       bits=bits(span, acc), targets=targets, measured=first, drives=drives[:n],
                       refine_iterations=iters, elapsed_s=None if t0 is None or t1 is None else t1 - t0,
                       wall_s=time.perf_counter() - wall0, transactions=hw.transaction_count() - n0,
                       calibration_sha256=cal.sha256, raw_rmse=float(np.sqrt(np.mean(err ** 2))), noise_rms=noise,
                       observable_rms=obs, reference_rms=ref, linearity_rms=lin,
                       accuracy_bits_ci=_interval(boot_acc, span),
                       precision_rms=prec, precision_bits=bits(span, prec),
                       precision_bits_ci=_interval(boot_prec, span), setting_target=target_of,
                       setting_measured=measured, setting_drives=drives)
    log.info("verify: n=%d refine=%s accuracy %.4g (%.2f bits, observable %.4g, reference %.4g, noise %.2g), "
             "precision %.4g (%.2f bits), span %.3f", n, refine, acc, out.bits, obs, ref, noise, prec,
             out.precision_bits, span)
    return out
