"""Compiled (numba) power-meter model: the one place its arithmetic lives (see ``detection`` for the physics).

``detection.meter_reading`` applies it elementwise (a broadcasting ufunc) to whatever an instrument reads, and
``meter_bank_readings`` fuses it with the channel sum of a batch of weight-bank configurations, so the photonic
fast path pays one pass over memory for hundreds of thousands of readings instead of a dozen numpy passes. Noise is
drawn by the caller from the chip's numpy Generator, so seeds mean the same on every path. No fastmath.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np
from labctl.sim.kernels import (
    _jit,  # the emulator's one set of compile options (IEEE maths, cached)
)

_LN10_10 = math.log(10.0) / 10.0


@_jit(inline=True)
def meter_value(p: float, nl_db: float, phase: float, noise: float, k_arg: float, c_arg: float) -> float:  # pragma: no cover
    """Unquantized reading: ``p * 10^(nl sin(2 pi p_dBm / period + phase) / 10) + noise``.

    ``k_arg = 2 pi 10 / (ln 10 period)``, ``c_arg = 2 pi 30 / period`` (p_dBm = 10 log10(p / 1 mW))."""
    # The nonlinearity factor is within +-linearity_db of 1 (0.02 dB: 0.5 %); single precision changes the reading
    # by < 1e-7 relative (6e-8 max measured over 1e-7..1e-2 W), far below the 16-bit readout step, and its
    # log/sin/exp cost much less than the double ones (a batch of 208k readings: 28 -> 18 ms).
    x = np.float32(max(1e-30, p))
    arg = np.float32(k_arg) * math.log(x) + np.float32(c_arg + phase)
    factor = math.exp(np.float32(nl_db * _LN10_10) * math.sin(arg))
    return p * np.float64(factor) + noise


@_jit(inline=True)
def meter_quantize(reading: float, top: float, lsb: float) -> float:  # pragma: no cover
    """Clip to [-top, top] and round to the readout step (half to even, as numpy)."""
    r = reading
    if r > top:
        r = top
    elif r < -top:
        r = -top
    return np.rint(r / lsb) * lsb


@nb.vectorize(["float64(float64, float64, float64, float64, float64, float64)"], cache=True)
def meter_raw_ufunc(p: float, nl_db: float, phase: float, noise: float, k_arg: float,
                    c_arg: float) -> float:  # pragma: no cover
    """:func:`meter_value` elementwise with numpy broadcasting."""
    return meter_value(p, nl_db, phase, noise, k_arg, c_arg)


@nb.vectorize(["float64(float64, float64, float64)"], cache=True)
def meter_quantize_ufunc(reading: float, top: float, lsb: float) -> float:  # pragma: no cover
    """:func:`meter_quantize` elementwise with numpy broadcasting."""
    return meter_quantize(reading, top, lsb)


@_jit()
def meter_readings_flat(p: np.ndarray, nl_db: np.ndarray, phase: np.ndarray, noise: np.ndarray, top: np.ndarray,
                        bits_scale: float, k_arg: float, c_arg: float, reading: np.ndarray,
                        over: np.ndarray) -> None:  # pragma: no cover - compiled
    """:func:`meter_raw_ufunc`, the over-range test and :func:`meter_quantize_ufunc` on flat arrays of one length
    in one call (an instrument's few readings: the ufuncs' call overhead, not the arithmetic, is the cost); the
    same operations element by element, so the same bits."""
    for i in range(p.size):
        raw = meter_value(p[i], nl_db[i], phase[i], noise[i], k_arg, c_arg)
        over[i] = raw > top[i]
        reading[i] = meter_quantize(raw, top[i], top[i] / bits_scale)


@_jit()
def meter_bank_readings(pin: np.ndarray, blk: np.ndarray, t0: int, rin: np.ndarray, rin_sigma: float,
                        thr_t: np.ndarray, drop_t: np.ndarray, out_factor: float, nl_db: np.ndarray,
                        phase: np.ndarray, noise: np.ndarray, noise_sigma: float, tops: np.ndarray, margin: float,
                        bits_scale: float, k_arg: float, c_arg: float, out: np.ndarray) -> None:  # pragma: no cover
    """Balanced meter readings (drop - through) of configurations t0 .. t0 + len(rin) - 1, N power settings, B banks.

    pin (K, N, C) bank input powers, configuration t reading pin[blk[t]]; rin (Tc, N, C) standard normals of the
    chunk (RIN = 1 + rin_sigma * rin); thr_t/drop_t (B, C, T) channel transmissions; nl_db/phase (B, 2)
    per-meter nonlinearity; noise (Tc, N, B, 2) standard normals times noise_sigma (W); tops sorted range tops in W
    (auto range: the smallest top >= power * margin, else the largest); bits_scale = 2**readout_bits;
    out (T, N, B)."""
    n_chunk, n, n_ch = rin.shape
    n_b = thr_t.shape[0]
    n_tops = tops.shape[0]
    pw = np.empty(n_ch)
    tt = np.empty((n_b, n_ch))
    dt = np.empty((n_b, n_ch))
    for j in range(n_chunk):
        t = t0 + j
        k = blk[t]
        for b in range(n_b):
            for c in range(n_ch):
                tt[b, c] = thr_t[b, c, t]
                dt[b, c] = drop_t[b, c, t]
        for i in range(n):
            for c in range(n_ch):
                pw[c] = pin[k, i, c] * (1.0 + rin_sigma * rin[j, i, c])
            for b in range(n_b):
                thr = 0.0
                drop = 0.0
                for c in range(n_ch):
                    thr += pw[c] * tt[b, c]
                    drop += pw[c] * dt[b, c]
                value = 0.0
                for port in range(2):
                    p = (thr if port == 0 else drop) * out_factor
                    need = p * margin   # auto range, searched down from the top (readings sit high: 1-2 steps)
                    m = n_tops - 1
                    while m > 0 and tops[m - 1] >= need:
                        m -= 1
                    top = tops[m]
                    r = meter_quantize(meter_value(p, nl_db[b, port], phase[b, port],
                                                   noise_sigma * noise[j, i, b, port], k_arg, c_arg),
                                       top, top / bits_scale)
                    value += r if port == 1 else -r
                out[t, i, b] = value


def arg_constants(period_db: float) -> tuple[float, float]:
    """(k_arg, c_arg) of :func:`meter_value` for a nonlinearity period in dB."""
    return 2 * math.pi * 10 / math.log(10) / period_db, 2 * math.pi * 30 / period_db
