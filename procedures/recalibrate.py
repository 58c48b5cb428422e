"""Procedure: recalibration: a new calibration through the instruments with the options of the one it replaces
(what a run does when a drift check says the old one no longer holds, on its own). Both files are referenced by
the run; the new one is written to ``--out`` (default: the run folder), never over an existing file without
``--force``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from labctl.runs import plan as P


def _preflight(ctx: Any) -> None:
    from labctl.procedures.common import calibration_file, check_new_file

    ctx.values["calibration"] = str(calibration_file(ctx.values["calibration"], ctx.bench_path))
    check_new_file(ctx.values["out"], ctx.force, "--out")


def _dry_check(ctx: Any) -> dict[str, Any]:
    from labctl.calibration.artifact import read_document
    from labctl.procedures.dry_checks import calibration_estimate

    options = read_document(ctx.values["calibration"]).get("options") or {}
    return calibration_estimate(ctx, n_configs=int(options.get("n_configs", 10)),
                                n_levels=int(options.get("n_levels", 40)),
                                n_drift_references=int(options.get("n_drift_references", 3)))


def recalibrate_body(ctx: Any, *, calibration: str, out: str | None) -> Any:
    from labctl.calibration.calibrate import Calibration, recalibrate
    from labctl.procedures.calibrate import calibration_report
    from labctl.procedures.common import calibration_arrays, calibration_progress

    hw = ctx.session
    previous = Calibration.load(calibration, hw)
    yield P.Artifact("calibration", calibration, previous.sha256, "replaced by this run")
    cal = recalibrate(hw, previous, progress=calibration_progress(ctx, hw.n_channels, "recalibrate"))
    path = cal.save(Path(out) if out else ctx.run_dir / "calibration.json")
    yield P.Artifact("calibration", path, cal.sha256, "made by this run")
    yield from calibration_arrays(cal)
    report = calibration_report(ctx.bench, cal, path, refine=cal.refine_default)
    report.update(procedure="recalibrate", replaced=calibration, replaced_sha256=previous.sha256,
                  replaced_span=previous.span)
    return report


def summarize(report: dict[str, Any]) -> str:
    from labctl.procedures.calibrate import summarize as calibration_summary

    return (calibration_summary(report) + f"\n  replaces {report['replaced']} (span {report['replaced_span']:.3f}, "
            f"sha256 {report['replaced_sha256'][:16]}...)")


RECALIBRATE = P.register(P.Plan(
    name="recalibrate", help="calibrate again with the options of an earlier calibration (after drift)",
    params=(P.Param("calibration", str, None, "the calibration to replace (file or calibrate run folder)",
                    metavar="FILE"),
            P.Param("out", str, None, "new calibration file (default: calibration.json in the run folder)",
                    metavar="FILE")),
    body=recalibrate_body, preflight=_preflight, dry_check=_dry_check, summarize=summarize))
