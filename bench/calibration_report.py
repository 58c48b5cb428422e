"""Calibration accuracy and cost on emulated benches: the default chip, five other seeds and a harsh chip.

Each case runs exactly what the CLI runs, in separate bench sessions (as on a real bench, the verification
session re-tunes the lasers and starts from its own chip temperature):

    labctl calibrate --bench CASE.toml --out CASE.cal.json --json
    labctl verify --bench CASE.toml --calibration CASE.cal.json --n N --no-refine --json
    labctl verify --bench CASE.toml --calibration CASE.cal.json --n N --no-refine --recenter --json
    labctl verify --bench CASE.toml --calibration CASE.cal.json --n N_REFINE --refine --json

The generated bench files are written next to the results, so every number can be reproduced with those
commands. Reported per case: measured and TRUE bits (emulator ground truth at the applied drive; see
procedures/verify.py for the normalisation) from the model alone, from the model after re-centring on the drift
references (one measurement per reference), and after closed-loop refinement, the span,
and the projected bench time and transactions of the calibration against a naive full-grid calibration
(formula in procedures/calibrate.py). No per-chip tuning: every case uses the same code and defaults.

The harsh chip (``HARSH``): thermal crosstalk nearly doubled (15 % nearest ring, 1 % adjacent bank), loaded Q 5000
instead of 8000 (wider lines, more overlap between channels), power-meter noise x100 and nonlinearity 0.05 dB,
detector input noise x10, laser RIN -130 dB/Hz and wavelength repeatability 2 pm. ``harsh-q6000`` is the same with
Q 6000.

    python bench/calibration_report.py [--out runs/calibration_report] [--n 20] [--n-refine 8] [--seeds 1 2 3 4 5]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import tomli_w
from labctl.procedures.calibrate import run_calibration
from labctl.procedures.verify import run_verification

from labctl.bench.config import embedded_bench_path

log = logging.getLogger("calibration_report")

HARSH: dict[str, dict[str, Any]] = {
    "thermal": {"crosstalk_nearest": 0.15, "crosstalk_adjacent_bank": 0.01},
    "optics": {"loaded_q": 5000.0},
    "power_meter": {"noise_w": 1e-10, "linearity_db": 0.05},
    "detector": {"input_noise_a_per_rthz": 5e-11},
    "lasers": {"rin_db_per_hz": -130.0, "wavelength_repeatability_m": 2e-12},
}
#: The harsh chip with Q 6000 instead of 5000 (everything else as HARSH).
HARSH_Q6000: dict[str, dict[str, Any]] = {**HARSH, "optics": {"loaded_q": 6000.0}}


def bench_file(out_dir: Path, name: str, seed: int, overrides: dict[str, dict[str, Any]] | None = None) -> Path:
    """The embedded default bench with another chip seed and optional chip-spec overrides."""
    text = embedded_bench_path("default").read_text()
    text = text.replace('name = "emulated-default"', f'name = "emulated-{name}"').replace("seed = 0",
                                                                                          f"seed = {seed}", 1)
    if overrides:
        text += "\n" + tomli_w.dumps({"chip": {"spec": overrides}})
    path = out_dir / f"{name}.toml"
    path.write_text(text)
    return path


def run_case(out_dir: Path, name: str, seed: int, overrides: dict[str, Any] | None, n: int, n_refine: int,
             lock_dir: Path) -> dict[str, Any]:
    bench = bench_file(out_dir, name, seed, overrides)
    cal_path = out_dir / f"{name}.cal.json"
    t0 = time.perf_counter()
    cal = run_calibration(bench, cal_path, lock_dir=lock_dir)
    t1 = time.perf_counter()
    model = run_verification(bench, cal_path, n=n, refine=False, lock_dir=lock_dir)
    recentered = run_verification(bench, cal_path, n=n, refine=False, recenter=True, lock_dir=lock_dir)
    refined = run_verification(bench, cal_path, n=n_refine, refine=True, lock_dir=lock_dir)
    t2 = time.perf_counter()
    commands = [f"labctl calibrate --bench {bench} --out {cal_path} --json",
                f"labctl verify --bench {bench} --calibration {cal_path} --n {n} --no-refine --json",
                f"labctl verify --bench {bench} --calibration {cal_path} --n {n} --no-refine --recenter --json",
                f"labctl verify --bench {bench} --calibration {cal_path} --n {n_refine} --refine --json"]
    result = {"case": name, "seed": seed, "overrides": overrides or {}, "calibration": cal, "model_only": model,
              "recentered": recentered, "refined": refined, "wall_s": {"calibrate": t1 - t0, "verify": t2 - t1}, "commands": commands}
    (out_dir / f"{name}.result.json").write_text(json.dumps(result, indent=1, default=str))
    return result


def table(results: list[dict[str, Any]]) -> str:
    head = ("| case | span | model bits (meas / true) | model + recenter (meas / true) | refined bits (meas / true) |"
            " refine iters | calib. time s | transactions | naive time s | naive transactions |")
    lines = [head, "|" + "---|" * 10]
    for r in results:
        if "error" in r:
            lines.append(f"| {r['case']} | failed: {r['error']} |" + " |" * 8)
            continue
        m, f, c, rc = r["model_only"], r["refined"], r["calibration"], r["recentered"]
        naive = c["naive_full_grid"]
        lines.append(
            f"| {r['case']} | {m['span']:.3f} | {m['bits']:.2f} / {m.get('true_bits', float('nan')):.2f} | "
            f"{rc['bits']:.2f} / {rc.get('true_bits', float('nan')):.2f} | "
            f"{f['bits']:.2f} / {f.get('true_bits', float('nan')):.2f} | {f['mean_refine_iterations']:.1f} | "
            f"{c['projected_time_s']:.0f} | {c['transactions']} | {naive['elapsed_s']:.0f} | "
            f"{naive['transactions']:.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/calibration_report")
    parser.add_argument("--n", type=int, default=20, help="verification vectors, model only")
    parser.add_argument("--n-refine", type=int, default=8, help="verification vectors with refinement")
    parser.add_argument("--seeds", type=int, nargs="*", default=[1, 2, 3, 4, 5])
    parser.add_argument("--no-harsh", action="store_true")
    parser.add_argument("--cases", nargs="*",
                        help="run only these case names (default, seed1.., harsh, harsh-q6000)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    locks = out / "locks"
    locks.mkdir(exist_ok=True)
    cases: list[tuple[str, int, dict[str, Any] | None]] = [("default", 0, None)]
    cases += [(f"seed{s}", s, None) for s in args.seeds]
    if not args.no_harsh:
        cases += [("harsh", 0, HARSH), ("harsh-q6000", 0, HARSH_Q6000)]
    if args.cases:
        cases = [c for c in cases if c[0] in args.cases]
    results = []
    for name, seed, overrides in cases:
        print(f"[report] {name} ...", file=sys.stderr, flush=True)
        try:
            r = run_case(out, name, seed, overrides, args.n, args.n_refine, locks)
        except Exception as exc:  # one failing case must not hide the others
            log.exception("case %s failed", name)
            results.append({"case": name, "seed": seed, "overrides": overrides or {},
                            "error": f"{type(exc).__name__}: {exc}"})
            continue
        results.append(r)
        m, f = r["model_only"], r["refined"]
        print(f"[report] {name}: model {m['bits']:.2f} / true {m.get('true_bits', 0):.2f} bits; refined "
              f"{f['bits']:.2f} / true {f.get('true_bits', 0):.2f} bits; wall {sum(r['wall_s'].values()):.0f} s",
              file=sys.stderr, flush=True)
    md = table(results)
    (out / "report.md").write_text(md + "\n")
    (out / "report.json").write_text(json.dumps(results, indent=1, default=str))
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
