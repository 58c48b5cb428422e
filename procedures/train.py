"""Procedure: train a network with BP, DFA or photonic DFA, in a run folder, resumable.

Photonic DFA opens the bench (real or emulated, the same code), binds a calibration (the given file, or a fresh
calibration through the instruments saved into the run folder), and hands the trainer a ``MatVecFeedback`` whose
engine computes ``e @ B_l`` on the chip: through the instruments (``path="stack"``) or, on emulated benches, from
the emulator directly (``path="fast"``). Recalibrations during the run are saved in the run folder and listed in
``run.json`` (``hardware.calibrations``); a resume binds the calibration the checkpoint was made with.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from labctl.dfa.drift_steps import DriftSteps
from labctl.dfa.feedback import MatVecFeedback
from labctl.runs.record import Checkpoint, Run
from labctl.dfa.training import (
    BatchHook,
    EpochHook,
    Experiment,
    Trainer,
    derive_seeds,
    resume_experiment,
    run_experiment,
)

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]


def photonic_options(exp: Experiment) -> Any:
    from labctl.dfa.photonic import PhotonicOptions

    opts = {k: v for k, v in (exp.photonic or {}).items() if k != "path"}
    try:
        return PhotonicOptions(**opts)
    except TypeError as exc:
        raise ValueError(f"photonic options: {exc}") from exc


def _bench_file(bench_path: str | Path | None) -> Path:
    from labctl.bench.config import embedded_bench_path

    return Path(bench_path) if bench_path is not None else embedded_bench_path("default")


@contextmanager
def photonic_feedback(exp: Experiment, n_out: int, *, bench_path: str | Path | None,
                      calibration: str | Path | None, calibration_dir: Path,
                      progress: Progress | None = None, lock_dir: Path | None = None,
                      on_recalibrate: Callable[[Any, Path], None] | None = None
                      ) -> Iterator[tuple[MatVecFeedback, Any, Path, DriftSteps]]:
    """Open the bench, check (or make) the calibration, build the photonic projector; yields (projector, bench,
    calibration file, the run's drift steps: a pre-batch hook). The bench is left safe (heaters 0, lasers off) on
    every exit path."""
    from labctl.calibration.calibrate import Calibration, calibrate, recalibrate

    from labctl.bench.bench import Bench
    from labctl.dfa.photonic import BenchMatVec

    path = (exp.photonic or {}).get("path", "stack")
    options = photonic_options(exp)
    with ExitStack() as stack:
        bench = stack.enter_context(Bench.open(bench_path, lock_dir=lock_dir))
        hw = bench.session()
        if calibration is None:
            log.info("no calibration given: calibrating the bench first")
            cal = calibrate(hw, progress=progress)
            calibration_dir.mkdir(parents=True, exist_ok=True)
            cal_file = cal.save(calibration_dir / f"calibration-{cal.sha256[:12]}.json")
        else:
            cal_file = Path(calibration)
            cal = Calibration.load(cal_file, hw)

        def recalibrate_step(previous: Any, scope: str = "full") -> Any:
            """A recalibration of this run: the options of the calibration it replaces, partial or full (``scope``);
            saved and recorded."""
            new_cal = recalibrate(hw, previous, progress=progress, scope=scope)  # type: ignore[arg-type]
            calibration_dir.mkdir(parents=True, exist_ok=True)
            out = new_cal.save(calibration_dir / f"calibration-{new_cal.sha256[:12]}.json")
            if on_recalibrate is not None:
                on_recalibrate(new_cal, out)
            return new_cal

        if path == "fast":
            from labctl.dfa.photonic_fast import FastMatVec

            engine: Any = FastMatVec(cal, hw, options)
        else:
            engine = BenchMatVec(cal, hw, options)
        dtype = np.dtype(exp.dtype).type
        feedback = MatVecFeedback(n_out, exp.hidden, seed=derive_seeds(exp.seed)["feedback"], engine=engine,
                                  dtype=dtype)
        yield feedback, bench, cal_file, DriftSteps(engine, recalibrate_step)


def _recorder(run_box: list[Run]) -> Callable[[Any, Path], None]:
    def record(cal: Any, file: Path) -> None:
        if not run_box:
            return
        run = run_box[0]
        hardware = dict(run.record.get("hardware") or {})
        entries = list(hardware.get("calibrations", []))
        entries.append({"path": str(file.resolve()), "sha256": cal.sha256, "reason": "drift",
                        "scope": (cal.info.get("recalibration") or {}).get("scope", "full")})
        hardware["calibrations"] = entries
        run.update(hardware=hardware)
    return record


def _report(run: Run, trainer: Trainer) -> dict[str, Any]:
    hist = trainer.history
    last = hist[-1] if hist else {}
    hardware = [h.get("hardware") or {} for h in hist]
    totals: dict[str, float] = {}
    for key in ("reconfigurations", "encodings", "readings", "transactions", "projected_time_s", "naive_time_s",
                "minimum_time_s", "instrument_bound_s", "drift_check_time_s", "drift_checks", "recalibrations"):
        vals = [h[key] for h in hardware if isinstance(h.get(key), int | float)]
        if vals:
            totals[key] = float(sum(vals))
    for key in ("time_by_kind_s", "transactions_by_kind", "bound_by_kind_s"):     # per operation kind
        kinds: dict[str, float] = {}
        for h in hardware:
            for kind, value in (h.get(key) or {}).items():
                kinds[kind] = kinds.get(kind, 0.0) + float(value)
        if kinds:
            totals[key] = kinds  # type: ignore[assignment]
    if totals.get("naive_time_s"):
        totals["ratio_to_naive"] = totals["projected_time_s"] / totals["naive_time_s"]
    if totals.get("minimum_time_s"):
        totals["ratio_to_minimum"] = totals["projected_time_s"] / totals["minimum_time_s"]
    if totals.get("instrument_bound_s"):
        totals["ratio_to_instrument_bound"] = totals["projected_time_s"] / totals["instrument_bound_s"]
        if totals.get("minimum_time_s"):
            totals["bound_minimum_ratio"] = totals["instrument_bound_s"] / totals["minimum_time_s"]
    errs = [(h["product_error_mean"], h["product_error_std"]) for h in hardware if "product_error_mean" in h]
    if errs:   # epochs weighted equally (each has the same number of mini-batches)
        m = np.array(errs)
        totals["product_error_mean"] = float(m[:, 0].mean())
        totals["product_error_std"] = float(np.sqrt(max(np.mean(m[:, 1] ** 2 + m[:, 0] ** 2)
                                                        - totals["product_error_mean"] ** 2, 0.0)))
    return {"run": str(run.path), "status": run.status, "label": run.record["kind"],
            "test_accuracy": last.get("test_accuracy"), "train_loss": last.get("train_loss"),
            "epochs": len(hist), "history": hist, "hardware": totals,
            "epoch_time_s": [h.get("time_s") for h in hist]}


def run_training(exp: Experiment, *, bench_path: str | Path | None = None, calibration: str | Path | None = None,
                 root: str | Path | None = None, progress: Progress | None = None, lock_dir: Path | None = None,
                 batch_hooks: list[BatchHook] | None = None, epoch_hooks: list[EpochHook] | None = None
                 ) -> dict[str, Any]:
    """Train ``exp`` in a new run folder under ``root``; returns a JSON-ready report (``test_accuracy``,
    ``train_loss``, per-epoch ``history`` with hardware counters, hardware totals, run folder)."""
    if exp.feedback != "photonic":
        run, trainer = run_experiment(exp, root=root, batch_hooks=batch_hooks, epoch_hooks=epoch_hooks)
        return _report(run, trainer)
    from labctl.runs.record import data_dir

    ds = exp.load_dataset()
    run_box: list[Run] = []
    with photonic_feedback(exp, ds.n_classes, bench_path=bench_path, calibration=calibration,
                           calibration_dir=data_dir(root) / "calibrations", progress=progress, lock_dir=lock_dir,
                           on_recalibrate=_recorder(run_box)) as (feedback, bench, cal_file, drift):
        run, trainer = run_experiment(exp, root=root, dataset=ds, feedback=feedback,
                                      bench_file=_bench_file(bench_path), instruments=bench.identities,
                                      calibration=cal_file, batch_hooks=batch_hooks, on_start=run_box.append,
                                      epoch_hooks=epoch_hooks, pre_batch_hooks=[drift])
    return _report(run, trainer)


def _checkpoint_calibration(run: Run) -> str | None:
    path = run.latest_checkpoint_path()
    if path is None:
        return None
    meta = Checkpoint.load(path).meta
    return ((meta.get("feedback") or {}).get("engine") or {}).get("calibration_sha256")


def resume_training(run_dir: str | Path, *, bench_path: str | Path | None = None, progress: Progress | None = None,
                    lock_dir: Path | None = None, epoch_hooks: list[EpochHook] | None = None) -> dict[str, Any]:
    """Continue a run from its latest checkpoint (photonic runs reopen the recorded bench and calibration)."""
    run = Run.open(run_dir)
    exp = Experiment.from_dict(run.record["params"]["experiment"])
    if exp.feedback != "photonic":
        run, trainer = resume_experiment(run_dir, epoch_hooks=epoch_hooks)
        return _report(run, trainer)
    hardware = run.record.get("hardware") or {}
    bench_file = bench_path if bench_path is not None else (hardware.get("bench_file") or {}).get("path")
    wanted = _checkpoint_calibration(run)
    candidates = [hardware.get("calibration") or {}, *hardware.get("calibrations", [])]
    cal_file = None
    for entry in reversed(candidates):
        if entry.get("path") and (wanted is None or _content_sha(entry["path"]) == wanted):
            cal_file = entry["path"]
            break
    if cal_file is None:
        raise FileNotFoundError(f"{run_dir}: no calibration file with sha256 {wanted} recorded in the run")
    ds = exp.load_dataset()
    with photonic_feedback(exp, ds.n_classes, bench_path=bench_file, calibration=cal_file,
                           calibration_dir=Path(run_dir), progress=progress, lock_dir=lock_dir,
                           on_recalibrate=_recorder([run])) as (feedback, _bench, _cal, drift):
        run, trainer = resume_experiment(run_dir, dataset=ds, feedback=feedback, epoch_hooks=epoch_hooks,
                                         pre_batch_hooks=[drift])
    return _report(run, trainer)


def _content_sha(path: str | Path) -> str | None:
    from labctl.calibration.artifact import read_document

    try:
        return str(read_document(path)["sha256"])
    except (OSError, ValueError, KeyError):
        return None


def summarize(report: dict[str, Any]) -> str:
    """Human-readable lines of a training report."""
    lines = [f"{report['label']}: {report['status']} after {report['epochs']} epoch(s), run folder {report['run']}"]
    for h in report["history"]:
        line = (f"  epoch {h['epoch']:3d}: train loss {h['train_loss']:.4f}, test accuracy "
                f"{100 * h['test_accuracy']:.2f} %, {h['time_s']:.1f} s")
        hw = h.get("hardware") or {}
        if hw.get("projected_time_s") is not None:
            line += (f"; bench: {hw['reconfigurations']} heater configurations, {hw['encodings']} encodings, "
                     f"{hw['transactions']:.0f} transactions, projected {hw['projected_time_s']:.0f} s")
        lines.append(line)
    totals = report.get("hardware") or {}
    if totals.get("projected_time_s") is not None:
        lines.append(f"  projected bench time {totals['projected_time_s']:.0f} s "
                     f"({totals['projected_time_s'] / 3600:.2f} h); naive order {totals.get('naive_time_s', 0):.0f} s "
                     f"(ratio {totals.get('ratio_to_naive', float('nan')):.3f}); physical minimum "
                     f"{totals.get('minimum_time_s', 0):.0f} s (ratio {totals.get('ratio_to_minimum', float('nan')):.1f})")
        if totals.get("instrument_bound_s"):
            lines.append(f"  instrument-bound minimum {totals['instrument_bound_s']:.0f} s (ratio "
                         f"{totals.get('ratio_to_instrument_bound', float('nan')):.3f}; the bound is "
                         f"{totals.get('bound_minimum_ratio', float('nan')):.2f} x the physical minimum, "
                         "docs/bench-time.md); per operation kind, s: " + ", ".join(
                             f"{k} {v:.0f}" for k, v in (totals.get("time_by_kind_s") or {}).items()))
        lines.append(f"  drift checks {totals.get('drift_checks', 0):.0f} ({totals.get('drift_check_time_s', 0):.0f} s "
                     f"bench time, not in the above), recalibrations {totals.get('recalibrations', 0):.0f}")
    if totals.get("product_error_std") is not None:
        lines.append(f"  product error (chip - exact e @ B) in units of max|e|: mean {totals['product_error_mean']:+.4f}, "
                     f"std {totals['product_error_std']:.4f} (Filipovich et al.'s noise model: +0.03, 0.618)")
    return "\n".join(lines)
