"""Calibration file: exact round trip, content hash, refusal of corrupted and mismatched files."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from labctl.calibration import artifact
from labctl.calibration import weights as wm
from labctl.calibration.artifact import CalibrationFileError
from labctl.calibration.calibrate import Calibration
from labctl.calibration.drift import DriftReference

from .test_inversion import fake_hw
from .test_weights import bank, synthetic_sweeps, true_model


def contract_models(rmap_ns: object, thermal_ns: object) -> tuple[object, object]:
    """A ResonanceMap / ThermalModel built from contract values (extra fields keep their defaults)."""
    from labctl.calibration.resonances import ResonanceMap
    from labctl.calibration.thermal import ThermalModel

    nb, nr = rmap_ns.center_m.shape  # type: ignore[attr-defined]
    n = nb * nr
    k = thermal_ns.crosstalk  # type: ignore[attr-defined]
    rmap_values = {"center_m": rmap_ns.center_m, "fwhm_m": rmap_ns.fwhm_m,  # type: ignore[attr-defined]
                   "extinction_db": np.full((nb, nr), np.nan), "drop_peak": np.full((nb, nr), 0.84),
                   "channel_of_ring": rmap_ns.channel_of_ring, "fit_rmse": np.full(nb, 1e-3),  # type: ignore
                   "baseline": rmap_ns.baseline}  # type: ignore[attr-defined]
    thermal_values = {"mode": "voltage", "efficiency_m_per_unit": np.diag(k).copy(), "crosstalk": k,
                      "nonlinearity": np.full(n, -4e-5), "fit_rmse_m": np.full(n, 0.2e-12)}
    names_r = {f.name for f in dataclasses.fields(ResonanceMap) if f.init}
    names_t = {f.name for f in dataclasses.fields(ThermalModel) if f.init}
    rmap = ResonanceMap(**{k_: v for k_, v in rmap_values.items() if k_ in names_r})
    thermal = ThermalModel(**{k_: v for k_, v in thermal_values.items() if k_ in names_t})
    return rmap, thermal


@pytest.fixture(scope="module")
def cal() -> Calibration:
    rmap_ns, thermal_ns, wl = bank()
    design = wm.design_sweeps(rmap_ns, thermal_ns, wl, n_configs=10, n_levels=30)
    model = wm.fit_weight_model(synthetic_sweeps(true_model(rmap_ns, wl), rmap_ns, thermal_ns, wl, design),
                                rmap_ns, thermal_ns, wl, design)
    rmap, thermal = contract_models(rmap_ns, thermal_ns)
    rng = np.random.default_rng(0)
    drift = DriftReference(targets=rng.uniform(-0.5, 0.5, (3, 2, 4)), drive=rng.uniform(0, 3, (3, 8)),
                           delta_m=rng.uniform(0, 3e-10, (3, 2, 4)), measured=rng.uniform(-0.5, 0.5, (3, 2, 4)),
                           elapsed_s=123.25, created="2025-01-01T00:00:00+00:00")
    info = {"chip_id": "chip-A", "bench_sha256": "b" * 64, "wiring_sha256": "w" * 64,
            "instruments": {"heaters": "Qontrol Q8iv SN1"}, "fit_quality": {"span": model.span}}
    return Calibration(rmap, thermal, model, info=info, drift_reference=drift, refine_default=True)


def _same(a: object, b: object) -> None:
    for f in dataclasses.fields(a):  # type: ignore[arg-type]
        va, vb = getattr(a, f.name), getattr(b, f.name)
        if isinstance(va, np.ndarray):
            assert va.dtype == vb.dtype and va.shape == vb.shape, f.name
            np.testing.assert_array_equal(va, vb, err_msg=f.name)   # bitwise, NaN == NaN
        else:
            assert va == vb, f.name


def test_round_trip_is_exact(cal: Calibration, tmp_path: Path) -> None:
    path = cal.save(tmp_path / "cal.json")
    text = path.read_text()
    head = json.loads(text)
    assert head["format"] == "labctl.calibration" and head["version"] == 1
    assert head["chip_id"] == "chip-A" and "git_commit" in head["code_version"] and head["created"]
    assert list(head)[:3] == ["format", "version", "sha256"]    # readable metadata first
    loaded = Calibration.load(path)
    assert loaded.sha256 == cal.sha256 == head["sha256"]
    for a, b in ((cal.rmap, loaded.rmap), (cal.thermal, loaded.thermal), (cal.weights, loaded.weights),
                 (cal.drift_reference, loaded.drift_reference)):
        _same(a, b)
    assert loaded.refine_default is True and loaded.info["chip_id"] == "chip-A"
    # the hash is of the content, not the formatting; a second save is byte-identical
    path2 = loaded.save(tmp_path / "again.json")
    assert path2.read_text() == text


def test_nan_and_inf_are_strict_json() -> None:
    doc = artifact.finalize({"x": artifact.encode(np.array([1.5, np.nan, np.inf, -np.inf, 0.1 + 0.2])),
                             "y": artifact.encode(float("nan"))})
    text = artifact.canonical_json(doc)        # allow_nan=False: raises if anything is not strict JSON
    back = artifact.decode(json.loads(text)["x"])
    np.testing.assert_array_equal(back, [1.5, np.nan, np.inf, -np.inf, 0.1 + 0.2])
    assert np.isnan(artifact.decode(json.loads(text)["y"]))


def _rewrite(path: Path, edit: object, rehash: bool) -> None:
    doc = json.loads(path.read_text())
    edit(doc)  # type: ignore[operator]
    if rehash:
        doc["sha256"] = artifact.content_sha256(doc)
    path.write_text(json.dumps(doc))


def test_refuses_corrupted_files(cal: Calibration, tmp_path: Path) -> None:
    good = cal.save(tmp_path / "good.json")
    cases = {
        "hash mismatch": (lambda d: d["weight_model"]["w_min"]["data"].__setitem__(0, 0.123), False),
        "missing key": (lambda d: d.pop("thermal_model"), True),
        "missing key\\(s\\) crosstalk": (lambda d: d["thermal_model"].pop("crosstalk"), True),
        "w_max: shape \\[2, 3\\]": (lambda d: d["weight_model"]["w_max"].update(
            shape=[2, 3], data=d["weight_model"]["w_max"]["data"][:6]), True),
        "crosstalk: shape": (lambda d: d["thermal_model"]["crosstalk"].update(
            shape=[4, 16]), True),
        "format is": (lambda d: d.__setitem__("format", "something.else"), False),
        "version 99 is not supported": (lambda d: d.__setitem__("version", 99), True),
    }
    for reason, (edit, rehash) in cases.items():
        bad = tmp_path / "bad.json"
        bad.write_text(good.read_text())
        _rewrite(bad, edit, rehash)
        with pytest.raises(CalibrationFileError, match=reason):
            Calibration.load(bad)
    truncated = tmp_path / "truncated.json"
    truncated.write_text(good.read_text()[:-200])
    with pytest.raises(CalibrationFileError, match="not valid JSON"):
        Calibration.load(truncated)


def test_refuses_other_chip_or_wiring(cal: Calibration, tmp_path: Path) -> None:
    path = cal.save(tmp_path / "cal.json")
    hw, _ = fake_hw(2, 4)
    hw.chip_id, hw.wiring_sha256 = "chip-A", "w" * 64
    assert Calibration.load(path, hw=hw).sha256 == Calibration.load(path).sha256
    hw.chip_id = "chip-B"
    with pytest.raises(CalibrationFileError, match="made for chip 'chip-A', but this bench has chip 'chip-B'"):
        Calibration.load(path, hw=hw)
    hw.chip_id, hw.wiring_sha256 = "chip-A", "x" * 64
    with pytest.raises(CalibrationFileError, match="wiring"):
        Calibration.load(path, hw=hw)
    hw3, _ = fake_hw(3, 4)
    hw3.chip_id, hw3.wiring_sha256 = "chip-A", "w" * 64
    with pytest.raises(CalibrationFileError, match="rings"):
        Calibration.load(path, hw=hw3)


def test_older_files_without_the_new_fields_still_load(cal: Calibration, tmp_path: Path) -> None:
    """Files written before the ring order, the reference uncertainty and the range restrictions were stored load
    with those unknown: ring order as designed, no reference uncertainty (verify then counts none)."""
    from labctl.calibration.verify import reference_uncertainty

    doc = json.loads(cal.save(tmp_path / "new.json").read_text())
    doc["resonance_map"].pop("baseline_uncertainty", None)
    doc["thermal_model"].pop("resonance_of_ring", None)
    doc["weight_model"]["meta"] = artifact.encode({k: v for k, v in artifact.decode(doc["weight_model"]["meta"])
                                                   .items() if k != "restricted"})
    old = artifact.finalize({k: v for k, v in doc.items() if k != "sha256"})
    path = tmp_path / "old.json"
    artifact.write_document(old, path)
    again = Calibration.load(path)
    assert again.rmap.baseline_uncertainty is None and again.thermal.resonance_of_ring is None
    assert np.array_equal(reference_uncertainty(again), np.zeros(again.shape[0]))
    assert np.array_equal(again.weights.w_min, cal.weights.w_min)
