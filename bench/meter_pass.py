"""The fused power-meter pass of photonic DFA's fast path (``Chip.meter_readings_configs``) on one mini-batch.

Workload: the default chip (4 banks x 10 rings x 10 channels), 401 heater configurations (the 400 tiles of
784-800-800-10's two feedback matrices plus one bias configuration) x 65 laser power settings (64 errors and the
reference) x 4 banks x 2 meter ports = 208,520 meter readings, each with its own RIN, meter noise, nonlinearity,
auto range and quantization. Timed with 1 and 2 chunk threads, interleaved so both see the same machine load;
prints best and median per mini-batch, readings per second and the 2-thread speedup, and checks that both give the
same readings for the same seed.

    python bench/meter_pass.py [--repeat 15] [--seed 0] [--bench current]

``--bench NAME|FILE`` (an emulated bench other than the default) times the same mini-batch through that bench's
fast-path readings instead (``Session.vectorized.read``: on the ``current`` bench the balanced photodiodes and the
2400's compliance, on ``adc`` the TIAs into the DAQ model); the thread comparison is the meter pass's only.
"""

from __future__ import annotations

import argparse
import statistics
import time

import labctl.sim.chip as chip_module
import numpy as np
from labctl.sim import Chip
from labctl.sim.instruments.keysight_models import AUTO_RANGE_MARGIN_DB

N_CONFIGS, N_SETTINGS = 401, 65


def _workload(chip: Chip, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Heater drives within the default limits and offset-encoded laser powers (one column block)."""
    rng = np.random.default_rng(seed)
    drive = rng.uniform(0.0, 2.0, (N_CONFIGS, chip.n_heaters))
    powers = 1e-3 * (0.55 + 0.45 * rng.uniform(-1.0, 1.0, (1, N_SETTINGS, chip.n_channels)))
    powers[:, 0] = 0.55e-3                                           # the reference encoding
    return drive, powers, np.zeros(N_CONFIGS, dtype=np.int64)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--bench", default=None, help="time this emulated bench's fast-path readings instead")
    args = parser.parse_args()
    if args.bench is not None and args.bench != "default":
        _bench_pass(args)
        return

    results: dict[int, np.ndarray] = {}
    times: dict[int, list[float]] = {1: [], 2: []}
    chips = {t: Chip(seed=args.seed) for t in times}
    drive, powers, index = _workload(chips[1], args.seed)
    for threads, chip in chips.items():   # compile / warm up, and the same first draw on both chips
        chip_module.METER_THREADS = threads
        results[threads] = chip.meter_readings_configs(drive, powers, 1e-4, AUTO_RANGE_MARGIN_DB, power_index=index)
    for _ in range(args.repeat):
        for threads, chip in chips.items():
            chip_module.METER_THREADS = threads
            t0 = time.perf_counter()
            chip.meter_readings_configs(drive, powers, 1e-4, AUTO_RANGE_MARGIN_DB, power_index=index)
            times[threads].append(time.perf_counter() - t0)
    readings = N_CONFIGS * N_SETTINGS * chips[1].n_banks * 2
    print(f"one mini-batch: {N_CONFIGS} configurations x {N_SETTINGS} power settings x {chips[1].n_banks} banks x 2 "
          f"ports = {readings} meter readings; {args.repeat} interleaved repeats")
    for threads, ts in times.items():
        best, med = min(ts), statistics.median(ts)
        print(f"  {threads} thread(s): best {1e3 * best:.2f} ms, median {1e3 * med:.2f} ms "
              f"({readings / med / 1e6:.1f} M readings/s at the median)")
    print(f"  speedup of 2 threads (medians): {statistics.median(times[1]) / statistics.median(times[2]):.2f}x")
    same = np.array_equal(results[1], results[2])
    print(f"  same readings with 1 and 2 threads for the same seed: {same}")
    if not same:
        raise SystemExit("readings depend on the thread count")
    for chip in chips.values():
        chip.close()


def _bench_pass(args: argparse.Namespace) -> None:
    """The same mini-batch through another emulated bench's fast-path readings (drives within its heater limits)."""
    from labctl.bench.bench import Bench
    from labctl.cli.common import bench_path

    with Bench.open(bench_path(args.bench)) as bench:
        hw = bench.session()
        if hw.vectorized is None:
            raise SystemExit(f"--bench {args.bench}: not an emulated bench (no fast-path readings)")
        rng = np.random.default_rng(args.seed)
        drive = rng.uniform(0.0, 0.5, (N_CONFIGS, hw.n_banks * hw.n_rings)) * np.asarray(hw.max_drive, dtype=float)
        _, powers, index = _workload(bench.emulation.chip, args.seed)
        averaging = 2e-4
        hw.vectorized.read(drive, powers, averaging, index)            # warm up
        times = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            hw.vectorized.read(drive, powers, averaging, index)
            times.append(time.perf_counter() - t0)
        readings = N_CONFIGS * N_SETTINGS * hw.n_banks
        best, med = min(times), statistics.median(times)
        print(f"{args.bench}: one mini-batch: {N_CONFIGS} configurations x {N_SETTINGS} power settings x "
              f"{hw.n_banks} banks = {readings} balanced readings; {args.repeat} repeats")
        print(f"  best {1e3 * best:.2f} ms, median {1e3 * med:.2f} ms ({readings / med / 1e6:.2f} M readings/s at the "
              "median)")


if __name__ == "__main__":
    main()
