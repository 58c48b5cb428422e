"""Studies on Dask: the same numbers as the serial run, failing jobs recorded, resume, an external scheduler, the
CLI and the report. Small chips (1 bank x 2 rings, about 2 s per calibrate-verify job) and few jobs."""

from __future__ import annotations

import csv
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("distributed")
pytest.importorskip("tqdm")

from labctl.cli.main import main  # noqa: E402
from labctl.runs.record import Run  # noqa: E402
from labctl.study.runner import run_study  # noqa: E402
from labctl.study.spec import load_spec  # noqa: E402

REPO = Path(__file__).resolve().parents[3]

CAL_SPEC = """
[study]
name = "small-yield"
procedure = "calibrate-verify"
bench = "small_bench.toml"
[params]
"verify.n" = 3
"verify.refine" = false
[grid]
"chip.seed" = [0, 1, 2]
"""

USER_SPEC = """
[study]
name = "squares"
procedure = "tests.labctl.study.procedures:square"
[grid]
x = [1, 2, 3, 4]
[units]
x = "mm"
y = "mm^2"
"""


def _numbers(rows: list[dict[str, Any]]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(r["job"], r["status"], r["figures"]) for r in rows]


def test_local_cluster_gives_the_serial_numbers(write_spec, tmp_path: Path) -> None:
    spec = load_spec(write_spec(CAL_SPEC))
    serial = run_study(spec, root=tmp_path / "serial", serial=True, progress=False)
    dask = run_study(spec, root=tmp_path / "dask", workers=2, progress=False)
    assert [r["status"] for r in serial.rows] == ["finished"] * 3
    assert _numbers(dask.rows) == _numbers(serial.rows)          # same seeds, same numbers, to the last bit
    assert len({r["worker"] for r in dask.rows}) == 2            # both workers took jobs
    assert all(r["worker"].rsplit(":", 1)[1] != str(os.getpid()) for r in dask.rows)
    for r in dask.rows:                                          # each job is a normal run with its own record
        run = Run.open(dask.path / r["run"])
        assert run.status == "finished" and run.record["figures"] == r["figures"]
        assert run.record["hardware"]["bench_file"]["path"].endswith("bench.toml")
        assert run.record["environment"]["blas_threads"] in (None, {}) or \
            set(run.record["environment"]["blas_threads"].values()) == {1}
    study = Run.open(dask.path)
    assert study.status == "finished" and study.record["study_result"]["finished"] == 3
    with open(dask.path / "results.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert [float(t["true_bits"]) for t in table] == [r["figures"]["true_bits"] for r in serial.rows]
    assert table[0]["run"] == dask.rows[0]["run"] and table[0]["chip.seed"] == "0"


@pytest.fixture(scope="module")
def external_cluster(tmp_path_factory: pytest.TempPathFactory):
    """`dask scheduler` and one `dask worker` started as separate processes on 127.0.0.1, always killed."""
    from distributed import Client

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    dask_cli = str(Path(sys.executable).with_name("dask"))
    log_dir = tmp_path_factory.mktemp("dask-logs")
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    procs = []
    try:
        procs.append(subprocess.Popen([dask_cli, "scheduler", "--host", "127.0.0.1", "--port", str(port),
                                       "--no-dashboard", "--idle-timeout", "300"], cwd=REPO, env=env,
                                      stdout=subprocess.DEVNULL, stderr=open(log_dir / "scheduler.log", "w")))
        procs.append(subprocess.Popen([dask_cli, "worker", address, "--nthreads", "1", "--nworkers", "1",
                                       "--no-dashboard", "--death-timeout", "60"], cwd=REPO, env=env,
                                      stdout=subprocess.DEVNULL, stderr=open(log_dir / "worker.log", "w")))
        deadline = time.monotonic() + 60
        while True:
            try:
                with Client(address, timeout="5s") as client:
                    client.wait_for_workers(1, timeout=max(1.0, deadline - time.monotonic()))
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        yield address
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=10)


def test_external_scheduler_runs_the_study_unchanged(write_spec, tmp_path: Path, external_cluster: str) -> None:
    spec = load_spec(write_spec(CAL_SPEC))
    jobs_now = spec.jobs[:1]
    one = load_spec(write_spec(CAL_SPEC.replace("[0, 1, 2]", "[0]"), "one.toml"))
    assert one.jobs[0].params == jobs_now[0].params
    serial = run_study(one, root=tmp_path / "serial", serial=True, progress=False)
    remote = run_study(one, root=tmp_path / "remote", scheduler=external_cluster, progress=False)
    assert _numbers(remote.rows) == _numbers(serial.rows)
    assert remote.rows[0]["worker"].rsplit(":", 1)[1] != str(os.getpid())
    assert Run.open(remote.path).record["study_session"]["where"] == external_cluster


def test_failing_job_is_recorded_and_the_study_goes_on(write_spec, tmp_path: Path, external_cluster: str) -> None:
    outcome = run_study(load_spec(write_spec(USER_SPEC)), root=tmp_path, scheduler=external_cluster,
                        progress=False)
    by_x = {r["params"]["x"]: r for r in outcome.rows}
    assert [by_x[x]["status"] for x in (1, 2, 3, 4)] == ["finished", "finished", "failed", "finished"]
    assert by_x[4]["figures"]["y"] == 16
    bad = by_x[3]
    assert bad["error"] == "ValueError: x = 3 is refused (a job that fails on purpose)"
    run = Run.open(outcome.path / bad["run"])
    assert run.status == "failed" and run.record["error"]["type"] == "ValueError"
    assert "refused" in (outcome.path / "jobs" / bad["job"] / "error.txt").read_text()
    assert Run.open(outcome.path).status == "finished" and outcome.failed == 1


def test_interrupted_study_resumes_and_skips_finished_jobs(write_spec, tmp_path: Path) -> None:
    spec = load_spec(write_spec(USER_SPEC.replace("[1, 2, 3, 4]", "[1, 2, 4, 5]")))
    seen: list[str] = []

    def interrupt_after_two(row: dict[str, Any]) -> None:
        seen.append(row["job"])
        if len(seen) == 2:
            raise KeyboardInterrupt     # as Ctrl-C would, between two jobs

    with pytest.raises(KeyboardInterrupt):
        run_study(spec, root=tmp_path, serial=True, progress=False, on_row=interrupt_after_two)
    first = run_study.__globals__["find_study"](spec, tmp_path)
    assert Run.open(first).status == "interrupted"
    done_before = {j: (first / "jobs" / j / "job.json").read_text() for j in seen}
    outcome = run_study(spec, root=tmp_path, serial=True, progress=False)
    assert outcome.path == first and outcome.skipped == 2 and outcome.ran == 2
    assert {j: (first / "jobs" / j / "job.json").read_text() for j in seen} == done_before
    for j in seen:                                   # not run again: still one run folder each
        assert len([p for p in (first / "jobs" / j).iterdir() if (p / "run.json").is_file()]) == 1
    record = Run.open(first).record
    assert record["status"] == "finished" and len(record["resumes"]) == 1
    assert [r["figures"]["y"] for r in outcome.rows] == [1, 4, 16, 25]


def test_cli_study_then_report(write_spec, tmp_path: Path, external_cluster: str,
                               capsys: pytest.CaptureFixture[str]) -> None:
    spec = write_spec(USER_SPEC)
    assert main(["study", str(spec), "--scheduler", external_cluster, "--data-dir", str(tmp_path / "d"),
                 "--json", "--no-progress"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert (result["jobs"], result["finished"], result["failed"]) == (4, 3, 1)
    folder = Path(result["study"])
    assert Path(result["tables"]["csv"]).is_file()
    assert main(["report", str(folder), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    plots = [Path(p) for p in report["plots"]]
    assert {p.name for p in plots} == {"hist-y.png", "y-vs-x.png", "hist-pid.png", "pid-vs-x.png"}
    assert all(p.stat().st_size > 5000 for p in plots)
    assert report["cases"][""]["figures"]["y"]["mean"] == pytest.approx((1 + 4 + 16) / 3)
    assert "| x [mm] | jobs | failed |" in Path(report["summary_md"]).read_text()
    with pytest.raises(SystemExit) as info:
        main(["report", str(tmp_path)])
    assert info.value.code == 2


def test_without_dask_the_study_command_says_how_to_install_it(write_spec) -> None:
    code = ("import sys; sys.modules['distributed'] = None; from labctl.cli.main import main; "
            f"sys.exit(main(['study', {str(write_spec(USER_SPEC))!r}]))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == ["labctl study: labctl study needs Dask: pip install "
                                                "'labctl[cluster]' (dask[distributed] and tqdm)"]
