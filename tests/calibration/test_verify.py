"""Honest figures: accuracy and precision as verify estimates them, against the emulator's truth.

Small chips keep the file cheap (2 banks x 4 rings: a calibration is a few seconds); the yield study
(bench/calibration_report.py) runs the same comparison on the full chips and harsh variants.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from labctl.calibration.calibrate import Calibration, calibrate
from labctl.calibration.verify import accuracy_estimate, precision_estimate, verify
from labctl.procedures.verify import true_figures
from labctl.sim.chip import Chip

from labctl.bench.bench import Bench
from labctl.bench.emulation import EmulatorTruth

from .test_measure import bench_file

#: The measured accuracy may exceed the true one by at most this many bits (the issue's bound).
OVERCLAIM_LIMIT_BITS = 0.5


def _verify_with_truth(cal: Calibration, hw: Any, chip: Any, n: int, refine: bool) -> tuple[Any, dict[str, Any]]:
    truth: list[np.ndarray] = []
    res = verify(hw, cal, n=n, refine=refine, on_applied=lambda k, d, t: truth.append(
        EmulatorTruth(chip).weights_at(d, str(hw.mode), cal.rmap.channel_of_ring)))
    return res, true_figures(np.array(truth), res)


def test_accuracy_estimate_removes_reading_noise_and_adds_the_reference() -> None:
    rng = np.random.default_rng(0)
    targets = rng.uniform(-1, 0.4, (400, 2, 3))
    set_error = 0.002 * rng.standard_normal(targets.shape)            # what the weights really are off by
    readings = targets + set_error + 0.003 * rng.standard_normal(targets.shape)
    acc, obs, ref = accuracy_estimate(readings, targets, 0.003, np.zeros(2))
    assert abs(obs - 0.002) < 0.0002 and acc == obs and ref == 0.0     # the noise of the readings is no error
    acc, obs, ref = accuracy_estimate(readings, targets, 0.003, np.array([0.01, 0.0]))
    assert abs(ref - 0.01 * np.sqrt(np.mean(targets[:, 0] ** 2) / 2)) < 1e-12
    assert abs(acc - np.hypot(obs, ref)) < 1e-15
    # precision: the pooled spread of repeated settings, whatever each target's offset
    target_of = np.repeat(np.arange(50), 4)
    values = rng.normal(0, 1, (50, 1, 1))[target_of] + 0.004 * rng.standard_normal((200, 2, 3))
    assert abs(precision_estimate(values, target_of) - 0.004) < 0.0004


@pytest.mark.parametrize("kind,seed", [("default", 0), ("current", 1)])
def test_measured_accuracy_is_honest(tmp_path: Path, kind: str, seed: int) -> None:
    """Model only and refined, on a logging and a source-meter bench: the accuracy verify reports through the
    instruments never exceeds the emulator's true accuracy by more than half a bit; precision is reported with
    its interval and is finer than the accuracy."""
    with Bench.open(bench_file(tmp_path, kind, n_banks=2, n_rings=4, seed=seed), lock_dir=tmp_path) as bench:
        hw, chip = bench.session(), bench.emulation.chip
        cal = calibrate(hw)
        for refine, n in ((False, 8), (True, 4)):
            res, true = _verify_with_truth(cal, hw, chip, n, refine)
            assert res.bits - true["true_bits"] <= OVERCLAIM_LIMIT_BITS, (refine, res.summary(), true)
            lo, hi = res.accuracy_bits_ci
            assert lo <= res.bits <= hi
            assert res.precision_bits > res.bits and np.isfinite(res.precision_bits_ci).all()
            assert res.reference_rms > 0 and res.noise_rms > 0
        if kind == "current":          # balanced only: the level read in a gap the heaters open, within its margin
            assert cal.info["fit_quality"]["reference_level"]["method"] == "gap"
            u = 100 * np.asarray(cal.rmap.baseline_uncertainty)
            assert np.all(np.abs(true["true_bank_scale_pct"]) < 3 * u + 0.3), (true["true_bank_scale_pct"], u)


def test_a_common_scale_per_bank_is_invisible_to_the_readings(tmp_path: Path) -> None:
    """The reference level (weight -1) is never read as such: no heater setting within the limits shows it (the
    rings' tails always hold a channel short of it; readings only bound it from below, see test_reference_level),
    and a bank whose reference is off by a common scale is set and read back just as well by closed-loop
    refinement while its true weights are off by that scale. verify must therefore report the reference part from
    the calibration's own uncertainty, apart from what it reads."""
    chip = Chip(seed=0)                              # the reference chip: ten rings fill nearly a free spectral range
    try:
        p = chip.truth_params()
        rng = np.random.default_rng(0)
        r0 = p.heater_resistance_ohm
        vmax = np.sqrt(0.04 * r0.min())              # 40 mW per heater
        drives = np.vstack([rng.uniform(0, 1, (200, chip.n_heaters)) * vmax,
                            np.outer(np.linspace(0, 1, 40), np.full(chip.n_heaters, vmax))])
        drives = drives[(drives ** 2 / r0).sum(axis=1) <= 0.6]       # 600 mW in total
        w = chip.truth_weights(drives, mode="voltage") / p.bus_loss_amplitude ** (2 * chip.n_rings)
        assert np.all(w > -1.0) and (-w).max() < 0.999               # never seen, only approached
    finally:
        chip.close()
    with Bench.open(bench_file(tmp_path, n_banks=2, n_rings=4, seed=3), lock_dir=tmp_path) as bench:
        hw, chip = bench.session(), bench.emulation.chip
        cal = calibrate(hw)
        res, true = _verify_with_truth(cal, hw, chip, 3, True)
        scaled = Calibration(dataclasses.replace(cal.rmap, baseline=cal.rmap.baseline * np.array([[1.03], [1.0]])),
                             cal.thermal, cal.weights, info=cal.info)
        res_s, true_s = _verify_with_truth(scaled, hw, chip, 3, True)
        # the readings cannot tell: refinement brings them to the targets as well as before ...
        assert res_s.observable_rms < 2 * res.observable_rms + 0.001
        # ... while bank 0's true weights are now 3 % larger in magnitude
        assert abs(true_s["true_bank_scale_pct"][0] - true["true_bank_scale_pct"][0] - 3.0) < 0.6
        assert true_s["true_bits"] < true["true_bits"] - 0.5


def test_a_bench_file_states_its_readout_linearity(tmp_path: Path) -> None:
    """Meters worse than the 0.02 dB data-sheet default (here 0.05 dB on the emulated meters) would be overclaimed
    unnoticed: one meter cannot check itself. The bench file's ``wiring.readout_linearity_db`` reaches the session
    and verification adds it as the readout part of the accuracy it reports."""
    import tomllib

    import tomli_w
    from labctl.calibration.verify import linearity_rms

    path = bench_file(tmp_path, n_banks=2, n_rings=4, seed=1, spec={"power_meter": {"linearity_db": 0.05}})
    cfg = tomllib.loads(path.read_text())
    from labctl.bench.config import load_bench

    before = load_bench(path)[0].wiring_sha256
    cfg["wiring"]["readout_linearity_db"] = 0.05
    path.write_text(tomli_w.dumps(cfg))
    assert load_bench(path)[0].wiring_sha256 == before      # calibrations made before stay valid
    with Bench.open(path, lock_dir=tmp_path) as bench:
        hw, chip = bench.session(), bench.emulation.chip
        assert hw.readout_linearity_db == 0.05
        cal = calibrate(hw)
        res, true = _verify_with_truth(cal, hw, chip, 4, True)
    assert res.linearity_rms == pytest.approx(linearity_rms(res.targets, 0.05))
    assert res.linearity_rms > 2.0 * linearity_rms(res.targets, 0.02)
    assert res.bits - true["true_bits"] <= OVERCLAIM_LIMIT_BITS, (res.summary(), true)
