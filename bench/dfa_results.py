"""The DFA results table: BP, ideal DFA, DFA with Filipovich et al.'s noise model (``max|e| * N(0.03, 0.618)`` on
every element of ``B e``), the model's two halves apart (``-mean``: N(0.03, 0), a constant offset; ``-std``:
N(0, 0.618), zero-mean noise) and photonic DFA on the default emulated bench (fast path: same calibration, same
physics, emulator called directly), on mnist5k and sklearn digits, several seeds each; then a short photonic run
through the full instrument stack.

The bench is calibrated once through the instruments (or ``--calibration FILE``); photonic rows use that
calibration with drift checks every 50 mini-batches (recenter; when a check trips, confirm and recalibrate if
needed). Each seed's methods run back to back. Prints mean ± std of the final-epoch test accuracy over seeds, the
mean wall time per epoch (photonic: with and without the drift checks and the recalibrations they call for, whose
first check and confirmation and any recalibration go through the instrument stack), the fast-path / digital-DFA
epoch-time ratio per seed, and the
chip's product error in the noise model's units.
The stack run trains ``--stack-batches`` mini-batches of the same network and reports its emulator wall time and
projected bench time per mini-batch and per epoch. Every training is a recorded run under ``--data-dir``; without
it, a temporary directory that is removed afterwards.

    python bench/dfa_results.py [--epochs 10] [--seeds 0 1 2] [--datasets mnist5k digits]
                                [--methods bp dfa dfa-noisy dfa-noisy-mean dfa-noisy-std dfa-photonic] [--hidden 800 800] [--threads 1]
                                [--stack-batches 1] [--calibration FILE] [--data-dir DIR] [--json FILE]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from labctl.procedures.train import run_training

import labctl
from labctl.dfa.datasets import load_dataset
from labctl.dfa.training import Experiment, FeedbackKind, Method, TrainConfig

METHODS: dict[str, tuple[Method, FeedbackKind]] = {
    "bp": ("bp", "digital"), "dfa": ("dfa", "digital"), "dfa-noisy": ("dfa", "noisy"),
    "dfa-noisy-mean": ("dfa", "noisy"), "dfa-noisy-std": ("dfa", "noisy"), "dfa-photonic": ("dfa", "photonic"),
}
#: the two halves of the noise model, apart: its mean alone (std 0) and its std alone (mean 0)
ABLATION = {"dfa-noisy-mean": {"std": 0.0}, "dfa-noisy-std": {"mean": 0.0}}
DRIFT_EVERY = 50


def _noise(args: argparse.Namespace, label: str) -> dict[str, float]:
    return {"std": args.noise_std, "mean": args.noise_mean, **ABLATION.get(label, {})}


def _drift_wall_s(history: list[dict[str, Any]]) -> list[float]:
    """Wall time per epoch of the drift checks and of the recalibrations they called for."""
    return [sum(ev.get("wall_s", 0.0) + ev.get("recalibration_wall_s", 0.0)
                for ev in (h.get("hardware") or {}).get("drift_events", [])) for h in history]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--datasets", nargs="+", default=["mnist5k", "digits"])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--hidden", type=int, nargs="+", default=[800, 800])
    parser.add_argument("--activation", default="relu", choices=["relu", "tanh"])
    parser.add_argument("--noise-std", type=float, default=0.618)
    parser.add_argument("--noise-mean", type=float, default=0.03)
    parser.add_argument("--data-dir", type=Path, default=None, help="keep the run folders here")
    parser.add_argument("--json", type=Path, default=None, help="write the result rows here")
    parser.add_argument("--threads", type=int, default=1,
                        help="BLAS threads (0: the library's default). Fixed by default because float results, "
                             "so the table's last digits, depend on it; 1 is also far faster on shared cores")
    parser.add_argument("--stack-batches", type=int, default=1,
                        help="mini-batches of the short run through the instrument stack (0: skip)")
    parser.add_argument("--calibration", type=Path, default=None,
                        help="calibration of the default emulated bench (default: calibrate it first)")
    parser.add_argument("--bench", default=None,
                        help="photonic rows: embedded bench name (default, current, adc) or bench file (default: the "
                             "default emulated bench)")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    if args.bench is not None:
        from labctl.cli.common import bench_path

        args.bench = str(bench_path(args.bench))      # an embedded name or a file, as the CLI takes it

    limits: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
    if args.threads:
        from threadpoolctl import threadpool_limits  # installed with scikit-learn
        limits = threadpool_limits(args.threads, user_api="blas")
    rows = []
    stack_row: dict[str, Any] | None = None
    with limits, tempfile.TemporaryDirectory(prefix="labctl-dfa-bench-") as tmp:
        root = args.data_dir if args.data_dir is not None else Path(tmp)
        calibration = args.calibration
        if calibration is None and ("dfa-photonic" in args.methods or args.stack_batches):
            from labctl.procedures.calibrate import run_calibration

            t0 = time.perf_counter()
            report = run_calibration(args.bench, Path(root) / "calibration.json")
            calibration = Path(report["calibration"])
            print(f"calibrated the {args.bench or 'default'} emulated bench in {time.perf_counter() - t0:.0f} s wall "
                  f"(projected bench time {report['projected_time_s']:.0f} s): {calibration}", flush=True)
        for dataset_name in args.datasets:
            ds = load_dataset(dataset_name)
            acc: dict[str, dict[str, list[Any]]] = {
                label: {k: [] for k in ("accs", "losses", "times", "drift", "curves", "runs", "hardware")}
                for label in args.methods}
            # seed-major: every method of a seed runs back to back, so epoch-time ratios compare runs made in the
            # same few minutes (the shared VM's speed wanders by tens of percent over a benchmark)
            for seed in args.seeds:
                for label in args.methods:
                    method, feedback = METHODS[label]
                    noise = _noise(args, label)
                    exp = Experiment(dataset=dataset_name, hidden=tuple(args.hidden), activation=args.activation,
                                     feedback=feedback, noise_std=noise["std"], noise_mean=noise["mean"],
                                     seed=seed, train=TrainConfig(method=method, epochs=args.epochs),
                                     photonic={"path": "fast", "drift_every": DRIFT_EVERY}
                                     if feedback == "photonic" else None)
                    result = run_training(exp, calibration=calibration, root=root, bench_path=args.bench)
                    hist = result["history"]
                    a = acc[label]
                    a["accs"].append(hist[-1]["test_accuracy"])
                    a["losses"].append(hist[-1]["train_loss"])
                    a["times"].append([h["time_s"] for h in hist])
                    a["drift"].append(_drift_wall_s(hist))
                    a["curves"].append([h["test_accuracy"] for h in hist])
                    a["runs"].append(result["run"])
                    if result["hardware"]:
                        a["hardware"].append(result["hardware"])
                    print(f"  {dataset_name:8s} {label:14s} seed {seed}: test {100 * a['accs'][-1]:.2f}%  "
                          f"train loss {a['losses'][-1]:.4f}  {np.mean(a['times'][-1]):.2f} s/epoch", flush=True)
            for label in args.methods:
                a = acc[label]
                times, drift = np.array(a["times"]), np.array(a["drift"])        # (seeds, epochs)
                rows.append({
                    "dataset": dataset_name, "method": label, "n_train": int(ds.y_train.size),
                    "n_test": int(ds.y_test.size), "sizes": [ds.n_features, *args.hidden, ds.n_classes],
                    "epochs": args.epochs, "seeds": args.seeds, "test_accuracy": a["accs"],
                    "test_accuracy_mean": float(np.mean(a["accs"])),
                    "test_accuracy_std": float(np.std(a["accs"], ddof=1)) if len(a["accs"]) > 1 else 0.0,
                    "final_train_loss": a["losses"], "epoch_time_s_mean": float(times.mean()),
                    "epoch_time_without_drift_checks_s_mean": float((times - drift).mean()),
                    "epoch_time_s_per_seed": times.mean(axis=1).tolist(),
                    "epoch_time_without_drift_checks_s_per_seed": (times - drift).mean(axis=1).tolist(),
                    "test_accuracy_curves": a["curves"],
                    "runs": a["runs"] if args.data_dir is not None else None,
                    "noise": _noise(args, label) if METHODS[label][1] == "noisy" else None,
                    "hardware_per_run": a["hardware"] or None,
                })
        if args.stack_batches:
            stack_row = _stack_run(args, calibration, root)

    print()
    print(f"labctl {labctl.__version__}, numpy {np.__version__}, python {platform.python_version()}, "
          f"{os.cpu_count()} cpus, BLAS threads {args.threads or 'default'}; {args.activation}, "
          f"hidden {args.hidden}, {args.epochs} epochs, SGD lr 0.01 "
          f"momentum 0.9 batch 64, seeds {args.seeds}; final-epoch test accuracy, mean ± std over seeds")
    header = (f"{'dataset':9s} {'method':14s} {'n train/test':>12s} {'test acc (%)':>15s} {'s/epoch':>8s} "
              f"{'(no drift work)':>14s}")
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['dataset']:9s} {r['method']:14s} {r['n_train']:>5d}/{r['n_test']:<6d} "
              f"{100 * r['test_accuracy_mean']:>8.2f} ± {100 * r['test_accuracy_std']:4.2f} "
              f"{r['epoch_time_s_mean']:>8.3f} {r['epoch_time_without_drift_checks_s_mean']:>14.3f}")
    by = {(r["dataset"], r["method"]): r for r in rows}
    for dataset_name in args.datasets:
        ph, dfa = by.get((dataset_name, "dfa-photonic")), by.get((dataset_name, "dfa"))
        if ph and dfa:
            per_seed = np.divide(ph["epoch_time_s_per_seed"], dfa["epoch_time_s_per_seed"])
            per_seed_nd = np.divide(ph["epoch_time_without_drift_checks_s_per_seed"], dfa["epoch_time_s_per_seed"])
            ph["epoch_time_ratio_to_dfa_per_seed"] = per_seed.tolist()
            ph["epoch_time_ratio_to_dfa_without_drift_checks_per_seed"] = per_seed_nd.tolist()
            print(f"{dataset_name}: photonic (fast) - digital DFA = "
                  f"{100 * (ph['test_accuracy_mean'] - dfa['test_accuracy_mean']):+.2f} pp; epoch time ratio "
                  f"fast/digital per seed {', '.join(f'{r:.2f}' for r in per_seed)} (mean {per_seed.mean():.2f}; "
                  f"without the drift checks {', '.join(f'{r:.2f}' for r in per_seed_nd)}, mean "
                  f"{per_seed_nd.mean():.2f})")
            hw = ph["hardware_per_run"][0] if ph["hardware_per_run"] else {}
            if hw:
                print(f"  hardware per run ({args.epochs} epochs, seed {args.seeds[0]}): "
                      f"{hw['reconfigurations']:.0f} heater configurations, {hw['encodings']:.0f} encodings, "
                      f"{hw['readings']:.0f} readings, {hw['transactions']:.0f} transactions, projected bench "
                      f"time {hw['projected_time_s'] / 3600:.1f} h (naive order {hw['naive_time_s'] / 3600:.1f} h, "
                      f"x{hw['ratio_to_naive']:.3f}; physical minimum {hw['minimum_time_s'] / 3600:.2f} h, "
                      f"x{hw['ratio_to_minimum']:.1f}); drift checks {hw.get('drift_checks', 0):.0f}, "
                      f"recalibrations {hw.get('recalibrations', 0):.0f}")
            errs = [h["product_error_std"] for h in ph["hardware_per_run"] or [] if "product_error_std" in h]
            if errs:
                means = [h["product_error_mean"] for h in ph["hardware_per_run"]]
                print(f"  product error (chip - exact e @ B) in units of the batch max|e|, over the runs: mean "
                      f"{np.mean(means):+.4f}, std {np.mean(errs):.4f} (Filipovich et al.'s model: mean "
                      f"{args.noise_mean:+.3f}, std {args.noise_std:.3f})")
    if stack_row is not None:
        s_ = stack_row
        print(f"stack run ({s_['dataset']}, {s_['batches']} mini-batch(es) of {s_['batch_size']}, sizes "
              f"{s_['sizes']}): {s_['wall_s_per_batch']:.1f} s emulator wall and {s_['projected_s_per_batch']:.1f} s "
              f"projected bench time per mini-batch -> per epoch ({s_['batches_per_epoch']} mini-batches) "
              f"{s_['wall_s_per_epoch'] / 60:.0f} min wall, {s_['projected_s_per_epoch'] / 3600:.1f} h on the bench; "
              f"{s_['transactions_per_batch']:.0f} transactions per mini-batch")
    if args.json is not None:
        args.json.write_text(json.dumps({"generated": time.strftime("%Y-%m-%d %H:%M:%S"),
                                         "labctl": labctl.__version__, "rows": rows, "stack": stack_row},
                                        indent=1, default=str) + "\n")
        print(f"rows written to {args.json}")


def _stack_run(args: argparse.Namespace, calibration: Path | None, root: Path) -> dict[str, Any]:
    """A few mini-batches of photonic DFA through the full instrument stack (the first dataset, first seed)."""
    import math

    dataset_name = args.datasets[0]
    ds = load_dataset(dataset_name)
    batch = 64
    n = args.stack_batches * batch
    exp = Experiment(dataset=dataset_name, hidden=tuple(args.hidden), activation=args.activation,
                     feedback="photonic", seed=args.seeds[0], n_train=n, n_test=200,
                     train=TrainConfig(method="dfa", epochs=1, batch_size=batch),
                     photonic={"path": "stack", "drift_every": DRIFT_EVERY, "recenter_at_start": False})
    result = run_training(exp, calibration=calibration, root=root, bench_path=args.bench)
    h = result["history"][0]
    hw = h["hardware"]
    per_epoch = math.ceil(ds.y_train.size / batch)
    row = {"dataset": dataset_name, "batches": args.stack_batches, "batch_size": batch,
           "sizes": [ds.n_features, *args.hidden, ds.n_classes], "batches_per_epoch": per_epoch,
           "wall_s_per_batch": h["time_s"] / args.stack_batches,
           "projected_s_per_batch": hw["projected_time_s"] / args.stack_batches,
           "transactions_per_batch": hw["transactions"] / args.stack_batches, "hardware": hw, "run": result["run"]}
    row["wall_s_per_epoch"] = row["wall_s_per_batch"] * per_epoch
    row["projected_s_per_epoch"] = row["projected_s_per_batch"] * per_epoch
    return row


if __name__ == "__main__":
    main()
