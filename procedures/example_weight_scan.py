"""An example of a user-written procedure: scan one ring's weight across its calibrated range and measure every
ring at each step (how well one weight is set, and how much it disturbs the others).

A plan is a generator: it yields what it does (steps, data rows, results) and the run engine does the rest:
parameter checks, the run folder and its records, the bench and its safe state, progress, Ctrl-C. Copy this file,
change the body, register it under a new name, and add its module to ``labctl.cli.plans.PLAN_MODULES`` for a
command (or run it from Python: ``RunEngine().run(WEIGHT_SCAN, {"calibration": "cal.json"})``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from labctl.runs import plan as P


def weight_scan(ctx: Any, *, calibration: str, bank: int, ring: int, points: int) -> Any:
    from labctl.calibration.calibrate import Calibration

    hw = ctx.session                                   # the bench session: safety-wrapped, limits enforced
    cal = Calibration.load(calibration, hw)            # refuses a calibration of another chip or wiring
    if not (0 <= bank < hw.n_banks and 0 <= ring < hw.n_rings):
        raise P.ParamError(f"--bank/--ring: ({bank}, {ring}) is not a ring of this {hw.n_banks}x{hw.n_rings} chip")
    w_min, w_max = cal.achievable_range
    others = (w_min + w_max) / 2                       # every other ring held mid-range
    yield P.Step("weight scan", total=points, unit="point")
    errors = []
    for w in np.linspace(w_min[bank, ring], w_max[bank, ring], points):
        target = others.copy()
        target[bank, ring] = w
        cal.set_weights(hw, target)                    # solve, check limits, write through the session
        measured = cal.measure_weights(hw)
        errors.append(measured - target)
        yield P.Data("scan", {"target": target, "measured": measured, "weight": w})   # appended to data.h5
        yield P.Advance()
    err = np.array(errors)
    return {"procedure": "weight-scan", "ring": [bank, ring],
            "rmse_scanned_ring": float(np.sqrt(np.mean(err[:, bank, ring] ** 2))),
            "rmse_other_rings": float(np.sqrt(np.mean(np.delete(err.reshape(points, -1),
                                                                bank * hw.n_rings + ring, axis=1) ** 2)))}


def summarize(report: dict[str, Any]) -> str:
    b, r = report["ring"]
    return (f"weight scan of bank {b} ring {r}: rms error of the scanned ring {report['rmse_scanned_ring']:.4f}, "
            f"of the others {report['rmse_other_rings']:.4f} (normalised weight units)")


def _preflight(ctx: Any) -> None:
    from labctl.procedures.common import calibration_file

    from labctl.bench.config import load_bench

    ctx.values["calibration"] = str(calibration_file(ctx.values["calibration"], ctx.bench_path))
    wiring = load_bench(ctx.bench_path)[0].wiring
    for name, n in (("bank", wiring.banks), ("ring", wiring.rings)):
        if ctx.values[name] >= n:
            raise P.ParamError(f"--{name}: {ctx.values[name]} is not one of the bench's {name}s 0..{n - 1}")


WEIGHT_SCAN = P.register(P.Plan(
    name="weight-scan", help="example user procedure: scan one ring's weight, measure every ring",
    params=(P.Param("calibration", str, None, "calibration file or calibrate run folder", metavar="FILE"),
            P.Param("bank", int, 0, "bank of the scanned ring", min=0, max=1023),
            P.Param("ring", int, 0, "ring within the bank", min=0, max=1023),
            P.Param("points", int, 11, "weights from the ring's lowest to its highest", min=2, max=1000)),
    body=weight_scan, preflight=_preflight, summarize=summarize))
