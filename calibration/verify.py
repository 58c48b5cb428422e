"""Verification: random targets inside each ring's achievable range, set, measured, compared.

Metrics (measured through the instruments, so they include the readout's own errors):
  rmse      = sqrt(mean over vectors and rings of (measured - target)^2)
  max_error = max |measured - target|
  span      = the calibration's weight span: the MEDIAN over rings of (w_max - w_min), in the normalised weight
              unit where -1 is the bank's output with every ring far away (reading / |baseline|)
  bits      = log2(span / rmse)
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


@dataclass
class VerifyResult:
    n: int
    refine: bool
    rmse: float
    max_error: float
    span: float
    bits: float
    targets: np.ndarray              # (n, B, R)
    measured: np.ndarray             # (n, B, R)
    drives: np.ndarray               # (n, N)
    refine_iterations: list[int] = field(default_factory=list)
    elapsed_s: float | None = None   # projected bench time (emulated) of the verification
    wall_s: float = 0.0
    transactions: int = 0
    calibration_sha256: str = ""

    def summary(self) -> dict[str, Any]:
        return {"n": self.n, "refine": self.refine, "rmse": self.rmse, "max_error": self.max_error,
                "span": self.span, "bits": self.bits, "elapsed_s": self.elapsed_s, "wall_s": self.wall_s,
                "transactions": self.transactions, "calibration_sha256": self.calibration_sha256,
                "mean_refine_iterations": float(np.mean(self.refine_iterations)) if self.refine_iterations else 0.0}


def bits(span: float, rmse: float) -> float:
    return float(np.log2(span / rmse)) if rmse > 0 else float("inf")


def random_targets(w_min: np.ndarray, w_max: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """n target matrices, each weight uniform within its ring's achievable range."""
    rng = np.random.default_rng(seed)
    return w_min + (w_max - w_min) * rng.uniform(0.0, 1.0, (n,) + np.shape(w_min))


def verify(hw: BenchSession, cal: Calibration, *, n: int = 20, seed: int = 12345, refine: bool = False,
           progress: Callable[[str, int, int], None] | None = None,
           on_applied: Callable[[int, np.ndarray, np.ndarray], None] | None = None) -> VerifyResult:
    """Set ``n`` random weight matrices with ``cal`` through the bench session, measure each, report errors.

    ``on_applied(i, drive, target)`` is called while vector i is applied (before it is measured), for a
    procedure that wants ground truth at that moment.
    """
    w_min, w_max = cal.achievable_range
    targets = random_targets(w_min, w_max, n, seed)
    measured = np.empty_like(targets)
    drives = np.empty((n, hw.n_banks * hw.n_rings))
    iters: list[int] = []
    t0, n0, wall0 = hw.elapsed_s(), hw.transaction_count(), time.perf_counter()
    for i in range(n):               # one bulk exchange per step (write, then C channel readings)
        result = cal.set_weights(hw, targets[i], refine=refine, details=True)
        drives[i] = result.drive
        if on_applied is not None:
            on_applied(i, result.drive, targets[i])
        measured[i] = cal.measure_weights(hw)    # a fresh measurement, also after refinement (no selection bias)
        iters.append(result.iterations)
        emit(hw, "verification", index=i, target=targets[i], measured=measured[i], drive=result.drive)
        if progress is not None:
            progress("verify", i + 1, n)
    err = measured - targets
    rmse = float(np.sqrt(np.mean(err**2)))
    t1 = hw.elapsed_s()
    out = VerifyResult(n=n, refine=refine, rmse=rmse, max_error=float(np.max(np.abs(err))), span=cal.span,
                       bits=bits(cal.span, rmse), targets=targets, measured=measured, drives=drives,
                       refine_iterations=iters, elapsed_s=None if t0 is None or t1 is None else t1 - t0,
                       wall_s=time.perf_counter() - wall0, transactions=hw.transaction_count() - n0,
                       calibration_sha256=cal.sha256)
    log.info("verify: n=%d refine=%s rmse %.4g max %.4g span %.3f -> %.2f bits", n, refine, out.rmse,
             out.max_error, out.span, out.bits)
    return out
