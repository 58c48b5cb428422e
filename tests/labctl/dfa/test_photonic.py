"""Photonic DFA on a small emulated bench (2 banks x 4 rings, 4 WDM channels; the 10-component error takes three
column blocks): the algebra of the mapping and encoding, gradients through the instruments, the fast path against
the stack, counters, drift handling and bit-identical resume.

Thresholds: through the instruments ``e @ B`` must correlate with the exact product above 0.995 and stay within
5 % rms (measured here: ~0.9999 and ~1 %); stack and fast path must agree in error level within a factor 3.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from labctl.calibration.calibrate import Calibration, calibrate, recalibrate
from labctl.procedures.train import resume_training, run_training

from labctl.bench.bench import Bench
from labctl.cli.main import main
from labctl.dfa.feedback import feedback_matrices
from labctl.dfa.drift_steps import DriftSteps
from labctl.dfa.photonic import BenchMatVec, PhotonicMatVec, PhotonicOptions
from labctl.dfa.photonic_fast import FastMatVec
from labctl.calibration.readout_noise import DFA_TARGET_RELATIVE_NOISE
from labctl.runs.record import Checkpoint, Run
from labctl.dfa.tiling import op_counts, schedule
from labctl.dfa.training import Experiment, TrainConfig
from tests.calibration.test_calibrate import bench_file

CORRELATION_MIN = 0.995
REL_RMS_MAX = 0.05


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    tmp = tmp_path_factory.mktemp("photonic")
    path = bench_file(tmp / "bench.toml", seed=0)
    with Bench.open(path, lock_dir=tmp / "locks") as bench:
        cal = calibrate(bench.session(), n_configs=8, seed=3)
        cal_file = cal.save(tmp / "calibration.json")
    return SimpleNamespace(tmp=tmp, bench=path, cal=cal_file, locks=tmp / "locks")


def _error(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, 10)) * 0.05


def _stats(out: np.ndarray, exact: np.ndarray) -> tuple[float, float]:
    corr = float(np.corrcoef(out.ravel(), exact.ravel())[0, 1])
    rel = float(np.sqrt(np.mean((out - exact) ** 2)) / np.sqrt(np.mean(exact**2)))
    return corr, rel


class IdealReadout(PhotonicMatVec):
    """Readings of a perfectly linear chip that realises exactly the targets the engine asked for."""

    def _read_batch(self, powers: np.ndarray, n: int) -> np.ndarray:
        assert self._targets is not None
        cor = np.asarray(self.cal.weights.channel_of_ring, dtype=int)
        g = np.take_along_axis(self.mapping.gain, cor, axis=1)                       # (B, R)
        p = powers[self.config_block][:, :, cor]                                     # (cfg, N+1, B, R)
        return np.einsum("cbr,br,cnbr->cnb", self._targets, g, p)


@pytest.mark.parametrize("n_out,reference_every", [(10, 0), (4, 0), (10, 3), (4, 4)])   # three column blocks; one
def test_mapping_encoding_and_bias_reconstruct_the_product_exactly(small: SimpleNamespace, n_out: int,
                                                                   reference_every: int) -> None:
    with Bench.open(small.bench, lock_dir=small.locks) as bench:
        cal = Calibration.load(small.cal, bench.session())
        eng = IdealReadout(cal, bench.session(), PhotonicOptions(recenter_at_start=False, order="sample",
                                                                 reference_every=reference_every))
        mats = feedback_matrices(n_out, [9, 6], seed=3, dtype=np.float64)
        eng.program(mats)
        assert eng.plan.n_blocks == -(-n_out // 4)
        e = _error(11)[:, :n_out]
        e[3] = 0.0                                       # an all-zero error row is allowed
        for layer, m in enumerate(mats):
            np.testing.assert_allclose(eng.matvec(layer, e), e @ m, rtol=1e-9, atol=1e-12)
        # every ring target stays inside its calibrated range
        lo, hi = cal.achievable_range
        assert np.all(eng._targets >= lo - 1e-12) and np.all(eng._targets <= hi + 1e-12)


def test_stack_gradients_correlate_and_fast_path_matches_statistically(small: SimpleNamespace) -> None:
    mats = feedback_matrices(10, [12], seed=1, dtype=np.float64)
    e = _error(24, seed=5)
    exact = e @ mats[0]
    with Bench.open(small.bench, lock_dir=small.locks) as bench:
        cal = Calibration.load(small.cal, bench.session())
        results = {}
        for cls in (BenchMatVec, FastMatVec):
            eng = cls(cal, bench.session(), PhotonicOptions())
            eng.program(mats)
            results[cls.kind] = eng.matvec(0, e)
    stats = {k: _stats(v, exact) for k, v in results.items()}
    for corr, rel in stats.values():
        assert corr > CORRELATION_MIN and rel < REL_RMS_MAX, stats
    rel_stack, rel_fast = stats["photonic-stack"][1], stats["photonic-fast"][1]
    assert 1 / 3 < rel_stack / rel_fast < 3, stats
    # same calibration, same physics: the two paths differ by about their own noise, not systematically
    diff = results["photonic-stack"] - results["photonic-fast"]
    assert abs(float(np.mean(diff))) < 0.5 * float(np.std(diff)) + 1e-3 * float(np.std(exact))


@pytest.mark.parametrize("order", ["tile", "sample"])
def test_counters_follow_the_schedule(small: SimpleNamespace, order: str) -> None:
    mats = feedback_matrices(10, [4], seed=2, dtype=np.float64)
    n = 5
    with Bench.open(small.bench, lock_dir=small.locks) as bench:
        cal = Calibration.load(small.cal, bench.session())
        # the batch alone (a refinement before it leaves heaters and lasers elsewhere: not this test's subject)
        eng = BenchMatVec(cal, bench.session(), PhotonicOptions(order=order, recenter_at_start=False,  # type: ignore[arg-type]
                                                                refine_iterations=0))
        eng.program(mats)
        n_cfg = eng.drives.shape[0]
        assert n_cfg == eng.plan.n_tiles + eng.plan.n_blocks == 2 * 3 + 3
        eng.start()                                       # unit costs probed: the batch starts from here
        visits = schedule(order, eng.config_block, n, current=eng._config)  # type: ignore[arg-type]
        config_changes = sum(1 for k, (t, _) in enumerate(visits)
                             if t != (eng._config if k == 0 else visits[k - 1][0]))
        tx0 = bench.transaction_count()
        eng.matvec(0, _error(n))
        c = eng.pop_counters()
    assert c["order"] == order and c["readings"] == n_cfg * (n + 1) == len(visits)
    assert c["reconfigurations"] == config_changes
    assert config_changes <= op_counts(order, n_cfg, eng.plan.n_blocks, n).configs  # type: ignore[arg-type]
    assert c["transactions"] <= bench.transaction_count() - tx0
    assert 0 < c["minimum_time_s"] < c["instrument_bound_s"] <= c["projected_time_s"] < c["naive_time_s"]
    # the loop takes the overlaps the instrument bound assumes, in either order (the bound is the cheaper order's)
    bound_of_order = eng.instrument_bound().batch_s(order, n_cfg, eng.plan.n_blocks, n)  # type: ignore[union-attr]
    assert c["instrument_bound_s"] <= bound_of_order <= c["projected_time_s"] < 1.1 * bound_of_order
    # the time and transactions per operation kind add up to the batch's
    assert sum(c["time_by_kind_s"].values()) == pytest.approx(c["projected_time_s"], rel=1e-9)
    assert sum(c["transactions_by_kind"].values()) == pytest.approx(c["transactions"])


def _recording(bench: Any, seen: list[Any]) -> Any:
    """A run's recalibration step that also keeps what it made."""
    def step(previous: Any, scope: str = "full") -> Any:
        new = recalibrate(bench.session(), previous, scope=scope)  # type: ignore[arg-type]
        seen.append(new)
        return new
    return step


def test_drift_is_followed_and_recalibration_recorded(small: SimpleNamespace) -> None:
    mats = feedback_matrices(10, [6], seed=4, dtype=np.float64)
    e = _error(8)
    seen: list[Any] = []
    with Bench.open(small.bench, lock_dir=small.locks) as bench:
        cal = Calibration.load(small.cal, bench.session())
        # every check trips and recalibrates: no rmse is below zero (whether four hours of the random walk alone
        # trip the check depends on how many clock advances came before, i.e. on every transaction count)
        # and a recalibration level below zero: no recalibration can pass its confirmation either
        opts = PhotonicOptions(recenter_at_start=False, drift_every=1, drift_threshold=0.0, recalibrate_rmse=-1.0)
        eng = FastMatVec(cal, bench.session(), opts)
        steps = DriftSteps(eng, _recording(bench, seen))               # the run's drift steps
        eng.program(mats)
        assert steps() is None                                          # first batch: no check (options)
        eng.matvec(0, e)
        bench.emulation.chip.clock.advance(4 * 3600.0, "idle")       # the chip drifts for four hours
        assert steps() is not None                                      # batch 2: drift check first
        out = eng.matvec(0, e * 1.01)
        c = eng.pop_counters()
    # a partial recalibration first (heater model kept), confirmed on the previous references' targets: with a
    # recalibration level below 0 it cannot pass, so a full one follows
    assert c["drift_checks"] == 1 and c["recalibrations"] == 2 and len(seen) == 2
    assert [cal_.info["recalibration"]["scope"] for cal_ in seen] == ["weights", "full"]
    event = c["drift_events"][0]
    assert event["recalibration_scope"] == "full" and len(event["confirmations"]) == 1
    assert event["recalibration_time_s"] > event["partial_recalibration_time_s"] > 0
    assert event["recalibration_transactions"] > 0
    assert event["confirmations"][0]["calibration_sha256"] == seen[0].sha256
    assert event["recalibrated"] and event["calibration_sha256"] == seen[1].sha256 != Calibration.load(small.cal).sha256
    # the run's recalibrations repeat the options of the calibration they replace
    for new in seen:
        assert new.info["options"] == Calibration.load(small.cal).info["options"]
        assert new.info["options"]["n_configs"] == 8 and new.info["options"]["seed"] == 3
    corr, rel = _stats(out, (e * 1.01) @ mats[0])
    assert corr > CORRELATION_MIN and rel < REL_RMS_MAX


def test_fast_drift_checks_read_the_references_as_the_instruments_do(small: SimpleNamespace) -> None:
    """After one check through the instruments (which measures what a check costs), the fast path reads the drift
    references from the emulator: the same weights within the readout's noise, the same bench time charged."""
    mats = feedback_matrices(10, [6], seed=4, dtype=np.float64)
    e = _error(8)
    with Bench.open(small.bench, lock_dir=small.locks) as bench:
        cal = Calibration.load(small.cal, bench.session())
        eng = FastMatVec(cal, bench.session(), PhotonicOptions(drift_every=1))
        steps = DriftSteps(eng, None)
        eng.program(mats)
        steps()
        out = eng.matvec(0, e)                        # session check, through the instruments
        tx = bench.transaction_count()
        steps()
        eng.matvec(0, e * 1.01)                       # periodic check: direct
        assert bench.transaction_count() == tx        # nothing went through the instruments
        c = eng.pop_counters()
        ref = cal.drift_reference
        direct = eng._reference_weights(ref.drive)
        eng._reference_lasers()
        stack = []
        for drive in ref.drive:
            cal.apply(bench.session(), drive)
            stack.append(cal.measure_weights(bench.session()))
    first, second = c["drift_events"]
    assert not first["direct"] and second["direct"]
    assert second["time_s"] == pytest.approx(first["time_s"]) and second["transactions"] == first["transactions"]
    diff = direct - np.array(stack)
    assert np.abs(diff).max() < cal.span * 2.0**-9, np.abs(diff).max()
    assert np.abs(direct - ref.measured).max() < cal.span * 2.0**-6
    # the product error in the units of Filipovich et al.'s noise model, as the engine tallies it
    assert 0 < c["product_error_std"] < 0.05 and abs(c["product_error_mean"]) < 0.05
    corr, _ = _stats(out, e @ mats[0])
    assert corr > CORRELATION_MIN


def test_fast_drift_confirmation_is_direct_after_one_through_the_instruments(small: SimpleNamespace) -> None:
    mats = feedback_matrices(10, [6], seed=4, dtype=np.float64)
    e = _error(8)
    with Bench.open(small.bench, lock_dir=small.locks) as bench:
        cal = Calibration.load(small.cal, bench.session())
        # every check trips (threshold 0) and is confirmed; none recalibrates
        opts = PhotonicOptions(drift_every=1, drift_threshold=0.0, recalibrate_rmse=1.0)
        eng = FastMatVec(cal, bench.session(), opts)
        steps = DriftSteps(eng, None)
        eng.program(mats)
        steps()
        eng.matvec(0, e)
        tx = bench.transaction_count()
        steps()
        eng.matvec(0, e * 1.01)
        assert bench.transaction_count() == tx
        c = eng.pop_counters()
    first, second = c["drift_events"]
    assert first["tripped"] and second["tripped"] and not first["direct"] and second["direct"]
    assert c["recalibrations"] == 0
    assert second["time_s"] == pytest.approx(first["time_s"]) and second["transactions"] == first["transactions"]
    assert 0 <= first["residual_rmse"] < 0.05 and 0 <= second["residual_rmse"] < 0.05
    assert second["residual_rmse"] == pytest.approx(first["residual_rmse"], abs=0.01)


def _final_arrays(run_dir: str) -> dict[str, np.ndarray]:
    ckpt = Checkpoint.load(Run.open(run_dir).latest_checkpoint_path())
    return {k: v for k, v in ckpt.arrays.items() if k.startswith(("model", "layer", "W", "b", "optimizer"))} \
        or ckpt.arrays


@pytest.mark.parametrize("path", ["fast", "stack"])
def test_photonic_resume_is_bit_identical(small: SimpleNamespace, tmp_path: Path, path: str,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LABCTL_LOCK_DIR", str(small.locks))
    exp = Experiment(dataset="digits", hidden=(4,), feedback="photonic", seed=7, n_train=48, n_test=40,
                     photonic={"path": path, "drift_every": 2},
                     train=TrainConfig(epochs=2, batch_size=16, lr=0.1, checkpoint_every=1))
    full = run_training(exp, bench_path=small.bench, calibration=small.cal, root=tmp_path / "full")

    def stop_at_step_4(trainer: Any) -> None:
        if trainer.step == 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_training(exp, bench_path=small.bench, calibration=small.cal, root=tmp_path / "cut",
                     batch_hooks=[stop_at_step_4])
    cut_dir = next((tmp_path / "cut").glob("dfa-photonic-*"))
    assert Run.open(cut_dir).status == "interrupted"
    resumed = resume_training(cut_dir)
    assert resumed["status"] == "finished"
    a, b = _final_arrays(full["run"]), _final_arrays(resumed["run"])
    assert a.keys() == b.keys() and a
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    assert [h["test_accuracy"] for h in full["history"]] == [h["test_accuracy"] for h in resumed["history"]]
    hw = full["history"][-1]["hardware"]
    assert hw["reconfigurations"] > 0 and hw["drift_checks"] >= 1


def test_cli_train_photonic_fast_json(small: SimpleNamespace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("LABCTL_LOCK_DIR", str(small.locks))
    code = main(["train", "--bench", str(small.bench), "--calibration", str(small.cal), "--dataset", "digits",
                 "--method", "photonic-dfa", "--path", "fast", "--hidden", "8", "--epochs", "1", "--n-train", "64",
                 "--n-test", "50", "--lr", "0.1", "--json", "--data-dir", str(tmp_path)])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert 0.0 <= report["test_accuracy"] <= 1.0 and np.isfinite(report["train_loss"])
    hw = report["history"][0]["hardware"]
    for key in ("reconfigurations", "transactions", "projected_time_s", "ratio_to_naive", "ratio_to_minimum"):
        assert hw[key] is not None
    record = json.loads((Path(report["run"]) / "run.json").read_text())
    assert record["hardware"]["calibration"]["sha256"] and record["hardware"]["instruments"]
    assert record["experiment"]["photonic"]["path"] == "fast" and record["params"]["path"] == "fast"


@pytest.mark.parametrize("argv,needle", [
    (["--method", "dfa", "--path", "fast"], "--path applies to --method photonic-dfa"),
    (["--hidden", "8,x"], "--hidden"),
    (["--dataset", "/nonexistent/mnist.npz"], "/nonexistent/mnist.npz"),
    (["--epochs", "-1"], "--epochs"),
])
def test_cli_train_bad_arguments_are_named(argv: list[str], needle: str, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["train", "--data-dir", str(tmp_path), *argv])
    assert exc.value.code == 2
    assert needle in capsys.readouterr().err
    assert not list(tmp_path.glob("*/run.json"))


@pytest.fixture(scope="module")
def small_current(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """A small bench like the embedded ``current`` one (current drive, balanced photodiodes on Keithley 2400s)."""
    from tests.calibration.test_measure import bench_file as kind_bench_file

    tmp = tmp_path_factory.mktemp("photonic-current")
    path = kind_bench_file(tmp, "current", n_banks=2, n_rings=4, seed=0)
    with Bench.open(path, lock_dir=tmp / "locks") as bench:
        cal_file = calibrate(bench.session(), n_configs=8, seed=3).save(tmp / "calibration.json")
    return SimpleNamespace(tmp=tmp, bench=path, cal=cal_file, locks=tmp / "locks")


def test_refinement_brings_every_configuration_closer_to_its_targets(small_current: SimpleNamespace) -> None:
    """The configurations' weights measured as a batch reads them and corrected in closed loop: the chip's true
    weights (emulator truth, for scoring only), relative to each bank's bias configuration and in the units the
    readings see (the calibration's reference level; a bank's common scale cancels in the engine), land closer to
    the targets than the model alone sets them; the refinement is recorded with its bench time apart from the
    batches'."""
    mats = feedback_matrices(10, [9, 6], seed=3, dtype=np.float64)
    true_rms = {}
    for iterations in (0, 2):
        with Bench.open(small_current.bench, lock_dir=small_current.locks) as bench:
            hw = bench.session()
            cal = Calibration.load(small_current.cal, hw)
            eng = FastMatVec(cal, hw, PhotonicOptions(recenter_at_start=False, refine_iterations=iterations))
            eng.program(mats)
            eng.matvec(0, _error(8))
            counters = eng.pop_counters()
            cor = np.asarray(cal.weights.channel_of_ring, dtype=int)
            truth = np.array([bench.truth.weights_at(d, hw.mode, cor) for d in eng.drives])
            n_tiles = eng.plan.n_tiles
            rel_true = truth[:n_tiles] - truth[n_tiles:][eng.plan.block]
            rel_target = eng._targets[:n_tiles] - eng._targets[n_tiles:][eng.plan.block]
            # truth is in units of the true reference level, the readings in the calibration's: one scale per bank
            scale = np.sum(rel_true * rel_target, axis=(0, 2)) / np.sum(rel_true**2, axis=(0, 2))
            rel_true *= scale[None, :, None]
            true_rms[iterations] = float(np.sqrt(np.mean((rel_true - rel_target) ** 2)))
            if iterations:
                (record,) = counters["refinements"]
                assert len(record["rmse_history"]) == iterations + 1
                assert record["rmse"] <= record["rmse_history"][0] and record["time_s"] > 0
                assert counters["refine_time_s"] == record["time_s"]
            else:
                assert "refinements" not in counters
    assert true_rms[2] < 0.7 * true_rms[0], true_rms


def test_confirmation_holds_the_replaced_targets_inside_the_new_ranges(small: SimpleNamespace) -> None:
    """A partial recalibration is confirmed on the targets the replaced calibration was checked with; a ring held at
    one weight by one calibration can be held at another by the next, so those targets are held inside the new
    calibration's ranges (the dry run on the current bench stopped with 'outside its achievable range' there)."""
    with Bench.open(small.bench, lock_dir=small.locks) as bench:
        hw = bench.session()
        cal = Calibration.load(small.cal, hw)
        eng = BenchMatVec(cal, hw, PhotonicOptions(recenter_at_start=False, refine_iterations=0))
        eng.program(feedback_matrices(10, [4], seed=3, dtype=np.float64))
        targets = np.array(cal.drift_reference.targets, dtype=float)
        _, w_max = cal.achievable_range
        targets[0, 0, 0] = w_max[0, 0] + 0.01             # beyond this calibration's range
        residual = eng.confirm_targets(targets)
        assert np.isfinite(residual) and residual < 0.05


def test_a_tripped_check_on_a_balanced_only_bench_recenters_before_it_recalibrates(
        small_current: SimpleNamespace) -> None:
    """On a bench like ``current`` the weight model misses the drift references' targets by several times the
    trip level even right after calibrating; the recentred references are compared with what the calibration
    measured at them, so a check that trips on the chip's temperature walk is answered by the recentring alone
    (it used to recalibrate at every trip)."""
    mats = feedback_matrices(4, [6], seed=4, dtype=np.float64)
    seen: list[Any] = []
    with Bench.open(small_current.bench, lock_dir=small_current.locks) as bench:
        cal = Calibration.load(small_current.cal, bench.session())
        ref = cal.drift_reference
        model_error = float(np.sqrt(np.mean((ref.measured - ref.targets) ** 2)))
        level = cal.span / 2**7                                        # the default trip and recalibration level
        opts = PhotonicOptions(recenter_at_start=False, drift_every=1, drift_threshold=0.0, recalibrate_rmse=level,
                               refine_iterations=0)
        eng = BenchMatVec(cal, bench.session(), opts)
        steps = DriftSteps(eng, _recording(bench, seen))
        eng.program(mats)
        assert steps() is None                                         # first batch: no check (options)
        eng.matvec(0, _error(4)[:, :4])
        bench.emulation.chip.clock.advance(600.0, "idle")             # ten minutes of the chip's walk
        event = steps()
    assert event is not None and event["tripped"]                     # a threshold of 0 always trips
    assert not event["needs_recalibration"] and not seen              # recentred, not recalibrated
    assert event["residual_rmse"] < level / 2 and model_error > level / 2


def test_references_read_again_follow_a_drifting_offset() -> None:
    """With the reference read again every k samples, a configuration's reading that drifts linearly in time (a
    chip whose offset walks during a long batch) is measured against the reference of its own time."""
    refs = np.array([0, 3, 6, 8])                      # positions of the reference passes (k = 2, N = 5)
    samples = np.array([1, 2, 4, 5, 7])
    offset = 0.1 * np.arange(9)[None, :, None]         # (T=1, passes, B=1): drift of 0.1 per pass
    signal = np.zeros((1, 9, 1))
    signal[0, samples, 0] = [1.0, 2.0, 3.0, 4.0, 5.0]
    out = PhotonicMatVec._against_references(signal + offset, refs, samples)
    np.testing.assert_allclose(out[0, :, 0], [1.0, 2.0, 3.0, 4.0, 5.0], atol=1e-12)


@pytest.fixture(scope="module")
def noisy_current(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """A small current-like bench whose photodiodes have 6000x the reference chip's input noise: its calibration's
    noise probe measures every setting up to the longest and DFA's looser target is met between."""
    from tests.calibration.test_measure import bench_file as kind_bench_file

    tmp = tmp_path_factory.mktemp("photonic-noisy-current")
    path = kind_bench_file(tmp, "current", n_banks=2, n_rings=4, seed=0,
                           spec={"detector": {"input_noise_a_per_rthz": 3e-8}})
    with Bench.open(path, lock_dir=tmp / "locks") as bench:
        cal_file = calibrate(bench.session(), n_configs=8, seed=3).save(tmp / "calibration.json")
    return SimpleNamespace(tmp=tmp, bench=path, cal=cal_file, locks=tmp / "locks")


@pytest.mark.parametrize("cls", [BenchMatVec, FastMatVec])
def test_readings_use_the_readout_the_calibration_measured(noisy_current: SimpleNamespace, cls: type) -> None:
    """With no averaging option the engine asks the readout for the cheapest setting the calibration's noise probe
    measured within DFA's noise target (recorded under ``readout`` in the calibration file); the 2400s are set to
    it, the run records it, and no reading is disturbed by the next configuration's heater lines however long it
    integrates."""
    mats = feedback_matrices(4, [6], seed=4, dtype=np.float64)
    with Bench.open(noisy_current.bench, lock_dir=noisy_current.locks) as bench:
        hw = bench.session()
        cal = Calibration.load(noisy_current.cal, hw)
        record = cal.info["readout"]
        assert record["chosen_by"] == "noise probe"
        measured = {p["averaging_time_s"]: p["relative_noise"] for p in record["probe"]}
        wanted = min(t for t, noise in measured.items() if noise <= DFA_TARGET_RELATIVE_NOISE)
        assert 2e-4 < wanted <= record["averaging_time_s"]            # longer than 0.01 NPLC
        assert all(noise > DFA_TARGET_RELATIVE_NOISE for t, noise in measured.items() if t < wanted)
        eng = cls(cal, hw, PhotonicOptions(recenter_at_start=False, refine_iterations=0))
        eng.program(mats)
        eng.matvec(0, _error(4)[:, :4])
        assert eng.averaging_time_s == pytest.approx(wanted)
        for meter in hw.readout.meters:                  # what the instruments report, not what we asked
            assert float(meter.nplc) / meter.line_frequency_hz == pytest.approx(wanted, rel=1e-6)
        readout = eng.describe()["readout"]
        assert readout["requested_s"] == pytest.approx(wanted) and readout["averaging_time_s"] == pytest.approx(wanted)
        assert readout["chosen_by"].startswith("calibration's noise probe")
        assert eng.pop_counters()["readout_averaging_s"] == pytest.approx(wanted)
        # the heater lines of the next configuration wait for a long integration to end (they used to land in it)
        assert bench.emulation.chip.disturbed_readings == 0


def test_the_calibrations_readout_is_quieter_than_the_shortest(noisy_current: SimpleNamespace) -> None:
    """The same product read twice in a batch differs by the readout's noise (and the chip's walk): with the
    calibration's choice far less than with the fixed 1e-4 s request (the 2400 takes 2e-4 s, 0.01 NPLC)."""
    mats = feedback_matrices(4, [6], seed=4, dtype=np.float64)
    e = _error(16)[:, :4]
    spread = {}
    for option in (None, 1e-4):
        with Bench.open(noisy_current.bench, lock_dir=noisy_current.locks) as bench:
            hw = bench.session()
            cal = Calibration.load(noisy_current.cal, hw)
            eng = FastMatVec(cal, hw, PhotonicOptions(recenter_at_start=False, refine_iterations=0,
                                                      averaging_time_s=option))
            eng.program(mats)
            out = eng.matvec(0, np.vstack([e, e]))            # every sample twice in one batch
            first, second = out[:len(e)], out[len(e):]
            spread[option] = float(np.sqrt(np.mean((first - second) ** 2)))
            if option is not None:
                assert eng.averaging_time_s == pytest.approx(2e-4)
                assert eng.describe()["readout"]["chosen_by"] == "option"
    assert spread[None] < 0.5 * spread[1e-4], spread


def test_the_default_bench_keeps_its_averaging(small: SimpleNamespace) -> None:
    """Power meters are not probed: the calibration records the default 100 us and the readings keep it."""
    with Bench.open(small.bench, lock_dir=small.locks) as bench:
        hw = bench.session()
        cal = Calibration.load(small.cal, hw)
        assert cal.info["readout"]["chosen_by"] == "default (readout not probed)"
        eng = FastMatVec(cal, hw, PhotonicOptions(recenter_at_start=False, refine_iterations=0))
        eng.program(feedback_matrices(4, [6], seed=4, dtype=np.float64))
        eng.matvec(0, _error(4)[:, :4])
        assert eng.averaging_time_s == pytest.approx(1e-4)
        assert eng.describe()["readout"]["chosen_by"] == "calibration (default (readout not probed))"


def test_refinement_with_recentring_follows_the_chip_between_passes(small_current: SimpleNamespace) -> None:
    """With ``refine_recenter`` the chip is recentred before every pass after the first and after the last (the
    walk goes into the common shift, not into the configurations' corrections); the refinement still lowers the
    measured error, and its recorded bench time includes the recentrings."""
    mats = feedback_matrices(10, [9, 6], seed=3, dtype=np.float64)
    times = {}
    for recenter in (False, True):
        with Bench.open(small_current.bench, lock_dir=small_current.locks) as bench:
            hw = bench.session()
            cal = Calibration.load(small_current.cal, hw)
            eng = FastMatVec(cal, hw, PhotonicOptions(recenter_at_start=False, refine_iterations=2,
                                                      refine_recenter=recenter))
            eng.program(mats)
            eng.matvec(0, _error(8))
            (record,) = eng.pop_counters()["refinements"]
            assert record["rmse"] < record["rmse_history"][0]
            times[recenter] = record["time_s"]
            if recenter:
                assert len(record["recentre_shifts_pm"]) == 3
                assert np.allclose(np.mean(cal.common_shift_m) * 1e12, record["recentre_shifts_pm"][-1])
            else:
                assert record["recentre_shifts_pm"] is None
    assert times[True] > times[False]
