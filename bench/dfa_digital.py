"""Digital baselines for photonic DFA: BP, ideal DFA and DFA with Filipovich et al.'s noise model
(``max|e| * N(0.03, 0.618)`` on every element of ``B e``), on mnist5k and sklearn digits, several seeds each.

Prints mean ± std of the final-epoch test accuracy over seeds and the mean training time per epoch, and can save
the rows as JSON (``--json``): the results table that the photonic rows will join. Every training is a recorded
run (run.json + checkpoints) under ``--data-dir``; without it, a temporary directory that is removed afterwards.

    python bench/dfa_digital.py [--epochs 10] [--seeds 0 1 2] [--datasets mnist5k digits]
                                [--methods bp dfa dfa-noisy] [--hidden 800 800] [--threads 1]
                                [--data-dir DIR] [--json FILE]
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

import labctl
from labctl.datasets import load_dataset
from labctl.training import Experiment, FeedbackKind, Method, TrainConfig, run_experiment

METHODS: dict[str, tuple[Method, FeedbackKind]] = {
    "bp": ("bp", "digital"), "dfa": ("dfa", "digital"), "dfa-noisy": ("dfa", "noisy"),
}


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
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")

    limits: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
    if args.threads:
        from threadpoolctl import threadpool_limits  # installed with scikit-learn
        limits = threadpool_limits(args.threads, user_api="blas")
    rows = []
    with limits, tempfile.TemporaryDirectory(prefix="labctl-dfa-bench-") as tmp:
        root = args.data_dir if args.data_dir is not None else Path(tmp)
        for dataset_name in args.datasets:
            ds = load_dataset(dataset_name)
            for label in args.methods:
                method, feedback = METHODS[label]
                accs: list[float] = []
                losses: list[float] = []
                epoch_times: list[float] = []
                curves: list[list[float]] = []
                run_dirs: list[str] = []
                for seed in args.seeds:
                    exp = Experiment(dataset=dataset_name, hidden=tuple(args.hidden), activation=args.activation,
                                     feedback=feedback, noise_std=args.noise_std, noise_mean=args.noise_mean,
                                     seed=seed, train=TrainConfig(method=method, epochs=args.epochs))
                    run, trainer = run_experiment(exp, root=root, dataset=ds)
                    hist = trainer.history
                    accs.append(hist[-1]["test_accuracy"])
                    losses.append(hist[-1]["train_loss"])
                    epoch_times.extend(h["time_s"] for h in hist)
                    curves.append([h["test_accuracy"] for h in hist])
                    run_dirs.append(str(run.path))
                    print(f"  {dataset_name:8s} {label:10s} seed {seed}: test {100 * accs[-1]:.2f}%  "
                          f"train loss {losses[-1]:.4f}  {np.mean([h['time_s'] for h in hist]):.2f} s/epoch",
                          flush=True)
                rows.append({
                    "dataset": dataset_name, "method": label, "n_train": int(ds.y_train.size),
                    "n_test": int(ds.y_test.size), "sizes": [ds.n_features, *args.hidden, ds.n_classes],
                    "epochs": args.epochs, "seeds": args.seeds, "test_accuracy": accs,
                    "test_accuracy_mean": float(np.mean(accs)), "test_accuracy_std": float(np.std(accs, ddof=1))
                    if len(accs) > 1 else 0.0, "final_train_loss": losses, "epoch_time_s_mean":
                    float(np.mean(epoch_times)), "test_accuracy_curves": curves,
                    "runs": run_dirs if args.data_dir is not None else None,
                    "noise": {"std": args.noise_std, "mean": args.noise_mean} if label == "dfa-noisy" else None,
                })

    print()
    print(f"labctl {labctl.__version__}, numpy {np.__version__}, python {platform.python_version()}, "
          f"{os.cpu_count()} cpus, BLAS threads {args.threads or 'default'}; {args.activation}, "
          f"hidden {args.hidden}, {args.epochs} epochs, SGD lr 0.01 "
          f"momentum 0.9 batch 64, seeds {args.seeds}; final-epoch test accuracy, mean ± std over seeds")
    header = f"{'dataset':9s} {'method':10s} {'n train/test':>12s} {'test acc (%)':>15s} {'s/epoch':>8s}"
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['dataset']:9s} {r['method']:10s} {r['n_train']:>5d}/{r['n_test']:<6d} "
              f"{100 * r['test_accuracy_mean']:>8.2f} ± {100 * r['test_accuracy_std']:4.2f} "
              f"{r['epoch_time_s_mean']:>8.3f}")
    if args.json is not None:
        args.json.write_text(json.dumps({"generated": time.strftime("%Y-%m-%d %H:%M:%S"),
                                         "labctl": labctl.__version__, "rows": rows}, indent=1) + "\n")
        print(f"rows written to {args.json}")


if __name__ == "__main__":
    main()
