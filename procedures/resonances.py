"""Procedure: resonance sweep through the instruments: every bank's spectrum with all heaters at 0, and every ring's
resonance located from it (the first step of a calibration, on its own).

The record holds the spectra (``resonance_map/wavelength_m``, ``through``, ``drop``, ``balanced``: readout units,
W for power meters) and the located resonances (``center_m``, ``fwhm_m``). On an emulated bench the report also
shows the emulator's true resonances (``truth/center_m``, ground truth used for the report only).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from labctl.runs import plan as P


def _preflight(ctx: Any) -> None:
    from labctl.bench.config import load_bench

    config, _ = load_bench(ctx.bench_path)
    n = len(config.wiring.lasers)
    if ctx.values["laser"] >= n:
        raise P.ParamError(f"--laser: {ctx.values['laser']} is not one of the bench's lasers 0..{n - 1}")


def _dry_check(ctx: Any) -> dict[str, Any]:
    from labctl.procedures.dry_checks import bench_limits, limits_lines

    v = ctx.values
    config, limits = bench_limits(ctx)
    grid = config.wiring.wavelengths_m
    span_nm = (max(grid) - min(grid)) * 1e9 + 2 * v["margin_nm"]
    points = int(span_nm * 1e3 / v["step_pm"]) + 1
    lines = [f"one scan of {span_nm:.2f} nm in {v['step_pm']:g} pm steps: {points} points, every bank read "
             f"at each; heaters held at 0 (within the limits); laser {v['laser']} at its present power",
             *limits_lines(config, limits)]
    return {"counts": {"points": points}, "violations": [], "lines": lines}


def resonances_body(ctx: Any, *, step_pm: float, margin_nm: float, laser: int) -> Any:
    from labctl.calibration.resonances import measure_resonance_map

    hw = ctx.session
    for las in hw.lasers:          # only the scanning laser lights the chip
        if las.get_output():
            las.set_output(False)
    yield P.Step("resonance sweep")
    t0, n0 = hw.elapsed_s(), hw.transaction_count()
    rmap = measure_resonance_map(hw, step_m=step_pm * 1e-12, margin_m=margin_nm * 1e-9, laser=laser)
    report: dict[str, Any] = {
        "procedure": "resonances", "bench": ctx.bench.config.bench.name, "chip_id": hw.chip_id,
        "center_nm": (rmap.center_m * 1e9).round(4).tolist(), "fwhm_pm": (rmap.fwhm_m * 1e12).round(2).tolist(),
        "extinction_db": np.round(rmap.extinction_db, 2).tolist(), "fit_rmse": rmap.fit_rmse.tolist(),
        "channel_of_ring": rmap.channel_of_ring.tolist(), "bench_time_s": hw.elapsed_s() - t0,
        "transactions": hw.transaction_count() - n0}
    if ctx.bench.truth is not None:    # the emulator's ground truth, for the report only
        truth = ctx.bench.truth.resonances_m(np.zeros(hw.n_banks * hw.n_rings), str(hw.mode))
        yield P.Array("truth/center_m", truth, {"unit": "m", "meaning": "emulator's true resonances (report only)"})
        err = rmap.center_m - truth[:, : rmap.center_m.shape[1]]
        report["true_error_pm"] = {"mean_abs": float(np.mean(np.abs(err)) * 1e12),
                                   "max_abs": float(np.max(np.abs(err)) * 1e12)}
    return report


def summarize(report: dict[str, Any]) -> str:
    lines = [f"resonance sweep of {report['bench']} (chip {report['chip_id']!r}): "
             f"{report['bench_time_s']:.1f} s of bench time, {report['transactions']} transactions"]
    for b, (c, w) in enumerate(zip(report["center_nm"], report["fwhm_pm"])):
        lines.append(f"  bank {b}: resonances " + ", ".join(f"{x:.3f}" for x in c) + " nm; linewidths "
                     + ", ".join(f"{x:.0f}" for x in w) + " pm")
    if "true_error_pm" in report:
        e = report["true_error_pm"]
        lines.append(f"  against the emulator's truth: mean |error| {e['mean_abs']:.2f} pm, max {e['max_abs']:.2f} pm")
    return "\n".join(lines)


RESONANCES = P.register(P.Plan(
    name="resonances", help="resonance sweep through the instruments: spectra of every bank, resonances located",
    description="All heaters at 0, one laser swept across the WDM band (a logging sweep where the power meter "
                "allows, else stepped), every bank's ports recorded and every ring's resonance fitted.",
    params=(P.Param("step_pm", float, 2.0, "wavelength step", unit="pm", min=0.1, max=100.0),
            P.Param("margin_nm", float, 1.0, "scan this far beyond the outer WDM channels", unit="nm", min=0.0,
                    max=10.0),
            P.Param("laser", int, 0, "laser (WDM channel index) that scans", min=0, max=1023)),
    body=resonances_body, preflight=_preflight, dry_check=_dry_check, summarize=summarize))
