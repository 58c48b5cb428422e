"""Drift floor of closed-loop refinement: how far a chip's true weights move during one refinement reading.

Refinement reads every channel (one laser on at a time, about 12 s of bench time for ten channels on the embedded
default bench) and corrects from that reading; a chip that drifts meanwhile has moved on by the time the correction
is applied. This measures, at fixed drives, the rms change of the emulator's true weights from one reading to the
next, and the accuracy in bits that a setting one reading old can at best keep (log2(span / rms)). Ground truth is
used for this figure only. It is the floor of a loop that takes each reading's error as the rings' own; refinement
now separates the common shift of each channel's reading (calibration/refine.py, Drift), which the floor does not
credit.

    python bench/drift_floor.py runs/calibration_report drift5-s0 drift5-s1 drift5-s2 default-s0

CASE names a bench file ``CASE.toml`` and a calibration ``CASE.cal.json`` in the folder (as
bench/calibration_report.py writes them).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

from labctl.bench.bench import Bench
from labctl.calibration.calibrate import Calibration
from labctl.calibration.verify import random_targets


def drift_floor(folder: Path, case: str, settings: int = 6, readings: int = 4, seed: int = 7) -> dict[str, float]:
    """Apply ``settings`` random targets in turn, read every channel ``readings`` times at each, and score how far
    the true weights moved between consecutive readings."""
    with Bench.open(folder / f"{case}.toml", lock_dir=Path(tempfile.mkdtemp())) as bench:
        hw = bench.session()
        cal = Calibration.load(folder / f"{case}.cal.json", hw=hw)
        truth = bench.truth
        if truth is None:
            raise SystemExit(f"{case}: not an emulated bench (the floor needs the emulator's ground truth)")
        w_min, w_max = cal.achievable_range
        moves, times = [], []
        try:
            for target in random_targets(w_min, w_max, settings, seed):
                drive = cal.solve(target, limits=hw.limits).drive
                cal.apply(hw, drive)
                before, t0 = truth.weights_at(drive, str(hw.mode), cal.rmap.channel_of_ring), hw.elapsed_s()
                for _ in range(readings):
                    cal.measure_weights(hw)
                    after, t1 = truth.weights_at(drive, str(hw.mode), cal.rmap.channel_of_ring), hw.elapsed_s()
                    moves.append(after - before)
                    times.append(t1 - t0)
                    before, t0 = after, t1
        finally:
            hw.set_ring_drive(np.zeros(hw.n_banks * hw.n_rings))
    rms = float(np.sqrt(np.mean(np.square(moves))))
    return {"reading_s": float(np.mean(times)), "rms": rms, "span": cal.span, "bits": float(np.log2(cal.span / rms))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path, help="folder with CASE.toml and CASE.cal.json")
    parser.add_argument("cases", nargs="+", help="case names, e.g. drift5-s0 default-s0")
    args = parser.parse_args(argv)
    missing = [str(args.folder / f"{c}{ext}") for c in args.cases for ext in (".toml", ".cal.json")
               if not (args.folder / f"{c}{ext}").is_file()]
    if missing:
        parser.error(f"no such file: {', '.join(missing)} (run bench/calibration_report.py first)")
    for k, case in enumerate(args.cases, 1):
        r = drift_floor(args.folder, case)
        print(f"[{k}/{len(args.cases)}] {case}: one reading {r['reading_s']:.1f} s of bench time; the true weights "
              f"move {r['rms']:.4f} rms (weight units) at a fixed drive from one reading to the next -> a setting "
              f"one reading old keeps at best log2(span {r['span']:.3f} / rms) = {r['bits']:.2f} bits", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
