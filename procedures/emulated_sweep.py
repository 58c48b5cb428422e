"""Resonance sweep of the emulated chip: a swept laser across the WDM band, every bank's ports recorded.

This is the dry run available before instruments sit in front of the emulator: it drives the chip model the
way a swept laser and a power meter would (one laser, all heaters off) and locates each ring's resonance from
the spectra alone. Ground truth appears only in the report, for comparison.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.signal import find_peaks, peak_widths

from labctl.sim.chip import Chip
from labctl.sim.chip_spec import ChipSpec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SweepResult:
    wavelength_m: np.ndarray        # (W,)
    through_w: np.ndarray           # (W, B)
    drop_w: np.ndarray              # (W, B)
    found_m: list[np.ndarray]       # per bank, resonances located from the drop spectrum
    fwhm_m: list[np.ndarray]        # per bank, full width at half maximum of each drop peak
    truth_m: np.ndarray             # (B, R) true resonances, for the report only
    virtual_time_s: float


def run_sweep(chip: Chip, *, start_m: float, stop_m: float, step_m: float, power_w: float = 1e-3,
              averaging_time_s: float = 1e-4) -> SweepResult:
    wavelength_m = np.arange(start_m, stop_m + step_m / 2, step_m)
    chip.set_lasers(on=np.zeros(chip.n_channels, dtype=bool))  # only the swept laser lights the chip
    t0 = chip.clock.now_s
    ports = chip.port_spectrum_w(wavelength_m, power_w, channel=0, averaging_time_s=averaging_time_s)
    through_w, drop_w = ports[..., 0], ports[..., 1]
    found, widths = [], []
    for bank in range(drop_w.shape[1]):
        trace = drop_w[:, bank]
        peaks, _ = find_peaks(trace, prominence=0.2 * float(trace.max()), distance=max(1, int(0.3e-9 / step_m)))
        fwhm = peak_widths(trace, peaks, rel_height=0.5)[0] * step_m
        found.append(wavelength_m[peaks])
        widths.append(fwhm)
    zero = np.zeros((1, chip.n_heaters))
    truth = chip.truth_resonances_m(zero, "voltage")[0]
    return SweepResult(wavelength_m, through_w, drop_w, found, widths, truth, chip.clock.now_s - t0)


def summarize(result: SweepResult) -> str:
    lines = ["bank  rings found  mean |found - true| (pm)  median Q (from FWHM)"]
    for bank, (found, fwhm) in enumerate(zip(result.found_m, result.fwhm_m)):
        truth = result.truth_m[bank]
        if found.size:
            nearest = np.abs(found[:, None] - truth[None, :]).min(axis=1)
            error_pm = f"{nearest.mean() * 1e12:10.1f}"
            q = f"{np.median(found / fwhm):10.0f}"
        else:
            error_pm, q = "         -", "         -"
        lines.append(f"{bank:4d}  {found.size:5d}/{truth.size:<5d}  {error_pm:>24s}  {q:>20s}")
    lines.append(f"virtual bench time of the sweep: {result.virtual_time_s:.3f} s")
    return "\n".join(lines)


def plot(result: SweepResult, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    banks = result.drop_w.shape[1]
    fig, axes = plt.subplots(banks, 1, figsize=(10, 2.2 * banks), sharex=True, squeeze=False)
    nm = result.wavelength_m * 1e9
    for bank, ax in enumerate(axes[:, 0]):
        ax.plot(nm, 10 * np.log10(np.maximum(result.through_w[:, bank], 1e-15) / 1e-3), lw=0.8, label="through")
        ax.plot(nm, 10 * np.log10(np.maximum(result.drop_w[:, bank], 1e-15) / 1e-3), lw=0.8, label="drop")
        for wl in result.truth_m[bank]:
            ax.axvline(wl * 1e9, color="0.8", lw=0.5, zorder=0)
        ax.set_ylabel(f"bank {bank}\n(dBm)")
    axes[0, 0].legend(loc="lower right", fontsize=8)
    axes[-1, 0].set_xlabel("wavelength (nm)")
    fig.suptitle("Emulated chip, all heaters off (grey lines: true resonances)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def default_chip(seed: int = 0, spec: ChipSpec | None = None) -> Chip:
    return Chip(spec or ChipSpec(), seed=seed)
