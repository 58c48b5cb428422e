"""A calibration's dry check counts what the calibration then does (its figures come from the calibration's own
defaults, not copies): heater scans exactly, resonance-map points within one (a logging or triggered sweep rounds
its step to the laser's step quantum)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from labctl.bench.bench import Bench
from labctl.calibration.calibrate import calibrate
from labctl.procedures.dry_checks import calibration_estimate
from tests.calibration.test_measure import bench_file


@pytest.mark.parametrize("kind,step_pm", [("default", 2), ("current", 10)])
def test_the_estimate_matches_an_emulated_calibration(tmp_path: Path, kind: str, step_pm: int) -> None:
    path = bench_file(tmp_path, kind, n_banks=2, n_rings=4, seed=0)
    est = calibration_estimate(SimpleNamespace(bench_path=path), n_configs=8, n_levels=40,
                               n_drift_references=3)["counts"]
    with Bench.open(path, lock_dir=tmp_path) as bench:
        cal = calibrate(bench.session(), n_configs=8, seed=3)
    assert est["heater characterization scans"] == cal.thermal.stats["scans"]
    assert abs(est[f"resonance scan points ({step_pm} pm steps)"] - cal.rmap.stats["points"]) <= 1
