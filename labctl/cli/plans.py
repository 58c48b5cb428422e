"""Command-line subcommands generated from the plans' parameter declarations, all run by the run engine.

Every plan command takes its declared parameters (defaults, units and ranges shown in ``--help``) and the engine's
options: ``--bench``, ``--data-dir``, ``--force``, ``--dry-check``, ``--quiet``, ``--json``, ``-v`` and, for
resumable plans, ``--resume RUN``. Values are checked by the declarations (one-line errors naming the option, exit
status 2) before anything is touched.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from labctl.cli.common import bench_path, json_default
from labctl.runs import plan as P

#: Plans with a command, in the order ``labctl --help`` lists them.
PLAN_MODULES = ("labctl.procedures.resonances", "labctl.procedures.characterize", "labctl.procedures.calibrate",
                "labctl.procedures.verify", "labctl.procedures.drift_check", "labctl.procedures.recalibrate",
                "labctl.procedures.train", "labctl.procedures.dry_run", "labctl.procedures.example_weight_scan")


class OneLineParser(argparse.ArgumentParser):
    """argparse with one-line errors: ``labctl train: error: argument --epochs: ... (see labctl train --help)``."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def load_plans() -> dict[str, P.Plan]:
    import importlib

    for module in PLAN_MODULES:
        importlib.import_module(module)
    return P.PLANS


def param_help(p: P.Param) -> str:
    bits = [p.help]
    if p.unit:
        bits.append(f"[{p.unit}]")
    if p.min is not None or p.max is not None:
        lo = "" if p.min is None else f"{'>' if p.exclusive_min else '>='} {p.min:g}"
        hi = "" if p.max is None else f"<= {p.max:g}"
        bits.append(f"(range: {' and '.join(x for x in (lo, hi) if x)})")
    if p.flag:
        if p.default is not None:
            bits.append(f"(default: {'on' if p.default else 'off'})")
    elif p.default is not None:
        default = ",".join(map(str, p.default)) if isinstance(p.default, tuple) else p.default
        bits.append(f"(default: {default})")
    if p.on_resume:
        bits.append("(may change on --resume)")
    return " ".join(bits).replace("%", "%%")


def add_verbose(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-v", "--verbose", dest="sub_verbose", action="count", default=0,
                        help="more log output (-vv for debug)")


def add_plan_command(subparsers: Any, plan: P.Plan) -> argparse.ArgumentParser:
    cmd = subparsers.add_parser(plan.name, help=plan.help, description=plan.description or plan.help)
    for p in plan.params:
        if p.flag:
            cmd.add_argument(p.option, dest=p.name, action="store_true", default=argparse.SUPPRESS, help=param_help(p))
            if p.negatable:
                cmd.add_argument("--no-" + p.option[2:], dest=p.name, action="store_false",
                                 default=argparse.SUPPRESS, help=f"turn {p.option} off")
        else:
            cmd.add_argument(p.option, dest=p.name, default=argparse.SUPPRESS, choices=p.choices,
                             metavar=p.metavar or (None if p.choices else p.name.upper()), help=param_help(p))
    eng = cmd.add_argument_group("run options")
    eng.add_argument("--bench", help="bench file, or an embedded bench name (default: the embedded default)")
    eng.add_argument("--data-dir", default=None, help="where run folders go (default: $LABCTL_DATA or ./runs)")
    if plan.resumable:
        eng.add_argument("--resume", metavar="RUN", default=None,
                         help="continue the run in folder RUN from its latest checkpoint")
    eng.add_argument("--force", action="store_true", help="overwrite existing output files")
    eng.add_argument("--dry-check", action="store_true",
                     help="show the operation counts and check the commands against the bench limits; touch nothing")
    eng.add_argument("--quiet", "-q", action="store_true", help="no progress bars or progress lines")
    eng.add_argument("--json", action="store_true", help="machine-readable result on stdout")
    add_verbose(cmd)
    cmd.set_defaults(func=lambda args: run_plan_command(plan, args))
    return cmd


def add_plan_commands(subparsers: Any) -> None:
    for plan in load_plans().values():
        add_plan_command(subparsers, plan)


def run_plan_command(plan: P.Plan, args: argparse.Namespace, *,
                     figure_to: tuple[str, Path] | None = None) -> int:
    """Run ``plan`` with the values given on the command line; ``figure_to`` (name, path): the run report's figure
    ``name`` is also saved to ``path`` (``labctl sweep --out``) and listed among the run's artifacts."""
    from labctl.runs.engine import RunEngine

    given = {p.name: getattr(args, p.name) for p in plan.params if hasattr(args, p.name)}
    resume = getattr(args, "resume", None)
    engine = RunEngine(data_dir=args.data_dir, bench=bench_path(args.bench), force=args.force, quiet=args.quiet,
                       command=["labctl", *getattr(args, "argv", sys.argv[1:])])
    if args.dry_check:
        out = engine.dry_check(plan, given, resume)
        if args.json:
            print(json.dumps(out, indent=2, default=json_default))
        else:
            print("\n".join(out.get("lines", [])))
            for v in out["violations"]:
                print(f"OUTSIDE THE LIMITS: {v}")
            print("dry check: nothing was sent to any instrument")
        return 2 if out["violations"] else 0
    outcome = engine.run(plan, given, resume=resume)
    result = outcome.result
    rep = None
    if (plan.report or figure_to is not None) and outcome.run_dir is not None:
        from labctl.runs.report import write_report

        rep = write_report(outcome.run_dir)
    if figure_to is not None and rep is not None:
        result = {**result, "plot": str(_copy_figure(outcome.run_dir, rep.html.parent / figure_to[0], figure_to[1]))}
    if args.json:
        print(json.dumps({**result, "run": str(outcome.run_dir)}, indent=2, default=json_default))
    else:
        if plan.summarize is not None:
            print(plan.summarize(result))
        if "plot" in result:
            print(f"plot saved to {result['plot']}")
        print(f"run record: {outcome.run_dir} (labctl show {outcome.run_dir}; labctl report {outcome.run_dir})")
    if rep is not None:
        print(f"report: {rep.html} ({len(rep.figures)} figures)", file=sys.stderr if args.json else sys.stdout)
    missed = result.get("target_missed") if isinstance(result, dict) else None
    if missed:
        print(f"labctl {plan.name}: {missed}", file=sys.stderr)
        return 5
    return 0


def _copy_figure(run_dir: Path, figure: Path, dest: Path) -> Path:
    """``figure`` of the run's report copied to ``dest``, and listed in the run's ``run.json`` as an artifact."""
    import shutil

    from labctl.runs.record import Run, sha256_file

    if not figure.is_file():
        raise OSError(f"{run_dir}: the run's report has no {figure.name}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(figure, dest)
    run = Run.open(run_dir)
    run.record.setdefault("artifacts", []).append({"kind": "figure", "path": str(dest.resolve()),
                                                   "sha256": sha256_file(dest),
                                                   "note": f"copy of {figure.relative_to(run_dir)}"})
    run.write()
    return dest
