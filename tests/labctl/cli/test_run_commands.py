"""Procedures as recorded runs through the command line: records and HDF5 contents, one-line errors, dry checks,
reports, and (in subprocesses) Ctrl-C / SIGTERM pauses and SIGKILL followed by --resume.

The bench is the small emulated one of the calibration tests (2 banks x 4 rings, 4 channels); training runs are
digital DFA on digits with a small hidden layer, so the signals land mid-run without long waits.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import h5py
import numpy as np
import pytest

from labctl.cli.main import main
from tests.calibration.test_calibrate import bench_file

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """A calibrate run and a verify run of the small bench, made once through the command line."""
    tmp = tmp_path_factory.mktemp("lab")
    mp = pytest.MonkeyPatch()
    mp.setenv("LABCTL_LOCK_DIR", str(tmp / "locks"))
    mp.setenv("LABCTL_DATA", str(tmp / "runs"))
    bench = bench_file(tmp / "bench.toml", seed=1)
    assert main(["calibrate", "--bench", str(bench), "--n-configs", "6", "--quiet"]) == 0
    cal_run = next((tmp / "runs").glob("calibrate-*"))
    assert main(["verify", "--bench", str(bench), "--calibration", str(cal_run), "--n", "4", "--quiet"]) == 0
    ver_run = next((tmp / "runs").glob("verify-*"))
    yield SimpleNamespace(tmp=tmp, bench=bench, cal_run=cal_run, ver_run=ver_run, runs=tmp / "runs")
    mp.undo()


def _record(run: Path) -> dict:
    return json.loads((run / "run.json").read_text())


def test_calibrate_record_holds_metadata_and_raw_data(lab: SimpleNamespace) -> None:
    rec = _record(lab.cal_run)
    assert rec["procedure"] == "calibrate" and rec["status"] == "finished"
    assert "--n-configs 6" in rec["command"]
    assert rec["params"]["n_configs"] == 6 and rec["parameters"]["n_levels"]["default"] == 40
    assert len(rec["bench"]["sha256"]) == 64 and rec["bench"]["path"] == str(lab.bench.resolve())
    inst = rec["instruments"]
    assert set(inst["identities"]) >= {"heaters", "meter", "laser0"}
    for when in ("start", "end"):          # every instrument in both snapshots, with its settings or why not
        assert set(inst[when]) >= set(inst["identities"])
        assert all("settings" in inst[when][name] for name in inst["identities"])
    assert inst["end"]["_safety"]["heater_drive_applied"] is not None
    assert rec["versions"]["labctl"] and rec["versions"]["h5py"] and rec["versions"]["numpy"]
    assert "git_commit" in rec["code"] and rec["seeds"] == {"seed": 0}
    seg = rec["segments"][-1]
    assert seg["wall_s"] > 0 and seg["bench_s"] > 10          # projected bench time of the emulated bench
    cal = [a for a in rec["artifacts"] if a["kind"] == "calibration"]
    assert cal and Path(cal[0]["path"]).is_file() and cal[0]["sha256"] == rec["result"]["calibration_sha256"]
    with h5py.File(lab.cal_run / "data.h5", "r") as h5:
        wl = h5["resonance_map/wavelength_m"][0]
        assert wl.size > 500 and np.all(np.diff(wl) > 0)
        assert h5["resonance_map/through"].shape == (1, wl.size, 2)
        assert h5["resonance_map/center_m"].shape == (1, 2, 4)
        assert h5["heater_steps/drive"].shape[1] == 8 and h5["heater_steps/shift_m"].shape == h5["heater_steps/drive"].shape
        assert h5["weight_sweeps/weight"].shape == (4, 6, 40, 2)        # one row per channel, appended
        k = h5["models/crosstalk"][()]
        assert k.shape == (8, 8) and np.all(np.diag(k) > 0)
        assert h5["models/crosstalk"].attrs["unit"].startswith("m/")


def test_verify_record_holds_every_vector(lab: SimpleNamespace) -> None:
    rec = _record(lab.ver_run)
    assert rec["status"] == "finished" and rec["result"]["n"] == 4
    assert any(a["kind"] == "calibration" and a["note"] == "verified by this run" for a in rec["artifacts"])
    with h5py.File(lab.ver_run / "data.h5", "r") as h5:
        target, measured = h5["verification/target"][()], h5["verification/measured"][()]
        assert target.shape == measured.shape == (4, 2, 4)
        rmse = float(np.sqrt(np.mean((measured - target) ** 2)))      # the readings' rms, noise included
        assert rmse == pytest.approx(rec["result"]["raw_rmse"], rel=1e-12)
        assert h5["verification/drive"].shape == (4, 8)
        assert h5["verification_truth/true_weights"].shape == (1, 4, 2, 4)
        # the repeated settings behind the precision figure are kept too
        repeats = rec["result"]["settings"] - rec["result"]["n"]
        assert repeats > 0 and h5["verification_repeats/measured"].shape == (repeats, 2, 4)
        assert h5["verification_repeats_truth/true_weights"].shape == (1, repeats, 2, 4)


def test_runs_and_show_list_the_records(lab: SimpleNamespace, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["runs", "--json", "--data-dir", str(lab.runs)]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["procedure"] for r in rows} >= {"calibrate", "verify"}
    assert all(r["status"] == "finished" for r in rows)
    assert main(["show", lab.ver_run.name, "--data-dir", str(lab.runs), "-v"]) == 0
    out = capsys.readouterr().out
    assert "verify, finished" in out and "verification/measured" in out and "bench time" in out


def test_report_writes_figures_and_a_page(lab: SimpleNamespace, capsys: pytest.CaptureFixture[str]) -> None:
    for run in (lab.cal_run, lab.ver_run):
        assert main(["report", str(run)]) == 0
    cal_figs = {p.name: p.stat().st_size for p in (lab.cal_run / "report").glob("*.png")}
    assert set(cal_figs) >= {"spectra.png", "heaters.png", "weights.png", "bench_time.png"}
    assert min(cal_figs.values()) > 15_000
    assert (lab.ver_run / "report" / "verification.png").stat().st_size > 15_000
    page = (lab.cal_run / "report" / "index.html").read_text()
    assert page.count("<img") == len(cal_figs) and "Heater tuning and crosstalk" in page and "calibrate" in page


@pytest.mark.parametrize("argv,needle", [
    (["verify", "--n", "0"], "--n: 0 is out of range (must be >= 1)"),
    (["train", "--lr", "-1"], "--lr: -1 is out of range (must be > 0)"),
    (["train", "--epochs", "x"], "--epochs: expected an integer, got 'x'"),
    (["train", "--hidden", "8,x"], "--hidden"),
    (["train", "--method", "dfa", "--path", "fast"], "--path applies to --method photonic-dfa only"),
    (["train", "--dataset", "/nonexistent/mnist.npz"], "/nonexistent/mnist.npz"),
    (["train", "--bogus"], "unrecognized arguments: --bogus"),
    (["verify", "--calibration", "/nonexistent.json"], "--calibration: /nonexistent.json does not exist"),
])
def test_bad_arguments_end_in_one_line_and_status_2(argv: list[str], needle: str, lab: SimpleNamespace,
                                                    tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    if argv[0] == "verify" and "--calibration" not in argv:
        argv = [*argv, "--calibration", str(lab.cal_run)]
    with pytest.raises(SystemExit) as exc:
        main([*argv, "--data-dir", str(tmp_path), "--bench", str(lab.bench)])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert needle in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not list(tmp_path.glob("*/run.json"))             # nothing started


def test_existing_calibration_is_not_overwritten_without_force(lab: SimpleNamespace, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    existing = lab.cal_run / "calibration.json"
    before = existing.read_bytes()
    with pytest.raises(SystemExit) as exc:
        main(["calibrate", "--bench", str(lab.bench), "--out", str(existing), "--data-dir", str(tmp_path)])
    assert exc.value.code == 2
    assert "--out" in capsys.readouterr().err and existing.read_bytes() == before
    assert not list(tmp_path.glob("*/run.json"))


def test_dry_check_counts_and_checks_without_touching_hardware(lab: SimpleNamespace, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["train", "--method", "photonic-dfa", "--bench", str(lab.bench), "--calibration", str(lab.cal_run),
                 "--dataset", "digits", "--hidden", "8", "--epochs", "1", "--dry-check", "--json",
                 "--data-dir", str(tmp_path)])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["violations"] == [] and out["counts"]["heater_configurations"] > 0
    assert out["counts"]["per_batch_tile"]["readings"] == out["counts"]["heater_configurations"] * 65
    assert main(["verify", "--bench", str(lab.bench), "--calibration", str(lab.cal_run), "--n", "5",
                 "--dry-check"]) == 0
    text = capsys.readouterr().out
    assert "weight vectors 5" in text and "all within the limits" in text and "nothing was sent" in text
    assert not list(tmp_path.glob("*/run.json"))


def test_dry_check_reports_commands_outside_tighter_limits(lab: SimpleNamespace, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    text = lab.bench.read_text().replace("heater_max_voltage_v = 7.0", "heater_max_voltage_v = 0.5")
    tight = tmp_path / "tight.toml"
    tight.write_text(text)
    code = main(["verify", "--bench", str(tight), "--calibration", str(lab.cal_run / "calibration.json"),
                 "--n", "3", "--dry-check"])
    assert code == 2
    assert "OUTSIDE THE LIMITS" in capsys.readouterr().out


# -- subprocesses: signals ---------------------------------------------------------------------------------------------
def _labctl(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "labctl", *args], cwd=REPO, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _env(tmp: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(LABCTL_DATA=str(tmp / "runs"), LABCTL_LOCK_DIR=str(tmp / "locks"), CI="1")
    return env


TRAIN = ["train", "--dataset", "digits", "--hidden", "32", "--lr", "0.05", "--epochs", "400", "--checkpoint-s", "1",
         "--checkpoint-every", "10"]


def _wait_for(pred, timeout_s: float = 60.0) -> None:  # type: ignore[no-untyped-def]
    t0 = time.monotonic()
    while not pred():
        if time.monotonic() - t0 > timeout_s:
            raise AssertionError("timed out")
        time.sleep(0.1)


def _run_dir(tmp: Path) -> Path:
    runs = list((tmp / "runs").glob("train-*"))
    return runs[0] if runs else tmp / "none"


def _checkpointed(tmp: Path) -> bool:
    try:
        return bool(_record(_run_dir(tmp))["checkpoints"])
    except (OSError, ValueError):
        return False


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_one_signal_pauses_at_a_checkpoint_and_resume_continues(sig: int, tmp_path: Path) -> None:
    env = _env(tmp_path)
    proc = _labctl(TRAIN, env)
    _wait_for(lambda: _checkpointed(tmp_path))
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    last = err.strip().splitlines()[-1]
    run = _run_dir(tmp_path)
    assert "Traceback" not in err
    assert last.startswith("labctl train: paused at ") and "no instruments in use" in last
    assert last.endswith(f"resume with: labctl train --resume {run}")
    rec = _record(run)
    assert rec["status"] == "paused" and rec["segments"][-1]["status"] == "paused"
    done = rec["history"][-1]["epoch"] if rec["history"] else 0
    resumed = subprocess.run([sys.executable, "-m", "labctl", "train", "--resume", str(run), "--epochs",
                              str(done + 2), "--json"], cwd=REPO, env=env, text=True, capture_output=True,
                             timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    rec = _record(run)
    assert rec["status"] == "finished" and [h["epoch"] for h in rec["history"]] == list(range(1, done + 3))
    assert rec["params"]["epochs"] == done + 2 and rec["resumes"][-1]["previous_status"] == "paused"
    with h5py.File(run / "data.h5", "r") as h5:
        steps = h5["training/batches/step"][()]
        assert np.array_equal(steps, np.arange(1, steps.size + 1))          # no lost or repeated mini-batch
        assert steps.size == (done + 2) * 23                                # digits: 1437 samples, 23 batches


def test_two_ctrl_c_stop_at_once_safely(tmp_path: Path) -> None:
    proc = _labctl(TRAIN, _env(tmp_path))
    _wait_for(lambda: _checkpointed(tmp_path))
    proc.send_signal(signal.SIGINT)
    time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("labctl train: ") and "resume with: labctl train --resume" in last
    assert _record(_run_dir(tmp_path))["status"] in ("paused", "interrupted")


def test_sigkill_leaves_a_readable_record_and_resume_finishes(tmp_path: Path) -> None:
    env = _env(tmp_path)
    proc = _labctl(TRAIN, env)
    _wait_for(lambda: _checkpointed(tmp_path) and len(_record(_run_dir(tmp_path))["history"]) >= 2)
    proc.kill()
    proc.wait(timeout=30)
    run = _run_dir(tmp_path)
    rec = _record(run)
    assert rec["status"] == "running"                     # killed: nobody could say otherwise
    with h5py.File(run / "data.h5", "r") as h5:          # readable after SIGKILL, with the rows flushed
        rows = h5["training/batches/step"].shape[0]
        assert rows >= 2 * 23 and h5["training/epochs/test_accuracy"].shape[0] >= 2
        assert np.all(np.isfinite(h5["training/batches/loss"][()]))
    target = len(rec["history"]) + 1
    resumed = subprocess.run([sys.executable, "-m", "labctl", "train", "--resume", str(run), "--epochs",
                              str(target), "--quiet"], cwd=REPO, env=env, text=True, capture_output=True,
                             timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    rec = _record(run)
    assert rec["status"] == "finished" and len(rec["history"]) == target
    assert rec["resumes"][-1]["previous_status"] == "running"
    with h5py.File(run / "data.h5", "r") as h5:
        steps = h5["training/batches/step"][()]
        assert np.array_equal(steps, np.arange(1, target * 23 + 1))
    bad = subprocess.run([sys.executable, "-m", "labctl", "train", "--resume", str(run), "--lr", "0.1"], cwd=REPO,
                         env=env, text=True, capture_output=True, timeout=60)
    assert bad.returncode == 2 and "--lr: the run was started with 0.05" in bad.stderr


def test_the_other_procedures_record_their_data(lab: SimpleNamespace, capsys: pytest.CaptureFixture[str]) -> None:
    common = ["--bench", str(lab.bench), "--quiet", "--json"]
    assert main(["resonances", *common]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["true_error_pm"]["max_abs"] < 5.0            # located within a few pm of the emulator's truth
    with h5py.File(Path(res["run"]) / "data.h5", "r") as h5:
        assert h5["resonance_map/center_m"].shape == (1, 2, 4) and h5["truth/center_m"].shape == (2, 4)
    rec = _record(Path(res["run"]))
    assert rec["command"].split() == ["labctl", "resonances", *common] and rec["status"] == "finished"
    assert rec["bench"]["path"] == str(lab.bench.resolve()) and rec["result"]["banks"] == res["banks"]
    assert (Path(res["run"]) / "report" / "spectra.png").is_file()       # the plan writes its report
    assert main(["drift-check", "--calibration", str(lab.cal_run), *common]) == 0
    drift = json.loads(capsys.readouterr().out)
    with h5py.File(Path(drift["run"]) / "data.h5", "r") as h5:
        assert h5["drift/rmse"][0] == pytest.approx(drift["rmse"])
    assert main(["weight-scan", "--calibration", str(lab.cal_run), "--points", "4", "--ring", "1", *common]) == 0
    scan = json.loads(capsys.readouterr().out)
    assert scan["rmse_scanned_ring"] < 0.05
    with h5py.File(Path(scan["run"]) / "data.h5", "r") as h5:
        assert h5["scan/measured"].shape == (4, 2, 4)
        assert np.all(np.diff(h5["scan/weight"][()]) > 0)
    assert main(["recalibrate", "--calibration", str(lab.cal_run), *common]) == 0
    recal = json.loads(capsys.readouterr().out)
    arts = _record(Path(recal["run"]))["artifacts"]
    assert [a["note"] for a in arts] == ["replaced by this run", "made by this run"]
    assert recal["calibration_sha256"] != recal["replaced_sha256"]


def test_sweep_runs_the_resonances_plan_with_a_record(lab: SimpleNamespace, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """`labctl sweep` is the resonances plan under the sweep's options: a run record, the plot also at --out."""
    out = tmp_path / "sweep.png"
    argv = ["sweep", "--bench", str(lab.bench), "--step-pm", "4", "--no-progress", "--out", str(out)]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "(1251 points, logging sweep, through and drop ports)" in text and f"plot saved to {out}" in text
    run = Path(text.split("run record: ")[1].split()[0])
    rec = _record(run)
    assert rec["procedure"] == "resonances" and rec["status"] == "finished" and run.parent == lab.runs
    assert rec["command"].split() == ["labctl", *argv] and rec["params"]["step_pm"] == 4.0
    assert rec["bench"]["path"] == str(lab.bench.resolve()) and rec["instruments"]["start"]
    assert (run / "report" / "spectra.png").read_bytes() == out.read_bytes()
    assert [len(b["center_nm"]) for b in rec["result"]["banks"]] == [4, 4]
    assert rec["result"]["true_error_pm"]["max_abs"] < 5.0


def test_dry_run_leaves_a_full_record_and_report(lab: SimpleNamespace, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dry-run", "--bench", str(lab.bench), "--n-train", "64", "--fast-epochs", "1", "--n-verify", "2",
                 "--data-dir", str(tmp_path), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "expected to score low" in out and "report: " in out
    run = next(tmp_path.glob("dry-run-*"))
    rec = _record(run)
    assert rec["status"] == "finished" and rec["notes"]["stages"] == ["calibration", "verification", "stack",
                                                                     "fast", "digital"]
    with h5py.File(run / "data.h5", "r") as h5:
        for group in ("calibrate/resonance_map", "calibrate/weight_sweeps", "verify/verification",
                      "train_stack/training/batches", "train_fast/training/epochs", "train_digital/training/epochs"):
            assert group in h5, group
        assert h5["train_stack/training/batches/hw_readings"][-1] > 0
    figs = {p.name for p in (run / "report").glob("*.png")}
    assert figs == {"spectra.png", "heaters.png", "weights.png", "verification.png", "training.png",
                    "bench_time.png"}
    assert "Training curves" in (run / "report" / "index.html").read_text()


def test_ctrl_c_while_a_photonic_run_calibrates_pauses_before_training_and_resume_reuses_it(
        lab: SimpleNamespace, tmp_path: Path) -> None:
    env = _env(tmp_path)
    proc = _labctl(["train", "--method", "photonic-dfa", "--bench", str(lab.bench), "--dataset", "digits",
                    "--hidden", "8", "--epochs", "1", "--n-train", "64", "--n-test", "50", "--lr", "0.1"], env)
    _wait_for(lambda: (_run_dir(tmp_path) / "run.json").is_file()
              and bool(_record(_run_dir(tmp_path)).get("instruments")))
    proc.send_signal(signal.SIGINT)                     # the run is calibrating the bench now
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert "paused at " in last and "bench safe (heaters 0, lasers off)" in last and "--resume" in last
    run = _run_dir(tmp_path)
    rec = _record(run)
    assert rec["status"] == "paused"
    assert rec["instruments"]["end"]["_safety"]["heater_drive_applied"] is not None
    made = [a for a in rec["artifacts"] if a["note"] == "made by this run"]
    assert len(made) == 1
    resumed = subprocess.run([sys.executable, "-m", "labctl", "train", "--resume", str(run), "--quiet"], cwd=REPO,
                             env=env, text=True, capture_output=True, timeout=180)
    assert resumed.returncode == 0, resumed.stderr
    rec = _record(run)
    assert rec["status"] == "finished" and len(rec["history"]) == 1
    assert [a for a in rec["artifacts"] if a["note"] == "made by this run"] == made      # calibrated once
