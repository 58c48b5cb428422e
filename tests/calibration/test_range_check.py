"""Ranges checked by measurement (calibration/range_check.py): the settings it measures."""

from __future__ import annotations

import itertools
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from labctl.calibration.range_check import end_patterns


@pytest.mark.parametrize("n_rings", [4, 5, 10, 11])
def test_every_ring_meets_every_combination_of_its_neighbours_ends(n_rings: int) -> None:
    """A ring's range end is judged by its worst reading; the neighbour terms that can cut it are its two nearest
    neighbours', so the eight settings give every ring, at each of its ends, all four combinations of theirs."""
    p = end_patterns(n_rings)
    assert p.shape == (8, n_rings)
    for r in range(1, n_rings - 1):
        for own, left, right in itertools.product([True, False], repeat=3):
            rows = (p[:, r] == own) & (p[:, r - 1] == left) & (p[:, r + 1] == right)
            assert rows.any(), (n_rings, r, own, left, right)
    assert np.all(p[0]) and not np.any(p[1])


def _one_bank_model() -> Any:
    """A 1 x 3 weight model without neighbour terms: w = -1 + 1.9 L(tau) on windows [-200, 0] pm; ring 1 held at
    its mid-window weight."""
    from labctl.calibration.weights import WeightModel

    coef = np.zeros((1, 3, 1, 5))
    coef[..., 0, 0], coef[..., 0, 1] = -1.0, 1.9
    lo, hi = np.full((1, 3), -200e-12), np.zeros((1, 3))
    wm = WeightModel(wavelengths_m=np.array([1550e-9, 1551e-9, 1552e-9]), channel_of_ring=np.array([[0, 1, 2]]),
                     delta_offset_m=np.zeros((1, 3)), width_m=np.full((1, 3), 190e-12), coef=coef,
                     neighbours=np.zeros((1, 3, 0), dtype=int), u_park_m=np.zeros((1, 3, 0)),
                     delta_lo_m=lo, delta_hi_m=hi, slope_sign=np.ones((1, 3)),
                     w_min=np.array([[-0.8, 0.0, -0.8]]), w_max=np.array([[0.8, 0.0, 0.8]]),
                     fit_rmse=np.zeros((1, 3)))
    held = float(wm.predict(wm.park_delta_m())[0, 1])      # as weights._finalize_windows holds it: mid-window
    wm.w_min[0, 1] = wm.w_max[0, 1] = held
    return wm


def test_a_held_ring_takes_its_measured_weight() -> None:
    """A ring held at one weight (no range for every neighbour setting: spread1nm-s3, its sweep disturbed by a
    ring parked 140 pm from its channel) is asked for the model's weight by every target; the chip gives another
    one there. The check reads it in settings of random targets and the held weight becomes the mean reading,
    recorded; the ring's model curve moves with it, so the solve for the new held weight drives where it was
    read."""
    from labctl.calibration.range_check import check_ranges

    wm = _one_bank_model()
    wm_park = wm.park_delta_m()[0, 1]
    applied: dict[str, np.ndarray] = {}
    # the chip: ring 1 reads 0.4 below the model at its hold, a little differently with the neighbours' ends
    truth_offset = np.array([[0.0, -0.4, 0.0]])

    def measure(hw: Any, channels: np.ndarray) -> np.ndarray:
        delta = applied["delta"]
        w = wm.predict(delta) + truth_offset + np.array([[0.0, 0.003, 0.0]]) * (delta[0, 0] > -100e-12)
        return np.where(np.isin(wm.channel_of_ring, channels), w, np.nan)

    cal = SimpleNamespace(
        weights=wm, rmap=SimpleNamespace(center_m=np.array([[1549.5e-9, 1550.2e-9, 1551.5e-9]]),
                                         pole_fwhm_m=np.full((1, 3), 190e-12), fwhm_m=np.full((1, 3), 190e-12)),
        solve_from_detuning=lambda target, delta, limits: SimpleNamespace(drive=np.asarray(delta).ravel()),
        apply=lambda hw, drive: applied.update(delta=np.asarray(drive).reshape(1, 3)),
        measure_weights=measure)
    cal.measure_weights_at = lambda hw, drives, channels: np.array(
        [(cal.apply(hw, d), measure(hw, channels))[1] for d in drives])
    hw = SimpleNamespace(limits=SimpleNamespace(check=lambda drive: None))
    model_held = float(wm.predict(wm.park_delta_m())[0, 1])
    out = check_ranges(hw, cal)
    assert wm.w_min[0, 1] == wm.w_max[0, 1]
    assert wm.solve(wm.w_min)[0, 1] == pytest.approx(wm_park, abs=1e-15)
    assert abs(wm.w_min[0, 1] - (model_held - 0.4)) < 0.005
    assert [(e["bank"], e["ring"]) for e in out] == [(0, 1)] and "held at one weight" in out[0]["reasons"][0]
    assert wm.w_max[0, 0] == 0.8 and wm.w_min[0, 2] == -0.8          # usable rings far apart: untouched


def test_a_held_ring_the_model_describes_keeps_its_hold() -> None:
    """Readings within the tolerance of the model's held weight change nothing: the window stays open, so the
    solve keeps moving the ring inside it against its neighbours' terms (closing it cost a crosstalk-x2 chip)."""
    from labctl.calibration.range_check import check_ranges

    wm = _one_bank_model()
    lo, hi, w_held = wm.delta_lo_m.copy(), wm.delta_hi_m.copy(), wm.w_min[0, 1]
    applied: dict[str, np.ndarray] = {}
    cal = SimpleNamespace(
        weights=wm, rmap=SimpleNamespace(center_m=np.array([[1549.5e-9, 1550.2e-9, 1551.5e-9]]),
                                         pole_fwhm_m=np.full((1, 3), 190e-12), fwhm_m=np.full((1, 3), 190e-12)),
        solve_from_detuning=lambda target, delta, limits: SimpleNamespace(drive=np.asarray(delta).ravel()),
        apply=lambda hw, drive: applied.update(delta=np.asarray(drive).reshape(1, 3)),
        measure_weights=lambda hw, channels: np.where(np.isin(wm.channel_of_ring, channels),
                                                      np.full((1, 3), w_held + 0.001), np.nan))
    cal.measure_weights_at = lambda hw, drives, channels: np.array([cal.measure_weights(hw, channels) for _ in drives])
    out = check_ranges(SimpleNamespace(limits=SimpleNamespace(check=lambda drive: None)), cal)
    assert out == [] and wm.w_min[0, 1] == wm.w_max[0, 1] == w_held
    np.testing.assert_array_equal(wm.delta_lo_m, lo)
    np.testing.assert_array_equal(wm.delta_hi_m, hi)


def test_a_held_ring_that_follows_its_neighbours_is_held_at_its_mean_over_random_targets() -> None:
    """A held ring's weight follows its neighbours' settings (default chip, seed 7: read at -0.438 with its
    neighbours at their window ends, -0.507 on average over random targets), so one held weight is right on
    average at best. Held at its mean reading over settings of random targets it is
    closer to that mean over fresh random targets, and its rms error there smaller, than held where the model or
    a mid-window reading put it."""
    from labctl.calibration.range_check import check_ranges

    wm = _one_bank_model()
    model_held = float(wm.w_min[0, 1])
    applied: dict[str, np.ndarray] = {}
    lo0 = wm.delta_lo_m[0, 0]

    def chip_held(delta: np.ndarray) -> np.ndarray:     # ring 1 on the chip: as the model said only while ring 0
        x = np.asarray(delta)[..., 0, 0] / lo0          # sits mid-window, 0.1 lower elsewhere
        return model_held - 0.1 + 0.1 * np.exp(-(((x - 0.5) / 0.05) ** 2))

    def measure(hw: Any, channels: np.ndarray) -> np.ndarray:
        w = wm.predict(applied["delta"]).copy()
        w[0, 1] = chip_held(applied["delta"])
        return np.where(np.isin(wm.channel_of_ring, channels), w, np.nan)

    cal = SimpleNamespace(
        weights=wm, rmap=SimpleNamespace(center_m=np.array([[1549.5e-9, 1550.2e-9, 1551.5e-9]]),
                                         pole_fwhm_m=np.full((1, 3), 190e-12), fwhm_m=np.full((1, 3), 190e-12)),
        solve_from_detuning=lambda target, delta, limits: SimpleNamespace(drive=np.asarray(delta).ravel()),
        apply=lambda hw, drive: applied.update(delta=np.asarray(drive).reshape(1, 3)))
    cal.measure_weights = measure
    cal.measure_weights_at = lambda hw, drives, channels: np.array(
        [(cal.apply(hw, d), measure(hw, channels))[1] for d in drives])
    park_reading = float(chip_held(wm.park_delta_m()))
    out = check_ranges(SimpleNamespace(limits=SimpleNamespace(check=lambda drive: None)), cal, seed=1)
    assert [(e["bank"], e["ring"]) for e in out] == [(0, 1)]
    held = float(wm.w_min[0, 1])
    assert wm.w_max[0, 1] == held
    rng = np.random.default_rng(99)                     # fresh targets, as a verification draws them
    t = wm.w_min + (wm.w_max - wm.w_min) * rng.uniform(0.0, 1.0, (400, 1, 3))
    chip = chip_held(wm.solve(t))
    rms = lambda w: float(np.sqrt(np.mean((chip - w) ** 2)))  # noqa: E731
    mean = float(np.mean(chip))                         # the best one weight for such targets
    assert abs(held - mean) < 0.25 * min(abs(model_held - mean), abs(park_reading - mean))
    assert rms(held) < min(rms(model_held), rms(park_reading))


def test_rings_that_come_close_in_operation_are_close() -> None:
    """Two rings 2.9 linewidths apart at zero drive whose operating windows bring them within 1.1 linewidths (adc-s8:
    one on its far branch heated red towards the next channel, the next one approaching its channel from the blue)
    are close in operation; a ring whose window stays far from every other is not."""
    from labctl.calibration.range_check import CLOSE_LINEWIDTHS, close_in_operation

    wm = _one_bank_model()
    width = 190e-12
    # ring 0 far branch: detuning -450..-94 pm (at 1550.094..1550.450 nm); ring 1 approaching channel 1 from the
    # blue: 0..326 pm (1550.674..1551.0 nm), 224 pm = 1.2 linewidths from ring 0's window; ring 2 at 1552 nm
    wm.delta_lo_m = np.array([[-450e-12, 0.0, 0.0]])
    wm.delta_hi_m = np.array([[-94e-12, 326e-12, 100e-12]])
    close = close_in_operation(wm, CLOSE_LINEWIDTHS)
    assert close.tolist() == [[True, True, False]]
    assert not close_in_operation(wm, 224e-12 / width - 0.01).any()


def test_a_ring_cut_to_one_weight_is_held_at_its_mean_over_random_targets() -> None:
    """A ring whose window-end readings cut its range to nothing (harsh chip, seed 0: a ring in its flat tail whose
    weight follows a close neighbour, read 0.214 and 0.298 at the ends, held at their middle 0.256, 0.29-0.30 in
    use) is read in settings of random targets like a ring the model holds, and held at its mean reading; the
    shifted curve keeps the drive the ring was read at."""
    import copy

    from labctl.calibration.range_check import check_ranges

    wm = _one_bank_model()
    wm.w_min[0, 1], wm.w_max[0, 1] = -0.8, 0.8            # ring 1 usable by the model
    ends = [float(wm.predict(d)[0, 0]) for d in (wm.delta_lo_m, wm.delta_hi_m)]
    wm.w_min[0, 0], wm.w_max[0, 0] = min(ends), max(ends)  # ring 0: its whole window, as the chip gives it
    before = copy.deepcopy(wm)
    applied: dict[str, np.ndarray] = {}
    lo0 = wm.delta_lo_m[0, 0]

    def chip_ring1(delta: np.ndarray) -> np.ndarray:    # follows ring 0 only: 0.21 with it at delta 0, 0.30 beyond
        x = np.asarray(delta)[..., 0, 0] / lo0
        return 0.30 - 0.09 * np.exp(-((x / 0.05) ** 2))

    def measure(hw: Any, channels: np.ndarray) -> np.ndarray:
        w = wm.predict(applied["delta"]).copy()
        w[0, 1] = chip_ring1(applied["delta"])
        return np.where(np.isin(wm.channel_of_ring, channels), w, np.nan)

    cal = SimpleNamespace(   # rings 0 and 1 200 pm apart: close, checked at their window ends
        weights=wm, rmap=SimpleNamespace(center_m=np.array([[1550.0e-9, 1550.2e-9, 1551.5e-9]]),
                                         pole_fwhm_m=np.full((1, 3), 190e-12), fwhm_m=np.full((1, 3), 190e-12)),
        solve_from_detuning=lambda target, delta, limits: SimpleNamespace(drive=np.asarray(delta).ravel()),
        apply=lambda hw, drive: applied.update(delta=np.asarray(drive).reshape(1, 3)), measure_weights=measure)
    cal.measure_weights_at = lambda hw, drives, channels: np.array(
        [(cal.apply(hw, d), measure(hw, channels))[1] for d in drives])
    out = check_ranges(SimpleNamespace(limits=SimpleNamespace(check=lambda drive: None)), cal, seed=1)
    assert [(e["bank"], e["ring"]) for e in out] == [(0, 1)]
    reasons = out[0]["reasons"]
    assert "falls short" in reasons[0] and "held at one weight: measured" in reasons[1], reasons
    assert out[0]["range_model"] == [-0.8, 0.8]
    held = float(wm.w_min[0, 1])
    assert wm.w_max[0, 1] == held
    mid = 0.5 * (0.21 + 0.30)                           # where the end readings alone would hold it
    rng = np.random.default_rng(99)                     # fresh targets, as a verification draws them
    t = wm.w_min + (wm.w_max - wm.w_min) * rng.uniform(0.0, 1.0, (400, 1, 3))
    chip = chip_ring1(wm.solve(t))
    mean = float(np.mean(chip))
    assert abs(held - mean) < 0.25 * abs(mid - mean)
    assert float(np.sqrt(np.mean((chip - held) ** 2))) < float(np.sqrt(np.mean((chip - mid) ** 2)))
    t_before = t.copy()
    t_before[..., 0, 1] = mid
    np.testing.assert_allclose(wm.solve(t)[..., 0, 1], before.solve(t_before, strict=False)[..., 0, 1], atol=1e-15)
