"""Emulator throughput: full-physics labctl.sim.Chip vs a bare numpy Lorentzian model vs the scalar reference.

Workload: default 4 banks x 10 rings x 10 channels, a batch of operating points (random heater voltages).
Configurations: the emulator in one process (workers=1) and process-parallel (workers=N: this process plus N-1
pool processes, results bit-identical to workers=1), interleaved with the bare numpy model so all see the same
machine load. Prints best, median and worst of the repeats, and how busy the machine was with other processes.
Run: python bench/emulator_throughput.py [--points 10000] [--repeat 7] [--workers 1 2]
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.sim.scalar_reference

from labctl.sim import Chip, ChipSpec  # noqa: E402

from tests.sim.scalar_reference import port_powers_w  # noqa: E402

log = logging.getLogger("bench.emulator_throughput")


def lorentzian_incoherent(drive_v: np.ndarray, spec: ChipSpec, resonance0_m: np.ndarray) -> tuple[np.ndarray, ...]:
    """The natural bare-numpy model: Lorentzian add-drop rings, incoherent cascade, float64, whole batch at once.

    No crosstalk, drift, self-heating or noise: shift = eta V^2 / R on the own ring only.
    """
    nb, nr, nc = spec.layout.n_banks, spec.layout.n_rings, spec.lasers.n_channels
    wl = np.array(spec.lasers.channel_wavelengths_m())
    power = drive_v**2 / spec.heaters.resistance_ohm
    res = (resonance0_m + spec.heaters.tuning_efficiency_m_per_w * power).reshape(-1, nb, nr, 1)
    fwhm = wl / spec.optics.loaded_q
    x = 2 * (wl - res) / fwhm  # (N, B, R, C)
    drop = 0.84 / (1 + x**2)
    thr = 1 - (1 - 10 ** (-2.1)) / (1 + x**2)
    thr_cum = np.cumprod(thr, axis=2)
    before = np.concatenate([np.ones_like(thr_cum[:, :, :1]), thr_cum[:, :, :-1]], axis=2)
    drop_total = np.sum(drop * before**2, axis=2)  # passes each earlier ring twice (through and drop bus)
    thr_total = thr_cum[:, :, -1]
    pin = np.full(nc, spec.lasers.power_w)
    return 0.9 * (drop_total - thr_total) @ pin, thr_total @ pin, drop_total @ pin


def rates(fns: list, n_points: int, repeat: int) -> list[list[float]]:
    """points/s of every repeat for each function, runs interleaved so all see the same machine load."""
    out: list[list[float]] = [[] for _ in fns]
    for _ in range(repeat):
        for k, fn in enumerate(fns):
            t0 = time.perf_counter()
            fn()
            out[k].append(n_points / (time.perf_counter() - t0))
    return out


def _cpu_snapshot() -> tuple[int, int, float] | None:
    """(total jiffies, idle jiffies, own + children CPU seconds), or None where /proc/stat is unavailable."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
    except OSError:
        return None
    t = os.times()
    return sum(v), v[3] + v[4], t.user + t.system + t.children_user + t.children_system


def other_load_cores(before: tuple | None, after: tuple | None, wall_s: float) -> float | None:
    """Average number of cores kept busy by OTHER processes between two snapshots (pool workers count as ours,
    but only once reaped, so this is an upper bound while a pool is alive)."""
    if before is None or after is None or wall_s <= 0:
        return None
    hz = os.sysconf("SC_CLK_TCK")
    busy_s = ((after[0] - before[0]) - (after[1] - before[1])) / hz
    return max(busy_s - (after[2] - before[2]), 0.0) / wall_s


def pool_cpu_s(chip: Chip) -> float:
    """CPU seconds used so far by the chip's pool processes (Linux /proc; 0 elsewhere)."""
    pool = getattr(chip, "_proc_pool", None)
    total = 0.0
    for proc in getattr(pool, "_processes", {}).values() if pool is not None else ():
        try:
            with open(f"/proc/{proc.pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):
            pass
    return total


def bit_identical(spec: ChipSpec, workers: int, drive: np.ndarray, pin: np.ndarray) -> bool:
    """Fresh chips, same seed: evaluate(workers=N) returns exactly the arrays of evaluate(workers=1), noise on."""
    if workers == 1:
        return True
    par, ser = Chip(spec, seed=0, workers=workers), Chip(spec, seed=0)
    try:
        got, want = par.evaluate(drive, pin), ser.evaluate(drive, pin)
    finally:
        par.close()
        ser.close()
    return all(np.array_equal(getattr(got, f), getattr(want, f))
               for f in ("balanced_current_a", "through_power_w", "drop_power_w"))


def fmt(rs: list[float]) -> str:
    return f"best {max(rs):9,.0f}  median {statistics.median(rs):9,.0f}  worst {min(rs):9,.0f} points/s"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--points", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--scalar-points", type=int, default=20)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2],
                    help="emulator configurations to measure: processes per evaluate (1 = in-process)")
    ap.add_argument("--threads", type=int, default=None, help="emulator worker threads (default 1; 2 measured no faster here)")
    args = ap.parse_args(argv)

    spec = ChipSpec()
    chips = {w: Chip(spec, seed=0, threads=args.threads, workers=w) for w in args.workers}
    rng = np.random.default_rng(0)
    drive = rng.uniform(0.0, 4.0, (args.points, spec.n_heaters))
    pin = np.full(spec.lasers.n_channels, spec.lasers.power_w)
    for chip in chips.values():
        chip.evaluate(drive[: min(args.points, 4096)], pin)  # warm-up (constants cache, process pool start)

    identical = {w: bit_identical(spec, w, drive, pin) for w in chips}

    r0 = chips[args.workers[0]].truth_params().design_resonance_m
    fns = [lambda c=c: c.evaluate(drive, pin, averaging_time_s=1e-4, noise=True) for c in chips.values()]
    fns.append(lambda: lorentzian_incoherent(drive, spec, r0))
    before, t0 = _cpu_snapshot(), time.perf_counter()
    pool0 = sum(pool_cpu_s(c) for c in chips.values())
    measured = rates(fns, args.points, args.repeat)
    wall = time.perf_counter() - t0
    after = _cpu_snapshot()
    pool_s = sum(pool_cpu_s(c) for c in chips.values()) - pool0
    load = other_load_cores(before, after, wall)
    if load is not None:
        load = max(load - pool_s / wall, 0.0)

    chip1 = chips[args.workers[0]]
    ns = args.scalar_points
    t0 = time.perf_counter()
    ref = [port_powers_w(chip1, drive[n].tolist(), pin.tolist()) for n in range(ns)]
    scalar = ns / (time.perf_counter() - t0)
    ev = chip1.evaluate(drive[:ns], pin, noise=False)
    ref_thr = np.array([r[1] for r in ref])
    ref_drop = np.array([r[2] for r in ref])
    ref_cur = np.array([r[0] for r in ref])
    d_pow = max(np.abs(ev.through_power_w - ref_thr).max(), np.abs(ev.drop_power_w - ref_drop).max())
    d_rel = d_pow / max(ref_thr.max(), ref_drop.max())
    d_cur = np.abs(ev.balanced_current_a - ref_cur).max()

    tracemalloc.start()
    out = chip1.evaluate(drive, pin)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    out_bytes = out.balanced_current_a.nbytes + out.through_power_w.nbytes + out.drop_power_w.nbytes

    print(f"workload: {spec.layout.n_banks} banks x {spec.layout.n_rings} rings x {spec.lasers.n_channels} channels,"
          f" {args.points} operating points, {args.repeat} interleaved repeats, {os.cpu_count()} CPUs,"
          f" threads={chip1._threads}")
    if load is not None:
        print(f"  other processes kept {load:.2f} cores busy on average during the timed runs")
    lor = measured[-1]
    for (w, chip), rs in zip(chips.items(), measured):
        cfg = "in-process (workers=1)" if w == 1 else f"process-parallel (workers={w})"
        print(f"  emulator, coherent full physics + noise, {cfg:30s}: {fmt(rs)}"
              f"   [bit-identical to workers=1: {identical[w]}]")
    print(f"  bare numpy incoherent Lorentzian (f64){'':33s}: {fmt(lor)}")
    for (w, _), rs in zip(chips.items(), measured):
        print(f"  ratio emulator(workers={w}) / Lorentzian, best/best: {max(rs) / max(lor):5.2f}, per repeat"
              f" min..max {min(a / b for a, b in zip(rs, lor)):.2f}..{max(a / b for a, b in zip(rs, lor)):.2f}")
    print(f"  scalar reference ({ns} points, linear solve per bank and wavelength): {scalar:10,.1f} points/s")
    print(f"  max |emulator - scalar| on {ns} points: port power {d_pow:.3e} W ({d_rel:.1e} of max),"
          f" balanced current {d_cur:.3e} A (readout LSB "
          f"{2 * spec.detector.readout_range_a / 2**spec.detector.readout_bits:.3e} A)")
    print(f"  peak traced memory during evaluate (workers={args.workers[0]}): {peak / 2**20:8.2f} MiB"
          f" (outputs {out_bytes / 2**20:.2f} MiB)")
    print("published scales, NOT measured here: DEAP ~56k points/s; pytorch-onn 280-340k points/s;"
          " circuit simulators < 8k points/s")
    for chip in chips.values():
        chip.close()


if __name__ == "__main__":
    main()
