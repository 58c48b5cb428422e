"""Running a study: its folder and run record, the jobs on a Dask cluster, resume, progress, the table.

The study folder is itself a run folder (``<data>/study-<name>-<stamp>-<hex>/run.json``, kind ``study-<name>``)
holding the spec it was started with, the jobs' folders, the table and a lock. Running the same spec again in the
same data directory resumes the newest study of that spec (same file content): jobs with a ``job.json`` are done
and skipped (failed ones too, unless ``retry_failed``), a job interrupted in the middle is run again and its stale
run marked ``interrupted``. Jobs go to Dask (``dask.distributed``): a LocalCluster started here (worker processes,
one thread each) or any existing scheduler, used as it is. Dask only schedules; every job is the same function
(``labctl.study.jobs.execute``) the serial path runs, so results do not depend on where they ran.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from labctl.runs.record import RUN_FILE, Run, RunRecordError, atomic_write_json, data_dir, read_record
from labctl.study.benchfile import job_bench_text, resolve_bench
from labctl.study.jobs import JOB_FILE, execute, experiment_from_params, latest_run, load_procedure
from labctl.study.spec import StudySpec
from labctl.study.table import write_tables

log = logging.getLogger(__name__)

SPEC_COPY = "spec.toml"
LOCK_FILE = ".study.lock"
INSTALL_HINT = "labctl study needs Dask: pip install 'labctl[cluster]' (dask[distributed] and tqdm)"
#: Worker environment: one thread for every BLAS/OpenMP pool (parallelism comes from jobs).
SINGLE_THREAD_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
                     "NUMBA_NUM_THREADS": "1"}


class StudyBusyError(RuntimeError):
    """Another process is running this study folder."""


def cluster_available() -> bool:
    try:
        import distributed  # noqa: F401
        import tqdm  # noqa: F401
    except ImportError:
        return False
    return True


@dataclass
class StudyOutcome:
    """What a study run did: its folder, every row (old and new), counts, timing, table files."""

    path: Path
    rows: list[dict[str, Any]]
    ran: int
    skipped: int
    tables: dict[str, str]
    timing: dict[str, Any] = field(default_factory=dict)

    @property
    def failed(self) -> int:
        return sum(1 for r in self.rows if r["status"] == "failed")

    @property
    def finished(self) -> int:
        return sum(1 for r in self.rows if r["status"] == "finished")


def payloads(spec: StudySpec) -> list[dict[str, Any]]:
    """Each job as a plain dict for a worker, with its bench file text; checks every job before anything runs."""
    if spec.procedure not in ("calibrate-verify", "train"):
        load_procedure(spec.procedure)
    out = []
    base_dir = spec.source.parent
    for job in spec.jobs:
        label = f"{spec.source}: job {job.index}"
        needs_bench = spec.procedure != "train" or any(k.startswith("chip.") for k in job.params) \
            or job.params.get("experiment.feedback") == "photonic"
        bench_text = None
        if needs_bench or "bench" in job.params:
            base = resolve_bench(job.params.get("bench", spec.bench), base_dir)
            bench_text = job_bench_text(base, job.params, label)
        if spec.procedure == "train":
            try:
                exp = experiment_from_params(job.params)
                if exp.feedback == "photonic":
                    from labctl.procedures.train import photonic_options

                    photonic_options(exp)
            except ValueError as exc:
                raise ValueError(f"{label}: {exc}") from None
        out.append({"job": job.id, "index": job.index, "case": job.case, "params": job.params,
                    "procedure": spec.procedure, "bench_text": bench_text})
    return out


def find_study(spec: StudySpec, root: Path) -> Path | None:
    """The newest study folder of this spec (same content) under ``root``."""
    found = []
    for path in root.glob(f"study-{spec.name}-*"):
        try:
            record = read_record(path)
        except RunRecordError:
            continue
        study = (record.get("params") or {}).get("study")
        if isinstance(study, dict) and study.get("sha256") == spec.sha256:
            found.append((record.get("created", ""), path))
    return max(found)[1] if found else None


@contextlib.contextmanager
def study_lock(path: Path) -> Iterator[None]:
    """One process per study folder (a second one would run the same jobs twice)."""
    with open(path / LOCK_FILE, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            raise StudyBusyError(f"study {path} is being run by another process ({f.read().strip()})") from None
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()}")
        f.flush()
        yield


def done_rows(study_dir: Path, jobs: list[dict[str, Any]], retry_failed: bool) -> dict[str, dict[str, Any]]:
    """Rows of jobs already done; the stale runs of jobs interrupted in the middle are marked interrupted."""
    done = {}
    for p in jobs:
        job_dir = study_dir / "jobs" / p["job"]
        file = job_dir / JOB_FILE
        if file.is_file():
            row = json.loads(file.read_text())
            if row["status"] == "finished" or not retry_failed:
                done[p["job"]] = row
                continue
        if job_dir.is_dir():
            for run_dir in [d for d in job_dir.iterdir() if (d / RUN_FILE).is_file()]:
                run = Run.open(run_dir)
                if run.status == "running":
                    run.finish("interrupted")
    return done


def timing(rows: list[dict[str, Any]], submitted: float, finished: float, workers: int) -> dict[str, Any]:
    """Where the study's wall time went: jobs, gaps between jobs on a worker, idle workers at the end."""
    if not rows:
        return {}
    walls = [r["wall_s"] for r in rows]
    by_worker: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by_worker.setdefault(r["worker"], []).append(r)
    gaps = []
    for worker_rows in by_worker.values():
        worker_rows.sort(key=lambda r: r["started"])
        gaps += [b["started"] - a["ended"] for a, b in zip(worker_rows, worker_rows[1:])]
    makespan = finished - submitted
    busy = sum(walls)
    return {"jobs": len(rows), "workers": workers, "makespan_s": makespan, "job_wall_s_sum": busy,
            "job_wall_s_mean": busy / len(rows), "first_start_s": min(r["started"] for r in rows) - submitted,
            "gap_between_jobs_s_mean": sum(gaps) / len(gaps) if gaps else None,
            "overhead_per_job_s": (makespan * workers - busy) / len(rows),
            "note": "overhead_per_job_s = (makespan x workers - sum of job wall times) / jobs: scheduling, "
                    "result transfer and workers idle at the end; gap_between_jobs_s_mean: dispatch gaps alone"}


class Progress:
    """tqdm bar on stderr: jobs done (this and earlier sessions), failed, ETA from this session's rate."""

    def __init__(self, name: str, total: int, done: int, failed: int, enabled: bool, stream: TextIO) -> None:
        from tqdm import tqdm

        self.failed = failed
        self.bar = tqdm(total=total, initial=done, desc=f"study {name}", unit="job", disable=not enabled,
                        file=stream, dynamic_ncols=True, smoothing=0.1)
        self.bar.set_postfix(failed=failed)

    def __call__(self, row: Mapping[str, Any]) -> None:
        if row["status"] == "failed":
            self.failed += 1
            self.bar.set_postfix(failed=self.failed, refresh=False)
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


def open_study(spec: StudySpec, root: Path, new: bool) -> tuple[Run, bool]:
    """(the study's run, whether it is resumed)."""
    existing = None if new else find_study(spec, root)
    if existing is not None:
        return Run.open(existing), True
    run = Run.create(f"study-{spec.name}", {"study": spec.to_record()}, root=root)
    (run.path / SPEC_COPY).write_text(spec.text)
    return run, False


@contextlib.contextmanager
def dask_client(scheduler: str | None, workers: int) -> Iterator[Any]:
    """A client on ``scheduler`` (used as it is), or on a LocalCluster of ``workers`` one-thread processes."""
    import dask
    from distributed import Client, LocalCluster

    if scheduler is not None:
        try:
            client = Client(scheduler, timeout="10s")
        except OSError as exc:
            raise ValueError(f"--scheduler {scheduler}: cannot connect: {exc}") from None
        with client:
            yield client
        return
    environ = {**dask.config.get("distributed.nanny.pre-spawn-environ", {}), **SINGLE_THREAD_ENV}
    # environment set before numpy is imported; no statistical profiler sampling the job's thread every 10 ms
    with dask.config.set({"distributed.nanny.pre-spawn-environ": environ, "distributed.worker.profile.enabled": False}):
        # no dashboard; the scheduler's HTTP endpoint on a free local port (never 8787: other clusters run here)
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                               dashboard_address=None, silence_logs=logging.ERROR, env=SINGLE_THREAD_ENV,
                               scheduler_kwargs={"dashboard": False, "dashboard_address": "127.0.0.1:0"})
    with cluster, Client(cluster) as client:
        yield client


def run_study(spec: StudySpec, *, root: str | os.PathLike[str] | None = None, scheduler: str | None = None,
              workers: int | None = None, serial: bool = False, new: bool = False, retry_failed: bool = False,
              progress: bool = True, stream: TextIO | None = None,
              on_row: Callable[[dict[str, Any]], None] | None = None) -> StudyOutcome:
    """Run (or resume) ``spec``; ``serial`` runs the jobs one by one in this process (no Dask), for reference.

    ``on_row`` is called with each new row as it arrives (after it is recorded). Ctrl-C stops the study: it is
    marked interrupted, the table holds every job done so far, and running it again continues.
    """
    jobs = payloads(spec)
    root_dir = data_dir(root).resolve()
    run, resumed = open_study(spec, root_dir, new)
    n_workers = 1 if serial else int(workers or os.cpu_count() or 1)
    with study_lock(run.path):
        for p in jobs:
            p["study_dir"] = str(run.path)
        rows = done_rows(run.path, jobs, retry_failed)
        pending = [p for p in jobs if p["job"] not in rows]
        if resumed:
            run.record["resumes"].append({"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "done": len(rows),
                                          "previous_status": run.status})
            run.update(status="running", error=None)
        skipped = len(rows)
        bar = Progress(spec.name, len(jobs), skipped, sum(r["status"] == "failed" for r in rows.values()),
                       progress, stream or sys.stderr)
        new_rows: list[dict[str, Any]] = []

        def record(row: dict[str, Any]) -> None:
            rows[row["job"]] = row
            new_rows.append(row)
            if len(new_rows) % 10 == 0:     # job.json files are the record; the table follows them
                write_tables(run.path, rows.values())
            bar(row)
            if on_row is not None:
                on_row(row)

        submitted = time.time()
        where = "serial" if serial else scheduler or f"LocalCluster({n_workers} workers)"
        run.update(study_session={"where": where, "workers": n_workers, "pending": len(pending),
                                  "skipped": skipped})
        try:
            if serial:
                for p in pending:
                    record(execute(p))
            elif pending:
                with dask_client(scheduler, n_workers) as client:
                    if scheduler is not None:
                        n_workers = len(client.scheduler_info().get("workers", {})) or n_workers
                    submitted = time.time()
                    _run_on_dask(client, pending, run.path, record)
            finished_at = time.time()
        except BaseException as exc:
            tables = write_tables(run.path, rows.values())
            bar.close()
            run.update(tables=tables, study_timing=timing(new_rows, submitted, time.time(), n_workers))
            run.finish("interrupted" if isinstance(exc, KeyboardInterrupt | SystemExit) else "failed", exc)
            raise
        bar.close()
        tables = write_tables(run.path, rows.values())
        stats = timing(new_rows, submitted, finished_at, n_workers)
        all_rows = sorted(rows.values(), key=lambda r: r["index"])
        run.update(tables=tables, study_timing=stats,
                   study_result={"jobs": len(all_rows), "finished": sum(r["status"] == "finished" for r in all_rows),
                                 "failed": sum(r["status"] == "failed" for r in all_rows), "ran_now": len(new_rows),
                                 "skipped": skipped})
        run.finish("finished")
    return StudyOutcome(path=run.path, rows=all_rows, ran=len(new_rows), skipped=skipped, tables=tables,
                        timing=stats)


def _run_on_dask(client: Any, pending: list[dict[str, Any]], study_dir: Path,
                 record: Callable[[dict[str, Any]], None]) -> None:
    from distributed import as_completed

    futures = {client.submit(execute, p, key=f"labctl-study-{study_dir.name}-{p['job']}", pure=False): p
               for p in pending}
    try:
        for future in as_completed(futures):
            p = futures[future]
            try:
                row = future.result()
            except Exception as exc:    # the worker died (or the job could not be sent): still a recorded failure
                row = _lost_job_row(p, study_dir, exc)
            record(row)
    except BaseException:
        client.cancel(list(futures))
        raise


def _lost_job_row(p: Mapping[str, Any], study_dir: Path, exc: BaseException) -> dict[str, Any]:
    job_dir = study_dir / "jobs" / p["job"]
    run_path = latest_run(job_dir)
    now = time.time()
    row = {"job": p["job"], "index": p["index"], "case": p["case"], "status": "failed",
           "error": f"{type(exc).__name__}: {exc}",
           "run": None if run_path is None else str(run_path.relative_to(study_dir)), "wall_s": 0.0,
           "started": now, "ended": now, "worker": "lost", "params": p["params"], "figures": {}}
    job_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(job_dir / JOB_FILE, row)
    return row
