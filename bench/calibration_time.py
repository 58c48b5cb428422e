"""Projected bench time of a calibration through the instruments: per step, per kind of instrument time, per
instrument group, with the transactions (lines sent) that went with it.

Each bench is calibrated exactly as ``labctl calibrate --bench NAME`` does (``labctl.calibration.calibrate``), on
the emulated bench; the virtual clock charges the reference timing table (reference-chip.md) and tallies it per
category (``scpi``: SCPI exchanges and the readings they wait for; ``sweep``: continuous laser sweeps; ``serial``:
heater-driver lines; ``settle``: heater settling; ``laser``: laser wavelength, power and output changes). The
``current-stepped`` case is the ``current`` bench without its Trigger Link cabling (no ``trigger_line`` on the
detectors): spectra by laser steps, one reading of every bank per step, as before the triggered sweeps (the other
changes of the same work, overlapped bank readings and drift references, apply to it too; the code before all of
them, commit d685b5f, took 3604 s and 249,623 transactions: ``labctl calibrate --bench current --refine``).

    python bench/calibration_time.py                                    # default, current, current-stepped
    python bench/calibration_time.py --benches current --json out.json
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from labctl.bench.bench import Bench
from labctl.bench.config import embedded_bench_path
from labctl.calibration.calibrate import calibrate

STEPS = ("readout", "resonance_map", "heaters", "weights", "drift_reference")


def _group(name: str) -> str:
    """Instrument group of a bench instrument name (laser3 -> lasers, smu0 -> smu, heaters -> heaters)."""
    return re.sub(r"\d+$", "", name) + ("s" if re.search(r"\d+$", name) and not name.startswith("smu") else "")


def bench_file(name: str, tmp: Path) -> Path:
    """The embedded bench file, or for ``current-stepped`` the current bench without its trigger cabling."""
    if name != "current-stepped":
        return embedded_bench_path(name)
    text = embedded_bench_path("current").read_text()
    stepped = re.sub(r",\s*trigger_line\s*=\s*\d+", "", text)
    path = tmp / "current-stepped.toml"
    path.write_text(stepped.replace('name = "emulated-current"', 'name = "emulated-current-stepped"'))
    return path


def measure(name: str, tmp: Path) -> dict[str, Any]:
    with Bench.open(bench_file(name, tmp), lock_dir=tmp) as bench:
        hw = bench.session()
        clock: Any = bench.clock
        marks: list[tuple[str, float, dict[str, float], dict[str, int]]] = []

        def snapshot(step: str) -> None:
            counts: dict[str, int] = defaultdict(int)
            seen: set[int] = set()
            for inst, driver in bench.instruments.items():
                if id(driver.transport) not in seen:
                    seen.add(id(driver.transport))
                    counts[_group(inst)] += driver.transport.write_count
            marks.append((step, clock.now_s, clock.totals(), dict(counts)))

        def progress(step: str, done: int, total: int) -> None:
            if step in STEPS or step == "done":
                snapshot(step)

        wall = time.perf_counter()
        cpu = time.process_time()
        calibrate(hw, progress=progress)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    steps: dict[str, Any] = {}
    for (step, t0, tot0, n0), (_, t1, tot1, n1) in zip(marks, marks[1:]):
        steps[step] = {
            "bench_time_s": t1 - t0,
            "by_category_s": {k: tot1.get(k, 0.0) - tot0.get(k, 0.0) for k in sorted(set(tot1) | set(tot0))
                              if tot1.get(k, 0.0) - tot0.get(k, 0.0) > 1e-9},
            "transactions_by_group": {k: n1.get(k, 0) - n0.get(k, 0) for k in sorted(n1)
                                      if n1.get(k, 0) - n0.get(k, 0)},
        }
    total_s = marks[-1][1] - marks[0][1]
    total_tx = sum(marks[-1][3].values()) - sum(marks[0][3].values())
    return {"bench": name, "steps": steps, "total_s": total_s, "transactions": total_tx, "wall_s": wall,
            "cpu_s": cpu}


def report(result: dict[str, Any]) -> str:
    lines = [f"{result['bench']}: calibration {result['total_s']:.1f} s projected bench time, "
             f"{result['transactions']} transactions (emulator {result['wall_s']:.0f} s wall, "
             f"{result['cpu_s']:.0f} s CPU)"]
    for step, entry in result["steps"].items():
        cats = ", ".join(f"{k} {v:.1f}" for k, v in sorted(entry["by_category_s"].items(), key=lambda kv: -kv[1]))
        txs = ", ".join(f"{k} {v}" for k, v in entry["transactions_by_group"].items())
        lines.append(f"  {step:<16}{entry['bench_time_s']:9.1f} s  [{cats}]  transactions: {txs}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--benches", nargs="+", default=["default", "current", "current-stepped"])
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.benches:
            results.append(measure(name, Path(tmp)))
            print(report(results[-1]), flush=True)
    by = {r["bench"]: r for r in results}
    if "current" in by and "current-stepped" in by:
        a, b = by["current-stepped"], by["current"]
        print(f"current bench, triggered sweeps vs laser steps: x{a['total_s'] / b['total_s']:.1f} less bench time "
              f"({a['total_s']:.0f} s -> {b['total_s']:.0f} s), x{a['transactions'] / b['transactions']:.1f} fewer "
              f"transactions ({a['transactions']} -> {b['transactions']})")
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
