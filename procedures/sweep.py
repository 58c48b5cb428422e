"""Procedure: resonance sweep through the instruments. One laser swept across the band, every bank read, every
ring's resonance located from the spectra alone.

It takes the same path as calibration's resonance map (``labctl.calibration.resonances``): heaters at 0, one
scan by :class:`labctl.calibration.measure.SpectrumSession` (a logging sweep with triggered meter logging when the
bank ports reach a logging power meter, else the laser stepped and the readout read at every point), then
:func:`labctl.calibration.resonances.analyze_spectra` (through-port zeros when the ports are read apart, balanced
poles otherwise). It therefore runs on any bench, emulated or real.

On an emulated bench the report adds the emulator's true zero-drive resonances, read from the emulation after
the scan, in a column labelled as such: for comparison only, never used by the analysis.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from labctl.calibration.measure import SWEEP_SPEED_M_PER_S, Spectra, SpectrumSession
from labctl.calibration.resonances import BankFit, analyze_spectra

log = logging.getLogger(__name__)

#: Scan step when none is given (the resonance map's: about 100 points per linewidth of the reference chip).
DEFAULT_STEP_M = 2e-12
#: Band margin beyond the first and last WDM channel when no start/stop is given (the resonance map's).
DEFAULT_MARGIN_M = 1.0e-9
#: Meter averaging per point (the resonance map's).
DEFAULT_AVERAGING_S = 1e-4
#: Power of the swept laser (the bench's laser limit still applies).
DEFAULT_POWER_W = 1e-3
TRUTH_LABEL = "emulator truth (for comparison)"
#: Points per progress report of a stepped scan.
STEPPED_CHUNK = 100


@dataclass
class SweepResult:
    """One sweep: the spectra as measured, the fit of every bank and, on an emulated bench, the truth beside."""

    bench: str
    kind: str
    bench_sha256: str
    spectra: Spectra
    fits: list[BankFit]
    step_m: float
    stepped: bool
    bench_time_s: float | None        # projected (virtual clock) on an emulated bench, None on a real one
    transactions: int
    #: (B, R) the emulator's zero-drive resonances after the scan, for comparison only (None on a real bench)
    truth_m: np.ndarray | None = None


#: Most points one sweep may take (a mistyped step must not start an hours-long scan).
MAX_POINTS = 10_000_000


def check_window(wavelengths_m: Any, start_m: float | None, stop_m: float | None, step_m: float | None,
                 laser: int) -> tuple[float, float, float]:
    """(start, stop, step) of a sweep over the WDM grid ``wavelengths_m``; ValueError naming the option otherwise."""
    grid = np.asarray(wavelengths_m, dtype=float)
    band_start, band_stop = float(grid.min() - DEFAULT_MARGIN_M), float(grid.max() + DEFAULT_MARGIN_M)
    start = band_start if start_m is None else float(start_m)
    stop = band_stop if stop_m is None else float(stop_m)
    step = DEFAULT_STEP_M if step_m is None else float(step_m)
    if not 0 <= laser < grid.size:
        raise ValueError(f"--laser: {laser} is not one of the bench's lasers 0..{grid.size - 1}")
    for option, value in (("--start-nm", start), ("--stop-nm", stop)):
        if not (math.isfinite(value) and 1.0e-6 < value < 2.0e-6):
            raise ValueError(f"{option}: {value * 1e9:g} nm is not a wavelength of the bench's band (1000..2000 nm)")
    if not (math.isfinite(step) and step > 0):
        raise ValueError(f"--step-pm: {step * 1e12:g} pm must be a positive number")
    if not stop > start:
        raise ValueError(f"--start-nm/--stop-nm: {start * 1e9:g}..{stop * 1e9:g} nm is empty")
    if (stop - start) / step > MAX_POINTS:
        raise ValueError(f"--step-pm: {step * 1e12:g} pm makes more than {MAX_POINTS:,} points")
    width = band_stop - band_start
    if stop - start < width - 0.5 * step:
        raise ValueError(f"--start-nm/--stop-nm: {start * 1e9:.3f}-{stop * 1e9:.3f} nm is narrower than the band "
                         f"the bench's rings are designed in (WDM channels +- 1 nm, {width * 1e9:.3f} nm wide); "
                         f"every bank's rings are located in the window, so it must be at least that wide (it may "
                         f"be shifted)")
    return start, stop, step


def run_sweep(bench_path: str | Path | None, *, start_m: float | None = None, stop_m: float | None = None,
              step_m: float | None = None, laser: int = 0, power_w: float = DEFAULT_POWER_W,
              averaging_time_s: float | None = None, lock_dir: Path | None = None,
              progress: Callable[[str, int, int], None] | None = None) -> SweepResult:
    """Sweep laser ``laser`` from ``start_m`` to ``stop_m`` (default: the WDM band +- 1 nm) on the bench at
    ``bench_path`` (None: the embedded default), all heaters at 0; returns the spectra and the fitted resonances.

    The fit locates every bank's R rings in the window (as the resonance map does), so a window narrower than
    the band is refused (one that cut rings off would make the fit invent some); a shifted one is fine, one wider
    than a free spectral range would see rings twice.
    """
    from labctl.bench.bench import Bench
    from labctl.bench.config import load_bench

    config, _ = load_bench(bench_path)     # every check on the bench file alone, before anything connects
    start, stop, step = check_window(config.wiring.wavelengths_m, start_m, stop_m, step_m, laser)
    if averaging_time_s is None:    # 100 us, or half a step's time in a logging sweep with fine steps
        averaging_time_s = min(DEFAULT_AVERAGING_S, 0.5 * step / SWEEP_SPEED_M_PER_S)
    with Bench.open(bench_path, lock_dir=lock_dir) as bench:
        hw = bench.session()
        t0, n0 = hw.elapsed_s(), hw.transaction_count()
        if progress is not None:
            progress("heaters to 0", 0, 1)
        hw.set_ring_drive(np.zeros(hw.n_banks * hw.n_rings))
        for other in hw.lasers:         # start (and end) with every output off, as calibration does: the scan
            if other.get_output():      # switches on only the swept laser (about 1 s of stabilisation)
                other.set_output(False)
        swept = hw.lasers[laser]
        swept.set_power_w(power_w)
        swept.set_wavelength_m(0.5 * (start + stop))     # readouts are set up at the scan centre
        with SpectrumSession(hw, laser, averaging_time_s=averaging_time_s) as session:
            stepped = session.stepped
            sp = _scan(session, start, stop, step, progress)
        truth = None
        if bench.truth is not None:         # ground truth, read once the measurement is over: comparison only
            truth = bench.truth.resonances_m(np.zeros(hw.n_banks * hw.n_rings), str(hw.mode))
        t1, n1 = hw.elapsed_s(), hw.transaction_count()
        n_rings = hw.n_rings
        name, kind, digest = bench.config.bench.name, bench.config.bench.kind, bench.config_sha256
    # the bench is closed (heaters 0, lasers off, instruments free) while the spectra are fitted
    if progress is not None:
        progress("fit", 0, 1)
    fits = analyze_spectra(sp, n_rings)
    if progress is not None:
        progress("done", 1, 1)
    return SweepResult(bench=name, kind=kind, bench_sha256=digest, spectra=sp, fits=fits, step_m=step,
                       stepped=stepped, bench_time_s=None if t0 is None or t1 is None else t1 - t0,
                       transactions=n1 - n0, truth_m=truth)


def _scan(session: SpectrumSession, start_m: float, stop_m: float, step_m: float,
          progress: Callable[[str, int, int], None] | None) -> Spectra:
    """One scan; a stepped one (about 0.1 s of bench time per point) in chunks of ``STEPPED_CHUNK`` points so that
    progress is reported. The chunks are the same grid, point for point, as one ``session.scan``."""
    if not session.stepped or progress is None:
        if progress is not None:
            progress("scan", 0, 1)
        return session.scan(start_m, stop_m, step_m)
    n = int(np.floor((stop_m - start_m) / step_m + 1e-6)) + 1
    bounds = np.linspace(0, n, max(1, n // STEPPED_CHUNK) + 1).astype(int)   # >= STEPPED_CHUNK points each
    parts: list[Spectra] = []
    for first, end in zip(bounds[:-1], bounds[1:]):
        progress("scan", int(first), n)
        stop = stop_m if end == n else start_m + (end - 1) * step_m
        parts.append(session.scan(start_m + first * step_m, stop, step_m))
    progress("scan", n, n)
    through = None if parts[0].through is None else np.vstack([p.through for p in parts])
    drop = None if parts[0].drop is None else np.vstack([p.drop for p in parts])
    return Spectra(np.concatenate([p.wavelength_m for p in parts]), np.vstack([p.balanced for p in parts]),
                   through, drop, parts[0].unit, parts[0].laser, parts[0].laser_power_w)


def _finite_or_none(values: np.ndarray) -> list[float | None]:
    """JSON has no NaN: a value that was not measured (balanced-only benches have no dip depth) is null."""
    return [float(v) if np.isfinite(v) else None for v in values]


def _nearest(found_m: np.ndarray, truth_m: np.ndarray) -> np.ndarray:
    """The true resonance nearest to each found one (for the comparison column)."""
    if truth_m.size == 0:
        return np.full(found_m.shape, np.nan)
    return truth_m[np.argmin(np.abs(found_m[:, None] - truth_m[None, :]), axis=1)]


def report(result: SweepResult) -> dict[str, Any]:
    """JSON-ready report: per bank the resonances found (nm) and their fitted line widths (FWHM, pm)."""
    sp = result.spectra
    banks = []
    for b, fit in enumerate(result.fits):
        order = np.argsort(fit.center_m)
        banks.append({"bank": b, "center_nm": (fit.center_m[order] * 1e9).round(5).tolist(),
                      "fwhm_pm": (fit.pole_fwhm_m[order] * 1e12).round(2).tolist(),
                      "extinction_db": _finite_or_none(np.round(fit.extinction_db[order], 2)),
                      "fit_rmse": round(float(fit.rmse), 6)})
    out: dict[str, Any] = {
        "procedure": "sweep", "bench": result.bench, "kind": result.kind, "bench_sha256": result.bench_sha256,
        "laser": sp.laser, "laser_power_w": sp.laser_power_w,
        "start_m": float(sp.wavelength_m[0]), "stop_m": float(sp.wavelength_m[-1]), "step_m": result.step_m,
        "points": int(sp.wavelength_m.size), "scan": "stepped" if result.stepped else "logging sweep",
        "readout": "balanced" if sp.through is None else "through and drop ports", "unit": sp.unit,
        "resonance": "through-port zero (the ring's own resonance)" if sp.through is not None else
        "balanced pole (drop - through only: the coupled resonance, up to tens of pm from the ring's own on "
        "close pairs)",
        "fwhm": "FWHM of the fitted line (coupled pole), pm",
        "banks": banks, "bench_time_s": result.bench_time_s, "transactions": result.transactions,
    }
    if result.truth_m is not None:
        truth = []
        for b, bank in enumerate(banks):
            found = np.asarray(bank["center_nm"]) * 1e-9
            nearest = _nearest(found, result.truth_m[b])
            truth.append({"bank": b, "center_nm": (nearest * 1e9).round(5).tolist(),
                          "found_minus_truth_pm": ((found - nearest) * 1e12).round(2).tolist()})
        out["emulator_truth_for_comparison"] = {
            "note": "the emulator's true zero-drive resonance nearest to each one found; not used by the analysis",
            "banks": truth}
    return out


def summarize(rep: dict[str, Any]) -> str:
    """Human-readable table of a sweep report."""
    lines = [f"resonance sweep of {rep['bench']} ({rep['kind']}): laser {rep['laser']} at "
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
    cost = f"{rep['transactions']} instrument transactions"
    if rep["bench_time_s"] is not None:
        cost = f"projected bench time {rep['bench_time_s']:.2f} s (emulator's virtual clock), " + cost
    lines.append(cost)
    return "\n".join(lines)


def plot(result: SweepResult, path: Path) -> Path:
    """One panel per bank: the measured spectra (ports in dBm, or the balanced reading), resonances found marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sp = result.spectra
    n_banks = sp.balanced.shape[1]
    fig, axes = plt.subplots(n_banks, 1, figsize=(11, 2.3 * n_banks + 1.2), sharex=True, squeeze=False)
    nm = sp.wavelength_m * 1e9
    for b, ax in enumerate(axes[:, 0]):
        if sp.through is not None:
            ax.plot(nm, 10 * np.log10(np.maximum(sp.through[:, b], 1e-15) / 1e-3), lw=0.8, label="through port")
            if sp.drop is not None:
                ax.plot(nm, 10 * np.log10(np.maximum(sp.drop[:, b], 1e-15) / 1e-3), lw=0.8, label="drop port")
            ax.set_ylabel(f"bank {b}\npower (dBm)")
        else:
            scale, prefix = (1e6, "\u00b5") if sp.unit in ("A", "W") else (1.0, "")
            ax.plot(nm, sp.balanced[:, b] * scale, lw=0.8, label="balanced (drop - through)")
            ax.set_ylabel(f"bank {b}\ndrop - through ({prefix}{sp.unit})")
        for k, c in enumerate(result.fits[b].center_m):
            ax.axvline(c * 1e9, color="tab:red", lw=0.6, ls="--", alpha=0.7,
                       label="resonance found" if k == 0 else None)
        ax.grid(alpha=0.3)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.955), ncol=3, fontsize=9, frameon=False)
    axes[-1, 0].set_xlabel("wavelength (nm)")
    kind = "logging sweep" if not result.stepped else "stepped scan"
    fig.suptitle(f"Resonance sweep of bench {result.bench} ({result.kind}), all heaters at 0\n"
                 f"laser {sp.laser} at {sp.laser_power_w * 1e3:.3g} mW, {kind} in {result.step_m * 1e12:g} pm "
                 f"steps; dashed: resonances found from the spectra", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
