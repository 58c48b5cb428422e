"""Resonance map: where every ring sits at zero drive, its linewidth, dip and drop peak, and each bank's baseline.

Measurement: every heater at 0, one laser scanned across the band (first channel - margin .. last channel + margin),
every bank read in parallel (:func:`labctl.calibration.measure.spectra`).

Why the through port is fitted with zeros AND poles. In a weight bank the rings also talk to each other through
the two buses: light dropped by one ring travels back along the drop bus and is coupled into its neighbours. The
bank's response is then a rational function whose *poles* are the coupled (supermode) resonances, pulled by up to
a few tens of pm and widened or narrowed by tens of % when rings are close, whereas the *numerator of the through
transmission* is the product of the rings' own through numerators (every path to the through port passes each ring
once on the input bus), so its zeros sit exactly at the rings' own resonances. A joint multi-Lorentzian fit would
report the pulled poles; the zeros are what a heater moves linearly and what the thermal model needs. The through
spectrum of a bank is therefore fitted as

    T(lambda) = S(lambda) * prod_k [(lambda - z_k)^2 + e_k^2] / [(lambda - p_k)^2 + (w_k / 2)^2]

with ``z_k`` the ring resonance, ``e_k`` the depth of its zero, ``p_k``/``w_k`` the coupled pole and its FWHM and
``S`` a smooth cubic-spline envelope (knots every 0.5 nm: far broader than a line, it takes the input spectrum and
the slow part of the bus coupling but cannot imitate a zero). All rings of a bank are fitted jointly (close and
overlapping resonances are separated by the fit, not by peak picking) with an analytic Jacobian. On noise-free
emulated spectra the zeros reproduce the rings' resonances to < 0.01 pm while the poles are off by up to 35 pm.

Starting values come from the detected dips. Rings closer than about a linewidth show a single dip; then the dip
to split is chosen by the fit, not by its apparent width (next to another dip a dip's half-height width is
meaningless): the few features with the largest residual are each tried split and the physical fit with the
smallest residual kept (:func:`_split_search`; on the balanced trace too). Splitting the widest dip instead put a
ring 1 nm from any resonance on a loaded-Q-5000 chip (on the balanced trace of chip seed 19, a 1.4 nm wide "ring"
on the envelope), and the heater characterization then refused the map.

On benches that only see the balanced photocurrent (drop - through) the zeros are not observable: the balanced
trace is fitted as a smooth envelope plus a Lorentzian and a dispersive term per pole (its partial-fraction form),
and the *poles* are reported as centres, with the pull that implies (documented accuracy: tens of pm).

Ring identity: the k-th resonance of a bank by wavelength serves channel k (heaters only red-shift, so the order
along the grid is kept). Which ring (heater) it is, the heaters decide: fabrication offsets of a few tenths of a
nanometre swap neighbouring rings against a 1 nm grid. :func:`labctl.calibration.thermal.characterize_heaters`
finds the resonance each heater moves and :meth:`ResonanceMap.in_ring_order` puts the map in ring order.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.interpolate import BSpline
from scipy.optimize import least_squares, linear_sum_assignment
from scipy.signal import find_peaks, peak_widths

from labctl.drivers.interfaces import BenchSession
from labctl.calibration.measure import Spectra, SpectrumSession, emit, spectra, sweep_kind

log = logging.getLogger(__name__)

NM = 1e-9
#: Knot spacing of the smooth envelope (nm): several linewidths, so it cannot mimic a resonance.
ENVELOPE_KNOT_NM = 0.5
#: A through dip must reach this depth (fraction of the local level) to be taken as a resonance ...
DIP_MIN_DEPTH = 0.3
#: ... and stand out this much from the saddle to a neighbouring dip (close pairs show shallow saddles).
DIP_MIN_PROMINENCE = 0.05
#: Balanced peaks: minimum height and prominence as fractions of the trace's range.
PEAK_MIN_HEIGHT = 0.3
PEAK_MIN_PROMINENCE = 0.03


class ResonanceFitError(RuntimeError):
    """A bank's spectrum could not be explained by the expected rings."""


# -- smooth envelope -------------------------------------------------------------------------------------------------
def _spline_basis(x: np.ndarray, knot_step: float) -> np.ndarray:
    """Cubic B-spline basis (n_basis, W) on knots every ``knot_step`` over the span of ``x``."""
    lo, hi = float(x.min()), float(x.max())
    n_int = max(1, int(np.ceil((hi - lo) / knot_step)))
    inner = np.linspace(lo, hi, n_int + 1)
    k = 3
    knots = np.r_[[lo] * k, inner, [hi] * k]
    n_basis = knots.size - k - 1
    design = BSpline.design_matrix(np.clip(x, lo, hi), knots, k).toarray()
    assert design.shape[1] == n_basis
    return design.T


# -- through port: zeros and poles -------------------------------------------------------------------------------------
class _ZeroPoleModel:
    """T(x) = S(x) prod_k ((x - z_k)^2 + e_k^2) / ((x - p_k)^2 + w_k^2 / 4); x in nm, parameters
    [z (n), log e (n), p (n), log w (n), spline coefficients]."""

    def __init__(self, x: np.ndarray, n: int, basis: np.ndarray) -> None:
        self.x, self.n, self.basis = x, n, basis

    def _parts(self, p: np.ndarray) -> tuple[np.ndarray, ...]:
        n, x = self.n, self.x
        z, pole = p[:n], p[2 * n:3 * n]
        e2 = np.exp(2 * p[n:2 * n])[:, None]
        w2 = np.exp(2 * p[3 * n:4 * n])[:, None] / 4
        dz = x[None, :] - z[:, None]
        dp = x[None, :] - pole[:, None]
        num = dz * dz + e2
        den = dp * dp + w2
        env = p[4 * n:] @ self.basis
        return dz, dp, num, den, env, e2, w2

    def predict(self, p: np.ndarray) -> np.ndarray:
        with np.errstate(over="ignore", invalid="ignore"):     # wild trial steps are rejected by the solver
            _, _, num, den, env, _, _ = self._parts(p)
            return env * np.prod(num / den, axis=0)

    def jac(self, p: np.ndarray) -> np.ndarray:
        n = self.n
        dz, dp, num, den, env, e2, w2 = self._parts(p)
        shape = np.prod(num / den, axis=0)
        t = env * shape
        out = np.empty((4 * n + self.basis.shape[0], self.x.size))
        out[:n] = -2 * t * dz / num
        out[n:2 * n] = 2 * t * e2 / num
        out[2 * n:3 * n] = 2 * t * dp / den
        out[3 * n:4 * n] = -2 * t * w2 / den
        out[4 * n:] = shape * self.basis
        return out.T

    def factors(self, p: np.ndarray, x: np.ndarray) -> np.ndarray:
        """prod of the ring factors (the envelope divided out) at ``x``."""
        n = self.n
        z, pole = p[:n], p[2 * n:3 * n]
        e2 = np.exp(2 * p[n:2 * n])[:, None]
        w2 = np.exp(2 * p[3 * n:4 * n])[:, None] / 4
        num = (x[None, :] - z[:, None]) ** 2 + e2
        den = (x[None, :] - pole[:, None]) ** 2 + w2
        return np.prod(num / den, axis=0)


#: Columns per product in :func:`_gram`: small products stay on one thread in OpenBLAS (on the shared 2-core
#: machine a threaded product of a few hundred columns cost ten times a sum of single-threaded ones).
GRAM_CHUNK = 64


def _gram(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a @ b.T summed over column chunks of ``GRAM_CHUNK`` (same result to rounding, single-threaded BLAS)."""
    out = np.zeros((a.shape[0], b.shape[0]))
    for s in range(0, a.shape[1], GRAM_CHUNK):    # a handful of chunks per spectrum
        out += a[:, s:s + GRAM_CHUNK] @ b[:, s:s + GRAM_CHUNK].T
    return out


# -- balanced only: poles ----------------------------------------------------------------------------------------------
#: Bounds of a balanced pole's log width (nm) inside the model: numbers, not physics (see :func:`_split_balanced`).
LOG_WIDTH_MIN, LOG_WIDTH_MAX = -11.5, 6.0


class _PoleModel:
    """Balanced trace = spline envelope + sum_k (a_k Re L_k + b_k Im L_k), L_k = 1/(1 + 2i (x - p_k)/w_k).

    Linear in the envelope and the a, b coefficients; the poles (p, log w) are fitted by variable projection,
    with Kaufman's Jacobian (the derivative of the model at fixed linear coefficients, projected off the span of
    the design): one linear solve per step instead of one per parameter and step.
    """

    RIDGE = 1e-9

    def __init__(self, x: np.ndarray, n: int, basis: np.ndarray, data: np.ndarray) -> None:
        self.x, self.n, self.basis, self.data = x, n, basis, data

    def width(self, theta: np.ndarray) -> np.ndarray:
        """(n,) pole widths, nm; a trial fit that drifts to absurd widths stays finite (1e-5 to 400 nm)."""
        return np.exp(np.clip(theta[self.n:], LOG_WIDTH_MIN, LOG_WIDTH_MAX))

    def _terms(self, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n = self.n
        y = 2 * (self.x[None, :] - theta[:n, None]) / self.width(theta)[:, None]
        return y, 1.0 / (1.0 + y * y)

    def design(self, theta: np.ndarray) -> np.ndarray:
        y, den = self._terms(theta)
        return np.vstack([self.basis, den, -y * den])

    def _solver(self, a: np.ndarray) -> Any:
        gram = _gram(a, a)
        scale = np.sqrt(np.diag(gram)) + 1e-30
        gram_n = gram / scale[:, None] / scale[None, :] + self.RIDGE * np.eye(gram.shape[0])
        return lambda rhs: np.linalg.solve(gram_n, rhs / scale[:, None] if rhs.ndim == 2 else rhs / scale) / (
            scale[:, None] if rhs.ndim == 2 else scale)

    def solve_linear(self, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        a = self.design(theta)
        coef = self._solver(a)(a @ self.data)
        return coef, coef @ a

    def residual(self, theta: np.ndarray) -> np.ndarray:
        return self.solve_linear(theta)[1] - self.data

    def jac(self, theta: np.ndarray) -> np.ndarray:
        """(W, 2n) Kaufman Jacobian of :meth:`residual`."""
        n, nb = self.n, self.basis.shape[0]
        y, den = self._terms(theta)
        a = np.vstack([self.basis, den, -y * den])
        solve = self._solver(a)
        coef = solve(a @ self.data)
        ca, cb = coef[nb:nb + n, None], coef[nb + n:, None]
        dm_dy = ca * (-2.0 * y * den * den) + cb * (2.0 * y * y * den * den - den)      # (n, W)
        dy_dp = -2.0 / self.width(theta)[:, None]
        d = np.vstack([dm_dy * dy_dp, dm_dy * (-y)])                                     # (2n, W): d/dp, d/dlog w
        return (d - solve(_gram(a, d)).T @ a).T


# -- one bank ------------------------------------------------------------------------------------------------------------
@dataclass
class BankFit:
    """One bank's fitted resonances (in the order of the starting values; sorted when detected)."""

    center_m: np.ndarray        # (n,) ring resonance: through zero (ports) or pole (balanced only)
    pole_m: np.ndarray          # (n,) coupled pole
    pole_fwhm_m: np.ndarray     # (n,) its FWHM
    zero_width_m: np.ndarray    # (n,) depth parameter of the through zero (NaN: balanced only)
    extinction_db: np.ndarray   # (n,) through dip depth (NaN: balanced only)
    level: np.ndarray           # (n,) through (or -balanced) level with every ring away, readout units, at center
    rmse: float                 # rms residual relative to the off-resonance level
    mode: str                   # "ports" | "balanced"
    x0_m: float
    scale: float
    params: np.ndarray = field(repr=False, default_factory=lambda: np.empty(0))
    far_coef: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(3))  # polynomial in nm about x0
    extra_m: np.ndarray = field(default_factory=lambda: np.empty(0))  # fitted features that are no ring of the
    # guess (e.g. another order of a ring moved into the band), relative to x0 until fit_bank adds it

    def far_level(self, wavelength_m: np.ndarray) -> np.ndarray:
        """Through level (or -balanced) with every ring far away, readout units (envelope line over the band)."""
        x = (np.asarray(wavelength_m, dtype=float) - self.x0_m) / NM
        return self.scale * np.polyval(self.far_coef[::-1], x)


def _detect(x: np.ndarray, signal: np.ndarray, height: float, prominence: float) -> tuple[np.ndarray, np.ndarray]:
    """Feature positions and half-height widths (nm), parabola-refined, of a trace normalised to ~[0, 1]."""
    peaks, _ = find_peaks(signal, height=height, prominence=prominence)
    if peaks.size == 0:
        return np.empty(0), np.empty(0)
    dx = float(np.median(np.diff(x)))
    widths = peak_widths(signal, peaks, rel_height=0.5)[0] * dx
    i = np.clip(peaks, 1, x.size - 2)
    a, b, c = signal[i - 1], signal[i], signal[i + 1]
    den = a - 2 * b + c
    safe = np.where(np.abs(den) > 1e-15, den, 1.0)
    shift = np.where(np.abs(den) > 1e-15, 0.5 * (a - c) / safe, 0.0)
    return x[i] + np.clip(shift, -1.0, 1.0) * dx, widths


def _starting_widths(centers: np.ndarray, widths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Detected features as starting values, their widths kept within half to 2.5 times the median (a merged or
    shouldered feature's half-height width says little; fewer features than rings go to :func:`_split_search`)."""
    if centers.size == 0:
        raise ResonanceFitError("no resonance found in the spectrum")
    med = float(np.median(widths))
    return centers.astype(float), np.clip(widths.astype(float), med / 2, med * 2.5)


def _snap(guess: np.ndarray, found: np.ndarray, gate: np.ndarray) -> np.ndarray:
    """Move each guess onto the detected feature matched to it (one-to-one, within ``gate``)."""
    out = guess.copy()
    if found.size == 0 or guess.size == 0:
        return out
    cost = np.abs(guess[:, None] - found[None, :])
    rows, cols = linear_sum_assignment(cost)
    ok = cost[rows, cols] < gate[rows]
    out[rows[ok]] = found[cols[ok]]
    return out


def fit_bank(wavelength_m: np.ndarray, *, n_rings: int, through: np.ndarray | None = None,
             balanced: np.ndarray | None = None, drop: np.ndarray | None = None,
             guess: dict[str, np.ndarray] | None = None, max_nfev: int = 400) -> BankFit:
    """Fit one bank's spectrum (see the module docstring); ``through`` when the ports are read apart, else
    ``balanced``.

    ``guess`` (tracking, e.g. heater steps) gives ``center_m`` (n,) and optionally ``pole_m``, ``pole_fwhm_m``,
    ``zero_width_m``: the rings keep that order. Without it resonances are detected, merged ones split until
    ``n_rings`` are found (by trial fits, see :func:`_split_search`), and the ``n_rings`` deepest kept, sorted by
    wavelength.
    """
    wl = np.asarray(wavelength_m, dtype=float)
    x0 = float(0.5 * (wl.min() + wl.max()))
    x = (wl - x0) / NM
    basis = _spline_basis(x, ENVELOPE_KNOT_NM)
    if through is not None:
        scale = float(np.percentile(through, 98))
        if not scale > 0:
            raise ResonanceFitError("through port is dark (is the laser on?)")
        data = np.asarray(through, dtype=float) / scale
        fit = _fit_through(x, data, basis, n_rings, guess, x0, max_nfev)
    elif balanced is not None:
        b = np.asarray(balanced, dtype=float)
        scale = float(-np.percentile(b, 2))
        if not scale > 0:
            raise ResonanceFitError("balanced trace has no negative off-resonance level (is the laser on?)")
        fit = _fit_balanced(x, b / scale, basis, n_rings, guess, x0, max_nfev)
    else:
        raise ValueError("give through (ports read apart) or balanced")
    fit.x0_m, fit.scale = x0, scale
    fit.center_m = fit.center_m + x0
    fit.pole_m = fit.pole_m + x0
    fit.extra_m = fit.extra_m + x0
    fit.level = fit.far_level(fit.center_m)
    return fit


def _init_from_guess(guess: dict[str, np.ndarray], x0: float, x: np.ndarray, found: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    c = (np.asarray(guess["center_m"], dtype=float) - x0) / NM
    n = c.size
    w = (np.asarray(guess["pole_fwhm_m"]) / NM) if guess.get("pole_fwhm_m") is not None else np.full(n, 0.2)
    pole_off = ((np.asarray(guess["pole_m"]) - np.asarray(guess["center_m"])) / NM
                if guess.get("pole_m") is not None else np.zeros(n))
    e = (np.asarray(guess["zero_width_m"]) / NM) if guess.get("zero_width_m") is not None else 0.1 * w
    # nearest other ring bounds how far a detected dip may be from its guess
    order = np.argsort(c)
    gaps = np.diff(c[order])
    near = np.full(n, np.inf)
    if n > 1:
        near[order[:-1]] = np.minimum(near[order[:-1]], gaps)
        near[order[1:]] = np.minimum(near[order[1:]], gaps)
    c = _snap(c, found, np.minimum(0.45 * near, 2.5 * w))
    # features nobody predicted (another order of a ring moved into the band, a stray dip): fitted, not reported;
    # known ones (guess["extra_m"]) are kept even when they merge with a ring
    extra = found[np.all(np.abs(found[:, None] - c[None, :]) > 2.0 * np.median(w), axis=1)] if found.size else found
    known = (np.asarray(guess.get("extra_m", np.empty(0)), dtype=float) - x0) / NM
    known = known[(known > x.min()) & (known < x.max())]
    if known.size:
        extra = np.r_[known, extra[np.all(np.abs(extra[:, None] - known[None, :]) > np.median(w), axis=1)]]
    return c, np.maximum(np.nan_to_num(e, nan=0.02), 1e-4), c + pole_off, w, extra


def _fit_through(x: np.ndarray, data: np.ndarray, basis: np.ndarray, n_rings: int,
                 guess: dict[str, np.ndarray] | None, x0: float, max_nfev: int) -> BankFit:
    dips, widths = _detect(x, 1.0 - data, DIP_MIN_DEPTH, DIP_MIN_PROMINENCE)
    if guess is not None:
        z, e, pole, w, extra = _init_from_guess(guess, x0, x, dips)
        n_keep = z.size
        if extra.size:
            w_extra = np.full(extra.size, float(np.median(w)))
            depth = np.clip(np.interp(extra, x, data), 1e-4, 0.9)
            z = np.r_[z, extra]
            e = np.r_[e, np.sqrt(depth) * w_extra / 2]
            pole = np.r_[pole, extra]
            w = np.r_[w, w_extra]
    elif 0 < dips.size < n_rings:
        z = np.empty(0)         # merged resonances: see _split_search
    else:
        z, w = _starting_widths(dips, widths)
        depth = np.clip(np.interp(z, x, data), 1e-4, 0.9)
        e = np.sqrt(depth) * w / 2
        pole = z.copy()
    if z.size:
        model = _ZeroPoleModel(x, z.size, basis)
        p = _fit_zero_pole(model, data, np.concatenate([z, np.log(e), pole, np.log(w)]), max_nfev)
    else:
        model, p = _split_through(x, data, basis, dips, widths, n_rings, max_nfev)
    n = model.n
    resid = model.predict(p) - data
    if guess is None and n > n_rings:
        keep = _deepest(model, p, n_rings)
        log.info("%d resonances found where %d were expected; keeping the %d deepest", n, n_rings, n_rings)
    else:
        keep = np.arange(n_keep if guess is not None else n)
    if guess is None:
        keep = keep[np.argsort(p[keep])]
    fit = _through_result(model, p, keep, float(np.sqrt(np.mean(resid ** 2))), x, basis)
    fit.extra_m = np.delete(p[:n], keep) * NM
    return fit


def _fit_zero_pole(model: _ZeroPoleModel, data: np.ndarray, rings0: np.ndarray, max_nfev: int,
                   env0: np.ndarray | None = None) -> np.ndarray:
    """Fit from ring parameters ``rings0`` ([z, log e, p, log w]): the envelope first (rings fixed), then all."""
    if env0 is None:
        env0 = np.linalg.lstsq(model.basis.T, np.maximum(data, np.percentile(data, 50)), rcond=None)[0]
    p0 = np.concatenate([rings0, env0])
    free = np.zeros(p0.size, dtype=bool)
    free[4 * model.n:] = True
    p0 = _lm(model, data, p0, free, 30)
    return _lm(model, data, p0, np.ones(p0.size, dtype=bool), max_nfev)


@dataclass
class _Trial:
    """One fit of a bank from given starting values (see :func:`_split_search`)."""

    center: np.ndarray      # (n,) fitted features, nm about x0, in the order of the starting values
    width: np.ndarray       # (n,) their widths, nm
    resid: np.ndarray       # (W,) model - data
    physical: bool          # every feature is a ring's
    state: Any              # the fitter's own (model, parameters)


def _split_search(x: np.ndarray, found: np.ndarray, widths: np.ndarray, n_rings: int,
                  fit: Callable[[np.ndarray, np.ndarray, bool], _Trial], finish: Callable[[_Trial], _Trial],
                  candidates: int = 3) -> _Trial:
    """Fit ``n_rings`` rings to a trace in which only ``found.size`` features were detected.

    Two rings closer than about a linewidth show one feature, and the half-height widths of overlapping features
    say little about which one is double (a feature next to another one looks narrow, its neighbour wide: splitting
    the widest one can split the wrong one). So the detected features are fitted first; then, until there are
    ``n_rings``, each of the ``candidates`` features with the largest residual within a linewidth is split in two
    and the bank refitted from the split starting values (``fit(centers, widths, full=False)``: a short budget, a
    right split converges in a few dozen steps, a wrong one not); the physical fit with the smallest residual is
    kept and ``finish`` ed. A wrong split leaves a ring unexplained: the fit either stays several times above the
    noise or explains it with a feature that is no ring (a zero that has left its pole, a pole several linewidths
    wide fitting the envelope).
    """
    med = float(np.median(widths))
    c, w = _starting_widths(found, widths)
    current = fit(c, w, True)
    while current.center.size < n_rings:
        width = np.clip(current.width, med / 2, med * 2.5)
        near = np.abs(x[None, :] - current.center[:, None]) < width[:, None]
        local = np.sum(np.where(near, current.resid[None, :] ** 2, 0.0), axis=1) / np.maximum(
            near.sum(axis=1), 1)
        best: tuple[tuple[bool, float], np.ndarray, np.ndarray, _Trial] | None = None
        for k in np.argsort(-local)[:candidates]:             # a few refits of one bank
            ck = np.r_[np.delete(c, k), c[k] - w[k] / 4, c[k] + w[k] / 4]
            wk = np.r_[np.delete(w, k), w[k] / 2, w[k] / 2].clip(med / 2, med * 2.5)
            order = np.argsort(ck)
            ck, wk = ck[order], wk[order]
            trial = fit(ck, wk, False)
            rms = float(np.sqrt(np.mean(trial.resid ** 2)))
            key = (not trial.physical, rms)
            log.debug("split of the feature near %.4f nm: rms %.3g, physical %s", c[k], rms, trial.physical)
            if best is None or key < best[0]:
                best = (key, ck, wk, trial)
        assert best is not None
        _, c, w, trial = best
        current = finish(trial)
    log.info("merged resonances: %d rings fitted where %d features were seen", current.center.size, found.size)
    return current


def _split_through(x: np.ndarray, data: np.ndarray, basis: np.ndarray, dips: np.ndarray, widths: np.ndarray,
                   n_rings: int, max_nfev: int) -> tuple[_ZeroPoleModel, np.ndarray]:
    """Merged dips of a through trace (:func:`_split_search` with the zero-pole model)."""
    def fit(c: np.ndarray, w: np.ndarray, full: bool) -> _Trial:
        depth = np.clip(np.interp(c, x, data), 1e-4, 0.9)
        model = _ZeroPoleModel(x, c.size, basis)
        p = _fit_zero_pole(model, data, np.concatenate([c, np.log(np.sqrt(depth) * w / 2), c, np.log(w)]),
                           max_nfev if full else max(1, max_nfev // 4))
        return _zero_pole_trial(model, p, data)

    def finish(t: _Trial) -> _Trial:
        model, p = t.state
        return _zero_pole_trial(model, _lm(model, data, p, np.ones(p.size, dtype=bool), max_nfev), data)

    return _split_search(x, dips, widths, n_rings, fit, finish).state


def _zero_pole_trial(model: _ZeroPoleModel, p: np.ndarray, data: np.ndarray) -> _Trial:
    n = model.n
    return _Trial(center=p[:n], width=np.exp(p[3 * n:4 * n]), resid=model.predict(p) - data,
                  physical=_physical(p, n), state=(model, p))


def _physical(p: np.ndarray, n: int) -> bool:
    """Every factor is a ring's dip: its zero no deeper than its pole is wide (transmission <= 1 at resonance)
    and within a linewidth of it (the bus coupling pulls poles by a fraction of a linewidth)."""
    z, e, pole, w = p[:n], np.exp(p[n:2 * n]), p[2 * n:3 * n], np.exp(p[3 * n:4 * n])
    return bool(np.all(e <= 0.75 * w) and np.all(np.abs(z - pole) <= w))


def _lm(model: _ZeroPoleModel, data: np.ndarray, p0: np.ndarray, free: np.ndarray, max_nfev: int) -> np.ndarray:
    idx = np.flatnonzero(free)

    def fun(q: np.ndarray) -> np.ndarray:
        p = p0.copy()
        p[idx] = q
        return model.predict(p) - data

    def jac(q: np.ndarray) -> np.ndarray:
        p = p0.copy()
        p[idx] = q
        return model.jac(p)[:, idx]

    sol = least_squares(fun, p0[idx], jac=jac, method="lm", x_scale="jac", max_nfev=max_nfev)
    out = p0.copy()
    out[idx] = sol.x
    return out


def _deepest(model: _ZeroPoleModel, p: np.ndarray, k: int) -> np.ndarray:
    n = model.n
    depth = model.factors(p, p[:n])
    return np.sort(np.argsort(depth)[:k])


def _far_coef(x: np.ndarray, env: np.ndarray) -> np.ndarray:
    """Straight line through the smooth envelope (which also carries slow bus-coupling ripple of a few %)."""
    return np.r_[np.polynomial.polynomial.polyfit(x, env, 1), 0.0]


def _through_result(model: _ZeroPoleModel, p: np.ndarray, keep: np.ndarray, rmse: float, x: np.ndarray,
                    basis: np.ndarray) -> BankFit:
    n = model.n
    z, e = p[:n], np.exp(p[n:2 * n])
    pole, w = p[2 * n:3 * n], np.exp(p[3 * n:4 * n])
    env = p[4 * n:] @ basis
    # dip depth: the model's minimum near each zero, envelope divided out
    grid = z[keep, None] + np.linspace(-0.5, 0.5, 201)[None, :] * w[keep, None]
    minima = model.factors(p, grid.ravel()).reshape(grid.shape).min(axis=1)
    extinction = -10 * np.log10(np.maximum(minima, 1e-12))
    return BankFit(center_m=z[keep] * NM, pole_m=pole[keep] * NM, pole_fwhm_m=w[keep] * NM,
                   zero_width_m=e[keep] * NM, extinction_db=extinction, level=np.empty(0), rmse=rmse,
                   mode="ports", x0_m=0.0, scale=1.0, params=p, far_coef=_far_coef(x, env))


def _fit_balanced(x: np.ndarray, data: np.ndarray, basis: np.ndarray, n_rings: int,
                  guess: dict[str, np.ndarray] | None, x0: float, max_nfev: int) -> BankFit:
    lo, hi = float(data.min()), float(data.max())
    signal = (data - lo) / max(hi - lo, 1e-12)
    peaks, widths = _detect(x, signal, PEAK_MIN_HEIGHT, PEAK_MIN_PROMINENCE)
    if guess is not None:
        c, _, _, w, extra = _init_from_guess(guess, x0, x, peaks)
        if guess.get("pole_m") is not None:
            c = c + (np.asarray(guess["pole_m"]) - np.asarray(guess["center_m"])) / NM
        n_keep = c.size
        c, w = np.r_[c, extra], np.r_[w, np.full(extra.size, float(np.median(w)))]
    elif 0 < peaks.size < n_rings:
        c = np.empty(0)         # merged resonances: see _split_search
    else:
        c, w = _starting_widths(peaks, widths)
    if c.size:
        model, theta = _fit_poles(x, data, basis, c, np.log(w), max_nfev * (2 * c.size + 1))
    else:
        model, theta = _split_balanced(x, data, basis, peaks, widths, n_rings, max_nfev)
    n = model.n
    coef, pred = model.solve_linear(theta)
    nb = basis.shape[0]
    amp = coef[nb:nb + n]
    keep = np.arange(n_keep if guess is not None else n)
    if guess is None:
        if n > n_rings:
            keep = np.sort(np.argsort(-amp)[:n_rings])
        keep = keep[np.argsort(theta[keep])]
    env = -(coef[:nb] @ basis)          # the off-resonance level is negative: report it as a positive level
    rmse = float(np.sqrt(np.mean((pred - data) ** 2)))
    nan = np.full(keep.size, np.nan)
    return BankFit(center_m=theta[keep] * NM, pole_m=theta[keep] * NM, pole_fwhm_m=model.width(theta)[keep] * NM,
                   zero_width_m=nan, extinction_db=nan, level=np.empty(0), rmse=rmse, mode="balanced",
                   x0_m=0.0, scale=1.0, params=theta, far_coef=_far_coef(x, env),
                   extra_m=np.delete(theta[:n], keep) * NM)


def _fit_poles(x: np.ndarray, data: np.ndarray, basis: np.ndarray, center: np.ndarray, log_width: np.ndarray,
               max_nfev: int) -> tuple[_PoleModel, np.ndarray]:
    model = _PoleModel(x, center.size, basis, data)
    sol = least_squares(model.residual, np.concatenate([center, log_width]), jac=model.jac, method="lm",
                        x_scale="jac", max_nfev=max_nfev)
    return model, sol.x


#: A balanced pole this many times wider than the bank's median feature is no ring (it fits the envelope).
POLE_MAX_WIDTH_FACTOR = 2.5


def _split_balanced(x: np.ndarray, data: np.ndarray, basis: np.ndarray, peaks: np.ndarray, widths: np.ndarray,
                    n_rings: int, max_nfev: int) -> tuple[_PoleModel, np.ndarray]:
    """Merged features of a balanced trace (:func:`_split_search` with the pole model). A wrong split leaves the
    pair as one feature and spends the spare pole on the envelope: several linewidths wide or outside the scan."""
    limit = POLE_MAX_WIDTH_FACTOR * float(np.median(widths))

    def trial(model: _PoleModel, theta: np.ndarray) -> _Trial:
        n = model.n
        w = model.width(theta)
        inside = (theta[:n] > x.min()) & (theta[:n] < x.max())
        return _Trial(center=theta[:n], width=w, resid=model.residual(theta),
                      physical=bool(np.all(w <= limit) and np.all(inside)), state=(model, theta))

    def fit(c: np.ndarray, w: np.ndarray, full: bool) -> _Trial:
        budget = max_nfev * (2 * c.size + 1)
        return trial(*_fit_poles(x, data, basis, c, np.log(w), budget if full else max(1, budget // 4)))

    def finish(t: _Trial) -> _Trial:
        model, theta = t.state
        return trial(*_fit_poles(x, data, basis, theta[:model.n], theta[model.n:], max_nfev * (2 * model.n + 1)))

    return _split_search(x, peaks, widths, n_rings, fit, finish).state


def bare_linewidths(pole_fwhm_m: np.ndarray) -> np.ndarray:
    """Each ring's own linewidth, estimated as the mean pole width of its bank.

    The bus coupling moves linewidth between rings (a ring 0.2 nm from another can look 40 % wider or narrower,
    one 1 nm away still 10-20 %) but conserves the sum over the coupled rings, while the rings' own linewidths
    differ only by their fabrication spread (a few %). The individual pole widths stay in
    :attr:`ResonanceMap.pole_fwhm_m`.
    """
    w = np.asarray(pole_fwhm_m, dtype=float)
    return np.full_like(w, float(np.mean(w)))


#: Far-level fit on balanced-only benches: how far (nm) each pole may move and by what factor its width may change.
FAR_POLE_MOVE_NM = 0.05
FAR_WIDTH_FACTOR = 2.0
#: The level's standard uncertainty is this many times the fit's misfit (relative to the level). With both ports
#: the misfit (0.2-0.45 %) covered the level's error (<= 0.3 %) on every emulated chip tried; on the balanced
#: output it fell short by up to 2.5 times (errors up to 5.4 % against a 2.2 % misfit: the coherent coupling of
#: the rings' tails is not a sum of pole terms there), hence the larger factor.
FAR_COVERAGE_PORTS = 1.0
FAR_COVERAGE_BALANCED = 2.5


def _far_level(sp: Spectra, bank: int, fit: BankFit) -> tuple[float, float]:
    """The bank's level with every ring absent (weight -1) and its relative standard uncertainty, readout units.

    No heater setting clears the band (the rings of a bank fill nearly a free spectral range, and their tails
    reach several % of the level a nanometre away; the coherent coupling through the buses gives them dispersive
    terms that fall only as 1/distance: with a 2.5 nm gap opened around a channel by the heaters, 0.3-5 % of the
    level was still missing on the reference chip, so reading it there does no better than a model), so the
    level is a model's extrapolation: the trace as one
    constant plus a Lorentzian and a dispersive term per fitted pole (rings and other features of the scan),
    linear in the constant and the amplitudes. With both ports the trace is through + drop, in which the bus
    coupling between rings only moves light between the ports and what is left of each ring is its own loss (a
    dip of ~15 %); with the balanced output alone it is minus the balanced trace (full-depth features), and the
    poles and widths are refined with the constant (variable projection, bounded). The level is taken constant
    over the band (flat facets, as on the reference chip: a tilt term trades with the coherent ripple of the
    rings' tails and was worse on every emulated chip tried).

    The coherent coupling of the rings through the two buses is not a sum of pole terms, so the fit leaves a
    misfit (about 0.3 % of the level with both ports, 2-3 % on the balanced output); times a coverage factor
    (``FAR_COVERAGE_*``) it is returned as the level's relative standard uncertainty. Scored against the emulator: within 0.3 % (both ports) and up to 5 %
    (balanced only) of the true level, where the former rules (a line through the farthest tenth of the scan,
    or through the fitted envelope) were off by up to 0.7 % and 8 %. On balanced-only benches the calibration
    replaces this level, once the heaters are characterized, by a reading in a gap the heaters open
    (:mod:`labctl.calibration.reference_level`, 0.2-0.7 % below the level before its correction); this one stays
    the fallback where no gap can be opened within the limits.
    """
    x = (sp.wavelength_m - fit.x0_m) / NM
    c = (np.r_[fit.pole_m, fit.extra_m] - fit.x0_m) / NM
    w = np.r_[fit.pole_fwhm_m, np.full(fit.extra_m.size, float(np.median(fit.pole_fwhm_m)))] / NM
    ones = np.ones((1, x.size))
    coverage = FAR_COVERAGE_PORTS
    if sp.through is not None and sp.drop is not None:
        y = sp.through[:, bank] + sp.drop[:, bank]
        model = _PoleModel(x, c.size, ones, y)
        coef, pred = model.solve_linear(np.r_[c, np.log(w)])
    else:
        y = -np.asarray(sp.balanced[:, bank], dtype=float)
        model = _PoleModel(x, c.size, ones, y)
        theta0 = np.r_[c, np.log(w)]
        step = np.r_[np.full(c.size, FAR_POLE_MOVE_NM), np.full(c.size, np.log(FAR_WIDTH_FACTOR))]
        sol = least_squares(model.residual, theta0, jac=model.jac, method="trf", x_scale="jac", bounds=(theta0 - step,
                                                                                           theta0 + step))
        coef, pred = model.solve_linear(sol.x)
        coverage = FAR_COVERAGE_BALANCED
    level = float(coef[0])
    if not level > 0:
        raise ResonanceFitError(f"bank {bank}: no positive level with every ring away (fit gave {level:.4g})")
    return level, coverage * float(np.sqrt(np.mean((pred - y) ** 2)) / level)


# -- the map -------------------------------------------------------------------------------------------------------------
@dataclass
class ResonanceMap:
    """Every ring at zero drive, from one scan of the band (see the module docstring)."""

    center_m: np.ndarray          # (B, R) ring resonance at zero drive (through zero; pole on balanced-only benches)
    fwhm_m: np.ndarray            # (B, R) ring's own linewidth (estimate, see bare_linewidths)
    extinction_db: np.ndarray     # (B, R) through dip depth (NaN where only balanced is measured)
    drop_peak: np.ndarray         # (B, R) drop peak relative to the through level (NaN where only balanced)
    channel_of_ring: np.ndarray   # (B, R) int, -1 for a ring without a channel
    fit_rmse: np.ndarray          # (B,) rms fit residual relative to the off-resonance level
    baseline: np.ndarray          # (B, C) balanced reading with every ring far away (w = -1), readout units, < 0
    # -- beyond the contract: what the thermal tracking and reports use ----------------------------------------------
    pole_m: np.ndarray | None = None          # (B, R) coupled poles (what a Lorentzian fit would call the centre)
    pole_fwhm_m: np.ndarray | None = None     # (B, R) their widths
    zero_width_m: np.ndarray | None = None    # (B, R) depth parameter of the through zeros
    unit: str = ""
    laser_power_w: np.ndarray | None = None   # (C,) channel laser powers the baseline is scaled to
    measured_ports: bool = True               # False: balanced only (centres are poles)
    stats: dict[str, Any] = field(default_factory=dict)
    #: (B,) relative standard uncertainty of |baseline| (the far-level model's misfit, see ``_far_level``): a common
    #: scale of the bank's weights that no reading checks. None in files written before it was estimated.
    baseline_uncertainty: np.ndarray | None = None

    @property
    def n_banks(self) -> int:
        return int(self.center_m.shape[0])

    @property
    def n_rings(self) -> int:
        return int(self.center_m.shape[1])

    def in_ring_order(self, resonance_of_ring: np.ndarray | None) -> ResonanceMap:
        """The map with ring r of bank b being resonance ``resonance_of_ring[b, r]`` of the scan (wavelength order):
        what heater r moves (``ThermalModel.resonance_of_ring``). Channels stay with the resonances (the k-th
        resonance of a bank by wavelength serves channel k), so a ring's channel follows it."""
        if resonance_of_ring is None:
            return self
        idx = np.asarray(resonance_of_ring, dtype=int)
        if idx.shape != self.center_m.shape or not np.all(np.sort(idx, axis=1) == np.arange(self.n_rings)):
            raise ValueError(f"resonance_of_ring must be a permutation of 0..{self.n_rings - 1} per bank, got "
                             f"{idx.tolist()}")
        if np.array_equal(idx, np.broadcast_to(np.arange(self.n_rings), idx.shape)):
            return self
        take = lambda a: None if a is None else np.take_along_axis(np.asarray(a), idx, axis=1)  # noqa: E731
        return dataclasses.replace(self, center_m=take(self.center_m), fwhm_m=take(self.fwhm_m),
                                   extinction_db=take(self.extinction_db), drop_peak=take(self.drop_peak),
                                   channel_of_ring=take(self.channel_of_ring), pole_m=take(self.pole_m),
                                   pole_fwhm_m=take(self.pole_fwhm_m), zero_width_m=take(self.zero_width_m),
                                   stats={**self.stats, "resonance_of_ring": idx.tolist()})

    def with_zero_drive_correction(self, correction_m: np.ndarray | None) -> ResonanceMap:
        """The map (ring order) with its centres moved to the rings' own resonances where the heater steps resolved
        them (``ThermalModel.zero_drive_correction_m``: close pairs on a map of poles); the poles stay as measured.
        """
        if correction_m is None:
            return self
        corr = np.asarray(correction_m, dtype=float)
        if corr.shape != self.center_m.shape:
            raise ValueError(f"zero-drive correction is {corr.shape}, the map {self.center_m.shape}")
        if not np.any(corr):
            return self
        pole = self.center_m.copy() if self.pole_m is None else self.pole_m
        return dataclasses.replace(self, center_m=self.center_m + corr, pole_m=pole,
                                   stats={**self.stats, "zero_drive_correction_pm": np.round(corr * 1e12, 2).tolist()})

    def guess(self, bank: int, center_m: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Starting values for tracking bank ``bank``'s rings to ``center_m`` (default: the map's centres)."""
        c0 = self.center_m[bank]
        c = c0 if center_m is None else np.asarray(center_m, dtype=float)
        out: dict[str, np.ndarray] = {"center_m": c}
        if self.pole_m is not None:
            out["pole_m"] = c + (self.pole_m[bank] - c0)
        if self.pole_fwhm_m is not None:
            out["pole_fwhm_m"] = self.pole_fwhm_m[bank]
        if self.zero_width_m is not None:
            out["zero_width_m"] = self.zero_width_m[bank]
        return out


#: The resonance map's band beyond the channel grid, blue and red, m (measure_resonance_map).
MAP_MARGIN_M = 1.5e-9
MAP_RED_MARGIN_M = 0.9e-9
#: The map's scan step, m: on a bench logging spectra on a power meter, and on one reading balanced photodiodes
#: (stepped or triggered sweeps; about 20 points per linewidth either way for the fit).
MAP_STEP_LOGGING_M = 2e-12
MAP_STEP_BALANCED_M = 10e-12


def map_step_m(spectra_logged: bool) -> float:
    """Default map step, m: ``spectra_logged`` when the bench logs spectra on one power meter's ports."""
    return MAP_STEP_LOGGING_M if spectra_logged else MAP_STEP_BALANCED_M


def band_m(hw: BenchSession | Any, margin_m: float, red_margin_m: float | None = None) -> tuple[float, float]:
    """Scan band: ``margin_m`` blue of the first channel, ``red_margin_m`` (default the same) red of the last.
    ``hw``: a bench session, or anything with the channel grid ``wavelengths_m`` (a dry check's wiring)."""
    grid = np.asarray(hw.wavelengths_m, dtype=float)
    return float(grid.min() - margin_m), float(grid.max() + (margin_m if red_margin_m is None else red_margin_m))


def analyze_spectra(sp: Spectra, n_rings: int, guesses: list[dict[str, np.ndarray]] | None = None
                    ) -> list[BankFit]:
    """Fit every bank of one scan (through zeros when the ports were read apart, else balanced poles)."""
    fits = []
    for b in range(sp.balanced.shape[1]):
        guess = None if guesses is None else guesses[b]
        if sp.through is not None:
            fits.append(fit_bank(sp.wavelength_m, n_rings=n_rings, through=sp.through[:, b], guess=guess))
        else:
            fits.append(fit_bank(sp.wavelength_m, n_rings=n_rings, balanced=sp.balanced[:, b], guess=guess))
    return fits


def measure_resonance_map(hw: BenchSession, *, step_m: float | None = None, margin_m: float = MAP_MARGIN_M,
                          red_margin_m: float = MAP_RED_MARGIN_M, laser: int = 0, averaging_time_s: float = 1e-4,
                          progress: Callable[[str, int, int], None] | None = None) -> ResonanceMap:
    """All heaters at 0, one scan of the band, every bank fitted; see the module docstring.

    The band reaches ``margin_m`` blue of the first channel (rings are designed blue of their channel, and a
    fabrication offset of up to a channel spacing puts the bluest up to 1.3 nm blue of channel 0 on the reference
    grid) and ``red_margin_m`` red of the last: together less than a free spectral range of the reference rings
    (11.4 nm), so no ring is seen twice. Cost on the default bench: one 11 nm logging sweep (about 1.3 s) plus the laser outputs switched off and back
    on (about 1 s per laser that was on). On a stepped bench every point costs a laser retune (about 0.1 s): the
    default ``step_m`` is 2 pm on a logging bench and 10 pm on a stepped one (the fit needs about 20 points per
    linewidth).
    """
    if step_m is None:
        step_m = map_step_m(hw.power_meter is not None and hw.sweep_ports is not None)
    t0, n0 = hw.elapsed_s(), hw.transaction_count()
    hw.set_ring_drive(np.zeros(hw.n_banks * hw.n_rings))
    start, stop = band_m(hw, margin_m, red_margin_m)
    sp = _map_scan(hw, start, stop, step_m, laser, averaging_time_s, progress)
    fits = analyze_spectra(sp, hw.n_rings)
    nb, nr, nc = hw.n_banks, hw.n_rings, hw.n_channels
    center = np.vstack([f.center_m for f in fits])
    pole = np.vstack([f.pole_m for f in fits])
    pole_w = np.vstack([f.pole_fwhm_m for f in fits])
    fwhm = np.vstack([bare_linewidths(f.pole_fwhm_m) for f in fits])
    extinction = np.vstack([f.extinction_db for f in fits])
    zero_w = np.vstack([f.zero_width_m for f in fits])
    ports = sp.through is not None
    if ports:
        assert sp.drop is not None
        drop_peak = np.vstack([_drop_peaks(sp, b, fits[b]) for b in range(nb)])
    else:
        drop_peak = np.full((nb, nr), np.nan)
    channel_wl = np.asarray(hw.wavelengths_m, dtype=float)
    powers = np.array([float(laser_.get_power_w()) for laser_ in hw.lasers])
    levels = [_far_level(sp, b, fits[b]) for b in range(nb)]
    # balanced reading at weight -1: minus the level (the drop port's own floor is in the fitted constant; the
    # former subtraction of the drop trace's lowest reading took the rings' tails there for a dark floor)
    far = np.array([lv for lv, _ in levels])[:, None] * np.ones((1, channel_wl.size))
    baseline = -far * (powers / sp.laser_power_w)[None, :]
    baseline_uncertainty = np.array([u for _, u in levels])
    if np.any(baseline >= 0):
        raise ResonanceFitError(f"baseline not negative: {baseline}")
    channel_of_ring = np.tile(np.where(np.arange(nr) < nc, np.arange(nr), -1), (nb, 1))
    _check_order(center, channel_wl)
    emit(hw, "resonance_map", wavelength_m=sp.wavelength_m, balanced=sp.balanced, through=sp.through, drop=sp.drop,
         center_m=center, fwhm_m=fwhm, unit=sp.unit)
    stats = {"transactions": hw.transaction_count() - n0, "points": int(sp.wavelength_m.size),
             "bench_time_s": None if t0 is None else (hw.elapsed_s() or 0.0) - t0}
    log.info("resonance map: %d points, %d transactions, %s s of bench time, fit rmse %s", stats["points"],
             stats["transactions"], stats["bench_time_s"], np.round([f.rmse for f in fits], 5))
    return ResonanceMap(center_m=center, fwhm_m=fwhm, extinction_db=extinction, drop_peak=drop_peak,
                        channel_of_ring=channel_of_ring, fit_rmse=np.array([f.rmse for f in fits]),
                        baseline=baseline, pole_m=pole, pole_fwhm_m=pole_w, zero_width_m=zero_w, unit=sp.unit,
                        laser_power_w=powers, measured_ports=ports, stats=stats,
                        baseline_uncertainty=baseline_uncertainty)


#: Stepped scans of the map are taken in this many pieces, with a progress report after each.
MAP_SCAN_PIECES = 10


def _map_scan(hw: BenchSession, start: float, stop: float, step_m: float, laser: int,
              averaging_time_s: float, progress: Callable[[str, int, int], None] | None) -> Spectra:
    """The map's scan: one logging sweep, or a stepped scan in pieces (a point costs a laser retune and a reading
    of every bank: about 1200 points on the source-meter bench) with progress after each piece."""
    if progress is None or sweep_kind(hw) != "stepped":
        return spectra(hw, start, stop, step_m, laser=laser, averaging_time_s=averaging_time_s)
    grid = start + step_m * np.arange(int(np.floor((stop - start) / step_m + 1e-6)) + 1)
    parts = []
    with SpectrumSession(hw, laser, averaging_time_s=averaging_time_s) as session:
        for k, piece in enumerate(np.array_split(grid, MAP_SCAN_PIECES)):
            parts.append(session.scan_points(piece))
            progress("resonance map: laser steps", k + 1, MAP_SCAN_PIECES)
    first = parts[0]
    return Spectra(np.concatenate([p.wavelength_m for p in parts]), np.vstack([p.balanced for p in parts]),
                   None, None, first.unit, first.laser, first.laser_power_w)


def _drop_peaks(sp: Spectra, bank: int, fit: BankFit) -> np.ndarray:
    """Highest drop reading within half a linewidth of each ring, relative to the through level there."""
    assert sp.drop is not None
    wl = sp.wavelength_m
    near = np.abs(wl[None, :] - fit.center_m[:, None]) < 0.5 * fit.pole_fwhm_m[:, None]
    peak = np.where(near, sp.drop[None, :, bank], -np.inf).max(axis=1)
    return peak / fit.far_level(fit.center_m)


def _check_order(center: np.ndarray, channel_wl: np.ndarray) -> None:
    """Log resonances more than half a channel spacing from their design place (the heaters decide their ring)."""
    nr = center.shape[1]
    if channel_wl.size < 2:
        return
    spacing = float(np.median(np.diff(np.sort(channel_wl))))
    k = min(nr, channel_wl.size)
    offset = center[:, :k] - channel_wl[None, :k]
    far = np.abs(offset - np.median(offset)) > 0.5 * spacing
    if far.any():
        log.info("resonances %s (bank, index) are more than half a channel spacing from their design place; the "
                 "heater steps decide which ring each is", np.argwhere(far).tolist())
