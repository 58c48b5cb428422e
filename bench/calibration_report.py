"""Calibration yield study: accuracy and precision, measured against true, on a family of emulated chips.

Each case runs exactly what the CLI runs, in separate bench sessions (as on a real bench, the verification
session re-tunes the lasers and starts from its own chip temperature):

    labctl calibrate --bench CASE.toml --out CASE.cal.json --json
    labctl verify --bench CASE.toml --calibration CASE.cal.json --n N --no-refine --json
    labctl verify --bench CASE.toml --calibration CASE.cal.json --n N_REFINE --refine --json

The generated bench files are written next to the results, so every number can be reproduced with those
commands. Reported per case: the accuracy (rms of set weight - target) and precision (rms spread of repeated
settings) that ``labctl verify`` measures through the instruments, each against the TRUE figure (emulator ground
truth at the applied drive, see procedures/verify.py), model only and after closed-loop refinement, in bits over
the span (log2(span / rms)); the overclaim (measured - true accuracy bits, which must stay below 0.5); the true
accuracy with one scale per bank removed (the part no reading separates from a loss); the calibration's projected
bench time and its wall time here. No per-chip tuning: every case uses the same code and defaults.

The family (``FAMILY``): the default chip with ``--seeds`` seeds, and harsh variants each on ``--variant-seeds``
seeds: fabrication spread +-1 nm (``spread1nm``), thermal crosstalk x2 (``xt2``), loaded Q 5000 and 6000
(``q5000``, ``q6000``), detector and power-meter noise x10 (``noise10``), chip-temperature drift x5 (``drift5``),
the embedded ``current`` bench (greymatter current drive, Keithley 2400 on balanced photodiodes), the embedded
``adc`` bench (balanced photodiodes read through TIAs by a DAQ970A), and ``harsh``
(all of them on one chip but the current bench: Q 5000, crosstalk x2, spread +-1 nm, noise x10, meter
nonlinearity 0.05 dB, drift x5, RIN -130 dB/Hz, wavelength repeatability 2 pm).

    python bench/calibration_report.py --seeds 32 --variant-seeds 3 --bench-seeds 32 --workers 2   # the study
    python bench/calibration_report.py --cases default current --seeds 2 --variant-seeds 1           # a subset
    python bench/calibration_report.py --only spread1nm-s2 --merge      # rerun one case into the earlier results
    python bench/calibration_report.py --workers 2                      # the chips in 2 processes
    python bench/calibration_report.py --cases harsh --variant-seeds 3 --without xt q+xt   # which factor limits

``--without F`` (F one of ``HARSH_FACTORS``, or several joined by '+') also runs every selected family with those
overrides removed (the chip spec's defaults then apply), as family ``FAM-no-F``: the chip's other random parameters
are drawn from the same streams, so the difference is the factor's.

The study is long (about a minute of one core per chip); run it once, in the background, under ``nice``. Chips are
independent (each its own emulated bench, which takes no instrument lock), so ``--workers`` runs them in parallel
processes; the results do not depend on the number of workers.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import numpy as np
import tomli_w
from labctl.procedures.calibrate import run_calibration
from labctl.procedures.verify import run_verification

from labctl.bench.config import embedded_bench_path

log = logging.getLogger("calibration_report")

NOISE10: dict[str, dict[str, Any]] = {"power_meter": {"noise_w": 1e-11},
                                      "detector": {"input_noise_a_per_rthz": 5e-11}}
HARSH: dict[str, dict[str, Any]] = {
    "optics": {"loaded_q": 5000.0},
    "thermal": {"crosstalk_nearest": 0.16, "crosstalk_adjacent_bank": 0.01, "drift_rms_k": 0.05},
    "fabrication": {"resonance_offset_m": 1.0e-9},
    "power_meter": {"noise_w": 1e-11, "linearity_db": 0.05},
    "detector": {"input_noise_a_per_rthz": 5e-11},
    "lasers": {"rin_db_per_hz": -130.0, "wavelength_repeatability_m": 2e-12},
}
#: name -> (embedded bench, chip-spec overrides). "default" runs on --seeds seeds, the others on --variant-seeds.
FAMILY: dict[str, tuple[str, dict[str, dict[str, Any]]]] = {
    "default": ("default", {}),
    "spread1nm": ("default", {"fabrication": {"resonance_offset_m": 1.0e-9}}),
    "xt2": ("default", {"thermal": {"crosstalk_nearest": 0.16, "crosstalk_adjacent_bank": 0.01}}),
    "q5000": ("default", {"optics": {"loaded_q": 5000.0}}),
    "q6000": ("default", {"optics": {"loaded_q": 6000.0}}),
    "noise10": ("default", NOISE10),
    "drift5": ("default", {"thermal": {"drift_rms_k": 0.05}}),
    "current": ("current", {}),
    "adc": ("adc", {}),
    "harsh": ("default", HARSH),
}
#: The harsh factors one by one (``--without`` removes them from a family's overrides, the chip spec's defaults
#: then apply): together they are exactly ``HARSH``.
HARSH_FACTORS: dict[str, dict[str, dict[str, Any]]] = {
    "q": {"optics": {"loaded_q": 5000.0}},
    "xt": {"thermal": {"crosstalk_nearest": 0.16, "crosstalk_adjacent_bank": 0.01}},
    "drift": {"thermal": {"drift_rms_k": 0.05}},
    "spread": {"fabrication": {"resonance_offset_m": 1.0e-9}},
    "noise": {"power_meter": {"noise_w": 1e-11}, "detector": {"input_noise_a_per_rthz": 5e-11}},
    "lin": {"power_meter": {"linearity_db": 0.05}},
    "rin": {"lasers": {"rin_db_per_hz": -130.0}},
    "wl": {"lasers": {"wavelength_repeatability_m": 2e-12}},
}
#: Measured accuracy may exceed the true accuracy by at most this many bits (the honesty bound).
OVERCLAIM_LIMIT_BITS = 0.5


def bench_file(out_dir: Path, name: str, kind: str, seed: int, overrides: dict[str, dict[str, Any]]) -> Path:
    """The embedded ``kind`` bench with another chip seed and chip-spec overrides."""
    text = embedded_bench_path(kind).read_text()
    text = text.replace(f'name = "emulated-{kind}"', f'name = "emulated-{name}"').replace("seed = 0",
                                                                                          f"seed = {seed}", 1)
    if overrides:
        text += "\n" + tomli_w.dumps({"chip": {"spec": overrides}})
    linearity_db = overrides.get("power_meter", {}).get("linearity_db")
    if linearity_db is not None:          # the bench file states its meters' data-sheet linearity, as a lab's would
        text = text.replace("[wiring]\n", f"[wiring]\nreadout_linearity_db = {float(linearity_db)!r}\n", 1)
    path = out_dir / f"{name}.toml"
    path.write_text(text)
    return path


def run_case(out_dir: Path, name: str, kind: str, seed: int, overrides: dict[str, Any], n: int, n_refine: int,
             lock_dir: Path) -> dict[str, Any]:
    bench = bench_file(out_dir, name, kind, seed, overrides)
    cal_path = out_dir / f"{name}.cal.json"
    t0 = time.perf_counter()
    cal = run_calibration(bench, cal_path, lock_dir=lock_dir)
    t1 = time.perf_counter()
    model = run_verification(bench, cal_path, n=n, refine=False, lock_dir=lock_dir)
    refined = run_verification(bench, cal_path, n=n_refine, refine=True, lock_dir=lock_dir)
    t2 = time.perf_counter()
    commands = [f"labctl calibrate --bench {bench} --out {cal_path} --json",
                f"labctl verify --bench {bench} --calibration {cal_path} --n {n} --no-refine --json",
                f"labctl verify --bench {bench} --calibration {cal_path} --n {n_refine} --refine --json"]
    result = {"case": name, "family": name.rsplit("-s", 1)[0], "seed": seed, "overrides": overrides,
              "calibration": cal, "model_only": model, "refined": refined,
              "wall_s": {"calibrate": t1 - t0, "verify": t2 - t1}, "commands": commands}
    (out_dir / f"{name}.result.json").write_text(json.dumps(result, indent=1, default=str))
    return result


def _case_or_error(out_dir: Path, name: str, kind: str, seed: int, overrides: dict[str, Any], n: int, n_refine: int,
                   lock_dir: Path) -> dict[str, Any]:
    """One chip's result, or its failure as a record (one failing chip must not hide the others)."""
    try:
        return run_case(out_dir, name, kind, seed, overrides, n, n_refine, lock_dir)
    except Exception as exc:  # noqa: BLE001 - reported in the table, with the traceback in the log
        log.exception("case %s failed", name)
        return {"case": name, "family": name.rsplit("-s", 1)[0], "seed": seed, "overrides": overrides,
                "error": f"{type(exc).__name__}: {exc}"}


def _progress(r: dict[str, Any], done: int, total: int, t_start: float) -> None:
    """One line per finished chip: its figures, chips done and left, elapsed and estimated remaining wall time."""
    elapsed = time.perf_counter() - t_start
    eta = elapsed / done * (total - done)
    head = f"[report] {done}/{total} done, {elapsed / 60:.1f} min elapsed, ETA {eta / 60:.1f} min: {r['case']}"
    if "error" in r:
        print(f"{head}: failed: {r['error']}", file=sys.stderr, flush=True)
        return
    m, f = r["model_only"], r["refined"]
    print(f"{head}: accuracy model {m['bits']:.2f} (true {m.get('true_bits', 0):.2f}), refined "
          f"{f['bits']:.2f} (true {f.get('true_bits', 0):.2f}) bits; precision {f['precision_bits']:.2f} (true "
          f"{f.get('true_precision_bits', 0):.2f}); calibration wall {r['wall_s']['calibrate']:.0f} s",
          file=sys.stderr, flush=True)


def _f(value: Any, fmt: str = ".2f") -> str:
    return "-" if value is None or (isinstance(value, float) and not np.isfinite(value)) else format(value, fmt)


def table(results: list[dict[str, Any]]) -> str:
    head = ("| case | span | model accuracy bits (meas / true) | refined accuracy (meas / true) | refined precision "
            "(meas / true) | overclaim model / refined | refined true w/o bank scale | restricted rings | "
            "calib. bench s | calib. wall s |")
    lines = [head, "|" + "---|" * 10]
    for r in results:
        if "error" in r:
            lines.append(f"| {r['case']} | failed: {r['error']} |" + " |" * 8)
            continue
        m, f, c = r["model_only"], r["refined"], r["calibration"]
        lines.append(
            f"| {r['case']} | {m['span']:.3f} | {_f(m['bits'])} / {_f(m.get('true_bits'))} | "
            f"{_f(f['bits'])} / {_f(f.get('true_bits'))} | {_f(f['precision_bits'])} / "
            f"{_f(f.get('true_precision_bits'))} | {_f(m.get('overclaim_bits'), '+.2f')} / "
            f"{_f(f.get('overclaim_bits'), '+.2f')} | {_f(f.get('true_bits_without_bank_scale'))} | "
            f"{len(c.get('restricted', []))} | {_f(c['projected_time_s'], '.0f')} | "
            f"{_f(r['wall_s']['calibrate'], '.0f')} |")
    return "\n".join(lines)


def distribution(results: list[dict[str, Any]]) -> str:
    """Per family and overall: min / median / max of measured and true accuracy bits, worst overclaim, failures."""
    ok = [r for r in results if "error" not in r]
    failed = [r for r in results if "error" in r]
    lines = ["| family | chips | refined true accuracy bits min / median / max | refined measured min / median / max "
             "| model true min / median | worst overclaim (bits) | failures |", "|" + "---|" * 7]
    base = lambda f: f.split("-no-")[0]  # noqa: E731 - a family with factors removed sorts after its own, by name
    families = sorted({r["family"] for r in results},
                      key=lambda f: (list(FAMILY).index(base(f)) if base(f) in FAMILY else 99, f != base(f), f))
    for fam in families + ["all"]:
        rs = [r for r in ok if fam in ("all", r["family"])]
        nf = sum(1 for r in failed if fam in ("all", r["family"]))
        if not rs:
            lines.append(f"| {fam} | 0 | - | - | - | - | {nf} |")
            continue
        tr = np.array([r["refined"]["true_bits"] for r in rs])
        me = np.array([r["refined"]["bits"] for r in rs])
        tm = np.array([r["model_only"]["true_bits"] for r in rs])
        over = max(max(r["refined"]["overclaim_bits"], r["model_only"]["overclaim_bits"]) for r in rs)
        lines.append(f"| {fam} | {len(rs)} | {tr.min():.2f} / {np.median(tr):.2f} / {tr.max():.2f} | "
                     f"{me.min():.2f} / {np.median(me):.2f} / {me.max():.2f} | {tm.min():.2f} / {np.median(tm):.2f} | "
                     f"{over:+.2f} | {nf} |")
    for r in failed:
        lines.append(f"\nfailed: {r['case']}: {r['error']}")
    return "\n".join(lines)


def without(overrides: dict[str, dict[str, Any]], factors: list[str]) -> dict[str, dict[str, Any]]:
    """``overrides`` with the keys of the named ``HARSH_FACTORS`` removed (those parameters take the chip spec's
    defaults): to see which factor of a stacked chip sets its limit."""
    drop = {(section, key) for f in factors for section, keys in HARSH_FACTORS[f].items() for key in keys}
    out = {section: {k: v for k, v in keys.items() if (section, k) not in drop} for section, keys in overrides.items()}
    return {section: keys for section, keys in out.items() if keys}


def parse_without(items: list[str]) -> list[list[str]]:
    """``--without`` items, each one factor or several joined by '+' (removed together)."""
    sets = [item.split("+") for item in items]
    unknown = sorted({f for fs in sets for f in fs} - set(HARSH_FACTORS))
    if unknown:
        raise ValueError(f"unknown factor(s) {', '.join(unknown)}; known: {', '.join(HARSH_FACTORS)}")
    return sets


def cases(seeds: int, variant_seeds: int, only: list[str] | None,
          without_sets: list[list[str]] | None = None, bench_seeds: int | None = None
          ) -> list[tuple[str, str, int, dict[str, Any]]]:
    """(name, bench kind, seed, overrides) of every chip: ``seeds`` of the default chip, ``bench_seeds`` (default
    ``variant_seeds``) of the other embedded benches, ``variant_seeds`` of every other family; with
    ``without_sets`` each family also runs with each set of factors removed, as family ``FAM-no-F1+F2``."""
    out = []
    for fam, (kind, overrides) in FAMILY.items():
        if only and fam not in only:
            continue
        if fam == "default":
            count = seeds
        elif kind != "default" and bench_seeds is not None:
            count = bench_seeds
        else:
            count = variant_seeds
        variants = [(fam, overrides)]
        for fs in without_sets or []:
            variants.append((f"{fam}-no-{'+'.join(fs)}", without(overrides, fs)))
        for name, ov in variants:
            for s in range(count):
                out.append((f"{name}-s{s}", kind, s, ov))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/calibration_report")
    parser.add_argument("--n", type=int, default=20, help="verification vectors, model only")
    # 16, not 8: one setting can carry most of a chip's error (adc seed 18: one target of 8 held 86 % of the squared
    # error), and with 8 vectors a chip's refined figure moved by 0.3-1.2 bit between verification seeds
    parser.add_argument("--n-refine", type=int, default=16, help="verification vectors with refinement")
    parser.add_argument("--seeds", type=int, default=32, help="seeds 0..N-1 of the default chip")
    parser.add_argument("--variant-seeds", type=int, default=4, help="seeds 0..N-1 of every harsh variant")
    parser.add_argument("--bench-seeds", type=int, default=None,
                        help="seeds 0..N-1 of the embedded current and adc benches (default: --variant-seeds)")
    parser.add_argument("--cases", nargs="*", help=f"only these families ({', '.join(FAMILY)})")
    parser.add_argument("--only", nargs="*", help="only these cases by name (e.g. default-s0 spread1nm-s2)")
    parser.add_argument("--workers", type=int, default=1, help="chips run in this many processes (default 1)")
    parser.add_argument("--without", nargs="*", default=[], metavar="FACTOR[+FACTOR]",
                        help=f"also run each family with these harsh factors removed ({', '.join(HARSH_FACTORS)}; "
                             "'a+b' removes both), as family FAM-no-a+b")
    parser.add_argument("--merge", action="store_true",
                        help="merge into the results already in --out (the cases run here replace theirs)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    locks = out / "locks"
    locks.mkdir(exist_ok=True)
    if args.workers < 1:
        parser.error("--workers: must be at least 1")
    try:
        without_sets = parse_without(args.without)
    except ValueError as exc:
        parser.error(f"--without: {exc}")
    todo = cases(args.seeds, args.variant_seeds, args.cases, without_sets, args.bench_seeds)
    if args.only:
        todo = [c for c in todo if c[0] in args.only]
    t_start = time.perf_counter()
    jobs = [(out, name, kind, seed, overrides, args.n, args.n_refine, locks) for name, kind, seed, overrides in todo]
    print(f"[report] {len(jobs)} chips, {args.workers} worker(s)", file=sys.stderr, flush=True)
    by_case: dict[str, dict[str, Any]] = {}
    if args.workers > 1:
        with ProcessPoolExecutor(max_workers=args.workers) as pool:
            futures = [pool.submit(_case_or_error, *job) for job in jobs]
            for future in as_completed(futures):
                r = future.result()
                by_case[r["case"]] = r
                _progress(r, len(by_case), len(jobs), t_start)
    else:
        for job in jobs:
            r = _case_or_error(*job)
            by_case[r["case"]] = r
            _progress(r, len(by_case), len(jobs), t_start)
    results = [by_case[name] for name, _, _, _ in todo]
    if args.merge and (out / "report.json").exists():
        ran = {r["case"] for r in results}
        earlier = [r for r in json.loads((out / "report.json").read_text()) if r["case"] not in ran]
        order = {name: k for k, (name, _, _, _) in enumerate(cases(args.seeds, args.variant_seeds, None,
                                                                   without_sets, args.bench_seeds))}
        results = sorted(earlier + results, key=lambda r: order.get(r["case"], len(order)))
    md = table(results) + "\n\n" + distribution(results)
    (out / "report.md").write_text(md + "\n")
    (out / "report.json").write_text(json.dumps(results, indent=1, default=str))
    print(md)
    worst = [r for r in results if "error" not in r and max(r["refined"]["overclaim_bits"],
                                                              r["model_only"]["overclaim_bits"]) > OVERCLAIM_LIMIT_BITS]
    if worst:
        print(f"\noverclaim above {OVERCLAIM_LIMIT_BITS} bit: " + ", ".join(r["case"] for r in worst))
    return 0


if __name__ == "__main__":
    sys.exit(main())
