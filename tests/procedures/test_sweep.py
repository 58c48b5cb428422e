"""`labctl sweep` and `labctl resonances`: one resonance sweep (the resonances plan) through the instruments and the
run engine, on both kinds of readout, with a run record every time.

Ground truth enters only as the report's labelled comparison column and in the assertions; the fit is shown to
depend on the recorded spectra alone.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import h5py
import numpy as np
import pytest

from labctl.calibration.measure import Spectra
from labctl.calibration.resonances import analyze_spectra
from labctl.cli.main import main
from labctl.procedures.resonances import RESONANCES, summarize
from labctl.runs import figures
from labctl.runs.engine import Outcome, RunEngine
from labctl.runs.figures import TRUTH_LABEL
from labctl.runs.report import write_report
from tests.calibration.test_measure import bench_file

#: The keys `labctl sweep --json` printed before it ran through the engine; "run" is new.
SWEEP_KEYS = {"procedure", "bench", "kind", "bench_sha256", "laser", "laser_power_w", "start_m", "stop_m", "step_m",
              "points", "scan", "readout", "unit", "resonance", "fwhm", "banks", "bench_time_s", "transactions",
              "emulator_truth_for_comparison", "plot", "run"}


def _run(tmp: Path, bench: Path | None, **given: Any) -> Outcome:
    engine = RunEngine(data_dir=tmp / "runs", bench=bench, lock_dir=tmp / "locks", quiet=True,
                       command=["labctl", "resonances"])
    return engine.run(RESONANCES, given)


def _h5(run: Path) -> dict[str, np.ndarray]:
    with h5py.File(run / "data.h5", "r") as h5:
        out = {f"resonance_map/{k}": v[()] for k, v in h5["resonance_map"].items()}
        out["truth/center_m"] = h5["truth/center_m"][()]
    return out


@pytest.fixture(scope="module")
def default_run(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    outcome = _run(tmp_path_factory.mktemp("default"), None)
    return SimpleNamespace(outcome=outcome, rep=outcome.result, data=_h5(outcome.run_dir))


def test_default_bench_sweep_finds_every_ring(default_run: SimpleNamespace) -> None:
    rep, data = default_run.rep, default_run.data
    assert rep["scan"] == "logging sweep" and rep["readout"] == "through and drop ports"   # ports read apart
    truth = data["truth/center_m"]
    assert truth.shape == (4, 10)
    found = np.sort(data["resonance_map/center_m"][0], axis=1)
    err = found - np.sort(truth, axis=1)
    assert np.max(np.abs(err)) < 0.5e-12, err * 1e12          # through zeros: sub-pm (the resonance map's figure)
    fwhm = np.array([b["fwhm_pm"] for b in rep["banks"]])
    assert np.all((fwhm > 50) & (fwhm < 500))                  # loaded Q ~ 8000 at 1550 nm: ~0.2 nm lines
    # through the instruments: one sweep of every bank's ports (WDM band +- 1 nm in 2 pm), on the virtual clock
    assert rep["points"] == 5501 == data["resonance_map/wavelength_m"].shape[1] and 20 < rep["transactions"] < 1000
    assert rep["bench_time_s"] is not None and rep["bench_time_s"] > 1.0
    rec = default_run.outcome.record
    assert rec["status"] == "finished" and rec["procedure"] == "resonances" and rec["command"] == "labctl resonances"
    assert rec["bench"]["name"] == rep["bench"] == "emulated-default" and rec["bench"]["embedded"]
    assert rec["params"]["start_nm"] is None and rec["parameters"]["start_nm"]["range"] == [1000.0, 2000.0]


def test_the_analysis_sees_only_the_spectra(default_run: SimpleNamespace) -> None:
    d = default_run.data
    sp = Spectra(d["resonance_map/wavelength_m"][0], d["resonance_map/balanced"][0], d["resonance_map/through"][0],
                 d["resonance_map/drop"][0], default_run.rep["unit"])
    again = np.vstack([f.center_m for f in analyze_spectra(sp, 10)])
    assert np.array_equal(again, d["resonance_map/center_m"][0])


def test_report_labels_the_truth_and_a_real_bench_has_none(default_run: SimpleNamespace, tmp_path: Path) -> None:
    rep = default_run.rep
    assert [len(b["center_nm"]) for b in rep["banks"]] == [10, 10, 10, 10]
    text = summarize(rep)
    assert TRUTH_LABEL in text and "FWHM (pm)" in text and "resonance (nm)" in text
    diffs = [d for b in rep["emulator_truth_for_comparison"]["banks"] for d in b["found_minus_truth_pm"]]
    assert max(abs(d) for d in diffs) < 0.5 and rep["true_error_pm"]["max_abs"] == pytest.approx(max(map(abs, diffs)),
                                                                                                 abs=0.01)
    json.dumps(rep, allow_nan=False)                             # strict JSON
    real = {k: v for k, v in rep.items() if k not in ("emulator_truth_for_comparison", "true_error_pm")}
    assert "truth" not in summarize({**real, "kind": "real", "bench_time_s": None})
    d = default_run.data
    path = tmp_path / "real.png"
    figures.spectra({k.split("/")[1]: v for k, v in d.items() if k.startswith("resonance_map/")}, None, path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = write_report(default_run.outcome.run_dir)           # the run's own figure, truth marked
    assert (report.html.parent / "spectra.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_stepped_sweep_on_balanced_detectors(tmp_path: Path) -> None:
    """No logging meter: the laser is stepped and the source meters read at every point; balanced poles."""
    bench = bench_file(tmp_path, "current", n_banks=2, n_rings=4)
    outcome = _run(tmp_path, bench, step_pm=10)
    rep = outcome.result
    assert rep["scan"] == "stepped" and rep["readout"] == "balanced" and rep["unit"] == "A"
    assert rep["points"] == 501                                  # 1549..1554 nm in 10 pm: every point read
    assert rep["transactions"] > 4 * rep["points"]
    # balanced only: the poles, within the documented tens of pm of the rings' own resonances
    diffs = [d for b in rep["emulator_truth_for_comparison"]["banks"] for d in b["found_minus_truth_pm"]]
    assert len(diffs) == 8 and max(abs(d) for d in diffs) < 60
    assert rep["banks"][0]["extinction_db"] == [None] * 4
    json.dumps(rep, allow_nan=False)
    assert outcome.record["bench"]["path"] == str(bench.resolve())


def _check_record(run: Path, bench: Path, argv: list[str]) -> dict[str, Any]:
    rec = json.loads((run / "run.json").read_text())
    assert rec["status"] == "finished" and rec["procedure"] == "resonances"
    assert rec["command"].split() == ["labctl", *argv]
    assert rec["bench"]["path"] == str(bench.resolve()) and len(rec["bench"]["sha256"]) == 64
    assert rec["versions"]["labctl"] and "git_commit" in rec["code"] and rec["instruments"]["start"]
    return rec


def test_cli_sweep_json_plot_and_run_record(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("LABCTL_LOCK_DIR", str(tmp_path / "locks"))
    bench = bench_file(tmp_path, "default", n_banks=2, n_rings=4)
    out = tmp_path / "plots" / "sweep.png"
    argv = ["sweep", "--bench", str(bench), "--json", "--no-progress", "--out", str(out), "--data-dir",
            str(tmp_path / "runs")]
    assert main(argv) == 0
    rep = json.loads(capsys.readouterr().out)
    assert set(rep) >= SWEEP_KEYS
    assert rep["scan"] == "logging sweep" and rep["plot"] == str(out)
    assert [len(b["center_nm"]) for b in rep["banks"]] == [4, 4]
    assert all(1548.0 < c < 1555.0 for b in rep["banks"] for c in b["center_nm"])
    assert all(50.0 < w < 500.0 for b in rep["banks"] for w in b["fwhm_pm"])
    assert "not used by the analysis" in rep["emulator_truth_for_comparison"]["note"]
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    run = Path(rep["run"])
    rec = _check_record(run, bench, argv)
    assert rec["result"]["banks"] == rep["banks"]
    assert (run / "report" / "spectra.png").read_bytes() == out.read_bytes()     # the plot is the run's figure
    plot = [a for a in rec["artifacts"] if a["path"] == str(out.resolve())]
    assert plot and plot[0]["kind"] == "figure" and len(plot[0]["sha256"]) == 64


def test_cli_sweep_window_and_text(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    """A shifted, wider window (start/stop given); the text output says what the sweep said, and the run."""
    monkeypatch.setenv("LABCTL_LOCK_DIR", str(tmp_path / "locks"))
    monkeypatch.setenv("LABCTL_DATA", str(tmp_path / "runs"))
    bench = bench_file(tmp_path, "current", n_banks=1, n_rings=4)
    out = tmp_path / "w.png"
    argv = ["sweep", "--bench", str(bench), "--start-nm", "1548.5", "--stop-nm", "1554.5", "--step-pm", "20",
            "--no-progress", "--out", str(out)]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "1548.500-1554.500 nm in 20 pm steps (301 points, stepped, balanced)" in text
    assert TRUTH_LABEL in text and f"plot saved to {out}" in text and "run record: " in text
    run = next((tmp_path / "runs").glob("resonances-*"))
    rec = _check_record(run, bench, argv)
    assert rec["params"]["start_nm"] == 1548.5 and rec["params"]["stop_nm"] == 1554.5
    assert len(rec["result"]["banks"][0]["center_nm"]) == 4 and out.is_file()


def test_cli_sweep_dry_check_touches_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr("labctl.bench.bench._open_driver", _no_hardware)
    bench = bench_file(tmp_path, "default", n_banks=2, n_rings=4)
    out = tmp_path / "x.png"
    assert main(["sweep", "--bench", str(bench), "--dry-check", "--out", str(out), "--data-dir",
                 str(tmp_path / "runs")]) == 0
    assert "2501 points" in capsys.readouterr().out          # 1549..1554 nm in 2 pm
    assert not out.exists() and not (tmp_path / "runs").exists()


def _no_hardware(*args: Any, **kwargs: Any) -> Any:
    raise AssertionError("an instrument was opened")


@pytest.mark.parametrize("argv, field", [
    (["--start-nm", "1550", "--stop-nm", "1551"], "--start-nm/--stop-nm"),     # narrower than the band
    (["--start-nm", "1554", "--stop-nm", "1549"], "--start-nm/--stop-nm"),     # start >= stop
    (["--start-nm", "1551", "--stop-nm", "1558"], "--start-nm/--stop-nm"),     # misses laser 0's channel
    (["--start-nm", "1600", "--stop-nm", "1610"], "--start-nm/--stop-nm"),     # outside the lasers' channels
    (["--start-nm", "900"], "--start-nm"),
    (["--stop-nm", "inf"], "--stop-nm"),
    (["--step-pm", "-2"], "--step-pm"),
    (["--laser", "7"], "--laser"),
    (["--laser", "x"], "--laser"),
    (["--bench", "nosuchbench"], "--bench"),
    (["--out", "{tmp}/file.txt/x.png"], "--out"),                               # a folder that cannot be made
    (["--out", "{tmp}"], "--out"),                                              # a folder
])
def test_cli_sweep_bad_input_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str], argv: list[str], field: str) -> None:
    """Refused in one line naming the option, before the bench opens: no run folder, no instrument, no plot."""
    monkeypatch.setenv("LABCTL_LOCK_DIR", str(tmp_path / "locks"))
    monkeypatch.setattr("labctl.bench.bench._open_driver", _no_hardware)
    (tmp_path / "file.txt").write_text("not a folder")
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    bench = [] if "--bench" in argv else ["--bench", str(bench_file(tmp_path, "default", n_banks=2, n_rings=4))]
    out = [] if "--out" in argv else ["--out", str(tmp_path / "x.png")]
    with pytest.raises(SystemExit) as info:
        main(["sweep", *bench, *argv, "--no-progress", *out, "--data-dir", str(tmp_path / "runs")])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and field in err, err
    assert not (tmp_path / "x.png").exists() and not (tmp_path / "runs").exists()
