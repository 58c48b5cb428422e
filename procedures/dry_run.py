"""Procedure: the full rehearsal on a bench (the README's main command on the embedded emulated bench).

1. calibrate the bench through the instruments (saved in the run area);
2. verify the calibration on random weight vectors (bits; on an emulated bench also against ground truth);
3. train briefly with photonic DFA through the full instrument stack (digits, a small subset, one epoch), with
   the hardware counters and the projected bench time;
4. on an emulated bench, the same network on the full training set with the fast path, and digital DFA as the
   reference, so the brief run can be read against what longer training gives.

Steps 1-3 work unchanged on a real bench; step 4 needs the emulator (it is skipped on a real bench).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from labctl.dfa.training import Experiment, TrainConfig

log = logging.getLogger(__name__)

DRY_HIDDEN = (64,)
DRY_LR = 0.1


def dry_experiment(feedback: str, *, epochs: int, n_train: int | None, path: str | None = None,
                   seed: int = 0) -> Experiment:
    """The dry run's network: digits, one hidden layer of 64 ReLU units, SGD lr 0.1 (momentum 0.9, batch 64)."""
    photonic = {"path": path, "drift_every": 20} if feedback == "photonic" else None
    return Experiment(dataset="digits", hidden=DRY_HIDDEN, feedback=feedback, seed=seed, n_train=n_train,  # type: ignore[arg-type]
                      photonic=photonic, train=TrainConfig(method="dfa", epochs=epochs, lr=DRY_LR,
                                                           checkpoint_every=4))


def run_dry_run(bench_path: str | Path | None = None, *, root: Path | None = None, n_train: int = 640,
                stack_epochs: int = 1, fast_epochs: int = 3, n_verify: int = 10,
                echo: Callable[[str], None] | None = None) -> dict[str, Any]:
    from labctl.procedures.calibrate import run_calibration
    from labctl.procedures.train import run_training
    from labctl.procedures.verify import run_verification

    from labctl.bench.config import load_bench
    from labctl.runs.record import data_dir

    say = echo or (lambda line: None)
    config, _ = load_bench(bench_path)
    emulated = config.bench.kind == "emulated"
    area = data_dir(root) / f"dry-run-{time.strftime('%Y%m%d-%H%M%S')}"
    area.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"bench": config.bench.name, "emulated": emulated, "folder": str(area)}
    t0 = time.perf_counter()

    say(f"[1/4] calibrating {config.bench.name} through the instruments ...")
    cal = run_calibration(bench_path, area / "calibration.json")
    report["calibration"] = {k: cal[k] for k in ("calibration", "calibration_sha256", "span", "projected_time_s",
                                                  "transactions")}
    say(f"      span {cal['span']:.3f}, projected bench time {_s(cal['projected_time_s'])}, "
        f"{cal['transactions']} transactions")

    say(f"[2/4] verifying on {n_verify} random weight vectors ...")
    ver = run_verification(bench_path, area / "calibration.json", n=n_verify, refine=False, recenter=True)
    report["verification"] = {k: ver.get(k) for k in ("bits", "rmse", "max_error", "span", "true_bits",
                                                       "true_rmse", "elapsed_s", "transactions")}
    line = f"      {ver['bits']:.2f} bits measured"
    if ver.get("true_bits") is not None:
        line += f", {ver['true_bits']:.2f} bits against the emulator's ground truth"
    say(line)

    say(f"[3/4] photonic DFA through the instrument stack: digits, {n_train} training samples, "
        f"{stack_epochs} epoch ...")
    stack = run_training(dry_experiment("photonic", epochs=stack_epochs, n_train=n_train, path="stack"),
                         bench_path=bench_path, calibration=area / "calibration.json", root=area)
    report["stack"] = _brief(stack)
    say(f"      test accuracy {100 * stack['test_accuracy']:.1f} %, wall {report['stack']['wall_s']:.0f} s, "
        f"projected bench time {_s(stack['hardware'].get('projected_time_s'))}")

    if emulated:
        say(f"[4/4] the same network on all digits, {fast_epochs} epochs: photonic DFA (fast path) and digital DFA")
        fast = run_training(dry_experiment("photonic", epochs=fast_epochs, n_train=None, path="fast"),
                            bench_path=bench_path, calibration=area / "calibration.json", root=area)
        digital = run_training(dry_experiment("digital", epochs=fast_epochs, n_train=None), root=area)
        report["fast"] = _brief(fast)
        report["digital"] = _brief(digital)
    report["wall_s"] = time.perf_counter() - t0
    return report


def _brief(r: dict[str, Any]) -> dict[str, Any]:
    hw = r.get("hardware") or {}
    return {"run": r["run"], "label": r["label"], "test_accuracy": r["test_accuracy"], "train_loss": r["train_loss"],
            "epochs": r["epochs"], "wall_s": float(sum(t or 0.0 for t in r["epoch_time_s"])), "hardware": hw}


def _s(seconds: float | None) -> str:
    if seconds is None:
        return "n/a (real bench: wall clock)"
    return f"{seconds:.0f} s ({seconds / 3600:.2f} h)" if seconds >= 600 else f"{seconds:.1f} s"


def summarize(report: dict[str, Any]) -> str:
    cal, ver, stack = report["calibration"], report["verification"], report["stack"]
    lines = [(f"dry run on {report['bench']} ({'emulated' if report['emulated'] else 'real'} bench), "
              f"outputs in {report['folder']}"),
             (f"  calibration : {cal['calibration']} (sha256 {cal['calibration_sha256'][:16]}...), projected bench "
              f"time {_s(cal['projected_time_s'])}, {cal['transactions']} transactions"),
             (f"  verification: {ver['bits']:.2f} bits measured"
              + (f", {ver['true_bits']:.2f} bits true" if ver.get("true_bits") is not None else ""))]
    hw = stack["hardware"]
    lines.append(f"  photonic DFA through the instruments ({stack['epochs']} epoch, subset): test accuracy "
                 f"{100 * stack['test_accuracy']:.2f} %, {hw.get('reconfigurations', 0):.0f} heater configurations, "
                 f"{hw.get('encodings', 0):.0f} encodings, {hw.get('transactions', 0):.0f} transactions")
    if hw.get("projected_time_s") is not None:
        lines.append(f"      projected bench time {_s(hw['projected_time_s'])}; naive order "
                     f"{_s(hw.get('naive_time_s'))} (x{hw.get('ratio_to_naive', float('nan')):.3f}); physical "
                     f"minimum {_s(hw.get('minimum_time_s'))} (x{hw.get('ratio_to_minimum', float('nan')):.1f}); "
                     f"emulator wall time {stack['wall_s']:.0f} s")
    if hw.get("instrument_bound_s") is not None:
        kinds = hw.get("time_by_kind_s") or {}
        bound = hw.get("bound_by_kind_s") or {}
        lines.append(f"      instrument-bound minimum {_s(hw['instrument_bound_s'])} (x"
                     f"{hw.get('bound_minimum_ratio', float('nan')):.2f} the physical minimum; this run "
                     f"x{hw.get('ratio_to_instrument_bound', float('nan')):.3f} the bound; docs/bench-time.md)")
        lines.append("      per operation kind, s (run / bound): " + ", ".join(
            f"{k} {kinds.get(k, 0.0):.1f} / {bound.get(k, 0.0):.1f}" for k in ("configure", "encode", "read", "batch")))
    if hw.get("product_error_std") is not None:
        lines.append(f"      chip's B e minus the exact product, in units of max|e|: mean "
                     f"{hw['product_error_mean']:+.4f}, std {hw['product_error_std']:.4f} (Filipovich et al.'s noise "
                     "model: +0.03, 0.618)")
    for key, name in (("fast", "photonic DFA, fast path"), ("digital", "digital DFA")):
        if key in report:
            r = report[key]
            line = f"  {name} (all digits, {r['epochs']} epochs): test accuracy {100 * r['test_accuracy']:.2f} %"
            if r["hardware"].get("projected_time_s") is not None:
                line += f", projected bench time {_s(r['hardware']['projected_time_s'])}"
            lines.append(line)
    lines.append(f"  total wall time {report['wall_s']:.0f} s")
    return "\n".join(lines)
