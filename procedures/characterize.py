"""Procedure: heater characterization through the instruments: a resonance map, then every heater's effect on every
ring (efficiency, self-heating, thermal crosstalk), the second step of a calibration on its own.

The record holds the resonance spectra, every heater step (``heater_steps/drive``: V or A per heater,
``shift_m``: every ring's measured resonance shift, drift removed) and the fitted model (``models/...``: the
crosstalk matrix K[i, j], shift of ring i per unit heat of heater j).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from labctl.runs import plan as P


def _dry_check(ctx: Any) -> dict[str, Any]:
    from labctl.bench.bench import logs_spectra
    from labctl.procedures.dry_checks import _heater_scans, bench_limits, limits_lines

    config, limits = bench_limits(ctx)
    scans = _heater_scans(config.wiring.banks, config.wiring.rings, logs_spectra(config.wiring))
    lines = [f"a resonance scan, then {scans} heater scans (through ports around every ring)",
             *limits_lines(config, limits),
             f"heater drives stay below {ctx.values['drive_margin']:g} of the limits; each vector is checked by the "
             "safety layer before it is sent (the drives follow from the measured efficiencies)"]
    return {"counts": {"heater_scans": scans}, "violations": [], "lines": lines}


def characterize_body(ctx: Any, *, target_shift_nm: float, drive_margin: float) -> Any:
    from labctl.calibration.resonances import measure_resonance_map
    from labctl.calibration.thermal import characterize_heaters

    hw = ctx.session
    for las in hw.lasers:
        if las.get_output():
            las.set_output(False)
    t0, n0 = hw.elapsed_s(), hw.transaction_count()
    yield P.Step("resonance map")
    rmap = measure_resonance_map(hw)
    yield P.Step("heater characterization")
    thermal = characterize_heaters(hw, rmap, target_shift_m=target_shift_nm * 1e-9, drive_margin=drive_margin)
    unit = thermal.heat_unit
    yield P.Array("models/center_m", rmap.center_m, {"unit": "m", "meaning": "ring resonance at zero drive"})
    yield P.Array("models/efficiency_m_per_unit", thermal.efficiency_m_per_unit,
                  {"unit": f"m/{unit}", "meaning": "own-ring shift per unit heat"})
    yield P.Array("models/crosstalk", thermal.crosstalk,
                  {"unit": f"m/{unit}", "meaning": "K[i, j]: shift of ring i per unit heat on heater j"})
    yield P.Array("models/nonlinearity", thermal.nonlinearity, {"unit": f"1/{unit}", "meaning": "self-heating"})
    k = np.asarray(thermal.crosstalk, dtype=float)
    own = np.diag(k)
    off = k - np.diag(own)
    return {"procedure": "characterize", "bench": ctx.bench.config.bench.name, "chip_id": hw.chip_id,
            "heat_unit": unit, "efficiency_nm_per_unit": (own * 1e9).tolist(),
            "crosstalk_max_fraction": float(np.max(np.abs(off) / np.abs(own)[None, :])),
            "fit_rmse_pm": (np.asarray(thermal.fit_rmse_m) * 1e12).tolist(), "stats": thermal.stats,
            "bench_time_s": hw.elapsed_s() - t0, "transactions": hw.transaction_count() - n0}


def summarize(report: dict[str, Any]) -> str:
    eff = np.asarray(report["efficiency_nm_per_unit"])
    return "\n".join([
        f"heater characterization of {report['bench']} (chip {report['chip_id']!r}): "
        f"{report['bench_time_s']:.1f} s of bench time, {report['transactions']} transactions",
        f"  efficiency (own-ring shift per unit heat, nm/{report['heat_unit']}): median {np.median(eff):.4g}, "
        f"range {eff.min():.4g}..{eff.max():.4g}",
        f"  largest crosstalk: {100 * report['crosstalk_max_fraction']:.1f} % of the heated ring's own shift",
        f"  fit rms residual: median {np.median(report['fit_rmse_pm']):.2f} pm"])


CHARACTERIZE = P.register(P.Plan(
    name="characterize", help="heater characterization: efficiency, self-heating and thermal crosstalk of every heater",
    description="A resonance map, then groups of heaters stepped through levels while the through spectra around "
                "every ring are scanned; the thermal model (efficiency, nonlinearity, crosstalk matrix) is fitted.",
    params=(P.Param("target_shift_nm", float, 2.0, "own-ring shift of the highest level", unit="nm", min=0.1,
                    max=10.0),
            P.Param("drive_margin", float, 0.8, "fraction of the heater limits the steps may use", min=0.05,
                    max=1.0)),
    body=characterize_body, dry_check=_dry_check, summarize=summarize))
