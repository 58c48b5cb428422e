"""`labctl sweep` through the instruments: the swept-laser path of the resonance map, on both kinds of readout.

Ground truth enters only as the report's labelled comparison column and in the assertions; the fit is shown to
depend on the measured spectra alone.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from labctl.calibration.resonances import analyze_spectra
from labctl.cli.main import main
from labctl.procedures.sweep import TRUTH_LABEL, SweepResult, plot, report, run_sweep, summarize
from tests.calibration.test_measure import bench_file


@pytest.fixture(scope="module")
def default_sweep(tmp_path_factory: pytest.TempPathFactory) -> SweepResult:
    return run_sweep(None, lock_dir=tmp_path_factory.mktemp("locks"))


def test_default_bench_sweep_finds_every_ring(default_sweep: SweepResult) -> None:
    result = default_sweep
    assert not result.stepped and result.spectra.through is not None      # logging sweep, ports read apart
    assert result.truth_m is not None and result.truth_m.shape == (4, 10)
    found = np.vstack([np.sort(f.center_m) for f in result.fits])
    err = found - np.sort(result.truth_m, axis=1)
    assert np.max(np.abs(err)) < 0.5e-12, err * 1e12          # through zeros: sub-pm (the resonance map's figure)
    fwhm = np.concatenate([f.pole_fwhm_m for f in result.fits])
    assert np.all((fwhm > 50e-12) & (fwhm < 500e-12))          # loaded Q ~ 8000 at 1550 nm: ~0.2 nm lines
    # through the instruments: one sweep of every bank's ports, on the bench's (virtual) clock
    assert result.spectra.wavelength_m.size == 5501 and 20 < result.transactions < 1000
    assert result.bench_time_s is not None and result.bench_time_s > 1.0


def test_the_analysis_sees_only_the_spectra(default_sweep: SweepResult) -> None:
    again = analyze_spectra(default_sweep.spectra, 10)
    for a, b in zip(again, default_sweep.fits):
        assert np.array_equal(a.center_m, b.center_m) and np.array_equal(a.pole_fwhm_m, b.pole_fwhm_m)


def test_report_labels_the_truth_and_a_real_bench_has_none(default_sweep: SweepResult, tmp_path: Path) -> None:
    rep = report(default_sweep)
    assert [len(b["center_nm"]) for b in rep["banks"]] == [10, 10, 10, 10]
    text = summarize(rep)
    assert TRUTH_LABEL in text and "FWHM (pm)" in text and "resonance (nm)" in text
    diffs = [d for b in rep["emulator_truth_for_comparison"]["banks"] for d in b["found_minus_truth_pm"]]
    assert max(abs(d) for d in diffs) < 0.5
    json.dumps(rep, allow_nan=False)                             # strict JSON
    real = SweepResult(**{**default_sweep.__dict__, "truth_m": None, "kind": "real", "bench_time_s": None})
    real_rep = report(real)
    assert "emulator_truth_for_comparison" not in real_rep and "truth" not in summarize(real_rep)
    path = plot(real, tmp_path / "real.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_stepped_sweep_on_balanced_detectors(tmp_path: Path) -> None:
    """No logging meter: the laser is stepped and the source meters read at every point; balanced poles."""
    path = bench_file(tmp_path, "current", n_banks=2, n_rings=4)
    result = run_sweep(path, step_m=10e-12, lock_dir=tmp_path)
    assert result.stepped and result.spectra.through is None and result.spectra.unit == "A"
    assert result.spectra.wavelength_m.size == 501                 # 1549..1554 nm in 10 pm: every point read
    assert result.transactions > 4 * result.spectra.wavelength_m.size
    assert result.truth_m is not None
    found = np.vstack([np.sort(f.center_m) for f in result.fits])
    # balanced only: the poles, within the documented tens of pm of the rings' own resonances
    assert np.max(np.abs(found - np.sort(result.truth_m, axis=1))) < 60e-12
    rep = report(result)
    assert rep["scan"] == "stepped" and rep["banks"][0]["extinction_db"] == [None] * 4
    json.dumps(rep, allow_nan=False)


def test_cli_sweep_json_and_plot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("LABCTL_LOCK_DIR", str(tmp_path / "locks"))
    bench = bench_file(tmp_path, "default", n_banks=2, n_rings=4)
    out = tmp_path / "plots" / "sweep.png"
    assert main(["sweep", "--bench", str(bench), "--json", "--no-progress", "--out", str(out)]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["procedure"] == "sweep" and rep["scan"] == "logging sweep" and rep["plot"] == str(out)
    assert [len(b["center_nm"]) for b in rep["banks"]] == [4, 4]
    assert all(1548.0 < c < 1555.0 for b in rep["banks"] for c in b["center_nm"])
    assert all(50.0 < w < 500.0 for b in rep["banks"] for w in b["fwhm_pm"])
    assert "not used by the analysis" in rep["emulator_truth_for_comparison"]["note"]
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("argv, field", [
    (["--start-nm", "1550", "--stop-nm", "1551"], "--start-nm/--stop-nm"),
    (["--step-pm", "-2"], "--step-pm"),
    (["--laser", "7"], "--laser"),
    (["--bench", "nosuchbench"], "--bench"),
])
def test_cli_sweep_bad_input_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str], argv: list[str], field: str) -> None:
    monkeypatch.setenv("LABCTL_LOCK_DIR", str(tmp_path / "locks"))
    bench = [] if "--bench" in argv else ["--bench", str(bench_file(tmp_path, "default", n_banks=2, n_rings=4))]
    with pytest.raises(SystemExit) as info:
        main(["sweep", *bench, *argv, "--no-progress", "--out", str(tmp_path / "x.png")])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and field in err, err
    assert not (tmp_path / "x.png").exists()
