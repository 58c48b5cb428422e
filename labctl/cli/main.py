"""The ``labctl`` command line."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any

import labctl
from labctl.cli.common import bench_path
from labctl.cli.plans import OneLineParser, add_plan_commands, add_verbose
from labctl.cli.runs import add_run_commands
from labctl.cli.sim import add_sim_commands
from labctl.cli.study import add_study_commands

log = logging.getLogger("labctl")


def _sweep(args: argparse.Namespace) -> int:
    """``labctl sweep``: the resonances plan run by the engine (a run record every time) under the sweep's options;
    the report's spectra figure is also saved to ``--out``."""
    from labctl.cli.common import output_file
    from labctl.cli.plans import load_plans, run_plan_command

    out = output_file(args.out, "--out")          # before the sweep: a plot that cannot be saved loses the scan
    return run_plan_command(load_plans()["resonances"], args, figure_to=("spectra.png", out))


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


def _bench_scan(args: argparse.Namespace) -> int:
    from labctl.bench.scan import scan, summarize

    if not 0 < args.timeout <= 3600:
        raise ValueError(f"--timeout: {args.timeout:g} s must be positive (and at most an hour)")
    resource_manager = None
    if not args.no_visa:
        import pyvisa

        try:
            resource_manager = pyvisa.ResourceManager(args.visa_library)
        except (OSError, ValueError) as exc:
            raise ValueError(f"--visa-library {args.visa_library!r}: {exc}") from None
    visa = [] if args.no_visa else (args.resource or None)
    serial = [] if args.no_serial else (args.port or None)
    found = scan(resource_manager=resource_manager, visa=visa, serial=serial, timeout_s=args.timeout)
    if args.json:
        print(json.dumps([f.as_dict() for f in found], indent=2))
    else:
        print(summarize(found))
    return 0


def _add_sweep(sub: Any) -> None:
    """``labctl sweep``: its options are the resonances plan's (help, units and ranges from the declarations)."""
    from labctl.cli.plans import load_plans, param_help

    plan = load_plans()["resonances"]
    sweep = sub.add_parser("sweep", help="resonance sweep through the bench's instruments (swept laser, every bank "
                                         "read, heaters at 0): resonances found per bank, a plot and a run record "
                                         "(the resonances procedure)")
    sweep.add_argument("--bench", help="bench file, or an embedded bench name (default: the embedded default)")
    for name in ("start_nm", "stop_nm", "step_pm", "laser"):
        p = plan.param(name)
        sweep.add_argument(p.option, dest=p.name, default=argparse.SUPPRESS, metavar=p.name.upper(),
                           help=param_help(p))
    sweep.add_argument("--out", default="runs/sweep.png",
                       help="where to save the plot (PNG; also in the run folder, report/spectra.png)")
    sweep.add_argument("--data-dir", default=None, help="where run folders go (default: $LABCTL_DATA or ./runs)")
    sweep.add_argument("--dry-check", action="store_true",
                       help="show the operation counts and check the commands against the bench limits; touch nothing")
    sweep.add_argument("--json", action="store_true", help="machine-readable output")
    sweep.add_argument("--no-progress", dest="quiet", action="store_true", help="no progress lines on stderr")
    sweep.set_defaults(func=_sweep, force=False)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="labctl", description=__doc__)
    parser.add_argument("--version", action="version", version=f"labctl {labctl.__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)

    _add_sweep(sub)

    bench = sub.add_parser("bench", help="bench operations")
    bench_sub = bench.add_subparsers(dest="bench_command", required=True)
    check = bench_sub.add_parser("check", help="connect to every instrument, print identities, limits and status, "
                                               "leave the bench safe")
    check.add_argument("--bench", help="bench file, or an embedded bench name (default: the embedded default)")
    check.add_argument("--json", action="store_true")
    check.set_defaults(func=_bench_check)

    scan = bench_sub.add_parser("scan", help="ask every VISA resource and serial port who it is (identity queries "
                                             "only), print the matching labctl driver and a bench-file stanza")
    scan.add_argument("--json", action="store_true")
    scan.add_argument("--timeout", type=float, default=0.5, help="seconds to wait for each answer (default 0.5)")
    scan.add_argument("--visa-library", default="@py",
                      help="pyvisa library to list and open resources with (default @py: pyvisa-py)")
    scan.add_argument("--resource", action="append", metavar="NAME",
                      help="ask only this VISA resource (repeatable; default: every resource the library lists)")
    scan.add_argument("--port", action="append", metavar="PORT",
                      help="ask only this serial port or pyserial URL (repeatable; default: every serial port)")
    scan.add_argument("--no-visa", action="store_true", help="skip VISA resources")
    scan.add_argument("--no-serial", action="store_true", help="skip serial ports")
    scan.set_defaults(func=_bench_scan)

    add_plan_commands(sub)
    add_run_commands(sub, add_verbose)
    add_sim_commands(sub)
    add_study_commands(sub)
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
    from labctl.calibration.resonances import ResonanceFitError
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
    except (ArithmeticError, ResonanceFitError) as exc:  # diverged training, a spectrum with no resonance in it
        parser.exit(1, f"labctl {args.command}: failed: {exc}\n")         # (a laser gone dark): recorded as failed
    return 1


if __name__ == "__main__":
    sys.exit(main())
