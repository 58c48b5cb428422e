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


def dry_run_body(ctx: Any, *, n_train: int, fast_epochs: int, n_verify: int) -> Any:
    """The rehearsal as one plan: the calibrate and verify plans and three trainings composed, every part's data in
    the one run record under its own group (``calibrate/``, ``verify/``, ``train_stack/``, ...)."""
    from labctl.procedures.calibrate import calibrate_body
    from labctl.procedures.train import _photonic_setup, _report, train_loop
    from labctl.procedures.verify import verify_body
    from labctl.runs import plan as P

    say = ctx.say
    bench = ctx.bench
    emulated = bench.emulation is not None
    report: dict[str, Any] = {"bench": bench.config.bench.name, "emulated": emulated, "folder": str(ctx.run_dir)}
    t0 = time.perf_counter()

    say(f"[1/4] calibrating {bench.config.bench.name} through the instruments ...")
    cal = yield from ctx.within("calibrate", calibrate_body(ctx, out=None, refine=False, n_configs=10, n_levels=40,
                                                            n_drift_references=3, seed=0))
    cal_file = cal["calibration"]
    report["calibration"] = {k: cal[k] for k in ("calibration", "calibration_sha256", "span", "projected_time_s",
                                                  "transactions")}
    say(f"      span {cal['span']:.3f} (weight range of a typical ring; weight -1 = every ring away), projected "
        f"bench time {_s(cal['projected_time_s'])}, {cal['transactions']} instrument transactions")

    say(f"[2/4] verifying on {n_verify} random weight vectors ...")
    ver = yield from ctx.within("verify", verify_body(ctx, calibration=cal_file, n=n_verify, seed=12345,
                                                      refine=False, drift=False, recenter=True, min_bits=None))
    report["verification"] = {k: ver.get(k) for k in ("bits", "rmse", "max_error", "span", "true_bits",
                                                       "true_rmse", "elapsed_s", "transactions")}
    line = f"      {ver['bits']:.2f} bits measured (log2 of span / rms error)"
    if ver.get("true_bits") is not None:
        line += f", {ver['true_bits']:.2f} bits against the emulator's ground truth"
    say(line)

    def train(name: str, exp: Experiment, photonic: bool) -> Any:
        ds = exp.load_dataset()
        feedback = drift = engine = None
        if photonic:
            feedback, drift, engine = yield from _photonic_setup(ctx, exp, ds.n_classes, cal_file)
        trainer = exp.build(ds, feedback)
        if drift is not None:
            trainer.pre_batch_hooks.append(drift)
        yield from ctx.within(name, train_loop(ctx, trainer, exp, engine, checkpoint_s=None))
        out = _report(ctx.run, trainer)
        out["label"] = exp.label
        return out

    say(f"[3/4] photonic DFA through the instrument stack: digits, {n_train} training samples, 1 epoch "
        "(a rehearsal: expected to score low) ...")
    stack = yield from train("train_stack", dry_experiment("photonic", epochs=1, n_train=n_train, path="stack"),
                             True)
    report["stack"] = _brief(stack)
    say(f"      test accuracy {100 * stack['test_accuracy']:.1f} %, wall {report['stack']['wall_s']:.0f} s, "
        f"projected bench time {_s(stack['hardware'].get('projected_time_s'))}")

    if emulated and fast_epochs > 0:
        say(f"[4/4] the same network on all digits, {fast_epochs} epochs: photonic DFA (fast path) and digital DFA")
        fast = yield from train("train_fast", dry_experiment("photonic", epochs=fast_epochs, n_train=None,
                                                             path="fast"), True)
        digital = yield from train("train_digital", dry_experiment("digital", epochs=fast_epochs, n_train=None),
                                   False)
        report["fast"] = _brief(fast)
        report["digital"] = _brief(digital)
    report["wall_s"] = time.perf_counter() - t0
    report["expectation"] = ("the brief run through the instruments (one epoch on a subset) is expected to score "
                             "low: it rehearses the procedure; the full-digits rows show what longer training gives")
    yield P.Note("stages", [k for k in ("calibration", "verification", "stack", "fast", "digital") if k in report])
    return report


def _brief(r: dict[str, Any]) -> dict[str, Any]:
    hw = r.get("hardware") or {}
    return {"label": r["label"], "test_accuracy": r["test_accuracy"], "train_loss": r["train_loss"],
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
    if hw.get("drift_checks") is not None:
        lines.append(f"      drift checks {hw.get('drift_checks', 0):.0f} ({hw.get('drift_check_time_s', 0):.0f} s), "
                     f"recalibrations {hw.get('recalibrations', 0):.0f} ({hw.get('recalibration_time_s', 0):.0f} s), "
                     f"refinement of the configurations {hw.get('refine_time_s', 0):.0f} s: bench time not in the "
                     "above")
    if hw.get("product_error_std") is not None:
        lines.append(f"      chip's B e minus the exact product, in units of max|e|: mean "
                     f"{hw['product_error_mean']:+.4f}, std {hw['product_error_std']:.4f} (Filipovich et al.'s noise "
                     "model: +0.03, 0.618)")
    for key, name in (("fast", "photonic DFA, fast path"), ("digital", "digital DFA")):
        if key in report:
            r = report[key]
            line = f"  {name} (all digits, {r['epochs']} epochs): test accuracy {100 * r['test_accuracy']:.2f} %"
            rh = r["hardware"]
            if rh.get("projected_time_s") is not None:
                line += f", projected bench time {_s(rh['projected_time_s'])}"
            if rh.get("product_error_std") is not None:
                line += f"; product error std {rh['product_error_std']:.4f} of max|e|"
            if rh.get("drift_checks"):
                line += (f"; {rh['drift_checks']:.0f} drift checks ({rh.get('drift_check_time_s', 0):.0f} s), "
                         f"{rh.get('recalibrations', 0):.0f} recalibrations ({rh.get('recalibration_time_s', 0):.0f} s)")
            lines.append(line)
    lines.append(f"  total wall time {report['wall_s']:.0f} s")
    if report.get("expectation"):
        lines.append(f"  note: {report['expectation']}")
    return "\n".join(lines)


def _register() -> Any:
    from labctl.runs import plan as P

    return P.register(P.Plan(
        name="dry-run", help="the full rehearsal on the (emulated) bench: calibrate, verify, train briefly with "
                             "photonic DFA through the instruments; writes a report",
        description=__doc__.split("\n\n")[0] if __doc__ else "",
        params=(P.Param("n_train", int, 640, "training samples of the brief run through the instruments", min=64,
                        max=1_000_000),
                P.Param("fast_epochs", int, 3, "epochs of the comparison runs (fast path and digital DFA, all "
                        "digits; emulated benches)", min=0, max=1000),
                P.Param("n_verify", int, 10, "random weight vectors of the verification", min=1,
                        max=10_000)),
        body=dry_run_body, summarize=summarize, report=True, dry_check=_dry_check))


def _dry_check(ctx: Any) -> dict[str, Any]:
    from labctl.procedures.dry_checks import calibration_estimate

    out = calibration_estimate(ctx, n_configs=10, n_levels=40, n_drift_references=3)
    v = ctx.values
    out["lines"] += [f"then: verification of {v['n_verify']} random weight vectors; photonic DFA through the "
                     f"instruments on {v['n_train']} digits samples (1 epoch); on an emulated bench the fast path "
                     f"and digital DFA for {v['fast_epochs']} epochs",
                     "the heater configurations of verification and training are solved from the calibration this "
                     "run makes and checked against the limits before their first write"]
    out["counts"]["verification_vectors"] = v["n_verify"]
    return out


DRY_RUN = _register()
