"""Throughput of the simulated bench for the cycle calibration and training repeat most: a bulk heater write
followed by an all-ports read, through the real drivers and the safety layer.

Prints, for each embedded emulated bench: cycles and instrument transactions per second of wall time, and the
projected bench time of one cycle from the emulator's virtual clock (what the same cycle would cost on real
instruments with the reference timing), split by category.

    python bench/bench_cycle.py [--cycles N] [--averaging-time-s T]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from labctl.bench.bench import Bench, lasers_on
from labctl.bench.config import embedded_bench_path, load_bench


def transactions(bench: Bench) -> int:
    seen, total = set(), 0
    for driver in bench.instruments.values():
        transport = driver.transport
        if id(transport) not in seen:
            seen.add(id(transport))
            total += transport.write_count
    return total


def run(name: str, cycles: int, averaging_time_s: float) -> None:
    config, digest = load_bench(embedded_bench_path(name))
    with tempfile.TemporaryDirectory() as locks:
        bench = Bench.connect(config, digest, lock_dir=Path(locks))
        try:
            with bench.guard:
                chip = bench.emulation.chip
                lasers_on(bench, 1e-3)
                bench.readout.configure(float(config.wiring.wavelengths_m[0]), averaging_time_s)
                rng = np.random.default_rng(0)
                top = 4.0 if config.wiring.heaters.mode == "voltage" else 0.003
                drives = rng.uniform(0, top, (cycles, bench.n_banks * bench.n_rings))
                bench.set_ring_drive(drives[0])
                bench.readout.read()
                n0, t_virtual0 = transactions(bench), chip.clock.now_s
                totals0 = chip.clock.totals()
                start = time.perf_counter()
                for drive in drives:
                    bench.set_ring_drive(drive)
                    bench.settle()
                    bench.readout.read()
                wall = time.perf_counter() - start
                n = transactions(bench) - n0
                virtual = chip.clock.now_s - t_virtual0
                per_cat = {k: (v - totals0.get(k, 0.0)) / cycles for k, v in chip.clock.totals().items()}
        finally:
            bench.close()
    print(f"{name:8s} ({config.bench.description})")
    print(f"  cycles/s (wall)            : {cycles / wall:10.1f}   ({cycles} cycles in {wall:.2f} s)")
    print(f"  transactions/s (wall)      : {n / wall:10.1f}   ({n / cycles:.1f} per cycle)")
    print(f"  projected bench time/cycle : {virtual / cycles * 1e3:10.3f} ms   "
          + ", ".join(f"{k} {v * 1e3:.3f} ms" for k, v in sorted(per_cat.items()) if v > 0))
    print(f"  emulator speed-up vs bench : {virtual / wall:10.1f} x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cycles", type=int, default=200)
    parser.add_argument("--averaging-time-s", type=float, default=1e-3)
    args = parser.parse_args()
    for name in ("default", "current"):
        run(name, args.cycles, args.averaging_time_s)


if __name__ == "__main__":
    main()
