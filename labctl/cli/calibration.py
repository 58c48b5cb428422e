"""``labctl calibrate`` and ``labctl verify``: registered on the main parser by ``add_calibration_commands``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from labctl.cli.common import ProgressLine, bench_path, json_default




def _calibrate(args: argparse.Namespace) -> int:
    from labctl.procedures.calibrate import run_calibration, summarize

    progress = None if args.no_progress else ProgressLine("calibrate")
    try:
        report = run_calibration(bench_path(args.bench), Path(args.out), refine=args.refine, progress=progress)
    finally:
        if progress is not None:
            progress.close()
    _emit(report, args.json, summarize)
    return 0


def _verify(args: argparse.Namespace) -> int:
    from labctl.procedures.verify import run_verification, summarize

    progress = None if args.no_progress else ProgressLine("verify")
    try:
        report = run_verification(bench_path(args.bench), Path(args.calibration), n=args.n, refine=args.refine,
                                  seed=args.seed, drift=args.drift, recenter=args.recenter, progress=progress)
    finally:
        if progress is not None:
            progress.close()
    _emit(report, args.json, summarize)
    if args.min_bits is not None and not report["bits"] >= args.min_bits:
        print(f"labctl verify: {report['bits']:.2f} bits is below --min-bits {args.min_bits}", file=sys.stderr)
        return 5
    return 0


def _emit(report: dict[str, Any], as_json: bool, summarize: Any) -> None:
    if as_json:
        print(json.dumps(report, indent=2, default=json_default))
    else:
        print(summarize(report))




def add_calibration_commands(subparsers: Any) -> None:
    """Register ``calibrate`` and ``verify`` on the main parser's subparsers."""
    cal = subparsers.add_parser("calibrate", help="calibrate the bench's weight banks and save the calibration file")
    cal.add_argument("--bench", help="bench file, or an embedded bench name (default: the embedded default)")
    cal.add_argument("--out", default="runs/calibration.json", help="where to write the calibration file")
    cal.add_argument("--refine", action="store_true",
                     help="make closed-loop refinement the calibration's default when setting weights")
    cal.add_argument("--json", action="store_true", help="machine-readable report on stdout")
    cal.add_argument("--no-progress", action="store_true", help="no progress lines on stderr")
    cal.set_defaults(func=_calibrate)

    ver = subparsers.add_parser("verify", help="set random weights with a calibration, measure, report the error")
    ver.add_argument("--bench", help="bench file, or an embedded bench name (default: the embedded default)")
    ver.add_argument("--calibration", required=True, help="calibration file (from labctl calibrate)")
    ver.add_argument("--n", type=int, default=20, help="number of random weight vectors")
    ver.add_argument("--seed", type=int, default=12345, help="seed of the random targets")
    group = ver.add_mutually_exclusive_group()
    group.add_argument("--refine", dest="refine", action="store_true", default=None,
                       help="closed-loop refinement on (default: as the calibration says)")
    group.add_argument("--no-refine", dest="refine", action="store_false", help="model only, no refinement")
    ver.add_argument("--drift", action="store_true", help="also run a drift check against the calibration")
    ver.add_argument("--recenter", action="store_true",
                     help="first measure the drift references and follow the resonances' shift relative to each "
                          "laser (chip temperature, laser re-tuning)")
    ver.add_argument("--min-bits", type=float, default=None, help="exit with status 5 below this many bits")
    ver.add_argument("--json", action="store_true", help="machine-readable report on stdout")
    ver.add_argument("--no-progress", action="store_true", help="no progress lines on stderr")
    ver.set_defaults(func=_verify)
