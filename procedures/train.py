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
from labctl.dfa.training import (
    RANGES,
    BatchHook,
    EpochHook,
    Experiment,
    Trainer,
    derive_seeds,
    resume_experiment,
    run_experiment,
)
from labctl.runs.record import Checkpoint, Run

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

    photonic_options(exp)
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

        feedback, drift = photonic_projector(exp, n_out, hw, cal, recalibrate_step)
        yield feedback, bench, cal_file, drift


def photonic_projector(exp: Experiment, n_out: int, hw: Any, cal: Any, recalibrate_step: Callable[[Any], Any]
                       ) -> tuple[MatVecFeedback, DriftSteps]:
    """The photonic projector of ``exp`` on the session ``hw`` with ``cal``, and the run's drift steps."""
    from labctl.dfa.photonic import BenchMatVec

    options = photonic_options(exp)
    if (exp.photonic or {}).get("path", "stack") == "fast":
        from labctl.dfa.photonic_fast import FastMatVec

        engine: Any = FastMatVec(cal, hw, options)
    else:
        engine = BenchMatVec(cal, hw, options)
    feedback = MatVecFeedback(n_out, exp.hidden, seed=derive_seeds(exp.seed)["feedback"], engine=engine,
                              dtype=np.dtype(exp.dtype).type)
    return feedback, DriftSteps(engine, recalibrate_step)


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
                "minimum_time_s", "instrument_bound_s", "drift_check_time_s", "drift_checks", "recalibrations",
                "recalibration_time_s", "refine_time_s"):
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
                     f"bench time, not in the above), recalibrations {totals.get('recalibrations', 0):.0f} "
                     f"({totals.get('recalibration_time_s', 0):.0f} s), refinement of the configurations "
                     f"{totals.get('refine_time_s', 0):.0f} s")
    if totals.get("product_error_std") is not None:
        lines.append(f"  product error (chip - exact e @ B) in units of max|e|: mean {totals['product_error_mean']:+.4f}, "
                     f"std {totals['product_error_std']:.4f} (Filipovich et al.'s noise model: +0.03, 0.618)")
    return "\n".join(lines)


# -- the plan ----------------------------------------------------------------------------------------------------------
METHODS = ("bp", "dfa", "photonic-dfa")


def hidden_sizes(value: Any) -> tuple[int, ...]:
    """``800,800`` (or a list) as a tuple of positive layer sizes."""
    try:
        sizes = tuple(int(v) for v in (value.split(",") if isinstance(value, str) else value) if str(v).strip())
    except (TypeError, ValueError):
        raise ValueError(f"expected comma-separated sizes like 800,800, got {value!r}") from None
    lo, hi, _ = RANGES["hidden"]
    if not sizes or min(sizes) < lo or max(sizes) > hi:
        raise ValueError(f"expected sizes {lo:g}..{hi:g} like 800,800, got {value!r}")
    return sizes


hidden_sizes.__name__ = "layer sizes like 800,800"


def experiment_from(v: dict[str, Any]) -> Experiment:
    """The Experiment a train plan's values describe (ParamError for combinations that make no sense)."""
    from labctl.dfa.training import TrainConfig
    from labctl.runs.plan import ParamError

    method = v["method"]
    if v["path"] is not None and method != "photonic-dfa":
        raise ParamError("--path applies to --method photonic-dfa only")
    if v["noise"] and method != "dfa":
        raise ParamError("--noise applies to --method dfa only")
    photonic = None
    feedback = "digital"
    if method == "photonic-dfa":
        feedback = "photonic"
        photonic = {"path": v["path"] or "stack", "order": v["order"], "drift_every": v["drift_every"]}
        # only when asked (an experiment's record, and so a resumed run's, stays as it was without them)
        if v.get("drop_weak_rings"):
            photonic["drop_weak_rings"] = True
        if v.get("refine_iterations") is not None:
            photonic["refine_iterations"] = v["refine_iterations"]
    elif v["noise"]:
        feedback = "noisy"
    try:
        train = TrainConfig(method="bp" if method == "bp" else "dfa", epochs=v["epochs"], lr=v["lr"],
                            batch_size=v["batch_size"], checkpoint_every=v["checkpoint_every"])
        return Experiment(dataset=v["dataset"], hidden=tuple(v["hidden"]), activation=v["activation"],
                          feedback=feedback, seed=v["seed"], n_train=v["n_train"], n_test=v["n_test"], train=train,
                          photonic=photonic)
    except ValueError as exc:           # the message starts with the field: name the option it came from
        field = str(exc).split(" ", 1)[0]
        options = {p.name: p.option for p in TRAIN.params}
        raise ParamError(f"{options.get(field, 'train')}: {exc}") from None


def _train_preflight(ctx: Any) -> None:
    from labctl.procedures.common import calibration_file

    from labctl.dfa.datasets import DatasetError
    from labctl.runs.plan import ParamError

    v = ctx.values
    exp = experiment_from(v)
    if v["calibration"] is not None:
        if v["method"] != "photonic-dfa":
            raise ParamError("--calibration applies to --method photonic-dfa only")
        v["calibration"] = str(calibration_file(v["calibration"], ctx.bench_path))
    try:
        ds = exp.load_dataset()
    except (DatasetError, OSError) as exc:
        raise ParamError(f"--dataset: {exc}") from None
    if ctx.run is not None:         # resuming: the same data as the run began with
        recorded = sorted(((ctx.run.record.get("dataset") or {}).get("files") or {}).values())
        if recorded and recorded != sorted((ds.provenance.get("files") or {}).values()):
            raise ParamError(f"--dataset: the files differ from those run {ctx.run.path.name} started with")
    ctx.values["_dataset"] = ds


def _train_dry_check(ctx: Any) -> dict[str, Any]:
    from labctl.dfa.tiling import op_counts
    from labctl.procedures.dry_checks import bench_limits, check_heater_rows, check_laser_powers, limits_lines

    v = ctx.values
    exp = experiment_from(v)
    ds = v["_dataset"]
    batches = -(-ds.x_train.shape[0] // v["batch_size"]) * v["epochs"]
    lines = [f"{exp.label} on {ds.name}: {ds.x_train.shape[0]} training samples, {v['epochs']} epochs, "
             f"{batches} mini-batches of {v['batch_size']}"]
    counts: dict[str, Any] = {"mini_batches": batches}
    violations: list[str] = []
    if v["method"] != "photonic-dfa":
        lines.append("digital training: no instrument is used")
        return {"counts": counts, "violations": [], "lines": lines}
    config, limits = bench_limits(ctx)
    lines += limits_lines(config, limits)
    if v["calibration"] is None:
        lines.append("no --calibration: the run calibrates first (see labctl calibrate --dry-check); the heater "
                     "configurations are solved after that and checked then, before the first write")
        return {"counts": counts, "violations": [], "lines": lines}
    from labctl.calibration.calibrate import Calibration

    from labctl.dfa.feedback import feedback_matrices
    from labctl.dfa.photonic import OffsetEncoding, WeightMapping

    cal = Calibration.load(v["calibration"])
    options = photonic_options(exp)
    mapping = WeightMapping.from_calibration(cal, options)
    mats = feedback_matrices(ds.n_classes, exp.hidden, derive_seeds(exp.seed)["feedback"])
    plan = mapping.plan([m.shape for m in mats])
    tiles = plan.tile_matrices(mats)
    targets = np.concatenate([mapping.targets_batch(tiles), np.repeat(mapping.centre[None], plan.n_blocks, axis=0)])
    drives = cal.solve_from_detunings(targets, cal.solve_detunings(targets))
    violations += check_heater_rows(limits, drives, "heater configuration")
    p_cal = cal.rmap.laser_power_w
    high = min(float(np.min(p_cal)) if p_cal is not None else config.limits.laser_max_power_w,
               config.limits.laser_max_power_w)
    enc = OffsetEncoding(low_w=options.low_fraction * high, high_w=high, n_channels=len(config.wiring.lasers),
                         channels=mapping.channels)
    violations += check_laser_powers(config, np.array([enc.low_w, enc.mid_w, enc.high_w]), "encoding")
    per = {o: op_counts(o, drives.shape[0], plan.n_blocks, v["batch_size"]) for o in ("tile", "sample")}
    counts.update({"heater_configurations": int(drives.shape[0]), "column_blocks": plan.n_blocks,
                   **{f"per_batch_{o}": {"configs": c.configs, "encodings": c.encodings, "readings": c.readings}
                      for o, c in per.items()}})
    lines.append(f"{drives.shape[0]} heater configurations ({plan.n_tiles} tiles + {plan.n_blocks} bias), every one "
                 f"solved from {v['calibration']} and checked: "
                 f"{'all within the limits' if not violations else f'{len(violations)} outside'}")
    lines.append(f"encodings: laser powers {enc.low_w * 1e3:.3g}..{enc.high_w * 1e3:.3g} mW")
    for o, c in per.items():
        lines.append(f"per mini-batch, {o}-major order: {c.configs} heater writes, {c.encodings} encodings, "
                     f"{c.readings} readings ({batches} mini-batches in all)")
    return {"counts": counts, "violations": violations, "lines": lines}


def _flat(record: dict[str, Any]) -> dict[str, Any]:
    """Scalars of an epoch record (hardware counters prefixed), for an HDF5 row."""
    out = {k: v for k, v in record.items() if isinstance(v, int | float) and not isinstance(v, bool)}
    for k, v in (record.get("hardware") or {}).items():
        if isinstance(v, int | float) and not isinstance(v, bool):
            out[f"hw_{k}"] = v
    return out


def train_body(ctx: Any, **v: Any) -> Any:
    """Train in the run folder: a row per mini-batch and per epoch in data.h5, checkpoints as declared."""
    from labctl.runs import plan as P

    exp = experiment_from(v)
    ds = v["_dataset"]
    run = ctx.run
    photonic = exp.feedback == "photonic"
    feedback, drift, engine = None, None, None
    if photonic:
        feedback, drift, engine = yield from _photonic_setup(ctx, exp, ds.n_classes, v["calibration"])
        if ctx.resume is None:      # Ctrl-C during the calibration pauses here; a resume reuses the calibration
            yield P.Checkpoint(None, where="before the first mini-batch (calibration saved)")
    trainer = exp.build(ds, feedback)
    if ctx.resume is not None:
        trainer.restore(ctx.resume)
        run.set_history(trainer.history)
    elif run.history:          # resumed before its first checkpoint: starts over in the same folder
        run.set_history([])
    run.record.update(experiment=exp.to_dict(), seeds=exp.seeds(),
                      dataset={"name": ds.name, "n_train": int(ds.y_train.size), "n_test": int(ds.y_test.size),
                               **ds.provenance},
                      feedback=trainer.feedback.describe() if trainer.feedback is not None else None)
    run.write()
    if drift is not None:
        trainer.pre_batch_hooks.append(drift)
    yield from train_loop(ctx, trainer, exp, engine, checkpoint_s=v["checkpoint_s"], on_epoch=run.add_epoch)
    report = _report(run, trainer)
    report["label"] = exp.label
    report["status"] = "finished"
    report["expectation"] = _expectation(exp, ds)
    return report


def train_loop(ctx: Any, trainer: Trainer, exp: Experiment, engine: Any, *, checkpoint_s: float | None,
               on_epoch: Callable[[dict[str, Any]], None] | None = None) -> Any:
    """The training steps as a plan: a row per mini-batch and epoch (``training/...``), progress, projections, and
    checkpoints (every mini-batch through the instruments, else as configured; none when ``checkpoint_s`` is None)."""
    import time

    from labctl.runs import plan as P
    from labctl.runs.record import _jsonable

    stack = exp.feedback == "photonic" and (exp.photonic or {}).get("path", "stack") == "stack"
    remaining = max(0, (exp.train.epochs - trainer.epoch) * trainer.n_batches - trainer.batch)
    if engine is not None and remaining:
        engine.start()
        est = engine.batch_estimate(exp.train.batch_size)
        if est is not None:
            yield P.Projection("training", None, est["time_s"] * remaining,
                               f"{remaining} mini-batches x {est['configs']} heater writes, {est['encodings']} "
                               f"encodings, {est['readings']} readings at the unit costs measured on this bench; "
                               "drift checks and recalibrations come on top")
    yield P.Step(f"train ({exp.label})", total=remaining, unit="batch")
    clock = ctx.session.clock if ctx.session is not None else None
    bench0 = clock.now_s if clock is not None else None
    seen, first = 0, (time.perf_counter(), bench0)
    for event in trainer.steps():
        if event == "batch":
            seen += 1
            if seen == 1:           # the first mini-batch also starts the session (unit costs, drift check)
                first = (time.perf_counter(), clock.now_s if clock is not None else None)
            row: dict[str, Any] = {"step": trainer.step, "epoch": trainer.epoch + 1, "batch": trainer.batch,
                                   **trainer.last_batch}
            if engine is not None:
                row.update({f"hw_{k}": val for k, val in engine.running_counters().items()})
            if clock is not None:
                row["bench_clock_s"] = clock.now_s
            yield P.Data("training/batches", row)
            yield P.Advance()
            if seen == 2 and remaining > 4:
                wall = time.perf_counter() - first[0]
                bench = None if first[1] is None or clock is None else clock.now_s - first[1]
                yield P.Projection("rest of the training", wall * (remaining - 2),
                                   None if bench is None else bench * (remaining - 2),
                                   "from the second mini-batch; evaluations and drift checks not included")
            if checkpoint_s is not None:
                due = stack or (exp.train.checkpoint_every > 0 and trainer.step % exp.train.checkpoint_every == 0) \
                    or ctx.engine.seconds_since_checkpoint() >= checkpoint_s
                yield P.Checkpoint(trainer.checkpoint, due=due,
                                   where=f"epoch {trainer.epoch + 1}, mini-batch {trainer.batch}")
        else:
            record = trainer.history[-1]
            yield P.Data("training/epochs", _flat(record))          # data first, then run.json's history
            if on_epoch is not None:
                on_epoch(_jsonable(record))
            for ev in (record.get("hardware") or {}).get("drift_events", []):
                yield P.Data("training/drift_checks", {k: val for k, val in ev.items()
                                                       if isinstance(val, int | float | bool) and val is not None})
            ctx.engine.bars.postfix(f"epoch {record['epoch']}: test accuracy {100 * record['test_accuracy']:.1f} %")
            if checkpoint_s is not None:
                yield P.Checkpoint(trainer.checkpoint, due=True, where=f"end of epoch {record['epoch']}")


def _expectation(exp: Experiment, ds: Any) -> str | None:
    if exp.train.epochs <= 1 or ds.y_train.size < 1000:
        return ("a short run on a small subset is expected to score low (a rehearsal of the procedure, not a "
                "trained network)")
    return None


def _photonic_setup(ctx: Any, exp: Experiment, n_out: int, calibration: str | None) -> Any:
    """Calibration (given, recorded by the resumed run, or made now), projector and drift steps on the session."""
    from labctl.calibration.calibrate import Calibration, calibrate, recalibrate
    from labctl.procedures.common import calibration_arrays, calibration_progress

    from labctl.runs import plan as P

    hw = ctx.session
    run = ctx.run
    cal_file: Path | None = None
    if ctx.resume is not None:
        wanted = ((ctx.resume.meta.get("feedback") or {}).get("engine") or {}).get("calibration_sha256")
        for art in reversed(run.record.get("artifacts") or []):
            if art["kind"] == "calibration" and art.get("sha256") == wanted and Path(art["path"]).is_file():
                cal_file = Path(art["path"])
                break
        if cal_file is None:
            raise FileNotFoundError(f"{run.path}: the calibration {wanted} of the checkpoint is not on disk")
    elif calibration is not None:
        cal_file = Path(calibration)
    else:
        made = [a for a in run.record.get("artifacts") or [] if a["kind"] == "calibration"
                and a.get("note") == "made by this run" and Path(a["path"]).is_file()]
        cal_file = Path(made[-1]["path"]) if made else None
    if cal_file is None:
        ctx.say("no --calibration given: calibrating the bench first")
        cal = calibrate(hw, progress=calibration_progress(ctx, hw.n_channels))
        cal_file = cal.save(run.path / f"calibration-{cal.sha256[:12]}.json")
        yield P.Artifact("calibration", cal_file, cal.sha256, "made by this run")
        yield from ctx.within("calibration", calibration_arrays(cal))
    else:
        cal = Calibration.load(cal_file, hw)
        if not any(a["kind"] == "calibration" and a.get("sha256") == cal.sha256
                   for a in run.record.get("artifacts") or []):
            yield P.Artifact("calibration", cal_file, cal.sha256, "used by this run")
    run.record["hardware"] = {"bench_file": {"path": (run.record.get("bench") or {}).get("path"),
                                             "sha256": hw.bench_sha256},
                              "instruments": dict(hw.identities),
                              "calibration": {"path": str(Path(cal_file).resolve()), "sha256": cal.sha256},
                              "calibrations": (run.record.get("hardware") or {}).get("calibrations", [])}
    run.write()

    def recalibrate_step(previous: Any, scope: str = "full") -> Any:
        """A recalibration of this run (the replaced calibration's options), partial (``scope="weights"``: heater
        model kept) or full, as the drift steps ask; saved and recorded."""
        ctx.say(f"drift beyond the recalibration level: recalibrating through the instruments ({scope})")
        new_cal = recalibrate(hw, previous, progress=calibration_progress(ctx, hw.n_channels, "recalibrate"),
                              scope=scope)  # type: ignore[arg-type]
        out = new_cal.save(run.path / f"calibration-{new_cal.sha256[:12]}.json")
        run.record.setdefault("artifacts", []).append({"kind": "calibration", "path": str(out.resolve()),
                                                       "sha256": new_cal.sha256, "note": "recalibration (drift)"})
        run.record["hardware"]["calibrations"].append({"path": str(out.resolve()), "sha256": new_cal.sha256,
                                                       "reason": "drift", "scope": scope})
        run.write()
        return new_cal

    feedback, drift = photonic_projector(exp, n_out, hw, cal, recalibrate_step)
    return feedback, drift, feedback.engine


def _register() -> Any:
    from labctl.runs import plan as P

    return P.register(P.Plan(
        name="train", help="train a network (BP, DFA or photonic DFA) in a run folder; resumable",
        description="Backpropagation, DFA, or DFA whose B e the chip computes (photonic-dfa: through the instruments, "
                    "or the emulator directly with --path fast). A row per mini-batch and per epoch goes into the "
                    "run's data.h5 as the run goes; checkpoints every mini-batch through the instruments, else every "
                    "--checkpoint-every mini-batches or --checkpoint-s seconds and at every epoch's end.",
        params=(
            P.Param("dataset", str, "mnist5k", "mnist5k, digits, or a local MNIST file/folder (IDX files or an NPZ)"),
            P.Param("method", str, "dfa", "training method", choices=METHODS),
            P.Param("path", str, None, "photonic-dfa: through the instruments (stack, the default) or the emulator "
                    "directly (fast)", choices=("stack", "fast")),
            P.Param("calibration", str, None, "photonic-dfa: calibration file or calibrate run folder (default: "
                    "calibrate first)", metavar="FILE"),
            P.Param("epochs", int, 10, "epochs to train to (on --resume: train further)",
                    min=RANGES["epochs"][0], max=RANGES["epochs"][1], on_resume=True),
            P.Param("seed", int, 0, "master seed (model, shuffle, feedback matrices, noise)", min=0,
                    max=P.SEED_MAX),
            P.Param("hidden", hidden_sizes, (800, 800), "hidden layer sizes", metavar="N,N"),
            P.Param("activation", str, "relu", "hidden activation", choices=("relu", "tanh")),
            P.Param("lr", float, 0.01, "learning rate (SGD, momentum 0.9)", min=RANGES["lr"][0],
                    exclusive_min=RANGES["lr"][2], max=RANGES["lr"][1]),
            P.Param("batch_size", int, 64, "mini-batch size", min=RANGES["batch_size"][0],
                    max=RANGES["batch_size"][1]),
            P.Param("n_train", int, None, "use only the first N training samples",
                    min=RANGES["n_train"][0], max=RANGES["n_train"][1]),
            P.Param("n_test", int, None, "use only the first N test samples", min=RANGES["n_test"][0],
                    max=RANGES["n_test"][1]),
            P.Param("checkpoint_every", int, 20, "mini-batches between checkpoints (the instrument path: every one)",
                    min=0, max=1_000_000),
            P.Param("checkpoint_s", float, 60.0, "at most this long between checkpoints", unit="s", min=1.0,
                    max=86_400.0),
            P.Param("noise", bool, False, "dfa: Filipovich et al.'s photonic noise model on B e (std 0.618, mean "
                    "0.03)", flag=True),
            P.Param("order", str, "auto", "photonic-dfa: tile-major, encoding-major, or the cheaper by measured "
                    "unit costs", choices=("auto", "tile", "sample")),
            P.Param("drift_every", int, 50, "photonic-dfa: mini-batches between drift checks (0: never)", min=0,
                    max=1_000_000),
            P.Param("refine_iterations", int, None, "photonic-dfa: closed-loop corrections of the configurations' "
                    "weights before the first batch (default 3; 0: the weight model alone)", min=0, max=100),
            P.Param("drop_weak_rings", bool, False, "photonic-dfa: rings with a narrow weight range carry nothing on "
                    "every bank (their channels go to other banks: more configurations, smaller product error)",
                    flag=True),
        ),
        body=train_body, needs_bench=lambda v: v["method"] == "photonic-dfa", resumable=True,
        preflight=_train_preflight, dry_check=_train_dry_check, summarize=_summarize_plan))


def _summarize_plan(report: dict[str, Any]) -> str:
    text = summarize(report)
    if report.get("expectation"):
        text += f"\n  note: {report['expectation']}"
    return text


TRAIN = _register()
