"""The ``labctl`` command line."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="labctl", description=__doc__)
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    sub = parser.add_subparsers(dest="command", required=True)

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
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args))
    except (ValueError, OSError) as exc:
        parser.exit(2, f"labctl {args.command}: error: {exc}\n")
    return 1


if __name__ == "__main__":
    sys.exit(main())
