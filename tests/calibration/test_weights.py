"""Weight model: line-shape fit, bank-level fit from sweep data, joint inverse, ranges, heat solve (no bench)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from labctl.calibration import weights as wm

NM = 1e-9


class LinearThermal:
    """Duck-typed thermal model: heat = drive^2, shift = K heat (enough for design and fit)."""

    def __init__(self, k: np.ndarray) -> None:
        self.crosstalk = k
        self.mode = "voltage"

    def heat(self, drive: np.ndarray) -> np.ndarray:
        return np.square(np.asarray(drive, dtype=float))

    def drive_for_heat(self, heat: np.ndarray) -> np.ndarray:
        h = np.asarray(heat, dtype=float)
        if np.any(h < 0):
            raise ValueError("negative heat")
        return np.sqrt(h)

    def shift_m(self, drive: np.ndarray) -> np.ndarray:
        return self.heat(drive) @ self.crosstalk.T


def bank(nb: int = 2, nr: int = 4, seed: int = 0) -> tuple[SimpleNamespace, LinearThermal, np.ndarray]:
    """A small synthetic bank: rings 0.05..0.7 nm blue of their channels, 8 % nearest-neighbour crosstalk."""
    rng = np.random.default_rng(seed)
    wl = 1550e-9 + 1e-9 * np.arange(nr)
    delta0 = rng.uniform(0.05e-9, 0.7e-9, (nb, nr))
    center = wl[None, :] - delta0
    pos = np.tile(np.arange(nr), nb)
    same = np.repeat(np.arange(nb), nr)
    d = np.abs(pos[:, None] - pos[None, :])
    k = np.where(same[:, None] == same[None, :], 0.08 * 3.0 ** -(np.maximum(d, 1) - 1.0), 0.005)
    np.fill_diagonal(k, 1.0)
    k = k * 0.25e-9 / 1.0                        # m per unit heat (0.25 nm per unit on the own ring)
    rmap = SimpleNamespace(center_m=center, fwhm_m=np.full((nb, nr), 0.19e-9),
                           channel_of_ring=np.tile(np.arange(nr), (nb, 1)), baseline=-np.ones((nb, nr)))
    return rmap, LinearThermal(k), wl


def true_model(rmap: SimpleNamespace, wl: np.ndarray, seed: int = 1) -> wm.WeightModel:
    """A 'chip' whose weights follow the bank-level model exactly, with sizeable neighbour terms."""
    nb, nr = rmap.center_m.shape
    rng = np.random.default_rng(seed)
    k = 4
    coef = np.zeros((nb, nr, 1 + k, wm.N_BASIS))
    coef[:, :, 0, 0] = -0.95
    coef[:, :, 0, 1] = rng.uniform(1.6, 1.8, (nb, nr))
    coef[:, :, 0, 2] = rng.uniform(-0.2, 0.2, (nb, nr))
    coef[:, :, 1:, :] = rng.normal(0.0, 0.03, (nb, nr, k, wm.N_BASIS))
    nbrs = np.full((nb, nr, k), -1)
    for r in range(nr):
        cand = [j for j in sorted(range(nr), key=lambda j: (abs(j - r), j)) if j != r and abs(j - r) <= 2][:k]
        nbrs[:, r, :len(cand)] = cand
    z = np.zeros((nb, nr))
    return wm.WeightModel(wavelengths_m=wl, channel_of_ring=rmap.channel_of_ring, delta_offset_m=z + 0.004e-9,
                          width_m=z + 0.19e-9, coef=coef, neighbours=nbrs, u_park_m=np.zeros((nb, nr, k)),
                          delta_lo_m=z, delta_hi_m=z + 0.4e-9, slope_sign=-np.ones((nb, nr)), w_min=z, w_max=z,
                          fit_rmse=z, spacing_m=1e-9)


def synthetic_sweeps(truth: wm.WeightModel, rmap: SimpleNamespace, thermal: LinearThermal, wl: np.ndarray,
                     design: wm.SweepDesign, noise: float = 0.0, seed: int = 2) -> wm.SweepData:
    """What the bench would measure: the true weight of the swept channel at every designed drive."""
    n_ch, n_cfg, n_lvl, n = design.drive.shape
    nb, nr = rmap.center_m.shape
    shift = thermal.shift_m(design.drive.reshape(-1, n))
    delta = (wl[rmap.channel_of_ring].reshape(-1) - rmap.center_m.reshape(-1) - shift).reshape(-1, nb, nr)
    w = truth.predict(delta).reshape(n_ch, n_cfg, n_lvl, nb, nr)
    ring_of = wm.ring_channel_lists(rmap.channel_of_ring, n_ch)
    weight = np.stack([w[c, :, :, np.arange(nb), ring_of[:, c]].transpose(1, 2, 0) for c in range(n_ch)])
    weight = weight + noise * np.random.default_rng(seed).standard_normal(weight.shape)
    return wm.SweepData(drive=design.drive, weight=weight)


def test_fano_fit_recovers_line_parameters() -> None:
    rng = np.random.default_rng(0)
    m, p = 6, 60
    d_true = rng.uniform(-0.02e-9, 0.02e-9, m)
    width_true = rng.uniform(0.15e-9, 0.25e-9, m)
    c_true = np.column_stack([rng.uniform(-1, -0.9, m), rng.uniform(1.5, 1.9, m), rng.uniform(-0.3, 0.3, m)])
    delta = np.linspace(-0.15e-9, 0.5e-9, p)[None, :].repeat(m, 0)
    tau = 2 * (delta - d_true[:, None]) / width_true[:, None]
    w = np.einsum("mpi,mi->mp", wm.fano_basis(tau)[..., :3], c_true) + 1e-4 * rng.standard_normal((m, p))
    d_off, width, c, rmse = wm._fit_fano(delta, w, np.ones_like(w, dtype=bool), np.full(m, 0.19e-9))
    assert np.max(np.abs(d_off - d_true)) < 0.3e-12
    assert np.max(np.abs(width / width_true - 1)) < 3e-3
    assert np.max(np.abs(c - c_true)) < 5e-3
    assert np.all(rmse < 2e-4)


def test_bank_model_fit_and_joint_inverse() -> None:
    rmap, thermal, wl = bank()
    truth = true_model(rmap, wl)
    design = wm.design_sweeps(rmap, thermal, wl, n_configs=10, n_levels=40, seed=0)
    assert np.all(design.heat >= 0)
    data = synthetic_sweeps(truth, rmap, thermal, wl, design, noise=1e-4)
    model = wm.fit_weight_model(data, rmap, thermal, wl, design)
    assert np.all(model.fit_rmse < 5e-4)
    assert np.all(model.w_max > model.w_min)
    assert model.span > 0.8
    # forward: the fitted model predicts the truth for configurations it never saw
    rng = np.random.default_rng(5)
    lo, hi = model.delta_lo_m, model.delta_hi_m
    cfg = lo + (hi - lo) * rng.uniform(0, 1, (200,) + lo.shape)
    assert np.sqrt(np.mean((model.predict(cfg) - truth.predict(cfg)) ** 2)) < 2e-3
    # inverse: targets anywhere in range are met jointly (neighbour terms included), inside the windows
    for _ in range(20):
        target = model.w_min + (model.w_max - model.w_min) * rng.uniform(0, 1, lo.shape)
        delta = model.solve(target)
        assert np.all(delta >= lo - 1e-15) and np.all(delta <= hi + 1e-15)
        assert np.max(np.abs(model.predict(delta) - target)) < 1e-6


def test_out_of_range_targets_raise_naming_ring() -> None:
    rmap, thermal, wl = bank()
    design = wm.design_sweeps(rmap, thermal, wl, n_configs=10, n_levels=30)
    model = wm.fit_weight_model(synthetic_sweeps(true_model(rmap, wl), rmap, thermal, wl, design), rmap, thermal,
                                wl, design)
    target = 0.5 * (model.w_min + model.w_max)
    target[1, 2] = model.w_max[1, 2] + 0.01
    with pytest.raises(ValueError, match=r"bank 1 ring 2 .*outside its achievable range"):
        model.solve(target)
    target[1, 2] = np.nan
    with pytest.raises(ValueError, match="bank 1 ring 2"):
        model.solve(target)
    with pytest.raises(ValueError, match="shape"):
        model.solve(target[:, :3])


def test_solve_heat_is_joint_non_negative_and_refuses_cooling() -> None:
    _, thermal, _ = bank()
    k = thermal.crosstalk
    rng = np.random.default_rng(3)
    shift = rng.uniform(0.1e-9, 0.8e-9, k.shape[0])
    h = wm.solve_heat(k, shift)
    assert np.all(h >= 0)
    np.testing.assert_allclose(k @ h, shift, atol=1e-16)
    shift[2] = 0.0                               # ring 2 must stay put while its neighbours heat: impossible
    with pytest.raises(ValueError, match="ring 2.*cannot cool"):
        wm.solve_heat(k, shift, names=lambda i: f"ring {i}")


def test_channel_assignment_must_be_one_to_one() -> None:
    with pytest.raises(ValueError, match="bank 0: more than one ring assigned to channel 1"):
        wm.ring_channel_lists(np.array([[0, 1, 1]]), 3)
    ring_of = wm.ring_channel_lists(np.array([[2, 0, 1]]), 4)
    np.testing.assert_array_equal(ring_of, [[1, 2, 0, -1]])


def test_windows_reserve_the_worst_case_crosstalk() -> None:
    rmap, thermal, wl = bank(nb=2, nr=6, seed=4)
    k = thermal.crosstalk.copy()
    k[0, 1] = -0.01 * k[0, 0]                    # a fitted coupling of the wrong sign must not break the margin
    thermal = LinearThermal(k)
    design = wm.design_sweeps(rmap, thermal, wl, n_configs=4, n_levels=10)
    lam = wl[rmap.channel_of_ring]
    lo, hi = design.op_lo_m, design.op_hi_m
    for i in range(lo.size):                     # ring i at the top of its window, every other ring at its deep end
        delta = lo.copy()                        # the deep end (most heat): approach the peak, far branch -cap
        delta.reshape(-1)[i] = hi.reshape(-1)[i]
        wm.solve_heat(k, (lam - delta - rmap.center_m).reshape(-1))   # must not raise (no cooling needed)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), nearest=st.floats(0.02, 0.35), spread_nm=st.floats(0.0, 0.6),
       limit=st.floats(2.5, 6.0))
def test_joint_windows_are_reachable_together(seed: int, nearest: float, spread_nm: float, limit: float) -> None:
    """Any detunings inside the narrowed windows need non-negative heats within the heaters' limits, whatever the
    crosstalk (up to 35 % on the nearest ring) and the zero-drive positions: the windows shrink, nothing raises."""
    rng = np.random.default_rng(seed)
    nb, nr = 2, 5
    n = nb * nr
    pos, same = np.tile(np.arange(nr), nb), np.repeat(np.arange(nb), nr)
    d = np.abs(pos[:, None] - pos[None, :])
    k = np.where(same[:, None] == same[None, :], nearest * 3.0 ** -(np.maximum(d, 1) - 1.0), 0.01)
    k = k * np.exp(0.2 * rng.standard_normal((n, n)))
    np.fill_diagonal(k, 1.0)
    k *= 0.25e-9
    delta0 = (0.3 + spread_nm * rng.uniform(-1, 1, (nb, nr))) * 1e-9
    hi0 = np.minimum(delta0, 0.45e-9)
    lo0 = np.minimum(0.0, hi0 - 0.1e-9)                  # approach windows from the peak; red rings: far branch
    heat_limit = np.full(n, limit)                       # `limit` units of heat: 0.25 * limit nm of own shift
    lo, hi, lowered, raised = wm.joint_windows(lo0, hi0, delta0, k, heat_limit)
    assert np.all(lo <= hi) and np.all(hi <= hi0 + 1e-18) and np.all(lo >= np.minimum(lo0, hi) - 1e-18)
    corners = rng.uniform(0, 1, (200, nb, nr)) < 0.5
    deltas = np.concatenate([np.where(corners, lo, hi), lo + (hi - lo) * rng.uniform(0, 1, (50, nb, nr))])
    heat = np.linalg.solve(k, (delta0 - deltas).reshape(-1, n).T).T
    assert heat.min() >= -1e-9 and heat.max() <= limit * (1 + 1e-9)
    # a top comes down by no more than the crosstalk the neighbours can give (plus the guard), nothing else
    most = np.maximum(k - np.diag(np.diag(k)), 0) @ (np.maximum(delta0 - lo0, 0).reshape(-1) / 0.25e-9)   # m
    assert np.all(hi0 - hi <= 1.5 * most.reshape(nb, nr) + 2 * wm.COOLING_GUARD_M)


def test_joint_windows_never_run_away_on_a_non_physical_matrix(caplog: pytest.LogCaptureFixture) -> None:
    """A crosstalk matrix whose inverse has a negative own term (a -5 x own coupling from a lost ring's fit) made
    the narrowing run away (windows 1e51 pm, harsh-s3). The windows now only narrow: finite, inside the design
    box, with a warning naming the rings."""
    n = 4
    k = 0.25e-9 * np.array([[1.0, 0.1, 0.0, 0.0], [0.1, 1.0, -5.0, 0.0], [0.0, -5.0, 1.0, 0.1], [0.0, 0.0, 0.1, 1.0]])
    delta0 = np.full((1, n), 0.3e-9)
    hi0, lo0 = np.full((1, n), 0.3e-9), np.zeros((1, n))
    with caplog.at_level("WARNING"):
        lo, hi, _, _ = wm.joint_windows(lo0, hi0, delta0, k, np.full(n, 4.0))
    assert np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))
    assert np.all(hi <= hi0) and np.all(lo >= lo0) and np.all(lo <= hi)
    assert "not that of heaters that only heat" in caplog.text


def test_unreachable_ranges_shrink_with_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    """A ring red of its channel (its peak is out of reach), a heater whose drive limit stops short of its ring's
    peak, 30 % crosstalk on the nearest ring: the fit narrows the windows jointly and records each ring's reasons
    (one log line); every target in range, the range ends included, is solved without cooling and within the
    drive limits."""
    rmap, thermal, wl = bank(nb=2, nr=5, seed=7)
    rmap.center_m[0, 1] = wl[1] + 0.1e-9                 # 0.1 nm red of its channel
    rmap.center_m[1, 2] = wl[2] - 0.6e-9                 # needs 0.6 nm to reach its peak ...
    k = thermal.crosstalk / 0.08 * 0.3
    np.fill_diagonal(k, np.diag(thermal.crosstalk))
    thermal = LinearThermal(k)
    thermal.max_drive = np.full(k.shape[0], 3.0)         # heat 9 units: 2.25 nm of own shift
    thermal.max_drive[7] = 1.6                           # ... its heater gives 0.62 nm at most
    thermal.nonlinearity = np.zeros(k.shape[0])
    design = wm.design_sweeps(rmap, thermal, wl, n_configs=4, n_levels=16)
    truth = true_model(rmap, wl)
    with caplog.at_level("INFO", logger="labctl.calibration.weights"):
        model = wm.fit_weight_model(synthetic_sweeps(truth, rmap, thermal, wl, design), rmap, thermal, wl, design)
    restricted = {(e["bank"], e["ring"]): " ".join(e["reasons"]) for e in model.meta["restricted"]}
    assert "red of its channel" in restricted[(0, 1)]
    assert "drive limit" in restricted[(1, 2)]
    assert sum("restricted" in r.message for r in caplog.records) == 1
    lam = wl[rmap.channel_of_ring]
    rng = np.random.default_rng(0)
    targets = np.concatenate([model.w_min[None], model.w_max[None],
                              model.w_min + (model.w_max - model.w_min) * rng.uniform(0, 1, (30,) + model.shape)])
    limit = wm.heat_limits(thermal)
    for t in targets:
        delta = model.solve(t)
        heat = wm.solve_heat(k, (lam - delta - rmap.center_m).reshape(-1))   # must not raise: no cooling needed
        assert np.all(heat <= limit * (1 + 1e-9))
