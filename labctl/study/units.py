"""Units of a study's parameters and figures, for the table's readers and every plot label.

labctl names physical quantities with SI suffixes (``wavelength_m``, ``noise_w``), so the unit of any ChipSpec
field follows from its name; the figures the built-in procedures report have fixed units listed here; a spec's
``[units]`` table names the rest (user procedures) and wins over both.
"""

from __future__ import annotations

from collections.abc import Mapping

#: Figures of the built-in procedures: unit and what the number is.
FIGURES: dict[str, tuple[str, str]] = {
    "bits": ("bits", "measured accuracy, log2(span / rmse)"),
    "true_bits": ("bits", "accuracy against the emulator's noise-free weights"),
    "rmse": ("weight units", "measured rms weight error"),
    "true_rmse": ("weight units", "rms error against the emulator's weights"),
    "max_error": ("weight units", "largest measured weight error"),
    "true_max_error": ("weight units", "largest error against the emulator's weights"),
    "span": ("weight units", "median achievable weight range"),
    "usable_rings": ("rings", "rings the calibration can set"),
    "unusable_rings": ("rings", "rings held at a fixed weight"),
    "cal_time_s": ("s", "projected bench time of the calibration"),
    "cal_transactions": ("transactions", "instrument transactions of the calibration"),
    "verify_time_s": ("s", "projected bench time of the verification"),
    "test_accuracy_pct": ("%", "final-epoch test accuracy"),
    "train_loss": ("nats", "final-epoch training cross-entropy"),
    "epochs": ("epochs", "epochs trained"),
    "train_time_s": ("s", "training wall time (all epochs)"),
    "projected_time_s": ("s", "projected bench time of the training"),
    "product_error_mean": ("units of max|e|", "mean of the chip's B e minus the exact product"),
    "product_error_std": ("units of max|e|", "std of the chip's B e minus the exact product"),
    "drift_checks": ("checks", "drift checks during training"),
    "recalibrations": ("recalibrations", "recalibrations during training"),
    "wall_s": ("s", "job wall time on its worker"),
}

#: Parameters with a fixed meaning.
PARAMETERS: dict[str, str] = {
    "chip.seed": "seed",
    "verify.n": "vectors",
    "verify.seed": "seed",
    "experiment.seed": "seed",
    "experiment.noise_std": "units of max|e|",
    "experiment.noise_mean": "units of max|e|",
    "experiment.train.lr": "1",
    "experiment.train.epochs": "epochs",
    "experiment.train.batch_size": "samples",
    "experiment.n_train": "samples",
    "experiment.photonic.averaging_time_s": "s",
}

#: SI-suffix naming (longest suffix first).
SUFFIXES: tuple[tuple[str, str], ...] = tuple(sorted({
    "_m": "m", "_s": "s", "_w": "W", "_a": "A", "_v": "V", "_k": "K", "_hz": "Hz", "_db": "dB", "_dbm": "dBm",
    "_ohm": "Ω", "_m_per_w": "m/W", "_a_per_rthz": "A/√Hz", "_a_per_w": "A/W", "_m_per_k": "m/K",
    "_db_per_hz": "dB/Hz", "_db_per_cm": "dB/cm", "_m_per_s": "m/s", "_bits": "bits", "_rise": "1",
    "_v_per_a": "V/A",
}.items(), key=lambda kv: -len(kv[0])))


def unit_of(name: str, overrides: Mapping[str, str] | None = None) -> str:
    """The unit of a parameter or figure ('1' for a dimensionless number)."""
    if overrides and name in overrides:
        return overrides[name]
    if name in FIGURES:
        return FIGURES[name][0]
    if name in PARAMETERS:
        return PARAMETERS[name]
    leaf = name.rsplit(".", 1)[-1]
    if leaf == "bits" or leaf.endswith("_bits"):
        return "bits"
    for suffix, unit in SUFFIXES:
        if leaf.endswith(suffix):
            return unit
    return "1"


def label(name: str, overrides: Mapping[str, str] | None = None) -> str:
    """Axis label: the name, its meaning when labctl knows it, and its unit."""
    unit = unit_of(name, overrides)
    meaning = FIGURES.get(name, ("", ""))[1]
    text = f"{name} [{'dimensionless' if unit == '1' else unit}]"
    return f"{text}\n{meaning}" if meaning else text
