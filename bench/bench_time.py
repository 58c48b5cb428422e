"""Bench time of photonic DFA through the instruments, per operation kind, against its two lower bounds.

For each network (``mnist5k``: 784-800-800-10, the README's run; ``dry-run``: the dry run's digits 64-64-10), one
mini-batch of 64 errors is computed on the chip through the full instrument stack of an emulated bench
(``BenchMatVec``: every heater line, laser command and meter query goes through the drivers and the simulated
instruments, the virtual clock charging the reference timing table), and the same batch is projected by the fast
path (``FastMatVec``: unit costs probed through the same instrument loop). Printed side by side, per operation
kind (configure: heater lines + settle; encode: laser commands + their settling; read: meter readings; batch:
once per batch), in seconds of bench time per mini-batch:

* stack: measured on the virtual clock;
* fast: the fast path's projection of the same batch;
* bound: the instrument-bound minimum (docs/bench-time.md §2: the documented commands with every overlap the
  instruments allow);
* physical: the physical minimum (docs/bench-time.md §1: settle times and averaging only).

Then the ratios stack/physical, stack/bound and bound/physical, and the projected bench time of an epoch and of
a 10-epoch run. The calibration (made through the instruments unless ``--calibration`` is given) is reported with
its projected bench time.

    python bench/bench_time.py [--bench default|current|FILE] [--networks mnist5k dry-run] [--calibration FILE]
                               [--json FILE] [--refine-iterations N] [--reference-every N] [--refine-recenter]
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from labctl.bench.bench import Bench
from labctl.bench.session import KINDS
from labctl.calibration.calibrate import Calibration
from labctl.dfa.bench_time import physical_by_kind_s
from labctl.dfa.feedback import feedback_matrices
from labctl.dfa.photonic import BenchMatVec, PhotonicMatVec, PhotonicOptions
from labctl.dfa.photonic_fast import FastMatVec

#: network -> (output size, hidden sizes, training samples per epoch); batch size 64 as in every run
NETWORKS: dict[str, tuple[int, tuple[int, ...], int]] = {
    "mnist5k": (10, (800, 800), 4000),
    "dry-run": (10, (64,), 640),
}
BATCH = 64


def _batch(engine: PhotonicMatVec, n_out: int, seed: int) -> dict[str, Any]:
    """One mini-batch after the session's first drift check (as a run's drift step makes it: the lasers were
    tuned anew and the chip's temperature moved since the calibration)."""
    e = np.random.default_rng(seed).normal(size=(BATCH, n_out)) * 0.05
    engine.start()
    drift = engine.check_drift() if engine.drift_check_due() else None
    refine = engine.refine_configurations() if engine._refine_due else None
    engine.pop_counters()                  # the set-up (unit-cost probe, drift check, refinement) is not the batch's
    wall, cpu = time.perf_counter(), time.process_time()
    engine.matvec(0, e)
    counters = engine.pop_counters()
    counters["wall_s"] = time.perf_counter() - wall
    counters["cpu_s"] = time.process_time() - cpu  # this process's CPU: the honest figure on a shared machine
    counters["drift_check"] = drift
    counters["refinement"] = refine
    return counters


def measure(bench_path: str | None, network: str, cal_path: Path, refine_iterations: int = 3,
            reference_every: int = 0, refine_recenter: bool = False) -> dict[str, Any]:
    n_out, hidden, n_train = NETWORKS[network]
    mats = feedback_matrices(n_out, list(hidden), seed=0, dtype=np.float64)
    with Bench.open(bench_path) as bench:
        hw = bench.session()
        cal = Calibration.load(cal_path, hw)
        options = PhotonicOptions(refine_iterations=refine_iterations, reference_every=reference_every,
                                  refine_recenter=refine_recenter)
        stack_engine = BenchMatVec(cal, hw, options)
        stack_engine.program(mats)
        stack = _batch(stack_engine, n_out, seed=1)
        fast_engine = FastMatVec(cal, hw, options)
        fast_engine.program(mats)
        fast = _batch(fast_engine, n_out, seed=1)
        n_cfg, nb = stack_engine.drives.shape[0], stack_engine.plan.n_blocks  # type: ignore[union-attr]
        physical = physical_by_kind_s(n_cfg, nb, BATCH, settle_s=hw.settle_time_s,
                                      laser_settle_s=options.laser_settle_s,
                                      averaging_s=stack_engine.averaging_time_s)
        bound = stack_engine.instrument_bound()
        heater_lines = stack_engine._heater_lines
    return {"network": network, "hidden": hidden, "batches_per_epoch": n_train / BATCH, "configurations": n_cfg,
            "stack": stack, "fast": fast, "physical_by_kind_s": physical, "heater_lines": heater_lines,
            "bound_costs": None if bound is None else bound.__dict__}


def report(result: dict[str, Any]) -> str:
    stack, fast = result["stack"], result["fast"]
    bound = stack.get("bound_by_kind_s") or {}
    physical = result["physical_by_kind_s"]
    lines = [f"{result['network']}: hidden {'-'.join(map(str, result['hidden']))}, {result['configurations']} heater "
             f"configurations x {BATCH + 1} encodings per mini-batch of {BATCH}; {result['heater_lines']} heater "
             f"lines per configuration",
             f"  {'bench time per mini-batch, s':<30}{'stack':>10}{'fast':>10}{'bound':>10}{'physical':>10}"]
    for kind in KINDS:
        lines.append(f"  {kind:<30}{stack['time_by_kind_s'].get(kind, 0.0):>10.3f}"
                     f"{fast['time_by_kind_s'].get(kind, 0.0):>10.3f}{bound.get(kind, 0.0):>10.3f}"
                     f"{physical.get(kind, 0.0):>10.3f}")
    total_bound = stack.get("instrument_bound_s") or math.nan
    lines.append(f"  {'total':<30}{stack['projected_time_s']:>10.3f}{fast['projected_time_s']:>10.3f}"
                 f"{total_bound:>10.3f}{stack['minimum_time_s']:>10.3f}")
    lines.append(f"  stack / physical minimum x{stack['ratio_to_minimum']:.2f}, stack / instrument bound "
                 f"x{stack['ratio_to_instrument_bound']:.3f}, bound / physical x{stack['bound_minimum_ratio']:.2f}; "
                 f"fast / stack x{fast['projected_time_s'] / stack['projected_time_s']:.4f}")
    epoch_s = stack["projected_time_s"] * result["batches_per_epoch"]
    lines.append(f"  per epoch ({result['batches_per_epoch']:g} mini-batches, drift checks not included): "
                 f"{epoch_s / 3600:.2f} h projected, 10 epochs {10 * epoch_s / 3600:.1f} h")
    batches = result["batches_per_epoch"]
    lines.append(f"  stack emulator per mini-batch: {stack['wall_s']:.1f} s wall, {stack['cpu_s']:.1f} s CPU; per epoch "
                 f"{stack['wall_s'] * batches / 60:.1f} min wall, {stack['cpu_s'] * batches / 60:.1f} min CPU")
    lines.append(f"  transactions per mini-batch {stack['transactions']:.0f} "
                 f"({', '.join(f'{k} {v:.0f}' for k, v in stack['transactions_by_kind'].items())}); "
                 f"B e minus the exact product, std in units of max|e|: stack "
                 f"{stack.get('product_error_std', math.nan):.4f}, fast {fast.get('product_error_std', math.nan):.4f}")
    refine = stack.get("refinement")
    if refine:
        lines.append(f"  refinement of the configurations through the instruments (once per calibration, not in the "
                     f"above): {refine['time_s']:.1f} s bench time, weight rms "
                     + " -> ".join(f"{h:.4f}" for h in refine["rmse_history"]))
    check = stack.get("drift_check")
    if check:
        lines.append(f"  the session's first drift check through the instruments: {check['time_s']:.1f} s bench time, "
                     f"{check['transactions']} transactions")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bench", default=None, help="embedded bench name or bench file (default: the default bench)")
    parser.add_argument("--networks", nargs="+", default=list(NETWORKS), choices=list(NETWORKS))
    parser.add_argument("--calibration", type=Path, default=None, help="calibration of this bench (default: make one)")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    parser.add_argument("--refine-recenter", action="store_true",
                        help="recentre before every refinement pass after the first, and after the last")
    parser.add_argument("--refine-iterations", type=int, default=PhotonicOptions().refine_iterations,
                        help="closed-loop corrections of the configurations (0: the weight model alone)")
    parser.add_argument("--reference-every", type=int, default=0,
                        help="read the reference encoding again after every N samples (sample order; 0: once)")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    from labctl.cli.common import bench_path
    from labctl.procedures.calibrate import run_calibration

    args.bench = None if args.bench is None else str(bench_path(args.bench))

    out: dict[str, Any] = {"bench": Path(args.bench).stem if args.bench else "default", "networks": []}
    with tempfile.TemporaryDirectory() as tmp:
        cal_path = args.calibration
        if cal_path is None:
            wall = time.perf_counter()
            cal = run_calibration(args.bench, Path(tmp) / "calibration.json")
            cal_path = Path(cal["calibration"])
            out["calibration"] = {"projected_time_s": cal["projected_time_s"], "transactions": cal["transactions"],
                                  "wall_s": time.perf_counter() - wall}
            print(f"calibration of {out['bench']} through the instruments: {cal['projected_time_s']:.1f} s projected "
                  f"bench time, {cal['transactions']} transactions ({out['calibration']['wall_s']:.0f} s wall)")
        for network in args.networks:
            result = measure(args.bench, network, cal_path, args.refine_iterations, args.reference_every,
                             args.refine_recenter)
            out["networks"].append(result)
            print(report(result))
    if args.json is not None:
        args.json.write_text(json.dumps(out, indent=1, default=float))


if __name__ == "__main__":
    main()
