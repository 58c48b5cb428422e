"""Pieces several plans share: output and input checks made before anything is touched, the calibration file
argument, the calibration's models as record arrays, and projections from earlier runs of the same bench."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from labctl.runs import plan as P


def check_new_file(path: str | Path | None, force: bool, option: str) -> None:
    """An output file that must not exist (unless ``--force``) and whose folder can be made."""
    if path is None:
        return
    target = Path(path)
    if target.is_dir():
        raise P.ParamError(f"{option}: {target} is a folder, expected a file name")
    if target.exists() and not force:
        raise P.ParamError(f"{option}: {target} exists; choose another name or add --force to overwrite it")
    parent = target.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir() or not _writable(parent):
        raise P.ParamError(f"{option}: cannot write in {parent}")


def _writable(folder: Path) -> bool:
    import os

    return os.access(folder, os.W_OK | os.X_OK)


def calibration_file(value: str | Path | None, bench_path: str | Path | None, option: str = "--calibration"
                     ) -> Path:
    """A calibration file, or a run folder that made one (its ``calibration.json``): checked to exist, to load
    (every model, every array shape) and to be made for the chip and wiring of the bench at ``bench_path`` (None:
    the embedded default), all before the bench connects."""
    from labctl.bench.config import load_bench
    from labctl.calibration.artifact import CalibrationFileError
    from labctl.calibration.calibrate import Calibration

    if value is None:
        raise P.ParamError(f"{option}: required (a calibration file, or the run folder of a calibrate run)")
    path = Path(value)
    if path.is_dir():
        path = path / "calibration.json"
    if not path.is_file():
        shown = str(path) if str(path).isprintable() else repr(str(path))
        raise P.ParamError(f"{option}: {shown} does not exist")
    config, _ = load_bench(bench_path)
    try:
        cal = Calibration.load(path)
        cal.check_config(config)
    except (CalibrationFileError, ValueError, OSError) as exc:
        raise P.ParamError(f"{option}: {path}: {exc}") from None
    return path


def calibration_arrays(cal: Any) -> Iterator[P.Message]:
    """The calibration's models as arrays of the run's HDF5 file (the JSON artifact stays the reference)."""
    rmap, thermal, weights = cal.rmap, cal.thermal, cal.weights
    arrays = {
        "models/center_m": (rmap.center_m, "m", "ring resonance at zero drive"),
        "models/fwhm_m": (rmap.fwhm_m, "m", "ring linewidth"),
        "models/channel_of_ring": (rmap.channel_of_ring, "", "WDM channel addressing each ring (-1: none)"),
        "models/baseline": (rmap.baseline, rmap.unit, "balanced reading with every ring away (weight -1)"),
        "models/efficiency_m_per_unit": (thermal.efficiency_m_per_unit, f"m/{thermal.heat_unit}",
                                         "own-ring shift per unit heat"),
        "models/crosstalk": (thermal.crosstalk, f"m/{thermal.heat_unit}",
                             "K[i, j]: shift of ring i per unit heat on heater j"),
        "models/w_min": (weights.w_min, "", "lowest reachable weight (-1: every ring away)"),
        "models/w_max": (weights.w_max, "", "highest reachable weight"),
        "models/weight_fit_rmse": (weights.fit_rmse, "", "rms residual of the weight model fit"),
        "models/wavelengths_m": (weights.wavelengths_m, "m", "WDM channel wavelengths"),
    }
    for name, (value, unit, meaning) in arrays.items():
        if value is not None:
            yield P.Array(name, np.asarray(value), {"unit": unit, "meaning": meaning})


def calibration_progress(ctx: Any, n_channels: int, label: str = "calibrate") -> Any:
    """calibrate()'s progress callback as one bar: resonance map, heaters, one step per channel's weight sweep,
    drift references."""
    total = n_channels + 3
    fixed = {"readout": (0, "readout noise probe"), "resonance_map": (0, "resonance map"), "heaters": (1, "heater characterization"),
             "weights": (2, "weight sweeps"), "drift_reference": (2 + n_channels, "drift references"),
             "done": (total, "done")}

    state: dict[str, Any] = {"text": "", "pos": 0}

    def progress(step: str, done: int, of: int) -> None:
        if step == "weight sweeps":
            pos, text = 2 + done, f"weight sweeps, {done}/{of} channels done"
        elif step in fixed:
            pos, text = fixed[step]
        else:        # a report from inside the running step (scans, laser steps): what is measured, how much is left
            if of > 0:
                ctx.engine.bars.update(label, round(state["pos"] + min(done / of, 0.99), 2), total)
            ctx.engine.bars.postfix(f"{state['text']}: {step} {done}/{of}")
            return
        state["text"], state["pos"] = text, pos
        ctx.engine.bars.update(label, pos, total)
        ctx.engine.bars.postfix(text)
    return progress


def earlier_run(ctx: Any, procedure: str) -> dict[str, Any] | None:
    """The latest finished run of ``procedure`` on this bench (same bench file hash) in the data folder."""
    from labctl.runs.history import list_runs

    sha = getattr(ctx.session, "bench_sha256", None)
    for rec in list_runs(ctx.engine.root):
        if rec.get("procedure") == procedure and rec.get("status") == "finished" \
                and (rec.get("bench") or {}).get("sha256") == sha and rec.get("id") != ctx.run_dir.name:
            return rec
    return None


def projection_from_earlier(ctx: Any, procedure: str, what: str, scale_by: str | None = None) -> P.Projection:
    """Projected times from the latest finished run of ``procedure`` on this bench; ``scale_by``: a parameter the
    work is proportional to (verification vectors)."""
    rec = earlier_run(ctx, procedure)
    if rec is None:
        return P.Projection(what, None, None, f"no earlier {procedure} run of this bench in {ctx.engine.root} "
                                              "to project from")
    segs = rec.get("segments") or []
    wall = sum(s.get("wall_s") or 0.0 for s in segs)
    bench = sum(s.get("bench_s") or 0.0 for s in segs)
    basis = f"as the earlier run {rec['id']} took"
    if scale_by is not None:
        before = (rec.get("params") or {}).get(scale_by)
        if isinstance(before, int | float) and before > 0:
            factor = float(ctx.values[scale_by]) / float(before)
            wall, bench = wall * factor, bench * factor
            basis += f", scaled from --{scale_by.replace('_', '-')} {before} to {ctx.values[scale_by]}"
    return P.Projection(what, wall, bench or None, basis)
