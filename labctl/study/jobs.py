"""One study job, as it runs on a worker: its bench file, the procedure, its own run record, its table row.

A job is a normal labctl run: calibrate-verify and user procedures get a run folder made here (``run.json`` with
the parameters, both procedure reports and the figures); training runs make their own through ``run_training``.
All of it lives in the job's folder ``<study>/jobs/<index>-<hash>/``, with the job's bench file and ``job.json``
(the job's table row, written last and atomically: its presence is what tells a resumed study the job is done).
A job that raises is recorded as failed with its error; only Ctrl-C / SIGTERM (KeyboardInterrupt, SystemExit)
get through, as the study's interruption.

BLAS runs on one thread per job: the study gets its parallelism from jobs, and float results (so the table's
numbers) must not depend on how many jobs share a machine.
"""

from __future__ import annotations

import importlib
import logging
import os
import platform
import socket
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labctl.runs.record import RUN_FILE, Run, atomic_write_json

log = logging.getLogger(__name__)

JOB_FILE = "job.json"
BENCH_FILE = "bench.toml"
LOG_FILE = "job.log"


@dataclass(frozen=True)
class JobContext:
    """What a user procedure gets besides its parameters: its folder, its bench file, its run record."""

    job_dir: Path
    bench_path: Path | None
    run: Run


#: A user procedure: ``fn(params, context) -> figures`` (a flat dict of numbers or strings for the table).
UserProcedure = Callable[[dict[str, Any], JobContext], Mapping[str, Any]]


def load_procedure(path: str) -> UserProcedure:
    """``package.module:function`` -> the function; ValueError (one line) when it cannot be imported."""
    module_name, _, attr = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"procedure {path!r}: cannot import {module_name!r}: {exc}") from None
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise ValueError(f"procedure {path!r}: {module_name} has no function {attr!r}")
    return fn  # type: ignore[no-any-return]


def nested(params: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    """``{"experiment.train.epochs": 3}`` -> ``{"train": {"epochs": 3}}`` for ``prefix="experiment"``."""
    out: dict[str, Any] = {}
    for key, value in params.items():
        if not key.startswith(prefix + "."):
            continue
        parts = key[len(prefix) + 1:].split(".")
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return out


def experiment_from_params(params: Mapping[str, Any]) -> Any:
    """The training job's ``Experiment`` (ValueError naming the field when it is not one)."""
    from labctl.dfa.training import Experiment

    fields = nested(params, "experiment")
    try:
        return Experiment.from_dict(fields)
    except TypeError as exc:
        raise ValueError(f"experiment: {exc}") from None


def _calibrate_verify(params: Mapping[str, Any], job_dir: Path, bench: Path | None, info: dict[str, Any]
                      ) -> tuple[Path, dict[str, Any]]:
    from labctl.procedures.calibrate import run_calibration
    from labctl.procedures.verify import run_verification

    run = Run.create("calibrate-verify", {"study": info, "params": dict(params)}, root=job_dir, bench_file=bench)
    with run:
        cal_kw = nested(params, "calibrate")
        ver_kw = nested(params, "verify")
        cal = run_calibration(bench, run.path / "calibration.json", **cal_kw)
        run.update(calibration=cal)
        ver = run_verification(bench, cal["calibration"], **ver_kw)
        run.update(verification=ver)
        quality = cal.get("fit_quality", {})
        figures = {"bits": ver["bits"], "true_bits": ver.get("true_bits"), "rmse": ver["rmse"],
                   "true_rmse": ver.get("true_rmse"), "max_error": ver["max_error"],
                   "true_max_error": ver.get("true_max_error"), "span": ver["span"],
                   "usable_rings": quality.get("usable_rings"), "unusable_rings": len(quality.get("unusable", [])),
                   "cal_time_s": cal["projected_time_s"], "cal_transactions": cal["transactions"],
                   "verify_time_s": ver.get("elapsed_s")}
        run.update(figures=figures)
    return run.path, figures


def _train(params: Mapping[str, Any], job_dir: Path, bench: Path | None, info: dict[str, Any]
           ) -> tuple[Path, dict[str, Any]]:
    from labctl.procedures.train import run_training

    exp = experiment_from_params(params)
    report = run_training(exp, bench_path=bench if exp.feedback == "photonic" else None,
                          calibration=params.get("calibration"), root=job_dir)
    run = Run.open(report["run"])
    run.update(study=info)
    hist, hw = report["history"], report.get("hardware") or {}
    acc = report.get("test_accuracy")
    figures: dict[str, Any] = {"test_accuracy_pct": None if acc is None else 100.0 * acc,
                               "train_loss": report.get("train_loss"), "epochs": report["epochs"],
                               "train_time_s": sum(h.get("time_s") or 0.0 for h in hist)}
    for key in ("projected_time_s", "product_error_mean", "product_error_std", "drift_checks", "recalibrations"):
        if key in hw:
            figures[key] = hw[key]
    run.update(figures=figures)
    return run.path, figures


def _user(procedure: str, params: Mapping[str, Any], job_dir: Path, bench: Path | None, info: dict[str, Any]
          ) -> tuple[Path, dict[str, Any]]:
    fn = load_procedure(procedure)
    kind = procedure.rpartition(":")[2]
    run = Run.create(kind, {"study": info, "procedure": procedure, "params": dict(params)}, root=job_dir,
                     bench_file=bench)
    with run:
        figures = {str(k): v.item() if hasattr(v, "item") else v   # numpy scalars as plain numbers
                   for k, v in dict(fn(dict(params), JobContext(job_dir, bench, run))).items()}
        run.update(figures=figures)
    return run.path, figures


def latest_run(job_dir: Path) -> Path | None:
    """The newest run folder in a job folder (a failed training run made its own before raising)."""
    runs = [p for p in job_dir.iterdir() if (p / RUN_FILE).is_file()] if job_dir.is_dir() else []
    return max(runs, key=lambda p: (p / RUN_FILE).stat().st_mtime) if runs else None


def execute(payload: Mapping[str, Any]) -> dict[str, Any]:
    """Run one job (a plain-dict payload from the study, so any dask worker can take it); returns its row."""
    from threadpoolctl import threadpool_limits

    started = time.time()
    t0 = time.perf_counter()
    study_dir = Path(payload["study_dir"])
    job_dir = study_dir / "jobs" / payload["job"]
    job_dir.mkdir(parents=True, exist_ok=True)
    params: dict[str, Any] = dict(payload["params"])
    bench: Path | None = None
    if payload.get("bench_text") is not None:
        bench = job_dir / BENCH_FILE
        bench.write_text(payload["bench_text"])
    info = {"study": str(study_dir), "job": payload["job"], "case": payload["case"]}
    procedure = payload["procedure"]
    status, error, figures, run_path = "finished", None, {}, None
    # the job's log lines go to its folder (on a worker they would otherwise interleave on the worker's stderr)
    handler = logging.FileHandler(job_dir / LOG_FILE)
    handler.setLevel(logging.INFO)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        with threadpool_limits(1, user_api="blas"):
            if procedure == "calibrate-verify":
                run_path, figures = _calibrate_verify(params, job_dir, bench, info)
            elif procedure == "train":
                run_path, figures = _train(params, job_dir, bench, info)
            else:
                run_path, figures = _user(procedure, params, job_dir, bench, info)
    except Exception as exc:   # a failing job is a result of the study, not the end of it
        status, error = "failed", f"{type(exc).__name__}: {exc}"
        log.info("job %s failed: %s", payload["job"], error)
        (job_dir / "error.txt").write_text("".join(traceback.format_exception(exc)))
        run_path = latest_run(job_dir)
    finally:
        root.removeHandler(handler)
        handler.close()
    row = {"job": payload["job"], "index": payload["index"], "case": payload["case"], "status": status,
           "error": error, "run": None if run_path is None else str(Path(run_path).relative_to(study_dir)),
           "wall_s": time.perf_counter() - t0, "started": started, "ended": time.time(),
           "worker": f"{platform.node() or socket.gethostname()}:{os.getpid()}",
           "params": params, "figures": figures}
    atomic_write_json(job_dir / JOB_FILE, row)
    return row
