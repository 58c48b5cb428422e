"""Detection: the on-chip balanced photodetector and the off-chip power meters.

Balanced detector (drop diode minus through diode), averaging time t, bandwidth B = 1/(2 t):
    I = R_resp * sum_c P_c (1 + eps_c) (|E_drop,c|^2 - |E_thr,c|^2) + I_dark,drop - I_dark,thr + n
where eps_c ~ N(0, RIN_lin * B) is one draw per laser channel and sample, shared by both diodes and all banks
(the same laser feeds them, so RIN is correlated between drop and through and largely cancels), and n is
Gaussian with variance 2 q (I_drop + I_thr) B (shot) + i_n^2 B (thermal/TIA input noise). The result is clipped
to +-range and quantized to the readout bits. Every noise standard deviation scales as 1/sqrt(t).

Power meter: P_read = P * 10^(e(P)/10) + N(0, (noise_w)^2 t_ref / t), with e(P) a fixed per-meter smooth
nonlinearity within +-linearity_db (a sinusoid in dBm with random phase), then quantized to readout_bits over
[0, range top]; readings above the top are clipped and flagged as over-range.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from types import ModuleType

import numpy as np
from labctl.sim.chip_spec import DetectorSpec, PowerMeterSpec

__all__ = [
    "ELEMENTARY_CHARGE_C",
    "MeterReading",
    "auto_range_dbm",
    "bandwidth_hz",
    "detector_noise_sigma_a",
    "meter_model",
    "meter_model_flat",
    "meter_reading",
    "quantize_signed",
    "rin_sigma",
]

ELEMENTARY_CHARGE_C = 1.602176634e-19


def bandwidth_hz(averaging_time_s: float) -> float:
    """Noise bandwidth of a boxcar average of length t: 1/(2 t)."""
    if not (math.isfinite(averaging_time_s) and averaging_time_s > 0):
        raise ValueError(f"averaging_time_s must be finite and > 0, got {averaging_time_s!r}")
    return 0.5 / averaging_time_s


def rin_sigma(rin_db_per_hz: float, averaging_time_s: float) -> float:
    """Relative power noise rms of one averaged laser reading."""
    return math.sqrt(10 ** (rin_db_per_hz / 10) * bandwidth_hz(averaging_time_s))


def detector_noise_sigma_a(
    current_drop_a: np.ndarray, current_thr_a: np.ndarray, averaging_time_s: float, spec: DetectorSpec
) -> np.ndarray:
    """Shot + thermal noise rms of the balanced output, A."""
    b = bandwidth_hz(averaging_time_s)
    shot = 2 * ELEMENTARY_CHARGE_C * (np.abs(current_drop_a) + np.abs(current_thr_a)) * b
    return np.sqrt(shot + spec.input_noise_a_per_rthz**2 * b)


def quantize_signed(values: np.ndarray, bits: int, full_scale: float) -> np.ndarray:
    """Clip to [-full_scale, full_scale] and round to 2^bits levels across that span."""
    lsb = 2 * full_scale / 2**bits
    return np.round(np.clip(values, -full_scale, full_scale) / lsb) * lsb


def auto_range_dbm(power_w: np.ndarray, ranges_dbm: tuple[float, ...] | list[float], margin_db: float) -> np.ndarray:
    """Auto range as a power meter picks it: the most sensitive range whose top holds the power with the margin
    to spare (the top range when none does), elementwise."""
    r = np.sort(np.asarray(ranges_dbm, dtype=float))
    tops = 1e-3 * 10 ** (r / 10)
    needed = np.asarray(power_w, dtype=float) * 10 ** (margin_db / 10)
    return r[np.minimum(np.searchsorted(tops, needed, side="left"), r.size - 1)]


@dataclass(frozen=True)
class MeterReading:
    """Power meter result: reading in W and whether the true power exceeded the range top."""

    power_w: np.ndarray
    over_range: np.ndarray


def meter_reading(
    power_w: np.ndarray,
    averaging_time_s: float,
    range_dbm: float | np.ndarray,
    nonlinearity_db: np.ndarray,
    nonlinearity_phase: np.ndarray,
    spec: PowerMeterSpec,
    rng: np.random.Generator | None,
) -> MeterReading:
    """Apply one meter model per element (nonlinearity arrays broadcast against power_w); rng None = noise-free."""
    r = np.asarray(range_dbm, dtype=float)
    known = np.isin(r, spec.ranges_dbm)
    if not np.all(known):
        raise ValueError(f"range_dbm must be one of {spec.ranges_dbm}, got {r[~known].flat[0]!r}")
    p = np.asarray(power_w, dtype=float)
    bandwidth_hz(averaging_time_s)

    noise: np.ndarray | float = 0.0
    if rng is not None and spec.noise_w > 0:
        noise = rng.standard_normal(p.shape)
        noise *= spec.noise_w * math.sqrt(spec.noise_reference_time_s / averaging_time_s)
    top_w = 1e-3 * np.exp(r * (math.log(10) / 10)) if r.ndim else 1e-3 * 10 ** (float(r) / 10)
    return meter_model(p, nonlinearity_db, nonlinearity_phase, noise, top_w, spec)


def meter_model(power_w: np.ndarray, nonlinearity_db: np.ndarray, nonlinearity_phase: np.ndarray,
                noise_w: np.ndarray | float, top_w: np.ndarray | float, spec: PowerMeterSpec) -> MeterReading:
    """The meter arithmetic (nonlinearity, additive noise already scaled, range clip and readout steps),
    elementwise with broadcasting."""
    from labctl.sim.meter_kernel import (  # numba: imported on first use
        arg_constants,
        meter_quantize_ufunc,
        meter_raw_ufunc,
    )

    k_arg, c_arg = arg_constants(spec.nonlinearity_period_db)
    raw = meter_raw_ufunc(power_w, np.asarray(nonlinearity_db, dtype=float),
                          np.asarray(nonlinearity_phase, dtype=float), noise_w, k_arg, c_arg)
    over = raw > top_w
    reading = meter_quantize_ufunc(raw, top_w, np.divide(top_w, 2**spec.readout_bits))
    return MeterReading(power_w=reading, over_range=over)


@functools.cache
def _meter_kernel() -> ModuleType:
    """``labctl.sim.meter_kernel`` (numba), imported on first use (an import statement in the reading itself costs
    more than the rest of its Python)."""
    from labctl.sim import meter_kernel

    return meter_kernel


def meter_model_flat(power_w: np.ndarray, nonlinearity_db: np.ndarray, nonlinearity_phase: np.ndarray,
                     noise_w: np.ndarray, top_w: np.ndarray, spec: PowerMeterSpec) -> MeterReading:
    """:func:`meter_model` for flat float64 arrays of one length (an instrument's readings): the same arithmetic,
    element by element, in one compiled call."""
    compiled = _meter_kernel()
    k_arg, c_arg = compiled.arg_constants(spec.nonlinearity_period_db)
    reading = np.empty(power_w.size)
    over = np.empty(power_w.size, dtype=bool)
    compiled.meter_readings_flat(power_w, nonlinearity_db, nonlinearity_phase, noise_w, top_w, float(2**spec.readout_bits),
                        k_arg, c_arg, reading, over)
    return MeterReading(power_w=reading, over_range=over)
