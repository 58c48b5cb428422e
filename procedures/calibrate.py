"""Procedure: open a bench, calibrate it, save the calibration file, report (JSON-ready dict).

Reports the projected bench time and instrument transactions of every step, and compares them with a naive
full-grid calibration of the same bank, computed from the unit costs measured during this run:

    naive: every ring swept ALONE over G drive levels, every channel read at every level, lasers switched once
    per channel (laser loop outermost, the cheapest order):
        T_naive  = C * t_channel + C * N * G * t_point
        TX_naive = C * tx_channel + C * N * G * tx_point
    with C channels, N = B * R rings, t_point / tx_point the time / transactions of one heater write + settle +
    readout of every bank, t_channel / tx_channel the per-channel overhead (laser on/off, readout set-up), both
    measured in this run's weight sweeps. The naive grid learns neither the neighbour terms nor the crosstalk.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from labctl.calibration.calibrate import calibrate

log = logging.getLogger(__name__)

NAIVE_LEVELS = 100


def naive_grid_cost(n_channels: int, n_rings_total: int, levels: int, point_s: float | None, point_tx: float,
                    channel_s: float | None, channel_tx: float) -> dict[str, Any]:
    """Projected cost of the naive full-grid calibration (formula in the module docstring)."""
    points = n_channels * n_rings_total * levels
    return {
        "formula": "T = C*t_channel + C*N*G*t_point; TX = C*tx_channel + C*N*G*tx_point",
        "C": n_channels, "N": n_rings_total, "G": levels, "points": points,
        "t_point_s": point_s, "tx_point": point_tx, "t_channel_s": channel_s, "tx_channel": channel_tx,
        "elapsed_s": None if point_s is None or channel_s is None else n_channels * channel_s + points * point_s,
        "transactions": n_channels * channel_tx + points * point_tx,
    }


def run_calibration(bench_path: str | Path | None, out: str | Path, *, refine: bool = False,
                    progress: Callable[[str, int, int], None] | None = None, lock_dir: Path | None = None,
                    naive_levels: int = NAIVE_LEVELS) -> dict[str, Any]:
    """Calibrate the bench at ``bench_path`` (None: the embedded default), save to ``out``; returns the report."""
    from labctl.bench.bench import Bench

    with Bench.open(bench_path, lock_dir=lock_dir) as bench:
        hw = bench.session()
        cal = calibrate(hw, refine=refine, progress=progress)
        path = cal.save(out)
        return calibration_report(bench, cal, path, refine=refine, naive_levels=naive_levels)


def calibration_report(bench: Any, cal: Any, path: Path, *, refine: bool, naive_levels: int = NAIVE_LEVELS
                       ) -> dict[str, Any]:
    """The JSON-ready report of a calibration made on the open ``bench`` and saved at ``path``."""
    hw = bench.session()
    meta = cal.weights.meta
    timing = cal.info.get("timing", {})
    n_rings = hw.n_banks * hw.n_rings
    report: dict[str, Any] = {
        "procedure": "calibrate",
        "calibration": str(path),
        "calibration_sha256": cal.sha256,
        "bench": bench.config.bench.name,
        "bench_sha256": hw.bench_sha256,
        "wiring_sha256": hw.wiring_sha256,
        "chip_id": hw.chip_id,
        "refine_default": refine,
        "shape": {"banks": hw.n_banks, "rings": hw.n_rings, "channels": hw.n_channels},
        "span": cal.span,
        "fit_quality": cal.info.get("fit_quality", {}),
        "timing": timing,
        "projected_time_s": timing.get("total", {}).get("elapsed_s"),
        "transactions": timing.get("total", {}).get("transactions"),
        "naive_full_grid": naive_grid_cost(hw.n_channels, n_rings, naive_levels, meta.get("point_elapsed_s"),
                                           float(meta.get("point_transactions", 0.0)),
                                           meta.get("channel_elapsed_s"),
                                           float(meta.get("channel_transactions", 0.0))),
        "weight_sweep_points": meta.get("sweep_points"),
        "restricted": list(meta.get("restricted", [])),
        "reference_uncertainty": cal.info.get("fit_quality", {}).get("reference_uncertainty"),
    }
    if bench.config.chip is not None:
        report["emulated"] = {"seed": bench.config.chip.seed, "spec_overrides": bench.config.chip.spec}
    return report


def summarize(report: dict[str, Any]) -> str:
    """Human-readable lines of a calibration report."""
    lines = [f"calibration of {report['bench']} (chip {report['chip_id']!r}) saved to {report['calibration']}",
             f"  sha256 {report['calibration_sha256']}",
             (f"  span (median w_max - w_min) {report['span']:.3f}, usable rings "
              f"{report['fit_quality'].get('usable_rings')}, restricted rings {len(report.get('restricted', []))}")]
    for entry in report.get("restricted", [])[:5]:
        lines.append(f"    bank {entry['bank']} ring {entry['ring']}: range {entry['range'][0]:.3f}..{entry['range'][1]:.3f}"
                     f" ({'; '.join(entry['reasons'])})")
    if len(report.get("restricted", [])) > 5:
        lines.append(f"    ... {len(report['restricted']) - 5} more in the calibration file")
    for step, t in report["timing"].items():
        el = t.get("elapsed_s")
        lines.append(f"  {step:16s} {'' if el is None else f'{el:9.1f} s'}  {t.get('transactions'):7d} transactions")
    naive = report["naive_full_grid"]
    if naive.get("elapsed_s") is not None:
        lines.append(f"  naive full grid (G={naive['G']}): {naive['elapsed_s']:.0f} s, "
                     f"{naive['transactions']:.0f} transactions ({naive['formula']})")
    return "\n".join(lines)


# -- the plan ----------------------------------------------------------------------------------------------------------
def _preflight(ctx: Any) -> None:
    from labctl.procedures.common import check_new_file

    check_new_file(ctx.values["out"], ctx.force, "--out")


def _dry_check(ctx: Any) -> dict[str, Any]:
    from labctl.procedures.dry_checks import calibration_estimate

    return calibration_estimate(ctx, n_configs=ctx.values["n_configs"], n_levels=ctx.values["n_levels"],
                                n_drift_references=ctx.values["n_drift_references"])


def calibrate_body(ctx: Any, *, out: str | None, refine: bool, n_configs: int, n_levels: int,
                   n_drift_references: int, seed: int) -> Any:
    """Calibrate through the session; the calibration file goes to ``out`` (default: the run folder)."""
    from labctl.procedures.common import calibration_arrays, calibration_progress, projection_from_earlier
    from labctl.runs import plan as P

    hw = ctx.session
    yield projection_from_earlier(ctx, "calibrate", "calibration")
    cal = calibrate(hw, refine=refine, progress=calibration_progress(ctx, hw.n_channels), n_configs=n_configs,
                    n_levels=n_levels, n_drift_references=n_drift_references, seed=seed)
    path = cal.save(Path(out) if out else ctx.run_dir / "calibration.json")
    yield P.Artifact("calibration", path, cal.sha256, "made by this run")
    yield from calibration_arrays(cal)
    report = calibration_report(ctx.bench, cal, path, refine=refine)
    yield P.Note("calibration_sha256", cal.sha256)
    return report


def _register() -> Any:
    from labctl.runs import plan as P

    return P.register(P.Plan(
        name="calibrate", help="calibrate the bench's weight banks through the instruments; save the calibration",
        description="Resonance map, heater characterization, weight sweeps and drift references, through the "
                    "instruments. The calibration file (JSON) is referenced by the run that made it.",
        params=(
            P.Param("out", str, None, "calibration file to write (default: calibration.json in the run folder)",
                    metavar="FILE"),
            P.Param("refine", bool, False, "make closed-loop refinement the calibration's default when setting "
                    "weights", flag=True),
            P.Param("n_configs", int, 10, "neighbour configurations per channel in the weight sweeps", min=1,
                    max=1000),
            P.Param("n_levels", int, 40, "drive levels per weight sweep", min=4, max=10000),
            P.Param("n_drift_references", int, 3, "weight settings recorded for later drift checks", min=1,
                    max=1000),
            P.Param("seed", int, 0, "seed of the weight sweeps' neighbour configurations", min=0,
                    max=P.SEED_MAX),
        ),
        body=calibrate_body, preflight=_preflight, dry_check=_dry_check, summarize=summarize))


CALIBRATE = _register()
