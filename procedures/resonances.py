"""Procedure: resonance sweep through the instruments: every bank's spectrum with all heaters at 0, and every ring's
resonance located from it (the first step of a calibration, on its own). ``labctl resonances`` runs it, and so does
``labctl sweep`` (the same plan under the sweep's options, the spectra figure also saved where ``--out`` says).

It takes calibration's own path (:func:`labctl.calibration.resonances.measure_resonance_map`): one logging sweep
with triggered meter logging when the bank ports reach a logging power meter, else the laser stepped and every bank
read at each point; through-port zeros when the ports are read apart, balanced poles otherwise. It therefore runs on
any bench, emulated or real.

The record holds the spectra (``resonance_map/wavelength_m``, ``through``, ``drop``, ``balanced``: readout units,
W for power meters) and the located resonances (``center_m``, ``fwhm_m``); the run's report draws them
(``report/spectra.png``). On an emulated bench the emulator's true zero-drive resonances are read once the scan is
over (``truth/center_m``) and shown beside the ones found, labelled as such: for comparison only, never used by the
analysis.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from labctl.runs import plan as P
from labctl.runs.figures import TRUTH_LABEL

#: Meter averaging per point (the resonance map's), shortened in a logging sweep with steps finer than 2 pm so that
#: one reading spans at most half a step.
AVERAGING_S = 1e-4
#: Most points one sweep may take (a mistyped step must not start an hours-long scan).
MAX_POINTS = 10_000_000


def window_m(wavelengths_m: Any, *, margin_nm: float, start_nm: float | None, stop_nm: float | None,
             step_pm: float) -> tuple[float, float]:
    """(start, stop) of the scan, m: the WDM grid +- ``margin_nm`` unless ``start_nm``/``stop_nm`` say otherwise.

    The fit locates every bank's R rings in the window, so a window must cover every laser's channel and be at
    least as wide as the default band (one that cut rings off would make the fit invent some); a shifted one is
    fine, one wider than a free spectral range would see rings twice. ParamError naming the option otherwise.
    """
    from labctl.calibration.measure import scan_point_count

    grid = np.asarray(wavelengths_m, dtype=float) * 1e9
    band = (float(grid.min()) - margin_nm, float(grid.max()) + margin_nm)
    start = band[0] if start_nm is None else float(start_nm)
    stop = band[1] if stop_nm is None else float(stop_nm)
    if not stop > start:
        raise P.ParamError(f"--start-nm/--stop-nm: {start:g}..{stop:g} nm is empty (start must be below stop)")
    if start > grid.min() or stop < grid.max():
        raise P.ParamError(f"--start-nm/--stop-nm: {start:.3f}-{stop:.3f} nm does not reach every laser of the "
                           f"bench (channels at {grid.min():.3f}-{grid.max():.3f} nm): the rings sit there")
    if stop - start < band[1] - band[0] - 0.5e-3 * step_pm:
        raise P.ParamError(f"--start-nm/--stop-nm: {start:.3f}-{stop:.3f} nm is narrower than the band the "
                           f"bench's rings are designed in (WDM channels +- {margin_nm:g} nm, "
                           f"{band[1] - band[0]:.3f} nm wide); every bank's rings are located in the window, so "
                           f"it must be at least that wide (it may be shifted)")
    if scan_point_count(start, stop, step_pm * 1e-3) > MAX_POINTS:
        raise P.ParamError(f"--step-pm: {step_pm:g} pm makes more than {MAX_POINTS:,} points")
    return start * 1e-9, stop * 1e-9


def _window(ctx: Any, config: Any) -> tuple[float, float]:
    v = ctx.values
    return window_m(config.wiring.wavelengths_m, margin_nm=v["margin_nm"], start_nm=v["start_nm"],
                    stop_nm=v["stop_nm"], step_pm=v["step_pm"])


def _preflight(ctx: Any) -> None:
    from labctl.bench.config import load_bench

    config, _ = load_bench(ctx.bench_path)
    n = len(config.wiring.lasers)
    if ctx.values["laser"] >= n:
        raise P.ParamError(f"--laser: {ctx.values['laser']} is not one of the bench's lasers 0..{n - 1}")
    _window(ctx, config)


def _dry_check(ctx: Any) -> dict[str, Any]:
    from labctl.calibration.measure import scan_point_count
    from labctl.procedures.dry_checks import bench_limits, limits_lines

    v = ctx.values
    config, limits = bench_limits(ctx)
    start, stop = _window(ctx, config)
    points = scan_point_count(start, stop, v["step_pm"] * 1e-12)
    lines = [f"one scan of {start * 1e9:.3f}-{stop * 1e9:.3f} nm in {v['step_pm']:g} pm steps: {points} points, "
             f"every bank read at each; heaters held at 0 (within the limits); laser {v['laser']} at its present "
             f"power", *limits_lines(config, limits)]
    return {"counts": {"points": points}, "violations": [], "lines": lines}


def _nearest(found_m: np.ndarray, truth_m: np.ndarray) -> np.ndarray:
    """(B, R) the true resonance of the same bank nearest to each one found (for the comparison column)."""
    idx = np.argmin(np.abs(found_m[:, :, None] - truth_m[:, None, :]), axis=2)
    return np.take_along_axis(truth_m, idx, axis=1)


def _finite_or_none(values: np.ndarray) -> list[float | None]:
    """JSON has no NaN: a value that was not measured (balanced-only benches have no dip depth) is null."""
    return [float(v) if np.isfinite(v) else None for v in values]


def resonances_body(ctx: Any, *, step_pm: float, margin_nm: float, laser: int, start_nm: float | None,
                    stop_nm: float | None) -> Any:
    from labctl.calibration.measure import SWEEP_SPEED_M_PER_S, sweep_kind
    from labctl.calibration.resonances import measure_resonance_map

    hw = ctx.session
    grid = np.asarray(hw.wavelengths_m, dtype=float)
    start, stop = window_m(grid, margin_nm=margin_nm, start_nm=start_nm, stop_nm=stop_nm, step_pm=step_pm)
    step = step_pm * 1e-12
    for las in hw.lasers:          # only the scanning laser lights the chip
        if las.get_output():
            las.set_output(False)
    stepped = sweep_kind(hw) == "stepped"
    yield P.Step("resonance sweep")
    rmap = measure_resonance_map(
        hw, step_m=step, margin_m=float(grid.min()) - start, red_margin_m=stop - float(grid.max()), laser=laser,
        averaging_time_s=AVERAGING_S if stepped else min(AVERAGING_S, 0.5 * step / SWEEP_SPEED_M_PER_S),
        progress=ctx.progress)
    order = np.argsort(rmap.center_m, axis=1)           # per bank by wavelength: the k-th serves channel k
    center = np.take_along_axis(rmap.center_m, order, axis=1)
    fwhm = np.take_along_axis(rmap.pole_fwhm_m, order, axis=1)
    extinction = np.take_along_axis(rmap.extinction_db, order, axis=1)
    banks = [{"bank": b, "center_nm": (center[b] * 1e9).round(5).tolist(),
              "fwhm_pm": (fwhm[b] * 1e12).round(2).tolist(),
              "extinction_db": _finite_or_none(np.round(extinction[b], 2)),
              "fit_rmse": round(float(rmap.fit_rmse[b]), 6)} for b in range(center.shape[0])]
    points = int(rmap.stats["points"])
    config = ctx.bench.config
    report: dict[str, Any] = {
        "procedure": "resonances", "bench": config.bench.name, "kind": config.bench.kind,
        "bench_sha256": ctx.bench.config_sha256, "chip_id": hw.chip_id,
        "laser": int(laser), "laser_power_w": float(rmap.laser_power_w[laser]),
        "start_m": start, "stop_m": start + (points - 1) * step, "step_m": step, "points": points,
        "scan": "stepped" if stepped else "logging sweep",
        "readout": "through and drop ports" if rmap.measured_ports else "balanced", "unit": rmap.unit,
        "resonance": "through-port zero (the ring's own resonance)" if rmap.measured_ports else
        "balanced pole (drop - through only: the coupled resonance, up to tens of pm from the ring's own on "
        "close pairs)",
        "fwhm": "FWHM of the fitted line (coupled pole), pm",
        "banks": banks, "bench_time_s": rmap.stats["bench_time_s"], "transactions": rmap.stats["transactions"]}
    if ctx.bench.truth is not None:    # the emulator's ground truth, read once the measurement is over: report only
        truth = ctx.bench.truth.resonances_m(np.zeros(hw.n_banks * hw.n_rings), str(hw.mode))
        yield P.Array("truth/center_m", truth, {"unit": "m", "meaning": "emulator's true resonances (report only)"})
        nearest = _nearest(center, np.asarray(truth, dtype=float))
        err_pm = (center - nearest) * 1e12
        report["emulator_truth_for_comparison"] = {
            "note": "the emulator's true zero-drive resonance nearest to each one found; not used by the analysis",
            "banks": [{"bank": b, "center_nm": (nearest[b] * 1e9).round(5).tolist(),
                       "found_minus_truth_pm": err_pm[b].round(2).tolist()} for b in range(center.shape[0])]}
        report["true_error_pm"] = {"mean_abs": float(np.mean(np.abs(err_pm))),
                                   "max_abs": float(np.max(np.abs(err_pm)))}
    return report


def summarize(rep: dict[str, Any]) -> str:
    """Human-readable table: every bank's resonances and line widths, the emulator's truth beside when known."""
    lines = [f"resonance sweep of {rep['bench']} ({rep['kind']}, chip {rep['chip_id']!r}): laser {rep['laser']} at "
             f"{rep['laser_power_w'] * 1e3:.3g} mW, {rep['start_m'] * 1e9:.3f}-{rep['stop_m'] * 1e9:.3f} nm in "
             f"{rep['step_m'] * 1e12:g} pm steps ({rep['points']} points, {rep['scan']}, {rep['readout']}), "
             f"all heaters at 0",
             f"resonance = {rep['resonance']}; FWHM = {rep['fwhm']}"]
    truth = rep.get("emulator_truth_for_comparison")
    header = f"{'bank':>4s} {'ring':>4s}  {'resonance (nm)':>14s}  {'FWHM (pm)':>9s}"
    if truth is not None:
        lines.append(f"{'':{len(header)}s}  | {TRUTH_LABEL}")
        header += f"  | {'resonance (nm)':>14s}  {'found - truth (pm)':>18s}"
    lines.append(header)
    for b, bank in enumerate(rep["banks"]):
        for r, (c, w) in enumerate(zip(bank["center_nm"], bank["fwhm_pm"])):
            line = f"{b:4d} {r:4d}  {c:14.4f}  {w:9.1f}"
            if truth is not None:
                t, d = truth["banks"][b]["center_nm"][r], truth["banks"][b]["found_minus_truth_pm"][r]
                line += f"  | {t:14.4f}  {d:18.2f}"
            lines.append(line)
    if "true_error_pm" in rep:
        e = rep["true_error_pm"]
        lines.append(f"against the {TRUTH_LABEL}: mean |error| {e['mean_abs']:.2f} pm, max {e['max_abs']:.2f} pm")
    cost = f"{rep['transactions']} instrument transactions"
    if rep["bench_time_s"] is not None:
        cost = f"projected bench time {rep['bench_time_s']:.2f} s (emulator's virtual clock), " + cost
    lines.append(cost)
    return "\n".join(lines)


RESONANCES = P.register(P.Plan(
    name="resonances", help="resonance sweep through the instruments: spectra of every bank, resonances located",
    description="All heaters at 0, one laser swept across the WDM band (a logging sweep where the power meter "
                "allows, else stepped), every bank's ports recorded and every ring's resonance fitted; the report "
                "(report/spectra.png) shows the spectra with the resonances found. `labctl sweep` runs this plan.",
    params=(P.Param("step_pm", float, 2.0, "wavelength step (a bench without a logging power meter retunes the "
                    "laser at every point, ~0.1 s each)", unit="pm", min=0.1, max=100.0),
            P.Param("margin_nm", float, 1.0, "scan this far beyond the outer WDM channels (when --start-nm/"
                    "--stop-nm are not given)", unit="nm", min=0.0, max=10.0),
            P.Param("laser", int, 0, "laser (WDM channel index) that scans", min=0, max=1023),
            P.Param("start_nm", float, None, "scan start (default: first WDM channel - the margin, 1 nm unless "
                    "--margin-nm says otherwise); the window must reach every channel and be at least as wide as "
                    "the default one", unit="nm", min=1000.0, max=2000.0),
            P.Param("stop_nm", float, None, "scan stop (default: last WDM channel + the margin)", unit="nm",
                    min=1000.0, max=2000.0)),
    body=resonances_body, preflight=_preflight, dry_check=_dry_check, summarize=summarize, report=True))
