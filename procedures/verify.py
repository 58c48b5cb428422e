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
    from labctl.bench.bench import Bench

    with Bench.open(bench_path, lock_dir=lock_dir) as bench:
        return verification_report(bench, calibration_path, n=n, refine=refine, seed=seed, drift=drift,
                                   recenter=recenter, progress=progress)


def verification_report(bench: Any, calibration_path: str | Path, *, n: int, refine: bool | None, seed: int,
                        drift: bool, recenter: bool, progress: Callable[[str, int, int], None] | None = None
                        ) -> dict[str, Any]:
    """Verify on the open ``bench`` (see :func:`run_verification`); the heaters are left at 0."""
    hw = bench.session()
    cal = Calibration.load(calibration_path, hw=hw)
    use_refine = cal.refine_default if refine is None else bool(refine)
    for laser in hw.lasers:
        if laser.get_output():
            laser.set_output(False)
    truth = bench.truth               # the emulator's ground truth, reported beside (None on a real bench)
    true_w: list[np.ndarray] = []
    recentered = cal.recenter(hw).summary() if recenter else None

    def on_applied(i: int, drive: np.ndarray, target: np.ndarray) -> None:
        if truth is not None:
            true_w.append(truth.weights_at(drive, str(hw.mode), cal.rmap.channel_of_ring))

    result = verify(hw, cal, n=n, seed=seed, refine=use_refine, progress=progress, on_applied=on_applied)
    report: dict[str, Any] = {"procedure": "verify", "bench": bench.config.bench.name,
                              "calibration": str(calibration_path), "chip_id": hw.chip_id,
                              "bench_sha256": hw.bench_sha256, "seed": seed, **result.summary()}
    report["span_definition"] = "median over rings of (w_max - w_min), weight -1 = every ring far away"
    report["recenter"] = recentered
    report["reference_uncertainty_pct"] = (100 * reference_uncertainty(cal)).tolist()
    if truth is not None:
        report.update(true_figures(np.array(true_w), result))
        true_all = np.array(true_w)                       # every setting: the n targets, then the repeats
        hw.emit("verification_truth", true_weights=true_all[:result.n])
        if true_all.shape[0] > result.n:
            hw.emit("verification_repeats_truth", true_weights=true_all[result.n:],
                    target_index=np.asarray(result.setting_target)[result.n:])
    if drift and cal.drift_reference is not None:
        report["drift"] = check_drift(hw, cal).summary()
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


# -- the plan ----------------------------------------------------------------------------------------------------------
def _preflight(ctx: Any) -> None:
    from labctl.procedures.common import calibration_file

    ctx.values["calibration"] = str(calibration_file(ctx.values["calibration"], ctx.bench_path))


def _dry_check(ctx: Any) -> dict[str, Any]:
    from labctl.calibration.verify import random_targets, setting_order
    from labctl.procedures.dry_checks import bench_limits, check_heater_rows, limits_lines

    v = ctx.values
    config, limits = bench_limits(ctx)
    cal = Calibration.load(v["calibration"])
    w_min, w_max = cal.achievable_range
    targets = random_targets(w_min, w_max, v["n"], v["seed"])
    drives = np.array([cal.solve(t, strict=True).drive for t in targets])
    violations = check_heater_rows(limits, drives, "target vector")
    n_ch = int(np.unique(np.asarray(cal.rmap.channel_of_ring)).size)
    n_set = len(setting_order(v["n"]))          # repeated settings for the precision, and two noise pairs
    n_read = n_set + min(2, n_set)
    counts = {"weight vectors": v["n"], "heater writes": n_set, "readings (one laser at a time)": n_read * n_ch}
    lines = [f"verification of {v['calibration']}: " + ", ".join(f"{k} {c}" for k, c in counts.items()),
             f"  every target's heater drive solved from the calibration and checked: "
             f"{'all within the limits' if not violations else f'{len(violations)} outside'}"
             + (" (refinement adds measured corrections, checked as sent)" if v["refine"] else ""),
             *limits_lines(config, limits)]
    return {"counts": counts, "violations": violations, "lines": lines}


def verify_body(ctx: Any, *, calibration: str, n: int, seed: int, refine: bool | None, drift: bool,
                recenter: bool, min_bits: float | None) -> Any:
    from labctl.calibration.artifact import read_document
    from labctl.procedures.common import projection_from_earlier
    from labctl.runs import plan as P

    yield P.Artifact("calibration", calibration, str(read_document(calibration)["sha256"]), "verified by this run")
    yield projection_from_earlier(ctx, "verify", "verification", scale_by="n")
    from labctl.calibration.verify import setting_order

    yield P.Step("verify", total=len(setting_order(n)), unit="setting")   # as verify's progress counts them
    report = verification_report(ctx.bench, calibration, n=n, refine=refine, seed=seed, drift=drift,
                                 recenter=recenter, progress=ctx.progress)
    if min_bits is not None and not report["bits"] >= min_bits:
        report["target_missed"] = f"{report['bits']:.2f} bits is below --min-bits {min_bits}"
    return report


def _register() -> Any:
    from labctl.runs import plan as P

    return P.register(P.Plan(
        name="verify", help="set random weights with a calibration, measure them, report the error in bits",
        description="Random weight matrices inside every ring's calibrated range, set through the calibration and "
                    "measured through the instruments. bits = log2(span / rmse), span = median over rings of "
                    "(w_max - w_min) in normalised weight units (-1: every ring far away).",
        params=(
            P.Param("calibration", str, None, "calibration file, or the run folder of a calibrate run",
                    metavar="FILE"),
            P.Param("n", int, 20, "number of random weight vectors", min=1, max=10_000),
            P.Param("seed", int, 12345, "seed of the random targets", min=0, max=P.SEED_MAX),
            P.Param("refine", bool, None, "closed-loop refinement on (default: as the calibration says)",
                    flag=True, negatable=True),
            P.Param("drift", bool, False, "also run a drift check against the calibration", flag=True),
            P.Param("recenter", bool, False, "first measure the drift references and follow the resonances' shift "
                    "relative to each laser", flag=True),
            P.Param("min_bits", float, None, "exit with status 5 below this many bits", unit="bits", min=0.0,
                    max=64.0),
        ),
        body=verify_body, preflight=_preflight, dry_check=_dry_check, summarize=summarize))


VERIFY = _register()
