"""Procedure: open a bench, load a calibration for it, verify it on random targets, report (JSON-ready dict).

The measured figures (accuracy and precision, see calibration/verify.py; ``bits`` is the accuracy) come through the
instruments. On an emulated bench the report adds the TRUE figures (true_rmse, true_bits: accuracy; true precision;
the true error with one scale per bank removed, and those scales): the emulator's noise-free weights at the drive actually
applied, read at the moment each target is applied (so at the chip temperature and laser wavelengths of that
moment), normalised like the calibration normalises readings: weight -1 is the bank's through level with every
ring absent, i.e. ``truth_weights / bus_loss_amplitude^(2R)``. This is the only place ground truth is used.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from labctl.calibration.calibrate import Calibration
from labctl.calibration.drift import check_drift
from labctl.calibration.verify import bits, precision_estimate, reference_uncertainty, verify

log = logging.getLogger(__name__)


def truth_reference(chip: Any) -> float:
    """|weight| of the 'every ring far away' reference on the emulated chip (bus loss only)."""
    params = chip.truth_params()
    return float(params.bus_loss_amplitude ** (2 * chip.n_rings))


def truth_weights_at(chip: Any, drive: np.ndarray, mode: str, channel_of_ring: np.ndarray) -> np.ndarray:
    """TRUE weights (B, R) of every ring at its channel for one ring-order drive (emulated benches only)."""
    w = chip.truth_weights(np.asarray(drive, dtype=float)[None, :], mode=mode)[0] / truth_reference(chip)
    return np.take_along_axis(w, np.asarray(channel_of_ring, dtype=int), axis=1)


def true_figures(truth: np.ndarray, result: Any) -> dict[str, Any]:
    """TRUE accuracy and precision of a verification from the emulator's weights at every setting (S, B, R), in
    the order ``result.setting_target`` lists the settings; and the part of the true error that is one scale per
    bank (what no reading separates from a loss: see calibration/verify.py), reported apart."""
    n = result.n
    err = truth[:n] - result.targets
    true_rmse = float(np.sqrt(np.mean(err ** 2)))
    t = result.targets
    scale = np.sum(err * t, axis=(0, 2)) / np.sum(t * t, axis=(0, 2))            # (B,) best per-bank scale
    rest = err - scale[None, :, None] * t
    rest_rmse = float(np.sqrt(np.mean(rest ** 2)))
    prec = precision_estimate(truth, np.asarray(result.setting_target))
    return {"true_rmse": true_rmse, "true_max_error": float(np.max(np.abs(err))),
            "true_bits": bits(result.span, true_rmse), "true_accuracy_bits": bits(result.span, true_rmse),
            "true_precision_rms": prec, "true_precision_bits": bits(result.span, prec),
            "true_bank_scale_pct": (100 * scale).tolist(),
            "true_rmse_without_bank_scale": rest_rmse,
            "true_bits_without_bank_scale": bits(result.span, rest_rmse),
            "overclaim_bits": bits(result.span, result.rmse) - bits(result.span, true_rmse)}


def run_verification(bench_path: str | Path | None, calibration_path: str | Path, *, n: int = 20,
                     refine: bool | None = None, seed: int = 12345, drift: bool = False, recenter: bool = False,
                     progress: Callable[[str, int, int], None] | None = None, lock_dir: Path | None = None
                     ) -> dict[str, Any]:
    """Verify the calibration at ``calibration_path`` on the bench at ``bench_path``; returns the report.

    ``refine`` None uses the calibration's default. ``drift`` adds a drift check (a few more measurements);
    ``recenter`` first measures the drift references and follows the shift of the resonances relative to each
    laser (Calibration.recenter) before verifying.
    """
    from labctl.bench import Bench

    with Bench.open(bench_path, lock_dir=lock_dir) as bench:
        hw = bench.hardware()
        cal = Calibration.load(calibration_path, hw=hw)
        use_refine = cal.refine_default if refine is None else bool(refine)
        for laser in hw.lasers:
            if laser.get_output():
                laser.set_output(False)
        chip = bench.emulation.chip if bench.emulation is not None else None
        true_w: list[np.ndarray] = []
        recentered = cal.recenter().summary() if recenter else None

        def on_applied(i: int, drive: np.ndarray, target: np.ndarray) -> None:
            if chip is not None:
                true_w.append(truth_weights_at(chip, drive, str(hw.mode), cal.rmap.channel_of_ring))

        result = verify(cal, n=n, seed=seed, refine=use_refine, progress=progress, on_applied=on_applied)
        report: dict[str, Any] = {"procedure": "verify", "bench": bench.config.bench.name,
                                  "calibration": str(calibration_path), "chip_id": hw.chip_id,
                                  "bench_sha256": hw.bench_sha256, "seed": seed, **result.summary()}
        report["span_definition"] = "median over rings of (w_max - w_min), weight -1 = every ring far away"
        report["recenter"] = recentered
        report["reference_uncertainty_pct"] = (100 * reference_uncertainty(cal)).tolist()
        if chip is not None:
            report.update(true_figures(np.array(true_w), result))
        if drift and cal.drift_reference is not None:
            report["drift"] = check_drift(cal).summary()
        hw.set_ring_drive(np.zeros(hw.n_banks * hw.n_rings))
    return report


def summarize(report: dict[str, Any]) -> str:
    """Human-readable lines: accuracy and precision (bits over the span, 95 % interval), what they are made of."""
    ci = lambda key: "" if key not in report or None in report[key] else (  # noqa: E731
        f" (95 % interval {report[key][0]:.2f}..{report[key][1]:.2f})")
    lines = [(f"verification of {report['calibration']} on {report['bench']} (sha256 "
              f"{report['calibration_sha256'][:16]}...), {report['n']} random weight vectors, refine="
              f"{report['refine']}; bits = log2(span / rms error), span {report['span']:.3f} (median w_max - w_min, "
              "weight -1 = every ring away)"),
             (f"  accuracy  (rms of set weight - target): {report['accuracy_rms']:.5f} -> {report['accuracy_bits']:.2f}"
              f" bits{ci('accuracy_bits_ci95')}"),
             (f"            seen by the readings {report['observable_rms']:.5f} (reading noise {report['noise_rms']:.5f} "
              f"removed); reference level {report['reference_rms']:.5f} (each bank's weight -1 is a model's "
              "extrapolation, uncertain by "
              + ", ".join(f"{u:.2f}" for u in report.get("reference_uncertainty_pct", [])) + " %; no reading "
              "checks it)"),
             (f"  precision (rms spread of repeated settings of one target, readings included): "
              f"{report['precision_rms']:.5f} -> {report['precision_bits']:.2f} bits{ci('precision_bits_ci95')} "
              f"({report['precision_targets']} targets, each set "
              f"{1 + (report['settings'] - report['n']) // max(report['precision_targets'], 1)} times)"),
             (f"            readout linearity {report['linearity_rms']:.5f} (data-sheet bound of the meters; none "
              f"for source meters); max |reading - target| {report['max_error']:.4f}")]
    if "true_rmse" in report:
        lines.append(f"  true (emulator): accuracy {report['true_rmse']:.5f} -> {report['true_bits']:.2f} bits, "
                     f"precision {report['true_precision_bits']:.2f} bits; without one scale per bank "
                     f"{report['true_bits_without_bank_scale']:.2f} bits (bank scales "
                     + ", ".join(f"{v:+.2f}" for v in report["true_bank_scale_pct"]) + " %); reported - true "
                     f"accuracy {report['overclaim_bits']:+.2f} bits")
    if report.get("elapsed_s") is not None:
        lines.append(f"  projected bench time {report['elapsed_s']:.1f} s, {report['transactions']} transactions")
    if report.get("recenter"):
        shifts = [v for v in report["recenter"]["channel_shift_pm"] or [] if v is not None]
        if shifts:
            lines.append(f"  recentered first: resonance shifts vs lasers {min(shifts):.2f}..{max(shifts):.2f} pm")
    if "drift" in report:
        d = report["drift"]
        lines.append(f"  drift check: rmse {d['rmse']:.5f} (threshold {d['threshold']:.5f}) -> "
                     f"{'TRIPPED' if d['tripped'] else 'ok'}, common shift {d['common_shift_pm']:.2f} pm")
    return "\n".join(lines)
