"""Readings, virtual clock and transaction counts of the bench cycle, recorded for a before/after comparison.

An emulator speed change must leave every reading, the virtual clock and the transaction counts bit-identical for
the same seed. This script runs ``--cycles`` cycles on embedded emulated benches (a bulk heater write, the settle
wait, an all-ports reading; every seventh cycle writes every third ring only, the one two cycles later a run of five
rings, so single-channel and partial vector lines are exercised too) and records: per cycle the readings' bytes
and the virtual time; at the end the clock totals and advance counts per category, the chip's heater drive, the
lines sent per transport, and every exchange on the wire (instrument, message, reply). ``--compare`` reports which
records of two files differ (exit status 1 if any).

Run the same script with each code base's interpreter, e.g. from /tmp::

    /work/main/.venv/bin/python bench/cycle_identity.py --out /tmp/before.pkl
    .venv/bin/python bench/cycle_identity.py --out /tmp/after.pkl
    .venv/bin/python bench/cycle_identity.py --compare /tmp/before.pkl /tmp/after.pkl
"""

from __future__ import annotations

import argparse
import hashlib
import pickle
import sys
from pathlib import Path
from typing import Any

import numpy as np

from bench_cycle import cycle_bench  # this folder's script: the same bench set-up as the throughput benchmark
from labctl.bench.bench import Bench


def _lines_sent(bench: Bench) -> dict[str, int]:
    seen: set[int] = set()
    counts: dict[str, int] = {}
    for name, driver in sorted(bench.instruments.items()):
        transport = driver.transport
        if id(transport) not in seen:
            seen.add(id(transport))
            counts[name] = transport.write_count
    return counts


def record(name: str, cycles: int) -> dict[str, Any]:
    """The cycle's observable results on bench ``name`` (an embedded bench's name or a bench file)."""
    out: dict[str, Any] = {"readings": [], "clock_s": [], "exchanges": []}
    with cycle_bench(name, 1e-3) as (config, bench, top):
        chip = bench.emulation.chip
        drives = np.random.default_rng(0).uniform(0, top, (cycles, bench.n_banks * bench.n_rings))
        exchanges = out["exchanges"]
        bench.emulation.bench.exchange_log = lambda *exchange: exchanges.append(repr(exchange))
        for i, drive in enumerate(drives):
            if i % 7 == 3:
                bench.heaters.set_drive(drive[::3], bench.ring_channels[::3])
            elif i % 7 == 5:
                bench.heaters.set_drive(drive[2:7], bench.ring_channels[2:7])
            else:
                bench.set_ring_drive(drive)
            bench.settle()
            reading = bench.readout.read()
            out["readings"].append(b"".join(np.asarray(getattr(reading, field), dtype=float).tobytes()
                                            for field in ("balanced", "through", "drop")))
            out["clock_s"].append(chip.clock.now_s)
        bench.emulation.bench.exchange_log = None
        out["clock_totals"] = sorted(chip.clock.totals().items())
        out["clock_counts"] = sorted(chip.clock.counts().items())
        out["heater_drive"] = chip.heater_drive().tobytes()
        out["lines_sent"] = _lines_sent(bench)
    return out


def compare(before: dict[str, Any], after: dict[str, Any]) -> bool:
    same = True
    for bench in sorted(set(before) | set(after)):
        if bench not in before or bench not in after:
            print(f"{bench}: only in one file")
            same = False
            continue
        for key in sorted(set(before[bench]) | set(after[bench])):
            a, b = before[bench].get(key), after[bench].get(key)
            if a == b:
                print(f"{bench:8s} {key:13s} identical ({len(a) if isinstance(a, list | dict) else 1} records)")
                continue
            same = False
            if isinstance(a, list) and isinstance(b, list):
                first = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
                print(f"{bench:8s} {key:13s} DIFFER from record {first} ({len(a)} / {len(b)} records)")
            else:
                print(f"{bench:8s} {key:13s} DIFFER: {a!r} / {b!r}")
    return same


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cycles", type=int, default=300)
    parser.add_argument("--bench", nargs="+", default=["default", "current"])
    parser.add_argument("--out", type=Path, help="file to write the records to")
    parser.add_argument("--compare", nargs=2, type=Path, metavar=("BEFORE", "AFTER"))
    args = parser.parse_args()
    if args.compare:
        before, after = (pickle.loads(path.read_bytes()) for path in args.compare)
        same = compare(before, after)
        print("bit-identical" if same else "DIFFERENT")
        sys.exit(0 if same else 1)
    if args.out is None:
        parser.error("--out or --compare is required")
    records = {name: record(name, args.cycles) for name in args.bench}
    args.out.write_bytes(pickle.dumps(records))
    for name, rec in records.items():
        digest = hashlib.sha256(pickle.dumps(rec)).hexdigest()[:16]
        print(f"{name}: {len(rec['readings'])} cycles, virtual clock {rec['clock_s'][-1]!r} s, "
              f"{len(rec['exchanges'])} exchanges, lines sent {sum(rec['lines_sent'].values())}, digest {digest}")


if __name__ == "__main__":
    main()
