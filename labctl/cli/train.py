"""``labctl train`` and ``labctl dry-run``: training runs (BP, DFA, photonic DFA) and the full rehearsal."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from labctl.cli.common import bench_path, json_default

METHODS = ("bp", "dfa", "photonic-dfa")


def _hidden(value: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"--hidden: expected comma-separated sizes like 800,800, got {value!r}")
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"--hidden: sizes must be positive integers, got {value!r}")
    return sizes


def _int_at_least(minimum: int) -> Callable[[str], int]:
    """argparse type: an integer >= ``minimum``."""
    def parse(value: str) -> int:
        try:
            n = int(value)
        except ValueError:
            n = minimum - 1
        if n < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {value!r}")
        return n
    return parse


_positive_int = _int_at_least(1)
_nonneg_int = _int_at_least(0)


def experiment_from_args(args: argparse.Namespace) -> Any:
    from labctl.dfa.training import Experiment, TrainConfig

    method = args.method
    if args.path is not None and method != "photonic-dfa":
        raise ValueError("--path applies to --method photonic-dfa only")
    feedback = "digital"
    photonic = None
    if method == "photonic-dfa":
        feedback = "photonic"
        photonic = {"path": args.path or "stack", "order": args.order, "drift_every": args.drift_every}
    elif method == "dfa" and args.noise:
        feedback = "noisy"
    elif args.noise:
        raise ValueError("--noise applies to --method dfa only")
    train = TrainConfig(method="bp" if method == "bp" else "dfa", epochs=args.epochs, lr=args.lr,
                        batch_size=args.batch_size, checkpoint_every=args.checkpoint_every)
    return Experiment(dataset=args.dataset, hidden=args.hidden, activation=args.activation, feedback=feedback,
                      seed=args.seed, n_train=args.n_train, n_test=args.n_test, train=train, photonic=photonic)


def _train(args: argparse.Namespace) -> int:
    from labctl.procedures.train import resume_training, run_training, summarize

    hooks = [] if args.json else [_epoch_line]
    if args.resume:
        report = resume_training(Path(args.resume), bench_path=bench_path(args.bench), epoch_hooks=hooks)
    else:
        exp = experiment_from_args(args)
        report = run_training(exp, bench_path=bench_path(args.bench), calibration=args.calibration,
                              root=args.data_dir, epoch_hooks=hooks)
    if args.json:
        print(json.dumps(report, indent=2, default=json_default))
    else:
        print(summarize(report))
    return 0 if report["status"] == "finished" else 1


def _epoch_line(record: dict[str, Any]) -> None:
    """Progress on stderr after every epoch (stdout stays for the report)."""
    hw = record.get("hardware") or {}
    extra = f", projected bench time {hw['projected_time_s']:.0f} s" if hw.get("projected_time_s") else ""
    print(f"[train] epoch {record['epoch']}: train loss {record['train_loss']:.4f}, test accuracy "
          f"{100 * record['test_accuracy']:.2f} % ({record['time_s']:.1f} s{extra})", file=sys.stderr, flush=True)


def _dry_run(args: argparse.Namespace) -> int:
    from labctl.procedures.dry_run import run_dry_run, summarize

    report = run_dry_run(bench_path(args.bench), root=Path(args.data_dir) if args.data_dir else None,
                         n_train=args.n_train, stack_epochs=1, fast_epochs=args.fast_epochs,
                         echo=None if args.json else (lambda line: print(line, flush=True)))
    if args.json:
        print(json.dumps(report, indent=2, default=json_default))
    else:
        print(summarize(report))
    return 0


def add_training_commands(subparsers: Any) -> None:
    tr = subparsers.add_parser("train", help="train a network (BP, DFA or photonic DFA) in a run folder")
    tr.add_argument("--bench", help="bench file or embedded bench name (photonic-dfa; default: embedded default)")
    tr.add_argument("--dataset", default="mnist5k",
                    help="mnist5k, digits, or a local MNIST file/folder (IDX files or an NPZ)")
    tr.add_argument("--method", choices=METHODS, default="dfa")
    tr.add_argument("--path", choices=("stack", "fast"), default=None,
                    help="photonic-dfa: through the instruments (stack, default) or the emulator directly (fast)")
    tr.add_argument("--calibration", help="photonic-dfa: calibration file (default: calibrate first)")
    tr.add_argument("--epochs", type=_nonneg_int, default=10)
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--hidden", type=_hidden, default=(800, 800), help="hidden layer sizes (default 800,800)")
    tr.add_argument("--activation", choices=("relu", "tanh"), default="relu")
    tr.add_argument("--lr", type=float, default=0.01)
    tr.add_argument("--batch-size", type=_positive_int, default=64)
    tr.add_argument("--n-train", type=_positive_int, default=None, help="use only the first N training samples")
    tr.add_argument("--n-test", type=_positive_int, default=None, help="use only the first N test samples")
    tr.add_argument("--checkpoint-every", type=_nonneg_int, default=20, help="mini-batches between checkpoints")
    tr.add_argument("--noise", action="store_true",
                    help="dfa: Filipovich et al.'s photonic noise model on B e (std 0.618, mean 0.03)")
    tr.add_argument("--order", choices=("auto", "tile", "sample"), default="auto",
                    help="photonic-dfa: tile-major, encoding-major, or the cheaper by measured unit costs")
    tr.add_argument("--drift-every", type=_nonneg_int, default=50,
                    help="photonic-dfa: mini-batches between drift checks (0: never)")
    tr.add_argument("--resume", metavar="RUN", help="continue the run in folder RUN from its latest checkpoint")
    tr.add_argument("--data-dir", default=None, help="where run folders go (default $LABCTL_DATA or ./runs)")
    tr.add_argument("--json", action="store_true", help="machine-readable report on stdout")
    tr.set_defaults(func=_train)

    dry = subparsers.add_parser("dry-run", help="the full rehearsal on the (emulated) bench: calibrate, verify, "
                                                "train briefly with photonic DFA through the instruments")
    dry.add_argument("--bench", help="bench file or embedded bench name (default: the embedded default)")
    dry.add_argument("--n-train", type=_positive_int, default=640,
                     help="training samples of the brief run through the instruments")
    dry.add_argument("--fast-epochs", type=_nonneg_int, default=3,
                     help="epochs of the comparison runs (fast path and digital DFA, full digits)")
    dry.add_argument("--data-dir", default=None, help="where run folders go (default $LABCTL_DATA or ./runs)")
    dry.add_argument("--json", action="store_true")
    dry.set_defaults(func=_dry_run)
