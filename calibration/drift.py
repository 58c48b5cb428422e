"""Drift check: re-measure a few reference settings and compare them with what the calibration recorded.

At calibration time a few reference targets (seeded, inside the achievable range) are solved, applied and
measured; their drives and measured weights are stored with the calibration. A drift check applies the same
drives again and compares the new measurement with the stored one: differences are what changed on the chip (or
bench) since then, not model error, so the check is sharp. It trips when the RMSE exceeds ``threshold`` (default
span / 2^7: the drift alone would cap the accuracy at 7 bits). It also estimates the common resonance shift
(chip temperature) from the differences with the model's slopes, which tells whether a re-calibration or just
an offset is needed; ``Calibration.recenter`` applies that offset per channel.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from labctl.calibration.calibrate import Calibration
    from labctl.drivers.interfaces import BenchSession

log = logging.getLogger(__name__)

DEFAULT_THRESHOLD_BITS = 7.0


@dataclass
class DriftReference:
    """Reference settings recorded at calibration time."""

    targets: np.ndarray              # (M, B, R)
    drive: np.ndarray                # (M, N)
    delta_m: np.ndarray              # (M, B, R) model detunings of those drives
    measured: np.ndarray             # (M, B, R) measured right after calibration
    elapsed_s: float                 # projected bench time when recorded (NaN on a real bench)
    created: str = ""


@dataclass
class DriftReport:
    rmse: float
    max_error: float
    threshold: float
    tripped: bool
    n_reference: int
    common_shift_m: float            # estimated common resonance shift since calibration (red > 0)
    since_s: float | None            # bench time since the reference was recorded (emulated benches)
    calibration_sha256: str = ""
    #: (C,) shift of the resonances relative to each channel's laser (temperature and laser re-tuning), NaN where
    #: the references say nothing about that channel.
    channel_shift_m: np.ndarray | None = None

    def summary(self) -> dict[str, Any]:
        return {"rmse": self.rmse, "max_error": self.max_error, "threshold": self.threshold,
                "tripped": self.tripped, "n_reference": self.n_reference,
                "common_shift_pm": self.common_shift_m * 1e12, "since_s": self.since_s,
                "channel_shift_pm": None if self.channel_shift_m is None
                else [None if not np.isfinite(v) else float(v) * 1e12 for v in self.channel_shift_m],
                "calibration_sha256": self.calibration_sha256}


def record_reference(hw: BenchSession, cal: Calibration, *, n_ref: int = 3, seed: int = 777) -> DriftReference:
    """Solve, apply and measure ``n_ref`` seeded reference targets (mid-range: away from the range ends)."""
    from labctl.calibration.artifact import now_iso
    from labctl.calibration.verify import random_targets

    w_min, w_max = cal.achievable_range
    mid, half = 0.5 * (w_min + w_max), 0.5 * (w_max - w_min)
    targets = random_targets(mid - 0.8 * half, mid + 0.8 * half, n_ref, seed)
    inversions = [cal.solve(t, limits=hw.limits) for t in targets]
    drives = np.array([inv.drive for inv in inversions])
    measured = cal.measure_weights_at(hw, drives)     # each laser switched on once for all references
    now = hw.elapsed_s()
    return DriftReference(targets=targets, drive=drives, delta_m=np.array([inv.delta_m for inv in inversions]),
                          measured=measured, elapsed_s=float("nan") if now is None else float(now),
                          created=now_iso())


def check_drift(hw: BenchSession, cal: Calibration, *, threshold: float | None = None,
                measure: Callable[[np.ndarray], np.ndarray] | None = None) -> DriftReport:
    """Re-apply the reference drives, re-measure, compare with the recorded weights; trip above ``threshold``.

    ``measure(drives (M, N)) -> weights (M, B, R)`` replaces the instrument measurement (``cal.measure_weights_at``:
    each drive applied and measured, each laser switched on once for all) by another source of the same readings: photonic DFA's fast path computes them with
    the emulator directly."""
    ref = cal.drift_reference
    if ref is None:
        raise ValueError("this calibration has no drift reference (recorded by calibrate())")
    thr = cal.span * 2.0**-DEFAULT_THRESHOLD_BITS if threshold is None else float(threshold)
    if measure is None:              # the references' schedule: each laser on once for all reference drives
        measured = cal.measure_weights_at(hw, np.asarray(ref.drive, dtype=float))
    else:
        measured = np.asarray(measure(np.asarray(ref.drive, dtype=float)), dtype=float)
        if measured.shape != np.shape(ref.measured):
            raise ValueError(f"drift measurement has shape {measured.shape}, the references "
                             f"{np.shape(ref.measured)}")
    diff = measured - ref.measured
    rmse = float(np.sqrt(np.mean(diff**2)))
    # a red shift eps of the resonances relative to the laser moves the detuning by -eps: dw = -slope * eps.
    # Least squares over all rings (common: chip temperature) and over the rings of each channel (the channel's
    # laser may also have moved, e.g. re-tuned with its +-1 pm repeatability).
    slope = cal.weights.slope(ref.delta_m)                       # (M, B, R) per m
    denom = float(np.sum(slope * slope))
    eps = float(-np.sum(slope * diff) / denom) if denom > 0 else float("nan")
    cor = np.asarray(cal.weights.channel_of_ring, dtype=int)
    n_ch = int(np.size(cal.weights.wavelengths_m))
    num_c = np.zeros(n_ch)
    den_c = np.zeros(n_ch)
    np.add.at(num_c, cor.reshape(-1), np.sum(slope * diff, axis=0).reshape(-1))
    np.add.at(den_c, cor.reshape(-1), np.sum(slope * slope, axis=0).reshape(-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        eps_c = np.where(den_c > 0.05 * denom / max(n_ch, 1), -num_c / den_c, np.nan)
    now = hw.elapsed_s()
    since = None if now is None or not np.isfinite(ref.elapsed_s) else float(now - ref.elapsed_s)
    report = DriftReport(rmse=rmse, max_error=float(np.max(np.abs(diff))), threshold=thr, tripped=rmse > thr,
                         n_reference=int(ref.drive.shape[0]), common_shift_m=eps, since_s=since,
                         calibration_sha256=cal.sha256, channel_shift_m=eps_c)
    log.log(logging.WARNING if report.tripped else logging.INFO,
            "drift check: rmse %.4g (threshold %.4g) -> %s; common shift %.2f pm", rmse, thr,
            "TRIPPED" if report.tripped else "ok", eps * 1e12)
    return report
