"""Compiled (numba) kernels of the emulator's batch path: the coherent weight-bank optics (maths in ``optics``)
and the elementwise steps around it (heater power under voltage drive, the reduced half phase).

Why compiled: per (point, bank, wavelength) the bank is a product of R 2x2 complex matrices, about 60 float32
operations per ring. As numpy ufuncs that work is memory-bound (every intermediate goes through memory) and pays a
call per operation; fused in one loop nest it stays in registers and the point (or wavelength) loop vectorizes.

Every element goes through exactly the same sequence of IEEE operations (no fastmath: no reassociation, no FMA
contraction), in whichever loop order, so results do not depend on the loop order, the chunking of a batch or the
process that computes it. Imported lazily through ``optics.kernels()`` (numba adds ~0.5 s to an import); compiled
on first use and cached in ``__pycache__`` (``cache=True``), so later processes load the machine code.
"""

from __future__ import annotations

from typing import Any

import numba as nb
import numpy as np

__all__ = ["POINT_CHUNK", "bank_powers", "half_phase_args", "heater_command", "voltage_heater_power", "warm_up"]

POINT_CHUNK = 256  # points per inner pass: the per-point state (6 float32 rows) stays in L1

_F1 = np.float32(1.0)


def _jit(inline: bool = False) -> Any:
    """numba.njit as every kernel here uses it: IEEE maths without fastmath, GIL released, cached on disk."""
    return nb.njit(cache=True, fastmath=False, nogil=True, boundscheck=False, error_model="numpy",
                   inline="always" if inline else "never")


# constants array layout: cst[k, b, j, c] float32, k = lam re/im, gam re/im, alp re/im, cc re/im
_LAM_R, _LAM_I, _GAM_R, _GAM_I, _ALP_R, _ALP_I, _CC_R, _CC_I = range(8)


@_jit(inline=True)
def _start(zr: float, zi: float, lr: float, li: float, nu: float) -> tuple[Any, ...]:  # pragma: no cover
    """Last ring: h = lambda s, w = h^2; returns (p, q, through factor) = (h, w - 1, w - nu)."""
    hr = lr * zr - li * zi
    hi = lr * zi + li * zr
    wr = hr * hr - hi * hi
    wi = hr * hi + hi * hr
    return hr, hi, wr - _F1, wi, wr - nu, wi


@_jit(inline=True)
def _step(zr: float, zi: float, lr: float, li: float, gr: float, gi: float, ar: float, ai: float, cr: float,
          ci: float, nu: float, pr: float, pi: float, qr: float, qi: float, tr: float, ti: float
          ) -> tuple[Any, ...]:  # pragma: no cover - compiled
    """Ring j < R-1: [p; q] := [[gamma w + alpha, h], [c h, w - 1]] [p; q], t := t (w - nu)."""
    hr = lr * zr - li * zi
    hi = lr * zi + li * zr
    wr = hr * hr - hi * hi
    wi = hr * hi + hi * hr
    a_r = (gr * wr - gi * wi) + ar
    a_i = (gr * wi + gi * wr) + ai
    c_r = cr * hr - ci * hi
    c_i = cr * hi + ci * hr
    d_r = wr - _F1
    np_r = (a_r * pr - a_i * pi) + (hr * qr - hi * qi)
    np_i = (a_r * pi + a_i * pr) + (hr * qi + hi * qr)
    nq_r = (c_r * pr - c_i * pi) + (d_r * qr - wi * qi)
    nq_i = (c_r * pi + c_i * pr) + (d_r * qi + wi * qr)
    fr = wr - nu
    nt_r = tr * fr - ti * wi
    nt_i = tr * wi + ti * fr
    return np_r, np_i, nq_r, nq_i, nt_r, nt_i


@_jit(inline=True)
def _powers(pr: float, pi: float, qr: float, qi: float, tr: float, ti: float, t_scale: float, d_scale: float
            ) -> tuple[float, float]:  # pragma: no cover - compiled
    """|E_through|^2, |E_drop|^2 in float64 (no float32 overflow): one division, 1/|q'|^2."""
    inv = 1.0 / (np.float64(qr) * np.float64(qr) + np.float64(qi) * np.float64(qi))
    thr = (np.float64(tr) * np.float64(tr) + np.float64(ti) * np.float64(ti)) * inv * t_scale
    drop = (np.float64(pr) * np.float64(pr) + np.float64(pi) * np.float64(pi)) * inv * d_scale
    return thr, drop


@_jit()
def _points_pass(z: np.ndarray, cst: np.ndarray, nu: np.ndarray, b: int, c: int, s: int, e: int, pr: np.ndarray,
                 pi: np.ndarray, qr: np.ndarray, qi: np.ndarray, tr: np.ndarray, ti: np.ndarray
                 ) -> None:  # pragma: no cover - compiled
    """State rows (p, q, t) for bank b, wavelength c and points s..e (point loop innermost: SIMD)."""
    nr = z.shape[2]
    m = e - s
    j = nr - 1
    zr, zi = z[0, b, j, s:e], z[1, b, j, s:e]
    lr, li, nuj = cst[_LAM_R, b, j, c], cst[_LAM_I, b, j, c], nu[b, j]
    for i in range(m):
        pr[i], pi[i], qr[i], qi[i], tr[i], ti[i] = _start(zr[i], zi[i], lr, li, nuj)
    for j in range(nr - 2, -1, -1):
        zr, zi = z[0, b, j, s:e], z[1, b, j, s:e]
        lr, li = cst[_LAM_R, b, j, c], cst[_LAM_I, b, j, c]
        gr, gi = cst[_GAM_R, b, j, c], cst[_GAM_I, b, j, c]
        ar, ai = cst[_ALP_R, b, j, c], cst[_ALP_I, b, j, c]
        cr, ci = cst[_CC_R, b, j, c], cst[_CC_I, b, j, c]
        nuj = nu[b, j]
        for i in range(m):
            pr[i], pi[i], qr[i], qi[i], tr[i], ti[i] = _step(zr[i], zi[i], lr, li, gr, gi, ar, ai, cr, ci, nuj,
                                                             pr[i], pi[i], qr[i], qi[i], tr[i], ti[i])


@_jit()
def _waves_pass(z: np.ndarray, cst: np.ndarray, nu: np.ndarray, b: int, i: int, pr: np.ndarray, pi: np.ndarray,
                qr: np.ndarray, qi: np.ndarray, tr: np.ndarray, ti: np.ndarray) -> None:  # pragma: no cover - compiled
    """State rows (p, q, t) for bank b, point i and every wavelength (wavelength loop innermost: SIMD)."""
    nr, nw = z.shape[2], cst.shape[3]
    j = nr - 1
    zr, zi, nuj = z[0, b, j, i], z[1, b, j, i], nu[b, j]
    lr, li = cst[_LAM_R, b, j], cst[_LAM_I, b, j]
    for c in range(nw):
        pr[c], pi[c], qr[c], qi[c], tr[c], ti[c] = _start(zr, zi, lr[c], li[c], nuj)
    for j in range(nr - 2, -1, -1):
        zr, zi, nuj = z[0, b, j, i], z[1, b, j, i], nu[b, j]
        lr, li = cst[_LAM_R, b, j], cst[_LAM_I, b, j]
        gr, gi = cst[_GAM_R, b, j], cst[_GAM_I, b, j]
        ar, ai = cst[_ALP_R, b, j], cst[_ALP_I, b, j]
        cr, ci = cst[_CC_R, b, j], cst[_CC_I, b, j]
        for c in range(nw):
            pr[c], pi[c], qr[c], qi[c], tr[c], ti[c] = _step(zr, zi, lr[c], li[c], gr[c], gi[c], ar[c], ai[c],
                                                             cr[c], ci[c], nuj, pr[c], pi[c], qr[c], qi[c], tr[c],
                                                             ti[c])


@_jit()
def bank_powers(z: np.ndarray, cst: np.ndarray, nu: np.ndarray, t_scale: np.ndarray, d_scale: np.ndarray,
                pin: np.ndarray, thr: np.ndarray, drop: np.ndarray) -> None:  # pragma: no cover - compiled
    """Port powers of every bank, float64, into thr and drop.

    z (2, B, R, n) float32: cos/sin of the per-(point, ring) half phase; cst (8, B, R, W) float32; nu (B, R)
    float32; t_scale, d_scale (B, W) float64. With pin (W, n) float64: bus powers, thr/drop (B, 1, n) set to
    sum_c |E|^2 (b, c, i) * pin[c, i], channels summed in order c = 0..W-1. With pin of shape (0, n): |E|^2 itself,
    thr/drop (B, W, n). Many points: point loop innermost; few points and many wavelengths (spectra, an instrument's
    one-point reading): wavelength loop innermost. One function for both (one compilation).
    """
    nbk, n = z.shape[1], z.shape[3]
    nw = cst.shape[3]
    bus = pin.shape[0] > 0
    if bus:
        thr[:] = 0.0
        drop[:] = 0.0
    if n >= 8 or n >= nw:
        st = np.empty((6, POINT_CHUNK), np.float32)
        pr, pi, qr, qi, tr, ti = st[0], st[1], st[2], st[3], st[4], st[5]
        for s in range(0, n, POINT_CHUNK):
            e = min(s + POINT_CHUNK, n)
            for b in range(nbk):
                for c in range(nw):
                    _points_pass(z, cst, nu, b, c, s, e, pr, pi, qr, qi, tr, ti)
                    ts, ds = t_scale[b, c], d_scale[b, c]
                    if bus:
                        thr_b, drop_b, pin_c = thr[b, 0, s:e], drop[b, 0, s:e], pin[c, s:e]
                        for i in range(e - s):
                            tp, dp = _powers(pr[i], pi[i], qr[i], qi[i], tr[i], ti[i], ts, ds)
                            thr_b[i] += tp * pin_c[i]
                            drop_b[i] += dp * pin_c[i]
                    else:
                        thr_bc, drop_bc = thr[b, c, s:e], drop[b, c, s:e]
                        for i in range(e - s):
                            tp, dp = _powers(pr[i], pi[i], qr[i], qi[i], tr[i], ti[i], ts, ds)
                            thr_bc[i] = tp
                            drop_bc[i] = dp
        return
    st = np.empty((6, nw), np.float32)
    pr, pi, qr, qi, tr, ti = st[0], st[1], st[2], st[3], st[4], st[5]
    for b in range(nbk):
        for i in range(n):
            _waves_pass(z, cst, nu, b, i, pr, pi, qr, qi, tr, ti)
            if bus:  # the channel sum in the order of the point path (c = 0..W-1 from 0.0): the same bits
                for c in range(nw):
                    tp, dp = _powers(pr[c], pi[c], qr[c], qi[c], tr[c], ti[c], t_scale[b, c], d_scale[b, c])
                    thr[b, 0, i] += tp * pin[c, i]
                    drop[b, 0, i] += dp * pin[c, i]
            else:
                for c in range(nw):
                    tp, dp = _powers(pr[c], pi[c], qr[c], qi[c], tr[c], ti[c], t_scale[b, c], d_scale[b, c])
                    thr[b, c, i] = tp
                    drop[b, c, i] = dp


@_jit()
def voltage_heater_power(drive: np.ndarray, full_scale: float, inv_lsb: float, lsb: float, r0: np.ndarray,
                         r0_sq: np.ndarray, four_gamma_r0: np.ndarray, out: np.ndarray) -> None:  # pragma: no cover
    """Heater power (n, H) under voltage drive (n, H): DAC clip and rounding, then the self-heating closed form
    P = 2 V^2 / (R0 + sqrt(R0^2 + 4 gamma R0 V^2)); the operations of ``heaters`` in the same order (same bits)."""
    n, nh = drive.shape
    for i in range(n):
        d, o = drive[i], out[i]
        for h in range(nh):
            v = min(max(d[h], 0.0), full_scale)
            v = np.rint(v * inv_lsb) * lsb
            v = v * v
            root = np.sqrt(v * four_gamma_r0[h] + r0_sq[h]) + r0[h]
            o[h] = (v * 2.0) / root


@_jit()
def heater_command(index: np.ndarray, values: np.ndarray, current: bool, full_scale: float, lsb: float,
                   r0: np.ndarray, four_gamma: float, gamma: float, decay: float, drive: np.ndarray,
                   is_current: np.ndarray, start: np.ndarray, target: np.ndarray,
                   scratch: np.ndarray) -> int:  # pragma: no cover - compiled
    """One heater command of an instrument, in place: ``values`` (V or A) on heaters ``index``, DAC clip and
    rounding, self-heating power (the operations of ``heaters`` in the same order: same bits), and the first-order
    settling restarted from where the effective power is now (``decay`` = exp(-elapsed / tau)).

    Nothing changes unless the whole command is valid; returns -2 if a value is not finite, -3 if a heater index is
    outside ``0..len(start)-1``, the first heater beyond thermal runaway, else -1. ``scratch`` holds at least
    2 x len(index) floats; on success ``scratch[0, k]`` and ``scratch[1, k]`` (k = len(index)) are set to the
    largest commanded power and the commanded powers' sum (in heater order: the caller re-sums exactly when it
    matters)."""
    k = index.size
    nh = start.size
    for j in range(k):                      # checked as a whole before anything is computed
        if not np.isfinite(values[j]):
            return -2
        if index[j] < 0 or index[j] >= nh:
            return -3
    for j in range(k):
        v = values[j]
        v = v if v >= 0.0 else 0.0          # np.maximum(0.0, v) (keeps -0.0, as np.clip)
        v = v if v <= full_scale else full_scale
        q = np.rint(v / lsb) * lsb
        h = index[j]
        sq = q * q
        if current:
            i2r = sq * r0[h]
            g = gamma * i2r
            if g >= 1.0:
                return h
            power = i2r / (1.0 - g)
        else:
            power = 2.0 * sq / (r0[h] + np.sqrt(r0[h] * r0[h] + four_gamma * r0[h] * sq))
        scratch[0, j] = q
        scratch[1, j] = power
    for h in range(nh):
        start[h] = target[h] + (start[h] - target[h]) * decay
    for j in range(k):
        h = index[j]
        drive[h] = scratch[0, j]
        is_current[h] = current
        target[h] = scratch[1, j]
    top = -np.inf
    total = 0.0
    for h in range(nh):
        top = max(top, target[h])
        total += target[h]
    if k < scratch.shape[1]:
        scratch[0, k] = top
        scratch[1, k] = total
    return -1


@_jit()
def half_phase_args(resonance: np.ndarray, coef: np.ndarray, ref: np.ndarray, out: np.ndarray
                    ) -> None:  # pragma: no cover - compiled
    """Reduced half phase ref - coef / resonance per (ring, point), (H, n) float64 -> float32 ``out`` (small
    arguments, so float32 cos/sin are enough)."""
    nh, n = resonance.shape
    for h in range(nh):
        res, o = resonance[h], out[h]
        c, r = coef[h], ref[h]
        for i in range(n):
            o[i] = np.float32(r - c / res[i])


def warm_up() -> None:
    """Compile (or load from the cache) every kernel for the argument types the emulator passes.

    Why: called before a process pool forks, so the workers inherit the machine code instead of each loading or
    compiling it again.
    """
    f32, f64 = np.float32, np.float64
    z = np.zeros((2, 1, 1, 1), f32)
    cst = np.zeros((8, 1, 1, 1), f32)
    nu = np.zeros((1, 1), f32)
    scale = np.ones((1, 1), f64)
    out = np.zeros((1, 1, 1), f64)
    bank_powers(z, cst, nu, scale, scale, np.ones((1, 1), f64), out, np.zeros((1, 1, 1), f64))
    vec = np.ones(1, f64)
    voltage_heater_power(np.zeros((1, 1), f64), 1.0, 1.0, 1.0, vec, vec, vec, np.zeros((1, 1), f64))
    half_phase_args(np.ones((1, 1), f64), vec, vec, np.zeros((1, 1), f32))
    heater_command(np.zeros(1, np.int64), vec, False, 1.0, 1.0, vec, 0.0, 0.0, 1.0, np.zeros(1), np.zeros(1, bool),
                   np.zeros(1), np.zeros(1), np.zeros((2, 1)))
