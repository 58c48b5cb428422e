"""Weight model: what each ring's channel weight is as a function of where the rings of its bank sit.

Why a bank-level model: in a coherent two-bus bank the weight of channel c is set by ring c's detuning
delta = lambda_c - lambda_res, but the off-resonant rings of the same bank add field tails that interfere with it
(measured on the reference chip: moving the neighbours by +-0.3 nm moves a weight by up to 0.1, far above the
2^-8 target). The model therefore has two parts, both *measured*, never assumed:

* the own-ring line shape. For fixed neighbours a single resonance in a static coherent background is exactly a
  Fano line in tau = 2 (delta - delta_off) / width with L = 1 / (1 + tau^2):
  ``w = c0 + c1 L + c2 tau L``. A change of the background also moves the apparent centre and width a little,
  whose first derivatives add ``L^2`` and ``tau L^2``; the basis is F(tau) = [1, L, tau L, L^2, tau L^2].
* the neighbours. The tail field of ring j at channel c falls as 1 / (lambda_c - lambda_j), so the background, and
  with it every coefficient, is close to linear in u_j = spacing / (lambda_c - lambda_j). The model is
  ``w = sum_k sum_f coef[k, f] X_k F_f`` with X = [1, u_1 - u_1park, ..., u_K - u_Kpark] for the K rings whose
  channels lie within ``neighbour_channels`` of c: linear in coef, fitted by (ridge) least squares.

Measurement (``measure_weight_model``): one laser on at a time (each bank reads in parallel, so the rings of channel
c in every bank are swept together), the other rings parked at S configurations (the mid-range "park" point and
S-1 random operating points), ring c stepped over G detunings through its operating window and past its peak.
Positions come from the resonance map and the thermal model (centre + K heat(drive)), so the fitted curve lives
in the same coordinates the inversion uses, and constant errors of that model (resonance centre, laser wavelength
offset) are absorbed by delta_off. Cost: C laser switches plus C * S * G heater-write + read cycles.

Operating window: heaters only red-shift. A ring starting delta0 blue of its channel uses the *approach* branch
(delta from its peak up to min(delta0 - worst crosstalk, cap)): weights from low to the peak as it is heated. A ring
starting too close to (or red of) its channel uses the *far* branch (delta from its peak down to -cap). ``cap``
(0.45 channel spacings) keeps every ring at least half a spacing away from the neighbouring channels, where its
tail would dominate them. The windows are then narrowed jointly (:func:`joint_windows`): any detunings inside
them must need no cooling (the neighbours' crosstalk can already push a ring past part of its window) and no heat
beyond a heater's drive limit. The achievable range [w_min, w_max] is the range reachable for every configuration
of the neighbours inside their windows (evaluated with the model), so any target in range is reachable jointly.
What cannot be reached shrinks the range instead of stopping the calibration: a ring red of its channel (its peak
is out of reach), a window cut by crosstalk or by the drive limit, a ring with no weight reachable for every
neighbour setting (held at one value, w_min = w_max). Each is recorded with its reasons in ``meta["restricted"]``
(and in the calibration file), and the calibration warns once.

Inverse (``WeightModel.solve``): a fixed point over the neighbour terms; inside it every ring's own curve is
inverted on its monotone window by vectorized bisection (all rings at once, 48 halvings: exact to far below a
femtometre, no interpolation table to build or to go stale).

Measured on the emulated reference chip (truth used only to score): fitted to the sweeps, the model predicts
weights at unseen neighbour configurations to about 2e-3 rms (9 bits over the span); the first-order own-ring
model alone (neighbours ignored) is about 2e-2 (6.4 bits), so the neighbour terms buy about 3 bits.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from labctl.calibration.drive_writes import DriveWriter
from labctl.calibration.measure import configure_readout, emit, only_laser
from scipy.optimize import nnls

if TYPE_CHECKING:
    from labctl.drivers.interfaces import BenchSession
    from labctl.calibration.resonances import ResonanceMap
    from labctl.calibration.thermal import ThermalModel

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]

#: Ring windows stay this many channel spacings away from the neighbouring channels' wavelengths.
CAP_FRACTION = 0.45
#: A ring uses the approach branch when it can start at least this many FWHM blue of its channel.
APPROACH_MIN_FWHM = 1.5
N_BASIS = 5


def fano_basis(tau: np.ndarray) -> np.ndarray:
    """[1, L, tau L, L^2, tau L^2] along a new last axis (see the module docstring)."""
    lor = 1.0 / (1.0 + tau * tau)
    return np.stack([np.ones_like(tau), lor, tau * lor, lor * lor, tau * lor * lor], axis=-1)


def _fano_basis_dtau(tau: np.ndarray) -> np.ndarray:
    """d/dtau of ``fano_basis``."""
    lor = 1.0 / (1.0 + tau * tau)
    dl = -2.0 * tau * lor * lor
    return np.stack([np.zeros_like(tau), dl, lor + tau * dl, 2 * lor * dl, lor * lor + 2 * tau * lor * dl], axis=-1)


@dataclass
class WeightModel:
    """Per-ring weight vs detuning, with first-order neighbour terms, operating windows and ranges (B, R)."""

    wavelengths_m: np.ndarray        # (C,) channel grid
    channel_of_ring: np.ndarray      # (B, R) int
    delta_offset_m: np.ndarray       # (B, R) Fano centre in model detuning
    width_m: np.ndarray              # (B, R) Fano width (about the FWHM)
    coef: np.ndarray                 # (B, R, 1 + K, 5)
    neighbours: np.ndarray           # (B, R, K) int ring index in the same bank, -1 = none
    u_park_m: np.ndarray             # (B, R, K) neighbour tail coordinate at the park configuration
    delta_lo_m: np.ndarray           # (B, R) operating window in detuning
    delta_hi_m: np.ndarray           # (B, R)
    slope_sign: np.ndarray           # (B, R) +1: weight rises with delta on the window (far branch), -1: falls
    w_min: np.ndarray                # (B, R) achievable range
    w_max: np.ndarray                # (B, R)
    fit_rmse: np.ndarray             # (B, R) residual of the fit on the measured sweeps (weight units)
    spacing_m: float = 1e-9
    meta: dict[str, Any] = field(default_factory=dict)

    # -- shapes --------------------------------------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.channel_of_ring.shape)  # type: ignore[return-value]

    @property
    def ring_wavelength_m(self) -> np.ndarray:
        """(B, R) wavelength of each ring's channel."""
        return np.asarray(self.wavelengths_m)[self.channel_of_ring]

    @property
    def span(self) -> float:
        """Calibrated weight range: the median over rings of w_max - w_min."""
        return float(np.nanmedian(self.w_max - self.w_min))

    # -- forward model ---------------------------------------------------------------------------------------------
    def neighbour_terms(self, delta_m: np.ndarray) -> np.ndarray:
        """X = [1, u - u_park] (..., B, R, 1 + K) for detunings of every ring (..., B, R)."""
        delta = np.asarray(delta_m, dtype=float)
        lam = self.ring_wavelength_m
        res = lam - delta                                          # (..., B, R) resonance positions
        nb = np.maximum(self.neighbours, 0)
        bidx = np.arange(self.shape[0])[:, None, None]
        res_nb = res[..., bidx, nb]                               # (..., B, R, K)
        with np.errstate(divide="ignore", invalid="ignore"):
            u = self.spacing_m / (lam[:, :, None] - res_nb) - self.u_park_m
        u = np.where(self.neighbours >= 0, u, 0.0)
        ones = np.ones(u.shape[:-1] + (1,))
        return np.concatenate([ones, u], axis=-1)

    def effective_coef(self, delta_m: np.ndarray) -> np.ndarray:
        """Own-ring Fano coefficients (..., B, R, 5) with the neighbours where ``delta_m`` puts them."""
        return np.einsum("...brk,brkf->...brf", self.neighbour_terms(delta_m), self.coef)

    def tau(self, delta_m: np.ndarray) -> np.ndarray:
        return 2.0 * (np.asarray(delta_m) - self.delta_offset_m) / self.width_m

    def predict(self, delta_m: np.ndarray) -> np.ndarray:
        """Weights (..., B, R) for ring detunings (..., B, R) (every ring's own channel)."""
        delta = np.asarray(delta_m, dtype=float)
        return np.einsum("...brf,...brf->...br", self.effective_coef(delta), fano_basis(self.tau(delta)))

    def predict_own(self, delta_m: np.ndarray, coef_eff: np.ndarray) -> np.ndarray:
        """Weights for own detunings with fixed effective coefficients (neighbours frozen)."""
        return np.einsum("...brf,...brf->...br", coef_eff, fano_basis(self.tau(delta_m)))

    # -- inverse ---------------------------------------------------------------------------------------------------
    def check_range(self, weights: np.ndarray) -> None:
        """Raise ValueError naming bank, ring, value and range for targets outside [w_min, w_max] (never clip)."""
        w = np.asarray(weights, dtype=float)
        if w.shape[-2:] != self.shape:
            raise ValueError(f"target weights must have shape {self.shape} (or (..., {self.shape[0]}, "
                             f"{self.shape[1]}) for a batch), got {w.shape}")
        bad = ~np.isfinite(w) | ~(w >= self.w_min) | ~(w <= self.w_max)
        if bad.any():
            *lead, b, r = (int(v) for v in np.argwhere(bad)[0])
            where = f" (target {tuple(lead)})" if lead else ""
            raise ValueError(
                f"target weight of bank {b} ring {r}{where} is {w[(*lead, b, r)]!r}, outside its achievable range "
                f"[{self.w_min[b, r]:.4f}, {self.w_max[b, r]:.4f}] ({int(bad.sum())} target(s) out of range)")

    def solve(self, weights: np.ndarray, *, strict: bool = True, max_iter: int = 30,
              tol_m: float = 1e-15) -> np.ndarray:
        """Detunings (B, R) giving ``weights`` jointly (fixed point over the neighbour terms); a batch of targets
        (..., B, R) is solved at once (e.g. every tile of a feedback matrix).

        ``strict`` checks the achievable range first (public targets); refinement passes corrected internal
        requests with ``strict=False``, which are held at the window edges instead.
        """
        w = np.asarray(weights, dtype=float)
        if strict:
            self.check_range(w)
        elif w.shape[-2:] != self.shape:
            raise ValueError(f"target weights must have shape {self.shape}, got {w.shape}")
        park = self.park_delta_m()
        coef = self.effective_coef(park)
        delta = self._invert_own(w, coef)
        for _ in range(max_iter):
            coef = self.effective_coef(delta)
            new = self._invert_own(w, coef)
            change = float(np.max(np.abs(new - delta)))
            delta = new
            if change < tol_m:
                break
        else:
            log.warning("weight inversion: fixed point not converged (last change %.3g pm)", change * 1e12)
        return delta

    def _invert_own(self, w: np.ndarray, coef: np.ndarray, n_iter: int = 48) -> np.ndarray:
        """Vectorized bisection of the own-ring curve over each operating window (monotone there)."""
        lo = self.delta_lo_m.copy()
        hi = self.delta_hi_m.copy()
        f_lo = self.predict_own(lo, coef) - w
        f_hi = self.predict_own(hi, coef) - w
        s = self.slope_sign
        below = s * f_lo >= 0            # target at or beyond the low end of the window
        above = s * f_hi <= 0            # target at or beyond the high end
        for _ in range(n_iter):
            mid = 0.5 * (lo + hi)
            f = s * (self.predict_own(mid, coef) - w)
            go_up = f < 0
            lo = np.where(go_up, mid, lo)
            hi = np.where(go_up, hi, mid)
        delta = 0.5 * (lo + hi)
        delta = np.where(below, self.delta_lo_m, np.where(above, self.delta_hi_m, delta))
        return delta

    def park_delta_m(self) -> np.ndarray:
        """Mid-window detunings: the reference configuration of the neighbour terms."""
        return 0.5 * (self.delta_lo_m + self.delta_hi_m)

    def slope(self, delta_m: np.ndarray) -> np.ndarray:
        """d w / d delta (B, R) of the own-ring curve at ``delta_m`` (neighbours where delta puts them), per m."""
        coef = self.effective_coef(delta_m)
        d = np.einsum("...brf,...brf->...br", coef, _fano_basis_dtau(self.tau(delta_m)))
        return d * 2.0 / self.width_m


def model_shift_m(thermal: ThermalModel, drive: np.ndarray) -> np.ndarray:
    """Resonance shifts (M, N) of drives (M, N) by the thermal model: heat(drive) through the crosstalk matrix."""
    heat = np.asarray(thermal.heat(np.asarray(drive, dtype=float)), dtype=float)
    return heat @ np.asarray(thermal.crosstalk, dtype=float).T


def _checked_map(rmap: ResonanceMap) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(centre, FWHM, channel_of_ring) of a resonance map; refuses missing centres, patches missing widths."""
    center = np.asarray(rmap.center_m, dtype=float)
    bad = ~np.isfinite(center)
    if bad.any():
        b, r = (int(v) for v in np.argwhere(bad)[0])
        raise ValueError(f"resonance map has no resonance for bank {b} ring {r}: cannot calibrate its weight")
    fwhm = np.asarray(rmap.fwhm_m, dtype=float)
    ok = np.isfinite(fwhm) & (fwhm > 0)
    if not ok.all():
        if not ok.any():
            raise ValueError("resonance map has no valid linewidth")
        log.warning("resonance map: %d linewidth(s) missing, using the median", int((~ok).sum()))
        fwhm = np.where(ok, fwhm, np.median(fwhm[ok]))
    return center, fwhm, np.asarray(rmap.channel_of_ring, dtype=int)


# ---- sweep design ------------------------------------------------------------------------------------------------
@dataclass
class SweepDesign:
    """What the weight sweeps drive: windows, park/random neighbour configurations and per-channel level heats."""

    delta0_m: np.ndarray             # (B, R) zero-drive detuning from the resonance map
    approach: np.ndarray             # (B, R) bool
    op_lo_m: np.ndarray              # (B, R) designed operating window
    op_hi_m: np.ndarray
    sweep_lo_m: np.ndarray           # (B, R) swept detuning range (covers the peak)
    sweep_hi_m: np.ndarray
    config_delta_m: np.ndarray       # (S, B, R) neighbour configurations (row 0: park)
    heat: np.ndarray                 # (C, S, G, N) heat vectors to apply
    drive: np.ndarray                # (C, S, G, N) drive vectors (V or A)
    #: (B, R) bool: windows whose top came down (neighbours' crosstalk) or bottom came up (drive limit) when made
    #: reachable together (:func:`joint_windows`)
    lowered: np.ndarray | None = None
    raised: np.ndarray | None = None


def ring_channel_lists(channel_of_ring: np.ndarray, n_channels: int) -> np.ndarray:
    """(B, C) ring index of channel c in bank b, -1 where the bank has none; refuses ambiguous maps."""
    cor = np.asarray(channel_of_ring, dtype=int)
    nb = cor.shape[0]
    if cor.min() < 0 or cor.max() >= n_channels:
        b, r = (int(v) for v in np.argwhere((cor < 0) | (cor >= n_channels))[0])
        raise ValueError(f"bank {b} ring {r} has channel {int(cor[b, r])}: the weight model needs every ring on one "
                         f"of the channels 0..{n_channels - 1} (more rings than channels is not supported)")
    ring_of = np.full((nb, n_channels), -1, dtype=int)
    b_idx, r_idx = np.nonzero(np.ones_like(cor, dtype=bool))
    counts = np.zeros((nb, n_channels), dtype=int)
    np.add.at(counts, (b_idx, cor[b_idx, r_idx]), 1)
    if (counts > 1).any():
        b, c = (int(v) for v in np.argwhere(counts > 1)[0])
        raise ValueError(f"bank {b}: more than one ring assigned to channel {c}")
    ring_of[b_idx, cor[b_idx, r_idx]] = r_idx
    return ring_of


def solve_heat(crosstalk: np.ndarray, shift_m: np.ndarray, *, tol_m: float = 0.05e-12,
               names: Callable[[int], str] | None = None) -> np.ndarray:
    """Non-negative heat h with K h = shift (heaters only heat); raises when no h >= 0 reaches the shifts.

    The exact solve is tried first (one LU, vectorized over leading axes); NNLS only for vectors where it went
    negative (a ring needing less shift than its neighbours' crosstalk already gives it).
    """
    k = np.asarray(crosstalk, dtype=float)
    s = np.asarray(shift_m, dtype=float)
    flat = s.reshape(-1, s.shape[-1])
    h = np.linalg.solve(k, flat.T).T
    neg = (h < 0).any(axis=1)
    scale = float(np.median(np.diag(k)))
    for m in np.nonzero(neg)[0]:     # rare: only vectors that need a non-negativity fix
        sol, _ = nnls(k / scale, flat[m], maxiter=50 * k.shape[0])
        h[m] = sol / scale
        resid = k @ h[m] - flat[m]
        worst = int(np.argmax(np.abs(resid)))
        if abs(resid[worst]) > tol_m:
            who = names(worst) if names else f"ring {worst}"
            raise ValueError(
                f"{who}: needs a shift of {flat[m, worst] * 1e12:.2f} pm but the crosstalk of the other heaters "
                f"alone gives it {(flat[m, worst] + resid[worst]) * 1e12:.2f} pm (heaters cannot cool)")
    return np.maximum(h, 0.0).reshape(s.shape)


#: Windows keep every ring this far (m of shift) from needing negative heat under the worst neighbours: room for
#: the drift a re-centring follows (10 mK of chip temperature is 0.8 pm) and for refinement's corrections.
COOLING_GUARD_M = 1.0e-12
#: Share of a heater's drive limit (in drive) the windows may use; the rest is for drift and refinement.
DRIVE_LIMIT_SHARE = 0.97


def heat_limits(thermal: ThermalModel) -> np.ndarray | None:
    """(N,) most heat each heater may supply: the heat of ``DRIVE_LIMIT_SHARE`` of its drive limit (None: no limit
    known, e.g. a model written before limits were stored)."""
    max_drive = getattr(thermal, "max_drive", None)
    if max_drive is None:
        return None
    u = DRIVE_LIMIT_SHARE * np.asarray(max_drive, dtype=float)
    try:
        return np.asarray(thermal.heat(u), dtype=float)
    except ValueError:               # beyond the self-heating model's range: limit where the model still holds
        gamma = np.asarray(getattr(thermal, "nonlinearity", 0.0), dtype=float)
        u = np.minimum(u, np.sqrt(0.5 / np.maximum(gamma, 1e-30)))
        return np.asarray(thermal.heat(u), dtype=float)


def joint_windows(lo_m: np.ndarray, hi_m: np.ndarray, delta0_m: np.ndarray, crosstalk: np.ndarray,
                  heat_limit: np.ndarray | None = None, *, guard_m: float = COOLING_GUARD_M,
                  max_iter: int = 50) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Detuning windows (B, R) narrowed so that ANY detunings inside them are reachable together.

    Detuning delta = lambda_channel - lambda_resonance, so the own shift a ring needs is s = delta0 - delta (its
    zero-drive detuning ``delta0_m`` minus the target) and the heats solve K h = s for all rings at once: h is
    linear in s, and over the box of windows each ring's heat is lowest and highest at corners known from the
    signs of K^-1's row (own term positive; neighbours mostly negative, the next ones positive again). Both
    extremes are evaluated for all rings at once (one inverse); where the lowest heat is below ``guard_m`` of
    shift the window's top comes down by what is missing (the neighbours' crosstalk already moves the ring that
    far: heaters cannot cool), where the highest heat passes ``heat_limit`` its bottom comes up (the heater's
    drive limit). A window that closes is held at one detuning (its top). Every change moves the neighbours'
    extremes, so the narrowing repeats until nothing moves. Returns (lo, hi, lowered_top, raised_bottom), the
    last two as bool.
    """
    lo0 = np.asarray(lo_m, dtype=float)
    hi0 = np.asarray(hi_m, dtype=float)
    shape = lo0.shape
    d0 = np.asarray(delta0_m, dtype=float).reshape(-1)
    k = np.asarray(crosstalk, dtype=float)
    kinv = np.linalg.inv(k)
    kd = np.diag(kinv)
    if np.any(kd <= 0) or not np.all(np.isfinite(kinv)):
        # a ring whose own heat falls as its own shift rises: no thermal model of heaters that only heat; the
        # narrowing below would run away (windows 1e51 pm wide, harsh-s3). Held at the design box, never widened.
        bad = np.flatnonzero(~(kd > 0))
        log.warning("joint operating windows: the crosstalk matrix is not that of heaters that only heat (rings "
                    "%s, flat index); windows narrowed with the own terms only", bad.tolist())
        kinv = np.diag(1.0 / np.diag(k))
        kd = np.diag(kinv)
    k_pos, k_neg = np.maximum(kinv, 0.0), np.minimum(kinv, 0.0)
    guard = guard_m * np.ones(d0.size)
    lo, hi = lo0.reshape(-1).copy(), hi0.reshape(-1).copy()
    for _ in range(max_iter):        # each pass two matrix-vector products; a few passes settle it
        s_max, s_min = d0 - lo, d0 - hi
        low_heat = k_pos @ s_min + k_neg @ s_max                # each ring's lowest heat over the box
        need = np.maximum(guard / np.diag(k) - low_heat, 0.0)   # heat missing at that corner
        hi_new = hi - need / kd
        lo_new = lo.copy()
        if heat_limit is not None:
            high_heat = k_pos @ s_max + k_neg @ s_min           # and its highest
            excess = np.maximum(high_heat - np.asarray(heat_limit, dtype=float), 0.0)
            lo_new = lo + excess / kd
        hi_new = np.minimum(hi_new, hi)                         # windows only narrow, never run away
        lo_new = np.clip(lo_new, lo, hi0.reshape(-1))
        lo_new = np.minimum(lo_new, hi_new)                     # a closed window: held at its top
        if np.allclose(hi_new, hi, rtol=0, atol=1e-16) and np.allclose(lo_new, lo, rtol=0, atol=1e-16):
            break
        lo, hi = lo_new, hi_new
    else:
        log.warning("joint operating windows: not settled after %d passes", max_iter)
    lo, hi = lo.reshape(shape), hi.reshape(shape)
    return lo, hi, hi < hi0 - 1e-15, lo > lo0 + 1e-15


def design_sweeps(rmap: ResonanceMap, thermal: ThermalModel, wavelengths_m: np.ndarray, *, n_configs: int = 10,
                  n_levels: int = 40, seed: int = 0) -> SweepDesign:
    """Windows, neighbour configurations and level heats for the weight sweeps (pure computation)."""
    center, fwhm, cor = _checked_map(rmap)
    nb, nr = center.shape
    wl = np.asarray(wavelengths_m, dtype=float)
    n_ch = wl.size
    spacing = float(np.median(np.diff(wl))) if n_ch > 1 else 1e-9
    cap = CAP_FRACTION * spacing
    lam = wl[cor]
    delta0 = lam - center
    k = np.asarray(thermal.crosstalk, dtype=float)
    eff = np.diag(k)
    off = k - np.diag(eff)
    off_pos = np.maximum(off, 0.0)   # a (fitted) negative coupling cannot be relied on to cool a ring
    # operating windows. The top of a window (least own heat) is lowered by the worst-case crosstalk from the
    # others' maximum heats (each alone at the deep end of its window), so any combination of targets is
    # reachable; each ring takes the branch with the larger (Lorentzian-estimated) weight range.
    lor = lambda d: 1.0 / (1.0 + (2.0 * d / fwhm) ** 2)
    def window_top(approach: np.ndarray) -> np.ndarray:
        h_max = np.maximum(delta0 - np.where(approach, 0.0, -cap), 0.0).reshape(-1) / eff
        return np.minimum(delta0 - (off_pos @ h_max).reshape(nb, nr), cap)

    approach = delta0 >= APPROACH_MIN_FWHM * fwhm
    for _ in range(4):
        top = window_top(approach)
        range_app = np.where(top > 0, 1.0 - lor(top), 0.0)
        range_far = lor(np.minimum(top, 0.0)) - lor(-cap)
        approach = range_app >= 0.75 * range_far    # the far branch costs more heat (crosstalk)
    top = window_top(approach)                      # the margins of the final choice
    op_lo = np.where(approach, 0.0, -cap)
    op_hi = np.where(approach, top, np.minimum(top, 0.0))
    op_lo = np.minimum(op_lo, op_hi - 0.5 * fwhm)            # rings stuck far red keep a small window
    h_lim = heat_limits(thermal)
    op_lo, op_hi, lowered, raised = joint_windows(op_lo, op_hi, delta0, k, h_lim)   # the guarantee, jointly
    sweep_hi = top
    sweep_lo = np.where(approach, -0.75 * fwhm, -cap - 0.25 * fwhm)
    sweep_lo = np.minimum(sweep_lo, op_lo - 0.25 * fwhm)
    rng = np.random.default_rng(seed)
    configs = np.empty((n_configs, nb, nr))
    configs[0] = 0.5 * (op_lo + op_hi)
    configs[1:] = op_lo + (op_hi - op_lo) * rng.uniform(0.0, 1.0, (n_configs - 1, nb, nr))
    cfg_heat = solve_heat(k, (lam - configs - center).reshape(n_configs, -1),
                          names=lambda i: f"bank {i // nr} ring {i % nr}")          # (S, N)
    ring_of = ring_channel_lists(cor, n_ch)
    levels = np.linspace(0.0, 1.0, n_levels)
    target = sweep_lo[None] + (sweep_hi - sweep_lo)[None] * levels[:, None, None]   # (G, B, R) descending heat
    n = nb * nr
    heat = np.empty((n_ch, n_configs, n_levels, n))
    flat_idx = np.arange(n).reshape(nb, nr)
    for c in range(n_ch):            # one laser per channel: the rings of channel c in every bank are stepped
        rings = ring_of[:, c]
        banks = np.nonzero(rings >= 0)[0]
        idx = flat_idx[banks, rings[banks]]
        h = np.broadcast_to(cfg_heat[:, None, :], (n_configs, n_levels, n)).copy()
        # heat of the stepped rings for each target detuning, the others' crosstalk at their config heat
        others = h[..., :] @ off[idx].T                                                 # (S, G, n_idx)
        need = (lam.reshape(-1)[idx] - center.reshape(-1)[idx])[None, None, :] \
            - target.reshape(n_levels, -1)[None, :, idx] - others
        h[..., idx] = np.maximum(need / eff[idx], 0.0)
        if h_lim is not None:        # the sweeps' far ends stay within the drive limits too
            h = np.minimum(h, h_lim)
        heat[c] = h
    drive = thermal.drive_for_heat(heat.reshape(-1, n)).reshape(heat.shape)
    return SweepDesign(delta0_m=delta0, approach=approach, op_lo_m=op_lo, op_hi_m=op_hi, sweep_lo_m=sweep_lo,
                       sweep_hi_m=sweep_hi, config_delta_m=configs, heat=heat, drive=drive, lowered=lowered,
                       raised=raised)


# ---- fitting -----------------------------------------------------------------------------------------------------
def _fit_fano(delta: np.ndarray, w: np.ndarray, mask: np.ndarray, width0: np.ndarray, n_iter: int = 60
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Batched Levenberg-Marquardt of w = c0 + c1 L + c2 tau L over rings (M rings, P points).

    Returns (delta_off, width, c (M, 3), rmse). Started from the peak of the data; all rings at once.
    """
    m = delta.shape[0]
    wts = mask.astype(float)
    w_masked = np.where(mask, w, -np.inf)
    d_off = delta[np.arange(m), np.argmax(w_masked, axis=1)]
    width = width0.copy()
    lam = np.full(m, 1e-3)

    def linear(d_off: np.ndarray, width: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        tau = 2 * (delta - d_off[:, None]) / width[:, None]
        a = fano_basis(tau)[..., :3] * wts[..., None]
        ata = np.einsum("mpi,mpj->mij", a, a) + 1e-12 * np.eye(3)
        c = np.linalg.solve(ata, np.einsum("mpi,mp->mi", a, w * wts)[..., None])[..., 0]
        r = (np.einsum("mpi,mi->mp", fano_basis(tau)[..., :3], c) - w) * wts
        return c, r

    c, r = linear(d_off, width)
    cost = np.sum(r * r, axis=1)
    for _ in range(n_iter):
        tau = 2 * (delta - d_off[:, None]) / width[:, None]
        basis = fano_basis(tau)[..., :3]
        dbas = _fano_basis_dtau(tau)[..., :3]
        dtau_doff = -2.0 / width[:, None]
        dtau_dw = -tau / width[:, None]
        gd = np.einsum("mpi,mi->mp", dbas, c)
        jac = np.concatenate([basis, (gd * dtau_doff)[..., None], (gd * dtau_dw)[..., None]], axis=-1)
        jac *= wts[..., None]
        res = (np.einsum("mpi,mi->mp", basis, c) - w) * wts
        jtj = np.einsum("mpi,mpj->mij", jac, jac)
        jtr = np.einsum("mpi,mp->mi", jac, res)
        diag = np.einsum("mii->mi", jtj)
        a = jtj + lam[:, None, None] * (np.eye(5) * diag[:, None, :] + 1e-30 * np.eye(5))
        step = -np.linalg.solve(a, jtr[..., None])[..., 0]
        new_off = d_off + step[:, 3]
        new_w = np.clip(width + step[:, 4], 0.2 * width0, 5.0 * width0)
        c_new, r_new = linear(new_off, new_w)
        cost_new = np.sum(r_new * r_new, axis=1)
        better = cost_new < cost
        d_off = np.where(better, new_off, d_off)
        width = np.where(better, new_w, width)
        c = np.where(better[:, None], c_new, c)
        cost = np.where(better, cost_new, cost)
        lam = np.where(better, lam * 0.3, lam * 10.0)
        lam = np.clip(lam, 1e-9, 1e9)
    n_pts = np.maximum(wts.sum(axis=1), 1.0)
    return d_off, width, c, np.sqrt(cost / n_pts)


@dataclass
class SweepData:
    """Measured weight sweeps: every point's drive and the normalised weight of the swept channel per bank."""

    drive: np.ndarray                # (C, S, G, N)
    weight: np.ndarray               # (C, S, G, B) reading / |baseline| at channel c
    elapsed_s: float | None = None
    transactions: int = 0
    #: Measured unit costs (for projections): one heater-write + settle + readout point, and the per-channel
    #: overhead (laser switching, readout configuration).
    point_elapsed_s: float | None = None
    point_transactions: float = 0.0
    channel_elapsed_s: float | None = None
    channel_transactions: float = 0.0


def fit_weight_model(data: SweepData, rmap: ResonanceMap, thermal: ThermalModel, wavelengths_m: np.ndarray,
                     design: SweepDesign, *, neighbour_channels: int = 2, ridge: float = 1e-6,
                     n_range_configs: int = 256, range_margin: float = 0.005, seed: int = 1) -> WeightModel:
    """Fit the bank-level weight model to sweep data (pure computation; see the module docstring)."""
    center, fwhm, cor = _checked_map(rmap)
    nb, nr = center.shape
    wl = np.asarray(wavelengths_m, dtype=float)
    n_ch = wl.size
    spacing = float(np.median(np.diff(wl))) if n_ch > 1 else 1e-9
    lam = wl[cor]
    n_cfg, n_lvl = data.drive.shape[1:3]
    n = nb * nr
    # model detunings of every ring at every point, from the drive actually written
    shift = model_shift_m(thermal, data.drive.reshape(-1, n))
    delta_all = (lam.reshape(-1) - center.reshape(-1) - shift).reshape(n_ch, n_cfg, n_lvl, nb, nr)
    # per ring: its own sweep is the one of its channel's laser
    b_idx = np.repeat(np.arange(nb), nr)
    r_idx = np.tile(np.arange(nr), nb)
    c_idx = cor.reshape(-1)
    own = delta_all[c_idx, :, :, b_idx, r_idx]                       # (N, S, G)
    w_own = data.weight[c_idx, :, :, b_idx]                          # (N, S, G)
    ok = np.isfinite(w_own)
    # neighbours: the rings of the same bank whose channels lie within neighbour_channels of the ring's own
    k_max = 2 * neighbour_channels
    dist = np.abs(cor[:, :, None] - cor[:, None, :]).astype(float)   # (B, R, R)
    dist[:, np.arange(nr), np.arange(nr)] = np.inf
    dist[dist > neighbour_channels] = np.inf
    order = np.argsort(dist, axis=-1, kind="stable")[..., :k_max]
    valid = np.isfinite(np.take_along_axis(dist, order, axis=-1))
    nbrs = np.full((nb, nr, k_max), -1, dtype=int)
    nbrs[..., :order.shape[-1]] = np.where(valid, order, -1)
    # 1) own-line Fano at the park configuration
    d_off, width, _, rmse0 = _fit_fano(own[:, 0], w_own[:, 0], ok[:, 0], fwhm.reshape(-1))
    if np.any(rmse0 > 0.02):
        log.warning("weight model: Fano fit residual up to %.3g on park sweeps", float(rmse0.max()))
    # 2) linear regression of all coefficients with the neighbour terms, all configurations
    model = WeightModel(
        wavelengths_m=wl, channel_of_ring=cor, delta_offset_m=d_off.reshape(nb, nr), width_m=width.reshape(nb, nr),
        coef=np.zeros((nb, nr, 1 + k_max, N_BASIS)), neighbours=nbrs, u_park_m=np.zeros((nb, nr, k_max)),
        delta_lo_m=design.op_lo_m.copy(), delta_hi_m=design.op_hi_m.copy(), slope_sign=np.ones((nb, nr)),
        w_min=np.full((nb, nr), np.nan), w_max=np.full((nb, nr), np.nan), fit_rmse=rmse0.reshape(nb, nr),
        spacing_m=spacing)
    # u_park: neighbour coordinates at the designed park configuration (the reference of the linear terms)
    x_park = model.neighbour_terms(design.config_delta_m[0])
    model.u_park_m = x_park[..., 1:]
    # design matrix: for ring (b, r) at point (s, g): X_k(all deltas at the point) * F_f(own tau)
    pts = delta_all[c_idx].reshape(n, n_cfg * n_lvl, nb, nr)          # (N, P, B, R) per ring's own laser
    x_all = model.neighbour_terms(pts)                               # (N, P, B, R, 1+K)
    x_own = x_all[np.arange(n), :, b_idx, r_idx]                     # (N, P, 1+K)
    tau = 2 * (own.reshape(n, -1) - d_off[:, None]) / width[:, None]
    f_own = fano_basis(tau)                                          # (N, P, 5)
    design_m = (x_own[..., :, None] * f_own[..., None, :]).reshape(n, -1, (1 + k_max) * N_BASIS)
    wts = ok.reshape(n, -1).astype(float)
    y = np.where(ok, w_own, 0.0).reshape(n, -1)
    a = design_m * wts[..., None]
    ata = np.einsum("mpi,mpj->mij", a, a)
    scale = np.einsum("mii->mi", ata).mean(axis=1)[:, None, None]
    ata = ata + ridge * scale * np.eye(ata.shape[-1])
    coef = np.linalg.solve(ata, np.einsum("mpi,mp->mi", a, y * wts)[..., None])[..., 0]
    resid = (np.einsum("mpi,mi->mp", design_m, coef) - y) * wts
    model.coef = coef.reshape(nb, nr, 1 + k_max, N_BASIS)
    model.fit_rmse = np.sqrt(np.sum(resid**2, axis=1) / np.maximum(wts.sum(axis=1), 1)).reshape(nb, nr)
    restricted = _finalize_windows(model, design, thermal, n_range_configs=n_range_configs, margin=range_margin,
                                   seed=seed)
    model.meta = {"neighbour_channels": neighbour_channels, "n_configs": int(n_cfg), "n_levels": int(n_lvl),
                  "ridge": ridge, "range_margin": range_margin, "restricted": restricted}
    return model


def _finalize_windows(model: WeightModel, design: SweepDesign, thermal: ThermalModel, *, n_range_configs: int,
                      margin: float, seed: int) -> list[dict[str, Any]]:
    """Monotone operating window per ring (peak from the fit), narrowed jointly so that any detunings in the
    windows are reachable together (:func:`joint_windows`), and the weight range reachable for any neighbours.

    Returns what was restricted and why, one entry per ring concerned (also logged once, at info level; the
    calibration warns once for all)."""
    nb, nr = model.shape
    grid = np.linspace(0.0, 1.0, 401)
    lo_s, hi_s = design.sweep_lo_m, design.sweep_hi_m
    d_grid = lo_s + (hi_s - lo_s) * grid[:, None, None]             # (Q, B, R)
    park = 0.5 * (design.op_lo_m + design.op_hi_m)
    coef_park = model.effective_coef(park)
    w_grid = model.predict_own(d_grid, coef_park)                    # (Q, B, R)
    peak = d_grid[np.argmax(w_grid, axis=0), np.arange(nb)[:, None], np.arange(nr)[None, :]]
    approach = design.approach
    lo = np.where(approach, np.maximum(peak, lo_s), np.maximum(design.op_lo_m, lo_s))
    hi = np.where(approach, np.minimum(design.op_hi_m, hi_s), np.minimum(np.minimum(peak, design.op_hi_m), hi_s))
    hi = np.maximum(hi, lo)
    sign = np.where(approach, -1.0, 1.0)
    # monotone part, seen from the peak: v = sign * w must rise along the grid on the whole window
    d_win = lo + (hi - lo) * grid[:, None, None]
    v = sign * model.predict_own(d_win, coef_park)
    dv = np.diff(v, axis=0)
    idx = np.arange(grid.size - 1)[:, None, None]
    q = grid.size - 1
    bidx, ridx = np.arange(nb)[:, None], np.arange(nr)[None, :]
    p_app = np.argmin(v, axis=0)                     # approach: the peak is the lowest v, window runs up from it
    bad_app = (dv < 0) & (idx >= p_app)
    k_app = np.where(bad_app.any(axis=0), np.argmax(bad_app, axis=0), q)
    p_far = np.argmax(v, axis=0)                     # far: the peak is the highest v, window runs down from it
    bad_far = (dv < 0) & (idx < p_far)
    k_far = np.where(bad_far.any(axis=0), q - 1 - np.argmax(bad_far[::-1], axis=0) + 1, 0)
    lo_new = np.where(approach, d_win[p_app, bidx, ridx], d_win[k_far, bidx, ridx])
    hi_new = np.where(approach, d_win[k_app, bidx, ridx], d_win[p_far, bidx, ridx])
    lo, hi, lowered, raised = joint_windows(lo_new, hi_new, design.delta0_m, np.asarray(thermal.crosstalk),
                                            heat_limits(thermal))
    model.delta_lo_m, model.delta_hi_m, model.slope_sign = lo, hi, sign
    # achievable range: for random neighbour configurations in their windows, the own window's end weights
    rng = np.random.default_rng(seed)
    cfg = lo + (hi - lo) * rng.uniform(0.0, 1.0, (n_range_configs, nb, nr))
    cfg = np.concatenate([cfg, lo[None], hi[None], model.park_delta_m()[None]])
    coef_c = model.effective_coef(cfg)                                # (M, B, R, 5)
    w_lo = model.predict_own(np.broadcast_to(lo, cfg.shape), coef_c)
    w_hi = model.predict_own(np.broadcast_to(hi, cfg.shape), coef_c)
    top = np.maximum(w_lo, w_hi).min(axis=0)
    bottom = np.minimum(w_lo, w_hi).max(axis=0)
    span = top - bottom
    model.w_max = top - margin * np.abs(span)
    model.w_min = bottom + margin * np.abs(span)
    empty = ~(model.w_max > model.w_min)
    if empty.any():
        # no weight is reachable for EVERY configuration of the neighbours: the ring is held at one value (its
        # mid-window weight at the park configuration) and reported, instead of failing the whole bank. A held
        # ring red of its channel sits in its line's flat tail: solving it inside its window against the
        # neighbours moves it by up to the window (150 pm on spread1nm-s3) for a weight change of 1e-3, across
        # the next channel. It is parked instead: window closed at its top (least heat, nearest its zero-drive
        # place, farthest from the next channel).
        parked = empty & (design.delta0_m < 0)
        lo = np.where(parked, hi, lo)
        model.delta_lo_m = lo
        mid = model.predict_own(0.5 * (lo + hi), coef_park)
        model.w_min = np.where(empty, mid, model.w_min)
        model.w_max = np.where(empty, mid, model.w_max)
    return _restrictions(model, design, lowered, raised, empty, hi_new - lo_new)


def _restrictions(model: WeightModel, design: SweepDesign, lowered: np.ndarray, raised: np.ndarray,
                  empty: np.ndarray, width_before_m: np.ndarray) -> list[dict[str, Any]]:
    """One entry per ring whose weight range is narrower than its line allows, with the reasons (plain words)."""
    out: list[dict[str, Any]] = []
    red = design.delta0_m < 0
    if design.lowered is not None and design.raised is not None:
        lowered, raised = lowered | design.lowered, raised | design.raised
    for b, r in np.argwhere(lowered | raised | empty | red):   # the restricted rings only: a handful
        b, r = int(b), int(r)
        why = []
        if red[b, r]:
            why.append(f"sits {-design.delta0_m[b, r] * 1e12:.0f} pm red of its channel at zero drive; heaters only "
                       "red-shift, so its peak is out of reach")
        if lowered[b, r]:
            why.append("its neighbours' crosstalk alone can shift it past part of its window (heaters cannot cool)")
        if raised[b, r]:
            why.append("the deep end of its window needs more than its heater's drive limit")
        if empty[b, r]:
            why.append("no weight is reachable for every setting of its neighbours: held at one weight")
        out.append({"bank": b, "ring": r, "reasons": why,
                    "window_pm": [float(model.delta_lo_m[b, r] * 1e12), float(model.delta_hi_m[b, r] * 1e12)],
                    "window_width_before_pm": float(width_before_m[b, r] * 1e12),
                    "range": [float(model.w_min[b, r]), float(model.w_max[b, r])]})
    if out:
        log.info("weight model: %d ring(s) restricted: %s", len(out),
                 "; ".join(f"bank {e['bank']} ring {e['ring']}: {', '.join(e['reasons'])}" for e in out))
    return out


# ---- measurement -------------------------------------------------------------------------------------------------
def run_weight_sweeps(hw: BenchSession, rmap: ResonanceMap, design: SweepDesign, *,
                      averaging_time_s: float = 1e-4, progress: Progress | None = None,
                      check_drive: Callable[[np.ndarray], None] | None = None) -> SweepData:
    """Drive the designed sweeps: one laser on per channel, every bank read in parallel at each level."""
    n_ch, n_cfg, n_lvl, n = design.drive.shape
    if check_drive is not None:
        check_drive(design.drive.reshape(-1, n))     # every vector validated before the first write
    baseline = np.abs(np.asarray(rmap.baseline, dtype=float))            # (B, C)
    weight = np.full((n_ch, n_cfg, n_lvl, hw.n_banks), np.nan)
    t0, n0 = hw.elapsed_s(), hw.transaction_count()
    point_t, point_n = 0.0, 0
    _lasers_to_channels(hw)
    writer = DriveWriter(hw)         # a sweep point moves one ring per bank: only those channels are sent
    with only_laser(hw, None):       # every output off; the previous states come back at the end
        for c in range(n_ch):        # one bulk exchange per level; C laser switches in total
            averaging_time_s = configure_readout(hw, float(hw.wavelengths_m[c]), averaging_time_s)
            with only_laser(hw, c):
                ta, na = hw.elapsed_s(), hw.transaction_count()
                for s in range(n_cfg):
                    for g in range(n_lvl):
                        writer.write(design.drive[c, s, g])
                        weight[c, s, g] = hw.readout.read().balanced / baseline[:, c]
                tb = hw.elapsed_s()
                point_t += 0.0 if ta is None or tb is None else tb - ta
                point_n += hw.transaction_count() - na
            emit(hw, "weight_sweeps", channel=c, drive=design.drive[c], weight=weight[c])
            if progress is not None:
                progress("weight sweeps", c + 1, n_ch)
    t1 = hw.elapsed_s()
    n_points = n_ch * n_cfg * n_lvl
    elapsed = None if t0 is None or t1 is None else t1 - t0
    total_n = hw.transaction_count() - n0
    return SweepData(drive=design.drive, weight=weight, elapsed_s=elapsed, transactions=total_n,
                     point_elapsed_s=None if elapsed is None else point_t / n_points,
                     point_transactions=point_n / n_points,
                     channel_elapsed_s=None if elapsed is None else (elapsed - point_t) / n_ch,
                     channel_transactions=(total_n - point_n) / n_ch)


def _lasers_to_channels(hw: BenchSession, tolerance_m: float = 0.1e-12) -> None:
    """Put every laser back on its channel wavelength if a scan left it elsewhere (re-tuning costs repeatability)."""
    for c, laser in enumerate(hw.lasers):
        if abs(float(laser.get_wavelength_m()) - float(hw.wavelengths_m[c])) > tolerance_m:
            laser.set_wavelength_m(float(hw.wavelengths_m[c]))


def measure_weight_model(hw: BenchSession, rmap: ResonanceMap, thermal: ThermalModel, *,
                         n_configs: int = 10, n_levels: int = 40, neighbour_channels: int = 2,
                         averaging_time_s: float = 1e-4, seed: int = 0, progress: Progress | None = None,
                         check_drive: Callable[[np.ndarray], None] | None = None) -> WeightModel:
    """Design, run and fit the weight sweeps (see the module docstring)."""
    design = design_sweeps(rmap, thermal, hw.wavelengths_m, n_configs=n_configs, n_levels=n_levels, seed=seed)
    data = run_weight_sweeps(hw, rmap, design, averaging_time_s=averaging_time_s, progress=progress,
                             check_drive=check_drive)
    model = fit_weight_model(data, rmap, thermal, hw.wavelengths_m, design, neighbour_channels=neighbour_channels)
    model.meta.update({"sweep_points": int(np.prod(design.drive.shape[:3])), "sweep_elapsed_s": data.elapsed_s,
                       "sweep_transactions": data.transactions, "point_elapsed_s": data.point_elapsed_s,
                       "point_transactions": data.point_transactions, "channel_elapsed_s": data.channel_elapsed_s,
                       "channel_transactions": data.channel_transactions})
    log.info("weight model: %d sweep points, fit rmse median %.2g max %.2g, span %.3f",
             model.meta["sweep_points"], float(np.median(model.fit_rmse)), float(np.max(model.fit_rmse)),
             model.span)
    return model
