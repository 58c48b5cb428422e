"""The ``labctl`` command line."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import labctl
from labctl.cli.common import bench_path
from labctl.cli.plans import OneLineParser, add_plan_commands, add_verbose
from labctl.cli.runs import add_run_commands

log = logging.getLogger("labctl")


def _sweep(args: argparse.Namespace) -> int:
    import numpy as np

    from labctl.procedures import emulated_sweep
    from labctl.sim.chip_spec import ChipSpec

    spec = ChipSpec.from_toml(Path(args.chip)) if args.chip else ChipSpec()
    chip = emulated_sweep.default_chip(args.seed, spec)
    result = emulated_sweep.run_sweep(chip, start_m=args.start_nm * 1e-9, stop_m=args.stop_nm * 1e-9,
                                      step_m=args.step_pm * 1e-12)
    if args.json:
        print(json.dumps({
            "found_nm": [list(np.round(f * 1e9, 4)) for f in result.found_m],
            "true_nm": (result.truth_m * 1e9).round(4).tolist(),
            "virtual_time_s": result.virtual_time_s,
        }))
    else:
        print(emulated_sweep.summarize(result))
    if not args.no_plot:
        path = emulated_sweep.plot(result, Path(args.out))
        if not args.json:
            print(f"plot saved to {path}")
    return 0




def _bench_check(args: argparse.Namespace) -> int:
    from labctl.bench.bench import Bench

    with Bench.open(bench_path(args.bench)) as bench:
        status = bench.status()
        limits = bench.config.limits.model_dump()
        report = {
            "bench": bench.config.bench.name,
            "kind": bench.config.bench.kind,
            "bench_sha256": bench.config_sha256,
            "instruments": status,
            "limits": limits,
            "projected_time_s": bench.projected_time_s(),
        }
    report["safe_state_failures"] = [f"{name}: {exc}" for name, exc in bench.guard.failures]
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"bench {report['bench']} ({report['kind']}), file sha256 {report['bench_sha256'][:16]}")
        for name, entry in status.items():
            state = "ok" if not entry["errors"] else "; ".join(entry["errors"])
            print(f"  {name:10s} {entry['driver']:16s} {entry['address']:28s} {entry['identity']}  [{state}]")
        print("limits: " + ", ".join(f"{k}={v}" for k, v in limits.items() if v is not None))
        safe = "all instruments safe" if not report["safe_state_failures"] else \
            "SAFE STATE FAILED: " + "; ".join(report["safe_state_failures"])
        print(f"left the bench safe (heaters 0, lasers off): {safe}")
    healthy = all(not e["errors"] for e in status.values()) and not report["safe_state_failures"]
    return 0 if healthy else 3


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="labctl", description=__doc__)
    parser.add_argument("--version", action="version", version=f"labctl {labctl.__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)

    sweep = sub.add_parser("sweep", help="resonance sweep of the emulated chip: summary and plot")
    sweep.add_argument("--chip", help="TOML file overriding the emulated chip's parameters")
    sweep.add_argument("--seed", type=int, default=0, help="chip seed (fabrication randomness)")
    sweep.add_argument("--start-nm", type=float, default=1549.0)
    sweep.add_argument("--stop-nm", type=float, default=1560.0)
    sweep.add_argument("--step-pm", type=float, default=2.0)
    sweep.add_argument("--out", default="runs/sweep.png", help="where to save the plot")
    sweep.add_argument("--no-plot", action="store_true")
    sweep.add_argument("--json", action="store_true", help="machine-readable output")
    sweep.set_defaults(func=_sweep)

    bench = sub.add_parser("bench", help="bench operations")
    bench_sub = bench.add_subparsers(dest="bench_command", required=True)
    check = bench_sub.add_parser("check", help="connect to every instrument, print identities, limits and status, "
                                               "leave the bench safe")
    check.add_argument("--bench", help="bench file, or an embedded bench name (default: the embedded default)")
    check.add_argument("--json", action="store_true")
    check.set_defaults(func=_bench_check)

    add_plan_commands(sub)
    add_run_commands(sub, add_verbose)
    _verbose_everywhere(parser)
    return parser


def _ignore_signals() -> None:
    import signal

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)


def _verbose_everywhere(parser: argparse.ArgumentParser) -> None:
    """``-v`` accepted after any subcommand (``labctl bench check -v``) as well as before it."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in set(action.choices.values()):
                if "-v" not in child._option_string_actions:
                    add_verbose(child)
                _verbose_everywhere(child)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)     # the command line a run records
    level = logging.WARNING - 10 * min(args.verbose + getattr(args, "sub_verbose", 0), 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    from labctl.bench.lock import BenchBusyError
    from labctl.drivers.errors import InstrumentError
    from labctl.runs.engine import RunStopped

    # exit status: 2 bad input, 3 instrument failure, 4 bench in use, 5 missed target (the command says), 1 failed
    # run, 130 paused or stopped (Ctrl-C, SIGTERM)
    try:
        return int(args.func(args))
    except RunStopped as stop:
        _ignore_signals()                # the bench is safe and the record written: let the line out
        print(stop.line, file=sys.stderr, flush=True)
        return 130
    except KeyboardInterrupt:
        _ignore_signals()
        print(f"labctl {args.command}: stopped", file=sys.stderr, flush=True)
        return 130
    except (ValueError, OSError) as exc:
        parser.exit(2, f"labctl {args.command}: error: {exc}\n")
    except InstrumentError as exc:
        parser.exit(3, f"labctl {args.command}: instrument error: {exc}\n")
    except BenchBusyError as exc:
        parser.exit(4, f"labctl {args.command}: {exc}\n")
    except ArithmeticError as exc:       # TrainingDiverged: the run is recorded as failed
        parser.exit(1, f"labctl {args.command}: failed: {exc}\n")
    return 1


if __name__ == "__main__":
    sys.exit(main())
