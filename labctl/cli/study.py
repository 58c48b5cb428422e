"""``labctl study`` (run or resume a study on Dask) and ``labctl report`` (draw a study folder)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from labctl.cli.common import json_default


def _study(args: argparse.Namespace) -> int:
    from labctl.study.runner import INSTALL_HINT, StudyBusyError, cluster_available

    if not cluster_available():
        print(f"labctl study: {INSTALL_HINT}", file=sys.stderr)
        return 2
    if args.workers is not None and args.workers < 1:
        raise ValueError(f"--workers: expected an integer >= 1, got {args.workers}")
    if args.scheduler is not None and args.workers is not None:
        raise ValueError("--workers applies to the local cluster; an existing --scheduler keeps its own workers")
    from labctl.study.report import report_study
    from labctl.study.runner import run_study
    from labctl.study.spec import load_spec

    spec = load_spec(args.spec)
    if not args.verbose:      # Dask's own INFO lines (scheduler, nanny start and stop) would bury the progress bar
        logging.getLogger("distributed").setLevel(logging.WARNING)
    try:
        outcome = run_study(spec, root=args.data_dir, scheduler=args.scheduler, workers=args.workers, new=args.new,
                            retry_failed=args.retry_failed, progress=not args.no_progress)
    except StudyBusyError as exc:
        print(f"labctl study: {exc}", file=sys.stderr)
        return 4
    except KeyboardInterrupt:
        print("labctl study: interrupted; finished jobs are recorded, run the same command again to continue",
              file=sys.stderr)
        return 130
    report = report_study(outcome.path)
    result = {"study": str(outcome.path), "jobs": len(outcome.rows), "finished": outcome.finished,
              "failed": outcome.failed, "ran": outcome.ran, "skipped": outcome.skipped, "tables": outcome.tables,
              "timing": outcome.timing, "summary": report}
    if args.json:
        print(json.dumps(result, indent=2, default=json_default))
    else:
        print(f"study {spec.name}: {len(outcome.rows)} jobs, {outcome.finished} finished, {outcome.failed} failed "
              f"({outcome.ran} run now, {outcome.skipped} done before) in {outcome.path}")
        print(f"  table: {', '.join(str(v) for k, v in outcome.tables.items() if k in ('csv', 'parquet'))}")
        print(f"  report: {report['summary_md']} and {len(report['plots'])} plots")
        _print_cases(report)
    return 0


def _print_cases(report: dict[str, Any]) -> None:
    for case, entry in report["cases"].items():
        head = f"  {case or 'all jobs'}: {entry['finished']} of {entry['jobs']} finished"
        if entry["errors"]:
            head += " (failed: " + ", ".join(f"{k} x{v}" for k, v in entry["errors"].items()) + ")"
        print(head)
        for f, s in entry["figures"].items():
            if not s.get("n"):
                continue
            line = f"    {f}: mean {s['mean']:.4g} {s['unit']}, std {s['std']:.3g}, range {s['min']:.4g}..{s['max']:.4g}"
            th = s.get("threshold")
            if th:
                line += f"; >= {th['at_least']:g}: {th['jobs']} of {th['of']} jobs"
            print(line)


def report_study_folder(folder: Path, args: argparse.Namespace) -> int:
    """``labctl report STUDY``: histograms, figures against the swept parameters, summary tables."""
    from labctl.study.report import report_study

    result = report_study(folder, args.out)
    if args.json:
        print(json.dumps(result, indent=2, default=json_default))
    else:
        print(f"study {result['name']} ({result['procedure']}, {result['status']}): {len(result['plots'])} plots "
              f"and {result['summary_md']}")
        for plot in result["plots"]:
            print(f"  {plot}")
        _print_cases(result)
    return 0


def add_study_commands(subparsers: Any) -> None:
    st = subparsers.add_parser("study", help="run a study (grid or random sample over chip and procedure "
                                             "parameters) on Dask; the same command resumes it")
    st.add_argument("spec", help="study file (TOML; examples in labctl/study/examples/)")
    st.add_argument("--scheduler", metavar="ADDRESS", help="use an existing Dask cluster (tcp://host:port) as it "
                                                           "is (default: a local cluster in this process)")
    st.add_argument("--workers", type=int, default=None,
                    help="local cluster worker processes, one thread each (default: the machine's cores)")
    st.add_argument("--data-dir", default=None, help="where the study folder goes (default $LABCTL_DATA or ./runs)")
    st.add_argument("--new", action="store_true", help="start a new study folder even if one of this spec exists")
    st.add_argument("--retry-failed", action="store_true", help="when resuming, run failed jobs again")
    st.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    st.add_argument("--json", action="store_true", help="machine-readable result on stdout")
    st.set_defaults(func=_study)


