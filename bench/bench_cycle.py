"""Throughput of the simulated bench for the cycle calibration and training repeat most: a bulk heater write
followed by an all-ports read, through the real drivers and the safety layer.

Prints, for each embedded emulated bench: cycles and instrument transactions per second of wall time (and of this
process's CPU time: the machine may be shared), the projected bench time of one cycle from the emulator's virtual
clock (what the same cycle would cost on real instruments with the reference timing), split by category, and the
emulator's speed-up over that real bench. For comparison, in the same run: the exchanges of one cycle replayed as
they are (same lines, same order) on static pyvisa-sim definitions of the same instruments (the shipped YAML,
answers matched by string, no drivers, no physics), in transactions per second. The speed-up over the real bench
scales with this machine's speed, the ratio to static pyvisa-sim much less: the script also prints the static
pyvisa-sim rate a machine needs for the emulator to reach 30x there.

    python bench/bench_cycle.py [--cycles N] [--averaging-time-s T] [--bench default current ...]
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from labctl.bench.bench import Bench, lasers_on
from labctl.bench.config import load_bench
from labctl.sim.instruments import MODELS
from labctl.sim.protocol import all_profiles, yaml_path


#: The issue's dry-run target: the simulated instruments this many times faster than the real bench.
TARGET_SPEEDUP = 30.0


def transactions(bench: Bench) -> int:
    seen, total = set(), 0
    for driver in bench.instruments.values():
        transport = driver.transport
        if id(transport) not in seen:
            seen.add(id(transport))
            total += transport.write_count
    return total


def static_replay(config: Any, exchanges: list[tuple[str, str, Any]], repeats: int) -> float:
    """Transactions per second of wall time when ``exchanges`` are replayed on the static pyvisa-sim definitions
    of the instruments that sent them (a read follows every message that the emulated bench answered)."""
    import pyvisa

    profiles = {p.device: p for p in all_profiles()}
    with tempfile.TemporaryDirectory() as folder:
        resources: dict[str, str] = {}
        spec: dict[str, Any] = {"spec": "1.1", "resources": {}}
        for name in {n for n, _, _ in exchanges}:
            profile = profiles[MODELS[config.instruments[name].driver].device]
            local = Path(folder) / yaml_path(profile).name
            shutil.copy(yaml_path(profile), local)
            address = f"GPIB0::{len(resources) + 1}::INSTR" if not profile.resources[0].startswith("ASRL") \
                else f"ASRL{len(resources) + 1}::INSTR"
            spec["resources"][address] = {"device": profile.device, "filename": str(local)}
            resources[name] = address
        import yaml

        combined = Path(folder) / "bench.yaml"
        combined.write_text(yaml.safe_dump(spec))
        rm = pyvisa.ResourceManager(f"{combined}@sim")
        handles = {}
        for name, address in resources.items():
            res = rm.open_resource(address)
            res.write_termination = res.read_termination = "\n"
            res.timeout = 1000
            handles[name] = res
        plan = [(handles[name], message, reply is not None) for name, message, reply in exchanges]
        start = time.perf_counter()
        for _ in range(repeats):
            for res, message, answered in plan:
                res.write(message)
                if answered:
                    res.read_raw()
        wall = time.perf_counter() - start
        rm.close()
    return len(plan) * repeats / wall


@contextlib.contextmanager
def cycle_bench(name: str, averaging_time_s: float) -> Iterator[tuple[Any, Bench, float]]:
    """Bench ``name`` (an embedded bench's name or a bench file) connected, every laser on at 1 mW, the readout set
    at the first channel: (its configuration, the bench, the top of a random heater drive); closed after."""
    from labctl.cli.common import bench_path

    config, digest = load_bench(bench_path(name))
    with tempfile.TemporaryDirectory() as locks:
        bench = Bench.connect(config, digest, lock_dir=Path(locks))
        try:
            with bench.guard:
                lasers_on(bench, 1e-3)
                bench.readout.configure(float(config.wiring.wavelengths_m[0]), averaging_time_s)
                yield config, bench, 4.0 if config.wiring.heaters.mode == "voltage" else 0.003
        finally:
            bench.close()


def run(name: str, cycles: int, averaging_time_s: float) -> None:
    with cycle_bench(name, averaging_time_s) as (config, bench, top):
        chip = bench.emulation.chip
        rng = np.random.default_rng(0)
        drives = rng.uniform(0, top, (cycles + 1, bench.n_banks * bench.n_rings))
        exchanges: list[tuple[str, str, Any]] = []
        bench.emulation.bench.exchange_log = lambda *exchange: exchanges.append(exchange)
        bench.set_ring_drive(drives[0])
        bench.settle()
        bench.readout.read()
        bench.emulation.bench.exchange_log = None
        n0, t_virtual0 = transactions(bench), chip.clock.now_s
        totals0 = chip.clock.totals()
        start, cpu0 = time.perf_counter(), time.process_time()
        for drive in drives[1:]:
            bench.set_ring_drive(drive)
            bench.settle()
            bench.readout.read()
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu0
        n = transactions(bench) - n0
        virtual = chip.clock.now_s - t_virtual0
        per_cat = {k: (v - totals0.get(k, 0.0)) / cycles for k, v in chip.clock.totals().items()}
    static = static_replay(config, exchanges, max(20, cycles // 2))
    print(f"{name:8s} ({config.bench.description})")
    print(f"  cycles/s (wall)            : {cycles / wall:10.1f}   ({cycles} cycles in {wall:.2f} s wall, "
          f"{cpu:.2f} s CPU)")
    print(f"  transactions/s (wall)      : {n / wall:10.1f}   ({n / cycles:.1f} per cycle; {n / cpu:.1f} per CPU s)")
    print(f"  static pyvisa-sim, same mix: {static:10.1f}   transactions/s (wall; the cycle's {len(exchanges)} "
          f"exchanges replayed, no drivers or physics)")
    print(f"  emulator / static          : {n / wall / static:10.2f}   (transactions/s ratio)")
    print(f"  projected bench time/cycle : {virtual / cycles * 1e3:10.3f} ms   "
          + ", ".join(f"{k} {v * 1e3:.3f} ms" for k, v in sorted(per_cat.items()) if v > 0))
    print(f"  emulator speed-up vs bench : {virtual / wall:10.1f} x   ({virtual / cpu:.1f} x per CPU second)")
    # The speed-up scales with the machine; static pyvisa-sim in the same run is the yardstick that does not.
    needed = TARGET_SPEEDUP * n / virtual                  # emulator transactions/s for the target speed-up
    print(f"  {f'{TARGET_SPEEDUP:.0f} x needs':27s}: {needed:10.1f}   transactions/s of the emulator, "
          f"i.e. a machine where static pyvisa-sim runs this mix at >= {needed / (n / wall / static):.0f} "
          f"transactions/s (here {static:.0f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cycles", type=int, default=1000)
    parser.add_argument("--averaging-time-s", type=float, default=1e-3)
    parser.add_argument("--bench", nargs="+", default=["default", "current"],
                        help="embedded bench names or emulated bench files (default: default current)")
    args = parser.parse_args()
    for name in args.bench:
        run(name, args.cycles, args.averaging_time_s)


if __name__ == "__main__":
    main()
