"""The figures of a run report, one function per figure, drawn from the run's HDF5 data (matplotlib, Agg).

Every figure names its quantities with units in the axis labels and says in its title what it shows; a caption
(returned with the figure) says how to read it. Each function takes the data found in the run and returns
``(title, caption)`` after saving the PNG, or None when the run has no such data.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

DPI = 110
#: How the emulator's ground truth is labelled wherever it is shown beside a measurement (never used by one).
TRUTH_LABEL = "emulator truth (for comparison)"


def _save(fig: Any, out: Path) -> None:
    """Lay out, write the PNG and free the figure (every report figure ends so)."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(out, dpi=DPI)
    plt.close(fig)


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def spectra(g: dict[str, np.ndarray], truth: np.ndarray | None, out: Path, bench: str | None = None
            ) -> tuple[str, str]:
    """Every bank's spectrum with the located (and, emulated, the true) resonances; ``bench`` names it in the title."""
    plt = _plt()
    wl = np.asarray(g["wavelength_m"])[0] * 1e9
    ports = "through" in g and np.isfinite(np.asarray(g["through"])[0]).any()
    data = np.asarray(g["through"] if ports else g["balanced"])[0]
    recorded = np.asarray(g["unit"]).ravel()[0] if "unit" in g else b""
    recorded = recorded.decode() if isinstance(recorded, bytes) else str(recorded)
    unit, scale = ("mW", 1e3) if ports else {"A": ("mA", 1e3), "W": ("mW", 1e3)}.get(recorded, ("readout units", 1.0))
    centres = np.asarray(g["center_m"])[0] * 1e9
    nb = data.shape[1]
    fig, axes = plt.subplots(nb, 1, figsize=(10, 1.9 * nb + 0.8), sharex=True, squeeze=False)
    for b in range(nb):
        ax = axes[b, 0]
        ax.plot(wl, data[:, b] * scale, lw=0.7, color="tab:blue", label="through port" if ports else "balanced")
        if ports and "drop" in g:
            ax.plot(wl, np.asarray(g["drop"])[0][:, b] * scale, lw=0.7, color="tab:orange", label="drop port")
        for i, c in enumerate(centres[b]):
            ax.axvline(c, color="k", lw=0.6, ls="--", label="located resonance" if i == 0 else None)
        if truth is not None:
            ax.plot(truth[b] * 1e9, np.full(truth.shape[1], np.nanmax(data[:, b]) * scale), "rv", ms=5,
                    label=f"true resonance, {TRUTH_LABEL}")
        ax.set_ylabel(f"bank {b}\n{unit}")
    # the legend sits between the title and the first bank, where it hides no marker
    axes[0, 0].legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), fontsize=7, ncol=4, frameon=False)
    axes[-1, 0].set_xlabel("wavelength (nm)")
    what = "optical power at each bank's ports" if ports else "each bank's balanced reading"
    fig.suptitle(f"Resonance sweep{f' of bench {bench}' if bench else ''}: {what}, all heaters at 0", y=0.995)
    _save(fig, out)
    return ("Spectra with the located resonances",
            f"Power at every bank's {'through and drop ports' if ports else 'balanced detector'} while one laser "
            f"sweeps the band ({unit}); dashed lines: resonances located by the fit"
            + ("; red triangles: the emulator's true resonances (ground truth, shown for checking only)."
               if truth is not None else "."))


def heaters(steps: dict[str, np.ndarray], crosstalk: np.ndarray | None, unit: str, out: Path) -> tuple[str, str]:
    """Own-ring shift against heat for every heater step, and the crosstalk matrix as a heat map."""
    plt = _plt()
    scale, unit = (1e3, "mA") if unit == "A" else (1.0, unit)    # current drives are a few mA
    drive = np.asarray(steps["drive"], dtype=float) * scale
    shift = np.asarray(steps["shift_m"], dtype=float) * 1e12
    fig, axes = plt.subplots(1, 2 if crosstalk is not None else 1, figsize=(11, 4.4), squeeze=False)
    ax = axes[0, 0]
    n = drive.shape[1]
    colors = plt.cm.viridis(np.linspace(0, 1, n))
    for j in range(n):
        on = drive[:, j] > 0
        if on.any():
            ax.plot(drive[on, j] ** 2, shift[on, j], "o", ms=3, color=colors[j])
    ax.set_xlabel(f"heat: drive squared ({unit}²)")
    ax.set_ylabel("own-ring resonance shift (pm)")
    ax.set_title("Heater tuning (one colour per heater)")
    if crosstalk is not None:
        k = np.asarray(crosstalk, dtype=float)
        own = np.abs(np.diag(k))
        rel = 100 * k / np.where(own > 0, own, np.nan)[None, :]
        ax2 = axes[0, 1]
        vmax = np.nanpercentile(np.abs(rel - np.diag(np.diag(rel))), 99.5) or 1.0
        im = ax2.imshow(rel, cmap="magma", vmin=0, vmax=max(vmax, 1e-3))
        ax2.set_xlabel("heater j")
        ax2.set_ylabel("ring i")
        ax2.set_title("Thermal crosstalk: shift of ring i per heat of heater j\n(% of heater j's own-ring shift; "
                      "colour scale clipped off the diagonal)", fontsize=9)
        fig.colorbar(im, ax=ax2, label="% of own-ring shift")
    _save(fig, out)
    return ("Heater tuning and crosstalk",
            "Left: every heater step's own-ring resonance shift (pm) against the heat it put in (drive squared); "
            "a straight line means a constant efficiency, a bend self-heating. Right: the fitted crosstalk matrix, "
            "each column scaled by that heater's effect on its own ring (100 % on the diagonal).")


def weights(sweeps: dict[str, np.ndarray], n_rings: int, out: Path, unit: str = "V") -> tuple[str, str] | None:
    """Measured weight against the addressed ring's own drive, first neighbour configuration of every sweep."""
    plt = _plt()
    scale, unit = (1e3, "mA") if unit == "A" else (1.0, unit)    # current drives are a few mA
    drive = np.asarray(sweeps["drive"], dtype=float) * scale  # (C, S, G, N)
    weight = np.asarray(sweeps["weight"], dtype=float)       # (C, S, G, B)
    n_ch, _, _, nb = weight.shape
    fig, axes = plt.subplots(1, nb, figsize=(3.2 * nb + 1, 3.6), squeeze=False, sharey=True)
    colors = plt.cm.tab10(np.arange(n_ch) % 10)
    for b in range(nb):
        ax = axes[0, b]
        for c in range(min(n_ch, n_rings)):
            own = drive[c, 0, :, b * n_rings + c]
            ax.plot(own, weight[c, 0, :, b], ".-", ms=3, lw=0.8, color=colors[c], label=f"ring {c}")
        ax.set_title(f"bank {b}")
        ax.set_xlabel(f"own heater drive ({unit})")
    axes[0, 0].set_ylabel("weight (reading / |baseline|)")
    axes[0, -1].legend(fontsize=7, loc="best")
    fig.suptitle("Weight sweeps: each ring's weight at its own channel as its heater is stepped")
    _save(fig, out)
    return ("Weight curves",
            "Weight of each ring (balanced reading at its WDM channel divided by the bank's reading with every ring "
            "away: -1 = no ring on resonance) against its own heater drive, in the first neighbour configuration "
            "of the calibration's sweeps.")


def verification(v: dict[str, np.ndarray], truth: np.ndarray | None, span: float, out: Path,
                 reported: dict[str, Any] | None = None) -> tuple[tuple[str, str], dict[str, float]]:
    """Histogram of measured - target (and true - target). The title quotes what verification reported
    (``reported``: its accuracy and precision estimates, and the emulator's true accuracy where known), never the
    histogram's raw rms, which keeps the readings' noise and leaves out what no reading checks."""
    plt = _plt()
    target = np.asarray(v["target"], dtype=float)
    err = np.asarray(v["measured"], dtype=float) - target
    rmse = float(np.sqrt(np.mean(err**2)))
    spread = float(np.sqrt(np.mean((err - err.mean(axis=0, keepdims=True)) ** 2))) if err.shape[0] > 1 else rmse
    stats = {"accuracy_bits": float(np.log2(span / rmse)) if rmse > 0 else float("inf"),
             "precision_bits": float(np.log2(span / spread)) if spread > 0 else float("inf"),
             "rmse": rmse, "span": span, "vectors": int(target.shape[0])}
    fig, ax = plt.subplots(figsize=(8, 4.2))
    lim = float(np.max(np.abs(err))) * 1.1
    bins = np.linspace(-lim, lim, 41)
    ax.hist(err.ravel(), bins=bins, alpha=0.75, label="measured - target (through the instruments)")
    if truth is not None and truth.shape == target.shape:
        terr = truth - target
        stats["true_bits"] = float(np.log2(span / np.sqrt(np.mean(terr**2))))
        ax.hist(terr.ravel(), bins=bins, histtype="step", lw=1.5, color="k",
                label="true - target (emulator ground truth)")
    ax.set_xlabel("weight error (normalised weight units; span of a typical ring = "
                  f"{span:.3f})")
    ax.set_ylabel("rings x vectors")
    rep = reported or {}
    acc = rep.get("accuracy_bits", rep.get("bits"))
    if isinstance(acc, int | float):
        title = f"Verification: {stats['vectors']} random weight vectors; accuracy {acc:.2f} bits"
        if isinstance(rep.get("precision_bits"), int | float):
            title += f", precision {rep['precision_bits']:.2f} bits"
        if isinstance(rep.get("true_bits"), int | float):
            title += f" (emulator truth: {rep['true_bits']:.2f} bits)"
    else:
        title = (f"Verification: {stats['vectors']} random weight vectors; rms of measured - target "
                 f"{stats['accuracy_bits']:.2f} bits (raw: reading noise kept, reference level left out)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    _save(fig, out)
    return (("Verification errors",
             "Errors of every ring's weight over the random target vectors, in weight units. The title's accuracy "
             "and precision are verification's estimates, in bits over the span (log2(span / rms)): accuracy with "
             "the readings' own noise removed and the reference level's and readout's uncertainty added, "
             "precision from repeated settings of one target; the histogram itself is raw. Span: median over "
             "rings of the calibrated weight range."), stats)


def training(runs: dict[str, dict[str, dict[str, np.ndarray]]], out: Path) -> tuple[str, str]:
    """Loss and test accuracy per epoch (per mini-batch loss behind), and hardware counters, for each training."""
    plt = _plt()
    has_hw = any("hw_readings" in r.get("batches", {}) for r in runs.values())
    fig, axes = plt.subplots(1, 3 if has_hw else 2, figsize=(13 if has_hw else 10, 4), squeeze=False)
    ax_l, ax_a = axes[0, 0], axes[0, 1]
    colors = dict(zip(runs, plt.cm.tab10(np.arange(len(runs)) % 10)))
    styles = dict(zip(runs, ["o-", "s--", "^:", "d-."] * len(runs)))
    for name, r in runs.items():
        b, e = r.get("batches", {}), r.get("epochs", {})
        color = colors[name]
        if "loss" in b and len(b["loss"]):
            nb = max(int(np.max(b["batch"])), 1) if "batch" in b else 1
            x = (np.asarray(b["epoch"]) - 1) + np.asarray(b["batch"]) / nb if "epoch" in b \
                else np.arange(len(b["loss"]))
            ax_l.plot(x, b["loss"], lw=0.6, alpha=0.45, color=color)
        if "epoch" in e and len(e["epoch"]):
            ax_l.plot(e["epoch"], e["train_loss"], styles[name], ms=4, label=name, color=color, mfc="none")
            ax_a.plot(e["epoch"], 100 * np.asarray(e["test_accuracy"]), styles[name], ms=4, label=name, color=color,
                      mfc="none")
    ax_l.set_xlabel("epoch")
    ax_l.set_ylabel("cross-entropy loss (nats)")
    ax_l.set_title("Training loss (thin: per mini-batch)")
    ax_a.set_xlabel("epoch")
    ax_a.set_ylabel("test accuracy (%)")
    ax_a.set_title("Test accuracy after each epoch")
    ax_l.legend(fontsize=7)
    if has_hw:
        ax = axes[0, 2]
        for name, r in runs.items():
            b = r.get("batches", {})
            if "hw_readings" not in b:
                continue
            step = np.asarray(b["step"])
            for key, style in (("hw_reconfigurations", "-"), ("hw_encodings", "--"), ("hw_readings", ":")):
                ax.plot(step, b[key], style, color=colors[name], label=f"{name}: {key[3:]}")
        ax.set_yscale("log")
        ax.set_xlabel("mini-batch (counts restart every epoch)")
        ax.set_ylabel("count in the epoch so far")
        ax.set_title("Hardware counters (heater configurations,\nlaser encodings, readings)", fontsize=9)
        ax.legend(fontsize=6)
    _save(fig, out)
    return ("Training curves",
            "Loss (cross-entropy, nats) and test accuracy (%) per epoch for each training in the run"
            + ("; right: what the bench did within each epoch (heater configurations written, laser encodings "
               "set, detector readings), cumulative per epoch." if has_hw else "."))


def bench_time(rows: list[tuple[str, float, float | None, float | None]], out: Path) -> tuple[str, str]:
    """Projected bench time against the physical minimum and the naive order, per part of the run (log scale)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 0.7 * len(rows) + 2))
    y = np.arange(len(rows))
    proj = np.array([r[1] for r in rows]) / 3600
    ax.barh(y, proj, height=0.35, label="projected (this run's schedule, measured unit costs)")
    mins = [r[2] for r in rows]
    if any(m is not None for m in mins):
        ax.barh(y + 0.35, [0 if m is None else m / 3600 for m in mins], height=0.35,
                label="physical minimum (no communication latency)")
    labelled = False
    for i, r in enumerate(rows):
        if r[3] is not None:
            ax.plot(r[3] / 3600, i, "k|", ms=16, mew=2, label=None if labelled else "naive order")
            labelled = True
    ax.set_yticks(y + 0.17, [r[0] for r in rows])
    for i, value in enumerate(proj):
        ax.annotate(f"{value * 3600:.3g} s", (value, i), xytext=(3, -3), textcoords="offset points", fontsize=7)
    ax.set_xscale("log")
    ax.set_xlabel("bench time (hours, log scale)")
    ax.set_title("Bench time: projected vs minimum")
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2, frameon=False)  # below: no bar hidden
    _save(fig, out)
    return ("Projected vs minimum bench time",
            "Bench time each part of the run takes on real instruments (on an emulated bench: projected from the "
            "instruments' measured latencies), against the physical minimum (settling, laser settling and detector "
            "averaging only, no communication) and, where known, the naive order (one sample or one full grid "
            "point at a time).")
