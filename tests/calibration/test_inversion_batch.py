"""Batch inversion (detunings -> drives for many configurations at once) against the per-configuration solve.

Calibrated once on the small emulated bench (2 banks x 4 rings): the batch must give the loop's drives to rounding
(one LU for all right-hand sides: measured ~1e-15 relative, asserted <= 1e-12) and the loop's errors, prefixed with
the first failing configuration.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
from labctl.drivers.limits import HeaterLimits
import pytest
from labctl.calibration import inversion
from labctl.calibration.calibrate import Calibration, calibrate
from labctl.calibration.inversion import (
    drive_for_detuning,
    drives_for_detunings,
)
from labctl.drivers.errors import LimitError

from labctl.bench.bench import Bench

from .test_calibrate import bench_file

N_CONFIGS = 60
REL_TOL = 1e-12


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimpleNamespace]:
    tmp: Path = tmp_path_factory.mktemp("batch")
    with Bench.open(bench_file(tmp / "bench.toml", seed=1), lock_dir=tmp) as bench:
        # the full measurement chain with fewer weight-sweep points (the inversion does not care; keeps it ~4 s)
        cal = calibrate(bench.session(), n_configs=6, n_levels=24, n_drift_references=1)
        lo, hi = cal.achievable_range
        targets = lo + (hi - lo) * np.random.default_rng(4).uniform(0.02, 0.98, (N_CONFIGS, *lo.shape))
        yield SimpleNamespace(cal=cal, targets=targets, deltas=cal.solve_detunings(targets),
                              limits=bench.session().limits)


def _loop(cal: Calibration, targets: np.ndarray, deltas: np.ndarray, limits: HeaterLimits) -> np.ndarray:
    return np.array([cal.solve_from_detuning(w, d, limits).drive for w, d in zip(targets, deltas)])


def _assert_same(batch: np.ndarray, loop: np.ndarray) -> None:
    assert batch.shape == loop.shape
    assert np.all(np.isfinite(batch))
    rel = np.abs(batch - loop) / np.maximum(np.abs(loop), np.finfo(float).tiny)
    assert np.max(rel) <= REL_TOL, np.max(rel)


def _error(solve: Callable[..., Any], cal: Calibration, w: np.ndarray, d: np.ndarray,
           limits: HeaterLimits) -> ValueError:
    """The error ``solve`` (drive_for_detuning or drives_for_detunings) raises for targets w, detunings d."""
    with pytest.raises(ValueError) as info:
        solve(w, d, cal.weights, cal.rmap, cal.thermal, limits, common_shift_m=cal.common_shift_m)
    return info.value


def _single_error(cal: Calibration, w: np.ndarray, d: np.ndarray, limits: HeaterLimits) -> ValueError:
    return _error(drive_for_detuning, cal, w, d, limits)


def _batch_error(cal: Calibration, w: np.ndarray, d: np.ndarray, limits: HeaterLimits) -> ValueError:
    return _error(drives_for_detunings, cal, w, d, limits)


@pytest.mark.parametrize("shift", ["zero", "scalar", "per_ring"])
def test_batch_equals_per_configuration_loop(small: SimpleNamespace, shift: str,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    cal = small.cal
    nb, nr = cal.shape
    cal.common_shift_m = {"zero": 0.0, "scalar": 1.5e-12,
                          "per_ring": np.random.default_rng(2).uniform(-3e-12, 3e-12, (nb, nr))}[shift]
    try:
        loop = _loop(cal, small.targets, small.deltas, small.limits)
        singles: list[int] = []                      # the normal path solves no configuration on its own
        monkeypatch.setattr(inversion, "drive_for_detuning", lambda *a, **k: singles.append(1))
        monkeypatch.setattr(inversion, "solve_heat", lambda *a, **k: singles.append(1))
        batch = cal.solve_from_detunings(small.targets, small.deltas, small.limits)
        assert not singles
        _assert_same(batch, loop)
        assert batch.shape == (N_CONFIGS, nb * nr)
        # a per-configuration shift (T, B, R) equals the loop with each configuration's own shift
        per_cfg = np.random.default_rng(3).uniform(-2e-12, 2e-12, small.deltas.shape)
        monkeypatch.undo()
        expected = np.array([drive_for_detuning(w, d, cal.weights, cal.rmap, cal.thermal, small.limits,
                                                common_shift_m=c).drive
                             for w, d, c in zip(small.targets, small.deltas, per_cfg)])
        _assert_same(drives_for_detunings(small.targets, small.deltas, cal.weights, cal.rmap, cal.thermal,
                                          small.limits, common_shift_m=per_cfg), expected)
    finally:
        cal.common_shift_m = 0.0


def test_rows_near_zero_heat_take_the_single_solve(small: SimpleNamespace, monkeypatch: pytest.MonkeyPatch) -> None:
    """A configuration whose exact heat has a zero goes through solve_heat alone (its non-negativity step)."""
    cal = small.cal
    heat = cal.solve(small.targets[0]).heat.copy()
    heat[5] = 0.0                                             # ring 5 reaches its shift by crosstalk alone
    shift = (np.asarray(cal.thermal.crosstalk) @ heat).reshape(cal.shape)
    deltas = small.deltas.copy()
    deltas[3] = cal.weights.ring_wavelength_m - cal.rmap.center_m - shift
    loop = _loop(cal, small.targets, deltas, small.limits)
    calls: list[int] = []
    real = inversion.solve_heat
    monkeypatch.setattr(inversion, "solve_heat", lambda *a, **k: (calls.append(1), real(*a, **k))[1])
    batch = cal.solve_from_detunings(small.targets, deltas, small.limits)
    assert len(calls) == 1
    _assert_same(batch, loop)


def test_shapes(small: SimpleNamespace) -> None:
    cal = small.cal
    nb, nr = cal.shape
    assert cal.solve_from_detunings(np.empty((0, nb, nr)), np.empty((0, nb, nr))).shape == (0, nb * nr)
    _assert_same(cal.solve_from_detunings(small.targets[:1], small.deltas[:1], small.limits),
                 _loop(cal, small.targets[:1], small.deltas[:1], small.limits))
    with pytest.raises(ValueError, match="shape"):
        cal.solve_from_detunings(small.targets[0], small.deltas[0], small.limits)
    with pytest.raises(ValueError, match="common_shift_m"):
        drives_for_detunings(small.targets, small.deltas, cal.weights, cal.rmap, cal.thermal,
                             common_shift_m=np.zeros((2, nb, nr)))


def test_cooling_names_configuration_and_ring(small: SimpleNamespace) -> None:
    cal = small.cal
    deltas = small.deltas.copy()
    blue = cal.weights.ring_wavelength_m - cal.rmap.center_m + 5e-12          # 5 pm blue of zero drive
    deltas[7, 1, 2] = blue[1, 2]
    deltas[12, 0, 0] = blue[0, 0]                                              # a later failure is not reported
    single = _single_error(cal, small.targets[7], deltas[7], small.limits)
    exc = _batch_error(cal, small.targets, deltas, small.limits)
    assert type(exc) is ValueError and type(single) is ValueError
    assert str(exc) == f"configuration 7: {single}"
    assert str(exc).startswith("configuration 7: bank 1 ring 2: target needs the resonance 5.00 pm blue")
    # a ring asked for less shift than the others' crosstalk gives it: solve_heat's error, same prefix
    deltas = small.deltas.copy()
    deltas[4, 0, 1] = cal.weights.ring_wavelength_m[0, 1] - cal.rmap.center_m[0, 1]   # zero own shift
    single = _single_error(cal, small.targets[4], deltas[4], small.limits)
    exc = _batch_error(cal, small.targets, deltas, small.limits)
    assert type(exc) is ValueError and str(exc) == f"configuration 4: {single}"
    assert "bank 0 ring 1: needs a shift of 0.00 pm" in str(exc)


def test_drive_beyond_limit_names_configuration_and_ring(small: SimpleNamespace) -> None:
    cal = small.cal
    loop = _loop(cal, small.targets, small.deltas, small.limits)
    # a bench limit below what one configuration needs on one ring: HeaterLimits.check's error
    ring = 6
    order = np.argsort(loop[:, ring])
    t_over = int(order[-1])
    max_drive = small.limits.max_drive.copy()
    max_drive[ring] = 0.5 * (loop[order[-1], ring] + loop[order[-2], ring])
    limits = dataclasses.replace(small.limits, max_drive=max_drive)
    single = _single_error(cal, small.targets[t_over], small.deltas[t_over], limits)
    exc = _batch_error(cal, small.targets, small.deltas, limits)
    assert type(exc) is LimitError and type(single) is LimitError
    assert str(exc) == f"configuration {t_over}: {single}"
    assert f"configuration {t_over}: bank 1 ring 2: drive" in str(exc) and "exceeds the limit" in str(exc)
    # a heat beyond the thermal model's drive range (every ring 20 nm further red): drive_for_heat's error
    deltas = small.deltas.copy()
    deltas[9] -= 20e-9
    deltas[15, 1, 3] = cal.weights.ring_wavelength_m[1, 3] - cal.rmap.center_m[1, 3] + 5e-12   # later: cooling
    single = _single_error(cal, small.targets[9], deltas[9], small.limits)
    exc = _batch_error(cal, small.targets, deltas, small.limits)
    assert type(exc) is LimitError and str(exc) == f"configuration 9: {single}"
    assert str(exc).startswith("configuration 9: bank ") and "beyond its drive limit" in str(exc)
