"""Procedure: drift check of a calibration: its reference weight settings applied again, measured, compared with
what was measured right after calibrating; the resonances' shift relative to the lasers estimated.

The record holds the check (``drift/rmse``, ``threshold``, ``common_shift_m``, ``channel_shift_m``). Exit status 5
when the drift is beyond the threshold and ``--fail-on-drift`` is given.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from labctl.runs import plan as P


def _preflight(ctx: Any) -> None:
    from labctl.procedures.common import calibration_file

    ctx.values["calibration"] = str(calibration_file(ctx.values["calibration"], ctx.bench_path))


def _dry_check(ctx: Any) -> dict[str, Any]:
    from labctl.calibration.calibrate import Calibration
    from labctl.procedures.dry_checks import bench_limits, check_heater_rows, limits_lines

    config, limits = bench_limits(ctx)
    cal = Calibration.load(ctx.values["calibration"])
    if cal.drift_reference is None:
        raise P.ParamError(f"--calibration: {ctx.values['calibration']} has no drift references")
    drives = np.asarray(cal.drift_reference.drive, dtype=float)
    violations = check_heater_rows(limits, drives, "drift reference")
    lines = [f"{drives.shape[0]} reference settings applied and measured (one laser at a time); their heater "
             f"drives checked: {'all within the limits' if not violations else 'outside the limits'}",
             *limits_lines(config, limits)]
    return {"counts": {"references": int(drives.shape[0])}, "violations": violations, "lines": lines}


def drift_body(ctx: Any, *, calibration: str, threshold_bits: float | None, fail_on_drift: bool) -> Any:
    from labctl.calibration.calibrate import Calibration
    from labctl.calibration.drift import check_drift

    hw = ctx.session
    cal = Calibration.load(calibration, hw)
    yield P.Artifact("calibration", calibration, cal.sha256, "checked by this run")
    yield P.Step("drift check")
    threshold = None if threshold_bits is None else cal.span * 2.0 ** -threshold_bits
    report = check_drift(hw, cal, threshold=threshold)
    summary = report.summary()
    yield P.Data("drift", {"rmse": report.rmse, "max_error": report.max_error, "threshold": report.threshold,
                           "tripped": report.tripped, "common_shift_m": report.common_shift_m,
                           "channel_shift_m": report.channel_shift_m})
    out = {"procedure": "drift-check", "calibration": calibration, "calibration_sha256": cal.sha256,
           "bench": ctx.bench.config.bench.name, **summary}
    if fail_on_drift and report.tripped:
        out["target_missed"] = (f"drift rmse {report.rmse:.4g} is beyond the threshold {report.threshold:.4g}: "
                                "recalibrate (labctl recalibrate)")
    return out


def summarize(report: dict[str, Any]) -> str:
    return (f"drift check of {report['calibration']} on {report['bench']}: rmse {report['rmse']:.5f} (threshold "
            f"{report['threshold']:.5f}, normalised weight units) -> {'TRIPPED' if report['tripped'] else 'ok'}; "
            f"resonances shifted {report['common_shift_pm']:+.2f} pm relative to the lasers")


DRIFT_CHECK = P.register(P.Plan(
    name="drift-check", help="drift check of a calibration: reference settings measured again and compared",
    description="The calibration's reference weight settings are applied and measured again; the rms change, in "
                "normalised weight units, is compared with a threshold (default span / 2^7).",
    params=(P.Param("calibration", str, None, "calibration file, or the run folder of a calibrate run",
                    metavar="FILE"),
            P.Param("threshold_bits", float, None, "trip above span / 2^bits (default: the calibration's rule)",
                    unit="bits", min=1.0, max=20.0),
            P.Param("fail_on_drift", bool, False, "exit with status 5 when the check trips", flag=True)),
    body=drift_body, preflight=_preflight, dry_check=_dry_check, summarize=summarize))
