"""Calibration on emulated benches: mirrored-model check, end to end, limits, artifact binding, drift.

The small emulated chip (2 banks x 4 rings, 4 channels) keeps the file fast; ground truth is used only here, to
build the mirrored model and to measure true errors.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import tomli_w
from labctl.calibration import weights as wm
from labctl.calibration.artifact import CalibrationFileError
from labctl.calibration.calibrate import Calibration, calibrate, recalibrate
from labctl.calibration.drift import check_drift
from labctl.calibration.verify import verify
from labctl.bench.emulation import EmulatorTruth

from labctl.bench.bench import Bench
from labctl.bench.safety import check_heater_vector

#: Thresholds (bits over the calibrated span) asserted on the small chip; the report measures the full chips.
MODEL_BITS = 6.0
REFINED_BITS = 7.5
MIRROR_BITS = 7.0


def bench_file(path: Path, *, seed: int = 0, n_banks: int = 2, n_rings: int = 4,
               spec: dict[str, Any] | None = None) -> Path:
    """A small emulated bench: Qontrol heaters, one N777xC laser per channel, one N7745A on the bank ports."""
    lasers = [f"laser{k}" for k in range(n_rings)]
    n = n_banks * n_rings
    doc = {
        "bench": {"name": f"emulated-small-{seed}", "kind": "emulated", "settle_time_s": 0.001},
        "chip": {"seed": seed, "spec": {"layout": {"n_banks": n_banks, "n_rings": n_rings},
                                        "lasers": {"n_channels": n_rings}, **(spec or {})}},
        "instruments": {"heaters": {"driver": "qontrol"}, **{name: {"driver": "keysight_n777xc"} for name in lasers},
                        "meter": {"driver": "keysight_n774xa"}},
        "wiring": {"banks": n_banks, "rings": n_rings, "lasers": lasers,
                   "wavelengths_m": [1.55e-6 + 1e-9 * k for k in range(n_rings)], "inputs": "laser_power",
                   "detectors": [{"instrument": "meter", "through_port": 2 * b, "drop_port": 2 * b + 1}
                                 for b in range(n_banks)],
                   "heaters": {"instrument": "heaters", "mode": "voltage", "channels": list(range(n))}},
        "limits": {"heater_max_voltage_v": 7.0, "heater_max_power_w": 0.04, "total_heater_power_w": 0.6,
                   "heater_min_resistance_ohm": 900.0, "heater_max_resistance_ohm": 1200.0,
                   "laser_max_power_w": 0.01},
    }
    path.write_text(tomli_w.dumps(doc))
    return path


class RecordingHeaters:
    """Wraps the bench's safety-wrapped heaters: records every vector written (the full channel state)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.writes: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []   # (values, channels, state before)

    def set_drive(self, values: np.ndarray, channels: np.ndarray | None = None) -> None:
        idx = np.arange(self.inner.n_channels) if channels is None else np.asarray(channels, dtype=int)
        self.writes.append((np.array(values, dtype=float), idx.copy(), self.inner.applied))
        self.inner.set_drive(values, channels)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


# ---- ground truth of the emulated chip (tests only) -------------------------------------------------------------
class TruthThermal:
    """The emulator's own heater law, exactly: heat = electrical power (W), shift = K_true @ P."""

    mode = "voltage"

    def __init__(self, chip: Any, ignore_crosstalk: bool = False) -> None:
        p = chip.truth_params()
        self.r0, self.gamma = p.heater_resistance_ohm, p.self_heating_per_w
        k = p.crosstalk_m_per_w
        self.crosstalk = np.diag(np.diag(k)) if ignore_crosstalk else k.copy()

    def heat(self, drive: np.ndarray) -> np.ndarray:
        v2 = np.square(np.asarray(drive, dtype=float))
        return 2.0 * v2 / (self.r0 + np.sqrt(self.r0 * self.r0 + 4.0 * self.gamma * self.r0 * v2))

    def drive_for_heat(self, heat: np.ndarray) -> np.ndarray:
        p = np.asarray(heat, dtype=float)
        return np.sqrt(p * self.r0 * (1.0 + self.gamma * p))

    def shift_m(self, drive: np.ndarray) -> np.ndarray:
        return self.heat(drive) @ self.crosstalk.T


def truth_calibration(hw: Any, chip: Any, *, center_error_m: float = 0.0, ignore_crosstalk: bool = False
                      ) -> Calibration:
    """A Calibration whose resonance, thermal and weight models all come from the emulator's truth."""
    p = chip.truth_params()
    nb, nr = chip.n_banks, chip.n_rings
    spec = chip.spec
    wl = np.asarray(hw.wavelengths_m)
    loss_ref = p.bus_loss_amplitude ** (2 * nr)
    facet = 10 ** (-spec.optics.facet_loss_db / 10)
    baseline = -(chip.laser_power_w()[None, :] * facet * spec.optics.bank_split_fraction * facet * loss_ref
                 ) * np.ones((nb, 1))
    center = p.base_resonance_m.reshape(nb, nr) + chip.truth_temperature_offset_k() * \
        spec.thermal.temperature_coefficient_m_per_k
    rmap_true = SimpleNamespace(center_m=center, fwhm_m=center / spec.optics.loaded_q,
                                channel_of_ring=np.tile(np.arange(nr), (nb, 1)), baseline=baseline)
    thermal_true = TruthThermal(chip)
    # the weight model fitted to noise-free true weights at the designed sweep drives
    design = wm.design_sweeps(rmap_true, thermal_true, wl, n_configs=10, n_levels=40)
    n_ch, n_cfg, n_lvl, n = design.drive.shape
    w = chip.truth_weights(design.drive.reshape(-1, n), mode="voltage").reshape(n_ch, n_cfg, n_lvl, nb, -1)
    weight = np.stack([w[c, :, :, :, c] for c in range(n_ch)]) / loss_ref
    model = wm.fit_weight_model(wm.SweepData(drive=design.drive, weight=weight), rmap_true, thermal_true, wl, design)
    rmap = SimpleNamespace(**{**vars(rmap_true), "center_m": center + center_error_m})
    thermal = TruthThermal(chip, ignore_crosstalk=ignore_crosstalk)
    cal = Calibration(rmap, thermal, model)
    cal._sha256 = "mirrored-truth-model"      # duck-typed truth models are not a savable document
    return cal


def true_bits(cal: Calibration, hw: Any, chip: Any, n: int, refine: bool = False) -> tuple[float, float]:
    """(measured bits, true bits) of a verification run."""
    truth: list[np.ndarray] = []
    res = verify(hw, cal, n=n, refine=refine, on_applied=lambda i, d, t: truth.append(
        EmulatorTruth(chip).weights_at(d, "voltage", cal.rmap.channel_of_ring)))
    rmse = float(np.sqrt(np.mean((np.array(truth)[:res.n] - res.targets) ** 2)))
    return res.bits, float(np.log2(res.span / rmse))


def _lasers_off(hw: Any) -> None:
    for laser in hw.lasers:
        if laser.get_output():
            laser.set_output(False)


# ---- mirrored model -------------------------------------------------------------------------------------------------
def test_mirrored_model_passes_and_wrong_models_fail(tmp_path: Path) -> None:
    with Bench.open(bench_file(tmp_path / "bench.toml", seed=3), lock_dir=tmp_path) as bench:
        hw, chip = bench.session(), bench.emulation.chip
        _lasers_off(hw)
        good = truth_calibration(hw, chip)
        measured, true = true_bits(good, hw, chip, n=6)
        assert measured >= MIRROR_BITS and true >= MIRROR_BITS, (measured, true)
        shifted = truth_calibration(hw, chip, center_error_m=20e-12)
        measured_s, true_s = true_bits(shifted, hw, chip, n=6)
        assert measured_s < 5.0 and true_s < 5.0, (measured_s, true_s)
        no_xt = truth_calibration(hw, chip, ignore_crosstalk=True)
        measured_x, true_x = true_bits(no_xt, hw, chip, n=6)
        assert measured_x < MIRROR_BITS - 1 and true_x < MIRROR_BITS - 1, (measured_x, true_x)


# ---- the real calibration, end to end -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def calibrated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimpleNamespace]:
    tmp = tmp_path_factory.mktemp("cal")
    with Bench.open(bench_file(tmp / "bench.toml", seed=0), lock_dir=tmp) as bench:
        hw = bench.session()
        recorder = RecordingHeaters(hw.heaters)
        hw = dataclasses.replace(hw, heaters=recorder)
        cal = calibrate(hw, refine=False)
        chip = bench.emulation.chip
        temperature_at_reference_k = chip.truth_temperature_offset_k()
        drift_now = check_drift(hw, cal)
        yield SimpleNamespace(bench=bench, hw=hw, chip=chip, cal=cal, recorder=recorder, drift_now=drift_now,
                              temperature_at_reference_k=temperature_at_reference_k, tmp=tmp)


def test_calibrate_and_verify_meet_thresholds(calibrated: SimpleNamespace) -> None:
    c = calibrated
    assert np.all(c.cal.weights.w_max > c.cal.weights.w_min)
    measured, true = true_bits(c.cal, c.hw, c.chip, n=8)
    assert measured >= MODEL_BITS and true >= MODEL_BITS, (measured, true)
    measured_r, true_r = true_bits(c.cal, c.hw, c.chip, n=3, refine=True)
    assert measured_r >= REFINED_BITS and true_r >= REFINED_BITS, (measured_r, true_r)


def test_calibration_never_exceeds_limits(calibrated: SimpleNamespace) -> None:
    writes = calibrated.recorder.writes
    limits = calibrated.recorder.inner.limits
    assert len(writes) > 1000
    peak = 0.0
    for values, channels, before in writes:
        after = check_heater_vector(values, channels, before, limits, "recorded")   # raises on any violation
        peak = max(peak, float(limits.power_w(after).max()))
    assert peak <= float(limits.max_power_w.max())


def test_artifact_binds_to_its_chip(calibrated: SimpleNamespace) -> None:
    c = calibrated
    path = c.cal.save(c.tmp / "cal.json")
    again = Calibration.load(path, hw=c.hw)
    assert again.sha256 == c.cal.sha256
    other = bench_file(c.tmp / "other.toml", seed=1)
    with Bench.open(other, lock_dir=c.tmp / "lock2") as bench, \
            pytest.raises(CalibrationFileError, match="made for chip 'emulated seed 0'"):
        Calibration.load(path, hw=bench.session())


def test_weights_at_several_drives_switch_each_laser_once_and_agree_with_one_at_a_time(
        calibrated: SimpleNamespace) -> None:
    c = calibrated
    drives = np.asarray(c.cal.drift_reference.drive, dtype=float)
    t0 = c.hw.elapsed_s()
    batched = c.cal.measure_weights_at(c.hw, drives)
    t_batched = c.hw.elapsed_s() - t0
    singles = []
    t0 = c.hw.elapsed_s()
    for drive in drives:
        c.cal.apply(c.hw, drive)
        singles.append(c.cal.measure_weights(c.hw))
    t_single = c.hw.elapsed_s() - t0
    assert batched.shape == (drives.shape[0], *c.cal.weights.shape)
    # the same weights, apart from the chip's drift between the two measurements (about 1e-3 rms here)
    diff = batched - np.array(singles)
    assert float(np.sqrt(np.mean(diff**2))) < 3e-3 and float(np.max(np.abs(diff))) < 8e-3
    assert t_batched < 0.5 * t_single                                     # one laser stabilisation per channel


def test_drift_check_trips_only_after_enough_time(calibrated: SimpleNamespace) -> None:
    c = calibrated
    assert not c.drift_now.tripped, c.drift_now
    report = c.drift_now
    hours = 0
    while not report.tripped and hours < 200:
        c.chip.clock.advance(2 * 3600.0, "idle")       # the chip temperature random-walks with virtual time
        hours += 2
        report = check_drift(c.hw, c.cal)
    assert report.tripped, "ambient drift never tripped the check"
    assert hours >= 2
    # the estimated common shift follows the chip's true temperature excursion
    true_shift = (c.chip.truth_temperature_offset_k() - c.temperature_at_reference_k) \
        * c.chip.spec.thermal.temperature_coefficient_m_per_k
    assert abs(report.common_shift_m - true_shift) < 0.3 * abs(true_shift) + 1e-12
    # following the measured shift (re-centring) brings the model back without recalibrating
    before, _ = true_bits(c.cal, c.hw, c.chip, n=3)
    c.cal.recenter(c.hw)
    after_measured, after_true = true_bits(c.cal, c.hw, c.chip, n=3)
    assert after_true >= MODEL_BITS and after_measured > before, (before, after_measured, after_true)


def test_a_partial_recalibration_keeps_the_heater_model_and_measures_the_rest(calibrated: SimpleNamespace) -> None:
    """After drift, ``recalibrate(scope="weights")`` keeps the heater model (heaters move rings the same way at any
    chip temperature) and measures the resonance map, weight model and drift references again: cheaper than the
    calibration, as accurate."""
    c = calibrated
    c.chip.clock.advance(6 * 3600.0, "idle")
    t0, x0 = c.hw.elapsed_s(), c.hw.transaction_count()
    new = recalibrate(c.hw, c.cal, scope="weights")
    spent_s, spent_tx = c.hw.elapsed_s() - t0, c.hw.transaction_count() - x0
    assert new.thermal is c.cal.thermal and "heaters" not in new.info["timing"]
    assert new.rmap is not c.cal.rmap and new.drift_reference is not None
    assert new.info["recalibration"] == {"scope": "weights", "replaces": c.cal.sha256}
    assert Calibration.from_document(new.to_document()).info["recalibration"]["scope"] == "weights"
    full = c.cal.info["timing"]["total"]
    assert spent_s < 0.8 * full["elapsed_s"] and spent_tx < full["transactions"]
    measured, true = true_bits(new, c.hw, c.chip, n=8)
    assert measured >= MODEL_BITS and true >= MODEL_BITS, (measured, true)


# ---- command line ---------------------------------------------------------------------------------------------------
def test_cli_calibrate_then_verify(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from labctl.cli.main import main

    monkeypatch.setenv("LABCTL_LOCK_DIR", str(tmp_path / "locks"))
    monkeypatch.setenv("LABCTL_DATA", str(tmp_path / "runs"))
    bench = bench_file(tmp_path / "bench.toml", seed=2)
    out = tmp_path / "cal.json"
    assert main(["calibrate", "--bench", str(bench), "--out", str(out), "--json", "--quiet"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["calibration_sha256"] == json.loads(out.read_text())["sha256"]
    assert report["projected_time_s"] > 0 and report["transactions"] > 0
    assert report["naive_full_grid"]["elapsed_s"] > report["timing"]["weights"]["elapsed_s"]
    assert main(["verify", "--bench", str(bench), "--calibration", str(out), "--n", "3", "--no-refine", "--json",
                 "--quiet", "--min-bits", str(MODEL_BITS)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["calibration_sha256"] == report["calibration_sha256"]
    assert result["true_bits"] >= MODEL_BITS and result["bits"] >= MODEL_BITS
