"""Target weights -> heater drive, jointly for every ring, with limits checked before anything is written.

Chain: target W (B, R) -> detunings (WeightModel.solve: per-ring line shape with the neighbours' terms, fixed
point) -> resonance positions lambda_c - delta -> required shifts from the zero-drive resonances (must be >= 0:
heaters only heat) -> heat h >= 0 solving K h = shift for ALL rings at once (thermal crosstalk couples them,
within and across banks) -> drive via ThermalModel.drive_for_heat -> limit check (per-ring drive, per-ring and
total power) raising LimitError that names the ring and the limit. Targets outside the achievable range raise
ValueError; nothing is clipped. :func:`drives_for_detunings` repeats the detuning -> drive half for a batch of
configurations with one LU.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from labctl.calibration.weights import WeightModel, solve_heat
from labctl.drivers.errors import LimitError

if TYPE_CHECKING:
    from labctl.drivers.interfaces import BenchSession
    from labctl.drivers.limits import HeaterLimits
    from labctl.calibration.resonances import ResonanceMap
    from labctl.calibration.thermal import ThermalModel

log = logging.getLogger(__name__)

#: Shifts this far below zero are treated as zero (numerical noise of the inverse), beyond it the ring would need
#: cooling and the request is refused.
SHIFT_TOLERANCE_M = 0.05e-12


@dataclass
class Inversion:
    """One solved target: every intermediate, for logging and tests."""

    target: np.ndarray               # (B, R)
    delta_m: np.ndarray              # (B, R) detuning lambda_c - lambda_res
    shift_m: np.ndarray              # (B, R) required shift from the zero-drive resonance
    heat: np.ndarray                 # (N,) ThermalModel heat units
    drive: np.ndarray                # (N,) V or A, ring order


def solve_drive(target: np.ndarray, weights: WeightModel, rmap: ResonanceMap, thermal: ThermalModel,
                limits: HeaterLimits | None = None, *, strict: bool = True,
                common_shift_m: float | np.ndarray = 0.0) -> Inversion:
    """Drive for target weights (see the module docstring); raises ValueError / LimitError, never clips.

    ``common_shift_m``: how far the resonances have moved relative to their lasers (red > 0) since calibration,
    scalar or (B, R), e.g. estimated by a drift check; the heaters then supply that much less shift.
    """
    w = np.asarray(target, dtype=float)
    return drive_for_detuning(w, weights.solve(w, strict=strict), weights, rmap, thermal, limits,
                              common_shift_m=common_shift_m)


def drive_for_detuning(w: np.ndarray, delta: np.ndarray, weights: WeightModel, rmap: ResonanceMap,
                       thermal: ThermalModel, limits: HeaterLimits | None = None, *,
                       common_shift_m: float | np.ndarray = 0.0) -> Inversion:
    """The second half of :func:`solve_drive`: detunings (B, R) -> drive. Cheap; a user that keeps fixed targets
    (photonic DFA's tiles) solves the detunings once and repeats only this when the resonances drift."""
    nr = weights.shape[1]
    res = weights.ring_wavelength_m - delta
    shift = res - np.asarray(rmap.center_m, dtype=float) - np.asarray(common_shift_m, dtype=float)
    need_cool = shift < -SHIFT_TOLERANCE_M
    if need_cool.any():
        b, r = (int(v) for v in np.argwhere(need_cool)[0])
        raise ValueError(f"bank {b} ring {r}: target needs the resonance {-shift[b, r] * 1e12:.2f} pm blue of its "
                         "zero-drive position (heaters can only red-shift)")
    shift = np.maximum(shift, 0.0)
    heat = solve_heat(np.asarray(thermal.crosstalk, dtype=float), shift.reshape(-1),
                      names=lambda i: f"bank {i // nr} ring {i % nr}")
    try:
        drive = np.asarray(thermal.drive_for_heat(heat), dtype=float)
    except ValueError as exc:
        who = ""
        if limits is not None:   # name the ring: the first whose heat exceeds what its drive limit gives
            try:
                over = heat > np.asarray(thermal.heat(limits.max_drive), dtype=float)
                if over.any():
                    i = int(np.argmax(over))
                    unit = "V" if limits.mode == "voltage" else "A"
                    who = (f"{limits.name(i)}: needs heat {heat[i]:.4g}, beyond its drive limit "
                           f"{limits.max_drive[i]:.4g} {unit}; ")
            except ValueError:
                pass
        raise LimitError(f"{who}heat not reachable by the heaters: {exc}") from exc
    if limits is not None:
        limits.check(drive)
    return Inversion(target=w, delta_m=delta, shift_m=shift, heat=heat, drive=drive)


#: A batch row whose exact solution has a heat below this fraction of the row's largest heat is re-solved alone by
#: :func:`solve_heat` (its non-negativity step, its errors): the one-LU batch solve and a single solve differ in
#: the last bits, so only rows clear of zero can take the batch result without changing that decision.
BATCH_NEAR_ZERO_HEAT = 1e-9


def drives_for_detunings(w: np.ndarray, delta: np.ndarray, weights: WeightModel, rmap: ResonanceMap,
                         thermal: ThermalModel, limits: HeaterLimits | None = None, *,
                         common_shift_m: float | np.ndarray = 0.0) -> np.ndarray:
    """:func:`drive_for_detuning` for T configurations at once: targets and detunings (T, B, R) -> drives (T, N).

    Photonic DFA re-solves all its fixed configurations after every drift check; one LU of the crosstalk for all
    of them (rows near a non-negativity fix go through :func:`solve_heat` alone) replaces a Python loop of
    single solves. Same drives as that loop to rounding (one LU, many right-hand sides: ~1e-15 relative) and the
    same errors: when any configuration fails, they are re-solved one by one and the first failure raises as the
    single version does (ValueError / LimitError), its message prefixed with ``configuration t: ``.
    ``common_shift_m``: scalar or (B, R) as for the single version, or (T, B, R) (one per configuration).
    """
    w = np.asarray(w, dtype=float)
    d = np.asarray(delta, dtype=float)
    nb, nr = weights.shape
    if d.ndim != 3 or d.shape[1:] != (nb, nr) or w.shape != d.shape:
        raise ValueError(f"targets and detunings must both have shape (T, {nb}, {nr}), got {w.shape} and {d.shape}")
    cs = np.asarray(common_shift_m, dtype=float)
    try:
        per_cfg = np.broadcast_to(cs, d.shape)
    except ValueError:
        raise ValueError(f"common_shift_m must be a scalar, ({nb}, {nr}) or (T, {nb}, {nr}), got {cs.shape}"
                         ) from None
    if cs.ndim == 3:
        cs = per_cfg
    try:
        return _drives_batch(d, weights, rmap, thermal, limits, cs)
    except ValueError as exc:        # LimitError too: find the first failing configuration the single way
        log.debug("batch inversion of %d configurations failed (%s); locating the configuration", len(d), exc)
    out = np.empty((d.shape[0], nb * nr))
    for t in range(d.shape[0]):      # error path only
        try:
            out[t] = drive_for_detuning(w[t], d[t], weights, rmap, thermal, limits,
                                        common_shift_m=cs[t] if cs.ndim == 3 else cs).drive
        except LimitError as exc:
            raise LimitError(f"configuration {t}: {exc}") from exc
        except ValueError as exc:
            raise ValueError(f"configuration {t}: {exc}") from exc
    log.warning("batch inversion refused a configuration that the single solve accepts (floating-point boundary); "
                "using the single solves")
    return out


def _drives_batch(delta: np.ndarray, weights: WeightModel, rmap: ResonanceMap, thermal: ThermalModel,
                  limits: HeaterLimits | None, common_shift_m: np.ndarray) -> np.ndarray:
    """The vectorized steps of :func:`drive_for_detuning`; raises ValueError (LimitError) without locating it."""
    n_cfg, nb, nr = delta.shape
    shift = weights.ring_wavelength_m - delta - np.asarray(rmap.center_m, dtype=float) - common_shift_m
    if (shift < -SHIFT_TOLERANCE_M).any():
        raise ValueError("a target needs cooling")
    s = np.maximum(shift, 0.0).reshape(n_cfg, nb * nr)
    k = np.asarray(thermal.crosstalk, dtype=float)
    heat = np.linalg.solve(k, s.T).T if n_cfg else np.empty_like(s)      # one LU, every configuration
    near = (heat < BATCH_NEAR_ZERO_HEAT * np.max(np.abs(heat), axis=1, keepdims=True)).any(axis=1)
    names = lambda i: f"bank {i // nr} ring {i % nr}"
    for m in np.nonzero(near)[0]:    # rare: rows that may need solve_heat's non-negativity fix
        heat[m] = solve_heat(k, s[m], names=names)
    drive = np.asarray(thermal.drive_for_heat(heat), dtype=float)
    if limits is not None:
        limits.check(drive)
    return drive


def apply_drive(hw: BenchSession, drive: np.ndarray, limits: HeaterLimits | None = None) -> None:
    """Check (ring-named errors) and write one drive vector through the safety-wrapped heaters, then settle."""
    (limits or hw.limits).check(drive)
    hw.set_ring_drive(drive)
