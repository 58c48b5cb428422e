"""``--dry-check``: what a plan would do, counted, and its commands checked against the bench's limits, without
touching hardware (the bench file is read, nothing connects).

Where the commands are known in advance (verification targets, drift references, the photonic DFA heater
configurations: all solved from the calibration file), every heater vector is checked with the bench's own limit
rule (:class:`labctl.drivers.limits.HeaterLimits`, ring order) and every laser power against the laser limit.
Where they depend on measurements (calibration), the counts are estimates from the parameters and the limits that
the safety layer will enforce are listed; such commands are checked as they are sent.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from labctl.drivers.errors import LimitError
from labctl.drivers.limits import HeaterLimits, ring_namer


def bench_limits(ctx: Any) -> tuple[Any, HeaterLimits]:
    """The bench file's configuration and its heater limits in ring order (row-major bank, ring)."""
    from labctl.bench.config import load_bench

    config, _ = load_bench(ctx.bench_path)
    w, lim = config.wiring, config.limits
    n = w.banks * w.rings
    voltage = w.heaters.mode == "voltage"
    drive = lim.heater_max_voltage_v if voltage else lim.heater_max_current_a
    per = np.full(n, float(drive)) if not isinstance(drive, list) else np.asarray(drive, dtype=float)
    power = lim.heater_max_power_w
    per_p = np.full(n, float(power)) if not isinstance(power, list) else np.asarray(power, dtype=float)
    limits = HeaterLimits(mode=w.heaters.mode, max_drive=per, max_power_w=per_p,
                          total_power_w=lim.total_heater_power_w,
                          worst_resistance_ohm=lim.heater_min_resistance_ohm if voltage
                          else lim.heater_max_resistance_ohm, ramp_step=lim.heater_ramp_step,
                          name=ring_namer(w.rings))
    return config, limits


def limits_lines(config: Any, limits: HeaterLimits) -> list[str]:
    unit = limits.unit
    return [f"limits: heater drive <= {float(np.max(limits.max_drive)):g} {unit}, <= "
            f"{float(np.max(limits.max_power_w)) * 1e3:g} mW per heater (worst case), total <= "
            f"{limits.total_power_w * 1e3:g} mW; laser power <= {config.limits.laser_max_power_w * 1e3:g} mW"]


def check_heater_rows(limits: HeaterLimits, drives: np.ndarray, what: str) -> list[str]:
    """Every row checked with the bench's rule; the violations, one line each (empty: all within limits)."""
    rows = np.atleast_2d(np.asarray(drives, dtype=float))
    out = []
    for i, row in enumerate(rows):
        try:
            limits.check(row)
        except LimitError as exc:
            out.append(f"{what} {i}: {exc}")
            if len(out) >= 5:
                out.append(f"... (first 5 of the {what}s shown)")
                break
    return out


def check_laser_powers(config: Any, powers_w: np.ndarray, what: str) -> list[str]:
    p = np.asarray(powers_w, dtype=float)
    limit = config.limits.laser_max_power_w
    bad = ~np.isfinite(p) | (p < 0) | (p > limit)
    if not bad.any():
        return []
    return [f"{what}: laser power {float(p[bad].max()) * 1e3:.4g} mW outside 0..{limit * 1e3:g} mW"]


def _heater_scans(n_banks: int, n_rings: int, spectra_logged: bool = True) -> int:
    """Scans ``characterize_heaters`` plans with its default levels (``stepped_levels`` where the spectra are
    balanced readings), counted by the function it uses itself."""
    import inspect

    from labctl.calibration.thermal import characterize_heaters, heater_scan_count

    defaults = inspect.signature(characterize_heaters).parameters
    levels = defaults["levels" if spectra_logged else "stepped_levels"].default
    return heater_scan_count(n_banks, n_rings, levels)


def map_scan_estimate(wiring: Any) -> tuple[float, int]:
    """(step, m; points) of the resonance map's scan on this wiring, from the calibration's own defaults."""
    from labctl.bench.bench import logs_spectra
    from labctl.calibration.measure import scan_point_count
    from labctl.calibration.resonances import MAP_MARGIN_M, MAP_RED_MARGIN_M, band_m, map_step_m

    step = map_step_m(logs_spectra(wiring))
    start, stop = band_m(wiring, MAP_MARGIN_M, MAP_RED_MARGIN_M)
    return step, scan_point_count(start, stop, step)


def calibration_estimate(ctx: Any, *, n_configs: int, n_levels: int, n_drift_references: int) -> dict[str, Any]:
    """Operation counts of a calibration (estimates: the commands depend on what is measured)."""
    config, limits = bench_limits(ctx)
    w = config.wiring
    n_ch = len(w.lasers)
    from labctl.bench.bench import logs_spectra

    step_m, scan_points = map_scan_estimate(w)
    sweep_points = n_ch * n_configs * n_levels
    counts = {f"resonance scan points ({step_m * 1e12:g} pm steps)": scan_points,
              "heater characterization scans": _heater_scans(w.banks, w.rings, logs_spectra(w)),
              "weight sweep points (heater write + readout of every bank)": sweep_points,
              "drift reference settings": n_drift_references}
    lines = [f"calibration of {config.bench.name} ({w.banks} banks x {w.rings} rings, {n_ch} channels):"]
    lines += [f"  {k}: {v}" for k, v in counts.items()]
    lines += limits_lines(config, limits)
    lines.append("commands depend on the measurements: each heater vector is checked against these limits by the "
                 "safety layer before it is sent (weight sweeps: all vectors before the first write)")
    return {"counts": counts, "violations": [], "lines": lines}
