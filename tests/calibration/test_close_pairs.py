"""Two rings of a bank closer than about a linewidth, on a bench that reads only the balanced photocurrent: the map's
poles pull each other (on the current bench's chip seed 2, rings 174 pm apart were mapped 30 pm apart), and the
heater steps that part them resolve the rings' own zero-drive resonances and heater rows. Ground truth only scores.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from labctl.bench.bench import Bench
from labctl.bench.config import embedded_bench_path
from labctl.calibration import artifact
from labctl.calibration.measure import only_laser
from labctl.calibration.resonances import measure_resonance_map
from labctl.calibration.thermal import (
    PAIR_LINEWIDTHS,
    RESOLVED_LINEWIDTHS,
    ThermalModel,
    _fit,
    _fit_pair_separation,
    _PairTracking,
    characterize_heaters,
    close_pairs,
    heater_groups,
)


def test_close_pairs_are_disjoint_and_closest_first() -> None:
    c = np.array([[0.0, 100e-12, 180e-12, 2e-9], [0.0, 1e-9, 2e-9, 2.05e-9]])
    # ring 1 of bank 0 is close to both 0 and 2: it joins the closer (2), ring 0 is left alone
    assert close_pairs(c, 150e-12) == [(6, 7), (1, 2)]
    assert close_pairs(c, 50e-12) == []


def _pulled(own: np.ndarray, width_m: float) -> np.ndarray:
    """Poles of two coupled rings (M, 2) from their own resonances: they attract within 1.5 linewidths, their
    mean is kept (a stand-in for the coupled-mode trace, not the emulator's physics)."""
    gap = own[:, 1] - own[:, 0]
    pull = np.where(np.abs(gap) < 1.5 * width_m, 0.35 * gap, 0.0)
    return np.c_[own[:, 0] + pull, own[:, 1] - pull]


def _synthetic_pair() -> SimpleNamespace:
    """Synthetic bank of 4 rings, one heater per group: rings 0 and 1 sit 0.9 linewidth apart, the tracking sees
    their pulled poles."""
    nb, nr, lw = 1, 4, 190e-12
    own0 = np.array([0.0, 0.9 * lw, 1.5e-9, 3e-9])
    k_true = np.array([[1.0, 0.1, 0.03, 0.01], [0.1, 1.0, 0.09, 0.03], [0.02, 0.08, 1.0, 0.1],
                       [0.01, 0.03, 0.09, 1.0]]) * 1e-9 / 1e-6          # m per A^2
    groups = heater_groups(nb, nr, 1)
    levels = np.array([0.03, 0.25, 0.45, 0.65, 0.85, 1.0])
    drives, rows = [], []
    for g, heaters in enumerate(groups):
        for f in levels:
            d = np.zeros(nb * nr)
            d[heaters] = np.sqrt(f * 2.0 * 1e-6)                       # own shift up to 2 nm
            drives.append(d)
            rows.append(g)
    drives_a, rows_a = np.array(drives), np.array(rows)
    own = own0[None, :] + (drives_a ** 2) @ k_true.T                    # (M, N) the rings' own resonances
    tracked = own.copy()
    tracked[:, :2] = _pulled(own[:, :2], lw)
    centre0 = np.r_[_pulled(own0[None, :2], lw)[0], own0[2:]]
    return SimpleNamespace(nb=nb, nr=nr, lw=lw, own0=own0, k_true=k_true, groups=groups, drives=drives_a,
                           rows=rows_a, tracked=tracked, centre0=centre0,
                           hw=SimpleNamespace(n_banks=nb, n_rings=nr, mode="current"))


def test_a_pair_is_resolved_from_the_steps_that_part_it() -> None:
    """The fit recovers the pair's own zero-drive places and rows from the steps that part them."""
    p = _synthetic_pair()
    nb, nr, lw, own0, k_true, groups = p.nb, p.nr, p.lw, p.own0, p.k_true, p.groups
    drives_a, rows_a, tracked, centre0 = p.drives, p.rows, p.tracked, p.centre0
    map_centre = centre0[:2]
    assert abs(map_centre[1] - map_centre[0]) < 0.5 * (own0[1] - own0[0])     # the map cannot place them
    hw = p.hw
    pairs = close_pairs(centre0.reshape(nb, nr), PAIR_LINEWIDTHS * lw)
    assert pairs == [(0, 1)]
    model, correction, _ = _fit(hw, groups, tracked - centre0[None, :], drives_a, rows_a, pairs=pairs,
                             centres=tracked, resolve_m=RESOLVED_LINEWIDTHS * lw)
    np.testing.assert_allclose(centre0 + correction, own0, atol=3e-12)
    # the pair's rows: each heater that parts them is resolved, own efficiencies within 3 %
    np.testing.assert_allclose(np.diag(model.crosstalk)[:2], np.diag(k_true)[:2], rtol=0.03)
    assert abs(model.crosstalk[1, 0] - k_true[1, 0]) < 0.03 * k_true[0, 0]
    assert abs(model.crosstalk[0, 1] - k_true[0, 1]) < 0.03 * k_true[1, 1]
    # without the pair handling the map's pull stays in the model
    plain, zero, _ = _fit(hw, groups, tracked - centre0[None, :], drives_a, rows_a)
    assert not np.any(zero)


def test_a_pair_no_step_parts_keeps_its_poles_rows() -> None:
    """Where no scan parts the pair, its rings keep the rows their poles' own tracking gives: two equal rows of the
    pair's mean would make the crosstalk matrix singular (current-s6 stopped there)."""
    p = _synthetic_pair()
    kw = dict(centres=p.tracked, resolve_m=100 * p.lw)                 # no scan parts anything
    shifts = p.tracked - p.centre0[None, :]
    model, correction, _ = _fit(p.hw, p.groups, shifts, p.drives, p.rows, pairs=[(0, 1)], **kw)
    plain, _, _ = _fit(p.hw, p.groups, shifts, p.drives, p.rows, pairs=[], **kw)
    assert not np.any(correction)
    np.testing.assert_allclose(model.crosstalk[:2], plain.crosstalk[:2])
    assert np.linalg.cond(model.crosstalk) < 1e3


def _seeded_bench(tmp: Path, kind: str, seed: int) -> Path:
    """An embedded bench file with another chip seed."""
    path = tmp / f"{kind}-s{seed}.toml"
    path.write_text(Path(embedded_bench_path(kind)).read_text().replace("seed = 0", f"seed = {seed}", 1))
    return path


def _map_and_heaters(hw: Any, averaging_time_s: float) -> tuple[Any, ThermalModel]:
    """The resonance map and the heater characterization, as calibrate runs them."""
    with only_laser(hw, 0):
        rmap = measure_resonance_map(hw, averaging_time_s=averaging_time_s)
    return rmap, characterize_heaters(hw, rmap, averaging_time_s=averaging_time_s)


@pytest.fixture(scope="module")
def seed2_heaters(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """The current bench's chip seed 2: bank 1's rings 0 and 1 sit 174 pm apart (0.9 linewidth)."""
    tmp = tmp_path_factory.mktemp("pair")
    with Bench.open(_seeded_bench(tmp, "current", 2), lock_dir=tmp) as bench:
        hw = bench.session()
        rmap, thermal = _map_and_heaters(hw, 2e-4)
        own = bench.truth.resonances_m(np.zeros(hw.n_banks * hw.n_rings), str(hw.mode))
    return SimpleNamespace(rmap=rmap.in_ring_order(thermal.resonance_of_ring), thermal=thermal, own=own)


def test_the_heater_steps_put_a_close_pair_where_its_rings_are(seed2_heaters: SimpleNamespace) -> None:
    s = seed2_heaters
    lw = float(np.median(s.rmap.pole_fwhm_m))
    pair = np.abs(s.own[1, 1] - s.own[1, 0])
    assert pair < lw                                                   # the case: closer than a linewidth
    mapped = s.rmap.center_m
    assert np.max(np.abs(mapped[1, :2] - s.own[1, :2])) > 50e-12        # the map's poles are tens of pm off
    resolved = s.rmap.with_zero_drive_correction(s.thermal.zero_drive_correction_m).center_m
    assert np.max(np.abs(resolved[1, :2] - s.own[1, :2])) < 15e-12
    # rings outside close pairs keep the map's centre
    corr = s.thermal.zero_drive_correction_m
    in_pair = np.zeros(corr.shape, dtype=bool)
    for gi, gj in close_pairs(mapped, PAIR_LINEWIDTHS * lw):
        in_pair.flat[[gi, gj]] = True
    assert np.all(corr[~in_pair] == 0.0)
    assert np.sqrt(np.mean((resolved - s.own)[in_pair] ** 2)) < np.sqrt(np.mean((mapped - s.own)[in_pair] ** 2))
    # the correction is part of the heater model's record (a weights-only recalibration keeps it)
    back = artifact.dataclass_from(ThermalModel, artifact.dataclass_fields(s.thermal), "thermal")
    np.testing.assert_array_equal(back.zero_drive_correction_m, corr)
    # the pair's heaters: each moves its own ring by its efficiency, its partner by a crosstalk share (0.1 true)
    k = s.thermal.crosstalk.reshape(4, 10, 4, 10)[1, :2, 1, :2]
    assert k[1, 0] < 0.3 * k[0, 0] and k[0, 1] < 0.3 * k[1, 1]
    assert k[1, 0] > 0.03 * k[0, 0] and k[0, 1] > 0.03 * k[1, 1]


def test_a_parted_pair_is_still_pulled_together_and_the_fit_says_by_how_much() -> None:
    """Rings on one bus are coupled dissipatively: parted poles sit sqrt(d^2 - 4 k^2) apart, pulled together by
    about 2 k^2 / d. A straight line through the parted scans takes that pull into the zero-drive separation; the
    coupled-pair fit recovers the own separation and the heater rows."""
    rng = np.random.default_rng(4)
    lw, k, own0 = 190e-12, 75e-12, 120e-12             # own separation at zero drive: 0.6 linewidth
    row = np.array([250e-12, -230e-12]) / 1e-6         # separation per unit heat of the two heaters (m per A^2)
    heat = np.zeros((10, 2))
    heat[:5, 0] = np.array([0.25, 0.45, 0.65, 0.85, 1.0]) * 8e-6       # heater 0 moves ring 0 through ring 1
    heat[5:, 1] = np.array([0.25, 0.45, 0.65, 0.85, 1.0]) * 8e-6       # heater 1 moves ring 1 away
    d = own0 + heat @ row
    poles = np.sign(d) * np.sqrt(d * d - 4 * k * k) + rng.normal(0, 1e-12, d.size)
    map_sep = 40e-12                                    # the map's merged poles: no measure of the rings
    apart = np.abs(d) >= 2 * lw
    sol, gap, r, w = _fit_pair_separation(heat[apart], poles[apart] - map_sep, map_sep, lw)
    np.testing.assert_allclose(sol, row, rtol=0.03)
    line = np.linalg.lstsq(np.c_[heat[apart], np.ones(int(apart.sum()))], poles[apart] - map_sep, rcond=None)[0]
    assert abs(map_sep + line[-1] - own0) > 5e-12        # the straight line keeps the pull ...
    assert abs(map_sep + gap - own0) < 0.3 * abs(map_sep + line[-1] - own0)      # ... the coupled pair does not


def test_a_pair_rings_probe_predicts_from_the_sum_of_its_poles() -> None:
    """A heater on one ring of a close pair moves both poles (they attract): its own pole alone misstates its move
    (46 pm of 70 on the ADC bench's seed 19), the sum of the two does not. The partner is scanned around half its
    pole's move with slack; a scan that finds the pair apart replaces both predictions by what it measured."""
    partner = np.array([1, 0, -1, -1])
    probe = np.array([46e-12, 27e-12, 3e-12, 1e-12])   # heater 0's probe step, 0.5 A
    per_heat = probe / 0.25
    ref = np.array([0.0, 100e-12, 1e-9, 2e-9])
    track = _PairTracking(partner, np.array([0]), np.array([False]), per_heat, probe, np.array([0.5]), ref, 190e-12)
    np.testing.assert_allclose(per_heat[0], 73e-12 / 0.25)
    np.testing.assert_allclose(per_heat[1], 0.5 * 27e-12 / 0.25)         # half its pole's (a quarter at most)
    np.testing.assert_allclose(per_heat[2:], probe[2:] / 0.25)          # rings outside the pair: as probed
    heat = np.full(4, 4.0)
    move = per_heat * heat
    slack = track.slack_m(move, heat)
    assert np.all(slack[:2] > 0.25 * move[0]) and np.all(slack[2:] == 0)
    # a fit that swapped the two (ring 0 reported blue of its partner, each nearer the other's prediction) is no
    # evidence
    predicted = ref + move
    before = per_heat.copy()
    track.update(np.array([120e-12, 1.15e-9, 1.0e-9, 2e-9]), predicted, ref, heat, np.zeros(4, dtype=bool), per_heat)
    np.testing.assert_array_equal(per_heat, before)
    # a scan at that heat finds ring 0 at 1.15 nm, ring 1 at 120 pm: apart, so both are measured
    centres = np.array([1.15e-9, 120e-12, 1.0e-9 + 12e-12, 2e-9 + 4e-12])
    track.update(centres, predicted, ref, heat, np.zeros(4, dtype=bool), per_heat)
    np.testing.assert_allclose(per_heat[:2], (centres[:2] - ref[:2]) / 4.0)
    assert np.all(track.slack_m(per_heat * heat, heat) == 0)           # at the same heat: no doubt left
    assert np.all(track.slack_m(per_heat * 2 * heat, 2 * heat)[:2] > 0)  # at another, the released pull
    # a partner whose pole moved blue (the heated ring left it, releasing the pull) is predicted to stay
    per_heat = probe / 0.25
    blue = np.array([99e-12, -22e-12, 3e-12, 1e-12])
    _PairTracking(partner, np.array([0]), np.array([False]), per_heat, blue, np.array([0.5]), ref, 190e-12)
    assert per_heat[1] == 0.0 and np.isclose(per_heat[0], 77e-12 / 0.25)


def test_a_ring_moved_through_its_close_partner_keeps_its_heater_row(tmp_path: Path) -> None:
    """The ADC bench's chip seed 19 (stepped scans): bank 0's rings 0 and 1 sit 69 pm apart, a third of a
    linewidth, and heater 0 moves ring 0 through ring 1. Predicted from the heated pole alone, the stepped windows
    lost both rings and the fit gave heater 0 136 pm/V^2 on ring 0 and 113 on ring 1 (true 270 and 19): the chip
    reached 3.2 true bits. The pair's rows now come out within 10 % of the truth."""
    with Bench.open(_seeded_bench(tmp_path, "adc", 19), lock_dir=tmp_path) as bench:
        hw = bench.session()
        _, thermal = _map_and_heaters(hw, 4e-4)
        n = hw.n_banks * hw.n_rings
        u = 0.3 * np.asarray(hw.max_drive, dtype=float)
        zero = bench.truth.resonances_m(np.zeros(n), str(hw.mode)).reshape(-1)
        true_cols = []
        for j in (0, 1):                               # the pair's two heaters, ring order = heater order here
            d = np.zeros(n)
            d[j] = u[j]
            true_cols.append((bench.truth.resonances_m(d, str(hw.mode)).reshape(-1) - zero)[:2] / u[j] ** 2)
    assert np.array_equal(thermal.resonance_of_ring[0, :2], [0, 1])
    k_true = np.column_stack(true_cols)                # (ring 0..1, heater 0..1)
    k_fit = thermal.crosstalk[:2, :2]
    np.testing.assert_allclose(np.diag(k_fit), np.diag(k_true), rtol=0.1)
    assert np.all(np.abs(k_fit - k_true)[[0, 1], [1, 0]] < 0.1 * np.diag(k_true))


def test_a_pair_separation_without_a_map_value_keeps_the_straight_line() -> None:
    """A map separation that is no number (a resonance the map did not hold) leaves the straight line, no crash."""
    heat = np.c_[np.linspace(1e-6, 8e-6, 6), np.zeros(6)]
    diff = 400e-12 + heat[:, 0] * 250e-12 / 1e-6
    sol, gap, r, w = _fit_pair_separation(heat, diff, float("nan"), 190e-12)
    assert np.isclose(gap, 400e-12) and np.isclose(sol[0], 250e-12 / 1e-6) and np.all(w == 1)
