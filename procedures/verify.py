"""Procedure: open a bench, load a calibration for it, verify it on random targets, report (JSON-ready dict).

The measured figures (rmse, max_error, bits) come through the instruments. On an emulated bench the report adds
the TRUE figures (true_rmse, true_max_error, true_bits): the emulator's noise-free weights at the drive actually
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
from labctl.calibration.verify import bits, verify

log = logging.getLogger(__name__)


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
    if truth is not None:
        err = np.array(true_w) - result.targets
        true_rmse = float(np.sqrt(np.mean(err**2)))
        report.update({"true_rmse": true_rmse, "true_max_error": float(np.max(np.abs(err))),
                       "true_bits": bits(result.span, true_rmse)})
        hw.emit("verification_truth", true_weights=np.array(true_w))
    if drift and cal.drift_reference is not None:
        report["drift"] = check_drift(hw, cal).summary()
    hw.set_ring_drive(np.zeros(hw.n_banks * hw.n_rings))
    return report


def summarize(report: dict[str, Any]) -> str:
    lines = [(f"verification of {report['calibration']} on {report['bench']} (sha256 "
              f"{report['calibration_sha256'][:16]}...), n={report['n']}, refine={report['refine']}"),
             (f"  measured: rmse {report['rmse']:.5f}, max error {report['max_error']:.4f}, span {report['span']:.3f}"
              f" -> {report['bits']:.2f} bits")]
    if "true_rmse" in report:
        lines.append(f"  true (emulator): rmse {report['true_rmse']:.5f}, max error {report['true_max_error']:.4f}"
                     f" -> {report['true_bits']:.2f} bits")
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

    ctx.values["calibration"] = str(calibration_file(ctx.values["calibration"]))


def _dry_check(ctx: Any) -> dict[str, Any]:
    from labctl.calibration.verify import random_targets
    from labctl.procedures.dry_checks import bench_limits, check_heater_rows, limits_lines

    v = ctx.values
    config, limits = bench_limits(ctx)
    cal = Calibration.load(v["calibration"])
    w_min, w_max = cal.achievable_range
    targets = random_targets(w_min, w_max, v["n"], v["seed"])
    drives = np.array([cal.solve(t, strict=True).drive for t in targets])
    violations = check_heater_rows(limits, drives, "target vector")
    n_ch = int(np.unique(np.asarray(cal.rmap.channel_of_ring)).size)
    counts = {"weight vectors": v["n"], "heater writes": v["n"], "readings (one laser at a time)": v["n"] * n_ch}
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
    yield P.Step("verify", total=n, unit="vector")
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
            P.Param("n", int, 20, "number of random weight vectors", min=1),
            P.Param("seed", int, 12345, "seed of the random targets"),
            P.Param("refine", bool, None, "closed-loop refinement on (default: as the calibration says)",
                    flag=True, negatable=True),
            P.Param("drift", bool, False, "also run a drift check against the calibration", flag=True),
            P.Param("recenter", bool, False, "first measure the drift references and follow the resonances' shift "
                    "relative to each laser", flag=True),
            P.Param("min_bits", float, None, "exit with status 5 below this many bits", unit="bits", min=0.0),
        ),
        body=verify_body, preflight=_preflight, dry_check=_dry_check, summarize=summarize))


VERIFY = _register()
